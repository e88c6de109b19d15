"""`analyze.py compare`: the offline comparison report of a sweep, from run directories alone."""

import csv
import json
import shutil
import subprocess
import sys

import pytest
from conftest import FAST_BY_DATA, REPO, SAE_FAST_COMMON

from interp.compare import main
from interp.compare.figures import curves_figure, frontier, x_parameter
from interp.compare.report import compare
from interp.compare.runs import DONE, Run, differing
from interp.runs.history import csv_curves, curves, wandb_curves
from interp.runs.wandb_offline import history_keys, offline_runs, run_info

GRID = ["data=induction", *FAST_BY_DATA["induction"], "model=transformer_0l,transformer_1l", "optim.lr=1e-3,3e-3",
        "logger=[wandb,csv,tensorboard]"]


@pytest.fixture(scope="module")
def grid(run_train, tmp_path_factory):
    """A 2×2 sweep, logged to W&B offline, a CSV log and TensorBoard at once."""
    sweep = tmp_path_factory.mktemp("sweeps") / "grid"
    run_train(*GRID, run_dir=sweep, multirun=True)
    return sweep


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def analyze_compare(*args, env):
    return subprocess.run([sys.executable, str(REPO / "analyze.py"), "compare", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
def test_a_2x2_grid_is_one_wandb_group_and_a_4_row_comparison(grid, train_env):
    infos = [run_info(offline_runs(grid / str(job))[0]) for job in range(4)]
    assert {i["group"] for i in infos} == {grid.name} and len({i["id"] for i in infos}) == 4
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(grid / "3" / "tensorboard")).Reload()   # HParams view: config + final metrics
    assert {"train/loss", "final/val/loss"} <= set(events.Tags()["scalars"])
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")

    proc = analyze_compare(grid, env=train_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = grid / "compare"
    table = rows(out / "table.csv")
    assert [r["run"] for r in table] == ["0", "1", "2", "3"] and {r["status"] for r in table} == {"done"}
    params = list(table[0])[2:list(table[0]).index("val/loss")]
    assert params[:2] == ["model", "optim.lr"]          # the swept keys first; nothing constant, no folders
    assert "seed" not in params and not any("dir" in p for p in params)
    assert {(r["model"], r["optim.lr"]) for r in table} == {(m, lr) for m in ("transformer_0l", "transformer_1l")
                                                           for lr in ("0.001", "0.003")}
    for r in table:   # the final metrics are each run's metrics.json
        assert float(r["val/loss"]) == json.loads((grid / r["run"] / "metrics.json").read_text())["val/loss"]
    page = (out / "table.html").read_text()
    assert "sortBy(" in page and "src=" not in page and "http" not in page   # sortable, self-contained
    assert (out / "table.md").read_text().count("| transformer_") == 4
    assert (out / "curves.png").stat().st_size > 10_000

    # the same table and figures as one offline W&B run in the sweep's group
    summary = offline_runs(out)
    assert len(summary) == 1
    info = run_info(summary[0])
    assert info["group"] == grid.name and info["job_type"] == "compare"
    assert {"lm/table/_type", "lm/curves/_type", "lm/table_html/_type"} <= history_keys(summary[0])
    logged = json.loads(next(summary[0].parent.glob("files/media/table/lm/table_*.table.json")).read_text())
    assert len(logged["data"]) == 4 and logged["columns"] == list(table[0])


@pytest.mark.slow
def test_the_curve_reader_reads_the_runs_own_logs(grid):
    run = grid / "1"
    metrics = json.loads((run / "metrics.json").read_text())
    from_wandb, from_csv = wandb_curves(run), csv_curves(run)
    assert [s for s, _ in from_wandb["train/loss"]] == list(range(6))          # debug=fast: 6 steps
    assert from_wandb["train/loss"][-1][1] == pytest.approx(metrics["train/loss"], rel=1e-6)
    assert from_wandb["val/loss"][-1][1] == pytest.approx(metrics["val/loss"], rel=1e-6)
    for key in ("train/loss", "val/loss", "val/acc"):                          # two loggers, one curve
        assert from_csv[key] == pytest.approx(from_wandb[key], rel=1e-6), key
    assert not any(k.startswith(("final/", "_")) or k == "trainer/global_step" for k in from_wandb)
    assert curves(run)["train/loss"] == from_wandb["train/loss"]


@pytest.mark.slow
def test_failed_and_incomplete_jobs_are_rows_with_their_reason(grid, tmp_path):
    sweep = tmp_path / "sweep"
    for job in range(4):
        shutil.copytree(grid / str(job), sweep / str(job))
    # the sweep contract: a failed job's metrics.json says so; a killed one has none
    (sweep / "2" / "metrics.json").write_text(json.dumps(
        {"status": "failed", "error": "loss is NaN at step 3. Fix: lower optim.lr", "error_type": "TrainingDiverged"}))
    (sweep / "3" / "metrics.json").unlink()
    report = compare([sweep], wandb=False)
    table = {r["run"]: r for r in rows(sweep / "compare" / "table.csv")}
    assert [table[j]["status"] for j in "0123"] == ["done", "done", "failed", "incomplete"]
    assert table["2"]["error"] == "TrainingDiverged: loss is NaN at step 3. Fix: lower optim.lr"
    assert table["2"]["val/loss"] == "" and table["0"]["val/loss"] != ""
    assert table["3"]["model"] == "transformer_1l" and table["3"]["optim.lr"] == "0.003"   # parameters still shown
    assert "loss is NaN at step 3" in (sweep / "compare" / "table.md").read_text()
    assert report["lm"]["counts"] == "2 done, 1 failed, 1 incomplete"


@pytest.fixture(scope="module")
def sae_sweep(grid, run_train):
    sweep = grid.parent / "sae_sweep"
    run_train(*SAE_FAST_COMMON, f"base_run={grid / '3'}", "sae=topk", "sae.hook=blocks.0.hook_resid_post",
              "sae.k=2,8", run_dir=sweep, multirun=True)
    return sweep


@pytest.mark.slow
def test_mixed_tasks_are_compared_separately_with_pareto_plots(grid, sae_sweep, tmp_path, capsys):
    main([*(str(grid / j) for j in "01"), str(sae_sweep), f"out={tmp_path}", "wandb=false"])
    printed = capsys.readouterr().out
    assert (f"Left out, another task: 2 run(s) of task=sae (sae_sweep/0, sae_sweep/1): compared in {tmp_path / 'sae'}."
            in (tmp_path / "lm" / "table.md").read_text())
    assert f"2 run(s) of task=lm (grid/0, grid/1): compared in {tmp_path / 'lm'}" in printed
    sae_table = rows(tmp_path / "sae" / "table.csv")
    assert [r["sae.k"] for r in sae_table] == ["2", "8"] and all(float(r["val/l0"]) > 0 for r in sae_table)
    assert len(rows(tmp_path / "lm" / "table.csv")) == 2
    for name in ("explained_variance", "ce_loss_score"):
        assert (tmp_path / "sae" / f"pareto_l0_{name}.png").stat().st_size > 10_000
    assert (tmp_path / "sae" / "curves.png").is_file()   # read from the CSV log (logger=csv)
    assert (tmp_path / "sae" / "final.png").is_file()    # final metrics against sae.k


@pytest.mark.slow
def test_nothing_comparable_is_an_error(grid, sae_sweep, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([str(grid / "0"), str(sae_sweep / "0"), f"out={tmp_path / 'out'}", "wandb=false"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: nothing to compare: no two runs share a task (1 run of task=lm, 1 run of task=sae)")
    assert "Fix:" in err and not (tmp_path / "out").exists()


def test_missing_and_empty_sweep_directories_exit_2(tmp_path, train_env):
    (tmp_path / "empty").mkdir()
    for path, what in ((tmp_path / "missing", "does not exist"), (tmp_path / "empty", "holds no runs")):
        proc = analyze_compare(path, env=train_env)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error: ") and what in proc.stderr and "Fix:" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert not any((tmp_path / "empty").iterdir())


def test_bad_compare_options_exit_2(tmp_path, capsys):
    for argv, what in (([], "needs a sweep directory"), ([str(tmp_path), "outt=x"], "no option 'outt'"),
                       ([str(tmp_path), "wandb=maybe"], "not true or false")):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2 and what in capsys.readouterr().err


def test_pareto_frontier_known_answer():
    # (L0, explained variance): lower L0 and higher variance are better
    points = [(10, 0.5), (20, 0.7), (15, 0.4), (40, 0.9), (30, 0.7), (20, 0.7)]
    assert frontier(points) == [0, 1, 3, 5]   # (15, .4) and (30, .7) are dominated; ties both stay
    assert frontier([(5, 0.1)]) == [0]


def test_each_run_keeps_its_colour_in_every_panel_and_the_legend_lists_all_runs():
    # Only the 2-layer run has a layer-1 score: its line there must still be its own colour, not the first's.
    steps = [(500, 0.1), (1000, 0.5)]
    curves = {"0l": {"val/loss": [(500, 5.0), (1000, 4.9)]},
              "1l": {"val/loss": [(500, 4.0), (1000, 3.5)], "max_L0": steps},
              "2l": {"val/loss": [(500, 3.9), (1000, 1.8)], "max_L0": steps, "max_L1": [(500, 0.0), (1000, 0.9)]}}
    fig = curves_figure(curves, "t")
    legend = {t.get_text(): h.get_color() for t, h in zip(fig.legends[0].texts, fig.legends[0].legend_handles)}
    assert list(legend) == ["0l", "1l", "2l"] and len(set(legend.values())) == 3
    lines = [(ax.get_title(), line.get_label(), line.get_color()) for ax in fig.axes for line in ax.get_lines()]
    assert {(title, label) for title, label, _ in lines} == {("val/loss", "0l"), ("val/loss", "1l"), ("val/loss", "2l"),
                                                            ("max_L0", "1l"), ("max_L0", "2l"), ("max_L1", "2l")}
    assert all(color == legend[label] for _, label, color in lines)


def test_the_final_metrics_are_drawn_against_the_sweeps_numeric_parameter(tmp_path):
    # model=transformer_0l,1l,2l: the override is a group choice; n_layers has the most distinct values
    runs = [Run(tmp_path / str(i), str(i), DONE, task="lm", overrides=[f"model={m}", "seed=0"],
                params={"model": m, "model.n_layers": n, "model.d_head": d, "seed": 0})
            for i, (m, n, d) in enumerate([("transformer_0l", 0, 256), ("transformer_1l", 1, 32), ("transformer_2l", 2, 32)])]
    assert differing(runs) == ["model", "model.d_head", "model.n_layers"]
    assert x_parameter(runs, differing(runs)) == "model.n_layers"
    assert x_parameter(runs[1:], differing(runs[1:])) == "model.n_layers"   # d_head equal there: not a parameter
