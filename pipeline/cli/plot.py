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
not numbers, NaN or infinite are skipped, never fatal, and so are numbers beyond +-1e300, which
matplotlib cannot lay out an axis for; a line torn by a writer that is still running is ignored.
Names are drawn as they are: escape sequences escaped, `$` not read as math, cut to 80
characters. Figures are built with matplotlib's Agg canvas (headless, no pyplot state).

The figure's title is `--title`, else the file, run folder (with its files) or runs drawn. A
smoothed curve's legend says how far it trails the raw values (an EMA of 0.99 averages about
the last 100 points), so that the lag does not read as slow learning.

Errors (`pipeline.cli.errors`) are one line on stderr: bad input (a missing or unreadable
path, a file given by name that is not a run file, a folder without run files, nothing to
plot) exit status 2; matplotlib missing (checked before any file is read) or a picture that
cannot be written (`--out` in a folder that does not exist: the folder is not created),
status 1.

The files are read by `pipeline.cli.runfiles`; the curves, as data, come from
`pipeline.cli.curves`; this module draws them and runs the command.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.cli.curves import BAND_MODES, DEFAULT_Y, Curve, Run, load_runs, make_curves
from pipeline.cli.errors import DEBUG_HELP, FAILED, describe, fail, install_hint, printable

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

INSTALL_HINT = install_hint("plot")

PROG = "rlpipe plot"

AXIS_LIMIT = 1e300
"""Values beyond +-AXIS_LIMIT are not drawn: matplotlib cannot lay out an axis around them."""

LABEL_LIMIT = 80
"""Names in the picture are cut to this many characters."""

TITLE_LIMIT = 200
"""The figure's title is cut to this many characters."""

MAX_PIXELS = 2**16 - 1
"""Agg draws at most this many pixels each way; a figure of many panels is squeezed to fit."""


# -- drawing ---------------------------------------------------------------------------------


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(f"`rlpipe plot` needs matplotlib: {INSTALL_HINT} ({error})") from error
    return matplotlib


def _label(name: str, limit: int = LABEL_LIMIT) -> str:
    """A name as matplotlib draws it as it is: `printable`, cut, `$` escaped (not math)."""
    return printable(name, limit).replace("$", r"\$")


def _drawable(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """The points (one per index across `arrays`) with every value within +-AXIS_LIMIT."""
    keep = np.ones(len(arrays[0]), dtype=bool)
    for values in arrays:
        keep &= np.abs(values) <= AXIS_LIMIT
    return tuple(values[keep] for values in arrays)


def draw(curves: Sequence[Curve], *, title: str | None = None, dpi: float = 100) -> Figure:
    """A Figure with one panel per metric and, in each, one curve per run.

    Artists carry gids for inspection: "curve:<run>" (the bold Line2D), "raw:<run>" (the faint
    Line2D) and "band:<run>" (the band's PolyCollection); each Axes' gid is its panel name.
    Texts are `_label`s; points beyond +-AXIS_LIMIT are left out."""
    _matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = list(dict.fromkeys(c.panel for c in curves))
    runs = list(dict.fromkeys(c.run for c in curves))
    several = len(runs) > 1
    height = min(max(3.2, 3.0 * len(panels)), MAX_PIXELS / dpi)
    figure = Figure(figsize=(8.0, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    axes: list[Axes] = list(figure.subplots(len(panels), 1, squeeze=False)[:, 0]) if panels else []
    for ax, panel in zip(axes, panels, strict=True):
        ax.set_gid(panel)
        chosen = [c for c in curves if c.panel == panel]
        for curve in chosen:
            _draw_curve(ax, curve, f"C{runs.index(curve.run) % 10}", several)
        ax.set_title(_label(panel))
        ax.set_xlabel(_label(" / ".join(dict.fromkeys(c.x_key for c in chosen))))
        ax.set_ylabel(_label(panel.split(": ", 1)[-1]))
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # not when every label starts with "_"
            ax.legend(loc="best", fontsize="small", frameon=False)
    if title:
        figure.suptitle(_label(title, TITLE_LIMIT))
    return figure


def _draw_curve(ax: Axes, curve: Curve, color: str, several: bool) -> None:
    if curve.band_x is not None and curve.band_keys is not None:
        band_label = "mean ± std" if curve.band_kind == "std" else "min..max"
        if curve.band_low is not None and curve.band_high is not None:
            x, low, high = _drawable(curve.band_x, curve.band_low, curve.band_high)
            band = ax.fill_between(
                x,
                low,
                high,
                color=color,
                alpha=0.2,
                linewidth=0,
                label="_nolegend_" if several else band_label,
            )
            band.set_gid(f"band:{curve.run}")
    if curve.raw_x is not None and curve.raw is not None:
        (raw,) = ax.plot(
            *_drawable(curve.raw_x, curve.raw),
            color=color,
            alpha=0.3,
            linewidth=0.8,
            label="_nolegend_" if several else _label(curve.raw_key or ""),
        )
        raw.set_gid(f"raw:{curve.run}")
    label = _label(curve.run if several else curve.y_key)
    if curve.smoothing is not None:
        label += f"\n({curve.smoothing})"
    (line,) = ax.plot(
        *_drawable(curve.x, curve.y),
        color=color,
        linewidth=2.0,
        marker="o" if len(curve.x) <= 30 else None,
        markersize=3,
        label=label,
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
    runs = load_runs(paths)
    curves = make_curves(runs, x=x, y=y, smooth=smooth, window=window, band=band)
    if not curves:
        raise ValueError("nothing to plot: no column matches --y with a finite value")
    return draw(curves, title=title or default_title(runs))


# -- the command -----------------------------------------------------------------------------


def default_title(runs: Sequence[Run]) -> str:
    """The figure's title without `--title`: the file drawn, the run folder and its files, or
    the runs."""
    if len(runs) == 1:
        files = [table.path for table in runs[0].tables]
        if len(files) == 1:
            return str(files[0])
        return f"{files[0].parent} ({', '.join(f.name for f in files)})"
    return f"{len(runs)} runs: {', '.join(run.name for run in runs)}"


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
        prog=PROG,
        description="Draw learning curves (PNG) from CSV/JSONL files, Spinning Up progress.txt "
        "files or run folders written by rlpipe's sinks. Several runs: one line per run.",
        epilog=DEBUG_HELP,
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
    parser.add_argument(
        "--title", default=None, help="the figure's title (default: the files or runs drawn)"
    )
    parser.add_argument("--dpi", type=float, default=100.0, help="resolution (100, at most 1000)")
    args = parser.parse_args(list(argv))
    if args.smooth is not None and not 0 <= args.smooth < 1:
        parser.error("--smooth must be in [0, 1)")
    if args.window is not None and args.window < 1:
        parser.error("--window must be >= 1")
    if not 0 < args.dpi <= 1000:
        parser.error("--dpi must be in (0, 1000]")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Runs `rlpipe plot`; returns the exit status: 0 written; 2 bad input or nothing to plot;
    1 a picture that cannot be written (one line on stderr). Raises ImportError (naming the
    extra) without matplotlib."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    _matplotlib()
    if args.out is not None and not Path(args.out).parent.is_dir():
        folder = Path(args.out).parent
        reason = "is not a folder" if folder.exists() else "does not exist"
        return fail(PROG, f"cannot write {args.out}: {folder} {reason}", FAILED)
    try:
        runs = load_runs(args.paths)
        curves = make_curves(
            runs, x=args.x, y=args.y, smooth=args.smooth, window=args.window, band=args.band
        )
    except OSError as error:
        return fail(PROG, describe(error))
    except ValueError as error:
        return fail(PROG, str(error))
    if not curves:
        available = sorted({c for run in runs for t in run.tables for c in t.columns})
        wanted = " ".join(args.y) if args.y else f"the default {DEFAULT_Y!r}"
        columns = ", ".join(printable(c, LABEL_LIMIT) for c in available) or "(none)"
        return fail(
            PROG, f"nothing to plot: no numeric column matches {wanted}; columns: {columns}"
        )
    out = Path(args.out) if args.out else default_output(args.paths)
    fig = draw(curves, title=args.title or default_title(runs), dpi=args.dpi)
    try:
        fig.savefig(out)
    except OSError as error:
        return fail(PROG, f"cannot write {out}: {error.strerror or error}", FAILED)
    panels = len(dict.fromkeys(c.panel for c in curves))
    runs_drawn = len(dict.fromkeys(c.run for c in curves))
    print(
        f"wrote {out} ({panels} panel{'s' * (panels != 1)}, {runs_drawn} run"
        f"{'s' * (runs_drawn != 1)})"
    )
    return 0


__all__ = ["default_output", "default_title", "draw", "figure", "main", "parse_args"]
