"""Activation patching: which activations carry the difference between a clean and a corrupted prompt.

Run the corrupted prompt, overwrite one activation with its value from the
clean run, and measure the logit difference logit(answer) - logit(wrong) at the
last position, normalised so the clean run scores 1 and the corrupted run 0.
Patched are the residual stream before each layer at each position, and each
head's output (hook_z, all positions), with `transformer_lens.patching`.

Default pair (the induction test): clean = [BOS] + r + r[:-1] (answer r[-1],
which induction copies from the first copy), corrupted = the same with r[-1]
in the first copy replaced by a new token w (wrong = w, what induction would
copy there). Only position len(r) differs, so a 2-layer induction circuit shows
up as: restored at that position up to layer 1's input, and by layer-1 heads.
"""

from contextlib import contextmanager
from unittest import mock

import torch
from transformer_lens import patching as tl_patching

from interp.analyses.common.inputs import encode_prompt, require_attention, require_lm
from interp.analyses.logit_attribution import answer_id
from interp.errors import ConfigError, NotApplicable
from interp.models import context_length


def logit_diff(logits: torch.Tensor, answer: torch.Tensor, wrong: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of logit(answer) - logit(wrong) at the last position; answer, wrong: [batch]."""
    last = logits[:, -1]
    rows = torch.arange(len(last), device=last.device)
    return (last[rows, answer] - last[rows, wrong]).mean()


def normalised_metric(answer, wrong, clean_value: float, corrupted_value: float):
    """logits -> (logit diff - corrupted) / (clean - corrupted): 1 = fully restored, 0 = as corrupted."""
    return lambda logits: (logit_diff(logits, answer, wrong) - corrupted_value) / (clean_value - corrupted_value)


@contextmanager
def _quiet():
    """transformer_lens.patching draws a tqdm bar per sweep; inside analyses and callbacks that is noise."""
    with mock.patch.object(tl_patching, "tqdm", lambda iterable, *a, **k: iterable):
        yield


@torch.no_grad()
def patching_grids(model, corrupted_tokens: torch.Tensor, clean_cache, metric) -> dict[str, torch.Tensor]:
    """metric after patching each clean activation into the corrupted run:
    `resid_pre` [layer, pos] and `heads` [layer, head] (a head's output at every position)."""
    with _quiet():
        return {"resid_pre": tl_patching.get_act_patch_resid_pre(model, corrupted_tokens, clean_cache, metric).cpu(),
                "heads": tl_patching.get_act_patch_attn_head_out_all_pos(model, corrupted_tokens, clean_cache,
                                                                         metric).cpu()}


def induction_pair(n_batch: int, length: int, low: int, high: int, seed: int, bos_id: int):
    """(clean, corrupted [n_batch, 2*length], answer, wrong [n_batch]) as in the module doc; tokens in r are
    distinct so the earlier occurrence is unambiguous."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randperm(high - low, generator=g)[: length + 1] for _ in range(n_batch)]) + low
    r, w = ids[:, :length], ids[:, length]
    clean = torch.cat([torch.full((n_batch, 1), bos_id), r, r[:, :-1]], dim=1)
    corrupted = clean.clone()
    corrupted[:, length] = w   # r[-1]'s place in the first copy
    return clean, corrupted, r[:, -1], w


def _user_pair(model, tokenizer, clean, corrupted, answer, wrong, answer_space=True):
    if clean is None or corrupted is None:
        raise ConfigError("patching needs both clean= and corrupted= prompts (or neither, for the induction default).")
    n_ctx = context_length(model)
    clean_t, corrupted_t = encode_prompt(clean, tokenizer, n_ctx), encode_prompt(corrupted, tokenizer, n_ctx)
    if clean_t.shape != corrupted_t.shape:
        raise ConfigError(f"clean= is {clean_t.shape[1]} tokens and corrupted= {corrupted_t.shape[1]}: patching by "
                          "position needs equal lengths. Fix: change words for words of the same token count.")
    top = lambda t: model(t.to(model.cfg.device))[0, -1].argmax().item()   # noqa: E731  (run is no_grad)
    a = answer_id(tokenizer, answer, clean, answer_space) if answer is not None else top(clean_t)
    w = answer_id(tokenizer, wrong, corrupted, answer_space) if wrong is not None else top(corrupted_t)
    if a == w:
        raise ConfigError(f"answer and wrong are the same token ({tokenizer.decode([a])!r}). "
                          "Fix: pass answer=<clean's next word> wrong=<corrupted's next word>.")
    return clean_t, corrupted_t, torch.tensor([a]), torch.tensor([w])


@torch.no_grad()
def run(model, datamodule, out_dir, clean: str | None = None, corrupted: str | None = None, answer: str | None = None,
        wrong: str | None = None, n_batch: int = 16, length: int = 10, seed: int = 0, min_gap: float = 0.1,
        answer_space: bool = True) -> dict[str, float]:
    """Patching grids (PNG) and numbers: clean/corrupted logit diffs, every head, and per layer the residual
    stream at the first position where the prompts differ and at the last position. Skipped when the clean
    and corrupted logit diffs differ by less than `min_gap` nats: normalised scores would be noise."""
    require_attention(model, "patching")
    require_lm(datamodule, "patching")
    tok = datamodule.tokenizer
    if clean is None and corrupted is None:   # answer/wrong alone belong to another analysis' prompt
        cfg = datamodule.cfg
        low, high = (cfg.token_low, cfg.token_high) if hasattr(cfg, "token_low") else (256, model.cfg.d_vocab - 1)
        length = min(length, model.cfg.n_ctx // 2, high - low - 1)
        clean_t, corrupted_t, a, w = induction_pair(n_batch, length, low, high, seed, tok.eot_id)
    else:
        clean_t, corrupted_t, a, w = _user_pair(model, tok, clean, corrupted, answer, wrong, answer_space)
    device = model.cfg.device
    clean_t, corrupted_t, a, w = (t.to(device) for t in (clean_t, corrupted_t, a, w))
    clean_logits, clean_cache = model.run_with_cache(clean_t)
    clean_value, corrupted_value = logit_diff(clean_logits, a, w).item(), logit_diff(model(corrupted_t), a, w).item()
    if abs(clean_value - corrupted_value) < min_gap:
        raise NotApplicable(f"the logit difference is {clean_value:.3g} clean and {corrupted_value:.3g} corrupted, "
                            f"a gap under min_gap={min_gap}: the model does not use what the corruption changes")
    grids = patching_grids(model, corrupted_t, clean_cache, normalised_metric(a, w, clean_value, corrupted_value))

    labels = _position_labels(tok, clean_t[0].tolist(), corrupted_t[0].tolist())
    plot_grids(grids, labels, f"logit diff: clean {clean_value:.2f}, corrupted {corrupted_value:.2f} "
               "(normalised to 1 and 0)", f"{out_dir}/patching.png")
    results = {"clean_logit_diff": clean_value, "corrupted_logit_diff": corrupted_value}
    for layer, row in enumerate(grids["heads"].tolist()):
        results.update({f"heads/L{layer}H{h}": v for h, v in enumerate(row)})
    differs = (clean_t != corrupted_t).any(0).nonzero()
    for layer, row in enumerate(grids["resid_pre"].tolist()):
        if len(differs):
            results[f"resid_pre/L{layer}/first_changed_pos"] = row[int(differs[0])]
        results[f"resid_pre/L{layer}/last_pos"] = row[-1]
    return results


def _position_labels(tokenizer, clean: list[int], corrupted: list[int]) -> list[str]:
    """Clean tokens; 'clean/corrupted' where the prompts differ."""
    from interp.viz import token_labels

    c, k = token_labels(tokenizer.decode_tokens(clean)), token_labels(tokenizer.decode_tokens(corrupted))
    return [a if a == b else f"{a}/{b}" for a, b in zip(c, k)]


def plot_grids(grids: dict[str, torch.Tensor], labels: list[str], title: str, path) -> None:
    from interp.viz import plt, save_figure

    resid, heads = grids["resid_pre"].numpy(), grids["heads"].numpy()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(3 + 0.3 * len(labels) + 0.5 * heads.shape[1], 2 + 0.5 * len(resid)),
                                   width_ratios=[len(labels), max(heads.shape[1], 2)], layout="constrained")
    for ax, grid in ((ax1, resid), (ax2, heads)):
        im = ax.imshow(grid, cmap="RdBu", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    ax1.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
    ax1.set(yticks=range(len(resid)), ylabel="layer", title="residual stream (resid_pre) by position")
    ax2.set(xticks=range(heads.shape[1]), yticks=range(len(heads)), xlabel="head", ylabel="layer",
            title="head outputs (all positions)")
    fig.colorbar(im, ax=[ax1, ax2], shrink=0.8, label="restored fraction")
    fig.suptitle(f"activation patching, clean -> corrupted\n{title}", fontsize=9)
    save_figure(fig, path)
