"""Top-k next-token probabilities at each position of a prompt."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from interp.analyses.common.inputs import prompt_tokens, require_lm
from interp.data.batch import IGNORE_INDEX


@torch.no_grad()
def topk_next(model, tokens: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(top-k probabilities [pos, k], their token ids [pos, k], full next-token distribution [pos, vocab])."""
    probs = model(tokens.to(next(model.parameters()).device))[0].float().softmax(-1).cpu()
    top = probs.topk(k, dim=-1)
    return top.values, top.indices, probs


def plot(top_p: torch.Tensor, top_strings: list[list[str]], inputs: list[str], path) -> None:
    """Columns = positions (labelled by the input token), rows = rank; each cell names the token."""
    from interp.viz import plt, save_figure, token_labels

    n_pos, k = top_p.shape
    fig, ax = plt.subplots(figsize=(2 + 0.5 * n_pos, 1.5 + 0.9 * k))
    im = ax.imshow(top_p.T.numpy(), cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for pos, strings in enumerate(top_strings):
        for rank, (label, p) in enumerate(zip(token_labels(strings), top_p[pos].tolist())):
            ax.text(pos, rank, label, ha="center", va="center", rotation=90, fontsize=6,
                    color="w" if p > 0.6 else "k")
    ax.set_xticks(range(n_pos), token_labels(inputs), rotation=90, fontsize=7)
    ax.set(yticks=range(k), yticklabels=[f"#{r + 1}" for r in range(k)], xlabel="input token (predicting the next)",
           title="top-k next-token probabilities")
    fig.colorbar(im, ax=ax, label="probability")
    save_figure(fig, path)


def run(model, datamodule, out_dir, prompt: str | None = None, k: int = 5) -> dict[str, float]:
    """topk_next.png and topk_next.json; numbers on how well the prompt's own next tokens are predicted."""
    require_lm(datamodule, "topk_next")
    tok = datamodule.tokenizer
    tokens = prompt_tokens(model, datamodule, prompt)
    top_p, top_i, probs = topk_next(model, tokens, k)
    inputs, actual = tok.decode_tokens(tokens[0]), tokens[0, 1:]
    top_strings = [tok.decode_tokens(row) for row in top_i]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "topk_next.json").write_text(json.dumps(
        [{"input": inputs[p], "actual_next": inputs[p + 1] if p + 1 < len(inputs) else None,
          "top": list(zip(top_strings[p], top_p[p].tolist()))} for p in range(len(inputs))], indent=1) + "\n")
    plot(top_p, top_strings, inputs, out_dir / "topk_next.png")
    entropy = -(probs * probs.clamp(min=1e-30).log()).sum(-1)
    results = {"top1_prob_mean": top_p[:, 0].mean().item(), "entropy_mean": entropy.mean().item(),
               "last/top1_prob": top_p[-1, 0].item()}
    if len(actual):   # the prompt's own continuation at every position but the last
        results["next_top1_acc"] = (top_i[:-1, 0] == actual).float().mean().item()
        results[f"next_in_top{k}"] = (top_i[:-1] == actual[:, None]).any(-1).float().mean().item()
        results["next_prob_mean"] = probs[:-1].gather(-1, actual[:, None]).mean().item()
    if prompt is None:   # a validation example: also score just the targets its loss counts (e.g. QA answers)
        targets = datamodule.val_ds[0]["targets"][:len(inputs)]
        scored = targets != IGNORE_INDEX
        results["scored_top1_acc"] = (top_i[scored, 0] == targets[scored]).float().mean().item()
    return results
