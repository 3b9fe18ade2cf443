"""Appearance shifts: observation wrappers that change how frames look, never what happens.

Each shift wraps any environment whose observations are uint8 RGB frames (H, W, 3) and takes a
graded ``intensity`` in [0, 1]: 0 returns every frame unchanged (the same array), 1 is the
strongest shift, and values in between grade it, so transfer can be plotted against shift size.
A domain names its shifts in YAML (``wrappers: {hue: {intensity: 0.5}}``, see envs/domains.py);
each name is one file of configs/shift/ whose ``_target_`` is one of the classes below (or a
wrapper of your own: any ``gym.Wrapper`` whose constructor takes the env and keyword arguments).

- ``tint``                 blend every pixel towards one colour (halfway at intensity 1)
- ``hue``                  rotate colours about the grey axis of RGB space (180 degrees at 1)
- ``channel_permutation``  blend towards a named reordering of the colour channels ("brg", ...)
- ``brightness_contrast``  scale brightness and contrast towards the factors given for intensity 1
- ``background_noise``     uniform noise on the background pixels only

The colour shifts are affine maps of each pixel's RGB vector, one OpenCV call on the whole frame
(about 5 microseconds for 64x64). Background noise finds the background and draws random numbers
(about 0.1 ms), from a generator seeded on ``reset(seed=...)``, so a seeded episode looks the same
every time.
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping, Sequence

import cv2
import gymnasium as gym
import numpy as np
from gymnasium import spaces


class AppearanceShift(gym.ObservationWrapper):
    """Base class: checks the frames and the intensity; intensity 0 passes frames through untouched."""

    def __init__(self, env: gym.Env, intensity: float):
        super().__init__(env)
        space = env.observation_space
        if not (
            isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3 and space.shape[2] == 3
        ):
            raise ValueError(
                f"{type(self).__name__} shifts uint8 RGB frames (H, W, 3); this env's observations are {space}"
            )
        if not 0.0 <= float(intensity) <= 1.0:
            raise ValueError(f"{type(self).__name__}: intensity must lie in [0, 1], got {intensity}")
        self.intensity = float(intensity)

    def observation(self, frame: np.ndarray) -> np.ndarray:
        return frame if self.intensity == 0.0 else self.shift(frame)

    def shift(self, frame: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class LinearColourShift(AppearanceShift):
    """A shift that is one affine map of every pixel's RGB vector: ``matrix`` (3, 4) @ (r, g, b, 1).

    Applied by cv2.transform in one pass, which rounds to the nearest level and clips to 0..255.
    """

    matrix: np.ndarray

    def shift(self, frame: np.ndarray) -> np.ndarray:
        return cv2.transform(frame, self.matrix)


def _affine(linear: np.ndarray, offset: np.ndarray | float = 0.0) -> np.ndarray:
    """The (3, 4) float32 matrix of pixel -> linear @ pixel + offset."""
    return np.hstack([linear, np.broadcast_to(offset, (3,)).reshape(3, 1)]).astype(np.float32)


class ColourTint(LinearColourShift):
    """Blend every pixel towards ``rgb``: pixel + intensity * max_blend * (rgb - pixel).

    ``max_blend`` (default 0.5) is the blend at intensity 1: halfway, so the scene stays visible.
    """

    def __init__(self, env: gym.Env, intensity: float, rgb: Sequence[int] = (255, 0, 0), max_blend: float = 0.5):
        super().__init__(env, intensity)
        if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
            raise ValueError(f"tint: rgb must be three values in 0..255, got {list(rgb)}")
        blend = self.intensity * float(max_blend)
        self.matrix = _affine((1 - blend) * np.eye(3), blend * np.asarray(rgb, np.float64))


class HueRotation(LinearColourShift):
    """Rotate every pixel's RGB vector about the grey axis (1, 1, 1) by intensity * 180 degrees.

    Greys stay grey and the mean of the three channels is kept; saturated colours turn through
    the colour wheel (120 degrees maps red to green to blue, 180 gives the complementary hue).
    Colours the rotation moves outside the RGB cube are clipped. A linear map, unlike HSV's hue,
    so one matrix per frame instead of two colour-space conversions.
    """

    def __init__(self, env: gym.Env, intensity: float):
        super().__init__(env, intensity)
        angle = np.pi * self.intensity
        axis = np.full(3, 1 / np.sqrt(3))
        cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        # Rodrigues' rotation formula about the unit grey axis.
        rotation = np.cos(angle) * np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * np.outer(axis, axis)
        self.matrix = _affine(rotation)


class ChannelPermutation(LinearColourShift):
    """Blend every pixel towards its channels reordered as ``permutation`` says.

    ``permutation`` names the source channel of each output channel: "brg" makes the red output
    the old blue, green the old red, blue the old green. Intensity 1 is the exact reordering,
    0.5 the average of the frame and its reordering.
    """

    def __init__(self, env: gym.Env, intensity: float, permutation: str = "brg"):
        super().__init__(env, intensity)
        if sorted(permutation) != ["b", "g", "r"] or permutation == "rgb":
            raise ValueError(
                f"channel_permutation: permutation must reorder the letters 'rgb' (e.g. 'brg', 'bgr'), "
                f"got {permutation!r}"
            )
        reorder = np.eye(3)[["rgb".index(c) for c in permutation]]
        self.matrix = _affine((1 - self.intensity) * np.eye(3) + self.intensity * reorder)


class BrightnessContrast(LinearColourShift):
    """Scale brightness by a gain, then contrast about mid-grey: (pixel * gain - 127.5) * contrast + 127.5.

    ``brightness`` and ``contrast`` are the factors at intensity 1 (defaults: half as bright,
    contrast unchanged); intensity t uses 1 + t * (factor - 1) for each.
    """

    def __init__(self, env: gym.Env, intensity: float, brightness: float = 0.5, contrast: float = 1.0):
        super().__init__(env, intensity)
        if brightness < 0 or contrast < 0:
            raise ValueError(f"brightness_contrast: brightness and contrast must be >= 0, got {brightness}, {contrast}")
        gain = 1 + self.intensity * (brightness - 1)
        stretch = 1 + self.intensity * (contrast - 1)
        self.matrix = _affine(gain * stretch * np.eye(3), 127.5 * (1 - stretch))


class BackgroundNoise(AppearanceShift):
    """Uniform noise of up to +-intensity * max_amplitude (256 levels) on the background pixels.

    The background is every pixel within ``tolerance`` (largest channel difference) of the
    background colour: ``background_rgb`` if given, else each frame's most common colour (the
    floor or the walls of most rendered scenes, never a small object or agent). Noise is drawn per
    pixel and channel from a generator seeded by ``reset(seed=...)``: an episode reset with the
    same seed gets the same noise; later unseeded resets continue that generator's stream.
    """

    def __init__(
        self,
        env: gym.Env,
        intensity: float,
        max_amplitude: float = 96.0,
        tolerance: int = 8,
        background_rgb: Sequence[int] | None = None,
    ):
        super().__init__(env, intensity)
        if background_rgb is not None and (len(background_rgb) != 3 or not all(0 <= c <= 255 for c in background_rgb)):
            raise ValueError(
                f"background_noise: background_rgb must be three values in 0..255, got {list(background_rgb)}"
            )
        self.amplitude = self.intensity * float(max_amplitude)
        self.tolerance = int(tolerance)
        self.background_rgb = None if background_rgb is None else tuple(int(c) for c in background_rgb)
        self.noise_rng = np.random.default_rng()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self.noise_rng = np.random.default_rng(seed)
        return super().reset(seed=seed, options=options)

    def background_mask(self, frame: np.ndarray) -> np.ndarray:
        """uint8 (H, W), 255 on the pixels within ``tolerance`` of the background colour in every channel."""
        colour = self.background_rgb if self.background_rgb is not None else most_common_colour(frame)
        low = tuple(max(int(c) - self.tolerance, 0) for c in colour)
        high = tuple(min(int(c) + self.tolerance, 255) for c in colour)
        return cv2.inRange(frame, low, high)

    def shift(self, frame: np.ndarray) -> np.ndarray:
        # Bytes 0..255 centred on 128 and scaled: one uniform draw per pixel and channel, in one
        # saturating OpenCV call (frame + scale * (bytes - 128)).
        noise = self.noise_rng.integers(0, 256, size=frame.shape, dtype=np.uint8)
        scale = self.amplitude / 128.0
        noisy = cv2.addWeighted(frame, 1.0, noise, scale, -128.0 * scale)
        return cv2.copyTo(noisy, self.background_mask(frame), frame.copy())


def most_common_colour(frame: np.ndarray) -> tuple[int, int, int]:
    """The RGB value of the most pixels of a uint8 frame (H, W, 3)."""
    keys = (frame[..., 0].astype(np.int32) << 16) | (frame[..., 1].astype(np.int32) << 8) | frame[..., 2]
    values, counts = np.unique(keys, return_counts=True)
    key = int(values[np.argmax(counts)])
    return key >> 16, (key >> 8) & 255, key & 255


def shift_class(target: str) -> type[gym.Wrapper]:
    """The wrapper class a shift's ``_target_`` (``module.Class``) names."""
    module, _, name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"shift _target_ {target!r} names no class ({err})") from None
    if not (isinstance(cls, type) and issubclass(cls, gym.Wrapper)):
        raise ValueError(f"shift _target_ {target!r} is not a gymnasium Wrapper class")
    return cls


def apply_shifts(env: gym.Env, specs: Mapping[str, Mapping[str, Any]], targets: Mapping[str, str]) -> gym.Env:
    """Wrap ``env`` in the shifts ``specs`` names (name -> keyword arguments), in order; ``targets``
    maps each shift name to its class (``module.Class``, configs/shift/<name>.yaml's ``_target_``)."""
    for name, kwargs in specs.items():
        if name not in targets:
            raise ValueError(f"unknown shift {name!r}; known shifts: {sorted(targets)} (configs/shift/)")
        try:
            env = shift_class(targets[name])(env, **dict(kwargs or {}))
        except TypeError as err:
            raise ValueError(f"shift {name!r}: bad arguments {dict(kwargs or {})}: {err}") from None
    return env
