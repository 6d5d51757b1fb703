//! The reference's parameter names. Every tensor of a SPHINX checkpoint sits below the
//! `MetaModel` attribute `llma`; loading, placement and training all read names by this
//! one rule, so it lives apart from the model that declares them.

/// The model root's name (the reference `MetaModel` attribute): every parameter is below it.
pub const ROOT_NAME: &str = "llma";

/// `name` without the root (`llma.layers.0.x` -> `layers.0.x`); `None` for a name that is
/// not below it.
pub fn below_root(name: &str) -> Option<&str> {
    name.strip_prefix(ROOT_NAME)?.strip_prefix('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_the_root_and_only_the_root() {
        assert_eq!(
            below_root("llma.layers.0.attention.wq.weight"),
            Some("layers.0.attention.wq.weight")
        );
        assert_eq!(below_root("llma.start_img"), Some("start_img"));
        assert_eq!(below_root("llmax.start_img"), None);
        assert_eq!(below_root("layers.0.attention.wq.weight"), None);
        assert_eq!(below_root("llma"), None);
    }
}
