"""2-D convolution combined with FIR up/downsampling, using the cheapest equivalent op sequence."""

import torch
import torch.nn.functional as F

from . import conv2d_gradfix, upfirdn2d
from .upfirdn2d import _get_filter_size, _parse_padding


def _conv(x, w, stride=1, padding=0, groups=1, transpose=False, flip_weight=True):
    """conv2d (or conv_transpose2d); with flip_weight=False the kernel is flipped, i.e. a true convolution."""
    if not flip_weight and (w.shape[2] > 1 or w.shape[3] > 1):
        w = w.flip([2, 3])
    op = conv2d_gradfix.conv_transpose2d if transpose else conv2d_gradfix.conv2d
    return op(x, w, stride=stride, padding=padding, groups=groups)


def _transpose_weight(w, groups):
    """[out, in/groups, kh, kw] conv2d weight -> [in, out/groups, kh, kw] conv_transpose2d weight."""
    out_channels, in_per_group, kh, kw = w.shape
    w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw)
    return w.transpose(1, 2).reshape(groups * in_per_group, out_channels // groups, kh, kw)


def conv2d_resample(x, w, f=None, up=1, down=1, padding=0, groups=1, flip_weight=True, flip_filter=False):
    """Upsample by `up` (FIR filter `f`), convolve with `w` [out, in/groups, kh, kw], downsample by `down`.

    `padding` (int, [px, py] or [px0, px1, py0, py1]) is applied to the input as if no resampling took
    place. `flip_weight=False` flips the kernel (true convolution); callers pass `flip_weight=(up == 1)`,
    which means the stored weights are never flipped on either path.
    """
    assert isinstance(x, torch.Tensor) and x.ndim == 4, 'x must be [N, C, H, W]'
    assert isinstance(w, torch.Tensor) and w.ndim == 4 and w.dtype == x.dtype, 'w must be [O, I, kh, kw] with x.dtype'
    assert f is None or (isinstance(f, torch.Tensor) and f.ndim in [1, 2] and f.dtype == torch.float32)
    assert isinstance(up, int) and up >= 1
    assert isinstance(down, int) and down >= 1
    assert isinstance(groups, int) and groups >= 1
    out_channels, in_per_group, kh, kw = w.shape
    assert x.shape[1] == in_per_group * groups, f'x has {x.shape[1]} channels, w expects {in_per_group * groups}'
    fw, fh = _get_filter_size(f)
    px0, px1, py0, py1 = _parse_padding(padding)

    # Extra padding that keeps the resampled image centred, as upsample2d / downsample2d would add.
    if up > 1:
        px0, px1, py0, py1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2, py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1, py0, py1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2, py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    pad = [px0, px1, py0, py1]

    # A 1x1 kernel commutes with the filtering: resample the smaller of the two tensors.
    if kw == 1 and kh == 1 and down > 1 and up == 1:
        x = upfirdn2d.upfirdn2d(x, f, down=down, padding=pad, flip_filter=flip_filter)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)
    if kw == 1 and kh == 1 and up > 1 and down == 1:
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d.upfirdn2d(x, f, up=up, padding=pad, gain=up ** 2, flip_filter=flip_filter)

    # Downsampling only: low-pass filter, then a strided convolution.
    if down > 1 and up == 1:
        x = upfirdn2d.upfirdn2d(x, f, padding=pad, flip_filter=flip_filter)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)

    # Upsampling: a strided transposed convolution does the zero insertion and the convolution at
    # once; the FIR filter then smooths. Whatever of the padding the transposed convolution can absorb
    # as output cropping (t) it does; the filter pass gets the rest.
    if up > 1:
        w = w.transpose(0, 1) if groups == 1 else _transpose_weight(w, groups)
        px0, px1, py0, py1 = px0 - (kw - 1), px1 - (kw - up), py0 - (kh - 1), py1 - (kh - up)
        tx = max(min(-px0, -px1), 0)
        ty = max(min(-py0, -py1), 0)
        x = _conv(x, w, stride=up, padding=[ty, tx], groups=groups, transpose=True, flip_weight=(not flip_weight))
        x = upfirdn2d.upfirdn2d(x, f, padding=[px0 + tx, px1 + tx, py0 + ty, py1 + ty], gain=up ** 2, flip_filter=flip_filter)
        if down > 1:
            x = upfirdn2d.upfirdn2d(x, f, down=down, flip_filter=flip_filter)
        return x

    # No resampling: conv2d pads symmetrically by itself; anything else is padded (or cropped) first.
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)
    return _conv(F.pad(x, pad), w, groups=groups, flip_weight=flip_weight)
