"""What a Hub loses when a process dies, and where it says so (issue 23, items 7-9).

Every record is tagged `(worker, index)`, so what is missing or doubled is read back exactly
from the file the hub wrote. The rule checked in each case: a record is acknowledged to its
sender only once it is stored; whatever is lost is counted (the sender's `lost`, the hub's
`status()`, its `failures`, a warning), and the counts reconcile: written = stored + counted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


# -- item 9: the Ray-free path starts no Ray ------------------------------------------------


def test_a_hub_core_outside_an_actor_starts_no_ray_and_writes_nothing_home(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    script = textwrap.dedent(
        """
        from pipeline import Pipeline
        from pipeline.integrations.ray import HubCore
        from sinks import MemorySink

        core = HubCore(lambda: Pipeline("hub").to(MemorySink()))
        assert core.push("s", 0, 0, 2, [{"i": 0}, {"i": 1}], {"worker": 0}) == 1
        core.end("s")
        status = core.close()
        assert (status.records, status.restarted) == (2, False), status
        import ray

        print("ray initialized:", ray.is_initialized())
        """
    )
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ray initialized: False", done.stderr
    assert sorted(path.name for path in home.rglob("*")) == []
