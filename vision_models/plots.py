"""Plots for the see stage's diagnostics and the leaderboard, as matplotlib figures.

The see stage's diagnostics:
- bar_plot: one labelled bar per value (KL per latent dimension, in index order).
- factor_response_plot: the mean code of each latent against each factor's class index, a grid of
  small line plots (rows: factors, columns: latents) on one shared value scale.

The leaderboard's comparisons of vision models (one colour per model from matplotlib's colour cycle,
one legend above the data):
- interval_plot: per category (domain), one dot and 95% interval error bar per series, side by side.
- scatter_plot: a grid of small scatter plots, each on its own scales (a metric against a return).
- curves_plot: a grid of small line plots on shared scales (training curves per domain).

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (no global state,
no display: the Agg canvas draws it), to restyle at will; :func:`save_figure` writes one as PNG and
as a vector file (PDF or SVG) beside it.
"""

from __future__ import annotations

import math
import os
import textwrap
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter

from vision_models.metrics.codes import FactorCodes

VECTOR_FORMATS = ("pdf", "svg")
# Files without a date in them, so re-making a figure from the same data gives the same bytes.
_METADATA = {"pdf": {"CreationDate": None}, "svg": {"Date": None}, "png": {}}


def _figure(width: float, height: float) -> Figure:
    """An empty figure (inches) on an Agg canvas, laid out by the constrained layout engine."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: str | Path, vector: str = "pdf", dpi: int = 150) -> list[Path]:
    """Write ``figure`` as ``path`` with suffix .png and with suffix .pdf (or .svg), beside each other.

    Each file is written under a temporary name and renamed, so a reader never sees half a figure.
    Returns the two paths, the PNG first.
    """
    if vector not in VECTOR_FORMATS:
        raise ValueError(f"vector must be one of {VECTOR_FORMATS}; got {vector!r}")
    written = []
    for fmt in ("png", vector):
        target = Path(path).with_suffix(f".{fmt}")
        temporary = target.with_name(f".{target.name}.tmp")
        figure.savefig(temporary, format=fmt, dpi=dpi, metadata=_METADATA[fmt])
        os.replace(temporary, target)
        written.append(target)
    return written


def _colours(names: Sequence[str]) -> dict[str, str]:
    """Each series' colour by its position in ``names``: matplotlib's colour cycle ("C0", "C1", ...)."""
    return {name: f"C{i % 10}" for i, name in enumerate(names)}


def _wrap(text: str, figure: Figure) -> str:
    """``text`` broken into lines that fit the figure's width (at about 9 characters an inch)."""
    return textwrap.fill(text, width=max(20, int(9 * figure.get_figwidth())))


def _legend(figure: Figure, names: Sequence[str], handles: Mapping[str, object], title: str) -> None:
    """One legend above all the axes naming each series once, under the figure's ``title`` (the legend's own)."""
    figure.legend(
        [handles[n] for n in names],
        names,
        loc="outside upper center",
        ncols=min(len(names), 4),
        frameon=False,
        title=_wrap(title, figure) or None,
        title_fontsize="large",
    )


def _no_infinities(values: np.ndarray, what: str) -> None:
    if np.isinf(values).any():
        raise ValueError(f"{what} holds infinite values; expected finite numbers (nan marks a missing value)")


def bar_plot(
    values: Sequence[float] | np.ndarray, labels: Sequence[str] | None = None, title: str = "", ylabel: str = ""
) -> Figure:
    """One bar per value, in the given order, each labelled below (default: its index).

    Bars start at zero, so negative values hang below the zero line; with few bars their values
    are written on them.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"values must be a non-empty 1-D sequence of numbers; got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"values must be finite; got {values.tolist()}")
    labels = [str(i) for i in range(len(values))] if labels is None else [str(s) for s in labels]
    if len(labels) != len(values):
        raise ValueError(f"labels has {len(labels)} entries; expected one per value ({len(values)})")

    figure = _figure(max(4.0, 1.5 + 0.3 * len(values)), 3.6)
    ax = figure.add_subplot()
    bars = ax.bar(np.arange(len(values)), values, color="C0", tick_label=labels)
    if len(values) <= 16:
        ax.bar_label(bars, fmt="{:.3g}", fontsize="small", padding=2)
    if len(values) > 16 or max(len(s) for s in labels) > 4:
        ax.tick_params(axis="x", labelrotation=90)
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    ax.set(title=_wrap(title, figure), ylabel=ylabel, xlim=(-0.6, len(values) - 0.4))
    ax.grid(axis="y", alpha=0.3)
    return figure


def _mean_responses(mean: np.ndarray, factor_sizes: Sequence[int]) -> list[np.ndarray]:
    """Per factor k, the mean code at each of its classes averaged over all other factors: (sizes[k], D)."""
    grid = mean.reshape(*factor_sizes, mean.shape[1])
    axes = range(len(factor_sizes))
    return [grid.mean(axis=tuple(a for a in axes if a != k), dtype=np.float64) for k in axes]


def _most_responsive(curves: list[np.ndarray], count: int) -> list[int]:
    """The ``count`` latents whose mean code moves most along some factor, largest first (ties by index)."""
    spread = np.max([curve.max(axis=0) - curve.min(axis=0) for curve in curves], axis=0)
    return np.argsort(-spread, kind="stable")[:count].tolist()


def _check_latent_order(latent_order: Sequence[int], num_latents: int) -> list[int]:
    order = [int(d) for d in latent_order]
    if not order or len(set(order)) != len(order) or not all(0 <= d < num_latents for d in order):
        raise ValueError(
            f"latent_order must list distinct latent indices in [0, {num_latents}); got {list(latent_order)}"
        )
    return order


def factor_response_plot(
    codes: FactorCodes, latent_order: Sequence[int] | None = None, max_latents: int = 10
) -> Figure:
    """Mean code against each factor's class: rows are factors, columns latents ("z3"), one line per panel.

    Each panel shows one latent's mean code at each class of one factor, averaged over every other
    factor of the grid. A disentangled code reads as one sloped panel per row and per column, flat
    elsewhere. All panels share one value scale, so a latent the encoder barely uses looks flat
    instead of being blown up to fill its panel.

    Latents: those in ``latent_order`` (e.g. the traversal's KL order), else the ones that move
    most along some factor, largest first; at most ``max_latents`` of them.
    """
    names, sizes, mean = tuple(codes.factor_names), tuple(int(s) for s in codes.factor_sizes), np.asarray(codes.mean)
    if len(names) != len(sizes) or not sizes:
        raise ValueError(f"codes has factor_names {names} and factor_sizes {sizes}; expected one name per size")
    if mean.ndim != 2 or mean.shape[0] != int(np.prod(sizes)) or mean.shape[1] == 0:
        raise ValueError(
            f"codes.mean has shape {mean.shape}; expected ({int(np.prod(sizes))}, D) for factor sizes {sizes}"
        )
    if not np.all(np.isfinite(mean)):
        raise ValueError("codes.mean holds non-finite values")
    if max_latents < 1:
        raise ValueError(f"max_latents must be at least 1; got {max_latents}")

    curves = _mean_responses(mean, sizes)
    order = (
        _most_responsive(curves, max_latents)
        if latent_order is None
        else _check_latent_order(latent_order, mean.shape[1])[:max_latents]
    )
    figure = _figure(1.5 + 1.3 * len(order), 1.0 + 1.1 * len(sizes))
    grid = figure.subplots(len(sizes), len(order), sharey=True, squeeze=False)
    for row, (name, size, curve) in enumerate(zip(names, sizes, curves)):
        for column, latent in enumerate(order):
            ax = grid[row, column]
            ax.plot(np.arange(size), curve[:, latent], color=f"C{column % 10}", marker="o", markersize=3)
            ax.set_xticks([0, size - 1] if size > 1 else [0])
            ax.tick_params(labelsize="x-small")
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(f"z{latent}", color=f"C{column % 10}")
            if column == 0:
                ax.set_ylabel(name)
    figure.suptitle(_wrap("Mean code against each factor's class (averaged over the other factors)", figure))
    figure.supxlabel("x: class index of the row's factor    y: mean code, same scale in every panel", fontsize="small")
    return figure


# The leaderboard's comparison plots: one colour per series (vision model), named in a legend above the data.


def _check_intervals(name: str, values: Sequence[tuple[float, float, float]], categories: Sequence[str]) -> np.ndarray:
    """One series' (point, low, high) per category as a (categories, 3) array; a row of nan is a missing value."""
    try:
        table = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"series {name!r} must hold (point, low, high) number triples; {error}") from None
    if table.shape != (len(categories), 3):
        raise ValueError(
            f"series {name!r} has shape {table.shape}; expected one (point, low, high) per category, "
            f"({len(categories)}, 3)"
        )
    for category, (point, low, high) in zip(categories, table):
        missing = np.isnan([point, low, high])
        if missing.all():
            continue
        if missing.any() or np.isinf([point, low, high]).any():
            raise ValueError(
                f"series {name!r}, category {category!r}: (point, low, high) = ({point}, {low}, {high}); "
                f"expected three finite numbers, or three nan for a missing value"
            )
        if not low <= point <= high:
            raise ValueError(
                f"series {name!r}, category {category!r}: (point, low, high) = ({point}, {low}, {high}); "
                f"expected low <= point <= high"
            )
    return table


def interval_plot(
    categories: Sequence[str],
    series: Mapping[str, Sequence[tuple[float, float, float]]],
    title: str = "",
    ylabel: str = "",
    divider: int | None = None,
) -> Figure:
    """Per category, each series' point as a dot on its (low, high) interval error bar, series side by side.

    Made for the leaderboard's return per domain: categories are domains, series vision models,
    each value (IQM, 95% interval low, high). A triple of nan is a missing value and is not drawn.
    ``divider`` = how many leading categories are source domains: a vertical line follows them and
    "source" / "target" name the two sides. The figure widens with categories x series.
    """
    categories = [str(c) for c in categories]
    if not categories:
        raise ValueError("categories must name at least one category")
    if not series:
        raise ValueError("series must map at least one series name to its (point, low, high) per category")
    names = [str(name) for name in series]
    intervals = [_check_intervals(name, values, categories) for name, values in zip(names, series.values())]
    if divider is not None and not 0 <= divider <= len(categories):
        raise ValueError(f"divider must count the leading source categories, in [0, {len(categories)}]; got {divider}")
    if all(np.isnan(table).all() for table in intervals):
        raise ValueError("series hold no value to draw: every (point, low, high) is nan")

    figure = _figure(max(5.0, 1.5 + len(categories) * max(0.5, 0.18 * len(names))), 4.5)
    ax = figure.add_subplot()
    dodge = min(0.15, 0.7 / len(names))  # between neighbouring series in one category, in category units
    colours, handles = _colours(names), {}
    for i, (name, table) in enumerate(zip(names, intervals)):
        shown = ~np.isnan(table[:, 0])
        point, low, high = table[shown].T
        x = np.flatnonzero(shown) + (i - (len(names) - 1) / 2) * dodge
        handles[name] = ax.errorbar(
            x, point, yerr=[point - low, high - point], fmt="o", color=colours[name], capsize=3, label=name
        )
    rotation = 90 if max(len(c) for c in categories) * len(categories) > 60 else 0
    ax.set_xticks(range(len(categories)), categories, rotation=rotation)
    ax.set(xlim=(-0.5, len(categories) - 0.5), ylabel=ylabel)
    ax.grid(axis="y", alpha=0.3)
    if divider is not None:
        if 0 < divider < len(categories):
            ax.axvline(divider - 0.5, color="0.3", linewidth=1)
        for side, start, stop in (("source", -0.5, divider - 0.5), ("target", divider - 0.5, len(categories) - 0.5)):
            if stop > start:
                ax.text((start + stop) / 2, 1.01, side, transform=ax.get_xaxis_transform(), ha="center", color="0.3")
    _legend(figure, names, handles, title)
    return figure


SCATTER_KEYS = ("x", "y", "series", "xlabel", "ylabel", "title")


def _check_scatter_panel(index: int, panel: Mapping) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A scatter panel's x, y (nan: a point not drawn) and series name per point."""
    if not isinstance(panel, Mapping):
        raise ValueError(f"panels[{index}] must be a mapping with keys {SCATTER_KEYS}; got {type(panel).__name__}")
    missing = [key for key in ("x", "y", "series") if key not in panel]
    unknown = [key for key in panel if key not in SCATTER_KEYS]
    if missing or unknown:
        raise ValueError(
            f"panels[{index}] misses keys {missing} / has unknown keys {unknown}; "
            f"expected x, y, series and optionally xlabel, ylabel, title"
        )
    x, y = np.asarray(panel["x"], dtype=float), np.asarray(panel["y"], dtype=float)
    series = [str(name) for name in panel["series"]]
    if x.ndim != 1 or x.shape != y.shape or len(series) != len(x):
        raise ValueError(
            f"panels[{index}]: x, y and series must be flat lists of one length; "
            f"got shapes {x.shape}, {y.shape} and {len(series)} series names"
        )
    _no_infinities(x, f"panels[{index}]['x']")
    _no_infinities(y, f"panels[{index}]['y']")
    return x, y, series


def _panel_grid(figure: Figure, count: int, columns: int, **kwargs) -> list:
    """``count`` axes in rows of ``columns`` (row major); the grid's unused cells are removed."""
    if columns < 1:
        raise ValueError(f"columns must be at least 1; got {columns}")
    columns = min(columns, count)
    grid = figure.subplots(math.ceil(count / columns), columns, squeeze=False, **kwargs).ravel()
    for ax in grid[count:]:
        ax.remove()
    return list(grid[:count])


def scatter_plot(panels: Sequence[Mapping], title: str = "", columns: int = 4) -> Figure:
    """A grid of small scatter plots (row major, ``columns`` per row), one dot per point, coloured by series.

    Each panel is {"x", "y", "series" (one name per point), "xlabel", "ylabel", "title"} and gets
    its own x and y scales (different metrics, different units). A point with a nan coordinate is
    not drawn. Series take colours in first-seen order over all panels, named in one legend; each
    panel holds one point collection per series it has, in that order.
    """
    if not panels:
        raise ValueError("panels must hold at least one panel")
    if columns < 1:
        raise ValueError(f"columns must be at least 1; got {columns}")
    data = [_check_scatter_panel(i, panel) for i, panel in enumerate(panels)]
    names = list(dict.fromkeys(name for _, _, series in data for name in series))
    colours, handles = _colours(names), {}

    shown_columns = min(columns, len(data))
    figure = _figure(0.5 + 3.2 * shown_columns, 0.8 + 2.8 * math.ceil(len(data) / shown_columns))
    for ax, (x, y, series), panel in zip(_panel_grid(figure, len(data), columns), data, panels):
        drawn = np.isfinite(x) & np.isfinite(y)
        for name in names:
            mine = drawn & (np.asarray(series) == name)
            if mine.any():
                handles[name] = ax.scatter(x[mine], y[mine], color=colours[name], s=20, label=name)
        ax.set_title(str(panel.get("title", "")), fontsize="small")
        ax.set(xlabel=str(panel.get("xlabel", "")), ylabel=str(panel.get("ylabel", "")))
        ax.grid(alpha=0.3)
    _legend(figure, [n for n in names if n in handles], handles, title)
    return figure


def _check_curves(
    panel: str, curves: Mapping[str, tuple[np.ndarray, np.ndarray]]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A panel's curves as float arrays, points with a nan left out."""
    if not isinstance(curves, Mapping):
        raise ValueError(f"panel {panel!r} must map series names to (xs, ys); got {type(curves).__name__}")
    checked = {}
    for name, pair in curves.items():
        try:
            xs, ys = (np.asarray(values, dtype=float) for values in pair)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"panel {panel!r}, series {name!r} must be an (xs, ys) pair of number arrays; {error}"
            ) from None
        if xs.ndim != 1 or xs.shape != ys.shape or xs.size == 0:
            raise ValueError(
                f"panel {panel!r}, series {name!r}: xs and ys must be non-empty 1-D arrays of one "
                f"length; got shapes {xs.shape} and {ys.shape}"
            )
        _no_infinities(np.concatenate([xs, ys]), f"panel {panel!r}, series {name!r}")
        kept = ~(np.isnan(xs) | np.isnan(ys))
        checked[str(name)] = (xs[kept], ys[kept])
    return checked


def curves_plot(
    panels: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    columns: int = 3,
) -> Figure:
    """Small multiples of line plots: one panel per key (e.g. a source domain), one line per series in it.

    All panels share one x and one y scale, so heights compare across panels; ``xlabel`` and
    ``ylabel`` stand once for the grid. Series take colours in first-seen order over all panels,
    named in one legend. Points with a nan are left out of their line; a panel without curves says
    "no data". Large x values are written short (200k, 1.5M).
    """
    if not panels:
        raise ValueError("panels must map at least one panel title to its curves")
    if columns < 1:
        raise ValueError(f"columns must be at least 1; got {columns}")
    data = {str(panel): _check_curves(str(panel), curves) for panel, curves in panels.items()}
    names = list(dict.fromkeys(name for curves in data.values() for name in curves))
    xs_all = np.concatenate([xs for curves in data.values() for xs, _ in curves.values()] or [np.empty(0)])
    if xs_all.size == 0:
        raise ValueError("panels hold no point to draw")
    colours, handles = _colours(names), {}

    shown_columns = min(columns, len(data))
    figure = _figure(0.8 + 3.4 * shown_columns, 1.0 + 2.6 * math.ceil(len(data) / shown_columns))
    for ax, (panel, curves) in zip(_panel_grid(figure, len(data), columns, sharex=True, sharey=True), data.items()):
        for name, (xs, ys) in curves.items():
            if xs.size:
                marker = "o" if xs.size <= 30 else None
                (handles[name],) = ax.plot(xs, ys, color=colours[name], marker=marker, markersize=3, label=name)
        if not any(xs.size for xs, _ in curves.values()):
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="0.4")
        ax.set_title(panel, fontsize="small")
        ax.grid(alpha=0.3)
        if np.abs(xs_all).max() >= 1e4:
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    figure.supxlabel(xlabel)
    figure.supylabel(ylabel)
    _legend(figure, [n for n in names if n in handles], handles, title)
    return figure
