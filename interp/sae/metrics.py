"""SAE metrics, defined as SAELens defines them (sae_lens.evals, sae_lens.training.sae_trainer).

- mse: per-token squared error summed over dimensions, averaged over tokens.
- explained_variance: 1 - E||x - x_hat||^2 / Var(x), SAELens's streaming calculator.
- l0: mean number of non-zero feature activations per token.
- dead features: no firing in the last `dead_feature_window` training steps.
- feature density: fraction of tokens a feature fires on; histogram of log10(density + 1e-10).
- dense features (not in SAELens; ours): density above `dense_threshold`.
- ce_loss_score = (CE_zero_ablated - CE_with_sae) / (CE_zero_ablated - CE_clean); kl_div_score alike.
"""

from __future__ import annotations

import torch
from sae_lens.evals import ExplainedVarianceCalculator
from torch import nn

LOG_DENSITY_EPS = 1e-10  # SAELens's epsilon for log10 feature density


def coefficient(final: float, warm_up_steps: int, step: int) -> float:
    """SAELens CoefficientScheduler's value at training step `step` (linear warm-up from 0)."""
    return final if warm_up_steps <= 0 else final * min(1.0, step / warm_up_steps)


def log10_density(density: torch.Tensor) -> torch.Tensor:
    return torch.log10(density + LOG_DENSITY_EPS)


class FiringTracker(nn.Module):
    """Training-time firing statistics (buffers, so a resumed run keeps them)."""

    def __init__(self, d_sae: int, dead_feature_window: int):
        super().__init__()
        self.dead_feature_window = dead_feature_window
        self.register_buffer("steps_since_fired", torch.zeros(d_sae))
        self.register_buffer("fire_counts", torch.zeros(d_sae))
        self.register_buffer("n_samples", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, feature_acts: torch.Tensor) -> None:
        """Count this step's firings; under DDP, summed over every rank's batch, so all ranks
        share one dead-feature mask (it enters TopK's auxiliary loss) and one density."""
        if feature_acts.is_sparse:
            feature_acts = feature_acts.to_dense()
        self._add((feature_acts != 0).sum(0, dtype=torch.float32), feature_acts.shape[0])   # a pass over [B, d_sae]

    @torch.no_grad()
    def update_active(self, features: torch.Tensor, values: torch.Tensor, n_rows: int) -> None:
        """The same from the active (feature, value) pairs of a sparse step (a feature appears at
        most once per row): O(B·k) instead of a pass over the dense [B, d_sae] activations."""
        fired = features[values != 0]
        self._add(torch.bincount(fired, minlength=self.fire_counts.numel()).float(), n_rows)

    def _add(self, counts: torch.Tensor, n_rows: int) -> None:
        n = torch.full((1,), n_rows, dtype=torch.float32, device=counts.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            both = torch.cat([counts, n])
            torch.distributed.all_reduce(both)
            counts, n = both[:-1], both[-1:]
        self.steps_since_fired += 1
        self.steps_since_fired[counts > 0] = 0
        self.fire_counts += counts
        self.n_samples += n.long()[0]

    def dead_mask(self) -> torch.Tensor:
        return self.steps_since_fired > self.dead_feature_window

    def density(self) -> torch.Tensor:
        return self.fire_counts / self.n_samples.clamp(min=1)

    def reset_window(self) -> None:
        self.fire_counts.zero_()
        self.n_samples.zero_()


class EvalAccumulator:
    """Streams reconstruction, sparsity and downstream metrics over evaluation batches."""

    def __init__(self, d_sae: int, dense_threshold: float):
        self.dense_threshold = dense_threshold
        self.ev = ExplainedVarianceCalculator()
        self.sq_err = self.l0 = self.l1 = 0.0
        self.tokens = 0
        self.fire_counts = torch.zeros(d_sae, dtype=torch.float64)
        self.downstream: dict[str, list[float]] = {}   # name -> [sum, count]

    @torch.no_grad()
    def add(self, sae_in: torch.Tensor, sae_out: torch.Tensor, feature_acts: torch.Tensor) -> None:
        x, x_hat = sae_in.float(), sae_out.float()
        self.ev.add_batch(sae_output=x_hat, hidden_acts=x)
        self.sq_err += (x - x_hat).pow(2).sum().item()
        active = feature_acts != 0
        self.l0 += active.sum().item()
        self.l1 += feature_acts.abs().sum().item()
        self.fire_counts += active.sum(0).double().cpu()
        self.tokens += x.shape[0]

    def add_downstream(self, name: str, per_token: torch.Tensor) -> None:
        acc = self.downstream.setdefault(name, [0.0, 0])
        acc[0] += per_token.double().sum().item()
        acc[1] += per_token.numel()

    def compute(self) -> dict[str, float]:
        n = max(self.tokens, 1)
        density = self.density()
        out = {
            "mse": self.sq_err / n,
            "explained_variance": self.ev.compute(),
            "l0": self.l0 / n,
            "l1": self.l1 / n,
            "dense_features": int((density > self.dense_threshold).sum()),
            "never_fired_features": int((density == 0).sum()),
            "mean_log10_feature_density": log10_density(density).mean().item(),
        }
        out.update({k: s / max(c, 1) for k, (s, c) in self.downstream.items()})
        for kind in ("ce_loss", "task_mse"):
            abl, sae, clean = (out.get(f"{kind}_{s}") for s in ("with_ablation", "with_sae", "without_sae"))
            if None not in (abl, sae, clean) and abl != clean:
                out[f"{kind}_score"] = (abl - sae) / (abl - clean)
        if (kl_abl := out.get("kl_div_with_ablation")) and "kl_div_with_sae" in out:
            out["kl_div_score"] = (kl_abl - out["kl_div_with_sae"]) / kl_abl
        return out

    def density(self) -> torch.Tensor:
        return self.fire_counts / max(self.tokens, 1)


class CleanLogProbs:
    """The clean run's next-token distribution over the scored positions of one batch, computed once and
    compared with every other run of that batch (each dictionary spliced in, each hook zero-ablated).

    Per run: CE and KL(clean || run), SAELens's get_recons_loss / _kl quantities. KL is written as
    sum p log p - sum p x + logsumexp(x), so a compared run costs one logsumexp and one dot product over
    the vocabulary, not a log-softmax of its own. Both passes go `ROWS` positions at a time: a [positions,
    vocabulary] temporary is 0.8 GB for 4,096 GPT-2 tokens, and allocating (page-faulting) several of those
    took most of an evaluation (CPU: 5.3 s to build this and 2-3 s per comparison, against 1.3 s for the
    unembedding matmul itself).
    """

    ROWS = 64   # a [64, 50257] float32 chunk is 13 MB: the allocator reuses it instead of mapping fresh pages

    def __init__(self, clean: torch.Tensor, targets: torch.Tensor, keep: torch.Tensor):
        self.index = keep.flatten().nonzero()[:, 0]             # scored positions in the flattened batch
        self.targets = targets.flatten()[self.index.to(targets.device)][:, None]
        self.clean = clean
        neg_lse, neg_entropy, ce = [], [], []
        for rows, x in self._chunks(clean):
            neg_lse.append(-torch.logsumexp(x, dim=-1, keepdim=True))   # kept to rebuild p chunk by chunk
            logp = x.add_(neg_lse[-1])   # in place: x is this chunk's own copy
            neg_entropy.append(torch.linalg.vecdot(logp.exp(), logp))
            ce.append(-logp.gather(-1, self.targets[rows])[:, 0])
        self.neg_lse = torch.cat(neg_lse)
        self.neg_entropy, self.ce = torch.cat(neg_entropy), torch.cat(ce)

    def _chunks(self, logits: torch.Tensor):
        flat = logits.reshape(-1, logits.shape[-1])
        index = self.index.to(flat.device)
        for start in range(0, len(index), self.ROWS):
            rows = slice(start, start + self.ROWS)
            yield rows, flat[index[rows]].float()

    def compare(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-token CE, per-token KL(clean || run)) of another run's logits."""
        ces, kls = [], []
        for (rows, x), (_, clean) in zip(self._chunks(logits), self._chunks(self.clean)):
            p = clean.add_(self.neg_lse[rows]).exp_()
            lse = torch.logsumexp(x, dim=-1)
            ces.append(lse - x.gather(-1, self.targets[rows])[:, 0])
            kls.append(self.neg_entropy[rows] - torch.linalg.vecdot(p, x) + lse)
        return torch.cat(ces), torch.cat(kls).clamp_min(0.0)   # >= 0 exactly; float cancellation can leave -1e-7
