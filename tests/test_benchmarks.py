"""The benchmark scripts: every scenario runs once on a tiny stream (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import throughput

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_every_scenario_runs_and_the_train_chain_matches_acme(tmp_path: Path) -> None:
    report = throughput.main(["--quick", "--json", str(tmp_path / "out.json")])
    assert json.loads((tmp_path / "out.json").read_text()) == json.loads(json.dumps(report))
    assert [r["key"] for r in report["results"]] == list("abcdefghi")
    for result in report["results"]:
        assert result["records_per_s"] > 0 and result["acme_records_per_s"] > 0
        assert result["rlpipe_peak_bytes"] > 0
    assert report["checks"]["identical_to_acme"] and report["checks"]["batched_identical_to_acme"]
    assert 0 < report["memory"]["rlpipe_bytes_per_value"] <= 16


def test_the_script_runs_as_a_command(tmp_path: Path) -> None:
    out = tmp_path / "a.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--quick", "--only", "a",
         "--json", str(out)],
        capture_output=True, text=True, check=True, timeout=300,
    )
    assert "train chain" in done.stdout and "identical to the Acme-built chain: True" in done.stdout
    assert json.loads(out.read_text())["results"][0]["key"] == "a"


def test_the_fused_bound_gives_the_chains_output_and_times_every_writer() -> None:
    from benchmarks import fused_bound

    report = fused_bound.main(["--records", "2000", "--repeat", "1"])
    assert set(report["seconds"]) == {"rlpipe chain", "acme chain", "fused function", "floor"}
    assert all(seconds > 0 for seconds in report["seconds"].values())
