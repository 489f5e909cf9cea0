"""MlflowSink on the real MLflow client and a real SQLite store: what is written is what the
run holds.

Every test writes through the sink into a run in a SQLite store under pytest's temporary
folder (one store per module: MLflow takes seconds to make its tables), then reads the run
back with `MlflowClient.get_run` and `get_metric_history`. Nothing goes to a server.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import Pipeline
from pipeline.core.isolation import StoreError
from pipeline.core.node import ClosedError
from sinks.memory import MemorySink
from sinks.mlflow import MlflowSink, MlflowSinkWarning, resolve_tracking_uri
from tests.sinks.tracking import NUMBER_FLOATS, episodes, number_kinds, read_mlflow

pytestmark = pytest.mark.slow  # runs the real MLflow client and store

REPO = Path(__file__).resolve().parents[2]
MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")
FLOAT_MAX = sys.float_info.max  # what MLflow's SQL stores keep for +inf


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store with MLflow's tables made, shared by the module's tests."""
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("store")
    MlflowClient(tracking_uri=f"sqlite:///{folder}/mlflow.db").search_experiments()
    return folder / "mlflow.db"


@pytest.fixture
def uri(store: Path) -> str:
    return f"sqlite:///{store}"


@pytest.fixture
def client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


@pytest.fixture(autouse=True)
def clean_mlflow_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No MLFLOW_* store, experiment or run from the machine, and a scratch working folder."""
    for name in MLFLOW_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def history(client: Any, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Every metric of the run: (step, value) pairs in step order, as the store holds them."""
    return read_mlflow(client.tracking_uri, run_id)  # type: ignore[return-value]


def same(a: list[tuple[int, float]], b: list[tuple[int, float]]) -> bool:
    """Equal, where NaN equals NaN."""
    return len(a) == len(b) and all(
        sa == sb and (va == vb or (math.isnan(va) and math.isnan(vb)))
        for (sa, va), (sb, vb) in zip(a, b, strict=True)
    )


# -- the module, the store, the run -------------------------------------------------------


DEFAULT_STORE = """
import os, sys
from sinks.mlflow import MlflowSink
sink = MlflowSink(step_key="t")
os.chdir("elsewhere")  # the store stays where it was resolved
for t in range(3):
    sink.write({"t": t, "x": t / 2})
sink.close()
print(sink.tracking_uri)
print(sink.run_id)
print(os.environ.get("MLFLOW_DISABLE_TELEMETRY"))
"""


def test_by_default_the_store_is_runs_mlflow_db_and_nothing_is_written_at_home(
    tmp_path: Path,
) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    (work / "elsewhere").mkdir(parents=True)
    env = {
        key: value
        for key, value in os.environ.items()
        # no marker of a test run or CI, which would turn MLflow's telemetry off by itself
        if key not in ("PYTEST_CURRENT_TEST", "CI", "GITHUB_ACTIONS", "DO_NOT_TRACK")
        and not key.startswith("MLFLOW_")
        and key not in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME")
    }
    # were anything to try the network, it would meet a closed local port
    proxy = "http://127.0.0.1:9"
    env.update(HOME=str(home), HTTP_PROXY=proxy, HTTPS_PROXY=proxy, NO_PROXY="")
    env.update(PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-c", DEFAULT_STORE],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    tracking_uri, run_id, telemetry_variable = done.stdout.split()
    assert tracking_uri == f"sqlite:///{work / 'runs' / 'mlflow.db'}"
    assert telemetry_variable == "None"  # the environment is left as it was
    assert sorted(p.name for p in work.iterdir()) == ["elsewhere", "runs"]
    assert not any((work / "elsewhere").iterdir())
    assert list(home.rglob("*")) == []

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "rlpipe"
    assert experiment.artifact_location == (work / "runs" / "artifacts").as_uri()
    assert history(client, run_id)["x"] == [(0, 0.0), (1, 0.5), (2, 1.0)]


def test_a_relative_sqlite_path_is_resolved_when_the_sink_is_made(
    tmp_path: Path, store: Path
) -> None:
    (tmp_path / "logs").mkdir()
    shutil.copy(store, tmp_path / "logs" / "own.db")  # a store with its tables made
    sink = MlflowSink(tracking_uri="sqlite:///logs/own.db")
    assert sink.tracking_uri == f"sqlite:///{tmp_path / 'logs' / 'own.db'}"
    os.chdir(tmp_path / "logs")
    sink.write({"x": 1.0})
    sink.close()
    assert not (tmp_path / "logs" / "logs").exists()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'logs' / 'own.db'}")
    assert history(client, sink.run_id) == {"x": [(0, 1.0)]}


def test_resolve_tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    assert (tmp_path / "runs").is_dir()
    assert resolve_tracking_uri("sqlite:///a/b.db?timeout=5") == (
        f"sqlite:///{tmp_path / 'a' / 'b.db'}?timeout=5"
    )
    assert resolve_tracking_uri("sqlite:////abs/x.db") == "sqlite:////abs/x.db"
    assert resolve_tracking_uri("sqlite:///:memory:") == "sqlite:///:memory:"
    assert resolve_tracking_uri("http://localhost:5000") == "http://localhost:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///from-env.db")
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path / 'from-env.db'}"


def test_the_sink_makes_a_named_tagged_run_and_ends_it_FINISHED_on_close(
    uri: str, client: Any
) -> None:
    import mlflow

    sink = MlflowSink(tracking_uri=uri, experiment="made", run_name="ppo-1", tags={"seed": 3})
    assert sink.owns_run
    run = client.get_run(sink.run_id)
    assert run.info.status == "RUNNING"
    assert run.info.run_name == "ppo-1"
    assert run.data.tags["seed"] == "3"
    assert client.get_experiment(sink.experiment_id).name == "made"
    assert mlflow.active_run() is None  # the fluent API's run stack is left alone
    sink.write({"x": 1.0})
    sink.close()
    sink.close()  # idempotent
    assert client.get_run(sink.run_id).info.status == "FINISHED"
    assert history(client, sink.run_id) == {"x": [(0, 1.0)]}
    with pytest.raises(ClosedError):
        sink.write({"x": 2.0})


def test_an_experiment_is_made_once_and_reused(uri: str) -> None:
    first = MlflowSink(tracking_uri=uri, experiment="shared-exp")
    second = MlflowSink(tracking_uri=uri, experiment="shared-exp")
    assert first.experiment_id == second.experiment_id
    assert first.run_id != second.run_id
    first.close()
    second.close()


def test_MLFLOW_TRACKING_URI_and_MLFLOW_EXPERIMENT_NAME_are_the_defaults(
    uri: str, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    sink = MlflowSink()
    sink.close()
    assert sink.tracking_uri == uri
    assert client.get_experiment(sink.experiment_id).name == "from-env"


def test_a_run_given_by_run_id_gets_the_values_and_is_not_ended(uri: str, client: Any) -> None:
    experiment = client.create_experiment(f"given-{time.time_ns()}")
    run_id = client.create_run(experiment).info.run_id
    sink = MlflowSink(tracking_uri=uri, run_id=run_id, prefix="eval", tags={"added": "yes"})
    assert sink.run_id == run_id and not sink.owns_run
    assert sink.experiment_id == experiment
    sink.write({"return": 1.5})
    sink.close()

    run = client.get_run(run_id)
    assert run.info.status == "RUNNING"
    assert run.data.tags["added"] == "yes"
    assert history(client, run_id) == {"eval/return": [(0, 1.5)]}
    client.log_metric(run_id, "after", 2.0)  # still the caller's to use and end
    client.set_terminated(run_id)


def test_a_run_made_by_one_sink_can_be_shared_with_another(uri: str, client: Any) -> None:
    train = MlflowSink(tracking_uri=uri, prefix="train", step_key="t")
    evaluation = MlflowSink(tracking_uri=uri, run_id=train.run_id, prefix="eval", step_key="t")
    train.write({"t": 0, "x": 1.0})
    train.close()  # the maker ends the run; MLflow still takes values into it
    evaluation.write({"t": 0, "x": 2.0})
    evaluation.close()
    assert client.get_run(train.run_id).info.status == "FINISHED"
    assert history(client, train.run_id) == {
        "train/t": [(0, 0.0)],
        "train/x": [(0, 1.0)],
        "eval/t": [(0, 0.0)],
        "eval/x": [(0, 2.0)],
    }


def test_a_run_id_that_is_not_a_run_or_is_deleted_is_a_clear_error(uri: str, client: Any) -> None:
    with pytest.raises(ValueError, match="run_id '0123abc'"):
        MlflowSink(tracking_uri=uri, run_id="0123abc")
    run_id = client.create_run(client.create_experiment(f"deleted-{time.time_ns()}")).info.run_id
    client.delete_run(run_id)
    with pytest.raises(ValueError, match="is a deleted run"):
        MlflowSink(tracking_uri=uri, run_id=run_id)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prefix": 3}, "prefix must be a string"),
        ({"prefix": "a(b)"}, "prefix 'a\\(b\\)' is not a name MLflow takes"),
        ({"step_key": 1}, "step_key must be a string"),
        ({"tracking_uri": Path("x.db")}, "tracking_uri must be a string"),
        ({"config": [1, 2]}, "config must be a mapping"),
        ({"tags": ["rl"]}, "tags must be a mapping"),
        ({"run_id": "abc", "run_name": "x"}, "only apply when MlflowSink makes its run"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MlflowSink(**kwargs)
    assert not (Path.cwd() / "runs").exists()  # refused before any store was made


# -- values and steps ---------------------------------------------------------------------


def test_every_value_is_at_its_step_in_a_stream_whose_keys_change(uri: str, client: Any) -> None:
    stream = [
        {"loss": 0.5},
        {"loss": 0.4, "return": 10.0},
        {"return": 12.0, "grad_norm": 3},
        {"loss": 0.3, "grad_norm": 2, "new/late": 1.0},
    ]
    sink = MlflowSink(tracking_uri=uri)
    for record in stream:
        sink.write(record)
    sink.close()
    assert history(client, sink.run_id) == {
        "loss": [(0, 0.5), (1, 0.4), (3, 0.3)],
        "return": [(1, 10.0), (2, 12.0)],
        "grad_norm": [(2, 3.0), (3, 2.0)],
        "new/late": [(3, 1.0)],
    }
    assert sink.records_written == 4
    assert not sink.counts


KEYS = st.sampled_from(["a", "b", "loss/actor", "x y"])
VALUES = st.one_of(
    st.none(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_infinity=False, width=64),
    st.booleans(),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(stream=st.lists(st.dictionaries(KEYS, VALUES, max_size=4), max_size=12))
def test_property_what_is_written_is_what_the_run_holds(
    uri: str, client: Any, stream: list[dict[str, Any]]
) -> None:
    sink = MlflowSink(tracking_uri=uri)
    for record in stream:
        sink.write(record)
    sink.close()
    expected: dict[str, list[tuple[int, float]]] = {}
    for step, record in enumerate(stream):
        for key, value in record.items():
            if value is not None:
                expected.setdefault(key, []).append((step, float(value)))
    got = history(client, sink.run_id)
    assert set(got) == set(expected)
    assert all(same(got[key], expected[key]) for key in expected)


def test_every_number_kind_becomes_a_float(uri: str, client: Any) -> None:
    sink = MlflowSink(tracking_uri=uri)
    sink.write(
        {
            **number_kinds(),
            "huge_int": 10**400,
        }
    )
    sink.write({"np_float32": np.float32(0.5), "np_int64": np.int64(-1)})  # cached types
    sink.close()
    got = history(client, sink.run_id)
    assert got == {
        **{key: [(0, value)] for key, value in NUMBER_FLOATS.items()},
        "np_float32": [(0, 1.5), (1, 0.5)],
        "np_int64": [(0, 7.0), (1, -1.0)],
        "huge_int": [(0, FLOAT_MAX)],  # +inf, as the SQL store keeps it
    }
    assert not sink.dropped


def test_nan_reads_back_as_nan_and_infinities_as_the_largest_floats(uri: str, client: Any) -> None:
    sink = MlflowSink(tracking_uri=uri)
    for value in (math.nan, math.inf, -math.inf, np.float64("nan"), 1.0):
        sink.write({"loss": value})
    sink.close()
    got = history(client, sink.run_id)["loss"]
    assert same(got, [(0, math.nan), (1, FLOAT_MAX), (2, -FLOAT_MAX), (3, math.nan), (4, 1.0)])
    assert not sink.dropped


def test_None_is_skipped_quietly(uri: str, client: Any) -> None:
    sink = MlflowSink(tracking_uri=uri)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MlflowSinkWarning)
        sink.write({"lr": None, "x": 1.0})
        sink.write({"lr": 0.1})
    sink.close()
    assert history(client, sink.run_id) == {"x": [(0, 1.0)], "lr": [(1, 0.1)]}
    assert not sink.counts


def test_text_arrays_and_objects_are_not_sent_warned_once_per_key_and_counted(
    uri: str, client: Any
) -> None:
    sink = MlflowSink(tracking_uri=uri)
    with pytest.warns(MlflowSinkWarning) as caught:
        for i in range(3):
            sink.write({"x": float(i), "phase": "train", "obs": np.zeros(4), "fn": print})
    sink.close()
    messages = [str(w.message) for w in caught]
    assert len(messages) == 3  # once per key, not once per write
    assert any("'phase': text is not a number" in m for m in messages)
    assert sink.dropped == {"phase": 3, "obs": 3, "fn": 3}
    assert history(client, sink.run_id) == {"x": [(0, 0.0), (1, 1.0), (2, 2.0)]}


def test_names_mlflow_refuses_are_dropped_and_the_other_keys_sent(uri: str, client: Any) -> None:
    refused = ["acc@1", "x" * 251, "/lead", "trail/", "a//b", "a/../b", "."]
    sink = MlflowSink(tracking_uri=uri)
    with pytest.warns(MlflowSinkWarning, match="MLflow refuses the name") as caught:
        for i in range(2):
            sink.write({**{key: 1.0 for key in refused}, "ok": float(i), "fine: yes-1.0": 2.0})
    sink.close()
    assert len(caught) == len(refused)
    assert sink.dropped == {key: 2 for key in refused}
    assert sink.counts["errors"] == 0  # no push failed
    assert history(client, sink.run_id) == {
        "ok": [(0, 0.0), (1, 1.0)],
        "fine: yes-1.0": [(0, 2.0), (1, 2.0)],
    }


def test_a_name_the_store_refuses_after_all_is_found_out_and_only_it_is_dropped(
    uri: str, client: Any
) -> None:
    sink = MlflowSink(tracking_uri=uri)
    sink.push_seconds = 3600.0
    sink._check_name = lambda name: None  # as with an MLflow whose check rlpipe cannot reach
    for i in range(3):
        sink.write({"bad(name)": 1.0, "ok": float(i)})
    with pytest.warns(MlflowSinkWarning, match="MLflow refused 'bad\\(name\\)'"):
        sink.flush()
    sink.write({"bad(name)": 1.0, "ok": 3.0})  # now known: dropped when written
    sink.close()
    assert sink.dropped == {"bad(name)": 4}
    assert sink.counts["errors"] == 0
    assert history(client, sink.run_id) == {"ok": [(0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0)]}


def test_the_step_key_value_is_the_step_and_zero_is_a_step(uri: str, client: Any) -> None:
    sink = MlflowSink(tracking_uri=uri, step_key="actor_steps")
    sink.write({"actor_steps": 0, "return": 1.0})
    sink.write({"actor_steps": np.int64(120), "return": 2.0})
    sink.write({"actor_steps": -5, "return": 3.0})  # MLflow takes any int64 step
    sink.close()
    assert history(client, sink.run_id) == {
        "return": [(-5, 3.0), (0, 1.0), (120, 2.0)],
        "actor_steps": [(-5, -5.0), (0, 0.0), (120, 120.0)],
    }


def test_a_record_without_a_step_is_logged_at_the_last_step_seen(uri: str, client: Any) -> None:
    sink = MlflowSink(tracking_uri=uri, step_key="t")
    with pytest.warns(MlflowSinkWarning, match="logged at the last step seen"):
        sink.write({"loss": 0.9})  # no step yet: 0
        sink.write({"t": 40, "return": 1.0})
        sink.write({"loss": 0.5})
        sink.write({"t": None, "grad_norm": 2.0})
    sink.close()
    got = history(client, sink.run_id)
    assert got["loss"] == [(0, 0.9), (40, 0.5)]
    assert got["grad_norm"] == [(40, 2.0)]


def test_fractional_steps_are_floored_and_steps_beyond_int64_dropped(uri: str, client: Any) -> None:
    sink = MlflowSink(tracking_uri=uri, step_key="epoch")
    with pytest.warns(MlflowSinkWarning) as caught:
        sink.write({"epoch": 1.5, "x": 1.0})
        sink.write({"epoch": 2.5, "x": 2.0})
        sink.write({"epoch": 2**63, "x": 3.0})
        sink.write({"epoch": 4, "x": 4.0})
    sink.close()
    assert any("floored" in str(w.message) for w in caught)
    assert sink.counts["rounded"] == 2
    assert sink.dropped == {"epoch": 1, "x": 1}
    got = history(client, sink.run_id)
    assert got["x"] == [(1, 1.0), (2, 2.0), (4, 4.0)]
    assert got["epoch"] == [(1, 1.5), (2, 2.5), (4, 4.0)]  # the value itself is kept


def test_keys_land_under_the_prefix(uri: str, client: Any) -> None:
    sink = MlflowSink(tracking_uri=uri, prefix="/train/")
    sink.write({"return": 1.0, "loss/actor": 0.1})
    sink.close()
    assert set(history(client, sink.run_id)) == {"train/return", "train/loss/actor"}
    assert repr(sink) == f"MlflowSink(run_id={sink.run_id!r}, prefix='train', step_key=None)"


# -- configuration ------------------------------------------------------------------------


def test_log_config_logs_params_as_text_once(uri: str, client: Any) -> None:
    config = {
        "lr": np.float32(0.1),
        "batch": 64,
        "env": "CartPole-v1",
        "double_q": True,
        "net": {"layers": [64, 64], "activation": "relu"},
        "seed": None,
        "wrappers": {},
    }
    sink = MlflowSink(tracking_uri=uri, config=config, prefix="train")
    with warnings.catch_warnings():
        warnings.simplefilter("error", MlflowSinkWarning)
        sink.log_config(config)  # the same again: nothing to do
        sink.log_config({"extra": {"note": "second call adds params"}})
    sink.close()
    assert client.get_run(sink.run_id).data.params == {
        "lr": "0.1",
        "batch": "64",
        "env": "CartPole-v1",
        "double_q": "True",
        "net/layers": "[64, 64]",
        "net/activation": "relu",
        "seed": "None",
        "wrappers": "{}",
        "extra/note": "second call adds params",
    }


def test_a_param_cannot_change_nor_take_a_refused_name_and_neither_stops_the_others(
    uri: str, client: Any
) -> None:
    sink = MlflowSink(tracking_uri=uri, config={"lr": 0.1})
    with pytest.warns(MlflowSinkWarning) as caught:
        sink.log_config({"lr": 0.2, "bad(name)": 1, "gamma": 0.99})
        sink.log_config({"lr": 0.3})
    sink.close()
    messages = [str(w.message) for w in caught]
    assert any("'lr' not logged: the run holds '0.1'" in m for m in messages)
    assert any("'bad(name)' not logged" in m for m in messages)
    assert len(messages) == 2  # once per name
    assert sink.dropped == {"config/lr": 2, "config/bad(name)": 1}
    assert client.get_run(sink.run_id).data.params == {"lr": "0.1", "gamma": "0.99"}


def test_more_params_than_one_call_takes_are_all_logged(uri: str, client: Any) -> None:
    config = {f"p{i}": i for i in range(250)}
    sink = MlflowSink(tracking_uri=uri, config=config)
    sink.close()
    assert client.get_run(sink.run_id).data.params == {k: str(v) for k, v in config.items()}


def test_a_resumed_run_takes_its_configuration_again_quietly(uri: str, client: Any) -> None:
    config = {"lr": 0.1, "long": "x" * 7000}  # MLflow keeps the first 6000 characters
    first = MlflowSink(tracking_uri=uri, config=config, step_key="t")
    first.write({"t": 0, "x": 1.0})
    first.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error", MlflowSinkWarning)
        resumed = MlflowSink(tracking_uri=uri, run_id=first.run_id, config=config, step_key="t")
    resumed.write({"t": 1, "x": 2.0})
    resumed.close()
    assert history(client, first.run_id)["x"] == [(0, 1.0), (1, 2.0)]
    assert client.get_run(first.run_id).data.params["long"] == "x" * 6000


# -- pushing ------------------------------------------------------------------------------


def test_write_holds_records_and_flush_sends_them(uri: str, client: Any) -> None:
    sink = MlflowSink(tracking_uri=uri)
    sink.push_seconds = 3600.0
    for i in range(5):
        sink.write({"x": float(i)})
    assert sink.pending == 5
    assert history(client, sink.run_id) == {}
    sink.flush()
    assert sink.pending == 0
    assert history(client, sink.run_id) == {"x": [(i, float(i)) for i in range(5)]}
    sink.close()


def test_the_background_thread_sends_without_a_flush(uri: str, client: Any) -> None:
    sink = MlflowSink(tracking_uri=uri)
    sink.push_seconds = 0.01
    sink.write({"x": 1.0})
    deadline = time.monotonic() + 120.0  # rows leave `pending` when taken, before they are sent
    while history(client, sink.run_id) != {"x": [(0, 1.0)]} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sink.pending == 0
    assert history(client, sink.run_id) == {"x": [(0, 1.0)]}
    sink.close()


def test_more_metrics_than_one_call_takes_are_sent_in_several_calls(
    uri: str, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = MlflowSink(tracking_uri=uri)
    sink.push_seconds = 3600.0
    calls: list[int] = []
    log_batch = sink.client.log_batch

    def counted(run_id: str, **kwargs: Any) -> Any:
        calls.append(len(kwargs.get("metrics", ())))
        return log_batch(run_id, **kwargs)

    monkeypatch.setattr(sink.client, "log_batch", counted)
    sink.write({f"k{i}": float(i) for i in range(1500)})  # one record over two calls
    for i in range(100):
        sink.write({"a": float(i), "b": -float(i)})
    sink.close()
    assert calls == [1000, 700]
    got = history(client, sink.run_id)
    assert len(got) == 1502
    assert got["k1499"] == [(0, 1499.0)]
    assert got["b"] == [(i + 1, -float(i)) for i in range(100)]


def test_a_push_cut_short_resumes_at_the_call_it_stopped_at(
    uri: str, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = MlflowSink(tracking_uri=uri)
    sink.push_seconds = 3600.0
    sent: list[Any] = []
    log_batch = sink.client.log_batch
    failures = iter([False, True])  # the second call meets a dropped connection, once

    def flaky(run_id: str, **kwargs: Any) -> Any:
        if next(failures, False):
            raise ConnectionError("connection reset")
        log_batch(run_id, **kwargs)
        sent.extend(kwargs.get("metrics", ()))

    monkeypatch.setattr(sink.client, "log_batch", flaky)
    for i in range(2500):
        sink.write({"x": float(i)})
    with (
        pytest.warns(MlflowSinkWarning, match="pushing to the client failed"),
        pytest.raises(StoreError, match="rows are kept and retried"),
    ):
        sink.flush()
    assert len(sent) == 1000  # the first call went through
    sink.close()  # the retry sends the rest, from the call that failed
    assert [m.value for m in sent] == [float(i) for i in range(2500)]  # each once, in order
    assert history(client, sink.run_id)["x"] == [(i, float(i)) for i in range(2500)]
    assert sink.counts["errors"] == 1 and sink.counts["lost"] == 0


# -- the pipeline and the process ---------------------------------------------------------


def test_a_pipeline_with_a_memory_sink_next_to_it_leaves_the_same_values_in_the_run(
    uri: str, client: Any
) -> None:
    sink = MlflowSink(tracking_uri=uri, prefix="train", step_key="actor_steps")
    written = MemorySink()
    logger = Pipeline("train").smooth("return").to(sink, written)
    for record in episodes(200):
        logger.write(record)
    logger.close()

    got = history(client, sink.run_id)
    keys = {key for record in written.records for key in record}
    assert "return_smoothed_0.99" in keys
    assert set(got) == {f"train/{key}" for key in keys}
    for key in keys:
        expected = [(record["actor_steps"], float(record[key])) for record in written.records]
        assert got[f"train/{key}"] == expected, key
    assert not sink.counts
    assert client.get_run(sink.run_id).info.status == "FINISHED"


LEFT_OPEN = """
import sys, time
from pipeline import Pipeline
from sinks.mlflow import MlflowSink
uri, how = sys.argv[1:]
sink = MlflowSink(tracking_uri=uri, prefix="eval", step_key="steps")
evaluation = Pipeline("eval").aggregate("return", every=1000).to(sink)
raw_sink = MlflowSink(tracking_uri=uri, run_id=sink.run_id, prefix="train", step_key="steps")
raw_sink.push_seconds = 3600.0
for i in range(10):
    record = {"return": float(i), "steps": i}
    evaluation.write(record)
    raw_sink.write(record)
print(sink.run_id, flush=True)
if how == "exit":
    sys.exit(0)  # no close(), no flush()
time.sleep(120)
"""


@pytest.mark.parametrize("how", ["exit", "SIGTERM"])
def test_values_held_at_exit_or_sigterm_reach_the_run_and_the_run_ends(
    tmp_path: Path, uri: str, client: Any, how: str
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", LEFT_OPEN, uri, how],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    run_id = child.stdout.readline().strip()
    assert run_id, child.stderr and child.stderr.read()
    if how == "SIGTERM":
        child.send_signal(signal.SIGTERM)
    _, errors = child.communicate(timeout=120)
    assert child.returncode == (0 if how == "exit" else 128 + signal.SIGTERM), errors
    assert "MlflowSinkWarning" not in errors and "RuntimeWarning" not in errors

    assert client.get_run(run_id).info.status == "FINISHED"
    got = history(client, run_id)
    assert got["train/return"] == [(i, float(i)) for i in range(10)]
    values = [float(i) for i in range(10)]
    window = {
        "eval/return_mean": np.mean(values),
        "eval/return_std": np.std(values),
        "eval/return_median": np.median(values),
        "eval/return_max": 9.0,
        "eval/return_min": 0.0,
        "eval/steps": 9.0,
    }
    for name, expected in window.items():
        assert got[name] == [(9, pytest.approx(expected))], name
    assert list(tmp_path.iterdir()) == []  # nothing made in the working folder
