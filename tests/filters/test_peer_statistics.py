"""The peers' statistics benchmark (benchmarks/throughput.py, scenarios j-l) gives, for each
variant, the records rlpipe gives: its bounds, SB3's deque + safe_mean and RLlib's
MetricsLogger (window=100, reduce="percentiles") agree with rlpipe on the same stream. Run on
a short stream, no timing asserted."""

from __future__ import annotations

import pytest

from benchmarks import throughput


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_every_peer_variant_gives_rlpipes_records() -> None:
    pytest.importorskip("stable_baselines3")
    pytest.importorskip("ray.rllib")
    peers = throughput.measure_peers(records=1500, repeat=1)
    assert [p["key"] for p in peers] == ["j", "k", "l"]
    assert {name for p in peers for name in p["equal"]} == {"bound", "sb3", "rllib"}
    for peer in peers:
        assert all(peer["equal"].values()), peer
        assert all(ns > 0 for ns in peer["ns_per_record"].values())
