"""Resampling with FIR filters: upsample (zero insertion), pad, filter, downsample.

`upfirdn2d()` is the general op; `filter2d()`, `upsample2d()` and `downsample2d()` choose the padding that
keeps images aligned. Filters come from `setup_filter()`: 2-D, or 1-D for separable filtering (width
first, then height). On CUDA tensors a compiled kernel (upfirdn2d.cu, built on first use by
`torch_utils.custom_ops`) replaces the chain of PyTorch ops; everywhere else, and whenever the kernel
cannot be built, the pure-PyTorch reference runs and defines the numbers. Both paths support
second-order gradients with respect to x. Set EG3D_DISABLE_CUDA_OPS=1 to force the reference path.
"""

import os

import numpy as np
import torch
import torch.nn.functional as F

from .. import custom_ops
from . import conv2d_gradfix

_plugin = custom_ops.OptionalPlugin('eg3d_upfirdn2d_plugin', sources=['upfirdn2d.cpp', 'upfirdn2d.cu'],
    headers=['upfirdn2d.h', 'eg3d_kernel_common.h'], source_dir=os.path.dirname(__file__))


def _as_ints(values, name):
    if not isinstance(values, (list, tuple, np.ndarray)) or not all(isinstance(v, (int, np.integer)) for v in values):
        raise TypeError(f'{name} must be an int or a list of ints, got {values!r}')
    return [int(v) for v in values]


def _parse_scaling(scaling):
    """int or [x, y] -> (sx, sy)."""
    if isinstance(scaling, (int, np.integer)):
        scaling = [scaling, scaling]
    sx, sy = _as_ints(scaling, 'up/down')
    assert sx >= 1 and sy >= 1, f'up/down factors must be >= 1, got {scaling}'
    return sx, sy


def _parse_padding(padding):
    """int, [px, py] or [px0, px1, py0, py1] -> [px0, px1, py0, py1]; negative values crop."""
    if isinstance(padding, (int, np.integer)):
        padding = [padding, padding]
    padding = _as_ints(padding, 'padding')
    if len(padding) == 2:
        padding = [padding[0], padding[0], padding[1], padding[1]]
    assert len(padding) == 4, f'padding must have 1, 2 or 4 entries, got {padding}'
    return padding


def _get_filter_size(f):
    """(width, height) of a 1-D, 2-D or missing filter."""
    if f is None:
        return 1, 1
    assert isinstance(f, torch.Tensor) and f.ndim in [1, 2]
    return int(f.shape[-1]), int(f.shape[0])


def setup_filter(f, device=torch.device('cpu'), normalize=True, flip_filter=False, gain=1, separable=None):
    """Turn filter taps into a float32 tensor for the ops of this module.

    A scalar becomes a 1-tap filter. `separable=None` keeps 1-D filters with >= 8 taps separable; other
    1-D filters become their outer product. Then: divide by the sum (`normalize`), flip (`flip_filter`),
    multiply by `gain ** (ndim / 2)` so that the 2-D filter as a whole is scaled by `gain`.
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    assert f.ndim in [0, 1, 2] and f.numel() > 0
    if f.ndim == 0:
        f = f.reshape([1])
    if separable is None:
        separable = (f.ndim == 1 and f.numel() >= 8)
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    assert f.ndim == (1 if separable else 2), 'a separable filter must be 1-D'
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


def upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1, impl='cuda'):
    """Upsample, pad, FIR-filter and downsample a batch of images [N, C, H, W].

    1. insert `up - 1` zeros after every sample (int or [x, y]);
    2. pad by `padding` (int, [px, py] or [px0, px1, py0, py1]); negative values crop;
    3. convolve every channel with `f` (None = identity) scaled by `gain ** (f.ndim / 2)`, keeping only
       outputs whose footprint lies inside the padded image; `flip_filter=True` correlates instead;
    4. keep every `down`-th sample (int or [x, y]).
    `impl='cuda'` uses the compiled kernel for CUDA tensors when available, `impl='ref'` never.
    """
    assert isinstance(x, torch.Tensor) and x.ndim == 4, 'x must be a 4-D tensor [N, C, H, W]'
    assert impl in ['ref', 'cuda']
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    assert isinstance(f, torch.Tensor) and f.ndim in [1, 2] and f.is_floating_point()
    up, down, padding = _parse_scaling(up), _parse_scaling(down), _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    padded = (x.shape[3] * up[0] + padding[0] + padding[1], x.shape[2] * up[1] + padding[2] + padding[3])
    if padded[0] < fw or padded[1] < fh:
        raise ValueError(f'upfirdn2d: the padded input ({padded[0]}x{padded[1]}) is smaller than the filter ({fw}x{fh})')

    if not f.requires_grad and _plugin.for_tensor(x, impl) is not None:  # The kernel has no filter gradient.
        return _upfirdn2d_cuda(x, f, up, down, padding, flip_filter, gain)
    return _upfirdn2d_ref(x, f, up, down, padding, flip_filter, gain)


def _upfirdn2d_ref(x, f, up, down, padding, flip_filter, gain):
    (upx, upy), (downx, downy) = up, down
    batch, channels, height, width = x.shape
    if upx > 1 or upy > 1:
        # Zeros after every sample: pad singleton axes behind each row / column, then merge.
        x = x.reshape([batch, channels, height, 1, width, 1])
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape([batch, channels, height * upy, width * upx])
    x = F.pad(x, padding)  # F.pad crops where the padding is negative.

    # conv2d correlates, so a true convolution needs the flipped filter.
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    weight = f[None, None].repeat([channels, 1] + [1] * f.ndim)
    if f.ndim == 2:
        x = conv2d_gradfix.conv2d(input=x, weight=weight, groups=channels)
    else:
        x = conv2d_gradfix.conv2d(input=x, weight=weight.unsqueeze(2), groups=channels)
        x = conv2d_gradfix.conv2d(input=x, weight=weight.unsqueeze(3), groups=channels)
    return x[:, :, ::downy, ::downx]


def _cuda_filter(f, flip_filter, scale, dtype):
    # Scale in the filter's own precision first, as the reference does, then widen for the kernel.
    w = (f * scale).to(torch.float64 if dtype == torch.float64 else torch.float32)
    if not flip_filter:
        w = w.flip([0, 1])
    return w.contiguous()


def _upfirdn2d_cuda(x, f, up, down, padding, flip_filter, gain):
    (upx, upy), (downx, downy), (px0, px1, py0, py1) = up, down, padding
    if f.ndim == 2:
        return _Upfirdn2dCuda.apply(x, _cuda_filter(f, flip_filter, gain, x.dtype), (upx, upy, downx, downy, px0, px1, py0, py1))
    # Separable: a horizontal pass, then a vertical one, each carrying gain ** 0.5.
    scale = gain ** 0.5
    x = _Upfirdn2dCuda.apply(x, _cuda_filter(f[None, :], flip_filter, scale, x.dtype), (upx, 1, downx, 1, px0, px1, 0, 0))
    return _Upfirdn2dCuda.apply(x, _cuda_filter(f[:, None], flip_filter, scale, x.dtype), (1, upy, 1, downy, 0, 0, py0, py1))


class _Upfirdn2dCuda(torch.autograd.Function):
    """y = kernel(x, w); w is the 2-D correlation filter, cfg = (upx, upy, downx, downy, px0, px1, py0, py1)."""

    @staticmethod
    def forward(ctx, x, w, cfg):
        y = _plugin.get().upfirdn2d(x, w, *cfg)
        ctx.save_for_backward(w)
        ctx.cfg = cfg
        ctx.sizes = (x.shape[2], x.shape[3], y.shape[2], y.shape[3])
        return y

    @staticmethod
    def backward(ctx, dy):
        # The adjoint of upfirdn2d is upfirdn2d with up/down swapped, the filter flipped and the
        # padding chosen so that the result has the input's size.
        w, = ctx.saved_tensors
        upx, upy, downx, downy, px0, px1, py0, py1 = ctx.cfg
        in_h, in_w, out_h, out_w = ctx.sizes
        fh, fw = w.shape
        adjoint = (downx, downy, upx, upy,
            fw - 1 - px0, in_w * upx - out_w * downx + px0 - upx + 1,
            fh - 1 - py0, in_h * upy - out_h * downy + py0 - upy + 1)
        dx = _Upfirdn2dCuda.apply(dy, w.flip([0, 1]), adjoint) if ctx.needs_input_grad[0] else None
        return dx, None, None


def filter2d(x, f, padding=0, flip_filter=False, gain=1, impl='cuda'):
    """Filter with `f`, padded so that the output has the input's size (plus `padding`)."""
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1, impl='cuda'):
    """Upsample by `up` with interpolation filter `f`; the output is `up` times larger (plus `padding`)."""
    upx, upy = _parse_scaling(up)
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [px0 + (fw + upx - 1) // 2, px1 + (fw - upx) // 2, py0 + (fh + upy - 1) // 2, py1 + (fh - upy) // 2]
    return upfirdn2d(x, f, up=up, padding=p, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)


def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1, impl='cuda'):
    """Downsample by `down` with anti-aliasing filter `f`; the output is `down` times smaller (plus `padding`)."""
    downx, downy = _parse_scaling(down)
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [px0 + (fw - downx + 1) // 2, px1 + (fw - downx) // 2, py0 + (fh - downy + 1) // 2, py1 + (fh - downy) // 2]
    return upfirdn2d(x, f, down=down, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)
