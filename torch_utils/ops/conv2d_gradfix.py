"""conv2d / conv_transpose2d with an explicit, twice-differentiable backward.

Drop-in replacements for `torch.nn.functional.conv2d` and `conv_transpose2d`. With `enabled = True` they
run through a custom autograd function whose backward is built from public differentiable ops
(`conv2d`, `conv_transpose2d`, `torch.nn.grad.conv2d_weight`), so second-order gradients (R1
regularization) work on every device, and which honours `no_weight_gradients()`: inside that context
the backward skips the weight gradient, which R1's inner `autograd.grad` w.r.t. the images never needs.
The weights still enter the graph of the input gradient, so the outer backward reaches them.
With `enabled = False` (the default) the functions call PyTorch directly.
"""

import collections
import contextlib

import torch
import torch.nn.functional as F

enabled = False                     # Use the custom op (the training loop turns this on).
weight_gradients_disabled = False   # Set by no_weight_gradients().


@contextlib.contextmanager
def no_weight_gradients(disable=True):
    """Within this context the custom op computes no weight gradients (when `disable` is True)."""
    global weight_gradients_disabled
    previous = weight_gradients_disabled
    if disable:
        weight_gradients_disabled = True
    try:
        yield
    finally:
        weight_gradients_disabled = previous


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    if _use_custom_op(padding):
        cfg = _Config(False, _pair(stride), _pair(padding), (0, 0), _pair(dilation), groups)
        return _Conv2dOp.apply(input, weight, bias, cfg)
    return F.conv2d(input=input, weight=weight, bias=bias, stride=stride, padding=padding, dilation=dilation, groups=groups)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    if _use_custom_op(padding):
        cfg = _Config(True, _pair(stride), _pair(padding), _pair(output_padding), _pair(dilation), groups)
        return _Conv2dOp.apply(input, weight, bias, cfg)
    return F.conv_transpose2d(input=input, weight=weight, bias=bias, stride=stride, padding=padding,
        output_padding=output_padding, groups=groups, dilation=dilation)


_Config = collections.namedtuple('_Config', ['transpose', 'stride', 'padding', 'output_padding', 'dilation', 'groups'])


def _use_custom_op(padding):
    return enabled and not isinstance(padding, str)  # String paddings ('same') stay with PyTorch.


def _pair(value):
    if isinstance(value, (tuple, list)):
        assert len(value) == 2
        return (int(value[0]), int(value[1]))
    return (int(value), int(value))


def _forward(x, weight, bias, cfg):
    if cfg.transpose:
        return F.conv_transpose2d(x, weight, bias, stride=cfg.stride, padding=cfg.padding,
            output_padding=cfg.output_padding, groups=cfg.groups, dilation=cfg.dilation)
    return F.conv2d(x, weight, bias, stride=cfg.stride, padding=cfg.padding, dilation=cfg.dilation, groups=cfg.groups)


def _input_grad(grad_output, weight, input_shape, cfg):
    # conv2d and conv_transpose2d are adjoint to each other, so each one's input gradient is the other op.
    if cfg.transpose:
        return F.conv2d(grad_output, weight, stride=cfg.stride, padding=cfg.padding, dilation=cfg.dilation, groups=cfg.groups)
    # conv_transpose2d's output size is ambiguous when stride > 1; output_padding selects the input's size.
    output_padding = [input_shape[i + 2] - ((grad_output.shape[i + 2] - 1) * cfg.stride[i] - 2 * cfg.padding[i]
        + cfg.dilation[i] * (weight.shape[i + 2] - 1) + 1) for i in range(2)]
    return F.conv_transpose2d(grad_output, weight, stride=cfg.stride, padding=cfg.padding,
        output_padding=output_padding, groups=cfg.groups, dilation=cfg.dilation)


def _weight_grad(grad_output, x, weight_shape, cfg):
    # For the transposed op the roles of its input and output swap relative to conv2d.
    conv_in, conv_out = (grad_output, x) if cfg.transpose else (x, grad_output)
    return torch.nn.grad.conv2d_weight(conv_in, weight_shape, conv_out, stride=cfg.stride, padding=cfg.padding,
        dilation=cfg.dilation, groups=cfg.groups)


class _Conv2dOp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, cfg):
        ctx.cfg = cfg
        ctx.save_for_backward(x, weight)
        return _forward(x, weight, bias, cfg)

    @staticmethod
    def backward(ctx, grad_output):
        # Runs with grad mode on under create_graph=True, so these ops are recorded for double backward.
        x, weight = ctx.saved_tensors
        cfg = ctx.cfg
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_input = _input_grad(grad_output, weight, x.shape, cfg)
        if ctx.needs_input_grad[1] and not weight_gradients_disabled:
            grad_weight = _weight_grad(grad_output, x, weight.shape, cfg)
        if ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum([0, 2, 3])
        return grad_input, grad_weight, grad_bias, None
