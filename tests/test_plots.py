"""The see stage's plots and the labelled image grids: read back from matplotlib's objects (bars,
lines, titles), not from pixels; and the files save_figure writes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from darla.artifacts import read_json
from darla.images import label_rows
from darla.vision_report import diagnose
from vision_models import BetaVAE
from vision_models.diagnostics import reconstruction_grid
from vision_models.metrics.codes import FactorCodes
from vision_models.plots import _mean_responses, _most_responsive, bar_plot, factor_response_plot, save_figure


def grid_codes(sizes: tuple[int, ...], latents) -> FactorCodes:
    """Codes whose latent d is latents[d](factors) at every grid point."""
    factors = np.stack(np.unravel_index(np.arange(int(np.prod(sizes))), sizes), axis=1).astype(float)
    mean = np.stack([fn(factors) for fn in latents], axis=1).astype(np.float32)
    return FactorCodes(tuple(f"f{k}" for k in range(len(sizes))), sizes, mean)


def bar_heights(figure: Figure) -> np.ndarray:
    (ax,) = figure.axes
    return np.array([bar.get_height() for bar in ax.patches])


def test_bar_plot_draws_one_bar_per_value_in_order_with_its_label():
    figure = bar_plot([1.0, 3.0, 2.0, 0.5], ["z0", "z1", "z2", "z3"], title="KL per latent", ylabel="nats")
    (ax,) = figure.axes
    np.testing.assert_allclose(bar_heights(figure), [1.0, 3.0, 2.0, 0.5])
    np.testing.assert_allclose([bar.get_x() + bar.get_width() / 2 for bar in ax.patches], range(4))
    assert [bar.get_y() for bar in ax.patches] == [0.0] * 4  # one baseline, at zero
    assert [t.get_text() for t in ax.get_xticklabels()] == ["z0", "z1", "z2", "z3"]
    assert ax.get_title() == "KL per latent" and ax.get_ylabel() == "nats"
    assert [t.get_text() for t in ax.texts] == ["1", "3", "2", "0.5"]  # the values on the bars


def test_negative_bars_hang_below_zero_and_labels_default_to_indices():
    figure = bar_plot([-1.0, 2.0])
    (ax,) = figure.axes
    np.testing.assert_allclose(bar_heights(figure), [-1.0, 2.0])
    low, high = ax.get_ylim()
    assert low < -1.0 and high > 2.0
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1"]


def test_many_bars_each_get_drawn_in_order():
    figure = bar_plot(np.arange(1, 33, dtype=float), [f"z{i}" for i in range(32)], title="KL", ylabel="nats")
    np.testing.assert_allclose(bar_heights(figure), np.arange(1, 33))
    assert figure.get_figwidth() > bar_plot([1.0, 2.0]).get_figwidth()  # wider, not squeezed


@pytest.mark.parametrize(
    "values, labels, name",
    [
        ([], None, "values"),
        ([[1.0, 2.0]], None, "values"),
        ([1.0, np.nan], None, "values"),
        ([1.0, np.inf], None, "values must be finite"),
        ([1.0, 2.0], ["a"], "labels"),
    ],
)
def test_bar_plot_rejects_bad_input(values, labels, name):
    with pytest.raises(ValueError, match=name):
        bar_plot(values, labels)


def test_factor_response_panels_show_each_latents_mean_code_per_class_on_one_scale():
    sizes = (4, 5)
    codes = grid_codes(
        sizes,
        [
            lambda f: f[:, 0],  # z0 follows factor 0
            lambda f: np.full(len(f), 0.5),  # z1 ignores everything
            lambda f: 3 - 0.75 * f[:, 1],  # z2 falls with factor 1
        ],
    )
    figure = factor_response_plot(codes, latent_order=[0, 1, 2])
    panels = np.array(figure.axes).reshape(2, 3)  # rows: factors, columns: latents
    expected = {
        (0, 0): [0, 1, 2, 3],
        (0, 1): [0.5] * 4,
        (0, 2): [1.5] * 4,  # f1's mean class is 2: 3 - 0.75 * 2
        (1, 0): [1.5] * 5,
        (1, 1): [0.5] * 5,
        (1, 2): [3, 2.25, 1.5, 0.75, 0],
    }
    for (row, column), ys in expected.items():
        (line,) = panels[row, column].lines
        np.testing.assert_allclose(line.get_xdata(), range(sizes[row]))
        np.testing.assert_allclose(line.get_ydata(), ys, atol=1e-6)
        assert to_rgba(line.get_color()) == to_rgba(f"C{column}")  # one colour per latent column
    assert [ax.get_title() for ax in panels[0]] == ["z0", "z1", "z2"]
    assert [ax.get_ylabel() for ax in panels[:, 0]] == ["f0", "f1"]
    assert len({ax.get_ylim() for ax in figure.axes}) == 1  # one shared value scale
    low, high = panels[0, 0].get_ylim()
    assert low <= 0 and high >= 3


def test_factor_response_plot_shows_the_asked_or_most_responsive_latents():
    codes = grid_codes((3, 2), [lambda f, k=k: f[:, 0] * k for k in range(6)])

    def titles(figure: Figure) -> list[str]:
        return [ax.get_title() for ax in figure.axes if ax.get_title()]

    assert titles(factor_response_plot(codes, max_latents=2)) == ["z5", "z4"]
    assert titles(factor_response_plot(codes, latent_order=[1, 0, 3], max_latents=2)) == ["z1", "z0"]
    assert len(factor_response_plot(codes, max_latents=6).axes) == 2 * 6


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


@pytest.mark.parametrize("vector", ["pdf", "svg"])
def test_save_figure_writes_a_png_and_a_vector_file_beside_it(tmp_path, vector):
    written = save_figure(bar_plot([1.0, 2.0], title="KL"), tmp_path / "kl_per_dim.png", vector=vector)
    assert written == [tmp_path / "kl_per_dim.png", tmp_path / f"kl_per_dim.{vector}"]
    png = cv2.imread(str(written[0]))
    assert png is not None and png.shape[0] > 100 and png.shape[1] > 100
    head = written[1].read_bytes()[:200]
    assert head.startswith(b"%PDF") if vector == "pdf" else b"<svg" in written[1].read_bytes()[:2000]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)  # no temporary left
    with pytest.raises(ValueError, match="vector"):
        save_figure(bar_plot([1.0]), tmp_path / "x.png", vector="eps")


# The image grids' row labels (darla/images.py, vision_models/diagnostics.py)


def test_label_rows_adds_a_margin_with_a_label_beside_every_row():
    grid = np.full((3 * 66 + 2, 4 * 66 + 2, 3), 128, np.uint8)
    labelled = label_rows(grid, ["hat_can\ninput", "decoder", "decoder through\nthe DAE"])
    margin = labelled.shape[1] - grid.shape[1]
    assert labelled.shape[0] == grid.shape[0] and 60 < margin < 200
    np.testing.assert_array_equal(labelled[:, margin:], grid)
    strip = labelled[:, :margin]
    for row in range(3):
        band = strip[row * 66 : (row + 1) * 66]
        assert (band < 128).sum() > 30, f"row {row}'s label is missing"
    # Two-line labels take two lines: ink in both halves of the band.
    first = (strip[:66] < 128).any(axis=(1, 2))
    assert first[:33].any() and first[33:].any()
    # A longer label makes a wider margin.
    assert label_rows(grid, ["a", "b", "c"]).shape[1] < labelled.shape[1]


class _Decoder(torch.nn.Module):
    """Reconstructs as 1 - x (so the rows differ); a DAE, when given, halves what it sees."""

    def __init__(self, dae: bool):
        super().__init__()
        self.dae = _Half() if dae else None

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return 1 - x


class _Half(torch.nn.Module):
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return x / 2


@pytest.mark.parametrize("dae", [False, True])
def test_reconstruction_grid_names_its_rows(dae):
    images = torch.rand(5, 3, 16, 16)
    grid, labels = reconstruction_grid(_Decoder(dae), images)
    expected = ["input", "decoder"] + (["decoder through\nthe DAE"] if dae else [])
    assert labels == expected
    assert grid.shape == (len(expected) * 18 + 2, 5 * 18 + 2, 3)
    labelled = label_rows(grid, labels)
    margin = labelled.shape[1] - grid.shape[1]
    for row in range(len(labels)):
        assert (labelled[row * 18 : (row + 1) * 18 + 2, :margin] < 128).any(), f"row {row} has no label"


def test_diagnose_writes_each_figure_as_png_and_pdf_and_labels_its_grids(tmp_path):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    groups = {name: rng.integers(0, 256, size=(16, 64, 64, 3), dtype=np.uint8) for name in ("hat_can", "cake")}
    model = BetaVAE(latent_dim=4)
    diagnose(model, tmp_path, groups, None, None, torch.device("cpu"), 0)
    assert (tmp_path / "kl_per_dim.pdf").read_bytes().startswith(b"%PDF")
    assert len(read_json(tmp_path / "latents.json")["kl_per_dim"]) == 4
    assert cv2.imread(str(tmp_path / "kl_per_dim.png")) is not None
    grid = cv2.imread(str(tmp_path / "reconstructions.png"))
    rows = 2 * 2  # two domains, input and decoder rows each
    assert grid.shape[0] == rows * 66 + 2 * 2  # each band a tiled grid of 8 images of 64 px
    margin = grid.shape[1] - (8 * 66 + 2)
    assert margin > 40
    for row in range(rows):
        band = grid[row * grid.shape[0] // rows : (row + 1) * grid.shape[0] // rows, :margin]
        assert (band < 128).sum() > 30, f"reconstruction row {row} has no label"
    traversals = cv2.imread(str(tmp_path / "traversals.png"))
    margin = traversals.shape[1] - (9 * 66 + 2)
    assert margin > 20 and traversals.shape[0] == 4 * 66 + 2
    for row in range(4):
        assert (traversals[row * 66 : (row + 1) * 66, :margin] < 128).sum() > 30, f"traversal row {row} unlabelled"
