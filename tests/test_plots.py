"""The see stage's plots: measured on their pixels, not on how they were drawn.

Bars are found as runs of image columns holding saturated (coloured) pixels: text, grid and axes
are grey, bars are not. Response lines are found as the connected pixels of a latent's colour.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vision_models.metrics.codes import FactorCodes
from vision_models.plots import PALETTE, _mean_responses, _most_responsive, bar_plot, factor_response_plot


def saturated(image: np.ndarray) -> np.ndarray:
    """Pixels whose channels differ a lot: coloured, not black, grey or white."""
    return (image.max(axis=2).astype(int) - image.min(axis=2)) > 60


def bars(image: np.ndarray) -> list[tuple[int, int]]:
    """(top row, bottom row) of each bar, left to right, measured in the middle column of each run."""
    mask = saturated(image)
    columns = mask.any(axis=0)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], columns.astype(int), [0]])))
    extents = []
    for start, stop in zip(edges[::2], edges[1::2]):
        rows = np.flatnonzero(mask[:, (start + stop) // 2])
        extents.append((int(rows.min()), int(rows.max())))
    return extents


def line_ends(image: np.ndarray, colour: tuple[int, int, int]) -> list[tuple[float, float]]:
    """(y at the left end, y at the right end) of each line drawn in ``colour``, top to bottom."""
    mask = (np.abs(image.astype(int) - colour).max(axis=2) < 40).astype(np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    widths = stats[1:, cv2.CC_STAT_WIDTH]
    lines = [i + 1 for i in np.flatnonzero(widths >= 0.6 * widths.max())]  # drop the latent's name above
    ends = []
    for label in sorted(lines, key=lambda i: stats[i, cv2.CC_STAT_TOP]):
        ys, xs = np.nonzero(labels == label)
        ends.append((ys[xs <= xs.min() + 2].mean(), ys[xs >= xs.max() - 2].mean()))
    return ends


def grid_codes(sizes: tuple[int, ...], latents) -> FactorCodes:
    """Codes whose latent d is latents[d](factors) at every grid point."""
    factors = np.stack(np.unravel_index(np.arange(int(np.prod(sizes))), sizes), axis=1).astype(float)
    mean = np.stack([fn(factors) for fn in latents], axis=1).astype(np.float32)
    return FactorCodes(tuple(f"f{k}" for k in range(len(sizes))), sizes, mean)


def test_bar_plot_is_an_rgb_image_of_the_asked_size():
    image = bar_plot([1.0, 2.0, 0.5], ["z0", "z1", "z2"], title="KL per latent", ylabel="KL", width=640, height=300)
    assert image.shape == (300, 640, 3) and image.dtype == np.uint8


def test_bar_heights_are_proportional_to_values():
    values = np.array([1.0, 3.0, 2.0, 0.5])
    extents = bars(bar_plot(values, title="t", ylabel="y"))
    assert len(extents) == len(values)
    heights = np.array([bottom - top + 1 for top, bottom in extents])
    assert heights[1] > heights[2] > heights[0] > heights[3]
    px_per_unit = heights[1] / values[1]
    np.testing.assert_allclose(heights, values * px_per_unit, atol=2)
    assert len({bottom for _, bottom in extents}) == 1  # one baseline


def test_negative_bars_hang_below_the_zero_line():
    (neg_top, neg_bottom), (pos_top, pos_bottom) = bars(bar_plot([-1.0, 2.0]))
    assert 0 <= neg_top - pos_bottom <= 2  # they meet at zero, where the 1-px zero line crosses them
    np.testing.assert_allclose(neg_bottom - neg_top, (pos_bottom - pos_top) / 2, atol=2)


def test_many_bars_each_get_drawn_in_order():
    values = np.arange(1, 33, dtype=float)
    image = bar_plot(values, [f"z{i}" for i in range(32)], title="KL", ylabel="nats")
    assert image.shape == (360, 800, 3)
    heights = [bottom - top for top, bottom in bars(image)]
    assert len(heights) == 32 and np.all(np.diff(heights) > 0)


def test_factor_response_lines_rise_fall_and_stay_flat_where_they_should():
    sizes = (4, 5)
    codes = grid_codes(
        sizes,
        [
            lambda f: f[:, 0],  # z0 follows factor 0
            lambda f: np.full(len(f), 0.5),  # z1 ignores everything
            lambda f: 3 - 0.75 * f[:, 1],
        ],
    )  # z2 falls with factor 1
    image = factor_response_plot(codes, latent_order=[0, 1, 2])
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    (z0_f0, z0_f1), (z1_f0, z1_f1), (z2_f0, z2_f1) = (line_ends(image, PALETTE[c]) for c in range(3))
    assert z0_f0[0] - z0_f0[1] > 30  # image y grows downwards: a rising line ends higher up
    assert z2_f1[1] - z2_f1[0] > 30
    for flat in (z0_f1, z1_f0, z1_f1, z2_f0):
        assert abs(flat[0] - flat[1]) <= 2
    # One shared scale: z1 = 0.5 sits between z0's ends at classes 0 and 1.
    assert z0_f0[0] > z1_f0[0] > z0_f0[0] - (z0_f0[0] - z0_f0[1]) / 3


def test_factor_response_plot_grows_with_the_latents_shown():
    codes = grid_codes((3, 2), [lambda f, k=k: f[:, 0] * k for k in range(6)])
    narrow, wide = factor_response_plot(codes, max_latents=2), factor_response_plot(codes, max_latents=6)
    assert narrow.shape[0] == wide.shape[0] and narrow.shape[1] < wide.shape[1]
    assert factor_response_plot(codes, latent_order=[5, 0, 1], max_latents=2).shape == narrow.shape


def test_mean_responses_average_over_the_other_factors():
    rng = np.random.default_rng(0)
    sizes = (3, 4, 2)
    codes = FactorCodes(("a", "b", "c"), sizes, rng.normal(size=(24, 5)).astype(np.float32))
    grid = np.stack(np.unravel_index(np.arange(24), sizes), axis=1)
    curves = _mean_responses(codes.mean, sizes)
    for k, size in enumerate(sizes):
        expected = np.stack([codes.lookup(grid[grid[:, k] == c]).mean(axis=0) for c in range(size)])
        np.testing.assert_allclose(curves[k], expected, rtol=1e-5, atol=1e-6)


def test_default_latents_are_the_most_responsive_first():
    rng = np.random.default_rng(1)
    curves = [rng.normal(size=(4, 7)), rng.normal(size=(6, 7))]
    spread = [max(max(c[:, d]) - min(c[:, d]) for c in curves) for d in range(7)]
    assert _most_responsive(curves, 3) == sorted(range(7), key=lambda d: -spread[d])[:3]


@pytest.mark.parametrize(
    "values, labels, name",
    [
        ([], None, "values"),
        ([[1.0, 2.0]], None, "values"),
        ([1.0, np.nan], None, "values"),
        ([1.0, 2.0], ["a"], "labels"),
    ],
)
def test_bar_plot_rejects_bad_input(values, labels, name):
    with pytest.raises(ValueError, match=name):
        bar_plot(values, labels)


def test_factor_response_plot_rejects_bad_input():
    codes = grid_codes((3, 2), [lambda f: f[:, 0], lambda f: f[:, 1]])
    for order in ([2], [0, 0], []):
        with pytest.raises(ValueError, match="latent_order"):
            factor_response_plot(codes, latent_order=order)
    with pytest.raises(ValueError, match="max_latents"):
        factor_response_plot(codes, max_latents=0)
    codes.mean = codes.mean[:5]
    with pytest.raises(ValueError, match=r"codes\.mean has shape \(5, 2\)"):
        factor_response_plot(codes)
    codes = grid_codes((3, 2), [lambda f: f[:, 0]])
    codes.factor_names = ("only_one",)
    with pytest.raises(ValueError, match="factor_names"):
        factor_response_plot(codes)
