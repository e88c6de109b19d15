"""Direct logit attribution (DLA): how much each component writes the answer's logit.

The final residual stream is a sum of components (embed, pos_embed for
"standard" positions, every head's output, each layer's attention bias b_O,
each MLP). The final LayerNorm is linear once its scale is fixed to the cached
one (TransformerLens `apply_ln_to_stack`), so each component's logit is
`LN(component) @ W_U[:, answer]`, and these plus one constant term (LN bias
and b_U) sum exactly to the logit. With a `wrong` token the direction is
W_U[:, answer] - W_U[:, wrong] (a logit difference); with `center` it is the
answer's logit minus the mean logit, which ignores shifts that softmax ignores.

Why not `cache.decompose_resid`: with shortformer positions TransformerLens
caches `hook_pos_embed` although it never enters the residual stream, and
our models are not LN-folded, so LN's w and b are applied here explicitly.
Per head, the output at a query is sum_src a_src v_src W_O, so DLA also splits
by source position ("which earlier token made this head push the answer").
"""

import torch
from transformer_lens import HookedTransformer

from interp.analyses.common.inputs import encode_prompt, require_attention, require_lm
from interp.data.batch import IGNORE_INDEX
from interp.errors import ConfigError
from interp.models import context_length


def unembed_directions(model: HookedTransformer, answer: torch.Tensor, wrong: torch.Tensor | None = None,
                       center: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(directions [*answer.shape, d_model], bias [*answer.shape]) whose dot with the final LN output is the metric."""
    W_U, b_U = model.W_U, model.b_U
    directions, bias = W_U[:, answer].movedim(0, -1), b_U[answer]
    if wrong is not None:
        directions, bias = directions - W_U[:, wrong].movedim(0, -1), bias - b_U[wrong]
    elif center:
        directions, bias = directions - W_U.mean(1), bias - b_U.mean()
    return directions, bias


def residual_components(model: HookedTransformer, cache) -> tuple[torch.Tensor, list[str]]:
    """Stack [component, batch, pos, d_model] summing to the final residual stream, with labels."""
    cfg = model.cfg
    parts, labels = [cache["hook_embed"]], ["embed"]
    if cfg.positional_embedding_type == "standard":   # other kinds never add positions to the stream
        parts.append(cache["hook_pos_embed"])
        labels.append("pos_embed")
    heads, head_labels = cache.stack_head_results(layer=-1, return_labels=True)
    parts.extend(heads)
    labels += head_labels
    for layer in range(cfg.n_layers):
        parts.append(model.blocks[layer].attn.b_O.expand_as(cache["hook_embed"]))
        labels.append(f"L{layer}_attn_bias")
        if not cfg.attn_only:
            parts.append(cache["mlp_out", layer])
            labels.append(f"L{layer}_mlp")
    return torch.stack(parts), labels


def _final_ln_weight_bias(model) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    ln = getattr(model, "ln_final", None)
    return getattr(ln, "w", None), getattr(ln, "b", None)


@torch.no_grad()
def direct_logit_attribution(model: HookedTransformer, cache, answer: torch.Tensor, wrong: torch.Tensor | None = None,
                             center: bool = False) -> tuple[torch.Tensor, list[str]]:
    """Attributions [component, batch, pos] to the answer logit (or logit difference) and their labels;
    they sum over components to the model's metric exactly (the last component, "bias", is constant)."""
    stack, labels = residual_components(model, cache)
    scaled = cache.apply_ln_to_stack(stack, layer=-1)   # centred and divided by the cached final-LN scale
    w, b = _final_ln_weight_bias(model)
    if w is not None:
        scaled = scaled * w
    directions, bias = unembed_directions(model, answer, wrong, center)
    attrs = (scaled * directions).sum(-1)
    if b is not None:
        bias = bias + directions @ b
    return torch.cat([attrs, bias[None]]), labels + ["bias"]


@torch.no_grad()
def head_source_attribution(model: HookedTransformer, cache, pos: int, direction: torch.Tensor) -> torch.Tensor:
    """[layer, head, src]: logit along `direction` [d_model] that each head at query `pos` writes from each
    source position (batch element 0). Summed over src it is the head's DLA at `pos`."""
    w, _ = _final_ln_weight_bias(model)
    rows = []
    for layer in range(model.cfg.n_layers):
        pattern = cache["pattern", layer][0, :, pos, : pos + 1]           # [head, src]
        f = torch.einsum("shd,hdm->hsm", cache["v", layer][0, : pos + 1], model.blocks[layer].attn.W_O)
        parts = (pattern[..., None] * f).flatten(0, 1)[:, None]          # [head*src, batch=1, d_model]
        scaled = cache.apply_ln_to_stack(parts, layer=-1, pos_slice=pos, batch_slice=[0])
        if w is not None:
            scaled = scaled * w
        rows.append((scaled[:, 0] @ direction).view(model.cfg.n_heads, pos + 1))
    return torch.stack(rows)


def answer_id(tokenizer, text: str, after: str = "", space: bool = True) -> int:
    """First token of `text` as it would follow `after`. GPT-2 BPE words carry their leading space, so a new
    word gets one unless the prompt ends in whitespace; `space=False` (answer_space=false) continues the
    prompt's last word instead (prompt="The Eiff" answer=el)."""
    if not text.strip():
        raise ConfigError("answer/wrong is empty. Fix: pass e.g. answer=Paris (the next word after the prompt).")
    if space and not text[0].isspace() and not after[-1:].isspace():
        text = " " + text
    return tokenizer.encode(text)[0]


def _inputs(model, datamodule, prompt, answer, wrong, n_examples, answer_space=True):
    """(tokens [batch, pos], answer ids [batch, pos] with IGNORE_INDEX where unscored, wrong ids or None)."""
    tok = datamodule.tokenizer
    if (answer is not None or wrong is not None) and prompt is None:
        raise ConfigError("answer=/wrong= name the token after a prompt. Fix: also pass prompt= (or clean=).")
    if wrong is not None and answer is None:
        raise ConfigError("wrong= needs answer= too (the metric is logit(answer) - logit(wrong)).")
    if prompt is None:
        batch = next(iter(datamodule.val_dataloader()))
        return batch["tokens"][:n_examples], batch["targets"][:n_examples], None
    tokens = encode_prompt(prompt, tok, context_length(model))
    targets = torch.cat([tokens[:, 1:], torch.full((1, 1), IGNORE_INDEX)], dim=1)
    if answer is None:   # the prompt's own next tokens
        return tokens, targets, None
    targets.fill_(IGNORE_INDEX)   # only the named answer after the prompt
    targets[0, -1] = answer_id(tok, answer, prompt, answer_space)
    if wrong is None:
        return tokens, targets, None
    wrong_ids = torch.full_like(targets, IGNORE_INDEX)
    wrong_ids[0, -1] = answer_id(tok, wrong, prompt, answer_space)
    return tokens, targets, wrong_ids


@torch.no_grad()
def run(model, datamodule, out_dir, prompt: str | None = None, answer: str | None = None, wrong: str | None = None,
        n_examples: int = 8, clean: str | None = None, answer_space: bool = True) -> dict[str, float]:
    """DLA of every component, averaged over scored positions, of the correct next token's logit minus the mean
    logit: on the first val examples, on the prompt's own next tokens, or on `answer` after the prompt; with
    `wrong` too, of logit(answer) - logit(wrong) after the prompt. Without prompt=, patching's clean= is used,
    so one command attributes and patches the same pair."""
    from interp.viz import token_labels

    require_attention(model, "logit_attribution")
    require_lm(datamodule, "logit_attribution")
    prompt = prompt if prompt is not None else clean
    tokens, targets, wrong_ids = _inputs(model, datamodule, prompt, answer, wrong, n_examples, answer_space)
    device = model.cfg.device
    tokens = tokens.to(device)
    logits, cache = model.run_with_cache(tokens)
    scored = (targets != IGNORE_INDEX).to(device)
    answers = targets.clamp_min(0).to(device)
    wrongs = wrong_ids.clamp_min(0).to(device) if wrong_ids is not None else None
    attrs, labels = direct_logit_attribution(model, cache, answers, wrongs, center=wrongs is None)
    mean = attrs[:, scored].mean(1).cpu()
    # Per head and source token at the last scored position of the first sequence.
    pos = int(scored[0].nonzero().max())
    direction, _ = unembed_directions(model, answers[0, pos], wrongs[0, pos] if wrongs is not None else None,
                                      center=wrongs is None)
    sources = head_source_attribution(model, cache, pos, direction).cpu()
    what = "logit(answer) - logit(wrong)" if wrongs is not None else "logit(correct next token) - mean logit"
    src_labels = token_labels(datamodule.tokenizer.decode_tokens(tokens[0, : pos + 1].tolist()))
    target = token_labels(datamodule.tokenizer.decode_tokens([int(answers[0, pos])]))[0]
    plot_components(mean, labels, what, f"{out_dir}/dla_components.png")
    plot_head_sources(sources, src_labels, f"{what} = '{target}' at position {pos}", f"{out_dir}/dla_head_sources.png")
    results = {f"dla/{label}": v for label, v in zip(labels, mean.tolist())}
    results["metric"] = float(mean.sum())
    return results


def plot_components(mean: torch.Tensor, labels: list[str], what: str, path) -> None:
    from interp.viz import plt, save_figure

    fig, ax = plt.subplots(figsize=(6, 1 + 0.22 * len(labels)))
    colors = ["tab:blue" if v >= 0 else "tab:red" for v in mean.tolist()]
    ax.barh(range(len(labels)), mean.numpy(), color=colors)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="k", lw=0.5)
    ax.set(xlabel="direct logit attribution", title=f"DLA of {what}\n(mean over scored positions)")
    save_figure(fig, path)


def plot_head_sources(sources: torch.Tensor, src_labels: list[str], title: str, path, max_sources: int = 48) -> None:
    from interp.viz import plt, save_figure

    sources, src_labels = sources[..., -max_sources:], src_labels[-max_sources:]   # keep the figure legible
    n_layers, n_heads, n_src = sources.shape
    grid = sources.flatten(0, 1).numpy()
    fig, ax = plt.subplots(figsize=(2 + 0.25 * n_src, 1 + 0.3 * n_layers * n_heads))
    bound = max(abs(grid).max(), 1e-6)
    im = ax.imshow(grid, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(n_src), src_labels, rotation=90, fontsize=6)
    ax.set_yticks(range(n_layers * n_heads), [f"L{l}H{h}" for l in range(n_layers) for h in range(n_heads)], fontsize=7)
    ax.set(xlabel="source token", title=f"per-head DLA by source token\n{title}")
    fig.colorbar(im, ax=ax)
    save_figure(fig, path)
