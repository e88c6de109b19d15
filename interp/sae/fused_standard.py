"""Standard (L1) training SAE whose forward + backward is one hand-written autograd step.

SAELens's `StandardTrainingSAE` builds its loss from generic ops. On a
[batch, d_sae] activation matrix that costs, besides the five matmuls the
maths needs, about a dozen memory-bound passes (ReLU, `acts * ||W_dec||`, the
p-norm and its `sgn` backward, ...) and a sixth matmul: autograd carries the
gradient of `x - b_dec` back through the encoder (`dH @ W_enc.T`) only to sum
it into `b_dec.grad`. Here:

- the L1 term is `(f.sum(0) @ ||W_dec||) / B`, since f = relu(.) >= 0;
- biases ride inside the matmuls as one more row/column of the operands, so no
  [B, d_sae] pass adds or sums them: H = [x - b_dec | 1] @ [W_enc ; b_enc]
  (addmm would first copy the broadcast bias into H and read it back);
  dF = [dL/dsae_out | s] @ [W_dec | ||W_dec||]^T adds the L1 gradient
  s = coef / B times ||w_j|| to every row; [x - b_dec | 1]^T @ dH gives
  grad b_enc as its last row. (An extra contraction index or output row
  costs nothing measurable; an extra output column, width 513, was slower
  in MKL here, so sae_out and grad W_dec keep theirs.)
- the ReLU backward is in place in dF;
- `b_dec`'s encoder-side gradient is the matvec `-(dH.sum(0) @ W_enc.T)`.

A transcoder (interp.sae.transcoder, rows [x | y]) runs the same step: the encoder reads x, the
error is measured against y, and a skip transcoder adds `x @ W_skip.T` (one more matmul forward,
one or two backward); for an SAE x is y. The maths allows it wherever the SAE's step runs.

Loss, outputs and every gradient equal SAELens's to float tolerance (tested);
the module is a `StandardTrainingSAE`, saved and loaded as one. Anything the
fused step does not cover (hooks on the SAE's hook points, autocast, another
p-norm, run-time input normalisation) falls back to SAELens's own `training_forward_pass`.
"""

from __future__ import annotations

import torch
from sae_lens import StandardTrainingSAE
from sae_lens.saes.sae import TrainStepInput, TrainStepOutput

from interp.sae.architectures import fast_step
from interp.sae.normalize import RUN_TIME
from interp.sae.transcoder import encoder_input


class _FusedStandardStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, W_enc, b_enc, W_dec, b_dec, W_skip, l1_coefficient: float, apply_b_dec_to_input: bool):
        """x: the encoder's input; y: the reconstruction target (x itself for an SAE)."""
        B, d = x.shape
        # [sae_in | 1] @ [W_enc ; b_enc]: the bias inside the matmul, not a [B, d_sae] broadcast copy it reads back
        sae_in1 = x.new_empty(B, d + 1)
        torch.sub(x, b_dec, out=sae_in1[:, :d]) if apply_b_dec_to_input else sae_in1[:, :d].copy_(x)
        sae_in1[:, d] = 1
        hidden_pre = sae_in1 @ torch.cat([W_enc, b_enc[None]])
        feature_acts = hidden_pre.relu()
        norms = W_dec.norm(dim=1)
        sae_out = torch.addmm(b_dec, feature_acts, W_dec)
        if W_skip is not None:
            sae_out.addmm_(x, W_skip.T)
        diff = sae_out - y
        mse = diff.pow(2).sum() / B
        act_sums = feature_acts.sum(0)
        l1 = l1_coefficient * (act_sums @ norms) / B
        ctx.save_for_backward(sae_in1, feature_acts, W_enc, W_dec, norms, diff, act_sums, W_skip,
                              x if W_skip is not None else None)
        ctx.l1_coefficient, ctx.apply_b_dec_to_input = l1_coefficient, apply_b_dec_to_input
        ctx.mark_non_differentiable(hidden_pre)
        ctx.set_materialize_grads(False)
        return sae_out, feature_acts, hidden_pre, mse, l1

    @staticmethod
    def backward(ctx, g_out, g_acts, _g_pre, g_mse, g_l1):
        sae_in1, acts, W_enc, W_dec, norms, diff, act_sums, W_skip, x = ctx.saved_tensors
        B, d = diff.shape
        scale = float(g_l1) * ctx.l1_coefficient / B if g_l1 is not None else 0.0
        d_mse = diff * (2 * g_mse / B) if g_mse is not None else torch.zeros_like(diff)
        d_out = d_mse + g_out if g_out is not None else d_mse
        grad_W_dec = acts.T @ d_out
        grad_b_dec = d_out.sum(0)
        # [dL/dsae_out | scale] @ [W_dec | norms]^T: dL/dacts with the L1 term scale·||w_j|| added inside the matmul
        d_out1 = torch.cat([d_out, d_out.new_full((B, 1), scale)], dim=1)
        d_acts = d_out1 @ torch.cat([W_dec, norms[:, None]], dim=1).T
        if g_l1 is not None:   # d||w_j||/dw_j = w_j / ||w_j|| (0 for a zero row, as torch's norm backward)
            grad_W_dec += (scale * act_sums / norms.masked_fill(norms == 0, 1)).unsqueeze(1) * W_dec
        if g_acts is not None:
            d_acts += g_acts
        d_pre = torch.ops.aten.threshold_backward.grad_input(d_acts, acts, 0, grad_input=d_acts)   # ReLU, in place
        grad_enc1 = sae_in1.T @ d_pre                       # [grad W_enc ; grad b_enc]
        grad_W_enc, grad_b_enc = grad_enc1[:d], grad_enc1[d]
        if ctx.apply_b_dec_to_input:                        # sae_in = x - b_dec
            grad_b_dec -= grad_b_enc @ W_enc.T
        grad_W_skip = d_out.T @ x if W_skip is not None and ctx.needs_input_grad[6] else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = d_pre @ W_enc.T
            if W_skip is not None:
                grad_x += d_out @ W_skip
        grad_y = -d_mse if ctx.needs_input_grad[1] else None   # for an SAE autograd adds it to x's
        return grad_x, grad_y, grad_W_enc, grad_b_enc, grad_W_dec, grad_b_dec, grad_W_skip, None, None


@fast_step("standard", "fused")
class FusedStandardTrainingSAE(StandardTrainingSAE):
    def _fusable(self, x: torch.Tensor) -> bool:
        hooked = any(hp.fwd_hooks or hp.bwd_hooks for hp in self.hook_dict.values())
        return (self.cfg.lp_norm == 1 and self.cfg.normalize_activations not in RUN_TIME
                and self.cfg.reshape_activations == "none" and x.ndim == 2 and not hooked
                and not torch.is_autocast_enabled(x.device.type))

    def training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        y = step_input.sae_in.to(self.dtype)
        x = encoder_input(self, y)
        if not self._fusable(x):
            return super().training_forward_pass(step_input)
        sae_out, feature_acts, hidden_pre, mse, l1 = _FusedStandardStep.apply(
            x, y, self.W_enc, self.b_enc, self.W_dec, self.b_dec, getattr(self, "W_skip", None),
            float(step_input.coefficients["l1"]), bool(self.cfg.apply_b_dec_to_input))
        return TrainStepOutput(sae_in=step_input.sae_in, sae_out=sae_out, feature_acts=feature_acts,
                               hidden_pre=hidden_pre, loss=mse + l1, losses={"mse_loss": mse, "l1_loss": l1})
