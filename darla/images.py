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


def save_png(path: Path, image: np.ndarray, labels: Sequence[str] | None = None) -> Path:
    """Save an RGB uint8 image; ``labels`` go in a left margin, one per equal-height band."""
    if labels:
        margin = 8 + 7 * max(len(s) for s in labels)
        canvas = np.full((image.shape[0], image.shape[1] + margin, 3), 255, np.uint8)
        canvas[:, margin:] = image
        band = image.shape[0] / len(labels)
        for i, text in enumerate(labels):
            cv2.putText(
                canvas, text, (4, int(i * band + band / 2) + 4), cv2.FONT_HERSHEY_PLAIN, 0.8, (0, 0, 0), 1, cv2.LINE_AA
            )
        image = canvas
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
