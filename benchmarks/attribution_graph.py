"""Attribution graphs on a run of per-layer transcoders: wall time of the whole graph (the local
replacement model, every row, pruning, scores, graph.json / graph.html / graph.pt) against prompt length,
and the replacement and completeness scores on the built-in probe prompts.

Each graph is `interp.analyses.attribution_graph.run`, what `analyze.py analysis=attribution_graph`
calls, on prompts cut from the run's validation data to each length (then on every probe text).

    python benchmarks/attribution_graph.py --run <run of experiment=lm_mix_transcoders> [--lengths 32 64 128 256]

Goals (issue "attribution graphs"): a 64-token graph in <= 10 s on 2 CPU cores; a median replacement
score of the pruned graph >= 0.6 on the probe prompts.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--run", required=True, help="a run with one transcoder per layer")
    p.add_argument("--lengths", type=int, nargs="+", default=[32, 64, 128, 256])
    p.add_argument("--repeats", type=int, default=2, help="timed graphs per length (the fastest is reported)")
    p.add_argument("--cap", type=int, default=8192, help="max_feature_nodes for prompts of --cap-from tokens or more")
    p.add_argument("--cap-from", type=int, default=256, help="(a dense graph of 256 tokens needs ~20 GB on lm_mix)")
    p.add_argument("--no-probes", action="store_true")
    args = p.parse_args()

    from interp.analyses.attribution_graph import run as graph
    from interp.features.probes import builtin_probes
    from interp.runs.load import load_run
    from interp.targets import subject_of

    subject = subject_of(load_run(args.run))
    dm, tok = subject.datamodule, subject.datamodule.tokenizer
    ids = [t for i in range(4) for t in dm.val_ds[i]["tokens"].tolist() if t != tok.eot_id]
    print(f"{args.run}: {len(subject.dictionaries)} transcoders, torch threads {torch.get_num_threads()}")
    print("| prompt tokens | active features | feature nodes | nodes | seconds (build, prune, files) | of which rows |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for length in args.lengths:
            prompt = tok.decode(ids[:length - 1])   # + the leading [eot]
            best = None
            for _ in range(args.repeats):
                start = time.perf_counter()
                cap = args.cap if length >= args.cap_from else None
                m = graph(subject.model, dm, Path(tmp) / "g", dictionaries=subject.dictionaries, prompt=prompt,
                          max_prompt_tokens=4096, memory_budget_gb=64, max_feature_nodes=cap)
                seconds = time.perf_counter() - start
                best = min(best or (seconds, m), (seconds, m), key=lambda x: x[0])
            seconds, m = best
            print(f"| {len(tok.encode(prompt)) + 1} | {m['active_features']:.0f} | {m['features']:.0f} | "
                  f"{m['nodes']:.0f} | {seconds:.2f} | {m['build_s']:.2f} |", flush=True)
        if args.no_probes:
            return
        probes = builtin_probes()
        rows = []
        for category, text in zip(probes.categories, probes.texts):
            m = graph(subject.model, dm, Path(tmp) / "p", dictionaries=subject.dictionaries, prompt=text)
            rows.append((category, m))
    for key in ("pruned_replacement_score", "replacement_score", "pruned_completeness_score", "completeness_score"):
        values = sorted(m[key] for _, m in rows)
        q = statistics.quantiles(values, n=4)
        print(f"{key}: median {statistics.median(values):.3f} (quartiles {q[0]:.3f}, {q[2]:.3f}; "
              f"min {values[0]:.3f}, max {values[-1]:.3f}) over {len(values)} probe prompts")
    for category in probes.category_names():
        values = [m["pruned_replacement_score"] for c, m in rows if c == category]
        print(f"  {category:<15} pruned replacement score median {statistics.median(values):.3f} ({len(values)})")


if __name__ == "__main__":
    main()
