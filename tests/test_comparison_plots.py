"""The leaderboard's comparison plots: measured on their pixels, not on how they were drawn.

Each series has its own palette colour, so a series' marks are the pixels of that colour. Dots are
what survives an opening of that mask (whiskers and caps are 1 px thin); the legend is the one row
of small coloured dots above everything else. Values are read back through the grid lines, which
sit at known round tick values.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from vision_models.plots import AXIS, GRID, PALETTE, curves_plot, interval_plot, scatter_plot


def colour_mask(image: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """1 where every channel is within 39 of ``colour`` (antialiased edges fade out of it)."""
    low, high = (np.clip(np.array(colour) + shift, 0, 255) for shift in (-39, 39))
    return cv2.inRange(image, low, high) // 255


def blobs(mask: np.ndarray) -> list[dict]:
    """Connected pieces of a mask: bounding box and centre, top to bottom then left to right."""
    count, _, stats, centres = cv2.connectedComponentsWithStats(mask, connectivity=8)
    found = [
        {
            "left": stats[i, cv2.CC_STAT_LEFT],
            "top": stats[i, cv2.CC_STAT_TOP],
            "bottom": stats[i, cv2.CC_STAT_TOP] + stats[i, cv2.CC_STAT_HEIGHT] - 1,
            "width": stats[i, cv2.CC_STAT_WIDTH],
            "height": stats[i, cv2.CC_STAT_HEIGHT],
            "x": centres[i][0],
            "y": centres[i][1],
        }
        for i in range(1, count)
    ]
    return sorted(found, key=lambda b: (round(b["y"]), b["x"]))


def dots(image: np.ndarray, colour: tuple[int, int, int]) -> list[dict]:
    """The filled dots of ``colour``: its mask opened by a 5 x 5 square, which erases 1-px lines."""
    return blobs(cv2.morphologyEx(colour_mask(image, colour), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8)))


def legend_and_data(image: np.ndarray, colours) -> tuple[list[dict], list[list[dict]]]:
    """Each colour's legend dot (all on one row, above every data mark) and its data marks under it."""
    marks = [blobs(colour_mask(image, colour)) for colour in colours]
    legend_y = min(b["y"] for found in marks for b in found)
    legend = []
    for found in marks:
        in_legend = [b for b in found if abs(b["y"] - legend_y) <= 1]
        assert len(in_legend) == 1, "one legend dot per series, on one row"
        legend.append(in_legend[0])
    data = [[b for b in found if abs(b["y"] - legend_y) > 1] for found in marks]
    lowest_legend_pixel = max(b["bottom"] for b in legend)
    assert all(b["top"] > lowest_legend_pixel + 5 for found in data for b in found), "the legend covers data"
    return legend, data


def grid_rows(image: np.ndarray, region: slice = slice(None)) -> np.ndarray:
    """Rows holding a horizontal grid line across most of ``region`` (columns), top to bottom."""
    is_grid = (image[:, region] == GRID).all(axis=2)
    return np.flatnonzero(is_grid.sum(axis=1) > 0.5 * is_grid.shape[1])


def row_of(value: float, rows: np.ndarray, ticks: list[float]) -> float:
    """Image row of ``value`` on the line through the grid rows of ``ticks``."""
    slope, intercept = np.polyfit(ticks, rows, 1)
    return slope * value + intercept


# interval_plot

INTERVALS = {
    "first": [(1.0, 0.0, 2.0), (2.0, 1.0, 3.0), (3.0, 2.0, 4.0)],
    "second": [(2.0, 0.0, 4.0), (2.0, 1.0, 3.0), (2.0, 1.5, 2.5)],
}


def test_interval_plot_draws_each_dot_and_whisker_at_its_values():
    image = interval_plot(["a", "b", "c"], INTERVALS, title="Return per domain", ylabel="return")
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    rows = grid_rows(image)
    assert len(rows) == 5  # ticks 0, 1, 2, 3, 4, top to bottom
    ticks = [4.0, 3.0, 2.0, 1.0, 0.0]
    np.testing.assert_allclose(np.diff(rows), np.diff(rows).mean(), atol=1)
    _, data = legend_and_data(image, PALETTE[:2])
    for colour, values, marks in zip(PALETTE, INTERVALS.values(), data):
        whiskers = sorted((b for b in marks if b["height"] > 15), key=lambda b: b["x"])
        centres = sorted(dots(image, colour)[1:], key=lambda b: b["x"])  # [0] is the legend's dot
        assert len(whiskers) == len(centres) == 3
        for (point, low, high), whisker, dot in zip(values, whiskers, centres):
            assert abs(whisker["top"] - row_of(high, rows, ticks)) <= 1.5
            assert abs(whisker["bottom"] - row_of(low, rows, ticks)) <= 1.5
            assert abs(dot["y"] - row_of(point, rows, ticks)) <= 1.5
            assert abs(dot["x"] - whisker["x"]) <= 1
    first_x = [b["x"] for b in sorted(dots(image, PALETTE[0])[1:], key=lambda b: b["x"])]
    second_x = [b["x"] for b in sorted(dots(image, PALETTE[1])[1:], key=lambda b: b["x"])]
    # Dodged: within each category the first series stands left of the second, close to it.
    for a, b in zip(first_x, second_x):
        assert 6 <= b - a < (first_x[1] - first_x[0]) / 2
    np.testing.assert_allclose(np.diff(first_x), np.diff(second_x), atol=1)


def test_interval_plot_leaves_a_missing_value_out_and_marks_the_sources():
    series = {
        "first": INTERVALS["first"][:1] + [(math.nan,) * 3] + INTERVALS["first"][2:],
        "second": INTERVALS["second"],
    }
    image = interval_plot(["a", "b", "c"], series, divider=1)
    assert len(dots(image, PALETTE[0])) == 1 + 2 and len(dots(image, PALETTE[1])) == 1 + 3
    a_dots, b_dots = (sorted(dots(image, colour)[1:], key=lambda b: b["x"]) for colour in PALETTE[:2])

    def long_vertical_lines(image: np.ndarray) -> np.ndarray:
        axis = (image == AXIS).all(axis=2)
        return np.flatnonzero(axis.sum(axis=0) > 100)

    with_divider, without = long_vertical_lines(image), long_vertical_lines(interval_plot(["a", "b", "c"], series))
    assert len(without) == 1  # the value axis
    assert len(with_divider) == 2 and b_dots[0]["x"] < with_divider[1] < b_dots[1]["x"]
    assert a_dots[0]["x"] < with_divider[1] < a_dots[1]["x"]


def test_interval_plot_widens_so_many_series_never_overlap():
    names = [f"vision_model_{i}" for i in range(6)]
    categories = [f"a_rather_long_domain_name_{i}" for i in range(25)]
    series = {name: [(i + 1.0, i + 0.5, i + 1.5)] * len(categories) for i, name in enumerate(names)}
    image = interval_plot(categories, series)
    narrow = interval_plot(categories, dict(list(series.items())[:2]))
    assert image.shape[1] > narrow.shape[1] and image.shape[0] > 420  # vertical labels: taller, not squeezed
    for colour in PALETTE[:6]:
        assert len(dots(image, colour)) == 1 + len(categories)  # the legend's and one per category, all apart


@pytest.mark.parametrize(
    "categories, series, kwargs, message",
    [
        ([], {"m": []}, {}, "categories"),
        (["a"], {}, {}, "series must map"),
        (["a", "b"], {"m": [(1, 0, 2)]}, {}, r"series 'm' has shape \(1, 3\)"),
        (["a", "b"], {"m": [(1, 0, 2), (1, 2, 3)]}, {}, "series 'm', category 'b'.*low <= point <= high"),
        (["a"], {"m": [(1, 0, math.inf)]}, {}, "series 'm', category 'a'.*finite"),
        (["a"], {"m": [(1, math.nan, 2)]}, {}, "series 'm', category 'a'.*three nan"),
        (["a"], {"m": [(math.nan,) * 3]}, {}, "every"),
        (["a", "b"], {"m": [(1, 0, 2)] * 2}, {"divider": 3}, "divider"),
        (["a", "b"], {f"m{i}": [(1, 0, 2)] * 2 for i in range(5)}, {"width": 60}, "width 60"),
    ],
)
def test_interval_plot_rejects_bad_input(categories, series, kwargs, message):
    with pytest.raises(ValueError, match=message):
        interval_plot(categories, series, **kwargs)


# scatter_plot


def test_scatter_plot_puts_each_dot_at_its_values_in_its_own_scales():
    first = {
        "x": [0.0, 1.0, 2.0, 2.0],
        "y": [0.0, 1.0, 2.0, 0.0],
        "series": ["A", "A", "A", "B"],
        "xlabel": "MIG",
        "ylabel": "target return",
        "title": "MIG: rho = 0.40 (n=4)",
    }
    # Same picture in other units, B listed first: its colour must still be B's.
    second = {
        "x": [20.0, 0.0, 10.0, 20.0],
        "y": [0.0, 0.0, 100.0, 200.0],
        "series": ["B", "A", "A", "A"],
        "xlabel": "SAP",
        "ylabel": "transfer ratio",
        "title": "SAP",
    }
    image = scatter_plot(
        [first, second, first], title="Disentanglement against transfer", columns=2, panel_width=260, panel_height=200
    )
    assert image.dtype == np.uint8 and image.shape[1] == 10 + 2 * 260 and image.shape[0] > 2 * 200
    _, (a_marks, b_marks) = legend_and_data(image, PALETTE[:2])
    assert len(a_marks) == 3 * 3 and len(b_marks) == 3
    in_row_0 = [b for b in a_marks + b_marks if b["y"] < min(b["y"] for b in a_marks) + 150]
    for panel in range(2):  # the two panels of the first row, 260 px apart
        a = sorted(
            (b for b in a_marks if b in in_row_0 and 260 * panel <= b["x"] < 260 * (panel + 1)), key=lambda b: b["x"]
        )
        (b,) = [m for m in b_marks if m in in_row_0 and 260 * panel <= m["x"] < 260 * (panel + 1)]
        assert len(a) == 3
        # Evenly spaced along the rising diagonal (image y grows downwards) ...
        assert a[2]["x"] - a[1]["x"] == pytest.approx(a[1]["x"] - a[0]["x"], abs=1) and a[1]["x"] - a[0]["x"] > 30
        assert a[0]["y"] - a[1]["y"] == pytest.approx(a[1]["y"] - a[2]["y"], abs=1) and a[0]["y"] - a[1]["y"] > 20
        # ... and B under the last A at the height of the first.
        assert b["x"] == pytest.approx(a[2]["x"], abs=1) and b["y"] == pytest.approx(a[0]["y"], abs=1)
    first_a = sorted((b for b in a_marks if b in in_row_0 and b["x"] < 260), key=lambda b: b["x"])
    second_a = sorted((b for b in a_marks if b in in_row_0 and b["x"] >= 260), key=lambda b: b["x"])
    for one, other in zip(first_a, second_a):  # own scales: the same picture, one panel further right
        assert other["x"] - one["x"] == pytest.approx(260, abs=1) and other["y"] == pytest.approx(one["y"], abs=1)


def test_scatter_plot_leaves_out_points_without_a_value():
    panel = {"x": [0.0, math.nan, 1.0], "y": [0.0, 1.0, 1.0], "series": ["A", "A", "A"]}
    image = scatter_plot([panel])
    assert len(blobs(colour_mask(image, PALETTE[0]))) == 1 + 2


@pytest.mark.parametrize(
    "panels, kwargs, message",
    [
        ([], {}, "at least one panel"),
        ([{"x": [1.0], "y": [1.0]}], {}, r"panels\[0\] misses keys \['series'\]"),
        ([{"x": [1.0], "y": [1.0], "series": ["A"], "colour": "red"}], {}, r"unknown keys \['colour'\]"),
        ([{"x": [1.0, 2.0], "y": [1.0], "series": ["A"]}], {}, "one length"),
        ([{"x": [1.0], "y": [math.inf], "series": ["A"]}], {}, r"panels\[0\]\['y'\] holds infinite"),
        ([{"x": [1.0], "y": [1.0], "series": ["A"]}], {"columns": 0}, "columns"),
        ([{"x": [1.0], "y": [1.0], "series": ["A"]}], {"panel_height": 60}, "panel_height 60"),
        ([{"x": [1.0], "y": [1.0], "series": ["A"]}], {"panel_width": 80}, "panel_width 80"),
    ],
)
def test_scatter_plot_rejects_bad_input(panels, kwargs, message):
    with pytest.raises(ValueError, match=message):
        scatter_plot(panels, **kwargs)


# curves_plot


def line_ends(mask: np.ndarray) -> tuple[float, float]:
    """(row at the left end, row at the right end) of the one line in ``mask``."""
    ys, xs = np.nonzero(mask)
    return ys[xs <= xs.min() + 2].mean(), ys[xs >= xs.max() - 2].mean()


def test_curves_plot_shares_one_value_scale_and_one_colour_per_series():
    steps = np.array([0.0, 50_000.0, 100_000.0])
    panels = {
        "hat_can_default": {"A": (steps, np.full(3, 3.0)), "B": (steps, np.array([0.0, 1.0, 2.0]))},
        "cake_balloon_default": {"B": (steps, np.full(3, 1.0)), "A": (steps, np.full(3, 4.0))},
    }
    image = curves_plot(
        panels, title="Training", xlabel="env steps", ylabel="return", columns=2, panel_width=300, panel_height=200
    )
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[0] > 200
    _, (a_marks, b_marks) = legend_and_data(image, PALETTE[:2])
    a_left, a_right = sorted((b for b in a_marks if b["width"] > 100), key=lambda b: b["x"])
    b_left, b_right = sorted((b for b in b_marks if b["width"] > 100), key=lambda b: b["x"])
    mask = {colour: colour_mask(image, colour) for colour in PALETTE[:2]}

    def ends(colour, blob) -> tuple[float, float]:
        inside = np.zeros_like(mask[colour])
        box = np.s_[blob["top"] : blob["bottom"] + 1, blob["left"] : blob["left"] + blob["width"]]
        inside[box] = mask[colour][box]
        return line_ends(inside)

    (a1, a1_end), (a2, a2_end) = ends(PALETTE[0], a_left), ends(PALETTE[0], a_right)
    (b1_start, b1_end), (b2, b2_end) = ends(PALETTE[1], b_left), ends(PALETTE[1], b_right)
    unit = a1 - a2  # one return unit, in rows: A is at 3 on the left, 4 on the right
    assert unit > 15
    for flat_start, flat_end in ((a1, a1_end), (a2, a2_end), (b2, b2_end)):
        assert abs(flat_start - flat_end) <= 1
    assert b1_start - b1_end == pytest.approx(2 * unit, abs=1.5)  # B rises by 2 on the left
    assert b2 - a2 == pytest.approx(3 * unit, abs=1.5)  # and sits at 1, under A's 4, on the right
    assert b1_start == pytest.approx(b2 + unit, abs=1.5)  # B's 0 on the left, one unit under its 1 on the right


def test_curves_plot_draws_an_empty_panel_and_leaves_out_missing_points():
    panels = {"trained": {"A": (np.array([0.0, 1.0, 2.0]), np.array([1.0, math.nan, 2.0]))}, "not trained": {}}
    image = curves_plot(panels, columns=3, panel_width=300)
    _, (marks,) = legend_and_data(image, PALETTE[:1])
    assert len(marks) == 1 and marks[0]["x"] < 300  # one line, in the first panel
    assert len(grid_rows(image, slice(-150, None))) >= 2  # the empty panel still has its grid


@pytest.mark.parametrize(
    "panels, kwargs, message",
    [
        ({}, {}, "at least one panel"),
        ({"p": {}}, {}, "no point"),
        ({"p": {"A": ([0.0, 1.0], [1.0])}}, {}, "panel 'p', series 'A'.*one length"),
        ({"p": {"A": ([0.0], [math.inf])}}, {}, "panel 'p', series 'A' holds infinite"),
        ({"p": {"A": 5}}, {}, "panel 'p', series 'A' must be an \\(xs, ys\\) pair"),
        ({"p": {"A": ([0.0], [1.0])}}, {"columns": 0}, "columns"),
        ({"p": {"A": ([0.0], [1.0])}}, {"panel_width": 50}, "panel_width 50"),
    ],
)
def test_curves_plot_rejects_bad_input(panels, kwargs, message):
    with pytest.raises(ValueError, match=message):
        curves_plot(panels, **kwargs)
