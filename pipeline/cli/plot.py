"""`rlpipe plot`: learning curves from the files rlpipe's sinks write.

Reads CSV (CsvSink, SB3's progress.csv), JSON Lines (JsonlSink), Spinning Up's tab-separated
`progress.txt`, or a run folder (every `*.csv`, `*.jsonl` and `progress.txt` in it; a folder
holding no such file but sub-folders that do is a set of runs, as Spinning Up's plot utility
treats seeds), and draws one panel per metric:

- the curve: the metric's `_mean` column (else its raw column, else its `_median`) in bold; when
  a smoothed form is shown, the values it smooths are drawn faint underneath;
- smoothing: `--smooth COEFF` (the same warm-up EMA as SmoothingFilter) or `--window N` (a
  trailing moving average) of the curve; without either, a `<key>_smoothed_<coeff>` column
  already in the file is the bold curve over its raw key (a smoothed mean such as
  `<key>_mean_smoothed_<coeff>` or `Average<Key>_smoothed_<coeff>`: over the mean and its band);
- a band: `--band minmax` (from `<key>_min`/`<key>_max`), `--band std` (`<key>_mean` +-
  `<key>_std`), `auto` (the default: min/max if present, else std) or `none`;
- one line per run when several runs are given, in one colour per run across all panels.

Defaults: x is the most step-like column (environment steps before iterations/epochs before
episodes, training counters before evaluation ones; else the row index); y is every metric whose
name contains `return` (or Spinning Up's `EpRet`, SB3's `ep_rew`). Cells that are empty, missing,
not numbers, NaN or infinite are skipped, never fatal; a line torn by a writer that is still
running is ignored. Figures are built with matplotlib's Agg canvas (headless, no pyplot state).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

INSTALL_HINT = "pip install 'rlpipe[plot]'"

DEFAULT_Y = r"(?i)return|EpRet|ep_rew"
"""The metrics plotted when no `--y` is given (searched in column names)."""

BAND_MODES = ("auto", "minmax", "std", "none")

DATA_SUFFIXES = (".csv", ".jsonl", ".ndjson")
SPINUP_NAME = "progress.txt"

# -- reading files ---------------------------------------------------------------------------


@dataclass
class Table:
    """One file's numeric columns, in file order; NaN marks a missing or non-numeric cell."""

    path: Path
    columns: dict[str, np.ndarray]
    rows: int

    @property
    def label(self) -> str:
        """The file's name without its suffix ("train" for train.csv)."""
        return self.path.name.split(".")[0] if self.path.name != SPINUP_NAME else "progress"


def is_data_file(path: Path) -> bool:
    """Whether `path` names a file `rlpipe plot`/`tail` read in a run folder."""
    return not path.name.startswith(".") and (
        path.suffix.lower() in DATA_SUFFIXES or path.name == SPINUP_NAME
    )


def run_files(folder: Path) -> list[Path]:
    """The data files directly inside `folder`: `train.*` first, then the others by name;
    hidden files (such as CsvSink's temporary `.train.csv.rewrite`) are skipped."""
    files = (p for p in folder.iterdir() if p.is_file() and is_data_file(p))
    return sorted(files, key=lambda p: (p.name.split(".")[0] != "train", p.name))


def file_format(path: Path) -> str:
    """The file's format, "csv", "tsv" or "jsonl": by suffix, else by its first line."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    if suffix in (".txt", ".tsv"):
        return "tsv"
    with path.open(encoding="utf-8", errors="replace") as handle:
        first = handle.readline()
    if first.lstrip().startswith("{"):
        return "jsonl"
    return "tsv" if "\t" in first else "csv"


def complete_text(path: Path) -> str:
    """The file's text up to its last line break: a line still being written is left out.
    A UTF-8 byte-order mark (spreadsheet programs write one) is dropped."""
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    end = text.rfind("\n")
    return text[: end + 1] if end >= 0 else ""


def flatten(record: Mapping[str, Any], prefix: str = "", sep: str = "/") -> dict[str, Any]:
    """Nested mappings as one level, keys joined by `sep` ({"a": {"b": 1}} -> {"a/b": 1})."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + sep, sep))
        else:
            flat[name] = value
    return flat


def to_number(value: Any) -> float:
    """A cell or JSON value as a float; NaN when it is empty, missing or not a number."""
    if type(value) is float:
        return value
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return math.nan
    return math.nan


def _column(cells: Sequence[Any]) -> np.ndarray:
    try:  # the fast path: every cell is a number's text
        return np.asarray(cells, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        return np.fromiter((to_number(c) for c in cells), dtype=np.float64, count=len(cells))


def read_delimited(text: str, delimiter: str) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of CSV (or tab-separated) text; empty lines are skipped."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [name.strip() for name in next(reader, [])]
    rows = [row for row in reader if row]
    return header, rows


def read_table(path: str | os.PathLike[str]) -> Table:
    """Reads a CSV, JSONL or Spinning Up progress.txt file into numeric columns.

    A torn last line, blank lines and JSON lines that do not parse are skipped. A CSV row with
    fewer cells than the header leaves the rest missing. Columns with no number at all are
    dropped (text, JSON lists)."""
    path = Path(path)
    text = complete_text(path)
    kind = file_format(path)
    names: list[str]
    cells: dict[str, Sequence[Any]]
    if kind == "jsonl":
        records = []
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, Mapping):
                records.append(flatten(value))
        names = list(dict.fromkeys(key for record in records for key in record))
        cells = {name: [record.get(name) for record in records] for name in names}
        count = len(records)
    else:
        header, rows = read_delimited(text, "\t" if kind == "tsv" else ",")
        names = list(dict.fromkeys(header))
        width = len(header)
        if any(len(row) != width for row in rows):
            rows = [row[:width] + [""] * (width - len(row)) for row in rows]
        transposed = list(zip(*rows, strict=True)) if rows else [() for _ in header]
        cells = {name: transposed[header.index(name)] for name in names}
        count = len(rows)
    columns: dict[str, np.ndarray] = {}
    for name in names:
        values = _column(cells[name])
        if count and not np.all(np.isnan(values)):
            columns[name] = values
    return Table(path, columns, count)


# -- choosing x and y ------------------------------------------------------------------------

_STEP_RANKS: tuple[tuple[re.Pattern[str], int], ...] = (
    # environment steps (Acme steps/actor_steps, SB3 total_timesteps, RLlib
    # num_env_steps_sampled_lifetime, Spinning Up TotalEnvInteracts)
    (re.compile(r"(^|_)(steps?|timesteps?)(_total|_sampled|_sampled_lifetime|_lifetime)?$"), 0),
    (re.compile(r"^num_env_steps\w*$|envinteracts$"), 0),
    # iterations and epochs
    (re.compile(r"(^|_)(training_iteration|iterations?|iters?|epochs?|updates?)$"), 1),
    # episodes
    (re.compile(r"(^|_)episodes?(_total|_lifetime)?$"), 2),
)
_EVAL_PREFIX = re.compile(r"^(eval|evaluation|evaluator|test)(uation)?[_/]?", re.IGNORECASE)


def step_rank(name: str) -> tuple[int, int] | None:
    """How step-like a column name is (lower is more), or None when it is not a step count:
    environment steps < iterations/epochs < episodes, and a counter of the evaluation loop
    (`eval_steps`) after one of training (`train_steps`, `steps`)."""
    last = name.rsplit("/", 1)[-1].lower()
    for pattern, rank in _STEP_RANKS:
        if pattern.search(last):
            return rank, 1 if _EVAL_PREFIX.match(last) or _EVAL_PREFIX.match(name) else 0
    return None


def is_counter(values: np.ndarray) -> bool:
    """Whether a column counts up: its finite values never decrease and (given two or more)
    end higher than they start. A per-iteration count such as RLlib's constant
    `env_runners/num_env_steps_sampled` is not a counter; its `_lifetime` twin is."""
    finite = values[np.isfinite(values)]
    if len(finite) < 2:
        return True
    return bool(np.all(np.diff(finite) >= 0)) and bool(finite[-1] > finite[0])


def default_x(table: Table) -> str | None:
    """The most step-like numeric column of the table: a counter (`is_counter`) before a
    column that does not count up, then by `step_rank` (ties: the first in file order)."""
    ranked = [
        (not is_counter(table.columns[name]), rank, position, name)
        for position, name in enumerate(table.columns)
        if (rank := step_rank(name)) is not None
    ]
    return min(ranked)[3] if ranked else None


_STAT_SUFFIX = re.compile(r"^(?P<base>.+?)[_/](?P<stat>mean|std|median|min|max)$")
_SPINUP_PREFIX = re.compile(r"^(?P<stat>Average|Std|Max|Min)(?P<base>[A-Z]\w*)$")
_SMOOTHED = re.compile(r"^(?P<base>.+)_smoothed(_(?P<coeff>[0-9.eE+-]+))?$")
_SPINUP_STATS = {"Average": "mean", "Std": "std", "Max": "max", "Min": "min"}


def split_name(name: str) -> tuple[str, str]:
    """(metric, form) of a column name: form is "raw", "smoothed", or a statistic (mean, std,
    median, min, max) written as rlpipe's aggregates do (`episode_return_mean`), as RLlib does
    (`env_runners/episode_return_mean`) or as Spinning Up does (`AverageEpRet`).

    A smoothed mean (`episode_return_mean_smoothed_0.9`, `AverageEpRet_smoothed_0.9`: smoothing
    after an aggregate) is the smoothed form of the metric itself, so that it is drawn over
    the mean and its band; a smoothed min, max, std or median is a metric of its own."""
    match = _SMOOTHED.match(name)
    if match:
        base, form = split_name(match["base"])
        return (base, "smoothed") if form == "mean" else (match["base"], "smoothed")
    match = _STAT_SUFFIX.match(name)
    if match:
        return match["base"], match["stat"]
    match = _SPINUP_PREFIX.match(name)
    if match:
        return match["base"], _SPINUP_STATS[match["stat"]]
    return name, "raw"


@dataclass
class Metric:
    """The columns of one metric in one table: raw/mean/median/smoothed forms and statistics."""

    name: str
    forms: dict[str, str] = field(default_factory=dict)  # form -> column (first one seen)

    @property
    def curve(self) -> str | None:
        """The column drawn as the metric's curve: mean, else raw, else median, else smoothed."""
        for form in ("mean", "raw", "median", "smoothed"):
            if form in self.forms:
                return self.forms[form]
        return None


def metrics_of(columns: Iterable[str]) -> dict[str, Metric]:
    """Every metric of a table, keyed by its name, in first-seen order."""
    found: dict[str, Metric] = {}
    for column in columns:
        base, form = split_name(column)
        found.setdefault(base, Metric(base)).forms.setdefault(form, column)
    return found


def select_metrics(table: Table, specs: Sequence[str], x_key: str | None) -> list[Metric]:
    """The metrics of `table` that `specs` name, in table order. A spec is an exact column name
    (a curve form brings its whole metric: mean, band and all; a statistic such as
    `episode_return_max` is plotted on its own), an exact metric name, or else a regular
    expression searched in column names. Step-like columns are never y."""
    columns = [c for c in table.columns if c != x_key and step_rank(c) is None]
    metrics = metrics_of(columns)
    chosen: dict[str, Metric] = {}
    for spec in specs:
        if spec in table.columns and spec in columns:
            base, form = split_name(spec)
            if form in ("raw", "mean", "median", "smoothed"):
                chosen.setdefault(base, metrics[base])
            else:
                chosen.setdefault(spec, Metric(spec, {"raw": spec}))
        elif spec in metrics:
            chosen.setdefault(spec, metrics[spec])
        else:
            try:
                pattern = re.compile(spec)
            except re.error as error:
                raise ValueError(
                    f"--y {spec!r} is not a column, metric or regex: {error}"
                ) from None
            for column in columns:
                if pattern.search(column):
                    base = split_name(column)[0]
                    chosen.setdefault(base, metrics[base])
    result: list[Metric] = []
    for metric in sorted(chosen.values(), key=lambda m: _first_position(m, columns)):
        if metric.curve is not None:
            result.append(metric)
        else:  # only statistics without a centre (e.g. a lone `_std`): each on its own
            result.extend(Metric(c, {"raw": c}) for c in metric.forms.values())
    return result


def _first_position(metric: Metric, columns: list[str]) -> int:
    return min(columns.index(c) for c in metric.forms.values())


# -- smoothing -------------------------------------------------------------------------------


def ema(values: np.ndarray, coeff: float) -> np.ndarray:
    """SmoothingFilter's warm-up EMA over the finite values (c_0 = 0; s_t = (1-c_t) x_t +
    c_t s_{t-1}; c_{t+1} = 0.9 c_t + 0.1 coeff); non-finite entries are skipped and stay NaN."""
    if not 0 <= coeff < 1:
        raise ValueError(f"the smoothing coefficient must be in [0, 1), got {coeff!r}")
    out = np.full(len(values), np.nan)
    c = 0.0
    s = 0.0
    for i, x in enumerate(values.tolist()):
        if x - x != 0:  # NaN or inf
            continue
        s = x if c == 0.0 else (1.0 - c) * x + c * s
        c = 0.9 * c + 0.1 * coeff
        out[i] = s
    return out


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """The mean of the last `window` finite values up to each finite entry (fewer at the
    start); non-finite entries are skipped and stay NaN."""
    if window < 1:
        raise ValueError(f"the window must be >= 1, got {window!r}")
    out = np.full(len(values), np.nan)
    finite = np.isfinite(values)
    kept = values[finite]
    sums = np.concatenate(([0.0], np.cumsum(kept)))
    ends = np.arange(1, len(kept) + 1)
    starts = np.maximum(ends - window, 0)
    out[finite] = (sums[ends] - sums[starts]) / (ends - starts)
    return out


# -- curves ----------------------------------------------------------------------------------


@dataclass
class Run:
    """One run: a name and its tables."""

    name: str
    tables: list[Table]


@dataclass
class Curve:
    """What is drawn for one metric of one table of one run. Arrays hold only the rows where
    x and the drawn value are finite, in file order."""

    run: str
    panel: str
    x_key: str
    x: np.ndarray
    y_key: str  # the bold curve's column, or e.g. "EMA 0.9 of episode_return"
    y: np.ndarray
    raw_key: str | None = None  # the faint values under a smoothed curve
    raw_x: np.ndarray | None = None
    raw: np.ndarray | None = None
    band_kind: str | None = None  # "minmax" or "std"
    band_keys: tuple[str, str] | None = None  # (min, max) or (mean, std) columns
    band_x: np.ndarray | None = None
    band_low: np.ndarray | None = None
    band_high: np.ndarray | None = None


def _finite(x: np.ndarray, *ys: np.ndarray) -> tuple[np.ndarray, ...]:
    keep = np.isfinite(x)
    for y in ys:
        keep &= np.isfinite(y)
    return (x[keep], *(y[keep] for y in ys))


def make_curve(
    run: str,
    panel: str,
    table: Table,
    metric: Metric,
    x_key: str | None,
    *,
    smooth: float | None = None,
    window: int | None = None,
    band: str = "auto",
) -> Curve | None:
    """The curve of `metric` in `table` (None when it has no finite point)."""
    columns = table.columns
    x = columns[x_key] if x_key is not None else np.arange(table.rows, dtype=np.float64)
    label = x_key if x_key is not None else "row"
    centre = metric.curve
    assert centre is not None
    values = columns[centre]
    raw_key: str | None = None
    raw: np.ndarray | None = None
    if smooth is not None or window is not None:
        raw_key, raw = centre, values
        if smooth is not None:
            y_key, y = f"EMA {smooth:g} of {centre}", ema(values, smooth)
        else:
            assert window is not None
            y_key, y = f"mean of last {window} {centre}", moving_average(values, window)
    elif "smoothed" in metric.forms and centre != metric.forms["smoothed"]:
        raw_key, raw = centre, values
        y_key = metric.forms["smoothed"]
        y = columns[y_key]
    else:
        y_key, y = centre, values
    cx, cy = _finite(x, y)
    if not len(cx):
        return None
    curve = Curve(run, panel, label, cx, y_key, cy)
    if raw is not None and raw_key is not None:
        curve.raw_key = raw_key
        curve.raw_x, curve.raw = _finite(x, raw)
    chosen = band_columns(metric, band)
    if chosen is not None:
        kind, first, second = chosen
        if kind == "std":
            low, high = columns[first] - columns[second], columns[first] + columns[second]
        else:
            low, high = columns[first], columns[second]
        bx, blow, bhigh = _finite(x, low, high)
        if len(bx):
            curve.band_kind, curve.band_keys = kind, (first, second)
            curve.band_x, curve.band_low, curve.band_high = bx, blow, bhigh
    return curve


def band_columns(metric: Metric, band: str) -> tuple[str, str, str] | None:
    """The metric's band in mode `band`: ("minmax", min column, max column) or ("std", mean
    column, std column); None when the mode is "none" or the columns are missing ("auto"
    prefers min/max)."""
    forms = metric.forms
    if band in ("auto", "minmax") and "min" in forms and "max" in forms:
        return "minmax", forms["min"], forms["max"]
    if band in ("auto", "std") and "mean" in forms and "std" in forms:
        return "std", forms["mean"], forms["std"]
    return None


def load_runs(paths: Sequence[str | os.PathLike[str]]) -> list[Run]:
    """The runs the arguments name: a file is a run of one table; a folder with data files is
    a run of all of them; a folder without is searched for sub-folders that have some, each a
    run. Runs are named by their path relative to the arguments' common folder."""
    found: list[tuple[Path, list[Path]]] = []
    for given in paths:
        path = Path(given)
        if path.is_file():
            found.append((path, [path]))
        elif path.is_dir():
            files = run_files(path)
            if files:
                found.append((path, files))
                continue
            subfolders = sorted(
                {p.parent for p in path.rglob("*") if p.is_file() and is_data_file(p)} - {path}
            )
            visible = [d for d in subfolders if not any(part.startswith(".") for part in d.parts)]
            if not visible:
                raise FileNotFoundError(f"{path}: no .csv, .jsonl or progress.txt file in it")
            found.extend((d, run_files(d)) for d in visible)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    names = run_names([p for p, _ in found])
    return [
        Run(name, [read_table(f) for f in files])
        for name, (_, files) in zip(names, found, strict=True)
    ]


def run_names(paths: Sequence[Path]) -> list[str]:
    """Short distinct names: the paths relative to their common folder (the last part for a
    single path)."""
    if len(paths) == 1:
        return [paths[0].name or str(paths[0])]
    absolute = [p.resolve() for p in paths]
    common = Path(os.path.commonpath(absolute))
    names = [str(p.relative_to(common)) if p != common else p.name for p in absolute]
    return names if len(set(names)) == len(names) else [str(p) for p in paths]


def make_curves(
    runs: Sequence[Run],
    *,
    x: str | None = None,
    y: Sequence[str] = (),
    smooth: float | None = None,
    window: int | None = None,
    band: str = "auto",
) -> list[Curve]:
    """Every curve to draw, grouped by panel in first-seen order. A panel is a metric (prefixed
    by the table's label when a run has several tables, e.g. "eval: episode_return")."""
    if smooth is not None and window is not None:
        raise ValueError("give --smooth or --window, not both")
    if band not in BAND_MODES:
        raise ValueError(f"band must be one of {BAND_MODES}, got {band!r}")
    specs = list(y) or [DEFAULT_Y]
    curves: list[Curve] = []
    for run in runs:
        several = len(run.tables) > 1
        for table in run.tables:
            if not table.rows:
                continue
            if x is None:
                x_key = default_x(table)
            elif x in table.columns:
                x_key = x
            else:
                print(
                    f"rlpipe plot: {table.path} has no numeric column {x!r}; using the row index",
                    file=sys.stderr,
                )
                x_key = None
            for metric in select_metrics(table, specs, x_key):
                panel = f"{table.label}: {metric.name}" if several else metric.name
                curve = make_curve(
                    run.name, panel, table, metric, x_key, smooth=smooth, window=window, band=band
                )
                if curve is not None:
                    curves.append(curve)
    order = list(dict.fromkeys(c.panel for c in curves))
    return sorted(curves, key=lambda c: order.index(c.panel))


# -- drawing ---------------------------------------------------------------------------------


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(f"`rlpipe plot` needs matplotlib: {INSTALL_HINT} ({error})") from error
    return matplotlib


def draw(curves: Sequence[Curve], *, title: str | None = None, dpi: float = 100) -> Figure:
    """A Figure with one panel per metric and, in each, one curve per run.

    Artists carry gids for inspection: "curve:<run>" (the bold Line2D), "raw:<run>" (the faint
    Line2D) and "band:<run>" (the band's PolyCollection); each Axes' gid is its panel name."""
    _matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = list(dict.fromkeys(c.panel for c in curves))
    runs = list(dict.fromkeys(c.run for c in curves))
    several = len(runs) > 1
    figure = Figure(figsize=(8.0, max(3.2, 3.0 * len(panels))), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    axes: list[Axes] = list(figure.subplots(len(panels), 1, squeeze=False)[:, 0]) if panels else []
    for ax, panel in zip(axes, panels, strict=True):
        ax.set_gid(panel)
        chosen = [c for c in curves if c.panel == panel]
        for curve in chosen:
            _draw_curve(ax, curve, f"C{runs.index(curve.run) % 10}", several)
        ax.set_title(panel)
        ax.set_xlabel(" / ".join(dict.fromkeys(c.x_key for c in chosen)))
        ax.set_ylabel(panel.split(": ", 1)[-1])
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small", frameon=False)
    if title:
        figure.suptitle(title)
    return figure


def _draw_curve(ax: Axes, curve: Curve, color: str, several: bool) -> None:
    if curve.band_x is not None and curve.band_keys is not None:
        band_label = "mean ± std" if curve.band_kind == "std" else "min..max"
        if curve.band_low is not None and curve.band_high is not None:
            band = ax.fill_between(
                curve.band_x,
                curve.band_low,
                curve.band_high,
                color=color,
                alpha=0.2,
                linewidth=0,
                label="_nolegend_" if several else band_label,
            )
            band.set_gid(f"band:{curve.run}")
    if curve.raw_x is not None and curve.raw is not None:
        (raw,) = ax.plot(
            curve.raw_x,
            curve.raw,
            color=color,
            alpha=0.3,
            linewidth=0.8,
            label="_nolegend_" if several else curve.raw_key,
        )
        raw.set_gid(f"raw:{curve.run}")
    (line,) = ax.plot(
        curve.x,
        curve.y,
        color=color,
        linewidth=2.0,
        marker="o" if len(curve.x) <= 30 else None,
        markersize=3,
        label=curve.run if several else curve.y_key,
    )
    line.set_gid(f"curve:{curve.run}")


def figure(
    paths: Sequence[str | os.PathLike[str]],
    *,
    x: str | None = None,
    y: Sequence[str] = (),
    smooth: float | None = None,
    window: int | None = None,
    band: str = "auto",
    title: str | None = None,
) -> Figure:
    """The learning-curve Figure of the runs at `paths` (see the module's docstring)."""
    curves = make_curves(load_runs(paths), x=x, y=y, smooth=smooth, window=window, band=band)
    if not curves:
        raise ValueError("nothing to plot: no column matches --y with a finite value")
    return draw(curves, title=title)


def default_output(paths: Sequence[str | os.PathLike[str]]) -> Path:
    """Where the picture goes without `--out`: `<file without suffix>.png` next to a file,
    `curves.png` inside a folder, and `curves.png` in the common folder of several paths."""
    given = [Path(p) for p in paths]
    if len(given) == 1:
        (only,) = given
        if only.is_dir():
            return only / "curves.png"
        return only.with_name(only.name.split(".")[0] + ".png")
    folders = [p if p.is_dir() else p.parent for p in given]
    return Path(os.path.commonpath([f.resolve() for f in folders])) / "curves.png"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The options of `rlpipe plot`."""
    parser = argparse.ArgumentParser(
        prog="rlpipe plot",
        description="Draw learning curves (PNG) from CSV/JSONL files, Spinning Up progress.txt "
        "files or run folders written by rlpipe's sinks. Several runs: one line per run.",
    )
    parser.add_argument("paths", nargs="+", metavar="RUN_OR_FILE", help="files or run folders")
    parser.add_argument(
        "--x", default=None, metavar="KEY", help="the x column (default: the most step-like)"
    )
    parser.add_argument(
        "--y",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY",
        help="columns, metric names or regexes to plot (default: every 'return' metric); "
        "give it after the runs, or repeat --y",
    )
    smoothing = parser.add_mutually_exclusive_group()
    smoothing.add_argument(
        "--smooth", type=float, default=None, metavar="COEFF", help="EMA coefficient in [0, 1)"
    )
    smoothing.add_argument(
        "--window", type=int, default=None, metavar="N", help="trailing moving average of N"
    )
    parser.add_argument(
        "--band",
        choices=BAND_MODES,
        default="auto",
        help="band around the curve: min..max or mean±std columns (default: auto)",
    )
    parser.add_argument(
        "--out", default=None, metavar="FILE.png", help="the PNG to write (default: next to input)"
    )
    parser.add_argument("--title", default=None, help="the figure's title")
    parser.add_argument("--dpi", type=float, default=100.0, help="resolution (100)")
    args = parser.parse_args(list(argv))
    if args.smooth is not None and not 0 <= args.smooth < 1:
        parser.error("--smooth must be in [0, 1)")
    if args.window is not None and args.window < 1:
        parser.error("--window must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Runs `rlpipe plot`; returns the exit status (0 written, 2 nothing to plot / bad input)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        runs = load_runs(args.paths)
        curves = make_curves(
            runs, x=args.x, y=args.y, smooth=args.smooth, window=args.window, band=args.band
        )
    except (OSError, ValueError) as error:
        print(f"rlpipe plot: {error}", file=sys.stderr)
        return 2
    if not curves:
        available = sorted({c for run in runs for t in run.tables for c in t.columns})
        wanted = " ".join(args.y) if args.y else f"the default {DEFAULT_Y!r}"
        print(
            f"rlpipe plot: nothing to plot: no numeric column matches {wanted}; "
            f"columns: {', '.join(available) or '(none)'}",
            file=sys.stderr,
        )
        return 2
    out = Path(args.out) if args.out else default_output(args.paths)
    fig = draw(curves, title=args.title, dpi=args.dpi)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    panels = len(dict.fromkeys(c.panel for c in curves))
    runs_drawn = len(dict.fromkeys(c.run for c in curves))
    print(
        f"wrote {out} ({panels} panel{'s' * (panels != 1)}, {runs_drawn} run"
        f"{'s' * (runs_drawn != 1)})"
    )
    return 0


__all__ = [
    "Curve",
    "Metric",
    "Run",
    "Table",
    "default_output",
    "default_x",
    "draw",
    "ema",
    "figure",
    "is_counter",
    "load_runs",
    "main",
    "make_curves",
    "moving_average",
    "read_table",
    "run_files",
    "select_metrics",
    "split_name",
    "step_rank",
]
