//! Skip plan and placement: properties over many page sizes, plus the named cases.

use image::RgbImage;
use proptest::prelude::*;
use sphinx_core::tiling::{plan, tile_page, TileConfig, TilingError, PAD_RGB};

/// Does grid cell (row, col) of side `tile` intersect the content rectangle
/// `[0, w * canvas / side) x [0, h * canvas / side)` (real-valued, no rounding)?
fn cell_intersects_content(row: u32, col: u32, tile: u32, w: u32, h: u32, canvas: u32) -> bool {
    let side = f64::from(w.max(h));
    let cw = f64::from(w) * f64::from(canvas) / side;
    let ch = f64::from(h) * f64::from(canvas) / side;
    // Half-open intervals intersect iff each starts before the other ends.
    f64::from(col * tile) < cw && f64::from(row * tile) < ch
}

fn configs() -> impl Strategy<Value = TileConfig> {
    prop_oneof![
        Just(TileConfig::tiny_1k()),
        Just(TileConfig::tiny_448()),
        (1u32..=6, 14u32..=200).prop_map(|(grid, tile)| TileConfig::new(grid * tile, grid)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn skipped_cells_are_exactly_those_outside_the_content(
        w in 1u32..20_000, h in 1u32..20_000, cfg in configs()
    ) {
        let (placement, skip) = plan(w, h, &cfg).unwrap();
        let tile = cfg.tile();
        prop_assert_eq!((placement.x, placement.y), (0, 0));
        prop_assert!(placement.width == cfg.canvas || placement.height == cfg.canvas);
        prop_assert!(placement.width <= cfg.canvas && placement.height <= cfg.canvas);
        let mut expected_skips = 0;
        for row in 0..cfg.grid {
            for col in 0..cfg.grid {
                let outside = !cell_intersects_content(row, col, tile, w, h, cfg.canvas);
                prop_assert_eq!(skip.is_skipped(row, col), outside, "cell r{}c{} of {}x{}", row, col, w, h);
                expected_skips += usize::from(outside);
            }
        }
        prop_assert_eq!(skip.skipped_count(), expected_skips);
        // The first cell always holds the page's top-left corner.
        prop_assert!(!skip.is_skipped(0, 0));
    }
}

proptest! {
    // Each case resamples a page, so fewer cases than the pure planning property.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn page_cells_are_never_blank_and_cells_crop_the_canvas(w in 1u32..300, h in 1u32..300) {
        let cfg = TileConfig::new(96, 3);
        let page = RgbImage::from_pixel(w, h, image::Rgb([0, 0, 0]));
        let tiled = tile_page(&page, &cfg).unwrap();
        prop_assert_eq!(tiled.page_size, [w, h]);
        prop_assert_eq!(tiled.canvas.dimensions(), (96, 96));
        for row in 0..3 {
            for col in 0..3 {
                let cell = tiled.cell(row, col);
                prop_assert_eq!(cell.dimensions(), (32, 32));
                prop_assert_eq!(cell.get_pixel(5, 7), tiled.canvas.get_pixel(col * 32 + 5, row * 32 + 7));
                // A black page covers part of every cell the plan keeps.
                if !tiled.plan.is_skipped(row, col) {
                    prop_assert!(!tiled.cell_is_blank(row, col), "r{}c{} of {}x{}", row, col, w, h);
                }
            }
        }
    }
}

#[test]
fn landscape_two_to_one_skips_the_bottom_row() {
    for cfg in [TileConfig::tiny_1k(), TileConfig::tiny_448()] {
        for (w, h) in [(2000, 1000), (1024, 512), (448, 224), (2, 1)] {
            let (placement, skip) = plan(w, h, &cfg).unwrap();
            assert_eq!(placement.height, cfg.tile(), "{w}x{h}");
            assert!(!skip.is_skipped(0, 0) && !skip.is_skipped(0, 1), "{w}x{h}");
            assert!(skip.is_skipped(1, 0) && skip.is_skipped(1, 1), "{w}x{h}");
            assert_eq!(skip.skipped_count(), 2);
        }
    }
    // Portrait 1:2 skips the right column instead.
    let (_, skip) = plan(500, 1000, &TileConfig::tiny_1k()).unwrap();
    assert_eq!(skip.flags(), &[false, true, false, true]);
}

#[test]
fn square_page_skips_none() {
    for side in [1, 37, 224, 1024, 5000] {
        let (placement, skip) = plan(side, side, &TileConfig::tiny_1k()).unwrap();
        assert_eq!(skip.skipped_count(), 0);
        assert_eq!((placement.width, placement.height), (1024, 1024));
        assert_eq!(placement.scale, 1024.0 / f64::from(side));
    }
}

#[test]
fn slightly_taller_than_half_keeps_the_bottom_row() {
    // 1000 x 501 on 1024: content height ceil(501 * 1.024) = 514 > 512.
    let (placement, skip) = plan(1000, 501, &TileConfig::tiny_1k()).unwrap();
    assert_eq!(placement.height, 514);
    assert_eq!(skip.skipped_count(), 0);
}

#[test]
fn padding_cells_are_blank_far_from_the_page() {
    let page = RgbImage::from_pixel(900, 300, image::Rgb([10, 20, 30]));
    let tiled = tile_page(&page, &TileConfig::tiny_1k()).unwrap();
    assert_eq!(tiled.plan.flags(), &[false, false, true, true]);
    assert!(tiled.cell_is_blank(1, 0) && tiled.cell_is_blank(1, 1));
    assert!(!tiled.cell_is_blank(0, 0) && !tiled.cell_is_blank(0, 1));
    // Far from the content edge the canvas is exactly the pad colour.
    let top_right = tiled.cell(0, 1);
    assert_eq!(top_right.get_pixel(0, 500).0, PAD_RGB);
    assert_eq!(top_right.get_pixel(0, 0).0, [10, 20, 30]);
}

#[test]
fn bad_inputs_are_typed_errors() {
    let empty = RgbImage::new(0, 10);
    assert_eq!(
        tile_page(&empty, &TileConfig::tiny_1k()).unwrap_err(),
        TilingError::EmptyPage {
            width: 0,
            height: 10
        }
    );
    let bad = TileConfig::new(1000, 3);
    let page = RgbImage::new(10, 10);
    assert!(matches!(
        tile_page(&page, &bad),
        Err(TilingError::Config(_))
    ));
    assert!(matches!(plan(10, 10, &bad), Err(TilingError::Config(_))));
}
