"""The leaderboard's comparison plots, read back from matplotlib's objects: each series' points,
error-bar extents, lines and colours, the legend's names, the axes' titles and scales."""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

from vision_models.plots import curves_plot, interval_plot, scatter_plot


def legend_names(figure: Figure) -> list[str]:
    (legend,) = figure.legends
    return [t.get_text() for t in legend.get_texts()]


def legend_title(figure: Figure) -> str:
    return figure.legends[0].get_title().get_text().replace("\n", " ")


def error_bars(ax) -> dict[str, dict[str, np.ndarray]]:
    """Per series (by label): its dots' x and y, and its bars' low and high ends, left to right."""
    found = {}
    for container in ax.containers:
        assert isinstance(container, ErrorbarContainer)
        line, _, (bars,) = container.lines
        segments = np.array(bars.get_segments())  # (points, 2 ends, xy)
        found[container.get_label()] = {
            "x": np.asarray(line.get_xdata()),
            "y": np.asarray(line.get_ydata()),
            "bar_x": segments[:, 0, 0],
            "low": segments[:, :, 1].min(axis=1),
            "high": segments[:, :, 1].max(axis=1),
            "colour": to_rgba(line.get_color()),
        }
    return found


# interval_plot

INTERVALS = {
    "first": [(1.0, 0.0, 2.0), (2.0, 1.0, 3.0), (3.0, 2.0, 4.0)],
    "second": [(2.0, 0.0, 4.0), (2.0, 1.0, 3.0), (2.0, 1.5, 2.5)],
}


def test_interval_plot_draws_each_dot_and_error_bar_at_its_values():
    figure = interval_plot(["a", "b", "c"], INTERVALS, title="Return per domain", ylabel="return")
    (ax,) = figure.axes
    bars = error_bars(ax)
    assert list(bars) == ["first", "second"] and legend_names(figure) == ["first", "second"]
    assert legend_title(figure) == "Return per domain" and ax.get_ylabel() == "return"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    for i, (name, values) in enumerate(INTERVALS.items()):
        point, low, high = np.array(values).T
        np.testing.assert_allclose(bars[name]["y"], point)
        np.testing.assert_allclose(bars[name]["low"], low)
        np.testing.assert_allclose(bars[name]["high"], high)
        np.testing.assert_allclose(bars[name]["bar_x"], bars[name]["x"])  # each dot on its bar
        assert bars[name]["colour"] == to_rgba(f"C{i}")
    # Dodged: within each category the first series stands left of the second, both near the category.
    offset = bars["second"]["x"] - bars["first"]["x"]
    assert np.all(offset > 0) and np.all(offset < 0.5) and np.allclose(offset, offset[0])
    np.testing.assert_allclose((bars["first"]["x"] + bars["second"]["x"]) / 2, [0, 1, 2])


def test_interval_plot_leaves_a_missing_value_out_and_marks_the_sources():
    series = {
        "first": INTERVALS["first"][:1] + [(math.nan,) * 3] + INTERVALS["first"][2:],
        "second": INTERVALS["second"],
    }
    figure = interval_plot(["a", "b", "c"], series, divider=1)
    (ax,) = figure.axes
    bars = error_bars(ax)
    np.testing.assert_allclose(np.round(bars["first"]["x"]), [0, 2])  # category b left out
    np.testing.assert_allclose(bars["first"]["y"], [1.0, 3.0])
    assert len(bars["second"]["x"]) == 3
    (divider,) = [line for line in ax.lines if line.get_label().startswith("_") and len(set(line.get_xdata())) == 1]
    assert divider.get_xdata()[0] == 0.5  # between the source a and the targets b, c
    assert [t.get_text() for t in ax.texts] == ["source", "target"]
    (plain,) = interval_plot(["a", "b", "c"], series).axes
    assert not plain.texts and len(plain.lines) == len(ax.lines) - 1


def test_interval_plot_widens_with_categories_and_series():
    names = [f"vision_model_{i}" for i in range(6)]
    categories = [f"a_rather_long_domain_name_{i}" for i in range(25)]
    series = {name: [(i + 1.0, i + 0.5, i + 1.5)] * len(categories) for i, name in enumerate(names)}
    figure = interval_plot(categories, series)
    narrow = interval_plot(categories[:3], {name: values[:3] for name, values in list(series.items())[:2]})
    assert figure.get_figwidth() > narrow.get_figwidth()
    (ax,) = figure.axes
    bars = error_bars(ax)
    assert all(len(b["x"]) == len(categories) for b in bars.values())
    xs = np.sort(np.concatenate([b["x"] for b in bars.values()]))
    assert np.diff(xs).min() > 0.05  # no two dots on top of each other
    assert ax.get_xticklabels()[0].get_rotation() == 90  # long labels stand


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
        (["a"], {"m": [("x", 0, 2)]}, {}, "number triples"),
    ],
)
def test_interval_plot_rejects_bad_input(categories, series, kwargs, message):
    with pytest.raises(ValueError, match=message):
        interval_plot(categories, series, **kwargs)


# scatter_plot


def points(ax) -> dict[str, np.ndarray]:
    """Each series' points in a panel, by the label of its point collection."""
    return {c.get_label(): np.asarray(c.get_offsets()) for c in ax.collections}


def test_scatter_plot_puts_each_dot_at_its_values_in_its_own_panel():
    first = {
        "x": [0.0, 1.0, 2.0, 2.0],
        "y": [0.0, 1.0, 2.0, 0.0],
        "series": ["A", "A", "A", "B"],
        "xlabel": "MIG",
        "ylabel": "target return",
        "title": "MIG: rho = 0.40 (n=4)",
    }
    # Other units, B listed first: its colour must still be B's.
    second = {
        "x": [20.0, 0.0, 10.0, 20.0],
        "y": [0.0, 0.0, 100.0, 200.0],
        "series": ["B", "A", "A", "A"],
        "xlabel": "SAP",
        "ylabel": "transfer ratio",
        "title": "SAP",
    }
    figure = scatter_plot([first, second, first], title="Disentanglement against transfer", columns=2)
    assert len(figure.axes) == 3  # the grid's fourth cell removed
    assert legend_names(figure) == ["A", "B"] and legend_title(figure) == "Disentanglement against transfer"
    one, two, three = figure.axes
    assert (one.get_title(), one.get_xlabel(), one.get_ylabel()) == ("MIG: rho = 0.40 (n=4)", "MIG", "target return")
    assert (two.get_title(), two.get_xlabel(), two.get_ylabel()) == ("SAP", "SAP", "transfer ratio")
    np.testing.assert_allclose(points(one)["A"], [[0, 0], [1, 1], [2, 2]])
    np.testing.assert_allclose(points(one)["B"], [[2, 0]])
    np.testing.assert_allclose(points(two)["A"], [[0, 0], [10, 100], [20, 200]])
    np.testing.assert_allclose(points(two)["B"], [[20, 0]])
    np.testing.assert_allclose(points(three)["A"], points(one)["A"])
    for ax in (one, two):
        colours = {c.get_label(): to_rgba(c.get_facecolor()[0]) for c in ax.collections}
        assert colours == {"A": to_rgba("C0"), "B": to_rgba("C1")}
    assert two.get_xlim()[1] > 20 and one.get_xlim()[1] < 3  # each panel on its own scales
    assert one.get_position().y0 > three.get_position().y1 - 1e-9  # row major: the third panel below the first


def test_scatter_plot_leaves_out_points_without_a_value():
    panel = {"x": [0.0, math.nan, 1.0], "y": [0.0, 1.0, 1.0], "series": ["A", "A", "B"]}
    (ax,) = scatter_plot([panel]).axes
    np.testing.assert_allclose(points(ax)["A"], [[0, 0]])
    np.testing.assert_allclose(points(ax)["B"], [[1, 1]])


@pytest.mark.parametrize(
    "panels, kwargs, message",
    [
        ([], {}, "at least one panel"),
        ([{"x": [1.0], "y": [1.0]}], {}, r"panels\[0\] misses keys \['series'\]"),
        ([{"x": [1.0], "y": [1.0], "series": ["A"], "colour": "red"}], {}, r"unknown keys \['colour'\]"),
        ([{"x": [1.0, 2.0], "y": [1.0], "series": ["A"]}], {}, "one length"),
        ([{"x": [1.0], "y": [math.inf], "series": ["A"]}], {}, r"panels\[0\]\['y'\] holds infinite"),
        ([{"x": [1.0], "y": [1.0], "series": ["A"]}], {"columns": 0}, "columns"),
        (["not a panel"], {}, r"panels\[0\] must be a mapping"),
    ],
)
def test_scatter_plot_rejects_bad_input(panels, kwargs, message):
    with pytest.raises(ValueError, match=message):
        scatter_plot(panels, **kwargs)


# curves_plot


def lines(ax) -> dict[str, tuple[np.ndarray, np.ndarray, tuple]]:
    """Each series' line in a panel: its x, its y and its colour, by label."""
    return {
        line.get_label(): (np.asarray(line.get_xdata()), np.asarray(line.get_ydata()), to_rgba(line.get_color()))
        for line in ax.lines
    }


def test_curves_plot_shares_its_scales_and_one_colour_per_series():
    steps = np.array([0.0, 50_000.0, 100_000.0])
    panels = {
        "hat_can_default": {"A": (steps, np.full(3, 3.0)), "B": (steps, np.array([0.0, 1.0, 2.0]))},
        "cake_balloon_default": {"B": (steps, np.full(3, 1.0)), "A": (steps, np.full(3, 4.0))},
    }
    figure = curves_plot(panels, title="Training", xlabel="env steps", ylabel="return", columns=2)
    left, right = figure.axes
    assert (left.get_title(), right.get_title()) == ("hat_can_default", "cake_balloon_default")
    assert figure.get_supxlabel() == "env steps" and figure.get_supylabel() == "return"
    assert legend_names(figure) == ["A", "B"] and legend_title(figure) == "Training"
    expected = {
        left: {"A": [3.0, 3.0, 3.0], "B": [0.0, 1.0, 2.0]},
        right: {"A": [4.0, 4.0, 4.0], "B": [1.0, 1.0, 1.0]},
    }
    for ax, series in expected.items():
        drawn = lines(ax)
        assert set(drawn) == set(series)
        for name, ys in series.items():
            np.testing.assert_allclose(drawn[name][0], steps)
            np.testing.assert_allclose(drawn[name][1], ys)
            assert drawn[name][2] == to_rgba({"A": "C0", "B": "C1"}[name])
    assert left.get_ylim() == right.get_ylim() and left.get_xlim() == right.get_xlim()
    low, high = left.get_ylim()
    assert low <= 0 and high >= 4
    figure.canvas.draw()
    assert "100k" in [t.get_text() for t in left.get_xticklabels()]  # large step counts written short


def test_curves_plot_draws_an_empty_panel_and_leaves_out_missing_points():
    panels = {"trained": {"A": (np.array([0.0, 1.0, 2.0]), np.array([1.0, math.nan, 2.0]))}, "not trained": {}}
    trained, empty = curves_plot(panels, columns=3).axes
    (xs, ys, _) = lines(trained)["A"]
    np.testing.assert_allclose(xs, [0.0, 2.0])
    np.testing.assert_allclose(ys, [1.0, 2.0])
    assert not empty.lines and [t.get_text() for t in empty.texts] == ["no data"]


@pytest.mark.parametrize(
    "panels, kwargs, message",
    [
        ({}, {}, "at least one panel"),
        ({"p": {}}, {}, "no point"),
        ({"p": {"A": ([0.0, 1.0], [1.0])}}, {}, "panel 'p', series 'A'.*one length"),
        ({"p": {"A": ([0.0], [math.inf])}}, {}, "panel 'p', series 'A' holds infinite"),
        ({"p": {"A": 5}}, {}, "panel 'p', series 'A' must be an \\(xs, ys\\) pair"),
        ({"p": {"A": ([0.0], [1.0])}}, {"columns": 0}, "columns"),
        ({"p": [1, 2]}, {}, "panel 'p' must map series names"),
    ],
)
def test_curves_plot_rejects_bad_input(panels, kwargs, message):
    with pytest.raises(ValueError, match=message):
        curves_plot(panels, **kwargs)
