"""Feature-dashboard bookkeeping against the work it rides on, for the whole dictionary of an SAE.

The dashboard pass (interp.features.dashboard.collect) runs the base model up to the SAE's hook, encodes
with the SAE, then does its bookkeeping: per feature a streaming top-k, a uniform sample of firings,
firing counts and a log-activation histogram, plus the sequences kept for contexts. Here both parts
run on the same batches in one process, timed separately per batch; the ratio
bookkeeping / (forward + encode) is the cost of the dashboard over what any pass over the corpus
pays anyway (goal: <= 1). Batches come from the run's training data, loaded before timing.

    python benchmarks/feature_dashboard.py --run <SAE run dir> [--tokens 1000000] [--k 20] [--samples 100]
                                           [--threads N] [--clock wall|cpu]
    python benchmarks/feature_dashboard.py --base <LM run dir> --hook blocks.2.hook_resid_post --d-sae 2048
        (a randomly initialised TopK SAE of that width, k=--topk, when no trained SAE is at hand)
"""

import interp.hugepages  # noqa: F401  (first: before torch loads, as in train.py)
import argparse
import time
import warnings

import torch

from interp.data import build_datamodule
from interp.data.batch import model_inputs, padding_mask
from interp.features.dashboard import POS_BITS, Corpus, FeatureCollector, sae_activations
from interp.runs import load_run

warnings.filterwarnings("ignore")


def random_topk_sae(d_in: int, d_sae: int, k: int, hook: str):
    from sae_lens import TopKSAE, TopKSAEConfig

    sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=k))
    sae.cfg.metadata.hook_name = hook
    return sae


def batches_of(run, n_tokens: int) -> list[dict]:
    dm = build_datamodule(run.config["data"], seed=run.config.get("seed", 0))
    dm.setup("fit")
    out, seen = [], 0
    while seen < n_tokens:
        for batch in dm.train_dataloader():
            out.append(batch)
            seen += batch["tokens"].numel()
            if seen >= n_tokens:
                break
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", help="an SAE run directory")
    p.add_argument("--base", help="a language-model run directory (with --hook, --d-sae: random TopK SAE)")
    p.add_argument("--hook", default="blocks.2.hook_resid_post")
    p.add_argument("--d-sae", type=int, default=2048)
    p.add_argument("--topk", type=int, default=32)
    p.add_argument("--tokens", type=int, default=1_000_000)
    p.add_argument("--k", type=int, default=20, help="top-k contexts kept per feature")
    p.add_argument("--samples", type=int, default=100, help="uniform sample of firings kept per feature")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="cpu: time.process_time, leaving out the waits for a core on a shared machine")
    args = p.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    run = load_run(args.run or args.base)
    model, sae = run.model, run.sae
    if sae is None:
        sae = random_topk_sae(model.cfg.d_model, args.d_sae, args.topk, args.hook)
    sae.eval()
    batches = batches_of(run, args.tokens)
    collector = FeatureCollector(sae.cfg.d_sae, args.k, args.samples)
    corpus = Corpus()
    t_fwd = t_book = 0.0
    with torch.no_grad():
        for batch in batches:
            tokens = model_inputs(batch)
            t0 = clock()
            feats = sae_activations(model, sae, tokens)
            t1 = clock()
            mask = padding_mask(batch)
            mask = torch.ones(tokens.shape, dtype=torch.bool) if mask is None else mask
            seq, pos = mask.nonzero(as_tuple=True)
            collector.add(feats[mask], (seq + len(corpus.sequences)) << POS_BITS | pos)
            corpus.sequences += [t[m] for t, m in zip(tokens, mask)]
            t2 = clock()
            t_fwd, t_book = t_fwd + t1 - t0, t_book + t2 - t1
    n = collector.n_tokens
    fired = collector.counts.sum().item() / n
    print(f"SAE {sae.cfg.metadata.hook_name} d_sae={sae.cfg.d_sae} ({'trained' if run.sae is not None else 'random TopK'}),"
          f" {n} tokens in {len(batches)} batches of {batches[0]['tokens'].shape}, {fired:.1f} firings/token, "
          f"{torch.get_num_threads()} threads, {args.clock} clock")
    print(f"forward to the hook + SAE encode: {t_fwd:.2f} s ({n / t_fwd:,.0f} tokens/s)")
    print(f"dashboard bookkeeping (top-{args.k}, {args.samples} samples, counts, histogram, contexts): "
          f"{t_book:.2f} s ({n / t_book:,.0f} tokens/s)")
    print(f"ratio bookkeeping / (forward + encode) = {t_book / t_fwd:.3f}  (goal <= 1)")


if __name__ == "__main__":
    main()
