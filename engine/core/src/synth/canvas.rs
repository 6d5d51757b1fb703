//! The page being drawn: an RGB raster on a uniform paper colour, with the one primitive
//! the annotations rest on: the box of every pixel that is no longer paper.

use image::RgbImage;

use super::PixelBox;

/// An RGB page under construction.
pub struct Canvas {
    width: u32,
    height: u32,
    paper: [u8; 3],
    rgb: Vec<u8>,
}

impl Canvas {
    /// A blank page of `paper` colour.
    pub fn new(width: u32, height: u32, paper: [u8; 3]) -> Self {
        let rgb = paper.repeat(width as usize * height as usize);
        Self {
            width,
            height,
            paper,
            rgb,
        }
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    fn offset(&self, x: i64, y: i64) -> Option<usize> {
        (x >= 0 && y >= 0 && x < i64::from(self.width) && y < i64::from(self.height))
            .then(|| (y as usize * self.width as usize + x as usize) * 3)
    }

    /// Mixes `colour` into pixel (x, y) with opacity `alpha` in [0, 1]; outside the page
    /// nothing happens.
    pub fn blend(&mut self, x: i64, y: i64, colour: [u8; 3], alpha: f32) {
        let Some(o) = self.offset(x, y) else { return };
        let a = alpha.clamp(0.0, 1.0);
        for (c, &target) in colour.iter().enumerate() {
            let old = f32::from(self.rgb[o + c]);
            self.rgb[o + c] = (old + (f32::from(target) - old) * a).round() as u8;
        }
    }

    /// Sets pixel (x, y) to `colour`.
    pub fn set(&mut self, x: i64, y: i64, colour: [u8; 3]) {
        if let Some(o) = self.offset(x, y) {
            self.rgb[o..o + 3].copy_from_slice(&colour);
        }
    }

    /// The tightest box around the pixels of `region` (clipped to the page) that differ
    /// from the paper colour; `None` if all are paper.
    pub fn ink_box(&self, region: PixelBox) -> Option<PixelBox> {
        let (x2, y2) = (region.x2.min(self.width), region.y2.min(self.height));
        let mut found: Option<PixelBox> = None;
        for y in region.y1..y2 {
            let row = (y as usize * self.width as usize) * 3;
            for x in region.x1..x2 {
                let o = row + x as usize * 3;
                if self.rgb[o..o + 3] != self.paper {
                    found = Some(match found {
                        None => PixelBox::new(x, y, x + 1, y + 1),
                        Some(b) => b.union(PixelBox::new(x, y, x + 1, y + 1)),
                    });
                }
            }
        }
        found
    }

    /// Raw RGB bytes, row-major.
    pub fn rgb_mut(&mut self) -> &mut [u8] {
        &mut self.rgb
    }

    /// The finished page.
    pub fn into_image(self) -> RgbImage {
        RgbImage::from_raw(self.width, self.height, self.rgb)
            .expect("buffer is width * height * 3 by construction")
    }
}
