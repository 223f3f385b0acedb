"""Milliseconds per call of bias_act / upfirdn2d / conv2d_resample: reference path vs CUDA kernels.

    python benchmarks/bench_ops.py                  # CUDA if available, else CPU (reference only)
    python benchmarks/bench_ops.py --device=cpu --scale=0.25

The CUDA plugins are compiled on first use (the one-time build is not timed). Each row times the forward
pass and forward + backward for the same inputs.
"""

import contextlib
import os
import sys
import time

import click
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cli  # noqa: E402
from torch_utils import custom_ops  # noqa: E402
from torch_utils.ops import bias_act, conv2d_resample, upfirdn2d  # noqa: E402


def _benchmarks(scale):
    """(name, input shape, extra inputs, fn) for shapes typical of the EG3D generator, discriminator and augment."""
    s = lambda n: max(int(n * scale), 4)
    f4 = upfirdn2d.setup_filter([1, 3, 3, 1])
    f12 = upfirdn2d.setup_filter([1, 2, 4, 7, 10, 12, 12, 10, 7, 4, 2, 1])
    return [
        ('bias_act lrelu clamp', [4, 128, s(256), s(256)], dict(b=[128]),
            lambda x, b: bias_act.bias_act(x, b, act='lrelu', clamp=256)),
        ('bias_act swish', [4, 128, s(128), s(128)], dict(b=[128]),
            lambda x, b: bias_act.bias_act(x, b, act='swish')),
        ('upsample2d 4-tap', [4, 128, s(128), s(128)], dict(f=f4),
            lambda x, f: upfirdn2d.upsample2d(x, f)),
        ('downsample2d 4-tap', [4, 128, s(256), s(256)], dict(f=f4),
            lambda x, f: upfirdn2d.downsample2d(x, f)),
        ('upsample2d 12-tap sep', [4, 6, s(512), s(512)], dict(f=f12),
            lambda x, f: upfirdn2d.upsample2d(x, f)),
        ('conv2d_resample up2 3x3', [4, 128, s(128), s(128)], dict(f=f4, w=[128, 128, 3, 3]),
            lambda x, f, w: conv2d_resample.conv2d_resample(x, w, f=f, up=2, padding=1, flip_weight=False)),
        ('conv2d_resample down2 3x3', [4, 128, s(256), s(256)], dict(f=f4, w=[128, 128, 3, 3]),
            lambda x, f, w: conv2d_resample.conv2d_resample(x, w, f=f, down=2, padding=1)),
    ]


@contextlib.contextmanager
def _impl(impl):
    """Select the implementation of every op through the documented environment switch."""
    previous = os.environ.get(custom_ops.DISABLE_ENV_VAR)
    os.environ[custom_ops.DISABLE_ENV_VAR] = '1' if impl == 'ref' else '0'
    try:
        yield
    finally:
        if previous is None:
            del os.environ[custom_ops.DISABLE_ENV_VAR]
        else:
            os.environ[custom_ops.DISABLE_ENV_VAR] = previous


def _time_ms(fn, device, iters):
    fn()  # Warm-up (and plugin build).
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / iters * 1000


@click.command()
@click.option('--device', type=cli.DEVICE, default=None, help='Torch device  [default: cuda if available]')
@click.option('--iters', default=20, show_default=True, help='Timed calls per measurement')
@click.option('--scale', default=1.0, show_default=True, help='Spatial size multiplier (use < 1 on CPU)')
@click.option('--dtype', type=click.Choice(['float32', 'float16']), default='float32', show_default=True)
def main(device, iters, scale, dtype):
    device = cli.parse_device(device)
    dtype = getattr(torch, dtype)
    if dtype == torch.float16 and device.type != 'cuda':
        raise click.BadParameter('float16 needs --device=cuda', param_hint='--dtype')
    torch.backends.cudnn.benchmark = True
    impls = ['ref', 'cuda'] if device.type == 'cuda' else ['ref']
    print(f'device={device} dtype={dtype} iters={iters} scale={scale}')
    print(f'{"op":28s} {"shape":22s} ' + ' '.join(f'{impl + " fwd":>10s} {impl + " f+b":>10s}' for impl in impls))
    for name, shape, extra, fn in _benchmarks(scale):
        x = torch.randn(shape, device=device, dtype=dtype, requires_grad=True)
        args = {}
        for key, value in extra.items():
            args[key] = value.to(device) if isinstance(value, torch.Tensor) else \
                torch.randn(value, device=device, dtype=dtype, requires_grad=True)
        cols = []
        forward = lambda: fn(x, **args)
        both = lambda: forward().square().mean().backward()
        for impl in impls:
            with _impl(impl):
                with torch.no_grad():
                    cols.append(_time_ms(forward, device, iters))
                cols.append(_time_ms(both, device, iters))
        print(f'{name:28s} {str(shape):22s} ' + ' '.join(f'{ms:10.3f}' for ms in cols))


if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
