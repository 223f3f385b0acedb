"""Depth maps as colour images: near surfaces bright and warm, far ones dark and cool."""

import numpy as np

# Anchor colours of the ramp from far (0) to near (1), linearly interpolated in between.
_ANCHORS = np.array([
    [0.00, 18, 16, 54],
    [0.30, 72, 38, 130],
    [0.55, 178, 58, 110],
    [0.80, 240, 132, 54],
    [1.00, 252, 238, 160],
], dtype=np.float64)


def colorize_depth(depth) -> np.ndarray:
    """depth [H, W] (any real dtype) -> uint8 [H, W, 3], scaled to the frame's own depth range.

    A frame of constant depth comes out in the far colour; non-finite depths do too.
    """
    depth = np.asarray(depth, dtype=np.float64)
    assert depth.ndim == 2, f'expected a [H, W] depth map, got shape {depth.shape}'
    finite = np.isfinite(depth)
    lo, hi = (depth[finite].min(), depth[finite].max()) if finite.any() else (0.0, 0.0)
    nearness = np.zeros_like(depth)
    if hi > lo:
        nearness = np.where(finite, (hi - depth) / (hi - lo), 0.0)
    channels = [np.interp(nearness, _ANCHORS[:, 0], _ANCHORS[:, 1 + i]) for i in range(3)]
    return np.rint(np.stack(channels, axis=-1)).astype(np.uint8)
