//! AdamW on plain tch tensors, so its whole state can be checkpointed and restored.
//!
//! Why not `tch::nn::Optimizer`: libtorch's optimizer state (moments, step) is not
//! reachable from tch, so a resumed run would restart Adam from zero moments and drift
//! from an uninterrupted one. The update is `torch.optim.AdamW`'s single-tensor path,
//! operation for operation (decoupled decay `p *= 1 - lr * wd`, moments
//! `m = lerp(m, g, 1 - b1)`, `v = b2 v + (1 - b2) g^2`, `p -= lr / (1 - b1^t) * m /
//! (sqrt(v) / sqrt(1 - b2^t) + eps)`), checked against PyTorch by
//! `tests/train_adamw_parity.rs`.
//!
//! Parameters stored in bf16 (the GPU path) keep a float32 master copy here: the update
//! runs on the master and is copied back, so small updates are not lost to rounding.
//!
//! Weight decay follows the reference's `add_weight_decay` (LLaMA2-Accessory
//! `accessory/util/misc.py`): no decay on biases and on 1-D parameters (norm weights);
//! here also none on the learned `[1, 1, dim]` image tags and the token embeddings
//! (embedding-like tables, which the reference's models list in `no_weight_decay`).

use tch::{Kind, Tensor};

/// AdamW hyper-parameters (PyTorch defaults for betas and eps).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        // torch.optim.AdamW defaults, except betas (0.9, 0.95) as the reference's
        // main_finetune.py sets them.
        Self {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// True when the reference would exempt parameter `name` of `shape` from weight decay.
pub fn no_weight_decay(name: &str, shape: &[i64]) -> bool {
    shape.len() <= 1
        || name.ends_with(".bias")
        || name.ends_with("start_img")
        || name.ends_with("end_img")
        || name.ends_with("skip_token")
        || name.ends_with("tok_embeddings.weight")
}

/// One trainable parameter and its optimizer state.
#[derive(Debug)]
pub struct ParamState {
    pub name: String,
    /// The model's variable (float32 or bf16).
    pub param: Tensor,
    /// Float32 copy updated in place of a reduced-precision `param`; `None` for float32.
    pub master: Option<Tensor>,
    pub exp_avg: Tensor,
    pub exp_avg_sq: Tensor,
    pub decay: bool,
    /// Factor on the step's learning rate for this parameter (1 by default).
    pub lr_scale: f64,
}

/// AdamW over named parameters.
#[derive(Debug)]
pub struct AdamW {
    pub config: AdamWConfig,
    pub params: Vec<ParamState>,
    /// Optimizer steps taken (PyTorch's per-parameter `step`, shared here).
    pub step: u64,
}

impl AdamW {
    /// State for `params` (name, variable); decay per [`no_weight_decay`].
    pub fn new(config: AdamWConfig, params: Vec<(String, Tensor)>) -> Self {
        let params = params
            .into_iter()
            .map(|(name, param)| {
                let master =
                    (param.kind() != Kind::Float).then(|| param.detach().to_kind(Kind::Float));
                let zeros = || param.zeros_like().to_kind(Kind::Float);
                ParamState {
                    decay: !no_weight_decay(&name, &param.size()),
                    lr_scale: 1.0,
                    exp_avg: zeros(),
                    exp_avg_sq: zeros(),
                    name,
                    master,
                    param,
                }
            })
            .collect();
        Self {
            config,
            params,
            step: 0,
        }
    }

    /// Zeroes every gradient (before accumulating the next step's).
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut g = p.param.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// L2 norm of all gradients together (float32), as `clip_grad_norm_` computes it.
    pub fn grad_norm(&self) -> f64 {
        let squares: Vec<Tensor> = self
            .params
            .iter()
            .filter_map(|p| {
                let g = p.param.grad();
                g.defined()
                    .then(|| g.to_kind(Kind::Float).square().sum(Kind::Float))
            })
            .collect();
        if squares.is_empty() {
            return 0.0;
        }
        Tensor::stack(&squares, 0)
            .sum(Kind::Float)
            .sqrt()
            .double_value(&[])
    }

    /// Scales gradients so their global norm is at most `max_norm` (PyTorch's
    /// `clip_grad_norm_`: factor `max_norm / (norm + 1e-6)` when that is below 1); returns
    /// the norm before clipping.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let norm = self.grad_norm();
        let coef = max_norm / (norm + 1e-6);
        if max_norm > 0.0 && coef < 1.0 {
            for p in &mut self.params {
                let mut g = p.param.grad();
                if g.defined() {
                    let _ = g.g_mul_scalar_(coef);
                }
            }
        }
        norm
    }

    /// One AdamW update at learning rate `lr` with the current gradients.
    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bias_correction1 = 1.0 - c.beta1.powi(t);
        let bias_correction2 = 1.0 - c.beta2.powi(t);
        let bias_correction2_sqrt = bias_correction2.sqrt();
        let base_lr = lr;
        tch::no_grad(|| {
            for p in &mut self.params {
                let lr = base_lr * p.lr_scale;
                let step_size = lr / bias_correction1;
                let grad = p.param.grad();
                if !grad.defined() {
                    continue;
                }
                let grad = grad.to_kind(Kind::Float);
                let mut target = match &p.master {
                    Some(m) => m.shallow_clone(),
                    None => p.param.shallow_clone(),
                };
                if p.decay && c.weight_decay != 0.0 {
                    let _ = target.g_mul_scalar_(1.0 - lr * c.weight_decay);
                }
                let _ = p.exp_avg.lerp_(&grad, 1.0 - c.beta1);
                let _ = p.exp_avg_sq.g_mul_scalar_(c.beta2);
                let _ = p.exp_avg_sq.addcmul_(&(&grad * (1.0 - c.beta2)), &grad);
                let denom = (p.exp_avg_sq.sqrt() / bias_correction2_sqrt) + c.eps;
                let _ = target.addcdiv_(&(&p.exp_avg * -step_size), &denom);
                if p.master.is_some() {
                    p.param.copy_(&target);
                }
            }
        });
    }
}
