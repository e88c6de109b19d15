"""TopK training SAE that touches only the k active features: sparse decode and, in its
training step, a sparse encoder backward (interp.sae.fused_topk).

SAELens's `TopKTrainingSAE` decodes the dense [B, d_sae] activations with a
dense matmul, although only k per row are non-zero. Here the encoder keeps the
top-k (values, indices) it computes anyway, and the decoder is an
`embedding_bag` sum of those k rows weighted by their values: forward and
backward cost O(B·k·d_in) instead of O(B·d_sae·d_in). Everything else (the
TopK rule, decoder-norm rescaling, auxiliary dead-feature loss, the saved
format) is SAELens's, so a saved SAE loads as a plain SAELens `TopKSAE`. The sparse decode
below is what runs when the fused training step does not apply (e.g. hooks attached).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from sae_lens import TopKTrainingSAE

from interp.sae.architectures import fast_step
from interp.sae.fused_topk import SparseTopKStepMixin


@fast_step("topk", "sparse_decode")
class SparseDecodeTopKTrainingSAE(SparseTopKStepMixin, TopKTrainingSAE):
    _active: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None   # (dense acts, idx, vals)

    def encode_with_hidden_pre(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sae_in = self.process_sae_in(x)
        hidden_pre = self.hook_sae_acts_pre(sae_in @ self.W_enc + self.b_enc)
        if self.cfg.rescale_acts_by_decoder_norm:
            hidden_pre = hidden_pre * self.W_dec.norm(dim=-1)
        vals, idx = torch.topk(hidden_pre, k=self.cfg.k, dim=-1, sorted=False)
        vals = vals.relu()
        feature_acts = self.hook_sae_acts_post(torch.zeros_like(hidden_pre).scatter(-1, idx, vals))
        self._active = (feature_acts, idx, vals)
        return feature_acts, hidden_pre

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        active = self._active
        if active is None or active[0] is not feature_acts or feature_acts.ndim != 2:
            return super().decode(feature_acts)      # activations from elsewhere: the dense path
        _, idx, vals = active
        self._active = None
        if self.cfg.rescale_acts_by_decoder_norm:
            vals = vals / self.W_dec.norm(dim=-1)[idx]
        out = F.embedding_bag(idx, self.W_dec, per_sample_weights=vals, mode="sum") + self.b_dec
        out = self.hook_sae_recons(out)
        out = self.run_time_activation_norm_fn_out(out)
        return self.reshape_fn_out(out, self.d_head)
