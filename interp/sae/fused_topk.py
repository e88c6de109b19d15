"""TopK / BatchTopK training step whose decode and encoder backward touch only the active features.

SAELens's `TopKTrainingSAE` decodes the dense [B, d_sae] activations with a
matmul and runs the encoder backward densely (two more [B, d_sae] x d_in
matmuls), although only the selected pre-activations (k per row, plus the
auxiliary loss's top dead ones) get a gradient. Here one autograd function does
the step with one dense matmul, the encoder forward; the rest is O(nnz · d_in):

- decode (and the auxiliary reconstruction): `embedding_bag` of the selected decoder rows;
- gradient of the selected values: SDDMM (`torch.sparse.sampled_addmm`) of dL/d(sae_out) and W_dec;
- grad W_dec, grad W_enc: `embedding_bag` over rows of dL/d(sae_out) / sae_in grouped by feature
  (one argsort), i.e. gathers rather than scatter-adds;
- b_dec's gradient through the encoder: the matvec W_enc @ grad b_enc.

A transcoder (interp.sae.transcoder, its rows [x | y]) runs the same step: the encoder reads x, the
error and AuxK's residual are measured against y, and a skip transcoder's `x @ W_skip.T` is added to
the output (one more dense matmul forward, two backward: grad W_skip and, if asked, x's). For an SAE
x is y. The maths allows this for every transcoder the SAE step covers; the fallbacks are the same.

With `rescale_acts_by_decoder_norm` (n = ||W_dec rows||) SAELens selects on h = pre·n and decodes
relu(h)/n, so the decoder-norm gradients from encode and decode cancel exactly; they are computed
only when a caller differentiates feature_acts or hidden_pre themselves. Outputs, losses and every
gradient equal SAELens's (tests/test_sparse_topk.py; transcoders: tests/test_transcoders.py); the
modules are SAELens classes and save as such. Anything else (hooks on the SAE, autocast, run-time
input normalisation, hook_z reshaping, another dtype, a GPU: untested there) falls back to
SAELens's own `training_forward_pass` (with sparse_topk's sparse decode for TopK).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from sae_lens import BatchTopKTrainingSAE
from sae_lens.saes.sae import TrainStepInput, TrainStepOutput

from interp.sae.architectures import fast_step
from interp.sae.normalize import RUN_TIME
from interp.sae.transcoder import encoder_input


class Selection(NamedTuple):
    """Selected (row, feature) pairs, row-major: the pairs of row b are crow[b]:crow[b+1]."""
    crow: torch.Tensor          # [B + 1]
    cols: torch.Tensor          # [nnz] feature index
    h: torch.Tensor             # [nnz] hidden_pre there
    per_row: int = 0            # k if every row has k pairs (then rows = position // k), else 0 ...
    rows: torch.Tensor | None = None   # ... and the row of each pair is given

    def rows_at(self, positions: torch.Tensor) -> torch.Tensor:
        return positions // self.per_row if self.per_row else self.rows[positions]


class SparseTrainStepOutput(TrainStepOutput):
    """SAELens's step output plus the active (feature, value) pairs, so firing statistics and L0
    need not scan [B, d_sae]. Its dense `feature_acts` (SAELens's, differentiable) is built on first
    access: a zero-fill and scatter of [B, d_sae] per step (256 MB at d_sae 16384, page faults
    included) that the training loop itself never reads."""

    def __init__(self, *, selection: Selection, values: torch.Tensor, shape: tuple[int, int], **fields):
        self._sparse = (selection, values, shape)
        self.active_features = selection.cols         # [nnz]
        self.active_values = values.detach()          # [nnz] feature_acts there; 0 = selected but not firing
        super().__init__(feature_acts=None, **fields)

    @property
    def feature_acts(self) -> torch.Tensor:
        if self._feature_acts is None:
            sel, v, (B, D) = self._sparse
            dense = v.new_zeros(B, D)
            if sel.per_row:
                self._feature_acts = dense.scatter_(1, sel.cols.view(B, -1), v.view(B, -1))
            else:
                self._feature_acts = dense.view(-1).scatter_(0, sel.rows * D + sel.cols, v).view(B, D)
        return self._feature_acts

    @feature_acts.setter
    def feature_acts(self, value: torch.Tensor | None) -> None:
        self._feature_acts = value


def _per_row(vals: torch.Tensor, idx: torch.Tensor) -> Selection:
    B, k = idx.shape
    return Selection(torch.arange(0, B * k + 1, k, device=idx.device), idx.view(-1), vals.view(-1), per_row=k)


def row_topk(h: torch.Tensor, k: int, groups: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.topk(h, k, dim=-1, sorted=False), faster for wide rows (CPU, one thread, 4096 rows,
    k 32: d_sae 4096 56 -> 44 ms, 16384 127 -> 89 ms). Column j's block is {j, j + D/G, j + 2D/G, ...}. The
    k blocks with the largest maxima hold the row's k largest values: any element outside them is
    <= its block's max <= each of those k maxima. So one strided max pass, a top-k over D/G block
    maxima and one over the G·k candidates replace a top-k over D (whose per-element cost is the
    larger). Values equal torch.topk's; which of several equal values is picked may differ. `groups`
    (None: the most of 16, 8, 4 that divide D with blocks at least 4k wide; d_sae 512, k 32: 4 groups,
    2.5 -> 1.9 ms for 1024 rows on 2 threads)."""
    B, D = h.shape
    if groups is None:
        groups = next((g for g in (16, 8, 4) if D % g == 0 and g * k * 4 <= D), 16)
    if D % groups or groups * k * 4 > D:
        return torch.topk(h, k, dim=-1, sorted=False)
    blocks = h.view(B, groups, D // groups)
    top_blocks = torch.topk(blocks.amax(1), k, dim=-1, sorted=False).indices          # [B, k]
    candidates = torch.gather(blocks, 2, top_blocks.unsqueeze(1).expand(B, groups, k))  # [B, G, k]
    vals, pos = torch.topk(candidates.view(B, groups * k), k, dim=-1, sorted=False)
    return vals, (pos // k) * (D // groups) + torch.gather(top_blocks, 1, pos % k)


def select_topk(h: torch.Tensor, k: int) -> Selection:
    """SAELens's TopK: the k largest hidden_pre of each row (ReLU applied afterwards)."""
    return _per_row(*row_topk(h, k))


def select_batch_topk(h: torch.Tensor, k: float) -> Selection:
    """SAELens's BatchTopK: the int(k·B) largest relu(hidden_pre) of the whole batch. Taken on
    hidden_pre itself, which saves a [B, d_sae] pass: where fewer than k·B are positive, the
    pairs picked beyond them differ, but all are 0 after the ReLU, with zero gradient, either way."""
    B, D = h.shape
    flat = torch.topk(h.view(-1), int(k * B), sorted=False).indices.sort().values   # row-major
    rows = torch.div(flat, D, rounding_mode="floor")
    crow = torch.zeros(B + 1, dtype=torch.long, device=h.device)
    crow[1:] = torch.bincount(rows, minlength=B).cumsum(0)
    return Selection(crow, flat - rows * D, h.view(-1)[flat], rows=rows)


def select_dead(h: torch.Tensor, dead: torch.Tensor, k_aux: int) -> Selection:
    """The auxiliary loss's top-k_aux dead latents of each row (SAELens's calculate_topk_aux_acts),
    taken over the dead columns only rather than over all columns with the live ones at -inf."""
    vals, j = torch.topk(h.index_select(1, dead), k_aux, dim=-1, sorted=False)
    return _per_row(vals, dead[j])


def _sddmm(sel: Selection, a: torch.Tensor, W_dec: torch.Tensor) -> torch.Tensor:
    """<a[row], W_dec[col]> for every selected pair. (The CPU kernel takes each pair on its own, so
    columns need not be sorted within a row; the equality tests run on topk's unsorted order.)"""
    with warnings.catch_warnings():   # "sparse CSR support is in beta": said once per process
        warnings.simplefilter("ignore", UserWarning)
        pattern = torch.sparse_csr_tensor(sel.crow, sel.cols, torch.ones_like(sel.h), (a.shape[0], W_dec.shape[0]),
                                          check_invariants=False)
    return torch.sparse.sampled_addmm(pattern, a, W_dec.T, beta=0.0).values()


def _bag(crow: torch.Tensor, idx: torch.Tensor, weight: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Bag i: sum of w[j] · weight[idx[j]] over j in crow[i]:crow[i+1]."""
    return F.embedding_bag(idx, weight, crow, mode="sum", per_sample_weights=w, include_last_offset=True)


class _Threads:
    """Inside: one thread, for the O(nnz) and O(B·d_in) elementwise ops, well under a millisecond
    each; `wide(fn, ...)` runs the heavy ones (matmul, top-k, sparse products) on all threads. A
    multi-threaded op first waits for every OpenMP worker to be scheduled: on a 2-core machine
    shared with other busy processes that wait was ~16 ms per op (measured), 20x a small op itself;
    on an idle one a second thread saves little on ops this small."""

    def __enter__(self):
        self.n = torch.get_num_threads()
        torch.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        torch.set_num_threads(self.n)

    def wide(self, fn, *args, **kwargs):
        torch.set_num_threads(self.n)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(1)


@dataclass
class StepPlan:
    select: object                      # h -> Selection
    rescale: bool
    apply_b_dec_to_input: bool
    dead: torch.Tensor | None = None    # indices of dead features (auxiliary loss), or None
    k_aux: int = 0
    aux_scale: float = 0.0              # aux_loss_coefficient · min(num_dead / k_aux, 1)
    sel: Selection | None = None        # set by the forward, for the caller


class _SparseTopKStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, W_enc, b_enc, W_dec, b_dec, W_skip, plan: StepPlan):
        with _Threads() as t:
            return _SparseTopKStep._forward(ctx, t, x, y, W_enc, b_enc, W_dec, b_dec, W_skip, plan)

    @staticmethod
    def _forward(ctx, t, x, y, W_enc, b_enc, W_dec, b_dec, W_skip, plan: StepPlan):
        """x: the encoder's input; y: the reconstruction target (x itself for an SAE)."""
        B = x.shape[0]
        sae_in = x - b_dec if plan.apply_b_dec_to_input else x
        n = inv_n = None
        if plan.rescale:   # h = (sae_in @ W_enc + b_enc) * n, n scaling [d_in, d_sae] weights, not [B, d_sae]
            n = W_dec.norm(dim=1)
            inv_n = 1 / n
            h = t.wide(torch.addmm, b_enc * n, sae_in, W_enc * n)
        else:
            h = t.wide(torch.addmm, b_enc, sae_in, W_enc)
        sel = plan.sel = t.wide(plan.select, h)
        v = sel.h.relu()                                      # feature_acts at the selected pairs
        u = v * inv_n[sel.cols] if plan.rescale else v        # what the decoder rows are weighted by
        sae_out = t.wide(_bag, sel.crow, sel.cols, W_dec, u).add_(b_dec)
        if W_skip is not None:
            t.wide(sae_out.addmm_, x, W_skip.T)
        diff = sae_out - y
        mse = torch.dot(diff.view(-1), diff.view(-1)) / B
        aux_sel = a = ediff = None
        if plan.dead is not None:
            aux_sel = t.wide(select_dead, h, plan.dead, plan.k_aux)
            a = aux_sel.h * inv_n[aux_sel.cols] if plan.rescale else aux_sel.h
            ediff = t.wide(_bag, aux_sel.crow, aux_sel.cols, W_dec, a).add_(diff)   # recons - (y - sae_out)
            aux = plan.aux_scale * torch.dot(ediff.view(-1), ediff.view(-1)) / B
        else:
            aux = mse.new_zeros(())
        ctx.save_for_backward(sae_in, W_enc, W_dec, h, diff, v, u, n, inv_n, a, ediff, W_skip,
                              x if W_skip is not None else None)
        ctx.sels, ctx.plan = (sel, aux_sel), plan
        ctx.set_materialize_grads(False)
        return sae_out, v, h, mse, aux

    @staticmethod
    def backward(ctx, g_out, g_v, g_h, g_mse, g_aux):
        with _Threads() as t:
            return _SparseTopKStep._backward(ctx, t, g_out, g_v, g_h, g_mse, g_aux)

    @staticmethod
    def _backward(ctx, t, g_out, g_v, g_h, g_mse, g_aux):
        sae_in, W_enc, W_dec, h, diff, v, u, n, inv_n, a, ediff, W_skip, x = ctx.saved_tensors
        (sel, aux_sel), plan = ctx.sels, ctx.plan
        B, D = h.shape
        d_mse = diff * (2 * g_mse / B) if g_mse is not None else torch.zeros_like(diff)
        d_out = d_mse + g_out if g_out is not None else d_mse
        d_u = t.wide(_sddmm, sel, d_out, W_dec)
        d_n = None                        # decoder-norm gradient: zero unless a caller differentiates v or h
        if g_v is None:
            d_pre = d_u * (v > 0)         # d/dpre relu(pre·n)/n = relu'(pre): n cancels
        else:
            d_v = (d_u * inv_n[sel.cols] if plan.rescale else d_u) + g_v
            d_h = d_v * (v > 0)
            d_pre = d_h * n[sel.cols] if plan.rescale else d_h
            if plan.rescale:              # through h = pre·n and u = v/n
                inv = inv_n[sel.cols]
                d_n = torch.zeros_like(n).index_add_(0, sel.cols, (d_h * sel.h - d_u * u) * inv)

        # (pairs, d pre-activation, decoder weight, d decoder output) of the main and auxiliary reconstructions
        parts = [(sel, d_pre, u, d_out)]
        if aux_sel is not None and g_aux is not None:
            d_rec = ediff * (2 * plan.aux_scale * g_aux / B)
            parts.append((aux_sel, t.wide(_sddmm, aux_sel, d_rec, W_dec), a, d_rec))   # a = h/n, h = pre·n: n cancels

        # grad W_enc and grad W_dec as gathers: pairs grouped by feature, each bag sums rows of sae_in / d_out.
        if len(parts) == 1:
            cols, order = sel.cols, torch.argsort(sel.cols)
            enc_rows = dec_rows = sel.rows_at(order)
            dpre_all, w_all, d_all = d_pre, u, d_out
        else:
            cols = torch.cat([p[0].cols for p in parts])
            order = torch.argsort(cols)
            rows = [p[0].rows_at(torch.arange(p[0].cols.numel(), device=cols.device)) for p in parts]
            enc_rows = torch.cat(rows)[order]
            dec_rows = torch.cat([r + i * B for i, r in enumerate(rows)])[order]   # aux pairs read d_rec
            dpre_all, w_all, d_all = (torch.cat([p[i] for p in parts]) for i in (1, 2, 3))
        fcrow = torch.zeros(D + 1, dtype=torch.long, device=cols.device)
        torch.cumsum(torch.bincount(cols, minlength=D), 0, out=fcrow[1:])
        grad_W_enc_t = t.wide(_bag, fcrow, enc_rows, sae_in, dpre_all[order])        # [d_sae, d_in]
        grad_W_dec = t.wide(_bag, fcrow, dec_rows, d_all, w_all[order])
        grad_b_enc = torch.zeros_like(h[0]).index_add_(0, cols, dpre_all)

        d_pre_dense = None
        if g_h is not None:                                              # a caller's loss on hidden_pre
            d_pre_dense = g_h * n if plan.rescale else g_h
            grad_W_enc_t += t.wide(torch.mm, d_pre_dense.T, sae_in)
            grad_b_enc += d_pre_dense.sum(0)
            if plan.rescale:
                d_n = (d_n if d_n is not None else 0) + (g_h * h).sum(0) * inv_n
        if d_n is not None:                                              # d||w||/dw = w/||w|| (0 for a zero row)
            grad_W_dec += (d_n / n.masked_fill(n == 0, 1)).unsqueeze(1) * W_dec
        grad_b_dec = d_out.sum(0)
        if plan.apply_b_dec_to_input:                                    # sae_in = x - b_dec: sum_b of dL/dsae_in
            grad_b_dec -= W_enc @ grad_b_enc
        grad_W_skip = t.wide(torch.mm, d_out.T, x) if W_skip is not None and ctx.needs_input_grad[6] else None
        grad_x = None
        if ctx.needs_input_grad[0]:   # through the encoder and the skip path (AuxK's residual is detached)
            W_enc_t = W_enc.T.contiguous()
            grad_x = sum(t.wide(_bag, p[0].crow, p[0].cols, W_enc_t, p[1]) for p in parts)
            if d_pre_dense is not None:
                grad_x += t.wide(torch.mm, d_pre_dense, W_enc.T)
            if W_skip is not None:
                grad_x += t.wide(torch.mm, d_out, W_skip)
        grad_y = -d_mse if ctx.needs_input_grad[1] else None   # for an SAE autograd adds it to x's
        return (grad_x, grad_y, grad_W_enc_t.T.contiguous(), grad_b_enc, grad_W_dec, grad_b_dec, grad_W_skip,
                None)


class SparseTopKStepMixin:
    """`training_forward_pass` through `_SparseTopKStep` when it applies, else SAELens's own."""

    def _sparse_step_applies(self, x: torch.Tensor) -> bool:
        hooked = any(hp.fwd_hooks or hp.bwd_hooks for hp in self.hook_dict.values())
        # CPU only: that is where it is tested and measured (SDDMM on CUDA may want sorted CSR columns)
        return (x.device.type == "cpu" and x.ndim == 2 and not hooked and self.cfg.normalize_activations not in RUN_TIME
                and self.cfg.reshape_activations == "none" and not self.cfg.use_sparse_activations
                and self.dtype in (torch.float32, torch.float64) and not torch.is_autocast_enabled(x.device.type))

    def _select(self, h: torch.Tensor) -> Selection:
        return select_topk(h, self.cfg.k)

    def training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        y = step_input.sae_in.to(self.dtype)
        x = encoder_input(self, y)
        if not self._sparse_step_applies(x):
            return super().training_forward_pass(step_input)
        plan = StepPlan(self._select, bool(self.cfg.rescale_acts_by_decoder_norm), bool(self.cfg.apply_b_dec_to_input))
        dead = step_input.dead_neuron_mask
        if dead is not None and (num_dead := int(dead.sum())) > 0:   # SAELens's calculate_topk_aux_loss
            k_aux = y.shape[-1] // 2
            plan.dead, plan.k_aux = dead.nonzero().squeeze(1), min(k_aux, num_dead)
            plan.aux_scale = self.cfg.aux_loss_coefficient * min(num_dead / k_aux, 1.0)
        sae_out, v, h, mse, aux = _SparseTopKStep.apply(x, y, self.W_enc, self.b_enc, self.W_dec, self.b_dec,
                                                        getattr(self, "W_skip", None), plan)
        return SparseTrainStepOutput(
            selection=plan.sel, values=v, shape=h.shape, sae_in=step_input.sae_in, sae_out=sae_out, hidden_pre=h,
            loss=mse + aux, losses={"mse_loss": mse, "auxiliary_reconstruction_loss": aux})


@fast_step("batchtopk", "sparse_decode")
class SparseBatchTopKTrainingSAE(SparseTopKStepMixin, BatchTopKTrainingSAE):
    """BatchTopK (saved as JumpReLU, as SAELens saves it) with the sparse step: the selection is
    per batch rather than per row, the rest is the same."""

    def _select(self, h: torch.Tensor) -> Selection:
        return select_batch_topk(h, self.cfg.k)

    def training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        out = SparseTopKStepMixin.training_forward_pass(self, step_input)
        if not isinstance(out, SparseTrainStepOutput):   # fell back: SAELens's BatchTopK step did it all
            return out
        self._update_threshold(out.active_values)
        out.metrics["topk_threshold"] = self.topk_threshold
        return out

    @torch.no_grad()
    def _update_threshold(self, values: torch.Tensor) -> None:
        """SAELens's update_topk_threshold, from the selected values rather than the dense acts."""
        positive = values[values > 0]
        if positive.numel():
            lr = self.cfg.topk_threshold_lr
            self.topk_threshold = (1 - lr) * self.topk_threshold + lr * positive.min().to(self.topk_threshold.dtype)
