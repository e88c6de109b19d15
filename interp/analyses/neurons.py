"""Top-variance ("monosemantic") neurons at any hook, and what each responds to.

The seed ranked neurons by activation variance on one prompt. Here variance
is taken over validation data (thousands of positions), so a neuron ranks high
because it varies across real inputs, and each top neuron is described by its
top-activating contexts and by the tokens with the highest mean activation.
`token_purity` = share of a neuron's top distinct contexts that end on one and
the same token: 1.0 is a single-token detector, low values a more abstract (or
polysemantic) unit. High variance alone does not imply monosemantic: read the
contexts. In an unprivileged basis (a transformer's residual stream) single
neurons need not mean anything; MLP neurons and LSTM units are the natural units.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import torch

from interp.analyses.common.activations import (
    default_neuron_hook,
    prompt_activations,
    val_activations,
)
from interp.analyses.common.inputs import prompt_tokens
from interp.models.hooks import check_hook


def top_variance_neurons(acts: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, variances) of the k neurons with the largest variance over rows of acts [N, d]."""
    var = acts.var(dim=0)
    top = var.topk(min(k, len(var)))
    return top.indices, top.values


def top_tokens(acts: torch.Tensor, token_ids: torch.Tensor, n: int = 5, min_count: int = 5) -> list[tuple[int, float]]:
    """Tokens with the highest mean activation of one neuron (acts [N]) among tokens seen >= min_count times."""
    vocab = int(token_ids.max()) + 1
    counts = torch.bincount(token_ids, minlength=vocab)
    means = torch.zeros(vocab).index_add_(0, token_ids, acts) / counts.clamp(min=1)
    means[counts < min_count] = -float("inf")
    best = means.topk(min(n, int((counts >= min_count).sum())))
    return list(zip(best.indices.tolist(), best.values.tolist()))


def token_purity(token_ids_of_top: torch.Tensor) -> float:
    """Share of a neuron's top activations on its most common token."""
    return Counter(token_ids_of_top.tolist()).most_common(1)[0][1] / len(token_ids_of_top)


def context(tokenizer, seq: torch.Tensor, pos: int, width: int = 8) -> str:
    """`…prefix[[token]]` for a position of a token sequence, newlines escaped (one table line)."""
    before = tokenizer.decode(seq[max(0, pos - width):pos])
    text = ("…" if pos > width else "") + before + "[[" + tokenizer.decode(seq[pos:pos + 1]) + "]]"
    return text.replace("\n", "\\n")


def describe(acts: torch.Tensor, inputs: torch.Tensor, where: torch.Tensor, neurons: torch.Tensor,
             tokenizer=None, n_examples: int = 10, width: int = 8) -> list[dict]:
    """Per neuron: its top-activating contexts (rows), and for language models its top tokens and purity."""
    token_ids = inputs[where[:, 0], where[:, 1]] if tokenizer is not None else None
    out = []
    for neuron in neurons.tolist():
        col = acts[:, neuron]
        entry = {"neuron": neuron, "variance": col.var().item(), "mean": col.mean().item(), "max": col.max().item()}
        if tokenizer is None:   # one row per input: show the input itself
            top_rows = col.topk(min(n_examples, len(col))).indices
            entry["top_inputs"] = [(inputs[r].tolist(), col[r].item()) for r in where[top_rows, 0].tolist()]
        else:
            # Distinct contexts only: templated data repeats the same prefix many times.
            seen, rows = set(), []
            for r in col.argsort(descending=True).tolist():
                s, p = where[r].tolist()
                key = tuple(inputs[s, max(0, p - width):p + 1].tolist())
                if key not in seen:
                    seen.add(key)
                    rows.append(r)
                    if len(rows) == n_examples:
                        break
            entry["top_contexts"] = [(context(tokenizer, inputs[s], p, width), col[r].item())
                                     for r, (s, p) in zip(rows, where[rows].tolist())]
            entry["top_tokens"] = [(tokenizer.decode([t]), m) for t, m in top_tokens(col, token_ids)]
            entry["token_purity"] = token_purity(token_ids[rows])
        out.append(entry)
    return out


def markdown_table(hook: str, described: list[dict]) -> str:
    def code(text) -> str:
        return f"`{text}`".replace("|", "\\|")

    lines = [f"# Top-variance neurons at `{hook}`\n",
             "| rank | neuron | variance | top tokens (mean act) | purity | top contexts (act) |",
             "|---|---|---|---|---|---|"]
    for rank, d in enumerate(described):
        if "top_tokens" in d:
            tokens = ", ".join(f"{code(repr(t))} {m:.2f}" for t, m in d["top_tokens"])
            examples = "<br>".join(f"{code(c)} {a:.2f}" for c, a in d["top_contexts"][:5])
            purity = f"{d['token_purity']:.2f}"
        else:
            tokens, purity = "", ""
            examples = "<br>".join(f"`{x}` {a:.2f}" for x, a in d["top_inputs"][:5])
        lines.append(f"| {rank} | {d['neuron']} | {d['variance']:.4g} | {tokens} | {purity} | {examples} |")
    return "\n".join(lines) + "\n"


def plot(hook: str, described: list[dict], prompt_acts: torch.Tensor | None, prompt_labels: list[str], path) -> None:
    """Bar chart of the top neurons' variance (labelled by their top token) and, for a prompt,
    a heatmap of those neurons over its positions."""
    from interp.viz import plt, save_figure, token_labels

    k = len(described)
    names = [f"n{d['neuron']}" + (f"\n{token_labels([d['top_tokens'][0][0]])[0]}" if d.get("top_tokens") else "")
             for d in described]
    panels = 1 if prompt_acts is None else 2
    fig, axes = plt.subplots(panels, 1, figsize=(max(6, 0.7 * max(k, len(prompt_labels) / 2)), 3.5 * panels),
                             squeeze=False)
    ax = axes[0, 0]
    ax.bar(range(k), [d["variance"] for d in described], color="tab:blue")
    ax.set_xticks(range(k), names, fontsize=7)
    ax.set(ylabel="variance over val data", title=f"top-variance neurons at {hook} (label: top token)")
    if prompt_acts is not None:
        ax = axes[1, 0]
        im = ax.imshow(prompt_acts.T.numpy(), aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_xticks(range(len(prompt_labels)), token_labels(prompt_labels), rotation=90, fontsize=7)
        ax.set_yticks(range(k), [f"n{d['neuron']}" for d in described], fontsize=7)
        ax.set_title("their activations over the prompt")
        fig.colorbar(im, ax=ax)
    save_figure(fig, path)


def run(model, datamodule, out_dir, hook: str | None = None, k: int = 10, n_examples: int = 10,
        max_rows: int = 10000, prompt: str | None = None) -> dict[str, float]:
    """Top-k neurons by variance at `hook` (default: see `default_neuron_hook`) over validation data.

    Writes top_neurons.png, top_neurons.json and top_neurons.md (contexts and tokens per neuron).
    """
    hook = check_hook(model, hook or default_neuron_hook(model))
    acts, inputs, where = val_activations(model, datamodule, [hook], max_rows)
    acts = acts[hook]
    neurons, var = top_variance_neurons(acts, k)
    tokenizer = getattr(datamodule, "tokenizer", None)
    described = describe(acts, inputs, where, neurons, tokenizer, n_examples)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "top_neurons.json").write_text(json.dumps({"hook": hook, "neurons": described}, indent=1) + "\n")
    (out_dir / "top_neurons.md").write_text(markdown_table(hook, described))

    prompt_acts, labels = None, []
    if tokenizer is not None:
        tokens = prompt_tokens(model, datamodule, prompt)
        prompt_acts = prompt_activations(model, tokens, [hook])[hook][:, neurons]
        labels = tokenizer.decode_tokens(tokens[0])
    plot(hook, described, prompt_acts, labels, out_dir / "top_neurons.png")

    total = acts.var(dim=0)
    results = {"n_neurons": float(acts.shape[1]), "n_rows": float(acts.shape[0]),
               "var_mean": total.mean().item(), "var_share_top_k": (var.sum() / total.sum()).item()}
    for rank, d in enumerate(described):
        results[f"top{rank}/neuron"] = float(d["neuron"])
        results[f"top{rank}/variance"] = d["variance"]
        if "token_purity" in d:
            results[f"top{rank}/token_purity"] = d["token_purity"]
    if tokenizer is not None:
        results["token_purity_mean"] = sum(d["token_purity"] for d in described) / len(described)
    return results

