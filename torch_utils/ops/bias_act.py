"""Fused bias + activation + gain + clamp.

`bias_act()` computes `clamp(act(x + b) * gain, -clamp, +clamp)` with `b` broadcast along `dim`. On CUDA
tensors it uses a compiled kernel (bias_act.cu, built on first use by `torch_utils.custom_ops`) that
needs less memory than the chain of PyTorch ops; everywhere else, and whenever the kernel cannot be
built, it runs the pure-PyTorch reference, which defines the numbers. Both paths support second-order
gradients. Set EG3D_DISABLE_CUDA_OPS=1 to force the reference path.
"""

import collections
import os

import numpy as np
import torch
import torch.nn.functional as F

import dnnlib

from .. import custom_ops


def _activation(func, def_alpha, def_gain, cuda_idx, ref, has_2nd_grad):
    # ref: which tensor the CUDA backward reads ('x' = the input, 'y' = the output; the latter works for
    # sign-preserving piecewise-linear functions and saves keeping x alive).
    # has_2nd_grad: whether the derivative depends on the input, i.e. a second derivative exists.
    return dnnlib.EasyDict(func=func, def_alpha=def_alpha, def_gain=def_gain, cuda_idx=cuda_idx, ref=ref,
        has_2nd_grad=has_2nd_grad)


# The gains are NumPy scalars on purpose: layers store them as attributes and official pickles hold np.float64.
activation_funcs = {
    'linear':   _activation(lambda x, **_: x,                              0,   1,          1, 'y', False),
    'relu':     _activation(lambda x, **_: F.relu(x),                      0,   np.sqrt(2), 2, 'y', False),
    'lrelu':    _activation(lambda x, alpha, **_: F.leaky_relu(x, alpha),  0.2, np.sqrt(2), 3, 'y', False),
    'tanh':     _activation(lambda x, **_: torch.tanh(x),                  0,   1,          4, 'x', True),
    'sigmoid':  _activation(lambda x, **_: torch.sigmoid(x),               0,   1,          5, 'x', True),
    'elu':      _activation(lambda x, **_: F.elu(x),                       0,   1,          6, 'x', True),
    'selu':     _activation(lambda x, **_: F.selu(x),                      0,   1,          7, 'x', True),
    'softplus': _activation(lambda x, **_: F.softplus(x),                  0,   1,          8, 'x', True),
    'swish':    _activation(lambda x, **_: torch.sigmoid(x) * x,           0,   np.sqrt(2), 9, 'x', True),
}

_plugin = custom_ops.OptionalPlugin('eg3d_bias_act_plugin', sources=['bias_act.cpp', 'bias_act.cu'],
    headers=['bias_act.h', 'eg3d_kernel_common.h'], source_dir=os.path.dirname(__file__))

_Config = collections.namedtuple('_Config', ['dim', 'spec', 'alpha', 'gain', 'clamp'])


def bias_act(x, b=None, dim=1, act='linear', alpha=None, gain=None, clamp=None, impl='cuda'):
    """Add bias `b` along dimension `dim` of `x`, apply activation `act`, scale by `gain`, clamp to +-`clamp`.

    `alpha` (lrelu slope) and `gain` default to the activation's `def_alpha` / `def_gain`; `clamp=None`
    disables clamping. `impl='cuda'` uses the compiled kernel for CUDA tensors when it is available,
    `impl='ref'` always runs the reference ops.
    """
    assert isinstance(x, torch.Tensor)
    assert impl in ['ref', 'cuda']
    if act not in activation_funcs:
        raise ValueError(f'bias_act: unknown activation {act!r}; expected one of {sorted(activation_funcs)}')
    spec = activation_funcs[act]
    alpha = float(alpha if alpha is not None else spec.def_alpha)
    gain = float(gain if gain is not None else spec.def_gain)
    clamp = float(clamp if clamp is not None else -1)
    assert clamp == -1 or clamp >= 0, 'clamp must be None or non-negative'
    if b is not None:
        assert isinstance(b, torch.Tensor) and b.ndim == 1
        assert 0 <= dim < x.ndim, f'dim={dim} out of range for a {x.ndim}-D input'
        assert b.shape[0] == x.shape[dim], f'bias length {b.shape[0]} != x.shape[{dim}] = {x.shape[dim]}'
    cfg = _Config(dim=dim, spec=spec, alpha=alpha, gain=gain, clamp=clamp)

    # Deriving lrelu's slope from the sign of y assumes alpha >= 0; other slopes take the reference path.
    if (spec.ref == 'x' or alpha >= 0) and _plugin.for_tensor(x, impl) is not None:
        x = x.contiguous(memory_format=_layout(x))
        b = b.contiguous() if b is not None else x.new_empty([0])
        return _BiasActCuda.apply(x, b, cfg)
    return _bias_act_ref(x, b, cfg)


def _bias_act_ref(x, b, cfg):
    if b is not None:
        x = x + b.reshape([-1 if i == cfg.dim else 1 for i in range(x.ndim)])
    x = cfg.spec.func(x, alpha=cfg.alpha)
    if cfg.gain != 1:
        x = x * cfg.gain
    if cfg.clamp >= 0:
        x = x.clamp(-cfg.clamp, cfg.clamp)
    return x


def _layout(x):
    # The kernel works on any dense layout; keep channels-last tensors channels-last instead of copying.
    if x.ndim == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _sum_except(x, dim):
    return x.sum([i for i in range(x.ndim) if i != dim])


def _run_kernel(x, b, ref, mode, cfg):
    return _plugin.get().bias_act(x, b, ref, mode, cfg.dim, cfg.spec.cuda_idx, cfg.spec.ref == 'y',
        cfg.alpha, cfg.gain, cfg.clamp)


# Layout conversions happen before apply() so that every tensor passed on to the backward is a real
# input or output of its Function and keeps its autograd history (needed for second-order gradients).
class _BiasActCuda(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b, cfg):  # b: empty tensor when there is no bias
        y = _run_kernel(x, b, x.new_empty([0]), 0, cfg)
        ctx.cfg = cfg
        ctx.save_for_backward(y if cfg.spec.ref == 'y' else x, b)
        return y

    @staticmethod
    def backward(ctx, dy):
        ref, b = ctx.saved_tensors
        dx = _BiasActCudaGrad.apply(dy.contiguous(memory_format=_layout(ref)), ref, b, ctx.cfg)
        db = _sum_except(dx, ctx.cfg.dim) if ctx.needs_input_grad[1] else None
        return dx, db, None


class _BiasActCudaGrad(torch.autograd.Function):
    """dx = dy * d(bias_act)/dx, differentiable with respect to dy, x and b."""

    @staticmethod
    def forward(ctx, dy, ref, b, cfg):
        ctx.cfg = cfg
        ctx.save_for_backward(dy, ref, b)
        return _run_kernel(dy, b, ref, 1, cfg)

    @staticmethod
    def backward(ctx, d_dx):
        dy, ref, b = ctx.saved_tensors
        cfg = ctx.cfg
        d_dy = d_ref = d_b = None
        if ctx.needs_input_grad[0]:
            d_dy = _BiasActCudaGrad.apply(d_dx.contiguous(memory_format=_layout(ref)), ref, b, cfg)
        if cfg.spec.has_2nd_grad and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
            d_ref = _run_kernel((d_dx * dy).contiguous(memory_format=_layout(ref)), b, ref, 2, cfg)
            if ctx.needs_input_grad[2]:
                d_b = _sum_except(d_ref, cfg.dim)
        return d_dy, d_ref, d_b, None
