//! Optional scan-like degradation, applied after the boxes are measured: a light blur
//! (which spreads ink by [`BLUR_RADIUS`] pixels, so boxes grow by that much) and
//! uniform per-pixel noise of at most [`NOISE_AMPLITUDE`] levels.

use super::canvas::Canvas;
use super::rng::PageRng;

/// Radius of the box blur in pixels (a 3x3 kernel).
pub const BLUR_RADIUS: u32 = 1;
/// Largest change noise makes to a channel, in 8-bit levels: visible, but far below the
/// contrast between ink and paper.
pub const NOISE_AMPLITUDE: u8 = 8;
/// Share of noisy pages that are also blurred.
const BLUR_PROBABILITY: f64 = 0.5;

/// Degrades the page; returns whether it was blurred (boxes must then grow by
/// [`BLUR_RADIUS`]).
pub fn degrade(canvas: &mut Canvas, rng: &mut PageRng) -> bool {
    let blurred = rng.chance(BLUR_PROBABILITY);
    let (w, h) = (canvas.width() as usize, canvas.height() as usize);
    if blurred {
        box_blur(canvas.rgb_mut(), w, h);
    }
    // One 64-bit draw gives eight channel offsets: each byte b maps to b * span / 256
    // in 0..span (a bias of under 1/256 of a level, invisible in noise).
    let span = u16::from(NOISE_AMPLITUDE) * 2 + 1;
    for chunk in canvas.rgb_mut().chunks_mut(8) {
        let bytes = rng.next_u64().to_le_bytes();
        for (v, b) in chunk.iter_mut().zip(bytes) {
            let delta = ((u16::from(b) * span) >> 8) as i16 - i16::from(NOISE_AMPLITUDE);
            *v = (i16::from(*v) + delta).clamp(0, 255) as u8;
        }
    }
    blurred
}

/// 3x3 mean filter with edge pixels averaged over the neighbours that exist.
fn box_blur(rgb: &mut [u8], w: usize, h: usize) {
    let src = rgb.to_vec();
    let r = BLUR_RADIUS as usize;
    for y in 0..h {
        let (y0, y1) = (y.saturating_sub(r), (y + r).min(h - 1));
        for x in 0..w {
            let (x0, x1) = (x.saturating_sub(r), (x + r).min(w - 1));
            let n = ((y1 - y0 + 1) * (x1 - x0 + 1)) as u32;
            for c in 0..3 {
                let mut sum = 0u32;
                for yy in y0..=y1 {
                    for xx in x0..=x1 {
                        sum += u32::from(src[(yy * w + xx) * 3 + c]);
                    }
                }
                rgb[(y * w + x) * 3 + c] = ((sum + n / 2) / n) as u8;
            }
        }
    }
}
