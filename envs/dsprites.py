"""Procedural dSprites (Matthey et al. 2017): the 737,280-image factor grid, rendered on demand.

The original file cannot be fetched here, so the images are drawn from the dataset's geometry,
fitted to 320 genuine frames of the dataset's GIF (tests/test_dsprites.py compares every one):

- Factors (class indices): shape 3 (0 square, 1 ellipse, 2 heart), scale 6 (linspace 0.5..1),
  orientation 40 (linspace 0..2*pi, so classes 0 and 39 are the same image), pos_x and pos_y 32
  each (linspace 0..1).
- A sprite's centre is at (16 + 32 * pos_x, 16 + 32 * pos_y) pixels, y down, in continuous
  coordinates where pixel (row, col) covers [col, col + 1) x [row, row + 1).
- A pixel is on when its centre lies inside the shape (point sampling, no anti-aliasing).
- Shapes at scale 1, orientation 0, in pixels about the centre: a square of side 19.2; an
  ellipse with semi-axes 12.76 (horizontal) and 7.22; the classic heart curve
  (16 sin^3 t, 13 cos t - 5 cos 2t - 2 cos 3t - cos 4t) scaled by (0.6, 0.6625), upright, shifted
  1.43 px up. All of them scale linearly and rotate counter-clockwise on screen.

Rendering is a table lookup: each shape is rasterised once on a fine canonical grid (scale 1,
orientation 0); a pixel of a sprite maps back to canonical coordinates through the inverse
similarity transform and reads the table. Only a 32x32 window around each sprite is evaluated
(every shape fits in it at every scale and angle), so a batch costs a few vectorised passes.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from envs.factor_dataset import checked_factors, uniform_factors

SQUARE, ELLIPSE, HEART = 0, 1, 2

# Geometry fitted to the genuine GIF frames (pixels at scale 1; see the module docstring).
SQUARE_HALF_SIDE = 9.6
ELLIPSE_SEMI_AXES = (12.76, 7.22)  # (horizontal, vertical) at orientation 0
HEART_CURVE_SCALE = (0.6, 0.6625)  # (x, y) scale of the classic heart curve
HEART_CURVE_SHIFT_UP = 1.43

IMAGE_SIZE = 64
CENTRE_MARGIN = 16.0  # centre of a sprite at position 0; position 1 is IMAGE_SIZE - CENTRE_MARGIN
WINDOW = 32  # side of the pixel window evaluated around each sprite's centre
TABLE_EXTENT = 16.0  # the canonical tables cover [-TABLE_EXTENT, TABLE_EXTENT]^2 scale-1 pixels
TABLE_BINS_PER_PIXEL = 32


def _heart_polygon(num_vertices: int = 720) -> np.ndarray:
    """Vertices (num_vertices, 2) of the heart outline in scale-1 pixels, y down, about the centre."""
    t = np.linspace(0.0, 2.0 * np.pi, num_vertices, endpoint=False)
    x = 16.0 * np.sin(t) ** 3
    y_up = 13.0 * np.cos(t) - 5.0 * np.cos(2 * t) - 2.0 * np.cos(3 * t) - np.cos(4 * t)
    return np.stack([HEART_CURVE_SCALE[0] * x, -HEART_CURVE_SCALE[1] * y_up - HEART_CURVE_SHIFT_UP], axis=1)


def _inside_polygon(u: np.ndarray, v: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test of the grid points (u[j], v[i]): bool (len(v), len(u)).

    One scanline per row v: the edges that straddle it give crossing abscissae, and a point is
    inside when an odd number of crossings lies to its left.
    """
    x0, y0 = polygon.T
    x1, y1 = np.roll(polygon, -1, axis=0).T
    inside = np.zeros((len(v), len(u)), bool)
    for row, y in enumerate(v):
        straddles = (y0 <= y) != (y1 <= y)  # half-open, so a vertex on the scanline counts once
        crossings = np.sort(x0[straddles] + (y - y0[straddles]) * (x1 - x0)[straddles] / (y1 - y0)[straddles])
        inside[row] = np.searchsorted(crossings, u, side="right") % 2 == 1
    return inside


def _shape_tables() -> np.ndarray:
    """Canonical rasters of the three shapes, uint8 0/255 (3, B, B), sampled at bin centres."""
    bins = round(2 * TABLE_EXTENT * TABLE_BINS_PER_PIXEL)
    centres = (np.arange(bins) + 0.5) / TABLE_BINS_PER_PIXEL - TABLE_EXTENT
    u, v = centres[None, :], centres[:, None]
    square = np.maximum(np.abs(u), np.abs(v)) <= SQUARE_HALF_SIDE
    ellipse = (u / ELLIPSE_SEMI_AXES[0]) ** 2 + (v / ELLIPSE_SEMI_AXES[1]) ** 2 <= 1.0
    heart = _inside_polygon(centres, centres, _heart_polygon())
    return np.stack([square, ellipse, heart]).astype(np.uint8) * 255


FULL_SIZES = (3, 6, 40, 32, 32)


class DSprites:
    """dSprites as a factor dataset (envs/factor_dataset.py): factor classes in, binary images out.

    ``stride`` keeps every k-th class of the factors it names, e.g. ``{"orientation": 4, "pos_x": 4,
    "pos_y": 4}`` gives a 3 x 6 x 10 x 8 x 8 grid of the same images: a coarser ground truth for
    quick metric runs (class i of a strided factor is class i*k of the full one).
    """

    factor_names = ("shape", "scale", "orientation", "pos_x", "pos_y")
    image_shape = (IMAGE_SIZE, IMAGE_SIZE, 1)

    def __init__(self, stride: Mapping[str, int] | None = None) -> None:
        stride = dict(stride or {})
        unknown = sorted(set(stride) - set(self.factor_names))
        if unknown or any(int(k) != k or k < 1 for k in stride.values()):
            raise ValueError(f"stride must map factor names {self.factor_names} to positive integers; got {stride}")
        self._strides = np.array([int(stride.get(name, 1)) for name in self.factor_names])
        self.factor_sizes = tuple(int(-(-full // k)) for full, k in zip(FULL_SIZES, self._strides))
        self._tables = _shape_tables()
        self._bins = self._tables.shape[1]
        # The dataset's value of each full-grid class, per continuous factor (shape is categorical).
        self._class_values = {
            "scale": np.linspace(0.5, 1.0, FULL_SIZES[1]),
            "orientation": np.linspace(0.0, 2 * np.pi, FULL_SIZES[2]),
            "pos_x": np.linspace(0.0, 1.0, FULL_SIZES[3]),
            "pos_y": np.linspace(0.0, 1.0, FULL_SIZES[4]),
        }

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n factor vectors drawn uniformly from the grid: int64 (n, 5)."""
        return uniform_factors(self.factor_sizes, n, rng)

    def factor_values(self, factors: np.ndarray) -> dict[str, np.ndarray]:
        """The dataset's values of the factor classes (n, 5): scale, orientation (radians), pos_x, pos_y in [0, 1].

        Orientation class 39 is 2*pi, the same image as class 0.
        """
        factors = checked_factors(factors, self.factor_names, self.factor_sizes) * self._strides
        return {name: values[factors[:, self.factor_names.index(name)]] for name, values in self._class_values.items()}

    def render(self, factors: np.ndarray) -> np.ndarray:
        """uint8 images (n, 64, 64, 1), 0 or 255, for the factor vectors (n, 5)."""
        # classes of the full grid
        factors = checked_factors(factors, self.factor_names, self.factor_sizes) * self._strides
        shape, scale_class, orientation, pos_x, pos_y = factors.T
        scale = self._class_values["scale"][scale_class]
        span = IMAGE_SIZE - 2 * CENTRE_MARGIN
        centre_x = CENTRE_MARGIN + span * self._class_values["pos_x"][pos_x]
        centre_y = CENTRE_MARGIN + span * self._class_values["pos_y"][pos_y]
        # Class 39 is drawn at angle 0 (not 2*pi in floating point), so it is bitwise class 0's image.
        turns = FULL_SIZES[2] - 1
        angle = (orientation % turns) * (2 * np.pi / turns)

        # The window's top-left pixel, and its pixel centres relative to the sprite's centre.
        left = np.floor(centre_x).astype(np.int64) - WINDOW // 2
        top = np.floor(centre_y).astype(np.int64) - WINDOW // 2
        offsets = np.arange(WINDOW) + 0.5
        dx = left[:, None] + offsets - centre_x[:, None]  # (n, WINDOW)
        dy = top[:, None] + offsets - centre_y[:, None]

        # Canonical coordinates, in table bins, by the inverse similarity: rotate clockwise on screen
        # (y down) and divide by the scale. u = (cos dx - sin dy) / s, v = (sin dx + cos dy) / s.
        # The (n, W) terms are formed in float64 and only their (n, W, W) sums in float32, for speed.
        per_bin = TABLE_BINS_PER_PIXEL / scale
        cos, sin = (np.cos(angle) * per_bin)[:, None], (np.sin(angle) * per_bin)[:, None]
        origin = TABLE_EXTENT * TABLE_BINS_PER_PIXEL
        u = np.subtract((cos * dx + origin).astype(np.float32)[:, None, :], (sin * dy).astype(np.float32)[:, :, None])
        v = np.add((sin * dx + origin).astype(np.float32)[:, None, :], (cos * dy).astype(np.float32)[:, :, None])
        # Truncation toward zero maps (-1, 0) to bin 0 too; bins 0 and B-1 are empty, so clipping is exact.
        column = np.clip(u.astype(np.int32), 0, self._bins - 1)
        row = np.clip(v.astype(np.int32), 0, self._bins - 1)
        index = (shape.astype(np.int32) * self._bins)[:, None, None] + row
        index *= self._bins
        index += column
        windows = self._tables.take(index)

        images = np.zeros((len(factors), IMAGE_SIZE, IMAGE_SIZE, 1), np.uint8)
        for image, window, x, y in zip(images, windows, left, top):
            image[y : y + WINDOW, x : x + WINDOW, 0] = window
        return images
