"""Alias-free leaky ReLU (StyleGAN3): bias, upsample, leaky ReLU, clamp, downsample.

Only the composite reference implementation exists here (built from `bias_act` and `upfirdn2d`, which
use their own CUDA kernels when available); `impl='cuda'` is accepted for interface compatibility.
"""

import numpy as np
import torch

from . import bias_act, upfirdn2d
from .upfirdn2d import _get_filter_size, _parse_padding, _parse_scaling


def filtered_lrelu(x, fu=None, fd=None, b=None, up=1, down=1, padding=0, gain=np.sqrt(2), slope=0.2, clamp=None,
        flip_filter=False, impl='cuda'):
    """Per channel of x [N, C, H, W]:
    1. add the bias `b` [C];
    2. upsample by `up` with filter `fu` (zero insertion, `padding` = [px0, px1, py0, py1], int or pair;
       negative crops; the filter shrinks the image so that every output sees only padded input);
    3. multiply by `gain`, apply leaky ReLU with `slope`, clamp to +-`clamp`;
    4. filter with `fd` and keep every `down`-th sample.
    """
    assert isinstance(x, torch.Tensor) and x.ndim == 4, 'x must be [N, C, H, W]'
    assert impl in ['ref', 'cuda']
    fu_w, fu_h = _get_filter_size(fu)
    fd_w, fd_h = _get_filter_size(fd)
    if b is not None:
        assert isinstance(b, torch.Tensor) and b.shape == (x.shape[1],), 'b must have shape [C]'
    up_x, up_y = _parse_scaling(up)
    assert up_x == up_y, 'filtered_lrelu: up must be the same along both axes'
    down_x, down_y = _parse_scaling(down)
    assert down_x == down_y, 'filtered_lrelu: down must be the same along both axes'
    px0, px1, py0, py1 = _parse_padding(padding)
    assert gain == float(gain) and gain > 0 and slope == float(slope) and slope >= 0
    assert clamp is None or clamp >= 0

    # Output size, checked up front for a clear error instead of a shape mismatch deep inside.
    out_w = (x.shape[3] * up_x + (px0 + px1) - (fu_w - 1) - (fd_w - 1) + (down_x - 1)) // down_x
    out_h = (x.shape[2] * up_y + (py0 + py1) - (fu_h - 1) - (fd_h - 1) + (down_y - 1)) // down_y
    if out_w < 1 or out_h < 1:
        raise ValueError(f'filtered_lrelu: empty output ({out_w}x{out_h}) for input {list(x.shape)}')

    x = bias_act.bias_act(x, b, impl=impl)
    x = upfirdn2d.upfirdn2d(x, fu, up=up_x, padding=[px0, px1, py0, py1], gain=up_x ** 2, flip_filter=flip_filter, impl=impl)
    x = bias_act.bias_act(x, act='lrelu', alpha=slope, gain=gain, clamp=clamp, impl=impl)
    x = upfirdn2d.upfirdn2d(x, fd, down=down_x, flip_filter=flip_filter, impl=impl)
    assert x.shape[2:] == (out_h, out_w)
    return x
