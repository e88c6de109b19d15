"""Standard (L1) training SAE whose forward + backward is one hand-written autograd step.

SAELens's `StandardTrainingSAE` builds its loss from generic ops. On a
[batch, d_sae] activation matrix that costs, besides the five matmuls the
maths needs, about a dozen memory-bound passes (ReLU, `acts * ||W_dec||`, the
p-norm and its `sgn` backward, ...) and a sixth matmul: autograd carries the
gradient of `x - b_dec` back through the encoder (`dH @ W_enc.T`) only to sum
it into `b_dec.grad`. Here:

- the L1 term is `(f.sum(0) @ ||W_dec||) / B`, since f = relu(.) >= 0;
- its gradient is a broadcast add of `coef * ||W_dec|| / B` to dF;
- `b_dec`'s encoder-side gradient is the matvec `-(dH.sum(0) @ W_enc.T)`.

Loss, outputs and every gradient equal SAELens's to float tolerance (tested);
the module is a `StandardTrainingSAE`, saved and loaded as one. Anything the
fused step does not cover (hooks on the SAE's hook points, autocast, another
p-norm, run-time input normalisation) falls back to SAELens's own `training_forward_pass`.
"""

from __future__ import annotations

import torch
from sae_lens import StandardTrainingSAE
from sae_lens.saes.sae import TrainStepInput, TrainStepOutput

from interp.sae.normalize import RUN_TIME


class _FusedStandardStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, W_enc, b_enc, W_dec, b_dec, l1_coefficient: float, apply_b_dec_to_input: bool):
        B = x.shape[0]
        sae_in = x - b_dec if apply_b_dec_to_input else x
        hidden_pre = torch.addmm(b_enc, sae_in, W_enc)
        feature_acts = hidden_pre.relu()
        norms = W_dec.norm(dim=1)
        sae_out = torch.addmm(b_dec, feature_acts, W_dec)
        diff = sae_out - x
        mse = diff.pow(2).sum() / B
        act_sums = feature_acts.sum(0)
        l1 = l1_coefficient * (act_sums @ norms) / B
        ctx.save_for_backward(sae_in, feature_acts, W_enc, W_dec, norms, diff, act_sums)
        ctx.l1_coefficient, ctx.apply_b_dec_to_input = l1_coefficient, apply_b_dec_to_input
        ctx.mark_non_differentiable(hidden_pre)
        ctx.set_materialize_grads(False)
        return sae_out, feature_acts, hidden_pre, mse, l1

    @staticmethod
    def backward(ctx, g_out, g_acts, _g_pre, g_mse, g_l1):
        sae_in, acts, W_enc, W_dec, norms, diff, act_sums = ctx.saved_tensors
        B = acts.shape[0]
        d_mse = diff * (2 * g_mse / B) if g_mse is not None else torch.zeros_like(diff)
        d_out = d_mse + g_out if g_out is not None else d_mse
        grad_W_dec = acts.T @ d_out
        grad_b_dec = d_out.sum(0)
        d_acts = d_out @ W_dec.T
        if g_l1 is not None:
            scale = g_l1 * ctx.l1_coefficient / B
            d_acts += scale * norms
            # d||w_j||/dw_j = w_j / ||w_j|| (0 for a zero row, as torch's norm backward)
            grad_W_dec += (scale * act_sums / norms.masked_fill(norms == 0, 1)).unsqueeze(1) * W_dec
        if g_acts is not None:
            d_acts += g_acts
        d_pre = torch.ops.aten.threshold_backward(d_acts, acts, 0)   # ReLU backward
        grad_b_enc = d_pre.sum(0)
        grad_W_enc = sae_in.T @ d_pre
        if ctx.apply_b_dec_to_input:                        # sae_in = x - b_dec
            grad_b_dec -= grad_b_enc @ W_enc.T
        grad_x = d_pre @ W_enc.T - d_mse if ctx.needs_input_grad[0] else None
        return grad_x, grad_W_enc, grad_b_enc, grad_W_dec, grad_b_dec, None, None


class FusedStandardTrainingSAE(StandardTrainingSAE):
    def _fusable(self, x: torch.Tensor) -> bool:
        hooked = any(hp.fwd_hooks or hp.bwd_hooks for hp in self.hook_dict.values())
        return (self.cfg.lp_norm == 1 and self.cfg.normalize_activations not in RUN_TIME
                and self.cfg.reshape_activations == "none" and x.ndim == 2 and not hooked
                and not torch.is_autocast_enabled(x.device.type))

    def training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        x = step_input.sae_in.to(self.dtype)
        if not self._fusable(x):
            return super().training_forward_pass(step_input)
        sae_out, feature_acts, hidden_pre, mse, l1 = _FusedStandardStep.apply(
            x, self.W_enc, self.b_enc, self.W_dec, self.b_dec, float(step_input.coefficients["l1"]),
            bool(self.cfg.apply_b_dec_to_input))
        return TrainStepOutput(sae_in=step_input.sae_in, sae_out=sae_out, feature_acts=feature_acts,
                               hidden_pre=hidden_pre, loss=mse + l1, losses={"mse_loss": mse, "l1_loss": l1})
