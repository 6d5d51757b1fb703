//! Separable bicubic resampling that reproduces Pillow's `Image.resize(.., BICUBIC)`.
//!
//! SPHINX-X was trained on views made by PIL (`PadToSquare` then a bicubic resize in
//! LLaMA2-Accessory's `accessory/data/transform.py`), so the engine must feed the encoders
//! the same pixels. This follows Pillow's `src/libImaging/Resample.c` semantics: Keys'
//! cubic with `a = -0.5`, support widened by the scale factor when shrinking, weights
//! normalised to sum 1 in `f64` then quantised to [`PRECISION_BITS`] fixed point, a
//! horizontal pass into an 8-bit intermediate over only the rows the vertical pass reads,
//! then a vertical pass.
//!
//! The source is a [`PaddedSource`]: a page bitmap at the top-left of a larger virtual
//! image filled with one colour. Nothing of the padding is materialised: an output pixel
//! whose filter support lies entirely in padding is computed from the per-column weight
//! sums in O(1), and only pixels whose support touches the page run the filter loops.

use image::RgbImage;

/// Fixed-point bits of the quantised weights: Pillow's `PRECISION_BITS` (`32 - 8 - 2`:
/// 8 bits for the sample, 2 bits of headroom for negative lobes and overshoot).
pub const PRECISION_BITS: u32 = 22;
/// The bicubic kernel's free parameter in Pillow (`#define a -0.5`), i.e. Catmull-Rom.
pub const BICUBIC_A: f64 = -0.5;
/// Half-width of the bicubic kernel in source pixels at scale 1 (Pillow's `BICUBIC.support`).
pub const BICUBIC_SUPPORT: f64 = 2.0;
/// Channels of an `RgbImage` pixel.
const CHANNELS: usize = 3;
/// Rounding bias added before the shift: one half in fixed point.
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// Why a resize request cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResizeError {
    /// The virtual source is smaller than the page it contains, or empty.
    #[error("padded source {width}x{height} cannot hold a page of {page_width}x{page_height}")]
    SourceTooSmall {
        width: u32,
        height: u32,
        page_width: u32,
        page_height: u32,
    },
    /// The requested output has a zero dimension.
    #[error("output size {width}x{height} is empty")]
    EmptyOutput { width: u32, height: u32 },
}

/// A page bitmap placed at the top-left of a `width` x `height` image of colour `pad`.
#[derive(Debug, Clone, Copy)]
pub struct PaddedSource<'a> {
    page: &'a RgbImage,
    width: u32,
    height: u32,
    pad: [u8; 3],
}

impl<'a> PaddedSource<'a> {
    /// Wraps `page`; fails if the virtual image is empty or smaller than the page.
    pub fn new(
        page: &'a RgbImage,
        width: u32,
        height: u32,
        pad: [u8; 3],
    ) -> Result<Self, ResizeError> {
        if width == 0 || height == 0 || page.width() > width || page.height() > height {
            return Err(ResizeError::SourceTooSmall {
                width,
                height,
                page_width: page.width(),
                page_height: page.height(),
            });
        }
        Ok(Self {
            page,
            width,
            height,
            pad,
        })
    }

    /// Materialises the padded image (what PIL's `PadToSquare` returns); used when no
    /// resampling is needed and by tests.
    pub fn to_image(&self) -> RgbImage {
        let mut out = RgbImage::from_pixel(self.width, self.height, image::Rgb(self.pad));
        let row = self.page.width() as usize * CHANNELS;
        let out_stride = self.width as usize * CHANNELS;
        // `chunks` of an empty page yields nothing, so an empty page is all padding.
        for (y, src) in self.page.as_raw().chunks(row.max(1)).enumerate() {
            out.as_mut()[y * out_stride..y * out_stride + row].copy_from_slice(src);
        }
        out
    }
}

/// Quantised filter taps for one axis: for output index `i`, source samples
/// `start[i] .. start[i] + len[i]` weighted by `weights[i * ksize ..][.. len[i]]`.
struct Taps {
    start: Vec<usize>,
    len: Vec<usize>,
    ksize: usize,
    weights: Vec<i32>,
}

impl Taps {
    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for a full-range box.
    fn new(in_size: usize, out_size: usize) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = BICUBIC_SUPPORT * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let inv = 1.0 / filterscale;
        let mut start = Vec::with_capacity(out_size);
        let mut len = Vec::with_capacity(out_size);
        let mut weights = vec![0i32; out_size * ksize];
        let mut real = vec![0f64; ksize];
        for i in 0..out_size {
            let center = (i as f64 + 0.5) * scale;
            // `as i64` truncates toward zero exactly like C's `(int)` cast.
            let lo = ((center - support + 0.5) as i64).max(0) as usize;
            let hi = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = hi.saturating_sub(lo).min(ksize);
            let mut sum = 0.0;
            for (x, w) in real.iter_mut().enumerate().take(n) {
                *w = bicubic((x as f64 + lo as f64 - center + 0.5) * inv);
                sum += *w;
            }
            let row = &mut weights[i * ksize..i * ksize + n];
            for (q, &w) in row.iter_mut().zip(&real) {
                let w = if sum != 0.0 { w / sum } else { w };
                *q = quantise(w);
            }
            start.push(lo);
            len.push(n);
        }
        Self {
            start,
            len,
            ksize,
            weights,
        }
    }

    fn weights(&self, i: usize) -> &[i32] {
        &self.weights[i * self.ksize..i * self.ksize + self.len[i]]
    }

    /// Sum of the weights of output `i` over source samples `from..`.
    fn tail_sum(&self, i: usize, from: usize) -> i32 {
        let skip = from.saturating_sub(self.start[i]).min(self.len[i]);
        self.weights(i)[skip..].iter().sum()
    }

    /// Number of leading outputs whose support reaches into source samples `< limit`.
    /// Supports move monotonically right, so these form a prefix.
    fn prefix_touching(&self, limit: usize) -> usize {
        self.start.partition_point(|&s| s < limit)
    }
}

/// Keys' cubic convolution kernel with Pillow's `a = -0.5`, written as Pillow evaluates it
/// so the `f64` weights round identically.
fn bicubic(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        ((BICUBIC_A + 2.0) * x - (BICUBIC_A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * BICUBIC_A
    } else {
        0.0
    }
}

/// Round-half-away-from-zero to fixed point, as `normalize_coeffs_8bpc` does.
fn quantise(w: f64) -> i32 {
    let scaled = w * f64::from(1u32 << PRECISION_BITS);
    if w < 0.0 {
        (scaled - 0.5) as i32
    } else {
        (scaled + 0.5) as i32
    }
}

/// Pillow's `clip8`: drop the fraction and saturate to a byte.
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes the padded source to `out_width` x `out_height` exactly as
/// `PIL.Image.resize((out_width, out_height), Image.BICUBIC)` would resize the padded image.
pub fn resize_padded(
    src: &PaddedSource<'_>,
    out_width: u32,
    out_height: u32,
) -> Result<RgbImage, ResizeError> {
    if out_width == 0 || out_height == 0 {
        return Err(ResizeError::EmptyOutput {
            width: out_width,
            height: out_height,
        });
    }
    if out_width == src.width && out_height == src.height {
        // Pillow returns a copy when the size is unchanged.
        return Ok(src.to_image());
    }
    let (ow, oh) = (out_width as usize, out_height as usize);
    let (pw, ph) = (src.page.width() as usize, src.page.height() as usize);
    let horizontal = Axis::new(src.width as usize, ow, pw);
    let vertical = Axis::new(src.height as usize, oh, ph);

    // Horizontal pass over the page rows the vertical pass reads (Pillow's ybox range,
    // clipped to the page: rows below it are padding and handled through `pad_row`).
    let (row_first, row_last) = match &vertical.taps {
        Some(t) => (t.start[0], (t.start[oh - 1] + t.len[oh - 1]).min(ph)),
        None => (0, ph),
    };
    let rows = row_last.saturating_sub(row_first);
    let live_cols = horizontal.live;
    let mut mid = vec![0u8; rows * live_cols * CHANNELS];
    // The intermediate value of a padding row (and of a page row past `live_cols`).
    let mut pad_row = vec![0u8; ow * CHANNELS];
    match &horizontal.taps {
        Some(t) => {
            for x in 0..ow {
                let full: i32 = t.weights(x).iter().sum();
                for c in 0..CHANNELS {
                    pad_row[x * CHANNELS + c] = clip8(HALF + i32::from(src.pad[c]) * full);
                }
            }
            let raw = src.page.as_raw();
            for (r, out) in mid.chunks_mut((live_cols * CHANNELS).max(1)).enumerate() {
                let y = row_first + r;
                let line = &raw[y * pw * CHANNELS..(y + 1) * pw * CHANNELS];
                horizontal_row(line, pw, src.pad, t, out);
            }
        }
        None => {
            for x in 0..ow {
                pad_row[x * CHANNELS..(x + 1) * CHANNELS].copy_from_slice(&src.pad);
            }
            let raw = src.page.as_raw();
            for (r, out) in mid.chunks_mut((live_cols * CHANNELS).max(1)).enumerate() {
                let y = row_first + r;
                out.copy_from_slice(&raw[y * pw * CHANNELS..(y + 1) * pw * CHANNELS]);
            }
        }
    }

    let mut out = RgbImage::new(out_width, out_height);
    let stride = ow * CHANNELS;
    let buf: &mut [u8] = out.as_mut();
    match &vertical.taps {
        Some(t) => {
            let mut acc = vec![0i32; live_cols * CHANNELS];
            for (yy, line) in buf.chunks_exact_mut(stride).enumerate() {
                let weights = t.weights(yy);
                let start = t.start[yy];
                // Weight that falls on padding rows (below the page).
                let pad_weight = t.tail_sum(yy, ph.max(start));
                let full: i32 = weights.iter().sum();
                // Columns past `live_cols` see padding in every row.
                for x in live_cols..ow {
                    for c in 0..CHANNELS {
                        line[x * CHANNELS + c] =
                            clip8(HALF + i32::from(pad_row[x * CHANNELS + c]) * full);
                    }
                }
                if live_cols == 0 {
                    continue;
                }
                let page_taps = ph.saturating_sub(start).min(weights.len());
                for (i, a) in acc.iter_mut().enumerate() {
                    *a = HALF + i32::from(pad_row[i]) * pad_weight;
                }
                for (j, &w) in weights.iter().enumerate().take(page_taps) {
                    let r = start + j - row_first;
                    let src_row = &mid[r * live_cols * CHANNELS..(r + 1) * live_cols * CHANNELS];
                    for (a, &v) in acc.iter_mut().zip(src_row) {
                        *a += i32::from(v) * w;
                    }
                }
                for (o, &a) in line[..live_cols * CHANNELS].iter_mut().zip(&acc) {
                    *o = clip8(a);
                }
            }
        }
        None => {
            for (y, line) in buf.chunks_exact_mut(stride).enumerate() {
                if y < ph {
                    let r = y - row_first;
                    line[..live_cols * CHANNELS].copy_from_slice(
                        &mid[r * live_cols * CHANNELS..(r + 1) * live_cols * CHANNELS],
                    );
                    line[live_cols * CHANNELS..].copy_from_slice(&pad_row[live_cols * CHANNELS..]);
                } else {
                    line.copy_from_slice(&pad_row);
                }
            }
        }
    }
    Ok(out)
}

/// One axis of the resize: its taps (None when the size is unchanged, as Pillow skips
/// that pass) and how many leading outputs depend on page samples.
struct Axis {
    taps: Option<Taps>,
    live: usize,
}

impl Axis {
    fn new(in_size: usize, out_size: usize, page_size: usize) -> Self {
        if in_size == out_size {
            return Self {
                taps: None,
                live: page_size,
            };
        }
        let taps = Taps::new(in_size, out_size);
        let live = taps.prefix_touching(page_size);
        Self {
            taps: Some(taps),
            live,
        }
    }
}

/// Horizontal pass of one page row into `out` (the first `out.len() / 3` outputs, all of
/// which touch the page); samples past the page width are `pad`.
fn horizontal_row(line: &[u8], page_width: usize, pad: [u8; 3], taps: &Taps, out: &mut [u8]) {
    for (x, px) in out.chunks_exact_mut(CHANNELS).enumerate() {
        let start = taps.start[x];
        let weights = taps.weights(x);
        let inside = page_width.saturating_sub(start).min(weights.len());
        let (page_w, pad_w) = weights.split_at(inside);
        let pad_weight: i32 = pad_w.iter().sum();
        let mut acc = [
            HALF + i32::from(pad[0]) * pad_weight,
            HALF + i32::from(pad[1]) * pad_weight,
            HALF + i32::from(pad[2]) * pad_weight,
        ];
        let samples = &line[start * CHANNELS..(start + inside) * CHANNELS];
        for (s, &w) in samples.chunks_exact(CHANNELS).zip(page_w) {
            acc[0] += i32::from(s[0]) * w;
            acc[1] += i32::from(s[1]) * w;
            acc[2] += i32::from(s[2]) * w;
        }
        px[0] = clip8(acc[0]);
        px[1] = clip8(acc[1]);
        px[2] = clip8(acc[2]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward two-pass resize of a materialised image, Pillow's loop order, used
    /// to check that the padding shortcuts change no pixel.
    fn naive(img: &RgbImage, ow: usize, oh: usize) -> RgbImage {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let th = Taps::new(w, ow);
        let tv = Taps::new(h, oh);
        let first = tv.start[0];
        let last = tv.start[oh - 1] + tv.len[oh - 1];
        let mut mid = vec![0u8; (last - first) * ow * 3];
        for y in first..last {
            for x in 0..ow {
                for c in 0..3 {
                    let mut acc = HALF;
                    for (j, &k) in th.weights(x).iter().enumerate() {
                        acc += i32::from(img.as_raw()[(y * w + th.start[x] + j) * 3 + c]) * k;
                    }
                    mid[((y - first) * ow + x) * 3 + c] = clip8(acc);
                }
            }
        }
        let mut out = RgbImage::new(ow as u32, oh as u32);
        for y in 0..oh {
            for x in 0..ow {
                for c in 0..3 {
                    let mut acc = HALF;
                    for (j, &k) in tv.weights(y).iter().enumerate() {
                        acc += i32::from(mid[((tv.start[y] - first + j) * ow + x) * 3 + c]) * k;
                    }
                    out.as_mut()[(y * ow + x) * 3 + c] = clip8(acc);
                }
            }
        }
        out
    }

    fn noise(w: u32, h: u32, seed: u32) -> RgbImage {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        RgbImage::from_fn(w, h, |_, _| {
            let mut px = [0u8; 3];
            for v in &mut px {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                *v = (s >> 24) as u8;
            }
            image::Rgb(px)
        })
    }

    #[test]
    fn padding_shortcuts_match_the_plain_two_pass_loops() {
        let pad = [123, 117, 104];
        for &(pw, ph, sw, sh, ow, oh) in &[
            (37, 20, 37, 37, 16, 16),
            (20, 37, 37, 37, 64, 64),
            (50, 50, 50, 50, 13, 13),
            (31, 9, 40, 33, 17, 29),
            (64, 30, 64, 64, 64, 32),
            (64, 30, 64, 64, 32, 64),
            (3, 2, 90, 90, 11, 11),
        ] {
            let page = noise(pw, ph, pw * 31 + ph);
            let src = PaddedSource::new(&page, sw, sh, pad).unwrap();
            let fast = resize_padded(&src, ow, oh).unwrap();
            let slow = naive(&src.to_image(), ow as usize, oh as usize);
            assert_eq!(fast, slow, "page {pw}x{ph} in {sw}x{sh} -> {ow}x{oh}");
        }
    }

    #[test]
    fn all_padding_output_is_exactly_the_pad_colour() {
        let page = noise(10, 10, 7);
        let src = PaddedSource::new(&page, 400, 400, [123, 117, 104]).unwrap();
        let out = resize_padded(&src, 100, 100).unwrap();
        // Source rows/cols >= 20 are far outside the page's reach (support 2 * 4 = 8 px).
        for y in 10..100 {
            for x in 10..100 {
                assert_eq!(out.get_pixel(x, y).0, [123, 117, 104], "({x},{y})");
            }
        }
        assert_ne!(out.get_pixel(0, 0).0, [123, 117, 104]);
    }

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for &(i, o) in &[(1000, 512), (512, 1000), (7, 3), (4000, 224)] {
            let t = Taps::new(i, o);
            for x in 0..o {
                let s: i32 = t.weights(x).iter().sum();
                assert!(
                    (s - (1 << PRECISION_BITS)).abs() <= t.ksize as i32,
                    "{i}->{o} at {x}: {s}"
                );
            }
        }
    }

    #[test]
    fn bad_sizes_are_typed_errors() {
        let page = noise(10, 10, 1);
        assert!(matches!(
            PaddedSource::new(&page, 5, 10, [0; 3]),
            Err(ResizeError::SourceTooSmall { .. })
        ));
        let src = PaddedSource::new(&page, 10, 10, [0; 3]).unwrap();
        assert_eq!(
            resize_padded(&src, 0, 4),
            Err(ResizeError::EmptyOutput {
                width: 0,
                height: 4
            })
        );
    }
}
