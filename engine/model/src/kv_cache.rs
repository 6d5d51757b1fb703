//! The decoder's preallocated key/value cache: one buffer per layer, sized once per batch
//! shape, written in place (a slice per prefill, a column per decoded token), so decoding
//! never reallocates and a CUDA graph can replay a step over the same memory.

use tch::{Device, Kind, Tensor};

use crate::config::LlamaConfig;

/// Preallocated keys and values of every layer, `[batch, n_kv_heads, capacity, head_dim]`
/// each, so decoding writes one slice per token and never reallocates.
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
    len: i64,
    capacity: i64,
    batch: i64,
}

impl KvCache {
    /// Allocates room for `capacity` positions of `batch` sequences, every layer on
    /// `device` (a placed model needs `Llama::new_cache`).
    pub fn new(cfg: &LlamaConfig, batch: i64, capacity: i64, kind: Kind, device: Device) -> Self {
        let devices = vec![device; cfg.n_layers.max(0) as usize];
        Self::on_devices(cfg, batch, capacity, kind, &devices)
    }

    /// [`KvCache::new`] with layer `i` on `devices[i]`.
    pub fn on_devices(
        cfg: &LlamaConfig,
        batch: i64,
        capacity: i64,
        kind: Kind,
        devices: &[Device],
    ) -> Self {
        let shape = [batch, cfg.kv_heads(), capacity, cfg.head_dim()];
        let layers = devices
            .iter()
            .map(|&device| {
                (
                    Tensor::zeros(shape, (kind, device)),
                    Tensor::zeros(shape, (kind, device)),
                )
            })
            .collect();
        Self {
            layers,
            len: 0,
            capacity,
            batch,
        }
    }

    /// Positions already filled (the next call's `start_pos`).
    pub fn len(&self) -> i64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> i64 {
        self.capacity
    }

    pub fn batch(&self) -> i64 {
        self.batch
    }

    /// Layers it holds keys and values for (the model's, when built for it).
    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    /// Marks the first `len` positions filled (after a forward pass wrote them).
    pub(crate) fn set_len(&mut self, len: i64) {
        self.len = len;
    }

    /// Keys and values `[batch, n_kv_heads, capacity, head_dim]` of layer `i`.
    pub fn layer(&self, i: usize) -> (&Tensor, &Tensor) {
        let (k, v) = &self.layers[i];
        (k, v)
    }

    /// Forgets every position (the memory is kept for the next sequence).
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Row `slot` alone, as a batch-1 cache over the same memory: prefilling a row
    /// through it writes straight into this cache (continuous batching admits rows so).
    pub fn row(&self, slot: i64) -> KvCache {
        KvCache {
            layers: self
                .layers
                .iter()
                .map(|(k, v)| (k.narrow(0, slot, 1), v.narrow(0, slot, 1)))
                .collect(),
            len: 0,
            capacity: self.capacity,
            batch: 1,
        }
    }

    /// Copies the first `len` positions of every row of `from` (a cache of
    /// `slots.len()` rows, layer by layer on the same devices) into rows `slots` of this
    /// one: a group of rows prefilled together lands in its decode slots.
    pub fn copy_rows_from(&mut self, from: &KvCache, slots: &Tensor, len: i64) {
        for ((k, v), (fk, fv)) in self.layers.iter_mut().zip(&from.layers) {
            let at = slots.to_device(k.device());
            let _ = k
                .narrow(2, 0, len)
                .index_copy_(0, &at, &fk.narrow(2, 0, len));
            let _ = v
                .narrow(2, 0, len)
                .index_copy_(0, &at, &fv.narrow(2, 0, len));
        }
    }

    /// Writes one token's `k`, `v` (`[B, KV, 1, hd]`) of each row at that row's own
    /// column `cols[b]` (`index: [B, KV, 1, hd]` int64, the columns broadcast) and returns
    /// views of the first `keys` columns.
    pub(crate) fn write_columns(
        &mut self,
        layer: usize,
        index: &Tensor,
        keys: i64,
        k: &Tensor,
        v: &Tensor,
    ) -> (Tensor, Tensor) {
        let (kc, vc) = &mut self.layers[layer];
        let _ = kc.scatter_(2, index, k);
        let _ = vc.scatter_(2, index, v);
        (kc.narrow(2, 0, keys), vc.narrow(2, 0, keys))
    }

    /// Writes `k`, `v` (`[B, KV, T, hd]`) at `start` in layer `layer` and returns views
    /// of all keys and values up to `start + T`.
    pub(crate) fn append(
        &mut self,
        layer: usize,
        start: i64,
        k: &Tensor,
        v: &Tensor,
    ) -> (Tensor, Tensor) {
        let t = k.size()[2];
        let (kc, vc) = &mut self.layers[layer];
        kc.narrow(2, start, t).copy_(k);
        vc.narrow(2, start, t).copy_(v);
        (kc.narrow(2, 0, start + t), vc.narrow(2, 0, start + t))
    }
}
