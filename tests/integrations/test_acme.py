"""The Acme integration, on Acme's real EnvironmentLoop: pipelines are Acme loggers, every
episode's record reaches the sinks, aggregates match numpy, close flushes the last window,
and the Acme-style logger factory routes several components into rlpipe."""

from __future__ import annotations

import csv
import inspect
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import acme
import dm_env
import gymnasium
import numpy as np
import pytest
from acme.utils import loggers as acme_loggers

from filters import AggregateFilter, SmoothingFilter, TimeFilter
from pipeline import Node, Pipeline
from pipeline.cli.demo_agent import GymnasiumEnvironment
from pipeline.integrations.acme import (
    LoggerFactory,
    make_logger,
    make_logger_factory,
    register_with_acme,
)
from sinks import CsvSink, MemorySink, NeptuneSink, TerminalSink
from tests.reference import warmup_ema

ACME_KEYS = {"episode_length", "episode_return", "steps_per_second", "episodes", "steps"}


class RandomActor(acme.core.Actor):
    """Uniformly random actions from a seeded generator; learns nothing."""

    def __init__(self, num_actions: int, seed: int) -> None:
        self.num_actions = num_actions
        self.rng = np.random.default_rng(seed)

    def select_action(self, observation: np.ndarray) -> np.int32:
        return np.int32(self.rng.integers(self.num_actions))

    def observe_first(self, timestep: dm_env.TimeStep) -> None:
        pass

    def observe(self, action: Any, next_timestep: dm_env.TimeStep) -> None:
        pass

    def update(self, wait: bool = False) -> None:
        pass


def run_loop(logger: Any, episodes: int, seed: int = 0) -> None:
    """Acme's EnvironmentLoop on CartPole (reward 1 per step), logging to `logger`."""
    env = GymnasiumEnvironment(gymnasium.make("CartPole-v1"), seed=seed)
    loop = acme.EnvironmentLoop(env, RandomActor(2, seed), logger=logger)
    loop.run(num_episodes=episodes)
    env.close()


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))




def neptune_series(data_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """The float series an offline neptune 1.x run stored under `data_dir`: path -> [(step,
    value)], read from the client's operation log."""
    series: dict[str, list[tuple[float, float]]] = {}
    for log in sorted(data_dir.glob("offline/*/data-*.log")):
        for line in log.read_text(encoding="utf-8").splitlines():
            operation = json.loads(line)["obj"]
            if operation["type"] == "LogFloats":
                points = series.setdefault("/".join(operation["path"]), [])
                points.extend((point["step"], point["value"]) for point in operation["values"])
    return series


# -- Acme's Logger type ----------------------------------------------------------------------


def test_every_node_and_pipeline_is_an_acme_logger() -> None:
    pipeline = Pipeline("train").smooth("return").to(MemorySink())
    for logger in (pipeline, MemorySink(), SmoothingFilter(), AggregateFilter(), Node()):
        assert isinstance(logger, acme_loggers.Logger)
        assert isinstance(logger, acme_loggers.base.Logger)
    assert register_with_acme() is True  # already registered: idempotent


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return result.stdout.strip()


def test_registration_holds_when_acme_is_imported_after_the_integration() -> None:
    out = run_python(
        "import sys\n"
        "import pipeline.integrations.acme as integration\n"
        "print('acme' in sys.modules)\n"
        "import acme.utils.loggers as loggers\n"
        "from pipeline import Pipeline\n"
        "from sinks import MemorySink\n"
        "print(isinstance(Pipeline().to(MemorySink()), loggers.Logger))\n"
        "print(integration._HOOK in sys.meta_path)\n"
    )
    # Acme is not imported by the integration; once the user imports it, pipelines are
    # Loggers, and the import hook has removed itself.
    assert out.split() == ["False", "True", "False"]


def test_registration_holds_when_acme_is_imported_first() -> None:
    out = run_python(
        "import sys\n"
        "from acme.utils.loggers import Logger\n"
        "import pipeline.integrations.acme as integration\n"
        "from pipeline import Pipeline\n"
        "from sinks import MemorySink\n"
        "print(isinstance(Pipeline().to(MemorySink()), Logger))\n"
        "print(integration._HOOK in sys.meta_path)\n"
    )
    assert out.split() == ["True", "False"]


@pytest.mark.parametrize(
    "imports",
    [
        "import pipeline\nimport acme.utils.loggers as L\n",
        "import acme.utils.loggers as L\nimport pipeline\n",
    ],
    ids=["pipeline-first", "acme-first"],
)
def test_importing_pipeline_alone_makes_nodes_acme_loggers(imports: str) -> None:
    # A fresh interpreter that never imports pipeline.integrations.acme by name.
    out = run_python(
        imports + "assert isinstance(pipeline.Node(), L.Logger)\n"
        "assert isinstance(pipeline.Pipeline('p'), L.base.Logger)\n"
        "print('ok')\n"
    )
    assert out == "ok"


def test_importing_pipeline_imports_no_acme_no_integration_and_no_sink() -> None:
    out = run_python(
        "import sys, pipeline\n"
        "print('pipeline.core.acme_logger' in sys.modules)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('acme', 'sinks', 'filters', 'neptune', 'dm_env', 'gymnasium') "
        "or m.startswith('pipeline.integrations')))\n"
    )
    assert out.splitlines() == ["True", "[]"]


def test_acme_logger_module_imports_neither_tensorflow_nor_jax() -> None:
    out = run_python(
        "import sys, acme.utils.loggers\n"
        "print(sorted(m for m in ('tensorflow', 'jax', 'pandas', 'reverb') if m in sys.modules))"
    )
    assert out == "[]"


# -- a real EnvironmentLoop writing to a pipeline --------------------------------------------


def test_every_episode_record_reaches_every_sink(tmp_path: Path) -> None:
    memory = MemorySink()
    logger = make_logger(
        "train", directory=tmp_path, time_delta=0, terminal=False, extra_sinks=[memory]
    )
    run_loop(logger, episodes=20)
    logger.close()

    records = memory.records
    assert len(records) == 20
    assert all(set(record) == ACME_KEYS for record in records)
    lengths = [record["episode_length"] for record in records]
    assert [record["episodes"] for record in records] == list(range(1, 21))
    assert [record["steps"] for record in records] == list(np.cumsum(lengths))
    for record in records:
        # Acme sums rewards into a 0-d numpy array, not a float; CartPole pays 1 per step.
        assert isinstance(record["episode_return"], np.ndarray)
        assert record["episode_return"].shape == ()
        assert float(record["episode_return"]) == record["episode_length"]
    rows = read_csv(tmp_path / "train.csv")
    assert [int(row["episode_length"]) for row in rows] == lengths
    assert [float(row["episode_return"]) for row in rows] == [float(n) for n in lengths]
    assert set(rows[0]) == ACME_KEYS


def test_train_logger_smooths_the_return_with_the_seed_ema(tmp_path: Path) -> None:
    memory = MemorySink()
    logger = make_logger(
        "train",
        directory=tmp_path,
        time_delta=0,
        smoothing_regex="return",
        smoothing_coeff=0.9,
        terminal=False,
        extra_sinks=[memory],
    )
    run_loop(logger, episodes=15)
    logger.close()
    returns = [float(record["episode_return"]) for record in memory.records]
    smoothed = memory.column("episode_return_smoothed_0.9")
    assert smoothed == pytest.approx(warmup_ema(returns, 0.9))
    rows = read_csv(tmp_path / "train.csv")
    csv_smoothed = [float(row["episode_return_smoothed_0.9"]) for row in rows]
    assert csv_smoothed == pytest.approx(smoothed)


def test_eval_logger_aggregates_match_numpy_and_close_flushes_the_last_window(
    tmp_path: Path,
) -> None:
    raw = MemorySink()
    windows = MemorySink()
    eval_logger = make_logger(
        "eval",
        directory=tmp_path,
        aggregate_regex="return",
        aggregate_every=5,
        terminal=False,
        extra_sinks=[windows],
    )
    logger = Pipeline("tee").to(raw, eval_logger)
    run_loop(logger, episodes=12)
    assert len(windows.records) == 2  # two full windows of 5; 2 episodes still held

    logger.close()
    assert eval_logger.closed
    assert len(windows.records) == 3  # closing emitted the last, partial window
    returns = np.array([float(record["episode_return"]) for record in raw.records])
    chunks = (returns[:5], returns[5:10], returns[10:])
    for window, chunk in zip(windows.records, chunks, strict=True):
        assert window["episode_return_mean"] == pytest.approx(np.mean(chunk))
        assert window["episode_return_std"] == pytest.approx(np.std(chunk))
        assert window["episode_return_median"] == pytest.approx(np.median(chunk))
        assert window["episode_return_max"] == np.max(chunk)
        assert window["episode_return_min"] == np.min(chunk)
        assert "episode_return" not in window
    # keys the regex does not match carry their last value
    assert [window["episodes"] for window in windows.records] == [5, 10, 12]
    assert windows.records[-1]["episode_length"] == raw.records[-1]["episode_length"]
    rows = read_csv(tmp_path / "eval.csv")
    assert [float(row["episode_return_mean"]) for row in rows] == pytest.approx(
        [np.mean(returns[:5]), np.mean(returns[5:10]), np.mean(returns[10:])]
    )


def test_eval_logger_flush_emits_one_window_per_round_like_dump(tmp_path: Path) -> None:
    windows = MemorySink()
    eval_logger = make_logger(
        "eval", directory=tmp_path, aggregate_regex="return", terminal=False,
        extra_sinks=[windows],
    )
    for round_ in range(3):
        run_loop(eval_logger, episodes=4, seed=round_)
        assert len(windows.records) == round_  # nothing is emitted before the flush
        eval_logger.flush()  # the seed's eval_logger.dump()
        assert len(windows.records) == round_ + 1
    eval_logger.close()
    assert len(windows.records) == 3  # an empty window emits nothing
    assert [len(read_csv(tmp_path / "eval.csv"))] == [3]


def test_the_terminal_gets_the_first_record_and_the_last_on_close_the_others_every_one(
    tmp_path: Path,
) -> None:
    memory, out = MemorySink(), io.StringIO()
    logger = make_logger(
        "learner", directory=None, csv=False, time_delta=3600, terminal_stream=out,
        extra_sinks=[memory],
    )
    run_loop(logger, episodes=10)
    assert len(out.getvalue().splitlines()) == 1
    logger.close()
    lines = out.getvalue().splitlines()
    assert "| Episodes = 1 |" in lines[0] and "| Episodes = 10 |" in lines[1]
    assert [record["episodes"] for record in memory.records] == list(range(1, 11))


def test_terminal_lines_name_the_logger(tmp_path: Path) -> None:
    out = io.StringIO()
    logger = make_logger("train_loop", directory=tmp_path, time_delta=0, terminal_stream=out)
    run_loop(logger, episodes=3)
    logger.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert all(line.startswith("[Train Loop] Episode Length = ") for line in lines)
    assert "| Episodes = 3 |" in lines[-1]


def test_make_logger_builds_the_documented_chain(tmp_path: Path) -> None:
    logger = make_logger(
        "train", directory=tmp_path, smoothing_regex="return", terminal_time_delta=2.0
    )
    kinds = [type(node).__name__ for node in logger.steps]
    assert kinds[:3] == ["NoneFilter", "SmoothingFilter", "Dispatcher"]
    leaves = [node for node in logger.nodes() if not node.children]
    assert {type(node) for node in leaves} == {TerminalSink, CsvSink}
    gate = next(node for node in logger.steps if isinstance(node, TimeFilter))
    assert gate.time_delta == 2.0 and gate.keep_last  # the terminal's throttle, alone
    assert [type(node) for node in gate.children] == [TerminalSink]
    logger.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"terminal": False, "csv": False}, "no sink"),
        ({"neptune": "yes"}, "neptune must be"),
        ({"time_delta": -1}, "time_delta"),
        ({"csv": True, "directory": None}, "directory"),
    ],
)
def test_make_logger_rejects_bad_options(
    options: dict[str, Any], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # runs/x.csv would be made here, were it made
    with pytest.raises(ValueError, match=message):
        make_logger("x", **options)
    assert list(tmp_path.iterdir()) == []


def test_make_logger_rejects_an_empty_label() -> None:
    with pytest.raises(ValueError, match="label"):
        make_logger("")


@pytest.mark.slow
def test_neptune_leaf_gets_every_episode_under_the_prefix_at_the_steps_key(
    tmp_path: Path,
) -> None:
    memory = MemorySink()
    logger = make_logger(
        "train",
        directory=tmp_path,
        time_delta=0,
        terminal=False,
        neptune={"data_dir": tmp_path / "neptune"},
        steps_key="steps",
        extra_sinks=[memory],
    )
    run_loop(logger, episodes=8)
    logger.close()
    series = neptune_series(tmp_path / "neptune")
    expected = [(record["steps"], float(record["episode_return"])) for record in memory.records]
    assert series["train/episode_return"] == expected


NO_NEPTUNE = "import sys\nsys.modules['neptune'] = None\n"  # as if the client were absent


def test_without_the_neptune_client_a_neptune_leaf_is_an_import_error_naming_the_extra(
    tmp_path: Path,
) -> None:
    out = run_python(
        NO_NEPTUNE + "from pathlib import Path\n"
        "from pipeline.integrations.acme import make_logger, make_logger_factory\n"
        f"out = Path({str(tmp_path)!r})\n"
        "for make in (lambda: make_logger('train', directory=out, neptune=True),\n"
        "             lambda: make_logger('train', directory=out, neptune={'name': 'x'}),\n"
        "             lambda: make_logger_factory(directory=out, neptune=True)('eval')):\n"
        "    try:\n"
        "        make()\n"
        "    except ImportError as error:\n"
        "        print(error)\n"
        "make_logger('plain', directory=out, terminal=False).close()\n"
    )
    lines = out.splitlines()
    assert len(lines) == 3
    for line in lines:
        assert "the `neptune` package" in line
        assert "pip install 'rlpipe[neptune]'" in line
        assert "neptune-client" not in line
    # The check comes before any sink is made: no CSV file was opened for the failed loggers.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["plain.csv"]


# -- Acme's logger-factory signature ---------------------------------------------------------


def test_factory_has_acmes_signature_and_routes_every_component(tmp_path: Path) -> None:
    factory = make_logger_factory(
        directory=tmp_path,
        time_delta=0,
        terminal=False,
        per_label={"evaluator": {"aggregate_regex": "return", "aggregate_every": 3}},
    )
    assert list(inspect.signature(factory).parameters) == ["label", "steps_key", "task_instance"]

    learner = factory("learner", "learner_steps", 0)  # Acme >= 0.4 calls it positionally
    actor = factory(label="actor", steps_key="actor_steps", task_instance=1)
    evaluator = factory("evaluator")
    assert all(isinstance(x, acme_loggers.Logger) for x in (learner, actor, evaluator))
    assert actor.name == "actor_1"

    learner.write({"learner_steps": 1, "loss": 0.5})
    run_loop(actor, episodes=4)
    run_loop(evaluator, episodes=6, seed=1)
    factory.close()
    assert all(logger.closed for logger in factory.loggers)

    assert read_csv(tmp_path / "learner.csv") == [{"learner_steps": "1", "loss": "0.5"}]
    assert len(read_csv(tmp_path / "actor_1.csv")) == 4
    evaluation = read_csv(tmp_path / "evaluator.csv")
    assert len(evaluation) == 2
    assert "episode_return_mean" in evaluation[0]


def test_factory_rejects_unknown_options() -> None:
    with pytest.raises(ValueError, match="unknown make_logger options"):
        LoggerFactory(smoothing="return")
    with pytest.raises(ValueError, match="for 'eval'"):
        LoggerFactory(per_label={"eval": {"aggregate": "return"}})


@pytest.mark.slow
def test_factory_loggers_share_one_neptune_run(tmp_path: Path) -> None:
    with make_logger_factory(
        directory=tmp_path,
        time_delta=0,
        terminal=False,
        neptune={"data_dir": tmp_path / "neptune", "name": "shared"},
    ) as factory:
        train = factory("train", steps_key="steps")
        evaluation = factory("eval", steps_key="steps")
        sinks = [
            node
            for logger in (train, evaluation)
            for node in logger.nodes()
            if isinstance(node, NeptuneSink)
        ]
        assert len(sinks) == 2
        assert sinks[0].run is sinks[1].run
        assert sinks[0].owns_run and not sinks[1].owns_run
        run_loop(train, episodes=3)
        run_loop(evaluation, episodes=2, seed=1)
    assert len(list((tmp_path / "neptune").glob("offline/*"))) == 1
    series = neptune_series(tmp_path / "neptune")
    assert len(series["train/episode_return"]) == 3
    assert len(series["eval/episode_return"]) == 2


FACTORY_LEFT_OPEN = """
import sys
from pipeline.integrations.acme import make_logger_factory
factory = make_logger_factory(
    directory=sys.argv[1], time_delta=0, terminal=False,
    neptune={"data_dir": sys.argv[1] + "/neptune"},
    per_label={"eval": {"aggregate_regex": "return"}},
)
train = factory("train", steps_key="steps")  # its sink makes the run
evaluation = factory("eval", steps_key="steps")  # shares it, aggregating until close
for steps in range(1, 6):
    train.write({"steps": steps, "episode_return": float(steps)})
    evaluation.write({"steps": steps, "episode_return": 10.0 * steps})
sys.exit(0)  # neither flush() nor close()
"""


@pytest.mark.slow
def test_factory_loggers_left_open_deliver_everything_to_neptune_at_exit(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", FACTORY_LEFT_OPEN, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr
    series = neptune_series(tmp_path / "neptune")
    assert series["train/episode_return"] == [(s, float(s)) for s in range(1, 6)]
    assert series["eval/episode_return_mean"] == [(5, 30.0)]
    assert series["eval/episode_return_max"] == [(5, 50.0)]
    assert len(read_csv(tmp_path / "eval.csv")) == 1


# -- the factory: one logger per label, every label's options -------------------------------


def test_the_same_label_twice_is_the_same_logger_writing_one_csv_file(tmp_path: Path) -> None:
    factory = make_logger_factory(directory=tmp_path, time_delta=0, terminal=False)
    evaluator = factory("evaluator")
    assert factory("evaluator") is evaluator
    assert factory("evaluator", None, 0) is evaluator  # Acme passes task_instance=0
    actor = factory("actor", "actor_steps", 1)
    assert factory(label="actor", steps_key="actor_steps", task_instance=1) is actor

    run_loop(evaluator, episodes=3)
    run_loop(factory("evaluator"), episodes=2, seed=1)
    factory.close()
    assert factory.loggers == [evaluator, actor]

    text = (tmp_path / "evaluator.csv").read_text(encoding="utf-8")
    assert text.count("episode_length") == 1  # one header
    rows = read_csv(tmp_path / "evaluator.csv")
    assert len(rows) == 5
    assert all(set(row) == ACME_KEYS and all(row.values()) for row in rows)
    assert [row["episodes"] for row in rows] == ["1", "2", "3", "1", "2"]


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        (("evaluator",), ("evaluator", "steps"), "steps_key='steps'"),
        (("actor", None, 1), ("actor_1",), r"factory\('actor_1'"),
    ],
)
def test_a_second_request_for_a_name_with_other_arguments_is_a_clear_error(
    tmp_path: Path, first: tuple[Any, ...], second: tuple[Any, ...], message: str
) -> None:
    with make_logger_factory(directory=tmp_path, terminal=False) as factory:
        factory(*first)
        with pytest.raises(ValueError, match=message):
            factory(*second)
        assert len(factory.loggers) == 1


@pytest.mark.slow
@pytest.mark.parametrize("eval_first", [False, True], ids=["train-first", "eval-first"])
def test_per_label_neptune_options_hold_for_every_logger_of_the_factory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, eval_first: bool
) -> None:
    monkeypatch.chdir(tmp_path)  # a run made in the wrong place would land here
    with make_logger_factory(
        directory=tmp_path,
        time_delta=0,
        terminal=False,
        neptune={"data_dir": tmp_path / "neptune", "name": "shared"},
        per_label={"eval": {"neptune": {"step_key": "eval_steps", "prefix": "evaluation"}}},
    ) as factory:
        if eval_first:
            evaluation = factory("eval")
            train = factory("train", steps_key="steps")
        else:
            train = factory("train", steps_key="steps")
            evaluation = factory("eval")
        for steps in (1, 2, 3):
            train.write({"steps": steps, "r": float(steps)})
        for steps in (100, 200):
            evaluation.write({"eval_steps": steps, "r": steps / 10})
    assert not (tmp_path / ".neptune").exists()
    assert len(list((tmp_path / "neptune").glob("offline/*"))) == 1
    series = neptune_series(tmp_path / "neptune")
    assert series["train/r"] == [(1, 1.0), (2, 2.0), (3, 3.0)]
    assert series["train/steps"] == [(1, 1.0), (2, 2.0), (3, 3.0)]
    assert series["evaluation/r"] == [(100, 10.0), (200, 20.0)]
    assert series["evaluation/eval_steps"] == [(100, 100.0), (200, 200.0)]
    assert set(series) == {"train/r", "train/steps", "evaluation/r", "evaluation/eval_steps"}


@pytest.mark.slow
def test_per_label_run_options_that_differ_from_the_shared_runs_are_a_clear_error(
    tmp_path: Path,
) -> None:
    with make_logger_factory(
        directory=tmp_path,
        terminal=False,
        neptune={"data_dir": tmp_path / "neptune"},
        per_label={"eval": {"neptune": {"name": "another run"}}},
    ) as factory:
        factory("train")
        with pytest.raises(ValueError, match=r"one Neptune run.*'eval'.*name"):
            factory("eval")
