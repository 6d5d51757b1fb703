//! The views of a page, as the reference's `encode_image` cuts them: the padded canvas
//! (8-bit, as the tiler made it) normalized with CLIP's statistics, then the global view
//! and the sub-images of the grid at each encoder's resolution, leaving out the
//! sub-images a skip-token model replaces by its skip token. What the encoders do with
//! them is [`crate::mov`].

use tch::{Kind, Tensor};

use crate::mov::{MovConfig, MovViews, ViewLayout, CLIP_MEAN, CLIP_STD};
use crate::vision_error::VisionError;

fn bicubic(x: &Tensor, side: i64) -> Tensor {
    x.upsample_bicubic2d([side, side], false, None, None)
}

/// Checks `x` is `[3, side, side]` (one CLIP-normalized canvas) and returns it as a batch of 1.
fn check_canvas(x: &Tensor, side: i64) -> Result<Tensor, VisionError> {
    let size = x.size();
    if size != [3, side, side] {
        return Err(VisionError::Shape(format!(
            "page canvas must be [3, {side}, {side}] (CLIP-normalized), got {size:?}"
        )));
    }
    Ok(x.unsqueeze(0))
}

/// Builds the views of one page the way the reference's `encode_image` does, leaving out
/// sub-images the skip plan replaces by a skip token.
///
/// `canvas` is the CLIP-normalized padded page `[3, S, S]` with `S =`
/// [`MovConfig::canvas_size`]; `skipped[i]` says whether sub-image `i` (row-major) is
/// skipped (empty for [`ViewLayout::Single`]). For the 2x2 layout this is exactly
/// `llama_ens5_light.py`: ConvNeXt sees the canvas resized to 512 then the 512 px quarters;
/// DINOv2 sees the canvas resized to 224, then the 224 px quarters of the canvas resized
/// to 448. For one view it is `llama_ens_light.py`: ConvNeXt sees the canvas, DINOv2 the
/// canvas resized to 224.
pub fn views_from_canvas(
    cfg: &MovConfig,
    canvas: &Tensor,
    skipped: &[bool],
) -> Result<MovViews, VisionError> {
    let (cs, ds) = (cfg.convnext_size, cfg.dinov2_size);
    let page = check_canvas(canvas, cfg.canvas_size())?;
    let sub_slots = cfg.layout.slots() - 1;
    if skipped.len() != sub_slots {
        return Err(VisionError::Shape(format!(
            "skip plan has {} entries but the {:?} layout has {sub_slots} sub-images",
            skipped.len(),
            cfg.layout
        )));
    }
    let views = match cfg.layout {
        ViewLayout::Single => MovViews {
            convnext: page.shallow_clone(),
            dinov2: bicubic(&page, ds),
        },
        ViewLayout::GlobalAndGrid { grid } => {
            // With `convnext_on_small_views` ConvNeXt's views are derived below instead.
            let own = !cfg.small_views_convnext();
            let mut convnext = vec![bicubic(&page, cs)];
            let mut dinov2 = vec![bicubic(&page, ds)];
            // `llama_ens5.py` crops its 448 px canvas directly.
            let dino_canvas = if cfg.canvas_size() == grid * ds {
                page.shallow_clone()
            } else {
                bicubic(&page, grid * ds)
            };
            for (i, _) in skipped.iter().enumerate().filter(|(_, &s)| !s) {
                let (row, col) = (i as i64 / grid, i as i64 % grid);
                let crop = |x: &Tensor, side: i64| {
                    x.narrow(2, row * side, side).narrow(3, col * side, side)
                };
                if own {
                    convnext.push(crop(&page, cs));
                }
                dinov2.push(crop(&dino_canvas, ds));
            }
            MovViews {
                convnext: Tensor::cat(&convnext, 0),
                dinov2: Tensor::cat(&dinov2, 0),
            }
        }
    };
    if !cfg.small_views_convnext() {
        return Ok(views);
    }
    // `F.interpolate(local_image, size=(256, 256))`: the default mode, nearest.
    let convnext = views
        .dinov2
        .upsample_nearest2d([cs, cs], None::<f64>, None::<f64>);
    Ok(MovViews {
        convnext,
        dinov2: views.dinov2,
    })
}

/// `[3, H, W]` uint8 of an RGB8 page canvas (as the tiler made it).
pub fn canvas_tensor(img: &image::RgbImage) -> Tensor {
    let (w, h) = img.dimensions();
    Tensor::from_slice(img.as_raw())
        .view([i64::from(h), i64::from(w), 3])
        .permute([2, 0, 1])
        .contiguous()
}

/// An 8-bit canvas `[3, S, S]` (uint8) -> float32, CLIP-normalized, exactly as the
/// reference's `ToTensor` (`x / 255`) then `Normalize` (`(x - mean) / std`), on the
/// canvas's device.
pub fn normalize_canvas(canvas: &Tensor) -> Result<Tensor, VisionError> {
    let size = canvas.size();
    if canvas.kind() != Kind::Uint8 || size.len() != 3 || size[0] != 3 {
        return Err(VisionError::Shape(format!(
            "page canvas must be [3, S, S] uint8, got {:?} {size:?}",
            canvas.kind()
        )));
    }
    let dev = canvas.device();
    let f32s = |v: [f32; 3]| Tensor::from_slice(&v).view([3, 1, 1]).to_device(dev);
    let x = canvas.to_kind(Kind::Float) / 255.0;
    Ok((x - f32s(CLIP_MEAN)) / f32s(CLIP_STD))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn skipped_sub_images_are_left_out_in_order() {
        let cfg = MovConfig::tiny_test();
        // Each quarter of the canvas holds a distinct constant, so crops are identifiable.
        let quarter = |v: f64| Tensor::full([3, 128, 128], v, (Kind::Float, Device::Cpu));
        let top = Tensor::cat(&[quarter(1.0), quarter(2.0)], 2);
        let bottom = Tensor::cat(&[quarter(3.0), quarter(4.0)], 2);
        let canvas = Tensor::cat(&[top, bottom], 1);
        let views = views_from_canvas(&cfg, &canvas, &[false, true, false, true]).unwrap();
        assert_eq!(views.convnext.size(), vec![3, 3, 128, 128]);
        assert_eq!(views.dinov2.size(), vec![3, 3, 56, 56]);
        let corner = |t: &Tensor, i: i64| t.get(i).double_value(&[0, 0, 0]);
        assert_eq!(corner(&views.convnext, 1), 1.0);
        assert_eq!(corner(&views.convnext, 2), 3.0);
        // DINOv2 crops come from the resized canvas, so only their centre is unmixed.
        let centre = views.dinov2.get(2).double_value(&[0, 28, 28]);
        assert!((centre - 3.0).abs() < 1e-5, "{centre}");
    }

    #[test]
    fn canvas_normalisation_is_to_tensor_then_normalize() {
        let canvas = Tensor::from_slice(&[0u8, 122, 255, 116, 104, 7]).view([3, 1, 2]);
        let x = normalize_canvas(&canvas).unwrap();
        assert_eq!(x.kind(), Kind::Float);
        for (c, i, byte) in [(0, 0, 0u8), (0, 1, 122), (1, 0, 255), (2, 1, 7)] {
            let want = (f32::from(byte) / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c];
            let got = x.double_value(&[c as i64, 0, i]) as f32;
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
        assert!(normalize_canvas(&Tensor::zeros([3, 4, 4], (Kind::Float, Device::Cpu))).is_err());
    }

    #[test]
    fn rejects_bad_canvas_and_plan() {
        let cfg = MovConfig::tiny_test();
        let canvas = Tensor::zeros([3, 256, 256], (Kind::Float, Device::Cpu));
        let err = views_from_canvas(&cfg, &canvas, &[false])
            .unwrap_err()
            .to_string();
        assert!(err.contains("skip plan"), "{err}");
        let small = Tensor::zeros([3, 200, 256], (Kind::Float, Device::Cpu));
        let err = views_from_canvas(&cfg, &small, &[false; 4])
            .unwrap_err()
            .to_string();
        assert!(err.contains("canvas"), "{err}");
    }
}
