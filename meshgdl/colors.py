"""Label colours: one palette for every labelled mesh meshgdl writes or shows.

``meshgdl segment``'s coloured PLY, the viewer's label feature and its legend all
colour a label *value* the same way, so label 3 has one colour everywhere.
"""

from __future__ import annotations

import numpy as np

#: Colour of unlabelled (-1) vertices.
UNLABELLED_RGB = (128, 128, 128)

# Distinct, colour-blind-aware-ish colours (first ten follow the ten figure parts).
_PALETTE = np.array(
    [
        [230, 159, 0],    # head: orange
        [86, 180, 233],   # torso: sky blue
        [0, 158, 115],    # left upper arm: green
        [240, 228, 66],   # left lower arm: yellow
        [0, 114, 178],    # right upper arm: blue
        [213, 94, 0],     # right lower arm: vermilion
        [204, 121, 167],  # left upper leg: pink
        [120, 60, 160],   # left lower leg: purple
        [160, 200, 60],   # right upper leg: lime
        [120, 80, 40],    # right lower leg: brown
        [255, 127, 127], [127, 255, 212], [31, 119, 180], [255, 187, 120], [44, 160, 44],
        [214, 39, 40], [148, 103, 189], [140, 86, 75], [227, 119, 194], [188, 189, 34],
    ],
    dtype=np.uint8,
)


def label_colors(labels: np.ndarray) -> np.ndarray:
    """(n,) int labels -> (n, 3) uint8 colours; -1 (unlabelled) is grey, labels past the
    fixed palette get golden-ratio hues."""
    labels = np.asarray(labels, dtype=np.int64)
    out = np.empty((len(labels), 3), dtype=np.uint8)
    out[:] = UNLABELLED_RGB
    ok = labels >= 0
    small = ok & (labels < len(_PALETTE))
    out[small] = _PALETTE[labels[small]]
    big = ok & ~small
    if big.any():
        h = (labels[big] * 0.6180339887498949) % 1.0
        rgb = np.stack([_hue(h + 1 / 3), _hue(h), _hue(h - 1 / 3)], axis=1)
        out[big] = np.round(40 + 190 * rgb).astype(np.uint8)
    return out


def _hue(h: np.ndarray) -> np.ndarray:
    x = np.abs(((h % 1.0) * 6.0) - 3.0) - 1.0
    return np.clip(x, 0.0, 1.0)


__all__ = ["label_colors", "UNLABELLED_RGB"]
