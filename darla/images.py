"""Writing pictures: PNG grids (optionally with a label per row band) and animated GIFs."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from darla.artifacts import atomic_write


def _encode(ext: str, rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {ext} image of shape {rgb.shape}")
    return buf.tobytes()


LABEL_FONT, LABEL_SCALE = cv2.FONT_HERSHEY_PLAIN, 0.9


def label_rows(image: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """``image`` with a white left margin naming each of its equal-height bands (rows of a grid), one
    label per band from the top; a label's newlines split it into lines, centred on its band."""
    lines = [str(label).split("\n") for label in labels]
    sizes = [[cv2.getTextSize(text, LABEL_FONT, LABEL_SCALE, 1)[0] for text in label] for label in lines]
    margin = 10 + max(width for label in sizes for width, _ in label)
    canvas = np.full((image.shape[0], image.shape[1] + margin, 3), 255, np.uint8)
    canvas[:, margin:] = image
    band = image.shape[0] / len(labels)
    for i, (label, size) in enumerate(zip(lines, sizes)):
        step = max(height for _, height in size) + 5
        top = i * band + (band - len(label) * step) / 2 + step - 3
        for j, text in enumerate(label):
            cv2.putText(canvas, text, (4, round(top + j * step)), LABEL_FONT, LABEL_SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def save_png(path: Path, image: np.ndarray, labels: Sequence[str] | None = None) -> Path:
    """Save an RGB uint8 image; ``labels`` go in a left margin, one per equal-height band (:func:`label_rows`)."""
    if labels:
        image = label_rows(image, labels)
    data = _encode(".png", image)
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def save_gif(path: Path, frames: Sequence[np.ndarray], frame_ms: int) -> Path:
    """Save RGB uint8 frames as an animated GIF, each shown ``frame_ms`` milliseconds."""
    animation = cv2.Animation()
    animation.frames = [cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) for frame in frames]
    animation.durations = [frame_ms] * len(frames)
    ok, buf = cv2.imencodeanimation(".gif", animation)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {path}")
    return atomic_write(path, lambda tmp: tmp.write_bytes(buf.tobytes()))


def save_traversal_gif(path: Path, rows: list[np.ndarray], frame_ms: int = 120) -> Path:
    """Animate traversals: frame t shows step t of every latent's sweep side by side, forth and back."""
    steps = rows[0].shape[0]
    order = list(range(steps)) + list(range(steps - 2, 0, -1))
    return save_gif(path, [np.concatenate([row[t] for row in rows], axis=1) for t in order], frame_ms)
