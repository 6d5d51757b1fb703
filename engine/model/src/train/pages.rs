//! Dataset pages as the model sees them: rendered and tiled exactly as for inference
//! (the same 8-bit canvas and padding plan), and kept in memory up to a bound, because
//! rendering dominates a small model's training step.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use image::RgbImage;
use sphinx_core::isolate::{render_page, Isolation};
use sphinx_core::limits::Limits;
use sphinx_core::tiling::{tile_page, TileConfig};
use tch::Tensor;

use crate::views::canvas_tensor;

/// A dataset page as rendered for the model: its canvas `[3, S, S]` (uint8) and padding
/// plan (not [`crate::sphinx::PageViews`], the views cut from it).
pub(crate) type RenderedPage = (Tensor, Vec<bool>);

/// Rendered pages by path, at most `capacity` of them (the first ones asked for).
pub(crate) struct PageCache {
    tile: TileConfig,
    isolation: Isolation,
    capacity: u64,
    pages: RefCell<HashMap<PathBuf, RenderedPage>>,
}

impl PageCache {
    /// Pages render in-process until [`PageCache::set_isolation`] says otherwise.
    pub fn new(tile: TileConfig, capacity: u64) -> Self {
        Self {
            tile,
            isolation: Isolation::InProcess,
            capacity,
            pages: RefCell::default(),
        }
    }

    /// Where pages are opened and rendered (datasets may hold anyone's PDFs).
    pub fn set_isolation(&mut self, isolation: Isolation) {
        self.isolation = isolation;
    }

    /// How many pages the cache keeps.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The page at `path`, from the cache when it is there (kept if there is room).
    pub fn get(&self, path: &Path) -> Result<RenderedPage> {
        if let Some((rgb, flags)) = self.pages.borrow().get(path) {
            return Ok((rgb.shallow_clone(), flags.clone()));
        }
        let (canvas, flags) = render_canvas(path, &self.tile, &self.isolation)?;
        let rgb = canvas_tensor(&canvas);
        let mut pages = self.pages.borrow_mut();
        if (pages.len() as u64) < self.capacity {
            pages.insert(path.to_path_buf(), (rgb.shallow_clone(), flags.clone()));
        }
        Ok((rgb, flags))
    }

    /// Renders the first pages of `paths` that are not cached yet, up to the capacity,
    /// on every core; returns how many it rendered.
    pub fn warm(&self, paths: impl IntoIterator<Item = PathBuf>) -> Result<usize> {
        let room = self
            .capacity
            .saturating_sub(self.pages.borrow().len() as u64) as usize;
        let mut seen = std::collections::HashSet::new();
        let todo: Vec<PathBuf> = paths
            .into_iter()
            .filter(|p| !self.pages.borrow().contains_key(p) && seen.insert(p.clone()))
            .take(room)
            .collect();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = todo.len().div_ceil(threads).max(1);
        let (tile, isolation) = (&self.tile, &self.isolation);
        // Each thread makes its pages' tensors, so no page is held twice.
        let rendered: Vec<Vec<(PathBuf, RenderedPage)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = todo
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|p| {
                                let (canvas, flags) = render_canvas(p, tile, isolation)?;
                                Ok((p.clone(), (canvas_tensor(&canvas), flags)))
                            })
                            .collect::<Result<Vec<_>>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("page rendering thread panicked"))
                .collect::<Result<_>>()
        })?;
        self.pages
            .borrow_mut()
            .extend(rendered.into_iter().flatten());
        Ok(todo.len())
    }
}

/// The page at `path` rendered and tiled exactly as for inference: its 8-bit canvas and
/// padding plan. Plain Rust, so pages render on many threads.
fn render_canvas(
    path: &Path,
    tile: &TileConfig,
    isolation: &Isolation,
) -> Result<(RgbImage, Vec<bool>)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (_, page) = render_page(
        isolation,
        &Arc::new(bytes),
        &Limits::default(),
        tile.canvas,
        0,
    )
    .with_context(|| format!("cannot render {}", path.display()))?;
    let tiled = tile_page(&page.image, tile)?;
    Ok((tiled.canvas, tiled.plan.flags().to_vec()))
}
