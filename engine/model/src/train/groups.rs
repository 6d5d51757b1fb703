//! Which part of the model a parameter belongs to, by its checkpoint name: what the
//! trainer freezes, which learning-rate factor applies, and the per-part gradient norms
//! of the metrics. Names, not module handles, because the optimizer and the checkpoints
//! know parameters by name.

use crate::param_names;

/// Whether a parameter belongs to one of the MoV encoders (frozen unless
/// `train_vision`).
pub(crate) fn is_encoder_param(name: &str) -> bool {
    use crate::mov::ENCODER_NAMES;
    ENCODER_NAMES.iter().any(|encoder| {
        param_names::below_root(name)
            .and_then(|rest| rest.strip_prefix(encoder))
            .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// Which part of the model a parameter belongs to (for learning-rate factors and the
/// per-part gradient norms in the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    /// The two MoV encoders.
    Encoders,
    /// `visual_proj` and the image tags (start/end/skip).
    Projector,
    /// Everything else: the LLM.
    Llm,
}

/// The group of the parameter `name`.
pub(crate) fn param_group(name: &str) -> Group {
    let rest = param_names::below_root(name).unwrap_or(name);
    if is_encoder_param(name) {
        Group::Encoders
    } else if rest.starts_with("visual_proj.")
        || ["start_img", "end_img", "skip_token"].contains(&rest)
    {
        Group::Projector
    } else {
        Group::Llm
    }
}

#[cfg(test)]
mod tests {
    use super::{is_encoder_param, param_group, Group};

    #[test]
    fn parameter_groups() {
        assert_eq!(
            param_group("llma.openclip_convnext_xxl.stem.0.weight"),
            Group::Encoders
        );
        assert_eq!(param_group("llma.dinov2_vitg14.cls_token"), Group::Encoders);
        assert_eq!(param_group("llma.visual_proj.1.bias"), Group::Projector);
        assert_eq!(param_group("llma.skip_token"), Group::Projector);
        assert_eq!(param_group("llma.start_img"), Group::Projector);
        assert_eq!(param_group("llma.layers.0.attention.wq.weight"), Group::Llm);
        assert_eq!(param_group("llma.tok_embeddings.weight"), Group::Llm);
    }

    #[test]
    fn encoder_params_are_the_two_encoders_and_nothing_else() {
        assert!(is_encoder_param("llma.openclip_convnext_xxl.stem.0.weight"));
        assert!(is_encoder_param("llma.dinov2_vitg14.pos_embed"));
        for other in [
            "llma.visual_proj.0.weight",
            "llma.openclip_convnext_xxl_extra.weight",
            "openclip_convnext_xxl.stem.0.weight",
            "llma.layers.0.attention.wq.weight",
        ] {
            assert!(!is_encoder_param(other), "{other}");
        }
    }
}
