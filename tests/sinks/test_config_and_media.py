"""A run's configuration (`log_config`) and image/video values, read back from what each
sink keeps: the config JSON file parsed, media files decoded, CSV cells resolved."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline import Image, Pipeline, Video
from pipeline.core.config import convert_json
from pipeline.core.node import ClosedError
from sinks import CsvSink, JsonlSink, MemorySink, TerminalSink
from sinks.file import BufferedFileSink

# -- configuration ----------------------------------------------------------------------


class Settings:
    def __init__(self) -> None:
        self.width = 64
        self.depth = np.int64(2)


def a_function() -> None: ...


def read_config(sink: BufferedFileSink) -> dict[str, Any]:
    return json.loads(sink.config_path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


class ConfigLogger:
    """A user's logger with a config hook (a LoggerSink passes the config to it)."""

    def __init__(self) -> None:
        self.configs: list[dict[str, Any]] = []
        self.records: list[dict[str, Any]] = []

    def write(self, data: dict[str, Any]) -> None:
        self.records.append(data)

    def log_config(self, config: dict[str, Any]) -> None:
        self.configs.append(config)


def test_convert_json_follows_spinning_ups_rule() -> None:
    settings = Settings()
    converted = convert_json(
        {
            "lr": np.float32(3e-4),
            "layers": (64, np.int64(64)),
            "activation": np.tanh,
            "policy": Settings,
            "settings": settings,
            "scale": lambda x: x,
            "nested": {"ok": [True, None, "x"]},
            "array": np.arange(3),
        }
    )
    assert converted["lr"] == 3e-4 and type(converted["lr"]) is float
    assert converted["layers"] == [64, 64]
    assert converted["activation"] == "tanh"  # a function: its name
    assert converted["policy"] == "Settings"  # a class: its name
    assert converted["settings"] == {str(settings): {"width": 64, "depth": 2}}
    assert converted["scale"].startswith("<function ")  # a lambda: its text
    assert "<lambda>" in converted["scale"]
    assert converted["nested"] == {"ok": [True, None, "x"]}
    assert converted["array"] == [0, 1, 2]


class Cyclic:
    def __init__(self) -> None:
        self.me = self


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=3) | st.integers(), inner, max_size=3)
    ),
    max_leaves=10,
)
odd_values = st.sampled_from([Cyclic(), Settings(), object(), np.float16(1.5), {1, 2}, a_function])


@given(st.dictionaries(st.text(max_size=5), json_values | odd_values, max_size=5))
def test_any_config_converts_to_what_json_takes(config: dict[str, Any]) -> None:
    json.dumps(convert_json(config))


def test_log_config_reaches_every_sink_once_through_filters_and_a_join(tmp_path: Path) -> None:
    memory, user, csv_sink = MemorySink(), ConfigLogger(), CsvSink(tmp_path / "run.csv")
    train = Pipeline("train").drop_none().smooth("return").to(memory, user)
    evaluation = Pipeline("eval").aggregate("return").to(memory, user)  # a join
    root = Pipeline("root").to(train, evaluation, csv_sink)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one call: nothing changes, nothing warned
        root.log_config({"opt": {"lr": 0.1}, "seed": 1})

    assert user.configs == [{"opt/lr": 0.1, "seed": 1}]  # once, flat and plain
    assert memory.config == {"opt/lr": 0.1, "seed": 1}
    assert read_config(csv_sink) == {"opt/lr": 0.1, "seed": 1}
    root.write({"return": 1.0})
    root.close()
    assert user.records and memory.records  # records went on as before


def test_file_sinks_write_the_config_beside_their_file_flat_and_plain(tmp_path: Path) -> None:
    settings = Settings()
    config = {
        "env": "CartPole-v1",
        "opt": {"lr": np.float32(0.001), "betas": (0.9, 0.999)},
        "activation": np.tanh,
        "settings": settings,
        "gamma": math.nan,
    }
    csv_sink, jsonl_sink = CsvSink(tmp_path / "train.csv"), JsonlSink(tmp_path / "train.jsonl")
    with Pipeline().to(csv_sink, jsonl_sink) as logger:
        logger.log_config(config)
        logger.write({"step": 1, "return": 2.0})

    expected = {
        "env": "CartPole-v1",
        "opt/lr": 0.001,
        "opt/betas": [0.9, 0.999],
        "activation": "tanh",
        "settings": {str(settings): {"width": 64, "depth": 2}},
    }
    for sink, name in (
        (csv_sink, "train.csv.config.json"),
        (jsonl_sink, "train.jsonl.config.json"),
    ):
        assert sink.config_path == tmp_path / name
        stored = read_config(sink)
        assert math.isnan(stored.pop("gamma"))
        assert stored == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "train.csv",
        "train.csv.config.json",
        "train.jsonl",
        "train.jsonl.config.json",
    ]  # no temporary file left behind
    with (tmp_path / "train.csv").open(newline="") as handle:
        assert list(csv.DictReader(handle)) == [{"step": "1", "return": "2.0"}]


def test_calling_log_config_again_merges_and_counts_a_changed_value_warned_once(
    tmp_path: Path,
) -> None:
    sink = JsonlSink(tmp_path / "run.jsonl")
    logger = Pipeline().to(sink)
    logger.log_config({"seed": 1, "lr": 0.1})

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logger.log_config({"seed": 1, "batch": 64})  # the same value, a new name: no count
    assert read_config(sink) == {"seed": 1, "lr": 0.1, "batch": 64}
    assert sink.counts["overwritten"] == 0

    with pytest.warns(UserWarning, match=r"config value 'lr' changed from 0.1 to 0.2"):
        logger.log_config({"lr": 0.2})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per name
        logger.log_config({"lr": 0.3})
    assert read_config(sink) == {"seed": 1, "lr": 0.3, "batch": 64}
    assert sink.counts["overwritten"] == 2
    assert sink.counts.by_key["overwritten"] == {"config/lr": 2}
    logger.close()


def test_a_name_given_twice_in_one_config_is_counted_and_the_earlier_kept() -> None:
    sink = MemorySink()
    with pytest.warns(UserWarning, match="given twice"):
        Pipeline().to(sink).log_config({"a/b": 1, "a": {"b": 2}})
    assert sink.config == {"a/b": 1}  # flatten keeps the earlier of two equal names
    assert sink.counts.by_key["overwritten"] == {"config/a/b": 1}


def test_a_resumed_run_keeps_the_config_file_and_merges_into_it(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    first = Pipeline().to(CsvSink(path))
    first.log_config({"seed": 3, "lr": 0.1})
    first.write({"step": 1})
    state = first.state_dict()
    first.close()

    second_sink = CsvSink(path)  # mode="w", but a state is loaded before any write
    second = Pipeline().to(second_sink)
    second.load_state_dict(state)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second.log_config({"seed": 3, "lr": 0.1})  # a resumed run logs it again: no change
    second.write({"step": 2})
    second.close()
    assert read_config(second_sink) == {"seed": 3, "lr": 0.1}
    assert second_sink.counts["overwritten"] == 0


def test_mode_a_merges_into_the_earlier_runs_config(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with Pipeline().to(JsonlSink(path)) as first:
        first.log_config({"seed": 3})
        first.write({"x": 1})
    sink = JsonlSink(path, mode="a")
    with pytest.warns(UserWarning, match="'seed' changed from 3 to 4"), Pipeline().to(sink) as p:
        p.log_config({"seed": 4, "lr": 0.5})
    assert read_config(sink) == {"seed": 4, "lr": 0.5}


def test_a_new_run_that_logs_no_config_removes_the_earlier_runs_file(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    with Pipeline().to(CsvSink(path)) as first:
        first.log_config({"seed": 3})
        first.write({"x": 1, "frame": Image(np.zeros((2, 2), np.uint8))})
    assert (tmp_path / "run.csv.config.json").exists()
    assert (tmp_path / "run.csv.media").is_dir()

    with pytest.warns(UserWarning, match="replaced"), Pipeline().to(CsvSink(path)) as second:
        second.write({"x": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.csv"]


def test_terminal_prints_the_config_once_and_then_what_changed() -> None:
    stream = io.StringIO()
    logger = Pipeline().to(TerminalSink("train", stream=stream))
    logger.log_config({"opt": {"lr": 0.0003}, "env": "CartPole-v1", "layers": [64, 64]})
    logger.log_config({"env": "CartPole-v1"})  # nothing new: nothing printed
    with pytest.warns(UserWarning, match="changed"):
        logger.log_config({"opt": {"lr": 0.001}})
    logger.write({"x": 1.0})
    assert stream.getvalue().splitlines() == [
        "[Train] config: opt/lr = 0.0003 | env = CartPole-v1 | layers = [64, 64]",
        "[Train] config: opt/lr = 0.001",
        "[Train] X = 1.000",
    ]


def test_terminal_table_mode_prints_the_config_as_a_table() -> None:
    stream = io.StringIO()
    TerminalSink(stream=stream, mode="table").log_config({"seed": 1, "opt": {"lr": 0.5}})
    assert stream.getvalue().splitlines() == [
        "---------------------",
        "| config/     |     |",
        "|     seed    | 1   |",
        "| config/opt/ |     |",
        "|     lr      | 0.5 |",
        "---------------------",
    ]


def test_a_logger_without_a_config_hook_is_passed_over() -> None:
    class Plain:
        def __init__(self) -> None:
            self.records: list[dict[str, Any]] = []

        def write(self, data: dict[str, Any]) -> None:
            self.records.append(data)

    logger = Plain()
    pipeline = Pipeline().to(logger)
    pipeline.log_config({"seed": 1})
    pipeline.write({"x": 1})
    assert logger.records == [{"x": 1}]


def test_log_config_takes_a_mapping_on_an_open_ended_pipeline() -> None:
    with pytest.raises(RuntimeError, match="no sinks yet"):
        Pipeline().log_config({"seed": 1})
    pipeline = Pipeline().to(MemorySink())
    with pytest.raises(ValueError, match="config must be a mapping"):
        pipeline.log_config([("seed", 1)])  # type: ignore[arg-type]
    pipeline.close()
    with pytest.raises(ClosedError):
        pipeline.log_config({"seed": 1})


def test_memory_sink_keeps_the_config_across_a_checkpoint() -> None:
    sink = MemorySink()
    first = Pipeline().to(sink)
    first.log_config({"seed": 1})
    first.write({"x": 1})
    restored = MemorySink()
    Pipeline().to(restored).load_state_dict(first.state_dict())
    assert restored.config == {"seed": 1}


# -- images and videos ------------------------------------------------------------------


def rgb_image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8)


def few_colour_frames(count: int = 4) -> np.ndarray:
    """Frames of a handful of colours: a GIF's 256-colour palette holds them exactly."""
    frames = np.zeros((count, 8, 6, 3), np.uint8)
    for index in range(count):
        frames[index, : index + 2] = [255, 0, 0]
        frames[index, index + 2 :, :3] = [0, 0, 255]
        frames[index, :, 0] = [0, 255, 0]
    return frames


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.zeros((4, 4, 2), np.uint8), r"\(H, W\) or \(H, W, C\)"),
        (np.zeros(4, np.uint8), r"\(H, W\) or \(H, W, C\)"),
        (np.full((2, 2), 1.5), r"in \[0, 1\]"),
        (np.full((2, 2), np.nan), r"in \[0, 1\]"),
        (np.full((2, 2), 300), r"in \[0, 255\]"),
        (np.array([["a"]]), "dtype"),
        (np.zeros((0, 3), np.uint8), "has pixels"),
    ],
)
def test_an_image_is_checked_when_made(value: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Image(value)


@pytest.mark.parametrize(
    ("frames", "fps", "message"),
    [
        (np.zeros((2, 4, 4), np.uint8), 10, r"\(T, H, W, C\)"),
        (np.zeros((2, 4, 4, 2), np.uint8), 10, r"\(T, H, W, C\)"),
        (np.zeros((2, 4, 4, 3), np.uint8), 0, "fps"),
        (np.zeros((2, 4, 4, 3), np.uint8), True, "fps"),
        (np.zeros((0, 4, 4, 3), np.uint8), 10, "has frames"),
    ],
)
def test_a_video_is_checked_when_made(frames: np.ndarray, fps: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Video(frames, fps)


def test_an_image_is_a_copy_the_caller_cannot_change() -> None:
    pixels = rgb_image()
    image = Image(pixels)
    pixels[:] = 0
    assert image.array.max() > 0
    assert not image.array.flags.writeable


@pytest.mark.parametrize("sink_type", [CsvSink, JsonlSink])
def test_file_sinks_write_media_beside_their_file_and_the_path_in_the_row(
    tmp_path: Path, sink_type: type[BufferedFileSink]
) -> None:
    path = tmp_path / ("run.csv" if sink_type is CsvSink else "run.jsonl")
    pixels, grey = rgb_image(), np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    rgba = np.dstack([pixels, np.full(pixels.shape[:2], 128, np.uint8)])
    floats = np.linspace(0.0, 1.0, 12).reshape(3, 4, 1)
    frames = few_colour_frames()
    sink = sink_type(path)
    with Pipeline().to(sink) as logger:
        logger.write({"step": 0, "loss": 0.5})
        logger.write(
            {
                "step": 1,
                "obs": Image(pixels),
                "grey": Image(grey),
                "rgba": Image(rgba),
                "unit": Image(floats),
                "eval/clip": Video(frames, fps=10),
            }
        )
        logger.write({"step": 2, "obs": Image(pixels[::-1])})

    rows = read_rows(path)
    assert [str(row["step"]) for row in rows] == ["0", "1", "2"]
    cells = rows[1]
    assert cells["obs"] == f"{path.name}.media/obs/1.png"
    assert cells["eval/clip"] == f"{path.name}.media/eval/clip/1.gif"
    folder = path.parent
    assert np.array_equal(iio.imread(folder / cells["obs"]), pixels)
    assert np.array_equal(iio.imread(folder / cells["grey"]), grey)
    assert np.array_equal(iio.imread(folder / cells["rgba"]), rgba)
    assert np.array_equal(iio.imread(folder / cells["unit"]), np.rint(floats[..., 0] * 255))
    assert np.array_equal(iio.imread(folder / rows[2]["obs"]), pixels[::-1])
    decoded = iio.imread(folder / cells["eval/clip"], index=None)
    assert np.array_equal(decoded[..., :3], frames)
    assert iio.immeta(folder / cells["eval/clip"])["duration"] == 100  # ms per frame: 10 fps
    assert sink.counts == {}


def read_rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".csv":
        with path.open(newline="") as handle:
            return [dict(row) for row in csv.DictReader(handle)]
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_figure_is_drawn_when_its_row_is_stored(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the plot extra draws figures")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2, 1), dpi=50)
    figure.add_subplot().plot([0, 1], [1, 0])
    image = Image(figure)
    assert repr(image) == "Image(<figure>)"
    with Pipeline().to(CsvSink(tmp_path / "run.csv")) as logger:
        logger.write({"plot": image})
    decoded = iio.imread(tmp_path / "run.csv.media/plot/0.png")
    assert decoded.shape == (50, 100, 4)
    assert np.array_equal(decoded, image.array)
    assert len(np.unique(decoded.reshape(-1, 4), axis=0)) > 1  # a drawing, not a blank


def test_a_batch_with_a_media_column_writes_each_rows_file(tmp_path: Path) -> None:
    images = [Image(np.full((2, 3), value, np.uint8)) for value in (10, 20, 30)]
    with Pipeline().to(JsonlSink(tmp_path / "run.jsonl")) as logger:
        logger.write_batch({"step": np.arange(3), "img": images})
    rows = read_rows(tmp_path / "run.jsonl")
    assert [row["img"] for row in rows] == [f"run.jsonl.media/img/{i}.png" for i in range(3)]
    for row, value in zip(rows, (10, 20, 30), strict=True):
        assert (iio.imread(tmp_path / row["img"]) == value).all()


def test_appending_names_media_by_the_rows_of_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    with Pipeline().to(CsvSink(path)) as first:
        first.write({"img": Image(np.zeros((2, 2), np.uint8))})
        first.write({"img": Image(np.ones((2, 2), np.uint8))})
    with Pipeline().to(CsvSink(path, mode="a")) as second:
        second.write({"img": Image(np.full((2, 2), 7, np.uint8))})
    rows = read_rows(path)
    assert [row["img"] for row in rows] == [f"run.csv.media/img/{i}.png" for i in range(3)]
    assert [int(iio.imread(tmp_path / row["img"])[0, 0]) for row in rows] == [0, 1, 7]


def test_an_odd_key_gets_a_safe_folder_of_its_own(tmp_path: Path) -> None:
    with Pipeline().to(JsonlSink(tmp_path / "run.jsonl")) as logger:
        logger.write(
            {
                "../a b": Image(np.zeros((2, 2), np.uint8)),
                "__/a_b": Image(np.ones((2, 2), np.uint8)),
            }
        )
    row = read_rows(tmp_path / "run.jsonl")[0]
    first, second = row["../a b"], row["__/a_b"]
    assert first != second
    for cell in (first, second):
        target = (tmp_path / cell).resolve()
        assert target.is_relative_to((tmp_path / "run.jsonl.media").resolve())
        assert target.is_file()


def test_without_the_media_extra_the_value_is_dropped_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "PIL.Image", None)  # Pillow not installed
    sink = CsvSink(tmp_path / "run.csv")
    with pytest.warns(UserWarning, match=r"rlpipe\[media\]"), Pipeline().to(sink) as logger:
        logger.write({"step": 1, "img": Image(np.zeros((2, 2), np.uint8))})
        logger.write({"step": 2, "img": Image(np.zeros((2, 2), np.uint8))})
    assert read_rows(tmp_path / "run.csv") == [{"step": "1"}, {"step": "2"}]
    assert sink.counts.by_key["dropped"] == {"img": 2}
    assert not (tmp_path / "run.csv.media").exists() or not any(
        (tmp_path / "run.csv.media").rglob("*.png")
    )


def test_memory_and_terminal_sinks_keep_and_show_media_values() -> None:
    stream = io.StringIO()
    memory = MemorySink()
    image, video = Image(np.zeros((2, 3), np.uint8)), Video(few_colour_frames(2), fps=5)
    with Pipeline().to(memory, TerminalSink(stream=stream)) as logger:
        logger.write({"img": image, "clip": video})
    assert memory.records == [{"img": image, "clip": video}]
    assert stream.getvalue() == "Clip = Video(2x8x6x3, fps=5) | Img = Image(2x3)\n"


@pytest.mark.slow
def test_a_graphs_log_config_reaches_a_tracking_sink_as_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    from sinks.mlflow import MlflowSink

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    sink = MlflowSink(tracking_uri=uri)
    with Pipeline().drop_none().to(sink, MemorySink()) as logger:
        logger.log_config({"opt": {"lr": 0.1}, "env": "CartPole-v1"})
    params = MlflowClient(tracking_uri=uri).get_run(sink.run_id).data.params
    assert params == {"opt/lr": "0.1", "env": "CartPole-v1"}


@pytest.mark.parametrize(
    "value",
    [
        np.float32(1.5),
        np.int64(3),
        np.array(2.0)[()],
        object(),
        Image(np.zeros((1, 1), np.uint8)),
        frozenset({1}),
        b"x",
        1.5,
        "x",
        None,
    ],
)
def test_snapshot_copies_only_the_copied_types(value: Any) -> None:
    # file sinks rely on it: a row's value of another type is held as it is
    from pipeline.core.values import COPIED_TYPES, snapshot

    assert type(value) not in COPIED_TYPES and snapshot(value) is value
    for copied in ({"a": [1]}, np.arange(2), [np.arange(2)], (np.arange(2),)):
        assert type(copied) in COPIED_TYPES and snapshot(copied) is not copied
