"""The benchmark scripts: each runs in its quick mode on a tiny input (no timing asserted), and
every output check they make in the same run holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import loop_overhead, throughput

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_every_scenario_runs_and_every_output_check_holds(tmp_path: Path) -> None:
    report = throughput.main(["--quick", "--json", str(tmp_path / "out.json")])
    assert json.loads((tmp_path / "out.json").read_text()) == json.loads(json.dumps(report))
    assert [r["key"] for r in report["results"]] == list("abcdefghi")
    for result in report["results"]:
        assert result["records_per_s"] > 0 and result["acme_records_per_s"] > 0
        assert result["bound_ns_per_record"] > 0 and result["cost_over_bound"] > 0
        assert result["rlpipe_peak_bytes"] > 0
        assert (result["speedup_over_rows"] is not None) == (result["key"] in "ghi")
    checks = report["checks"]
    assert sorted(checks) == list("abcdefghi")
    assert all(checks[key].get("bound") for key in "abcdefghi"), checks
    assert all(checks[key]["acme"] for key in "acdefg"), checks
    assert all(checks[key]["rows"] for key in "ghi"), checks
    assert report["all_equal"]
    assert 0 < report["memory"]["rlpipe_bytes_per_value"] <= 16


def test_the_script_runs_as_a_command(tmp_path: Path) -> None:
    out = tmp_path / "a.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--quick", "--only", "a",
         "--json", str(out)],
        capture_output=True, text=True, check=True, timeout=300,
    )
    assert "train chain" in done.stdout and "(a) bound True, acme True" in done.stdout
    report = json.loads(out.read_text())
    assert report["results"][0]["key"] == "a"
    assert report["command"] == f"python benchmarks/throughput.py --quick --only a --json {out}"


@pytest.mark.slow
def test_sink_write_times_every_tracking_sink_and_its_tool(tmp_path: Path) -> None:
    """In a process of its own (W&B's service reads its folders once per process), with a
    HOME that must stay empty: the script keeps everything in its temporary folder."""
    home = tmp_path / "home"
    home.mkdir()
    out = tmp_path / "sinks.json"
    env = {**os.environ, "HOME": str(home)}
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sink_write.py"), "--quick", "--json",
         str(out)],
        capture_output=True, text=True, check=True, timeout=600, env=env, cwd=tmp_path,
    )
    report = json.loads(out.read_text())
    assert report["missing"] == []
    assert [row["tool"] for row in report["rows"]] == [
        "neptune", "neptune-scale", "tensorboard", "mlflow", "wandb"
    ]
    for row in report["rows"]:
        for name in ("memory_ns", "write_ns", "write_flush_ns", "direct_ns", "direct_flush_ns"):
            assert 0 < row[name] < float("inf"), (row["tool"], name)
    assert list(home.iterdir()) == []
    assert sorted(path.name for path in tmp_path.iterdir()) == ["home", "sinks.json"]


@pytest.mark.slow
def test_loop_overhead_runs_the_same_episodes_with_every_logger(tmp_path: Path) -> None:
    report = loop_overhead.main(["--quick", "--json", str(tmp_path / "loop.json")])
    assert [r["variant"] for r in report["results"]] == ["none", "rlpipe", "acme"]
    assert report["checks"]["same_episodes"] and report["checks"]["same_returns_in_csv"]
    for result in report["results"]:
        assert result["median_loop_s"] > 0 and 0 <= result["logger_share_of_loop"] < 1


@pytest.mark.slow
def test_the_peers_run_side_by_side_and_the_column_outputs_are_checked(tmp_path: Path) -> None:
    """`--peers`: every contest times rlpipe and each peer that can do its work on the same
    stream, and the column targets' files equal their references in the same run."""
    report = throughput.main(["--peers", "--quick", "--json", str(tmp_path / "peers.json")])
    contests = {contest["key"]: contest for contest in report["contests"]}
    assert list(contests) == list("pqrst")
    assert report["missing"] == {}
    assert set(contests["p"]["x_rlpipe"]) == {"acme", "sb3", "torchrl"}
    assert set(contests["q"]["x_rlpipe"]) == {"rllib", "acme"}
    assert set(contests["r"]["x_rlpipe"]) == {"acme", "bound", "sb3", "rllib"}
    assert set(contests["s"]["x_rlpipe"]) == {"acme", "bound", "pure"}
    assert set(contests["t"]["x_rlpipe"]) == {"json.dumps", "bound", "rows", "pure"}
    for contest in contests.values():
        assert all(0 < ns < float("inf") for ns in contest["ns_per_record"].values())
    assert contests["r"]["checks"] == {"bound": True, "acme": True, "sb3": True}
    assert contests["s"]["checks"] == {"bound": True, "acme": True}
    assert contests["t"]["checks"] == {
        "bound": True, "json.dumps": True, "rows": True, "pure": True
    }
    assert report["all_equal"]


@pytest.mark.slow
def test_ray_hub_thousand_runs_quick_and_its_checks_hold(tmp_path: Path) -> None:
    """The thousand-worker benchmark, tiny: record and partial mode agree with numpy, and
    the latency runs; in a process of its own (its own local Ray)."""
    out = tmp_path / "thousand.json"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "ray_hub.py"), "--thousand", "--quick",
         "--json", str(out)],
        capture_output=True, text=True, check=True, timeout=900,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    report = json.loads(out.read_text())
    assert report["records"] == 8 * 20 and report["all_checks"], report
    assert set(report["modes"]) == {"records", "partials", "partials+relays"}
    for row in report["modes"].values():
        assert row["hub_cpu_us_per_record"] > 0 and all(row["checks"].values())
    assert set(report["latency"]) == {"2", "4"}
    assert all(row["records"] == int(senders) * 50
               for senders, row in report["latency"].items())
