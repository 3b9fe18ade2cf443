"""Plots for the see stage's diagnostics and the leaderboard, drawn with OpenCV as uint8 RGB arrays (H, W, 3).

The see stage's diagnostics:
- bar_plot: one labelled bar per value (KL per latent dimension, in index order).
- factor_response_plot: the mean code of each latent against each factor's class index, a grid of
  small line plots (rows: factors, columns: latents) on one shared value scale.

The leaderboard's comparisons of vision models (one colour per model, one legend above the data):
- interval_plot: per category (domain), one dot and 95% interval whisker per series, side by side.
- scatter_plot: a grid of small scatter plots, each on its own scales (a metric against a return).
- curves_plot: a grid of small line plots on one shared value scale (training curves per domain).

All draw through `_Axes` (data-to-pixel mapping, frame, ticks, bars, lines, dots, whiskers), so the
figures share one look. The caller saves them with `darla.images.save_png`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import cv2
import numpy as np

from vision_models.metrics.codes import FactorCodes

FONT = cv2.FONT_HERSHEY_SIMPLEX
BLACK = (0, 0, 0)
AXIS = (90, 90, 90)
GRID = (228, 228, 228)
WHITE = 255
# Ten well-separated colours (the "tab10" palette); a latent's colour is its column's position.
PALETTE = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)
TICK_SCALE = 0.4
LABEL_SCALE = 0.45
TITLE_SCALE = 0.55
DOT_RADIUS = 4
CAP_HALF_WIDTH = 3  # an interval whisker's end caps reach this far either side of it
LEGEND_MARK = 5  # radius of a legend entry's coloured dot
LEGEND_GAP = 18  # between legend entries
LEGEND_ROW = 20  # height of one legend row
DODGE_STEP = 14  # between the dots of neighbouring series in one category, where the width allows
MIN_BOX_HEIGHT = 200  # interval_plot grows taller rather than squeeze its data under long labels


def _text_size(text: str, scale: float) -> tuple[int, int]:
    """(width, height above the baseline) of ``text`` in pixels."""
    (width, height), _ = cv2.getTextSize(text, FONT, scale, 1)
    return width, height


def _put_text(
    canvas: np.ndarray,
    text: str,
    x: float,
    y: float,
    scale: float = TICK_SCALE,
    colour: tuple[int, int, int] = BLACK,
    ha: str = "left",
    va: str = "baseline",
) -> None:
    """Draw ``text`` anchored at (x, y): ha in left/center/right, va in baseline/center/top."""
    width, height = _text_size(text, scale)
    x -= {"left": 0, "center": width / 2, "right": width}[ha]
    y += {"baseline": 0, "center": height / 2, "top": height}[va]
    cv2.putText(canvas, text, (round(x), round(y)), FONT, scale, colour, 1, cv2.LINE_AA)


def _put_text_vertical(canvas: np.ndarray, text: str, x: float, y: float, scale: float = TICK_SCALE) -> None:
    """Draw black ``text`` reading bottom to top, centred at (x, y); used where labels are too long to lie flat."""
    width, height = _text_size(text, scale)
    patch = np.full((height + 6, width + 2, 3), WHITE, np.uint8)
    cv2.putText(patch, text, (1, height + 1), FONT, scale, BLACK, 1, cv2.LINE_AA)
    patch = np.ascontiguousarray(np.rot90(patch))  # counter-clockwise: the text now reads upwards
    top, left = round(y - patch.shape[0] / 2), round(x - patch.shape[1] / 2)
    region = canvas[top : top + patch.shape[0], left : left + patch.shape[1]]
    # Darkest-wins pasting keeps whatever is already drawn under the patch's white background.
    np.minimum(region, patch[: region.shape[0], : region.shape[1]], out=region)


def _nice_ticks(low: float, high: float, target: int = 5) -> np.ndarray:
    """Round tick values (steps of 1, 2 or 5 times a power of ten) covering [low, high]."""
    if not high > low:
        low, high = low - 0.5, high + 0.5
    raw = (high - low) / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return np.arange(first, last + 1) * step


def _tick_label(value: float, ticks: np.ndarray) -> str:
    """``value`` with as many decimals as the tick step needs (0.5 -> "0.5", 20 -> "20")."""
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    text = f"{value:.{decimals}f}"
    return "0" if float(text) == 0 else text  # no "-0.0"


def _short_tick_label(value: float, ticks: np.ndarray) -> str:
    """Like _tick_label, in thousands ("200k") once ticks reach 10,000 and millions ("1.5M") once they reach 10^6."""
    largest = float(np.abs(ticks).max())
    for unit, suffix, start in ((1e6, "M", 1e6), (1e3, "k", 1e4)):
        if largest >= start:
            text = _tick_label(value / unit, np.asarray(ticks) / unit)
            return text if text == "0" else text + suffix
    return _tick_label(value, ticks)


@dataclass
class _Axes:
    """A plotting box on a canvas (pixel edges, inclusive) and the data ranges it shows."""

    left: int
    top: int
    right: int
    bottom: int
    x_range: tuple[float, float]
    y_range: tuple[float, float]

    def px(self, x) -> np.ndarray:
        low, high = self.x_range
        return self.left + (np.asarray(x, float) - low) / (high - low) * (self.right - self.left)

    def py(self, y) -> np.ndarray:
        low, high = self.y_range
        return self.bottom - (np.asarray(y, float) - low) / (high - low) * (self.bottom - self.top)

    def grid_and_y_ticks(self, canvas: np.ndarray, ticks: np.ndarray, labels: bool = True) -> None:
        """Light horizontal grid lines at ``ticks``; their labels left of the box if ``labels``."""
        for value in ticks:
            y = round(float(self.py(value)))
            cv2.line(canvas, (self.left, y), (self.right, y), GRID, 1)
            if labels:
                cv2.line(canvas, (self.left - 4, y), (self.left, y), AXIS, 1)
                _put_text(canvas, _tick_label(value, ticks), self.left - 7, y, ha="right", va="center")

    def frame(self, canvas: np.ndarray, full: bool = False) -> None:
        """The value and category axes (left and bottom edges), or the whole box if ``full``."""
        if full:
            cv2.rectangle(canvas, (self.left, self.top), (self.right, self.bottom), AXIS, 1)
        else:
            cv2.line(canvas, (self.left, self.top), (self.left, self.bottom), AXIS, 1)
            cv2.line(canvas, (self.left, self.bottom), (self.right, self.bottom), AXIS, 1)

    def bar(self, canvas: np.ndarray, x: float, width: float, value: float, colour: tuple[int, int, int]) -> None:
        """A bar centred on data x, ``width`` pixels wide, from 0 to ``value``."""
        y0, y1 = sorted((round(float(self.py(0.0))), round(float(self.py(value)))))
        x0 = round(float(self.px(x)) - width / 2)
        cv2.rectangle(canvas, (x0, y0), (x0 + max(round(width), 1) - 1, y1), colour, cv2.FILLED)

    def line(self, canvas: np.ndarray, xs: np.ndarray, ys: np.ndarray, colour: tuple[int, int, int]) -> None:
        """A polyline through the points; dots mark them where they are far enough apart to see."""
        shift = 4  # sub-pixel coordinates (1/16 px) keep antialiased lines smooth
        points = np.stack([self.px(xs), self.py(ys)], axis=1)
        fixed = np.round(points * (1 << shift)).astype(np.int32)
        cv2.polylines(canvas, [fixed], False, colour, 2, cv2.LINE_AA, shift)
        if len(points) == 1 or (self.right - self.left) / (len(points) - 1) >= 10:
            for point in fixed:
                cv2.circle(canvas, tuple(int(c) for c in point), 3 << shift, colour, cv2.FILLED, cv2.LINE_AA, shift)

    def grid_and_x_ticks(self, canvas: np.ndarray, ticks: np.ndarray) -> None:
        """Light vertical grid lines at ``ticks``, their labels under the box."""
        for value in ticks:
            x = round(float(self.px(value)))
            cv2.line(canvas, (x, self.top), (x, self.bottom), GRID, 1)
            cv2.line(canvas, (x, self.bottom), (x, self.bottom + 4), AXIS, 1)
            _put_text(canvas, _short_tick_label(value, ticks), x, self.bottom + 7, ha="center", va="top")

    def dot(self, canvas: np.ndarray, x: float, y: float, colour: tuple[int, int, int]) -> None:
        """A filled dot centred on the data point (x, y)."""
        shift = 4  # sub-pixel centre: dodged dots keep their exact offsets
        centre = (round(float(self.px(x)) * (1 << shift)), round(float(self.py(y)) * (1 << shift)))
        cv2.circle(canvas, centre, DOT_RADIUS << shift, colour, cv2.FILLED, cv2.LINE_AA, shift)

    def whisker(self, canvas: np.ndarray, x: float, low: float, high: float, colour: tuple[int, int, int]) -> None:
        """A vertical error bar at data x from ``low`` to ``high``, capped at both ends."""
        column = round(float(self.px(x)))
        y_low, y_high = round(float(self.py(low))), round(float(self.py(high)))
        cv2.line(canvas, (column, y_low), (column, y_high), colour, 1)
        for y in (y_low, y_high):
            cv2.line(canvas, (column - CAP_HALF_WIDTH, y), (column + CAP_HALF_WIDTH, y), colour, 1)


def bar_plot(
    values: Sequence[float] | np.ndarray,
    labels: Sequence[str] | None = None,
    title: str = "",
    ylabel: str = "",
    width: int = 800,
    height: int = 360,
) -> np.ndarray:
    """One bar per value, in the given order, each labelled below (default: its index).

    Bars start at zero, so negative values hang below the zero line. Labels that do not fit under
    their bar stand vertical; the values are printed above the bars where every one fits.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"values must be a non-empty 1-D sequence of numbers; got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"values must be finite; got {values.tolist()}")
    labels = [str(i) for i in range(len(values))] if labels is None else [str(s) for s in labels]
    if len(labels) != len(values):
        raise ValueError(f"labels has {len(labels)} entries; expected one per value ({len(values)})")

    ticks = _nice_ticks(min(0.0, values.min()), max(0.0, values.max()))
    tick_width = max(_text_size(_tick_label(t, ticks), TICK_SCALE)[0] for t in ticks)
    left = 12 + (_text_size("Ag", LABEL_SCALE)[1] + 10 if ylabel else 0) + tick_width + 8
    right = width - 14
    slot = (right - left) / len(values)
    label_width = max(_text_size(s, TICK_SCALE)[0] for s in labels)
    label_height = _text_size("0", TICK_SCALE)[1]
    flat_labels = label_width + 4 <= slot
    bottom = height - 10 - (label_height + 8 if flat_labels else label_width + 10)
    top = 14 + (_text_size(title, TITLE_SCALE)[1] + 12 if title else 0) + label_height
    if bottom - top < 40:
        raise ValueError(f"height {height} leaves no room to draw bars under labels {label_width} px long")

    canvas = np.full((height, width, 3), WHITE, np.uint8)
    axes = _Axes(left, top, right, bottom, (-0.5, len(values) - 0.5), (float(ticks[0]), float(ticks[-1])))
    axes.grid_and_y_ticks(canvas, ticks)
    bar_width = max(1.0, 0.7 * slot)
    value_texts = [f"{value:.3g}" for value in values]
    # All bars get their value printed or none does, so a missing number never looks like a missing bar.
    print_values = max(_text_size(text, TICK_SCALE)[0] for text in value_texts) + 2 <= slot
    for i, (value, label, text) in enumerate(zip(values, labels, value_texts)):
        axes.bar(canvas, i, bar_width, value, PALETTE[0])
        x = float(axes.px(i))
        if print_values:
            y = float(axes.py(value))
            _put_text(
                canvas,
                text,
                x,
                y - 4 if value >= 0 else y + 4,
                TICK_SCALE,
                AXIS,
                ha="center",
                va="baseline" if value >= 0 else "top",
            )
        if flat_labels:
            _put_text(canvas, label, x, bottom + 6, ha="center", va="top")
        else:
            _put_text_vertical(canvas, label, x, bottom + 6 + label_width / 2)
    axes.frame(canvas)
    zero = round(float(axes.py(0.0)))
    cv2.line(canvas, (left, zero), (right, zero), AXIS, 1)
    if title:
        _put_text(canvas, title, (left + right) / 2, 10, TITLE_SCALE, ha="center", va="top")
    if ylabel:
        _put_text_vertical(canvas, ylabel, 10 + _text_size("Ag", LABEL_SCALE)[1] / 2, (top + bottom) / 2, LABEL_SCALE)
    return canvas


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
    codes: FactorCodes,
    latent_order: Sequence[int] | None = None,
    max_latents: int = 10,
    panel_width: int = 104,
    panel_height: int = 72,
) -> np.ndarray:
    """Mean code against each factor's class: rows are factors, columns latents ("z3"), one line per panel.

    Each panel shows one latent's mean code at each class of one factor, averaged over every other
    factor of the grid. A disentangled code reads as one sloped panel per row and per column, flat
    elsewhere. All panels share one value scale, so a latent the encoder barely uses looks flat
    instead of being blown up to fill its panel; small multiples rather than overlaid lines keep
    every latent's curve readable however many are shown.

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
    shown = np.concatenate([curve[:, order] for curve in curves])
    ticks = _nice_ticks(float(shown.min()), float(shown.max()), target=3)

    # Layout, left to right: factor name, value tick labels, panels; top to bottom: title, latent names, rows.
    tick_height = _text_size("0", TICK_SCALE)[1]
    name_width = max(_text_size(n, LABEL_SCALE)[0] for n in names)
    tick_width = max(_text_size(_tick_label(t, ticks), TICK_SCALE)[0] for t in ticks)
    gap_x, gap_y = 10, tick_height + 22  # room under each panel for its class tick labels
    left0 = 10 + name_width + 10 + tick_width + 8
    top0 = 12 + _text_size("A", TITLE_SCALE)[1] + 12 + _text_size("z0", LABEL_SCALE)[1] + 10
    width = left0 + len(order) * (panel_width + gap_x) + 4
    caption = "x: class index of the row's factor    y: mean code, same scale in every panel"
    height = top0 + len(sizes) * (panel_height + gap_y) + tick_height + 14
    width = max(width, _text_size(caption, TICK_SCALE)[0] + 20)

    canvas = np.full((height, width, 3), WHITE, np.uint8)
    title = "Mean code against each factor's class (averaged over the other factors)"
    _put_text(canvas, title, 10, 12, TITLE_SCALE, va="top")
    for column, latent in enumerate(order):
        x = left0 + column * (panel_width + gap_x) + panel_width / 2
        _put_text(canvas, f"z{latent}", x, top0 - 8, LABEL_SCALE, PALETTE[column % len(PALETTE)], ha="center")
    for row, (name, size, curve) in enumerate(zip(names, sizes, curves)):
        top = top0 + row * (panel_height + gap_y)
        _put_text(canvas, name, 10, top + panel_height / 2, LABEL_SCALE, va="center")
        classes = np.arange(size)
        for column, latent in enumerate(order):
            left = left0 + column * (panel_width + gap_x)
            axes = _Axes(
                left,
                top,
                left + panel_width,
                top + panel_height,
                (0.0, float(max(size - 1, 1))),
                (float(ticks[0]), float(ticks[-1])),
            )
            axes.grid_and_y_ticks(canvas, ticks, labels=column == 0)
            axes.frame(canvas, full=True)
            axes.line(canvas, classes, curve[:, latent], PALETTE[column % len(PALETTE)])
            below = top + panel_height + 4
            _put_text(canvas, "0", left, below, ha="left", va="top")
            if size > 1:
                _put_text(canvas, str(size - 1), left + panel_width, below, ha="right", va="top")
    _put_text(canvas, caption, 10, height - 8, TICK_SCALE, AXIS)
    return canvas


# The leaderboard's comparison plots: one colour per series (vision model), named in a legend above the data.


def _series_colours(names: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """Each series' colour, by its position in ``names`` (after ten series the palette repeats)."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def _legend_entry_width(name: str) -> int:
    return 2 * LEGEND_MARK + 6 + _text_size(name, LABEL_SCALE)[0]


def _legend_rows(names: Sequence[str], max_width: float) -> list[list[str]]:
    """The legend's entries wrapped into rows at most ``max_width`` px wide (a longer name gets a row of its own)."""
    rows: list[list[str]] = [[]]
    used = 0
    for name in names:
        entry = _legend_entry_width(name)
        if rows[-1] and used + LEGEND_GAP + entry > max_width:
            rows.append([])
            used = 0
        used += (LEGEND_GAP if rows[-1] else 0) + entry
        rows[-1].append(name)
    return rows


def _draw_legend(
    canvas: np.ndarray, rows: list[list[str]], colours: Mapping[str, tuple[int, int, int]], left: float, top: float
) -> None:
    """A coloured dot and the name of each series, row by row from (left, top)."""
    for index, row in enumerate(rows):
        y = top + index * LEGEND_ROW + LEGEND_ROW / 2
        x = left
        for name in row:
            cv2.circle(canvas, (round(x + LEGEND_MARK), round(y)), LEGEND_MARK, colours[name], cv2.FILLED, cv2.LINE_AA)
            _put_text(canvas, name, x + 2 * LEGEND_MARK + 6, y, LABEL_SCALE, va="center")
            x += _legend_entry_width(name) + LEGEND_GAP


def _header_height(title: str, legend_rows: list[list[str]]) -> int:
    """Pixels above the plots taken by the title and the legend."""
    return 12 + (_text_size(title, TITLE_SCALE)[1] + 12 if title else 0) + len(legend_rows) * LEGEND_ROW + 6


def _draw_header(
    canvas: np.ndarray,
    title: str,
    legend_rows: list[list[str]],
    colours: Mapping[str, tuple[int, int, int]],
    legend_left: float,
) -> None:
    """The title centred on the figure, the legend under it from ``legend_left``."""
    top = 12
    if title:
        _put_text(canvas, title, canvas.shape[1] / 2, top, TITLE_SCALE, ha="center", va="top")
        top += _text_size(title, TITLE_SCALE)[1] + 12
    _draw_legend(canvas, legend_rows, colours, legend_left, top)


def _fit_text(text: str, scale: float, max_width: float) -> tuple[str, float]:
    """``text`` and a font scale at which it fits ``max_width`` px: smaller type first, then cut short with ".."."""
    while scale > 0.34 and _text_size(text, scale)[0] > max_width:
        scale -= 0.05
    if _text_size(text, scale)[0] > max_width:
        while len(text) > 1 and _text_size(text + "..", scale)[0] > max_width:
            text = text[:-1]
        text += ".."
    return text, scale


@dataclass
class _Scale:
    """An axis's data range and the round tick values inside it."""

    low: float
    high: float
    ticks: np.ndarray


def _data_scale(values: np.ndarray, target: int, margin: float = 0.04) -> _Scale:
    """The finite ``values``' range widened by ``margin`` of it each way, and at least two round ticks inside it.

    The margin keeps dots at the extremes inside the box. Unlike bar_plot's, the range ends at the
    data, not at a tick: coarse round ticks would otherwise leave much of a small box empty.
    """
    shown = values[np.isfinite(values)]
    low, high = (float(shown.min()), float(shown.max())) if shown.size else (0.0, 1.0)
    if not high > low:
        low, high = low - 0.5, high + 0.5
    low, high = low - margin * (high - low), high + margin * (high - low)
    while True:  # two ticks at least, so a tick label shows the step's decimals
        ticks = _nice_ticks(low, high, target)
        inside = ticks[(ticks >= low) & (ticks <= high)]
        if len(inside) >= 2:
            return _Scale(low, high, inside)
        target += 1


def _no_infinities(values: np.ndarray, what: str) -> None:
    if np.isinf(values).any():
        raise ValueError(f"{what} holds infinite values; expected finite numbers (nan marks a missing value)")


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
    width: int | None = None,
    height: int = 420,
) -> np.ndarray:
    """Per category, each series' point as a dot on its (low, high) interval whisker, series side by side.

    Made for the leaderboard's return per domain: categories are domains, series vision models,
    each value (IQM, 95% interval low, high). A triple of nan is a missing value and is not drawn.
    ``divider`` = how many leading categories are source domains: a vertical line follows them and
    "source" / "target" name the two sides. The default width grows with categories x series so
    dots never overlap; ``height`` grows where long (vertical) category labels would leave the
    data less than MIN_BOX_HEIGHT px.
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
    everything = np.concatenate(intervals)
    if np.isnan(everything).all():
        raise ValueError("series hold no value to draw: every (point, low, high) is nan")
    scale = _data_scale(everything, target=5)
    colours = _series_colours(names)

    # Layout, left to right: ylabel, tick labels, one slot per category; top to bottom: title, legend,
    # "source"/"target", the box, category labels.
    label_height = _text_size("Ag", LABEL_SCALE)[1]
    tick_height = _text_size("0", TICK_SCALE)[1]
    tick_width = max(_text_size(_tick_label(t, scale.ticks), TICK_SCALE)[0] for t in scale.ticks)
    left = 12 + (label_height + 10 if ylabel else 0) + tick_width + 8
    if width is None:
        width = max(
            left + len(categories) * max(36, len(names) * DODGE_STEP + 28) + 14,
            _text_size(title, TITLE_SCALE)[0] + 24,
            360,
        )
    right = width - 14
    slot = (right - left) / len(categories)
    if slot < 3 * len(names) + 4:
        raise ValueError(
            f"width {width} leaves {slot:.1f} px per category; {len(names)} series need at least "
            f"{3 * len(names) + 4} (leave width out to size the figure to the data)"
        )
    dodge = min(DODGE_STEP, 0.75 * slot / len(names)) / slot  # in category units; the rest parts the categories
    legend_rows = _legend_rows(names, right - left)
    top = _header_height(title, legend_rows) + (tick_height + 10 if divider is not None else 0) + tick_height // 2
    label_width = max(_text_size(c, TICK_SCALE)[0] for c in categories)
    flat_labels = label_width + 4 <= slot
    label_space = tick_height + 8 if flat_labels else label_width + 16
    height = max(height, top + MIN_BOX_HEIGHT + label_space + 10)
    bottom = height - 10 - label_space

    canvas = np.full((height, width, 3), WHITE, np.uint8)
    axes = _Axes(left, top, right, bottom, (-0.5, len(categories) - 0.5), (scale.low, scale.high))
    axes.grid_and_y_ticks(canvas, scale.ticks)
    for boundary in range(1, len(categories)):  # faint lines part the categories' groups of dots
        x = round(float(axes.px(boundary - 0.5)))
        cv2.line(canvas, (x, top), (x, bottom), GRID, 1)
    for i, table in enumerate(intervals):
        offset = (i - (len(names) - 1) / 2) * dodge
        for category, (point, low, high) in enumerate(table):
            if not np.isnan(point):
                axes.whisker(canvas, category + offset, low, high, colours[names[i]])
                axes.dot(canvas, category + offset, point, colours[names[i]])
    for category, label in enumerate(categories):
        x = float(axes.px(category))
        if flat_labels:
            _put_text(canvas, label, x, bottom + 6, ha="center", va="top")
        else:
            _put_text_vertical(
                canvas, label, x, bottom + 6 + _text_size(label, TICK_SCALE)[0] / 2
            )  # hangs from the axis
    if divider is not None:
        split = float(axes.px(divider - 0.5))
        if 0 < divider < len(categories):
            cv2.line(canvas, (round(split), top - tick_height - 8), (round(split), bottom), AXIS, 1)
        for side, start, stop in (("source", left, split), ("target", split, right)):
            if stop - start > 1:
                _put_text(canvas, side, (start + stop) / 2, top - 6, TICK_SCALE, AXIS, ha="center")
    axes.frame(canvas)
    _draw_header(canvas, title, legend_rows, colours, left)
    if ylabel:
        _put_text_vertical(canvas, ylabel, 10 + label_height / 2, (top + bottom) / 2, LABEL_SCALE)
    return canvas


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


def scatter_plot(
    panels: Sequence[Mapping], title: str = "", columns: int = 4, panel_width: int = 260, panel_height: int = 200
) -> np.ndarray:
    """A grid of small scatter plots (row major, ``columns`` per row), one dot per point, coloured by series.

    Each panel is {"x", "y", "series" (one name per point), "xlabel", "ylabel", "title"} and gets
    its own x and y scales (different metrics, different units). A point with a nan coordinate is
    not drawn. Series take colours in first-seen order over all panels, named in one legend.
    ``panel_width`` x ``panel_height`` is one panel with its title, ticks and axis labels.
    """
    if not panels:
        raise ValueError("panels must hold at least one panel")
    if columns < 1:
        raise ValueError(f"columns must be at least 1; got {columns}")
    data = [_check_scatter_panel(i, panel) for i, panel in enumerate(panels)]
    names = list(dict.fromkeys(name for _, _, series in data for name in series))
    colours = _series_colours(names)

    # Inside a panel, left to right: ylabel, y tick labels, box; top to bottom: title, box, x tick labels, xlabel.
    label_height = _text_size("Ag", LABEL_SCALE)[1]
    tick_height = _text_size("0", TICK_SCALE)[1]
    box_top = label_height + 12
    box_bottom = panel_height - (tick_height + 10) - (label_height + 10)
    if box_bottom - box_top < 40:
        raise ValueError(
            f"panel_height {panel_height} leaves {box_bottom - box_top} px for the data; "
            f"expected at least {box_top + 40 + panel_height - box_bottom}"
        )
    y_scales = [_data_scale(y, target=max(3, (box_bottom - box_top) // 30)) for _, y, _ in data]
    tick_width = max(_text_size(_tick_label(t, scale.ticks), TICK_SCALE)[0] for scale in y_scales for t in scale.ticks)
    box_left = 4 + label_height + 10 + tick_width + 8
    box_right = panel_width - 14
    if box_right - box_left < 40:
        raise ValueError(
            f"panel_width {panel_width} leaves {box_right - box_left} px for the data next to "
            f"tick labels {tick_width} px wide; expected at least {box_left + 40 + 14}"
        )
    x_scales = [_data_scale(x, target=max(3, (box_right - box_left) // 60)) for x, _, _ in data]

    shown_columns = min(columns, len(data))
    rows = math.ceil(len(data) / shown_columns)
    width = max(10 + shown_columns * panel_width, _text_size(title, TITLE_SCALE)[0] + 24)
    legend_rows = _legend_rows(names, width - 20)
    top0 = _header_height(title, legend_rows)
    canvas = np.full((top0 + rows * panel_height + 6, width, 3), WHITE, np.uint8)
    for index, ((x, y, series), panel, x_scale, y_scale) in enumerate(zip(data, panels, x_scales, y_scales)):
        left = 10 + (index % shown_columns) * panel_width
        top = top0 + (index // shown_columns) * panel_height
        axes = _Axes(
            left + box_left,
            top + box_top,
            left + box_right,
            top + box_bottom,
            (x_scale.low, x_scale.high),
            (y_scale.low, y_scale.high),
        )
        axes.grid_and_y_ticks(canvas, y_scale.ticks)
        axes.grid_and_x_ticks(canvas, x_scale.ticks)
        axes.frame(canvas, full=True)
        for px, py, name in zip(x, y, series):
            if np.isfinite(px) and np.isfinite(py):
                axes.dot(canvas, px, py, colours[name])
        centre, box_width = (axes.left + axes.right) / 2, axes.right - axes.left
        text, scale = _fit_text(str(panel.get("title", "")), LABEL_SCALE, box_width)
        _put_text(canvas, text, centre, top + 4, scale, ha="center", va="top")
        text, scale = _fit_text(str(panel.get("xlabel", "")), LABEL_SCALE, box_width)
        _put_text(canvas, text, centre, axes.bottom + tick_height + 16, scale, ha="center", va="top")
        text, scale = _fit_text(str(panel.get("ylabel", "")), LABEL_SCALE, box_bottom - box_top)
        if text:
            _put_text_vertical(canvas, text, left + 4 + label_height / 2, (axes.top + axes.bottom) / 2, scale)
    _draw_header(canvas, title, legend_rows, colours, 10)
    return canvas


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
    panel_width: int = 300,
    panel_height: int = 200,
) -> np.ndarray:
    """Small multiples of line plots: one panel per key (e.g. a source domain), one line per series in it.

    All panels share one x and one y scale, so heights compare across panels; y tick labels stand
    left of each row, x tick labels under every panel, ``xlabel`` and ``ylabel`` once for the grid.
    Series take colours in first-seen order over all panels, named in one legend. Points with a nan
    are left out of their line; a panel without curves is drawn empty. ``panel_width`` x
    ``panel_height`` is one panel with its title and x tick labels.
    """
    if not panels:
        raise ValueError("panels must map at least one panel title to its curves")
    if columns < 1:
        raise ValueError(f"columns must be at least 1; got {columns}")
    data = {str(panel): _check_curves(str(panel), curves) for panel, curves in panels.items()}
    names = list(dict.fromkeys(name for curves in data.values() for name in curves))
    xs_all = np.concatenate([xs for curves in data.values() for xs, _ in curves.values()] or [np.empty(0)])
    ys_all = np.concatenate([ys for curves in data.values() for _, ys in curves.values()] or [np.empty(0)])
    if xs_all.size == 0:
        raise ValueError("panels hold no point to draw")
    colours = _series_colours(names)

    # Inside a panel, top to bottom: title, box, x tick labels; a gap on its right.
    label_height = _text_size("Ag", LABEL_SCALE)[1]
    tick_height = _text_size("0", TICK_SCALE)[1]
    box_top, box_bottom, box_width = label_height + 12, panel_height - (tick_height + 16), panel_width - 30
    if box_bottom - box_top < 40 or box_width < 40:
        raise ValueError(
            f"panel_width {panel_width} x panel_height {panel_height} leaves a {box_width} x "
            f"{box_bottom - box_top} px box for the data; expected at least 40 x 40"
        )
    x_scale = _data_scale(xs_all, target=max(3, box_width // 70), margin=0.0)  # lines may end at the box's sides
    y_scale = _data_scale(ys_all, target=max(3, (box_bottom - box_top) // 30))
    tick_width = max(_text_size(_tick_label(t, y_scale.ticks), TICK_SCALE)[0] for t in y_scale.ticks)
    left0 = 12 + (label_height + 10 if ylabel else 0) + tick_width + 8

    shown_columns = min(columns, len(data))
    rows = math.ceil(len(data) / shown_columns)
    width = max(left0 + shown_columns * panel_width, _text_size(title, TITLE_SCALE)[0] + 24)
    legend_rows = _legend_rows(names, width - left0 - 10)
    top0 = _header_height(title, legend_rows)
    grid_bottom = top0 + rows * panel_height
    canvas = np.full((grid_bottom + (label_height + 14 if xlabel else 4), width, 3), WHITE, np.uint8)
    for index, (panel, curves) in enumerate(data.items()):
        left = left0 + (index % shown_columns) * panel_width
        top = top0 + (index // shown_columns) * panel_height
        axes = _Axes(
            left,
            top + box_top,
            left + box_width,
            top + box_bottom,
            (x_scale.low, x_scale.high),
            (y_scale.low, y_scale.high),
        )
        axes.grid_and_y_ticks(canvas, y_scale.ticks, labels=index % shown_columns == 0)
        axes.grid_and_x_ticks(canvas, x_scale.ticks)
        axes.frame(canvas, full=True)
        for name, (xs, ys) in curves.items():
            if xs.size:
                axes.line(canvas, xs, ys, colours[name])
        if not any(xs.size for xs, _ in curves.values()):
            _put_text(
                canvas,
                "no data",
                left + box_width / 2,
                (axes.top + axes.bottom) / 2,
                TICK_SCALE,
                AXIS,
                ha="center",
                va="center",
            )
        text, scale = _fit_text(panel, LABEL_SCALE, box_width)
        _put_text(canvas, text, left + box_width / 2, top + 4, scale, ha="center", va="top")
    _draw_header(canvas, title, legend_rows, colours, left0)
    if xlabel:
        _put_text(
            canvas, xlabel, left0 + shown_columns * panel_width / 2, grid_bottom + 4, LABEL_SCALE, ha="center", va="top"
        )
    if ylabel:
        _put_text_vertical(canvas, ylabel, 10 + label_height / 2, (top0 + grid_bottom) / 2, LABEL_SCALE)
    return canvas
