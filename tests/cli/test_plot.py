"""`rlpipe plot`: learning curves drawn from what rlpipe's sinks (and Spinning Up) write.

Files are written by the real sinks and filters; the figures are real matplotlib figures on
the Agg canvas, inspected through their artists (Line2D data, the band's PolyCollection) and
compared with the files as pandas reads them.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from pipeline import Pipeline
from pipeline.cli import main as rlpipe
from pipeline.cli.curves import (
    default_x,
    ema,
    load_runs,
    moving_average,
    split_name,
    step_rank,
)
from pipeline.cli.plot import figure, main
from pipeline.cli.runfiles import Table, read_table
from pipeline.cli.tail import DelimitedFollower
from sinks import CsvSink, JsonlSink
from tests.reference import warmup_ema

RETURNS = [12.0, 20.0, 9.0, 35.0, 50.0, 41.0, 80.0, 120.0, 95.0, 200.0, 180.0, 260.0]


def write_demo_run(run: Path, episodes: int = 40) -> Path:
    """A run folder shaped like the demo's: train.csv (per episode, EMA-smoothed return) and
    eval.csv (one aggregate of 5 eval episodes every 10 train episodes)."""
    train = Pipeline("train").smooth("return", coeff=0.99).to(CsvSink(run / "train.csv"))
    evaluate = Pipeline("eval").aggregate("return", every=5).to(CsvSink(run / "eval.csv"))
    steps = 0
    for episode in range(1, episodes + 1):
        length = 10 + 3 * episode + (episode * 7) % 11
        steps += length
        train.write(
            {
                "episode_length": length,
                "episode_return": float(length),
                "steps_per_second": 1000.0 + episode,
                "episodes": episode,
                "steps": steps,
            }
        )
        if episode % 10 == 0:
            for k in range(5):
                evaluate.write(
                    {
                        "episode_length": length + k,
                        "episode_return": float(length + 4 * k - 8),
                        "train_episodes": episode,
                        "train_steps": steps,
                        "eval_episodes": episode // 2 + k,
                        "eval_steps": 100 * episode + k,
                    }
                )
    train.close()
    evaluate.close()
    return run


def line(fig: Figure, panel: str, gid: str) -> Line2D:
    """The Line2D with this gid ("curve:<run>", "raw:<run>") in the panel's Axes."""
    (ax,) = [ax for ax in fig.axes if ax.get_gid() == panel]
    (found,) = [artist for artist in ax.lines if artist.get_gid() == gid]
    return found


def line_data(fig: Figure, panel: str, gid: str) -> tuple[list[float], list[float]]:
    found = line(fig, panel, gid)
    x = np.asarray(found.get_xdata(), dtype=float)
    y = np.asarray(found.get_ydata(), dtype=float)
    return x.tolist(), y.tolist()


def band_corners(fig: Figure, panel: str, gid: str) -> set[tuple[float, float]]:
    """The vertices of the band's PolyCollection ("band:<run>") in the panel's Axes."""
    (ax,) = [ax for ax in fig.axes if ax.get_gid() == panel]
    (band,) = [artist for artist in ax.collections if artist.get_gid() == gid]
    assert isinstance(band, PolyCollection)
    vertices = np.concatenate([np.asarray(path.vertices, dtype=float) for path in band.get_paths()])
    return {(x, y) for x, y in vertices.tolist()}


# -- the demo's run folder ----------------------------------------------------------------------


def test_a_demo_run_draws_the_train_curve_over_its_raw_values_and_eval_with_a_band(
    tmp_path: Path,
) -> None:
    run = write_demo_run(tmp_path / "demo-run")
    fig = figure([run])
    train = pd.read_csv(run / "train.csv")
    evals = pd.read_csv(run / "eval.csv")

    assert [ax.get_gid() for ax in fig.axes] == ["train: episode_return", "eval: episode_return"]
    # train: x = steps, the bold curve is the file's EMA column, the faint one the raw returns
    x, y = line_data(fig, "train: episode_return", "curve:demo-run")
    assert x == train["steps"].tolist()
    assert y == train["episode_return_smoothed_0.99"].tolist()
    assert line_data(fig, "train: episode_return", "raw:demo-run") == (
        train["steps"].tolist(),
        train["episode_return"].tolist(),
    )
    # eval: x = the training steps (not the eval loop's own), the mean in bold, a min..max band
    x, y = line_data(fig, "eval: episode_return", "curve:demo-run")
    assert x == evals["train_steps"].tolist() == [float(s) for s in evals["train_steps"]]
    assert y == evals["episode_return_mean"].tolist()
    corners = band_corners(fig, "eval: episode_return", "band:demo-run")
    expected = set(zip(evals["train_steps"], evals["episode_return_min"], strict=True)) | set(
        zip(evals["train_steps"], evals["episode_return_max"], strict=True)
    )
    assert expected <= corners
    assert {c[1] for c in corners} <= set(evals["episode_return_min"]) | set(
        evals["episode_return_max"]
    )
    assert fig.axes[1].get_xlabel() == "train_steps" and fig.axes[0].get_xlabel() == "steps"


def test_the_default_title_names_what_is_drawn(tmp_path: Path) -> None:
    run = write_demo_run(tmp_path / "demo-run")
    assert figure([run]).get_suptitle() == f"{run} (train.csv, eval.csv)"
    assert figure([run / "eval.csv"]).get_suptitle() == str(run / "eval.csv")
    other = write_demo_run(tmp_path / "other-run", episodes=20)
    assert figure([run, other]).get_suptitle() == "2 runs: demo-run, other-run"
    assert figure([run], title="mine").get_suptitle() == "mine"


def test_the_legend_says_how_far_a_smoothed_curve_trails_the_raw_values(tmp_path: Path) -> None:
    """A 0.99 EMA averages about 100 points: on a rising curve it sits far below the raw
    values, which must not read as slow learning."""
    run = write_demo_run(tmp_path / "demo-run")
    curve = line(figure([run]), "train: episode_return", "curve:demo-run")
    assert curve.get_label() == (
        "episode_return_smoothed_0.99\n"
        "(EMA 0.99 ≈ average of the last 100 points: trails the raw values)"
    )
    smoothed = line(figure([run / "train.csv"], smooth=0.9), "episode_return", "curve:train.csv")
    assert smoothed.get_label() == (
        "EMA 0.9 of episode_return\n"
        "(EMA 0.9 ≈ average of the last 10 points: trails the raw values)"
    )
    windowed = line(figure([run / "train.csv"], window=5), "episode_return", "curve:train.csv")
    assert windowed.get_label().endswith("(average of the last 5 points: trails the raw values)")
    plain = line(figure([run / "eval.csv"]), "episode_return", "curve:eval.csv")
    assert plain.get_label() == "episode_return_mean"


def test_rlpipe_plot_writes_a_png_next_to_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_demo_run(tmp_path / "demo-run")
    assert rlpipe(["plot", str(run)]) == 0
    png = run / "curves.png"
    assert f"wrote {png}" in capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 20_000  # two panels of lines, not an empty canvas
    height, width, _ = matplotlib.image.imread(png).shape
    assert (width, height) == (800, 600)  # 8 in x (2 panels x 3 in) at 100 dpi


def test_out_and_dpi_choose_the_file_and_its_size(tmp_path: Path) -> None:
    run = write_demo_run(tmp_path / "run")
    (tmp_path / "pictures").mkdir()  # a folder --out names is not created (test_bad_input.py)
    out = tmp_path / "pictures" / "curve.png"
    assert main([str(run / "eval.csv"), "--out", str(out), "--dpi", "50"]) == 0
    height, width, _ = matplotlib.image.imread(out).shape
    assert (width, height) == (400, 160)  # one panel: 8 x 3.2 in at 50 dpi
    assert main([str(run / "eval.csv")]) == 0
    assert (run / "eval.png").is_file()  # default: next to the file


# -- choosing x, y and the band -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (["episode_length", "episode_return", "steps_per_second", "episodes", "steps"], "steps"),
        (
            ["episode_return_mean", "train_episodes", "train_steps", "eval_episodes", "eval_steps"],
            "train_steps",
        ),
        (["eval_steps", "episode_return"], "eval_steps"),
        (["Epoch", "AverageEpRet", "EpLen", "TotalEnvInteracts", "Time"], "TotalEnvInteracts"),
        (
            [
                "training_iteration",
                "env_runners/episode_return_mean",
                "num_env_steps_sampled_lifetime",
            ],
            "num_env_steps_sampled_lifetime",
        ),
        (
            ["time/total_timesteps", "rollout/ep_rew_mean", "time/iterations"],
            "time/total_timesteps",
        ),
        (["epoch", "episodes", "return"], "epoch"),
        (["return", "steps_per_second", "episode_length"], None),
    ],
)
def test_x_is_the_most_step_like_column(columns: list[str], expected: str | None) -> None:
    table = Table(Path("t.csv"), {c: np.arange(3.0) for c in columns}, 3)
    assert default_x(table) == expected


def test_x_is_a_column_that_counts_up_before_a_per_iteration_count() -> None:
    # RLlib: the steps sampled in each iteration (constant) sort before the lifetime total
    columns = {
        "env_runners/episode_return_mean": np.array([20.0, 25.0, 31.0]),
        "env_runners/num_env_steps_sampled": np.array([512.0, 512.0, 512.0]),
        "env_runners/num_env_steps_sampled_lifetime": np.array([512.0, 1024.0, 1536.0]),
        "training_iteration": np.array([1.0, 2.0, 3.0]),
    }
    assert default_x(Table(Path("t.csv"), columns, 3)) == (
        "env_runners/num_env_steps_sampled_lifetime"
    )
    del columns["env_runners/num_env_steps_sampled_lifetime"]
    assert default_x(Table(Path("t.csv"), columns, 3)) == "training_iteration"


def test_step_ranks_put_env_steps_before_iterations_before_episodes() -> None:
    ranks = [step_rank(name) for name in ("actor_steps", "epoch", "episodes")]
    assert ranks == sorted(ranks, key=str) and None not in ranks
    assert step_rank("steps_per_second") is None and step_rank("episode_length") is None


@pytest.mark.parametrize(
    ("name", "split"),
    [
        ("episode_return", ("episode_return", "raw")),
        ("episode_return_mean", ("episode_return", "mean")),
        ("env_runners/episode_return_max", ("env_runners/episode_return", "max")),
        ("episode_return_smoothed_0.99", ("episode_return", "smoothed")),
        ("episode_return_mean_smoothed_0.9", ("episode_return", "smoothed")),
        ("env_runners/episode_return_mean_smoothed", ("env_runners/episode_return", "smoothed")),
        ("AverageEpRet_smoothed_0.9", ("EpRet", "smoothed")),
        ("episode_return_max_smoothed_0.9", ("episode_return_max", "smoothed")),
        ("AverageEpRet", ("EpRet", "mean")),
        ("StdTestEpRet", ("TestEpRet", "std")),
        ("rollout/ep_rew_mean", ("rollout/ep_rew", "mean")),
    ],
)
def test_column_names_split_into_metric_and_form(name: str, split: tuple[str, str]) -> None:
    assert split_name(name) == split


def test_a_smoothed_mean_is_drawn_over_the_mean_and_its_band(tmp_path: Path) -> None:
    path = tmp_path / "eval.csv"
    logger = Pipeline("eval").aggregate("return", every=5).smooth("return_mean", coeff=0.9)
    with logger.to(CsvSink(path)):
        for i in range(40):
            logger.write({"steps": 100 * i, "episode_return": float(i + (i * 7) % 5)})
    evals = pd.read_csv(path)

    fig = figure([path])

    assert [ax.get_gid() for ax in fig.axes] == ["episode_return"]
    x, y = line_data(fig, "episode_return", "curve:eval.csv")
    assert x == evals["steps"].tolist()
    assert y == evals["episode_return_mean_smoothed_0.9"].tolist()
    assert line_data(fig, "episode_return", "raw:eval.csv")[1] == (
        evals["episode_return_mean"].tolist()
    )
    corners = band_corners(fig, "episode_return", "band:eval.csv")
    assert {c[1] for c in corners} <= set(evals["episode_return_min"]) | set(
        evals["episode_return_max"]
    )


def test_y_can_name_a_column_a_metric_or_a_regex(tmp_path: Path) -> None:
    run = write_demo_run(tmp_path / "run")
    evals = pd.read_csv(run / "eval.csv")
    alone = figure([run / "eval.csv"], y=["episode_return_max"])
    assert [ax.get_gid() for ax in alone.axes] == ["episode_return_max"]
    assert line_data(alone, "episode_return_max", "curve:eval.csv")[1] == (
        evals["episode_return_max"].tolist()
    )
    assert not alone.axes[0].collections  # a statistic on its own has no band
    family = figure([run / "eval.csv"], y=["episode_return"])
    assert band_corners(family, "episode_return", "band:eval.csv")
    lengths = figure([run], y=["length$"], band="none")
    assert [ax.get_gid() for ax in lengths.axes] == [
        "train: episode_length",
        "eval: episode_length",
    ]


def test_band_std_is_the_mean_plus_and_minus_the_std(tmp_path: Path) -> None:
    run = write_demo_run(tmp_path / "run")
    evals = pd.read_csv(run / "eval.csv")
    fig = figure([run / "eval.csv"], band="std")
    corners = band_corners(fig, "episode_return", "band:eval.csv")
    mean, std = evals["episode_return_mean"], evals["episode_return_std"]
    for x, low, high in zip(evals["train_steps"], mean - std, mean + std, strict=True):
        assert any(cx == x and math.isclose(cy, low) for cx, cy in corners)
        assert any(cx == x and math.isclose(cy, high) for cx, cy in corners)
    assert not figure([run / "eval.csv"], band="none").axes[0].collections


def test_an_unknown_x_falls_back_to_the_row_index(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_demo_run(tmp_path / "run", episodes=10)
    fig = figure([run / "train.csv"], x="wall_time")
    assert "no numeric column 'wall_time'" in capsys.readouterr().err
    assert line_data(fig, "episode_return", "curve:train.csv")[0] == [float(i) for i in range(10)]
    assert fig.axes[0].get_xlabel() == "row"


# -- smoothing ----------------------------------------------------------------------------------


def test_smooth_reproduces_the_smoothing_filter(tmp_path: Path) -> None:
    run = write_demo_run(tmp_path / "run")
    train = pd.read_csv(run / "train.csv")
    fig = figure([run / "train.csv"], smooth=0.99)
    _, y = line_data(fig, "episode_return", "curve:train.csv")
    assert np.allclose(y, train["episode_return_smoothed_0.99"], rtol=1e-12)
    assert line_data(fig, "episode_return", "raw:train.csv")[1] == train["episode_return"].tolist()


def test_ema_has_the_filters_warm_up_and_skips_missing_values() -> None:
    smoothed = ema(np.array([10.0, math.nan, 20.0, 30.0]), 0.5)
    # c_0 = 0 -> s = 10; c_1 = 0.05 -> s = 0.95*20 + 0.05*10; c_2 = 0.095
    assert smoothed[0] == 10.0 and math.isnan(smoothed[1])
    assert smoothed[2] == pytest.approx(19.5)
    assert smoothed[3] == pytest.approx(0.905 * 30 + 0.095 * 19.5)


def test_ema_is_the_reference_warm_up_ema_of_the_finite_values() -> None:
    values = np.array([math.inf, *RETURNS[:6], math.nan, *RETURNS[6:]])
    smoothed = ema(values, 0.9)
    finite = np.isfinite(values)
    assert np.isnan(smoothed[~finite]).all()
    assert smoothed[finite].tolist() == pytest.approx(warmup_ema(RETURNS, 0.9), rel=1e-12)


def test_window_is_a_trailing_mean_over_finite_values() -> None:
    values = np.array([1.0, 2.0, math.nan, 3.0, 4.0, 5.0])
    averaged = moving_average(values, 2)
    assert averaged[[0, 1, 3, 4, 5]].tolist() == [1.0, 1.5, 2.5, 3.5, 4.5]
    assert math.isnan(averaged[2])
    fig_values = moving_average(np.array(RETURNS), 3)
    assert fig_values[-1] == pytest.approx(sum(RETURNS[-3:]) / 3)


def test_window_smooths_the_curve_and_keeps_the_values_faint(tmp_path: Path) -> None:
    path = tmp_path / "returns.csv"
    with CsvSink(path) as sink:
        for i, value in enumerate(RETURNS):
            sink.write({"timesteps": 100 * (i + 1), "return": value})
    fig = figure([path], window=4)
    x, y = line_data(fig, "return", "curve:returns.csv")
    assert x == [100.0 * (i + 1) for i in range(len(RETURNS))]
    assert y == pytest.approx(moving_average(np.array(RETURNS), 4).tolist())
    assert line_data(fig, "return", "raw:returns.csv")[1] == RETURNS


# -- other formats and several runs -------------------------------------------------------------


def write_progress_txt(folder: Path, seed: int, epochs: int = 6) -> Path:
    """A progress.txt as Spinning Up's EpochLogger writes it: tab-separated, a header line,
    `log_tabular('EpRet', with_min_and_max=True)` columns, TotalEnvInteracts."""
    folder.mkdir(parents=True)
    header = ["Epoch", "AverageEpRet", "StdEpRet", "MaxEpRet", "MinEpRet", "EpLen",
              "TotalEnvInteracts", "LossPi", "Time"]  # fmt: skip
    lines = ["\t".join(header)]
    for epoch in range(epochs):
        mean = 10.0 * epoch + seed
        lines.append(
            "\t".join(
                str(v)
                for v in (
                    epoch,
                    mean,
                    2.5,
                    mean + 4,
                    mean - 3,
                    50.0,
                    4000 * (epoch + 1),
                    -0.01 * epoch,
                    1.5 * epoch,
                )
            )
        )
    path = folder / "progress.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_spinning_up_progress_txt_uses_total_env_interacts_and_average_ep_ret(
    tmp_path: Path,
) -> None:
    path = write_progress_txt(tmp_path / "ppo_s0", seed=0)
    fig = figure([path])
    assert [ax.get_gid() for ax in fig.axes] == ["EpRet"]
    x, y = line_data(fig, "EpRet", "curve:progress.txt")
    assert x == [4000.0 * (e + 1) for e in range(6)]
    assert y == [10.0 * e for e in range(6)]
    corners = band_corners(fig, "EpRet", "band:progress.txt")
    assert (4000.0, -3.0) in corners and (24000.0, 54.0) in corners


def test_several_runs_draw_one_line_each_in_their_own_colour(tmp_path: Path) -> None:
    for seed in range(3):
        write_progress_txt(tmp_path / "exp" / f"exp_s{seed}", seed=seed)
    paths = [tmp_path / "exp" / f"exp_s{seed}" for seed in range(3)]
    fig = figure(paths)
    curves = [line(fig, "EpRet", f"curve:exp_s{seed}") for seed in range(3)]
    assert [curve.get_label() for curve in curves] == ["exp_s0", "exp_s1", "exp_s2"]
    assert len({str(curve.get_color()) for curve in curves}) == 3
    for seed in range(3):
        ys = line_data(fig, "EpRet", f"curve:exp_s{seed}")[1]
        assert ys == [10.0 * e + seed for e in range(6)]
    # a folder holding run folders is the same set of runs (as Spinning Up's plot finds seeds)
    assert [run.name for run in load_runs([tmp_path / "exp"])] == ["exp_s0", "exp_s1", "exp_s2"]
    assert main([str(tmp_path / "exp")]) == 0
    assert (tmp_path / "exp" / "curves.png").stat().st_size > 10_000


def test_jsonl_with_nested_records_and_gaps(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    with JsonlSink(path) as sink:
        for i, value in enumerate(RETURNS):
            record: dict[str, object] = {"actor_steps": 10 * i, "eval": {"return": value}}
            if i % 4 == 1:
                record["eval"] = {"return": None}
            if i % 4 == 2:
                record["eval"] = {"return": math.nan}
            sink.write(record)
    fig = figure([path])
    x, y = line_data(fig, "eval/return", "curve:metrics.jsonl")
    kept = [i for i in range(len(RETURNS)) if i % 4 not in (1, 2)]
    assert x == [10.0 * i for i in kept] and y == [RETURNS[i] for i in kept]


# -- bad input is skipped, never fatal ----------------------------------------------------------


def test_empty_nan_text_and_torn_cells_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "messy.csv"
    path.write_text(
        "steps,episode_return,note\r\n"
        "1,10.0,ok\r\n"
        "2,,missing\r\n"
        "3,nan,not a number\r\n"
        ",40.0,no step\r\n"
        "5,inf,infinite\r\n"
        "6,oops,text\r\n"
        "7,70.0\r\n"  # a short row
        "8,80.5,ok\r\n"
        "9,9"  # torn: still being written
    )
    table = read_table(path)
    assert table.rows == 8 and "note" not in table.columns
    fig = figure([path])
    x, y = line_data(fig, "episode_return", "curve:messy.csv")
    assert x == [1.0, 7.0, 8.0] and y == [10.0, 70.0, 80.5]


def test_a_byte_order_mark_does_not_hide_the_first_column(tmp_path: Path) -> None:
    path = tmp_path / "from_a_spreadsheet.csv"
    path.write_bytes(b"\xef\xbb\xbfsteps,return\r\n1,5\r\n2,6\r\n")
    assert default_x(read_table(path)) == "steps"
    follower = DelimitedFollower(path)
    follower.poll()
    assert follower.keys == ["steps", "return"]


def test_empty_files_in_a_run_folder_are_ignored(tmp_path: Path) -> None:
    run = write_demo_run(tmp_path / "run", episodes=10)
    (run / "empty.csv").write_text("")
    (run / "header_only.jsonl").write_text("")
    (run / "only_header.csv").write_text("steps,episode_return\r\n")
    fig = figure([run])
    assert [ax.get_gid() for ax in fig.axes] == ["train: episode_return", "eval: episode_return"]


def test_nothing_to_plot_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "losses.csv"
    path.write_text("step,loss\r\n1,0.5\r\n")
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert "nothing to plot" in err and "loss" in err
    assert main([str(tmp_path / "missing")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main([str(path), "--y", "loss"]) == 0


def test_a_missing_matplotlib_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "r.csv"
    path.write_text("steps,return\r\n1,2\r\n")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what `import` sees when absent
    with pytest.raises(ImportError) as missing:
        figure([path])
    # rlpipe installs from its checkout (README): say that, and the release's name too
    assert "pip install -e '.[plot]' in the rlpipe checkout" in str(missing.value)
    assert "pip install 'rlpipe[plot]'" in str(missing.value)


def test_command_line_options_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_demo_run(tmp_path / "run", episodes=10)
    out = tmp_path / "four.png"
    assert main([str(run), "--y", "length$", "--y", "episode_return", "--out", str(out)]) == 0
    assert "(4 panels, 1 run)" in capsys.readouterr().out and out.is_file()
    for wrong in (["--smooth", "0.9", "--window", "3"], ["--smooth", "1.5"], ["--window", "0"]):
        with pytest.raises(SystemExit) as exit_:
            main([str(run), *wrong])
        assert exit_.value.code == 2
