"""Opt-in speed modes for training and inference: TF32, torch.compile, bf16 autocast, fused/foreach Adam.

All are off by default, so the default reproduces the reference numbers. None of them changes parameter or
buffer names, and a wrapped generator pickles (and deep-copies) exactly as an unwrapped one: the wrappers
live in nn.Module's `_compiled_call_impl` slot, which nn.Module.__getstate__ leaves out of the state.

    from torch_utils import fast_modes
    fast_modes.configure(tf32=True)
    fast_modes.wrap_generator_for_speed(G, compile=True, precision='bf16')
    opt = torch.optim.Adam(params, lr=..., **fast_modes.adam_kwargs('fused'))
"""

import warnings

import torch

PRECISIONS = ('fp32', 'bf16')
ADAM_IMPLS = (None, 'foreach', 'fused')
COMPILE_TARGETS = ('renderer', 'decoder', 'superresolution')

#----------------------------------------------------------------------------

def configure(*, tf32=False):
    """Process-wide backend switches. tf32=True lets CUDA matmuls and cuDNN convolutions use TF32 (Ampere+;
    ~1e-3 relative error in each product); no effect on CPU."""
    torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
    torch.backends.cudnn.allow_tf32 = bool(tf32)

def adam_kwargs(impl=None):
    """Extra torch.optim.Adam keyword arguments for the given implementation: None (PyTorch's default choice),
    'foreach' (multi-tensor) or 'fused' (one kernel per parameter group). Same update up to rounding."""
    if impl not in ADAM_IMPLS:
        raise ValueError(f'adam implementation: unknown value {impl!r}; expected one of {list(ADAM_IMPLS)}')
    return {} if impl is None else {impl: True}

#----------------------------------------------------------------------------

def wrap_generator_for_speed(G, *, compile=False, precision='fp32', compile_kwargs=None):
    """Speed up G's renderer, decoder and super-resolution in place; returns G.

    compile: torch.compile the three submodules (falls back to eager, with one warning, if compilation is
        unavailable or fails on first use).
    precision: 'bf16' runs the tri-plane decoder MLP under bf16 autocast (its outputs are cast back to
        float32, so ray marching and importance sampling stay in float32); 'fp32' leaves it exact.
    """
    if precision not in PRECISIONS:
        raise ValueError(f'precision: unknown value {precision!r}; expected one of {list(PRECISIONS)}')
    if precision == 'bf16':
        _set_call(G.decoder, _Autocast(G.decoder, dtype=torch.bfloat16))
    if compile:
        for name in COMPILE_TARGETS:
            _set_call(getattr(G, name), _Compiled(getattr(G, name), compile_kwargs or {}))
    return G

def unwrap(module):
    """Undo wrap_generator_for_speed on a module and all its submodules."""
    for m in module.modules():
        m._compiled_call_impl = None
    return module

def _set_call(module, call):
    assert isinstance(module, torch.nn.Module)
    module._compiled_call_impl = call

#----------------------------------------------------------------------------

class _Autocast:
    """Calls the module (or an inner wrapper) under autocast and casts floating outputs back to float32."""

    def __init__(self, module, dtype):
        self.inner = module._compiled_call_impl or module._call_impl
        self.dtype = dtype

    def __call__(self, *args, **kwargs):
        device_type = _device_type(args, kwargs)
        with torch.autocast(device_type=device_type, dtype=self.dtype):
            out = self.inner(*args, **kwargs)
        return _to_float32(out)

class _Compiled:
    """torch.compile of the module's call, with a one-time fallback to eager on any compile error."""

    _warned = False

    def __init__(self, module, compile_kwargs):
        self.eager = module._compiled_call_impl or module._call_impl
        self.compiled = None
        try:
            self.compiled = torch.compile(self.eager, **compile_kwargs)
        except Exception as e: # pylint: disable=broad-except
            self._warn(e)

    def __call__(self, *args, **kwargs):
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as e: # pylint: disable=broad-except
                if not _is_compile_error(e):
                    raise
                self.compiled = None
                self._warn(e)
        return self.eager(*args, **kwargs)

    @classmethod
    def _warn(cls, error):
        if not cls._warned:
            cls._warned = True
            warnings.warn(f'torch.compile unavailable, running eagerly: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ""}')

def _is_compile_error(error):
    # Errors raised by dynamo/inductor, as opposed to errors of the model itself (bad shapes etc.).
    from_compiler = type(error).__module__.startswith(('torch._dynamo', 'torch._inductor'))
    return from_compiler or (isinstance(error, (RuntimeError, OSError)) and 'inductor' in str(error).lower())

def _device_type(args, kwargs):
    for value in list(args) + list(kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value.device.type
    return 'cpu'

def _to_float32(out):
    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() else out
    if isinstance(out, dict):
        return {k: _to_float32(v) for k, v in out.items()}
    if isinstance(out, (tuple, list)):
        return type(out)(_to_float32(v) for v in out)
    return out

#----------------------------------------------------------------------------
