//! Learning rate per optimizer step: linear warmup, then half a cosine down to `min_lr`.
//!
//! The formula of the reference's `adjust_learning_rate` (LLaMA2-Accessory
//! `accessory/util/lr_sched.py`) with iterations counted in optimizer steps: step `s`
//! (0-based) gets `lr * s / warmup` during warmup (so the very first step is taken at
//! lr 0, as there), then `min_lr + (lr - min_lr) * (1 + cos(pi * (s - warmup) /
//! (total - warmup))) / 2`. A pure function of the step, so resuming needs only the step.

use serde::{Deserialize, Serialize};

/// Warmup + cosine schedule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub lr: f64,
    pub min_lr: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl Schedule {
    /// Learning rate for 0-based optimizer step `step`.
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.lr * step as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        self.min_lr
            + (self.lr - self.min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        let s = Schedule {
            lr: 1.0,
            min_lr: 0.1,
            warmup_steps: 4,
            total_steps: 14,
        };
        assert_eq!(s.lr_at(0), 0.0);
        assert_eq!(s.lr_at(2), 0.5);
        assert_eq!(s.lr_at(4), 1.0);
        assert!((s.lr_at(9) - 0.55).abs() < 1e-12);
        assert!((s.lr_at(14) - 0.1).abs() < 1e-12);
        assert!((s.lr_at(100) - 0.1).abs() < 1e-12);
    }
}
