"""Analyse a saved run: `python analyze.py run=<run dir> analysis=<name>|[names] [options]`.

`python analyze.py run=<run> hooks` lists the model's hook names and shapes. Options
(`prompt=`, `answer=`, `k=`, ...) go to the analyses that take them; an option none of
them takes is an error listing the valid ones. Free text needs only the shell's quotes:
`prompt="def add(a, b): return a + b"`; `\\n` in it is a newline; `prompt_file=<path>`
reads a long text. See README.md.

`python analyze.py compare <sweep dir | run dirs>` compares runs offline (interp.compare): a table of
the parameters that differ against the final metrics, overlaid training curves, SAE Pareto plots.
`python analyze.py serve` starts the explorer (a local web app over the runs); `python analyze.py
index` writes its start page as a static index.html (interp/explorer/cli.py).
"""

import interp.hugepages  # noqa: F401  (first: huge pages for large tensors, set before torch loads)
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from interp.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="analyze")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    from interp.analyzing import analyze

    analyze(cfg)


if __name__ == "__main__":
    if sys.argv[1:2] == ["compare"]:   # a subcommand of its own, not an analysis of one run
        from interp.compare import main as compare

        compare(sys.argv[2:])
        sys.exit(0)
    if sys.argv[1:2] in (["serve"], ["index"]):   # the explorer: argparse options, not Hydra overrides
        from interp.explorer.cli import main as explorer

        exit_on_user_error(explorer)(sys.argv[1:])
        sys.exit(0)
    from interp.analyzing import TEXT_OPTIONS, entry_keys
    from interp.cli import (bare_names_to, check_override_syntax, hydra_errors_in_one_line, plus_new_keys,
                            quote_text_options)

    conf = Path(__file__).with_name("conf")
    argv = quote_text_options(bare_names_to("analysis", sys.argv), (*TEXT_OPTIONS, "prompt_file"))
    check_override_syntax(argv, TEXT_OPTIONS)
    sys.argv = plus_new_keys(argv, entry_keys(conf / "analyze.yaml"))
    with hydra_errors_in_one_line("analyze.py", conf):
        main()
