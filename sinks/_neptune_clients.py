"""The two Neptune clients behind NeptuneSink: making a run, and sending rows to one.

Nothing here imports a client at import time: a client is imported when a run is made, and a
run the caller made is recognised by the client module it comes from.
"""

from __future__ import annotations

import math
import os
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.media import Image, Video
from pipeline.core.values import text
from sinks._rich import file_of, histogram
from sinks.steps import Step

INSTALL_HINT = "pip install 'rlpipe[neptune]'"

Row = tuple[Step, float, dict[str, float], dict[str, str]]
"""One record as held: (step, unix timestamp, float series, string series), by path."""

Refused = Callable[[str, int, Exception], None]
"""Told (path, number of values, error) when the client refuses a series' values."""

_env_lock = threading.Lock()
_MEDIA = (Image, Video)
_RICH = (np.ndarray, Image, Video)


def neptune_path(*parts: object) -> str:
    """The path Neptune stores a field at, given the parts it is made of: their texts (`str()`,
    or `repr()` for one whose `str()` raises) joined by `/`, split at every `/` and joined
    again without the empty parts, as the 1.x client does (`neptune.internal.utils.paths`):
    `("train", "a//b/")` -> `"train/a/b"`, `("", "/lead")` -> `"lead"`, `(1,)` -> `"1"`.
    `""` when nothing is left: no field."""
    return "/".join(part for part in "/".join(map(text, parts)).split("/") if part)


def import_classic() -> Any:
    """The neptune 1.x client module, or an ImportError naming the extra."""
    try:
        import neptune
    except ImportError as error:
        raise ImportError(
            f"NeptuneSink needs the Neptune client (the `neptune` package): {INSTALL_HINT}"
        ) from error
    return neptune


def import_scale() -> Any:
    """The neptune-scale client module, or an ImportError naming the extra."""
    try:
        import neptune_scale
    except ImportError as error:
        raise ImportError(
            f"NeptuneSink needs the neptune-scale client for a neptune-scale run: {INSTALL_HINT}"
        ) from error
    return neptune_scale


def make_classic_run(
    data_dir: Path,
    mode: str | None,
    project: str | None,
    api_token: str | None,
    name: str | None,
    tags: Iterable[str] | None,
) -> Any:
    """A neptune 1.x run writing under `data_dir`, in `mode` (default `$NEPTUNE_MODE`, else
    offline), with no stdout/stderr/hardware monitoring, git or source-file capture. The
    environment is left as it was."""
    neptune = import_classic()
    # The 1.x client reads its data folder from the environment when the run starts.
    with _env_lock:
        saved = os.environ.get("NEPTUNE_DATA_DIRECTORY")
        os.environ["NEPTUNE_DATA_DIRECTORY"] = str(data_dir)
        try:
            return neptune.init_run(
                project=project,
                api_token=api_token,
                mode=mode or os.environ.get("NEPTUNE_MODE") or "offline",
                name=name,
                tags=list(tags) if tags is not None else None,
                capture_stdout=False,
                capture_stderr=False,
                capture_hardware_metrics=False,
                git_ref=False,
                source_files=[],
            )
        finally:
            if saved is None:
                del os.environ["NEPTUNE_DATA_DIRECTORY"]
            else:
                os.environ["NEPTUNE_DATA_DIRECTORY"] = saved


def make_scale_run(
    mode: str | None,
    project: str | None,
    api_token: str | None,
    data_dir: str | os.PathLike[str] | None,
    name: str | None,
    run_id: str | None,
) -> tuple[Any, Path]:
    """A neptune-scale run and the folder of its database (see `NeptuneSink.scale` for the
    defaults); a ValueError for a mode neptune-scale does not know."""
    neptune_scale = import_scale()
    mode = mode or os.environ.get("NEPTUNE_MODE") or "offline"
    if mode not in ("async", "offline", "disabled"):
        raise ValueError(
            f"mode must be 'async', 'offline' or 'disabled' for neptune-scale, got {mode!r}"
        )
    project = project or os.environ.get("NEPTUNE_PROJECT")
    if project is None and mode != "async":
        project = "rlpipe/offline"
    directory = Path(
        data_dir
        or os.environ.get("NEPTUNE_LOG_DIRECTORY")
        or os.environ.get("NEPTUNE_DATA_DIRECTORY")
        or ".neptune"
    ).absolute()
    run = neptune_scale.Run(
        run_id=run_id,
        project=project,
        api_token=api_token,
        mode=mode,
        experiment_name=name,
        log_directory=directory,
        enable_console_log_capture=False,
        source_tracking_config=None,
    )
    return run, directory


class ClassicRun:
    """Sends rows to a neptune 1.x run: one `extend` per series per push.

    The 1.x client skips NaN and +-inf in float series (with its own warning), so they are
    not sent; steps may be any number. `flush` asks the client to write its queue to disk
    (`wait(disk_only=True)`), never to wait for the network.
    """

    kind = "neptune"
    accepts_non_finite = False
    min_step: float = -math.inf
    max_step: float = math.inf
    max_text = 1000
    """The 1.x client keeps the first 1000 characters of a string series value."""
    cuts_text = True
    """A longer text is stored cut (True), or not stored (False)."""

    def __init__(self, run: Any) -> None:
        self.run = run

    def path_refusal(self, path: str) -> str | None:
        """Why the client refuses a series at `path`, or None."""
        return None

    def text_refusal(self, value: str) -> str | None:
        """Why the client does not store `value` (longer than `max_text`) as it is."""
        return (
            f"neptune 1.x keeps the first {self.max_text} characters of a string series value; "
            f"a text of {len(value)} is stored cut"
        )

    def stored_step(self, step: Step) -> Step:
        """The step the client stores for `step`."""
        return step

    def send(self, rows: list[Row], refused: Refused) -> None:
        columns: dict[str, tuple[list[Any], list[Step], list[float]]] = {}
        for step, stamp, metrics, strings in rows:
            for series in (metrics, strings):
                for path, value in series.items():
                    column = columns.get(path)
                    if column is None:
                        column = columns[path] = ([], [], [])
                    column[0].append(value)
                    column[1].append(step)
                    column[2].append(stamp)
        run = self.run
        done: list[str] = []
        for path, (values, steps, stamps) in columns.items():
            try:
                run[path].extend(values, steps=steps, timestamps=stamps)
            except OSError:  # its disk queue failed, not a refusal: the push is retried
                for _, _, metrics, strings in rows:  # without the series already sent
                    for sent in done:
                        metrics.pop(sent, None)
                        strings.pop(sent, None)
                raise
            except Exception as error:  # a client refusal must not stop the other series
                refused(path, len(values), error)
            done.append(path)

    has_histograms = False

    def send_rich(self, rows: list[Row], refused: Refused) -> None:
        """Appends the images and videos of `rows` (held among their float values) to file
        series, as PNG and animated GIF files, and takes them out of the rows."""
        from neptune.types import File

        run = self.run
        for step, stamp, metrics, _ in rows:
            for path in [path for path, value in metrics.items() if type(value) in _MEDIA]:
                media: Any = metrics[path]
                content, mime = file_of(media)
                try:
                    run[path].append(
                        File.from_content(content, extension=mime.split("/")[1]),
                        step=step,
                        timestamp=stamp,
                    )
                except OSError:  # its disk queue failed: retried (without what was sent)
                    raise
                except Exception as error:
                    refused(path, 1, error)
                del metrics[path]

    def flush(self) -> None:
        self.run.wait(disk_only=True)

    def assign(self, values: Mapping[str, Any]) -> dict[str, str]:
        """Assigns each field on its own; returns the refused ones, each with the client's
        reason (a series holds the path, or a field becomes a namespace or the reverse)."""
        refused: dict[str, str] = {}
        for path, value in values.items():
            try:
                self.run[path] = value
            except Exception as error:  # the client's structural refusal, raised at once
                refused[path] = f"{type(error).__name__}: {str(error).strip()[:200]}"
        return refused

    def add_tags(self, tags: list[str]) -> None:
        self.run["sys/tags"].add(tags)

    def stop(self) -> None:
        self.run.stop()


class ScaleRun:
    """Sends rows to a neptune-scale run: one `log_metrics` (and `log_string_series` when a
    record has strings) per record. The client stores each call in its local SQLite database
    at once (an fsync per call), which is why the sink holds rows and pushes from a thread.

    neptune-scale takes NaN and +-inf as float values and steps in [0, 1e12).
    """

    kind = "neptune-scale"
    accepts_non_finite = True
    min_step: float = 0.0
    max_step: float = 1e12
    max_path_bytes = 1024
    """Paths must be shorter than this, UTF-8 encoded (neptune-scale's MAX_ATTRIBUTE_PATH_LENGTH;
    its client drops a longer one with a log line)."""
    max_text = 1024 * 1024 // 4
    """Texts up to this many characters are surely under `max_text_bytes`."""
    max_text_bytes = 1024 * 1024
    """String series values must be shorter than this, UTF-8 encoded
    (MAX_STRING_SERIES_DATA_POINT_LENGTH; its client drops a longer one with a log line)."""
    cuts_text = False

    def __init__(self, run: Any) -> None:
        self.run = run
        from neptune_scale.sync.metadata_splitter import decompose_step

        self._decompose_step: Callable[[Step], tuple[int, int]] = decompose_step

    def path_refusal(self, path: str) -> str | None:
        if len(path) * 4 < self.max_path_bytes or len(path.encode()) < self.max_path_bytes:
            return None
        return f"neptune-scale paths must be shorter than {self.max_path_bytes} bytes (UTF-8)"

    def text_refusal(self, value: str) -> str | None:
        size = len(value.encode())
        if size < self.max_text_bytes:
            return None
        return (
            f"neptune-scale string values must be shorter than {self.max_text_bytes} bytes "
            f"(UTF-8); one of {size} is not sent"
        )

    def stored_step(self, step: Step) -> Step:
        """The step the client stores: `step` on a grid of microseconds (whole, micro)."""
        whole, micro = self._decompose_step(step)
        return whole + micro / 1_000_000

    def send(self, rows: list[Row], refused: Refused) -> None:
        run = self.run
        for step, stamp, metrics, strings in rows:
            when = datetime.fromtimestamp(stamp)
            for series, log in ((metrics, run.log_metrics), (strings, run.log_string_series)):
                if not series:
                    continue
                try:
                    log(series, step=step, timestamp=when)
                except OSError:  # its database failed, not a refusal: the push is retried
                    raise
                except Exception:  # refused before any was stored: one path at a time
                    for path, value in list(series.items()):
                        try:
                            log({path: value}, step=step, timestamp=when)
                        except OSError:
                            raise
                        except Exception as error:  # the other paths go on
                            refused(path, 1, error)
                        del series[path]
                series.clear()  # sent: a retry after a failure later in the push skips it

    has_histograms = True

    def send_rich(self, rows: list[Row], refused: Refused) -> None:
        """Logs the arrays of `rows` (held among their float values) as histograms
        (`log_histograms`) and their images and videos as file series of PNG and animated
        GIF files (`log_files`), and takes them out of the rows."""
        from neptune_scale.types import File, Histogram

        run = self.run
        for step, stamp, metrics, _ in rows:
            when = datetime.fromtimestamp(stamp)
            for path in [path for path, value in metrics.items() if type(value) in _RICH]:
                value: Any = metrics[path]
                try:
                    if type(value) is np.ndarray:
                        counts, edges = histogram(value)
                        made = {path: Histogram(bin_edges=edges, counts=counts)}
                        run.log_histograms(made, step=step, timestamp=when)
                    else:
                        content, mime = file_of(value)
                        files = {path: File(source=content, mime_type=mime)}
                        run.log_files(files, step=step, timestamp=when)
                except OSError:  # its database failed: retried (without what was sent)
                    raise
                except Exception as error:
                    refused(path, 1, error)
                del metrics[path]

    def flush(self) -> None:
        """Nothing to do: every call is already committed to the local database."""

    def assign(self, values: Mapping[str, Any]) -> dict[str, str]:
        self.run.log_configs(dict(values))
        return {}

    def add_tags(self, tags: list[str]) -> None:
        self.run.add_tags(tags)

    def stop(self) -> None:
        self.run.close()


Backend = ClassicRun | ScaleRun


def backend_for(run: Any) -> Backend:
    """The adapter for a run made by either client, recognised without importing a client."""
    scale = sys.modules.get("neptune_scale")
    if scale is not None and isinstance(run, scale.Run):
        return ScaleRun(run)
    classic = sys.modules.get("neptune")
    if classic is not None and isinstance(run, getattr(classic, "Run", ())):
        return ClassicRun(run)
    raise TypeError(
        "run must be a neptune 1.x Run (neptune.init_run(...)) or a neptune_scale.Run, "
        f"got {type(run).__module__}.{type(run).__qualname__}"
    )
