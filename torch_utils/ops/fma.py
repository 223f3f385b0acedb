"""Fused multiply-add."""

import torch


def fma(a, b, c):
    """a * b + c with broadcasting; autograd (to any order) reduces each gradient to its input's shape."""
    return torch.addcmul(c, a, b)
