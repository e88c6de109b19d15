"""OV/QK circuits, copying scores and K/Q/V composition between heads (Elhage et al. 2021).

- OV circuit W_E W_V W_O W_U [attended token -> logit]: what a head writes when it attends to a token.
- QK circuit W_E W_Q W_K^T W_E^T / sqrt(d_head) [query token x key token]: the direct-path attention score.
- Copying score sum(l) / sum(|l|) over the eigenvalues l of the OV circuit: 1 when every eigenvalue is
  positive real (the head raises the token it attends to), -1 when it suppresses it.
- Composition score ||W_A W_B||_F / (||W_A||_F ||W_B||_F), W_A an earlier head's W_OV and W_B a later
  head's W_QK (Q), W_QK^T (K) or W_OV (V): `HookedTransformer.all_composition_scores`. Random matrices of
  the same shapes already score well above 0, hence `compose/baseline`.

The weights are read from a copy of the model with LayerNorm folded in and writing weights centred
(TransformerLens `load_and_process_state_dict`), the convention of the paper; the LN scale itself is a
nonlinearity these weight-only views leave out.
"""

import copy
import warnings

import torch
from transformer_lens import FactoredMatrix, HookedTransformer
from transformer_lens.utilities.matrix import composition_scores

from interp.analyses.common.inputs import prompt_tokens, require_attention, require_lm

MODES = ("Q", "K", "V")


def folded_copy(model: HookedTransformer) -> HookedTransformer:
    """The same function with LN weights folded into the next linear maps (the analysed model is untouched)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        folded = HookedTransformer(copy.deepcopy(model.cfg))
    folded.load_and_process_state_dict({k: v.clone() for k, v in model.state_dict().items()},
                                       fold_ln=True, center_writing_weights=True, center_unembed=True)
    return folded.to(model.cfg.device, print_details=False).eval()


@torch.no_grad()
def copying_scores(model: HookedTransformer) -> torch.Tensor:
    """[layer, head]. The nonzero eigenvalues of W_E W_V W_O W_U are those of W_O (W_U W_E) W_V (cyclic
    product), a d_head x d_head matrix: no vocab x vocab matrix is ever built."""
    eig = FactoredMatrix(model.W_V, model.W_O @ (model.W_U @ model.W_E)).eigenvalues
    return (eig.sum(-1) / eig.abs().sum(-1)).real.cpu()


@torch.no_grad()
def ov_circuit(model: HookedTransformer, ids: torch.Tensor) -> torch.Tensor:
    """[layer, head, src token, out token] over the token subset `ids`."""
    return (model.W_E[ids] @ model.W_V @ model.W_O @ model.W_U[:, ids]).cpu()


@torch.no_grad()
def qk_circuit(model: HookedTransformer, ids: torch.Tensor) -> torch.Tensor:
    """[layer, head, query token, key token] over `ids` (token path only, positions left out)."""
    e = model.W_E[ids]
    return ((e @ model.W_Q) @ (e @ model.W_K).transpose(-1, -2) / model.cfg.attn_scale).cpu()


@torch.no_grad()
def all_composition_scores(model: HookedTransformer) -> dict[str, torch.Tensor]:
    """mode -> [layer_a, head_a, layer_b, head_b], zero unless layer_a < layer_b."""
    return {mode: model.all_composition_scores(mode).cpu() for mode in MODES}


@torch.no_grad()
def random_baseline(d_model: int, d_head: int, n: int = 64, seed: int = 0) -> float:
    """Mean composition score of independent Gaussian rank-d_head matrices of the model's shapes."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda *s: torch.randn(n, *s, generator=g)   # noqa: E731
    left = FactoredMatrix(rand(d_model, d_head), rand(d_head, d_model))
    right = FactoredMatrix(rand(d_model, d_head), rand(d_head, d_model))
    return composition_scores(left, right, broadcast_dims=False).mean().item()


def circuit_tokens(model, datamodule, prompt: str | None, n_tokens: int) -> torch.Tensor:
    """Up to n_tokens distinct tokens of the prompt (or first val example), in order, without [eot]."""
    ids = prompt_tokens(model, datamodule, prompt, max_positions=4 * n_tokens)[0].tolist()
    eot = datamodule.tokenizer.eot_id
    return torch.tensor([t for t in dict.fromkeys(ids) if t != eot][:n_tokens])


@torch.no_grad()
def run(model, datamodule, out_dir, prompt: str | None = None, n_tokens: int = 16) -> dict[str, float]:
    """Copying scores, composition scores and circuit heatmaps (PNG) over tokens of the prompt."""
    from interp.viz import token_labels

    require_attention(model, "composition")
    require_lm(datamodule, "composition")
    folded = folded_copy(model)
    ids = circuit_tokens(model, datamodule, prompt, n_tokens)
    labels = token_labels(datamodule.tokenizer.decode_tokens(ids.tolist()))
    ids = ids.to(folded.cfg.device)
    copying = copying_scores(folded)
    plot_circuits(ov_circuit(folded, ids), labels, copying, "OV circuit W_E W_OV W_U",
                  ("attended token", "logit of"), f"{out_dir}/ov_circuits.png")
    plot_circuits(qk_circuit(folded, ids), labels, None, "QK circuit W_E W_QK W_E^T / sqrt(d_head)",
                  ("key token", "query token"), f"{out_dir}/qk_circuits.png", transpose=True)
    results = {f"copying/L{l}H{h}": v for l, row in enumerate(copying.tolist()) for h, v in enumerate(row)}
    n_layers, n_heads = folded.cfg.n_layers, folded.cfg.n_heads
    if n_layers > 1:
        scores = all_composition_scores(folded)
        baseline = random_baseline(folded.cfg.d_model, folded.cfg.d_head)
        plot_composition(scores, baseline, f"{out_dir}/composition.png")
        for mode, s in scores.items():
            for la in range(n_layers):
                for lb in range(la + 1, n_layers):
                    results.update({f"compose_{mode.lower()}/L{la}H{ha}->L{lb}H{hb}": s[la, ha, lb, hb].item()
                                    for ha in range(n_heads) for hb in range(n_heads)})
        results["compose/baseline"] = baseline
    return results


def plot_circuits(circuits: torch.Tensor, labels: list[str], copying, title: str, axes_names, path,
                  transpose: bool = False) -> None:
    """One heatmap per head; rows = tokens the head attends to (OV) or queries (QK, transpose=True)."""
    from interp.viz import plt, save_figure

    n_layers, n_heads, n, _ = circuits.shape
    side = max(2.5, 0.2 * n)
    fig, axes = plt.subplots(n_layers, n_heads, figsize=(side * n_heads, side * n_layers + 0.5), squeeze=False,
                             layout="constrained")
    for l in range(n_layers):
        for h in range(n_heads):
            grid = circuits[l, h].T if transpose else circuits[l, h]
            bound = max(grid.abs().max().item(), 1e-6)
            ax = axes[l, h]
            ax.imshow(grid.numpy(), cmap="RdBu", vmin=-bound, vmax=bound, interpolation="nearest")
            ax.set_xticks(range(n), labels, rotation=90, fontsize=5)
            ax.set_yticks(range(n), labels, fontsize=5)
            extra = f" copying {copying[l, h]:.2f}" if copying is not None else ""
            ax.set_title(f"L{l}H{h}{extra}", fontsize=8)
    axes[-1, 0].set(xlabel=axes_names[1], ylabel=axes_names[0])
    fig.suptitle(title)
    save_figure(fig, path)


def plot_composition(scores: dict[str, torch.Tensor], baseline: float, path) -> None:
    """Per mode: earlier heads (rows) x later heads (columns); zero where the pair cannot compose."""
    from interp.viz import plt, save_figure

    n_layers, n_heads = next(iter(scores.values())).shape[:2]
    early = [f"L{l}H{h}" for l in range(n_layers - 1) for h in range(n_heads)]
    late = [f"L{l}H{h}" for l in range(1, n_layers) for h in range(n_heads)]
    fig, axes = plt.subplots(1, len(scores), figsize=(1.5 + (1.2 + 0.5 * len(late)) * len(scores),
                                                      1.5 + 0.5 * len(early)), squeeze=False, layout="constrained")
    top = max(max(s.max().item() for s in scores.values()), baseline)   # one colour scale for all modes
    for ax, (mode, s) in zip(axes[0], scores.items()):
        grid = s[:-1, :, 1:, :].reshape(len(early), len(late)).numpy()
        im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=top)
        for (i, j), v in zip(((i, j) for i in range(len(early)) for j in range(len(late))), grid.flatten()):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="w" if v < top / 2 else "k")
        ax.set_xticks(range(len(late)), late, rotation=90, fontsize=7)
        ax.set_yticks(range(len(early)), early, fontsize=7)
        ax.set(title=f"{mode}-composition", xlabel="later head (reads)", ylabel="earlier head (writes)")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    fig.suptitle(f"composition scores (random baseline {baseline:.3f})")
    save_figure(fig, path)
