"""Spinning Up adapter: Spinning Up's EpochLogger API, statistics and files, plus a pipeline."""

from __future__ import annotations

import csv
import json
import math
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipeline import ClosedError, Pipeline
from pipeline.integrations.spinup import EpochLogger, convert_json, statistics_scalar
from sinks import CsvSink, MemorySink


def read_progress(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def spinning_up_table(row: list[tuple[str, Any]]) -> str:
    """The table Spinning Up's Logger.dump_tabular prints, written with its own formats."""
    width = max(15, max(len(key) for key, _ in row))
    fmt = "| %" + str(width) + "s | %15s |"
    lines = ["-" * (22 + width)]
    for key, value in row:
        shown = "%8.3g" % value if hasattr(value, "__float__") else value  # noqa: UP031
        lines.append(fmt % (key, shown))
    lines.append("-" * (22 + width))
    return "\n".join(lines) + "\n"


def spinning_up_progress(rows: list[list[tuple[str, Any]]]) -> bytes:
    """The bytes Spinning Up's `Logger.dump_tabular` writes to progress.txt for these epochs
    (`spinup/utils/logx.py`, one process): the file is opened with `open(path, 'w')`; the
    first dump writes `"\\t".join(log_headers) + "\\n"`, and every dump writes
    `"\\t".join(map(str, vals)) + "\\n"`, where vals are the epoch's values in header
    order (`log_current_row.get(key, "")`: a missing key is an empty cell)."""
    headers = [key for key, _ in rows[0]]
    lines = ["\t".join(headers) + "\n"]
    for row in rows:
        values = dict(row)
        lines.append("\t".join(map(str, (values.get(key, "") for key in headers))) + "\n")
    return "".join(lines).encode()


def run_epochs(logger: EpochLogger, rng: np.random.Generator) -> list[dict[str, Any]]:
    """A VPG-style loop: per epoch, episodes store EpRet/EpLen, steps store value estimates
    (arrays), one update stores losses. Returns the raw values each epoch stored."""
    stored: list[dict[str, Any]] = []
    total_steps = 0
    for epoch in range(3):
        returns = rng.normal(20.0 + 5 * epoch, 4.0, size=7 + epoch)
        lengths = rng.integers(10, 50, size=returns.size)
        values = [rng.normal(size=16).astype(np.float32) for _ in range(5)]
        for ret, length in zip(returns, lengths, strict=True):
            logger.store(EpRet=ret, EpLen=length)
        for batch in values:
            logger.store(VVals=batch)
        loss_pi, loss_v = rng.normal(), abs(rng.normal())
        logger.store(LossPi=loss_pi, LossV=loss_v)
        total_steps += int(lengths.sum())

        logger.log_tabular("Epoch", epoch)
        logger.log_tabular("EpRet", with_min_and_max=True)
        logger.log_tabular("EpLen", average_only=True)
        logger.log_tabular("VVals", with_min_and_max=True)
        logger.log_tabular("TotalEnvInteracts", total_steps)
        logger.log_tabular("LossPi", average_only=True)
        logger.log_tabular("LossV", average_only=True)
        logger.dump_tabular()
        stored.append(
            {
                "EpRet": returns,
                "EpLen": lengths,
                "VVals": np.concatenate(values),
                "steps": total_steps,
            }
        )
    return stored


COLUMNS = [
    "Epoch",
    "AverageEpRet",
    "StdEpRet",
    "MaxEpRet",
    "MinEpRet",
    "EpLen",
    "AverageVVals",
    "StdVVals",
    "MaxVVals",
    "MinVVals",
    "TotalEnvInteracts",
    "LossPi",
    "LossV",
]


def test_a_spinning_up_loop_logs_numpys_statistics_to_file_table_and_pipeline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    memory = MemorySink()
    pipeline = Pipeline("vpg").to(memory, CsvSink(tmp_path / "rlpipe.csv"))
    logger = EpochLogger(output_dir=tmp_path / "run", exp_name="vpg", pipeline=pipeline)

    stored = run_epochs(logger, np.random.default_rng(0))
    logger.close()

    rows = read_progress(tmp_path / "run" / "progress.txt")
    assert list(rows[0]) == COLUMNS
    integers = {"Epoch", "TotalEnvInteracts"}
    # progress.txt holds numpy's float32 digits; the records hold those short decimals
    assert memory.records == [
        {key: int(row[key]) if key in integers else float(row[key]) for key in COLUMNS}
        for row in rows
    ]
    for epoch, (record, raw) in enumerate(zip(memory.records, stored, strict=True)):
        assert record["Epoch"] == epoch and record["TotalEnvInteracts"] == raw["steps"]
        for name in ("EpRet", "VVals"):
            x = np.asarray(raw[name], dtype=np.float64)
            assert record[f"Average{name}"] == pytest.approx(np.mean(x), rel=1e-6)
            assert record[f"Std{name}"] == pytest.approx(np.std(x), rel=1e-5)  # population
            assert record[f"Std{name}"] != pytest.approx(np.std(x, ddof=1), rel=1e-5)
            assert record[f"Max{name}"] == float(str(np.float32(np.max(x))))
            assert record[f"Min{name}"] == float(str(np.float32(np.min(x))))
        assert record["EpLen"] == pytest.approx(np.mean(raw["EpLen"]), rel=1e-6)
        assert "StdEpLen" not in record
    # the values are Spinning Up's float32 numbers, written as numpy prints them
    assert rows[0]["AverageEpRet"] == str(np.float32(memory.records[0]["AverageEpRet"]))
    # the pipeline's CSV sink got the same rows
    with (tmp_path / "rlpipe.csv").open(newline="") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert [float(r["AverageVVals"]) for r in csv_rows] == memory.column("AverageVVals")
    # the table printed for the last epoch is Spinning Up's, character for character
    last_row = list(memory.records[-1].items())
    assert capsys.readouterr().out.endswith(spinning_up_table(last_row))


def test_spinning_ups_plot_reads_progress_txt_with_pandas_read_table(tmp_path: Path) -> None:
    memory = MemorySink()
    logger = EpochLogger(output_dir=tmp_path, pipeline=Pipeline().to(memory))
    run_epochs(logger, np.random.default_rng(1))
    logger.close()

    table = pd.read_table(tmp_path / "progress.txt")  # as spinup/utils/plot.py reads it

    assert list(table.columns) == COLUMNS and len(table) == 3
    assert table["Epoch"].tolist() == [0, 1, 2]
    assert table["TotalEnvInteracts"].tolist() == memory.column("TotalEnvInteracts")
    for key in set(COLUMNS) - {"Epoch", "TotalEnvInteracts"}:
        assert [np.float32(value) for value in table[key]] == [
            np.float32(value) for value in memory.column(key)
        ]


def test_statistics_are_spinning_ups_float32_population_statistics() -> None:
    x = [1.0, 2.0, 3.0, 4.0]

    mean, std, low, high = statistics_scalar(x, with_min_and_max=True)

    assert (mean, std, low, high) == (2.5, np.float32(math.sqrt(1.25)), 1.0, 4.0)
    assert all(type(value) is np.float32 for value in (mean, std, low, high))
    assert all(math.isnan(value) for value in statistics_scalar([], with_min_and_max=True))


def test_stored_arrays_and_scalars_are_pooled(tmp_path: Path) -> None:
    logger = EpochLogger(output_dir=tmp_path)
    logger.store(Q=np.array([1.0, 2.0]))
    logger.store(Q=3.0)
    logger.store(Q=np.array([[4.0], [5.0]]))

    mean, std = logger.get_stats("Q")
    logger.close()

    assert mean == 3.0 and std == np.float32(math.sqrt(2.0))


def test_a_key_missing_in_a_later_epoch_leaves_an_empty_cell_and_no_record_key(
    tmp_path: Path,
) -> None:
    memory = MemorySink()
    logger = EpochLogger(output_dir=tmp_path, pipeline=Pipeline().to(memory))
    logger.log_tabular("Epoch", 0)
    logger.log_tabular("Loss", 0.5)
    logger.dump_tabular()
    logger.log_tabular("Epoch", 1)
    logger.dump_tabular()
    logger.close()

    assert (tmp_path / "progress.txt").read_text() == "Epoch\tLoss\n0\t0.5\n1\t\n"
    assert memory.records == [{"Epoch": 0, "Loss": 0.5}, {"Epoch": 1}]


def test_a_key_new_in_a_later_epoch_widens_the_file_and_warns(tmp_path: Path) -> None:
    memory = MemorySink()
    logger = EpochLogger(output_dir=tmp_path, pipeline=Pipeline().to(memory))
    logger.log_tabular("Epoch", 0)
    logger.dump_tabular()
    logger.log_tabular("Epoch", 1)
    logger.store(KL=0.1)
    logger.store(KL=0.3)
    with pytest.warns(RuntimeWarning, match="first logged after the first epoch") as caught:
        logger.log_tabular("KL")
    assert ["'AverageKL'" in str(w.message) for w in caught] == [True, False]
    assert "'StdKL'" in str(caught[1].message)
    logger.dump_tabular()
    logger.close()

    text = (tmp_path / "progress.txt").read_text()
    assert text.splitlines() == [
        "Epoch\tAverageKL\tStdKL",
        "0\t\t",
        "1\t0.2\t0.10000001",  # float32 arithmetic, as Spinning Up
    ]
    table = pd.read_table(tmp_path / "progress.txt")
    assert list(table.columns) == ["Epoch", "AverageKL", "StdKL"]
    assert math.isnan(table["AverageKL"][0]) and table["AverageKL"][1] == pytest.approx(0.2)
    assert memory.records[1] == {
        "Epoch": 1,
        "AverageKL": pytest.approx(0.2),
        "StdKL": pytest.approx(0.1),
    }


def test_an_empty_first_epoch_is_a_row_of_empty_cells_under_the_first_header(
    tmp_path: Path,
) -> None:
    """Spinning Up's `dump_tabular` with nothing logged writes an empty header line, and the
    next epoch's keys then fail as new. Here the first epoch with a column fixes the columns;
    an epoch with nothing logged is a row of empty cells, before the header or after it."""
    memory = MemorySink()
    logger = EpochLogger(output_dir=tmp_path, pipeline=Pipeline().to(memory), strict_columns=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no column is "first logged after the first epoch"
        logger.dump_tabular()  # nothing logged yet
        for epoch in (1, 2):
            logger.store(EpRet=10.0 * epoch)
            logger.store(EpRet=10.0 * epoch + 4.0)
            logger.log_tabular("Epoch", epoch)
            logger.log_tabular("EpRet", with_min_and_max=True)
            logger.dump_tabular()
        logger.dump_tabular()  # nothing logged, after the header
        logger.close()

    columns = ["Epoch", "AverageEpRet", "StdEpRet", "MaxEpRet", "MinEpRet"]
    assert (tmp_path / "progress.txt").read_text().splitlines() == [
        "\t".join(columns),
        "\t\t\t\t",
        "1\t12.0\t2.0\t14.0\t10.0",
        "2\t22.0\t2.0\t24.0\t20.0",
        "\t\t\t\t",
    ]
    table = pd.read_table(tmp_path / "progress.txt")  # as spinup/utils/plot.py reads it
    assert list(table.columns) == columns and len(table) == 4
    assert table.iloc[[0, 3]].isna().all(axis=None)
    assert table.iloc[1:3].to_dict("records") == memory.records
    assert memory.records == [
        {"Epoch": 1, "AverageEpRet": 12.0, "StdEpRet": 2.0, "MaxEpRet": 14.0, "MinEpRet": 10.0},
        {"Epoch": 2, "AverageEpRet": 22.0, "StdEpRet": 2.0, "MaxEpRet": 24.0, "MinEpRet": 20.0},
    ]


def test_a_run_that_logs_no_column_leaves_progress_txt_empty_and_says_so(tmp_path: Path) -> None:
    logger = EpochLogger(output_dir=tmp_path)
    logger.dump_tabular()
    logger.dump_tabular()

    with pytest.warns(UserWarning, match="never got a column"):
        logger.close()

    assert (tmp_path / "progress.txt").read_text() == ""
    assert logger.output_file.counts["dropped"] == 0  # no value in them: nothing lost


def test_strict_columns_keeps_spinning_ups_rule(tmp_path: Path) -> None:
    logger = EpochLogger(output_dir=tmp_path, strict_columns=True)
    logger.log_tabular("Epoch", 0)
    logger.dump_tabular()

    with pytest.raises(ValueError, match="new key Late"):
        logger.log_tabular("Late", 1.0)
    logger.close()


def test_misuse_raises_clear_errors(tmp_path: Path) -> None:
    logger = EpochLogger(output_dir=tmp_path)
    logger.log_tabular("Epoch", 0)
    with pytest.raises(ValueError, match="already set Epoch"):
        logger.log_tabular("Epoch", 1)
    with pytest.raises(KeyError, match="nothing was stored under 'EpRet'"):
        logger.log_tabular("EpRet")
    logger.store(EpRet=1.0)
    logger.log_tabular("EpRet")
    logger.dump_tabular()
    logger.log_tabular("Epoch", 1)
    logger.log_tabular("EpRet")  # stored before, nothing this epoch
    logger.dump_tabular()
    logger.close()

    last = read_progress(tmp_path / "progress.txt")[-1]
    assert last["AverageEpRet"] == "nan" and last["StdEpRet"] == "nan"
    with pytest.raises(ValueError, match="pipeline"):
        EpochLogger(output_dir=tmp_path, pipeline="not a pipeline")  # type: ignore[arg-type]


def test_save_config_writes_spinning_ups_config_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def make_env() -> None:
        return None

    logger = EpochLogger(output_dir=tmp_path, exp_name="ppo-cartpole")
    logger.save_config(
        {"seed": 3, "gamma": np.float32(0.5), "env_fn": make_env, "ac_kwargs": {"hid": (64, 64)}}
    )
    logger.close()

    text = (tmp_path / "config.json").read_text()
    assert json.loads(text) == {
        "ac_kwargs": {"hid": [64, 64]},
        "env_fn": "make_env",
        "exp_name": "ppo-cartpole",
        "gamma": 0.5,
        "seed": 3,
    }
    assert '"seed":\t3' in text
    assert text in capsys.readouterr().out


def test_convert_json_names_objects_as_spinning_up_does() -> None:
    class Box:
        def __init__(self) -> None:
            self.size = 2

    box = Box()
    converted = convert_json({"f": lambda: None, "box": box, "none": None, 1: "one"})

    assert converted["box"] == {str(box): {"size": 2}}
    assert converted["f"].startswith("<function") and converted["1"] == "one"


def test_default_output_dir_is_under_the_temp_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    logger = EpochLogger()
    logger.close()

    assert Path(logger.output_dir).parent == tmp_path / "experiments"
    assert (Path(logger.output_dir) / "progress.txt").exists()


def test_close_closes_the_pipeline_once_and_works_as_a_context_manager(tmp_path: Path) -> None:
    memory = MemorySink()
    pipeline = Pipeline().smooth("AverageEpRet", coeff=0.5).to(memory)
    with EpochLogger(output_dir=tmp_path, pipeline=pipeline) as logger:
        for ret in (10.0, 20.0):
            logger.store(EpRet=ret)
            logger.log_tabular("EpRet", average_only=False)
            logger.dump_tabular()

    logger.close()
    assert memory.closed and logger.output_file is not None and logger.output_file.closed
    with pytest.raises(ClosedError):
        logger.dump_tabular()
    assert memory.column("AverageEpRet_smoothed_0.5") == pytest.approx([10.0, 19.5])


def epochs(logger: EpochLogger, start: int, stop: int, then: Any = None) -> None:
    """Epochs `start`..`stop-1` of a deterministic Spinning Up-style loop; `then(epoch)` runs
    after each epoch's dump (a checkpoint, say). A key appears from epoch 6 on."""
    for epoch in range(start, stop):
        for step in range(5):
            logger.store(EpRet=float(epoch * 10 + step), VVals=np.float32(step / 4))
        logger.log_tabular("Epoch", epoch)
        logger.log_tabular("EpRet", with_min_and_max=True)
        logger.log_tabular("VVals", average_only=True)
        if epoch >= 6:
            logger.log_tabular("LossPi", 1.0 / (epoch + 1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logger.dump_tabular()
        if then is not None:
            then(epoch)


def test_a_restarted_epoch_logger_writes_what_an_uninterrupted_one_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def make(folder: Path, state: Any = None) -> tuple[EpochLogger, MemorySink]:
        memory = MemorySink()
        pipe = Pipeline("vpg", close_at_exit=False).smooth("AverageEpRet", 0.9).to(memory)
        return EpochLogger(folder, pipeline=pipe, state=state), memory

    whole, whole_records = make(tmp_path / "whole")
    epochs(whole, 0, 10)
    whole.close()

    saved: dict[str, Any] = {}
    first, _ = make(tmp_path / "run")
    epochs(first, 0, 8, lambda epoch: saved.update({epoch: first.state_dict()}))
    first.close()  # (every row is in progress.txt already: as if the machine went away)
    # the machine goes away after epoch 7; the last checkpoint kept is epoch 4's
    again, records = make(tmp_path / "run", state=saved[4])
    epochs(again, 5, 10)
    again.close()
    capsys.readouterr()

    assert (tmp_path / "run" / "progress.txt").read_bytes() == (
        tmp_path / "whole" / "progress.txt"
    ).read_bytes()
    # the MemorySink's records came back with the state: epochs 0-4, then 5-9 anew
    assert records.records == whole_records.records


def test_progress_txt_is_byte_for_byte_what_spinning_ups_logger_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logged: list[list[tuple[str, Any]]] = []
    logger = EpochLogger(output_dir=tmp_path)
    rng = np.random.default_rng(1)
    for epoch in range(4):
        returns = rng.normal(10.0, 3.0, size=6)
        for ret in returns:
            logger.store(EpRet=ret)
        logger.log_tabular("Epoch", epoch)
        logger.log_tabular("EpRet", with_min_and_max=True)
        logger.log_tabular("TotalEnvInteracts", 1000 * (epoch + 1))
        if epoch != 2:  # a key missing from an epoch: an empty cell, as Spinning Up writes
            logger.log_tabular("Note", f"lr {1e-3 / (epoch + 1)}")
        mean, std, low, high = statistics_scalar(returns, with_min_and_max=True)
        logged.append(
            [("Epoch", epoch), ("AverageEpRet", mean), ("StdEpRet", std), ("MaxEpRet", high),
             ("MinEpRet", low), ("TotalEnvInteracts", 1000 * (epoch + 1))]
            + ([("Note", f"lr {1e-3 / (epoch + 1)}")] if epoch != 2 else [])
        )
        logger.dump_tabular()
        assert (tmp_path / "progress.txt").read_bytes() == spinning_up_progress(logged)
    logger.close()
    capsys.readouterr()
    assert b"\r" not in (tmp_path / "progress.txt").read_bytes()
