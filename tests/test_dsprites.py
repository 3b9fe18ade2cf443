"""Procedural dSprites (envs/dsprites.py): the factor-dataset protocol, closed-form geometry, and
every one of the 320 genuine frames of the dataset's GIF.

The reference frames are ../shared/data/dsprites_gif_frames.npz (key "frames", bool (320, 64, 64),
no metadata). Their factors, worked out from the frames themselves (pixel counts step with the
scale classes, e.g. squares 100, 144, ..., 400 pixels; the heart's bounding box moves by exactly
32 px over each position sweep; frames that the mapping gives equal factors are pixel-identical,
which `test_reference_frame_mapping_is_consistent` checks):

    frames     shape    what varies (the other factors: scale 5, orientation 0, pos_x 0, pos_y 0)
    0-17       heart    scale 0..5, 5..0, 0..5 (ping-pong)
    18-57      heart    orientation 0..39 (18 and 57 are the same image)
    58-89      heart    pos_y 0..31
    90-121     heart    pos_x 0..31 at pos_y 31
    122-153    heart    pos_y 31..0 at pos_x 31
    154-185    heart    pos_x 31..0
    186-191    heart    scale 5..0
    192-209    ellipse  scale 0..5, 5..0, 0..5
    210-249    ellipse  orientation 0..39
    250-255    ellipse  scale 5..0
    256-273    square   scale 0..5, 5..0, 0..5
    274-313    square   orientation 0..39
    314-319    square   scale 5..0

Run with `pytest -s` to see the IoU table per shape and the worst frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from envs import dsprites
from envs.dsprites import DSprites
from envs.factor_dataset import FactorDataset

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsprites_gif_frames.npz"
SHAPE_NAMES = {dsprites.SQUARE: "square", dsprites.ELLIPSE: "ellipse", dsprites.HEART: "heart"}
# mean IoU per shape against the reference frames
IOU_AIMS = {dsprites.SQUARE: 0.95, dsprites.ELLIPSE: 0.95, dsprites.HEART: 0.9}
FRAME_IOU_FLOOR = 0.9  # no single frame may be far off, whatever the means


@pytest.fixture(scope="module")
def dataset() -> DSprites:
    return DSprites()


def reference_factors() -> np.ndarray:
    """Factors (320, 5) of the GIF's frames, in the order of the table in the module docstring."""
    up, down = list(range(6)), list(range(5, -1, -1))
    up_positions, down_positions = list(range(32)), list(range(31, -1, -1))

    def frames(shape: int, position_sweeps: bool) -> list[tuple[int, int, int, int, int]]:
        rows = [(shape, scale, 0, 0, 0) for scale in up + down + up]
        rows += [(shape, 5, orientation, 0, 0) for orientation in range(40)]
        if position_sweeps:
            rows += [(shape, 5, 0, 0, y) for y in up_positions]
            rows += [(shape, 5, 0, x, 31) for x in up_positions]
            rows += [(shape, 5, 0, 31, y) for y in down_positions]
            rows += [(shape, 5, 0, x, 0) for x in down_positions]
        rows += [(shape, scale, 0, 0, 0) for scale in down]
        return rows

    return np.array(frames(dsprites.HEART, True) + frames(dsprites.ELLIPSE, False) + frames(dsprites.SQUARE, False))


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    if not REFERENCE.exists():
        pytest.skip(f"reference frames not found at {REFERENCE}")
    return np.load(REFERENCE)["frames"]


def test_protocol(dataset):
    assert isinstance(dataset, FactorDataset)
    assert dataset.factor_names == ("shape", "scale", "orientation", "pos_x", "pos_y")
    assert dataset.factor_sizes == (3, 6, 40, 32, 32)
    assert dataset.image_shape == (64, 64, 1)

    factors = dataset.sample_factors(5000, np.random.default_rng(0))
    assert factors.dtype == np.int64 and factors.shape == (5000, 5)
    np.testing.assert_array_equal(factors.min(0), 0)
    np.testing.assert_array_equal(factors.max(0), np.array(dataset.factor_sizes) - 1)

    images = dataset.render(factors[:300])
    assert images.dtype == np.uint8 and images.shape == (300, 64, 64, 1)
    assert set(np.unique(images)) == {0, 255}
    assert (images.reshape(300, -1).max(1) == 255).all()  # every sprite is visible
    assert dataset.render(factors[:0]).shape == (0, 64, 64, 1)

    values = dataset.factor_values(np.array([[2, 5, 39, 31, 0]]))
    np.testing.assert_allclose(
        [values[k][0] for k in ("scale", "orientation", "pos_x", "pos_y")], [1.0, 2 * np.pi, 1.0, 0.0]
    )


def test_orientation_0_and_39_are_the_same_image(dataset):
    factors = dataset.sample_factors(500, np.random.default_rng(1))
    first, last = factors.copy(), factors.copy()
    first[:, 2], last[:, 2] = 0, 39
    np.testing.assert_array_equal(dataset.render(first), dataset.render(last))
    turned = first.copy()
    turned[:, 2] = 5  # 46 degrees: every shape looks different
    assert (dataset.render(turned) != dataset.render(first)).any(axis=(1, 2, 3)).all()


@pytest.mark.parametrize(
    "factors, message",
    [
        (np.zeros((2, 4), np.int64), "shape"),
        (np.zeros(5, np.int64), "shape"),
        (np.zeros((2, 5)), "dtype"),
        (np.array([[0, 0, 40, 0, 0]]), "orientation"),
        (np.array([[-1, 0, 0, 0, 0]]), "outside shape's range"),
    ],
)
def test_bad_factors_raise(dataset, factors, message):
    with pytest.raises(ValueError, match=message):
        dataset.render(factors)


def test_area_and_centroid_follow_closed_form_geometry(dataset):
    """Across the whole grid: lit area against the shapes' areas, lit centroid against the sprite centre.

    The heart's centroid lies off its centre (above it, upright): its offset, rotated
    counter-clockwise on screen, checks the sense of rotation independently of the GIF.
    """
    factors = dataset.sample_factors(3000, np.random.default_rng(2))
    lit = dataset.render(factors)[..., 0] > 0
    values = dataset.factor_values(factors)
    scale, angle = values["scale"], values["orientation"]

    # The heart curve's area and centroid by the shoelace formula on a dense outline.
    t = np.linspace(0.0, 2 * np.pi, 20000, endpoint=False)
    (scale_x, scale_y), shift_up = dsprites.HEART_CURVE_SCALE, dsprites.HEART_CURVE_SHIFT_UP
    x = scale_x * 16 * np.sin(t) ** 3
    y = -scale_y * (13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)) - shift_up  # y down
    x_next, y_next = np.roll(x, -1), np.roll(y, -1)
    cross = x * y_next - x_next * y
    heart_area = cross.sum() / 2
    heart_centroid_y = ((y + y_next) * cross).sum() / (6 * heart_area)
    assert heart_centroid_y < -1.0  # above the centre

    half_side, (semi_x, semi_y) = dsprites.SQUARE_HALF_SIDE, dsprites.ELLIPSE_SEMI_AXES
    unit_area = np.array([(2 * half_side) ** 2, np.pi * semi_x * semi_y, abs(heart_area)])[factors[:, 0]]
    centroid_offset = np.where(factors[:, 0] == dsprites.HEART, heart_centroid_y, 0.0) * scale
    expected_x = 16 + 32 * values["pos_x"] + centroid_offset * np.sin(angle)  # (0, offset) turned CCW, y down
    expected_y = 16 + 32 * values["pos_y"] + centroid_offset * np.cos(angle)

    area = lit.sum(axis=(1, 2))
    centres = np.arange(64) + 0.5
    lit_x = (lit * centres[None, None, :]).sum(axis=(1, 2)) / area
    lit_y = (lit * centres[None, :, None]).sum(axis=(1, 2)) / area
    for shape, name in SHAPE_NAMES.items():
        rows = factors[:, 0] == shape
        ratio = area[rows] / (unit_area[rows] * scale[rows] ** 2)
        error = np.hypot(lit_x - expected_x, lit_y - expected_y)[rows]
        assert abs(ratio.mean() - 1) < 0.01, f"{name}: mean lit area / shape area = {ratio.mean():.4f}"
        assert 0.85 < ratio.min() and ratio.max() < 1.15, f"{name}: area ratios {ratio.min():.3f}..{ratio.max():.3f}"
        # A row or column of a small sprite that a pixel centre barely includes moves it by up to ~0.6 px;
        # the wrong sense of rotation would put hearts off by 1.9 px on average.
        assert error.mean() < 0.15 and error.max() < 0.75, (
            f"{name}: centroid off by {error.mean():.3f} (max {error.max():.3f}) px"
        )


def test_reference_frame_mapping_is_consistent(reference):
    """Frames that the derived mapping gives the same factors are the same image in the GIF."""
    factors = reference_factors()
    assert len(factors) == len(reference) == 320
    keys = [tuple(row) for row in factors.tolist()]
    for key in set(keys):
        frames = [i for i, other in enumerate(keys) if other == key]
        for i in frames[1:]:
            np.testing.assert_array_equal(reference[i], reference[frames[0]], err_msg=f"frames {frames[0]}, {i}: {key}")
    for first in (18, 210, 274):  # orientation 0 and 39 of each shape's sweep
        np.testing.assert_array_equal(reference[first], reference[first + 39])
    assert len(set(keys)) < len(keys)  # the check above compared something


def test_render_matches_genuine_frames(dataset, reference):
    factors = reference_factors()
    rendered = dataset.render(factors)[..., 0] > 0
    flat_rendered, flat_reference = rendered.reshape(320, -1), reference.reshape(320, -1)
    iou = (flat_rendered & flat_reference).sum(1) / (flat_rendered | flat_reference).sum(1)

    print("\nprocedural dSprites vs the dataset's GIF frames (IoU of lit pixels)")
    print(f"{'shape':8} {'frames':>6} {'mean':>7} {'min':>7}  worst frames (index: IoU, factors)")
    for shape, name in SHAPE_NAMES.items():
        frames = np.flatnonzero(factors[:, 0] == shape)
        worst = frames[np.argsort(iou[frames], kind="stable")[:4]]
        listed = "; ".join(f"{i}: {iou[i]:.3f} {factors[i].tolist()}" for i in worst)
        print(f"{name:8} {len(frames):6d} {iou[frames].mean():7.4f} {iou[frames].min():7.4f}  {listed}")

    for shape, name in SHAPE_NAMES.items():
        frames = factors[:, 0] == shape
        assert iou[frames].mean() >= IOU_AIMS[shape], f"{name}: mean IoU {iou[frames].mean():.4f}"
    assert iou.min() >= FRAME_IOU_FLOOR, f"frame {iou.argmin()} has IoU {iou.min():.3f}"


def test_strided_grid_renders_the_full_grids_images():
    full, coarse = DSprites(), DSprites(stride={"orientation": 4, "pos_x": 4, "pos_y": 4})
    assert coarse.factor_sizes == (3, 6, 10, 8, 8)
    factors = coarse.sample_factors(200, np.random.default_rng(0))
    np.testing.assert_array_equal(coarse.render(factors), full.render(factors * np.array([1, 1, 4, 4, 4])))
    with pytest.raises(ValueError, match="stride must map factor names"):
        DSprites(stride={"colour": 2})
