"""viz.colormap: depth -> colours."""

import numpy as np

from viz.colormap import colorize_depth


def test_near_is_bright_and_range_is_per_frame():
    depth = np.array([[2.0, 2.5], [3.0, np.nan]])
    rgb = colorize_depth(depth)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [252, 238, 160]     # nearest: the near end of the ramp
    assert rgb[1, 0].tolist() == [18, 16, 54]        # farthest: the far end
    assert rgb[1, 1].tolist() == [18, 16, 54]        # no depth: far
    brightness = rgb.astype(int).sum(-1)
    assert brightness[0, 0] > brightness[0, 1] > brightness[1, 0]
    assert np.array_equal(colorize_depth(depth * 10 + 5), rgb)  # scaled to the frame's own range


def test_constant_depth():
    assert np.all(colorize_depth(np.full([3, 4], 2.7, dtype=np.float32)) == [18, 16, 54])
