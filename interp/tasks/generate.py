"""Greedy decoding that works for any causal model (transformer, LSTM, k-gram).

Prompts are right-padded into one batch; every step re-runs the whole batch
and reads each row's logits at its own last position. Causality makes the
padding invisible to earlier positions, so no attention mask or KV cache is
needed. Re-running is wasteful for long generations, but answers here are a
handful of tokens from small models.
"""

import torch


@torch.no_grad()
def greedy_complete(model, prompts: list[list[int]], max_new_tokens: int, stop_id: int,
                    max_len: int | None = None, batch_size: int = 256) -> list[list[int]]:
    """Greedy continuation of each prompt, cut at `stop_id` (excluded)."""
    out: list[list[int]] = []
    device = next(model.parameters()).device
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        lengths = torch.tensor([len(p) for p in chunk], device=device)
        width = int(lengths.max()) + max_new_tokens
        if max_len is not None:
            width = min(width, max_len)
        buf = torch.full((len(chunk), width), stop_id, dtype=torch.long, device=device)
        for i, p in enumerate(chunk):
            buf[i, :len(p)] = torch.tensor(p, device=device)
        done = torch.zeros(len(chunk), dtype=torch.bool, device=device)
        rows = torch.arange(len(chunk), device=device)
        generated = [[] for _ in chunk]
        while not done.all() and int(lengths[~done].max()) < width:
            logits = model(buf[:, : int(lengths.max())])
            nxt = logits[rows, lengths - 1].argmax(-1)
            for i in (~done).nonzero().flatten().tolist():
                if nxt[i] == stop_id or len(generated[i]) >= max_new_tokens:
                    done[i] = True
                    continue
                generated[i].append(int(nxt[i]))
                buf[i, lengths[i]] = nxt[i]
                lengths[i] += 1
                done[i] = lengths[i] >= width
        out.extend(generated)
    return out
