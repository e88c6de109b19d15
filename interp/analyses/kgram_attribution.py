"""k-gram MLP: which window positions and which hidden neurons drive its predictions.

The model sees the embeddings of tokens t-k+1..t side by side (`hook_window`,
oldest first), so "which context position matters" is a question about the
k slots of that vector. Two measures:
- ablation: val CE when one slot is zeroed minus clean CE (zeros are what the
  model sees before the start of a sequence, so the input stays in-distribution);
- gradient x input: d log p(target) / d slot . slot, the first-order estimate of
  that same ablation, per prediction (used for the per-prompt heatmap).
Neurons of the last hidden layer are scored by gradient x (activation - mean),
the first-order estimate of mean-ablating each one (attribution patching).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from interp.analyses.common.inputs import prompt_tokens
from interp.data.batch import IGNORE_INDEX
from interp.errors import NotApplicable
from interp.models.kgram import KGramMLP


def slot_names(k: int) -> list[str]:
    """Slot j of the window holds token t-(k-1-j): name slots by distance, current token last."""
    return [f"t-{k - 1 - j}" for j in range(k)]


def gradient_attributions(model: KGramMLP, tokens: torch.Tensor, targets: torch.Tensor):
    """(slot [B, T, k], hidden [B, T, H], d log p / d hidden [B, T, H]) for log p(target); IGNORE_INDEX targets count 0.

    slot[b, t, j] = grad . input of window slot j (signed: > 0 means the slot helps the target).
    """
    hidden_hook = f"blocks.{len(model.blocks) - 1}.hook_post"
    kept = {}

    def window_leaf(x, hook):   # a leaf, so gradients stop here (none flow into the embedding)
        kept["window"] = x.detach().requires_grad_(True)
        return kept["window"]

    def keep_hidden(x, hook):
        x.retain_grad()
        kept["hidden"] = x

    with torch.enable_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=[("hook_window", window_leaf), (hidden_hook, keep_hidden)])
        logp = logits.log_softmax(-1).gather(-1, targets.clamp(min=0)[..., None])[..., 0]
        (logp * (targets != IGNORE_INDEX)).sum().backward()
    window, hidden = kept["window"], kept["hidden"]
    slot = (window.grad * window).unflatten(-1, (model.k, -1)).sum(-1)
    return slot.detach(), hidden.detach(), hidden.grad


@torch.no_grad()
def slot_ablation(model: KGramMLP, tokens: torch.Tensor, targets: torch.Tensor) -> tuple[float, torch.Tensor]:
    """(clean CE, CE with each window slot zeroed [k]) over the scored targets."""

    def ce(logits):
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX).item()

    def zero_slot(j):
        def hook(x, hook):
            x = x.clone().unflatten(-1, (model.k, -1))
            x[..., j, :] = 0
            return x.flatten(-2)
        return hook

    clean = ce(model(tokens))
    return clean, torch.tensor([ce(model.run_with_hooks(tokens, fwd_hooks=[("hook_window", zero_slot(j))]))
                                for j in range(model.k)])


def val_attribution(model: KGramMLP, datamodule, max_batches: int = 8) -> dict:
    """Over validation batches: clean CE, slot ablation dCE [k], mean |grad x input| share per slot [k],
    and per-neuron mean-ablation attribution [H] (mean and mean |.| over scored targets)."""
    device = next(model.parameters()).device
    clean_ce, dce, gxi, g_h, h_all, n = 0, 0, 0, [], [], 0
    for i, batch in enumerate(datamodule.val_dataloader()):
        if i == max_batches:
            break
        tokens, targets = batch["tokens"].to(device), batch["targets"].to(device)
        scored = targets != IGNORE_INDEX
        clean, ablated = slot_ablation(model, tokens, targets)
        clean_ce, dce = clean_ce + clean, dce + (ablated - clean)
        slot, hidden, grad = gradient_attributions(model, tokens, targets)
        gxi = gxi + slot[scored].abs().sum(0).cpu()
        g_h.append(grad[scored].cpu())
        h_all.append(hidden[scored].cpu())
        n += 1
    grads, hidden = torch.cat(g_h), torch.cat(h_all)
    neuron = grads * (hidden - hidden.mean(0))   # [N, H]
    return {"clean_ce": clean_ce / n, "ablation_dce": dce / n, "gxi_share": gxi / gxi.sum(),
            "neuron_mean": neuron.mean(0), "neuron_abs": neuron.abs().mean(0)}


def plot(results: dict[str, torch.Tensor], prompt_slot: torch.Tensor, labels: list[str], predicted: list[str],
         n_neurons: int, path) -> None:
    """Bars per window slot (ablation dCE, grad x input share), top neurons, and per prompt position
    the |grad x input| share of each slot in the model's own top prediction."""
    from interp.viz import plt, save_figure, token_labels

    k = len(results["ablation_dce"])
    fig, axes = plt.subplots(2, 2, figsize=(max(10, 0.35 * len(labels) + 4), 8))
    axes[0, 0].bar(slot_names(k), results["ablation_dce"].numpy())
    axes[0, 0].set(title="val CE increase when the slot is zeroed", ylabel="nats")
    axes[0, 1].bar(slot_names(k), results["gxi_share"].numpy(), color="tab:orange")
    axes[0, 1].set(title="share of mean |grad x input| on log p(target)")
    top = results["neuron_abs"].topk(min(n_neurons, len(results["neuron_abs"]))).indices
    axes[1, 0].bar([f"n{i}" for i in top.tolist()], results["neuron_abs"][top].numpy(), color="tab:green")
    axes[1, 0].tick_params(axis="x", rotation=90, labelsize=7)
    axes[1, 0].set(title="top neurons: mean |grad x (act - mean)| (last hidden layer)")
    share = prompt_slot.abs() / prompt_slot.abs().sum(-1, keepdim=True).clamp(min=1e-12)
    im = axes[1, 1].imshow(share.T.numpy(), aspect="auto", cmap="magma", vmin=0, vmax=1, interpolation="nearest")
    ticks = [f"{a} → {b}" for a, b in zip(token_labels(labels), token_labels(predicted))]
    axes[1, 1].set_xticks(range(len(labels)), ticks, rotation=90, fontsize=6)
    axes[1, 1].set_yticks(range(k), slot_names(k))
    axes[1, 1].set_title("prompt: which slot drives each top-1 prediction")
    fig.colorbar(im, ax=axes[1, 1])
    save_figure(fig, path)


def run(model, datamodule, out_dir, prompt: str | None = None, max_batches: int = 8, k: int = 10) -> dict[str, float]:
    """Window-slot and neuron attributions over validation data; attribution.png in out_dir."""
    if not isinstance(model, KGramMLP):
        raise NotApplicable("kgram_attribution reads the k-gram MLP's window slots; this model is no k-gram MLP")
    results = val_attribution(model, datamodule, max_batches)
    tokens = prompt_tokens(model, datamodule, prompt).to(next(model.parameters()).device)
    with torch.no_grad():
        predicted = model(tokens).argmax(-1)
    prompt_slot = gradient_attributions(model, tokens, predicted)[0][0].cpu()
    decode = datamodule.tokenizer.decode_tokens
    plot(results, prompt_slot, decode(tokens[0]), decode(predicted[0]), k, f"{out_dir}/attribution.png")

    names = slot_names(model.k)
    out = {"clean_ce": results["clean_ce"]}
    out.update({f"ablation_dce/{s}": v for s, v in zip(names, results["ablation_dce"].tolist())})
    out.update({f"gxi_share/{s}": v for s, v in zip(names, results["gxi_share"].tolist())})
    top = results["neuron_abs"].topk(min(k, len(results["neuron_abs"])))
    for rank, (i, v) in enumerate(zip(top.indices.tolist(), top.values.tolist())):
        out[f"neuron_top{rank}/index"], out[f"neuron_top{rank}/mean_abs_attr"] = float(i), v
        out[f"neuron_top{rank}/mean_attr"] = results["neuron_mean"][i].item()
    out["neuron_top_k_share"] = (top.values.sum() / results["neuron_abs"].sum()).item()
    return out
