"""analyze.py on a saved run: hook listing, analyses, and its bad input."""

import json
import subprocess
import sys

import pytest
from conftest import FAST, REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_run(run_train, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("analyze") / "run"
    callback = "+callbacks.topk_next={_target_:interp.callbacks.AnalysisCallback,analysis:topk_next,k:3}"
    run_train("model=transformer_2l", *FAST, "logger=none", callback, run_dir=run_dir)
    return run_dir


def analyze(train_env, *args):
    return subprocess.run([sys.executable, str(REPO / "analyze.py"), *args], cwd=REPO, env=train_env,
                          capture_output=True, text=True, timeout=300)


def test_hooks_lists_names_and_shapes(trained_run, train_env):
    proc = analyze(train_env, f"run={trained_run}", "hooks")
    assert proc.returncode == 0, proc.stderr
    assert "blocks.1.attn.hook_pattern" in proc.stdout and "[1, 4, 8, 8]" in proc.stdout
    assert "blocks.0.hook_resid_post" in proc.stdout


def test_induction_analysis_writes_results_and_figures(trained_run, train_env):
    proc = analyze(train_env, f"run={trained_run}", "analysis=[induction]")
    assert proc.returncode == 0, proc.stderr
    results = json.loads((trained_run / "figures/induction/results.json").read_text())
    assert len([k for k in results if k.startswith("induction/L")]) == 8   # 2 layers x 4 heads
    assert all(0.0 <= results[f"induction/L{l}H{h}"] <= 1.0 for l in range(2) for h in range(4))
    assert (trained_run / "figures/induction/induction.png").stat().st_size > 1000


def test_unknown_analysis_lists_valid_ones(trained_run, train_env):
    proc = analyze(train_env, f"run={trained_run}", "analysis=nope")
    assert proc.returncode == 2 and "valid" in proc.stderr and "hooks" in proc.stderr


def test_not_a_run_dir(tmp_path, train_env):
    proc = analyze(train_env, f"run={tmp_path}", "hooks")
    assert proc.returncode == 2 and "not an interp run directory" in proc.stderr


def test_the_callback_and_the_command_line_leave_the_same_files(trained_run, train_env, tmp_path):
    import shutil

    from_training = tmp_path / "from_training"
    shutil.copytree(trained_run / "figures/topk_next", from_training)
    proc = analyze(train_env, f"run={trained_run}", "analysis=topk_next", "k=3")   # an option without `+`
    assert proc.returncode == 0, proc.stderr
    again = trained_run / "figures/topk_next"
    assert sorted(p.name for p in again.iterdir()) == sorted(p.name for p in from_training.iterdir())
    for name in ("results.json", "topk_next.json"):
        assert json.loads((again / name).read_text()) == json.loads((from_training / name).read_text()), name
    metrics = json.loads((trained_run / "metrics.json").read_text())
    results = json.loads((again / "results.json").read_text())
    assert {f"analysis/topk_next/{k}": v for k, v in results.items()} == \
        {k: v for k, v in metrics.items() if k.startswith("analysis/topk_next/")}


def test_an_unknown_option_lists_the_valid_ones(trained_run, train_env):
    proc = analyze(train_env, f"run={trained_run}", "analysis=topk_next", "promt=hello")
    assert proc.returncode == 2 and "promt" in proc.stderr and "prompt, k" in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error:")


def test_free_text_works_as_typed_with_newlines_and_from_a_file(trained_run, train_env, tmp_path):
    text = "def add(a, b): return {'x': a + b}, ${HOME}"
    proc = analyze(train_env, f"run={trained_run}", "analysis=topk_next", f"prompt={text}\\nprint(add)")
    assert proc.returncode == 0, proc.stderr
    out = trained_run / "figures/topk_next"
    typed = json.loads((out / "topk_next.json").read_text())
    assert "".join(row["input"] for row in typed) == f"<|endoftext|>{text}\nprint(add)"
    (tmp_path / "p.txt").write_text(f"{text}\nprint(add)", encoding="utf-8")
    proc = analyze(train_env, f"run={trained_run}", "analysis=topk_next", f"prompt_file={tmp_path / 'p.txt'}")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "topk_next.json").read_text()) == typed


def test_an_override_the_grammar_rejects_is_one_error_line(trained_run, train_env):
    proc = analyze(train_env, f"run={trained_run}", "analysis=topk_next", "k=[1,")
    assert proc.returncode == 2 and proc.stderr.startswith("error: cannot parse the override 'k=[1,'")
    assert "Fix:" in proc.stderr and proc.stderr.count("\n") == 1
