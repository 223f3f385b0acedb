"""Helpers shared by the networks, the training loop and the tools."""

import contextlib
import itertools
import os
import re
import warnings

import numpy as np
import torch

# ----------------------------------------------------------------------------
# Cached constant tensors: building small filters and masks once per device saves work in every forward.

_constant_cache = dict()


def make_deterministic() -> None:
    """Process-wide: cuDNN benchmark off, deterministic cuDNN and deterministic algorithms on (--deterministic).

    cuBLAS needs CUBLAS_WORKSPACE_CONFIG before its first call; it is set here unless the caller set it. An op
    without a deterministic implementation on the device warns once (warn_only) instead of stopping the run.
    """
    os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)

#----------------------------------------------------------------------------

def constant(value, shape=None, dtype=None, device=None, memory_format=None) -> torch.Tensor:
    """A cached tensor holding `value`, broadcast with `shape` if given. Shared between callers: never modify it."""
    array = np.asarray(value)
    settings = (None if shape is None else tuple(shape),
                torch.get_default_dtype() if dtype is None else dtype,
                torch.device('cpu') if device is None else device,
                torch.contiguous_format if memory_format is None else memory_format)
    key = (array.shape, array.dtype, array.tobytes(), *settings)
    if key not in _constant_cache:
        _constant_cache[key] = _make_constant(array, *settings)
    return _constant_cache[key]


def _make_constant(array, shape, dtype, device, memory_format):
    tensor = torch.as_tensor(array.copy(), dtype=dtype, device=device)
    if shape is not None:
        tensor = tensor.broadcast_to(torch.broadcast_shapes(tensor.shape, shape))
    return tensor.contiguous(memory_format=memory_format)


def nan_to_num(input, nan=0.0, posinf=None, neginf=None, *, out=None) -> torch.Tensor:
    return torch.nan_to_num(input, nan=nan, posinf=posinf, neginf=neginf, out=out)


# ----------------------------------------------------------------------------
# Images.


def to_uint8(img: torch.Tensor, channels_last: bool = True) -> torch.Tensor:
    """[N, C, H, W] in [-1, 1] -> uint8 [N, H, W, C] (or [N, C, H, W]), truncating x * 127.5 + 128 after a clamp."""
    assert img.ndim == 4, f'expected [N, C, H, W], got {tuple(img.shape)}'
    if channels_last:
        img = img.permute(0, 2, 3, 1)
    return (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)

# ----------------------------------------------------------------------------
# Shape checks.


@contextlib.contextmanager
def suppress_tracer_warnings():
    """Silence TracerWarning while tracing code that compares shapes against constants on purpose."""
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        yield


def assert_shape(tensor: torch.Tensor, ref_shape) -> None:
    """Check tensor.shape against ref_shape; None entries match any size, tensor entries are compared when tracing."""
    if tensor.ndim != len(ref_shape):
        raise AssertionError(f'Wrong number of dimensions: got {tensor.ndim}, expected {len(ref_shape)}')
    for idx, (size, ref_size) in enumerate(zip(tensor.shape, ref_shape)):
        if ref_size is None:
            continue
        if isinstance(ref_size, torch.Tensor):
            with suppress_tracer_warnings():
                torch._assert(torch.equal(torch.as_tensor(size), ref_size), f'Wrong size for dimension {idx}')
        elif isinstance(size, torch.Tensor):
            with suppress_tracer_warnings():
                torch._assert(torch.equal(size, torch.as_tensor(ref_size)),
                              f'Wrong size for dimension {idx}: expected {ref_size}')
        elif size != ref_size:
            raise AssertionError(f'Wrong size for dimension {idx}: got {size}, expected {ref_size}')


def profiled_function(fn):
    """Label the function in the autograd profiler's trace."""
    def decorator(*args, **kwargs):
        with torch.autograd.profiler.record_function(fn.__name__):
            return fn(*args, **kwargs)
    decorator.__name__ = fn.__name__
    decorator.__qualname__ = fn.__qualname__
    decorator.__doc__ = fn.__doc__
    return decorator


# ----------------------------------------------------------------------------
# Sampler that never runs out, for the training loop's data iterator.


class InfiniteSampler(torch.utils.data.Sampler):
    """Endless stream of dataset indices for one rank.

    With shuffle, the order starts as a seeded permutation and keeps mutating: at every step the current
    slot swaps with a random slot up to `window_size * len` positions away, so successive epochs differ
    while each index keeps roughly the same frequency. Ranks take interleaved positions of the same stream.
    """

    def __init__(self, dataset, rank=0, num_replicas=1, shuffle=True, seed=0, window_size=0.5):
        assert len(dataset) > 0
        assert num_replicas > 0
        assert 0 <= rank < num_replicas
        assert 0 <= window_size <= 1
        # The base class takes data_source in old releases and nothing in recent ones: don't pass it.
        super().__init__()
        self.dataset, self.shuffle, self.seed, self.window_size = dataset, shuffle, seed, window_size
        self.rank, self.num_replicas = rank, num_replicas

    def __iter__(self):
        size = len(self.dataset)
        order = np.arange(size)
        rnd = np.random.RandomState(self.seed) if self.shuffle else None
        if rnd is not None:
            rnd.shuffle(order)
        reach = int(np.rint(size * self.window_size)) if rnd is not None else 0
        for step in itertools.count():
            slot = step % size
            if step % self.num_replicas == self.rank:
                yield int(order[slot])
            if reach < 2:
                continue
            partner = (slot - rnd.randint(reach)) % size
            order[[slot, partner]] = order[[partner, slot]]


# ----------------------------------------------------------------------------
# Parameters and buffers.


def params_and_buffers(module: torch.nn.Module) -> list:
    assert isinstance(module, torch.nn.Module)
    return list(module.parameters()) + list(module.buffers())


def named_params_and_buffers(module: torch.nn.Module) -> list:
    assert isinstance(module, torch.nn.Module)
    return list(module.named_parameters()) + list(module.named_buffers())


@torch.no_grad()
def copy_params_and_buffers(src_module: torch.nn.Module, dst_module: torch.nn.Module,
                            require_all: bool = False) -> None:
    """Copy every tensor of dst_module that src_module has under the same name (all of them if require_all)."""
    assert isinstance(src_module, torch.nn.Module)
    assert isinstance(dst_module, torch.nn.Module)
    src_tensors = dict(named_params_and_buffers(src_module))
    for name, tensor in named_params_and_buffers(dst_module):
        if name not in src_tensors:
            if require_all:
                raise KeyError(f'copy_params_and_buffers: source has no tensor named "{name}"')
            continue
        tensor.copy_(src_tensors[name]).requires_grad_(tensor.requires_grad)


# ----------------------------------------------------------------------------
# Distributed helpers.


def ddp_sync(module: torch.nn.Module, sync: bool):
    """Context that skips DDP's gradient all-reduce for the accumulation steps that do not need it."""
    assert isinstance(module, torch.nn.Module)
    wrapped = isinstance(module, torch.nn.parallel.DistributedDataParallel)
    return module.no_sync() if wrapped and not sync else contextlib.nullcontext()


def check_ddp_consistency(module: torch.nn.Module, ignore_regex: str = None) -> None:
    """Assert that every rank holds identical parameters and buffers (NaNs compare equal)."""
    assert isinstance(module, torch.nn.Module)
    prefix = type(module).__name__
    for fullname, local in [(f'{prefix}.{name}', t.detach()) for name, t in named_params_and_buffers(module)]:
        if ignore_regex is not None and re.fullmatch(ignore_regex, fullname):
            continue
        local = nan_to_num(local) if local.is_floating_point() else local
        from_rank0 = local.clone()
        torch.distributed.broadcast(tensor=from_rank0, src=0)
        if not torch.equal(local, from_rank0):
            raise AssertionError(f'DDP ranks disagree on {fullname}')


# ----------------------------------------------------------------------------
# Module summary table.


def _record_calls(module: torch.nn.Module, inputs, max_nesting: int):
    """Run module(*inputs) once; return its output and (submodule, tensor outputs) in completion order."""
    calls = []
    depth = [0]

    def enter(_mod, _inputs):
        depth[0] += 1

    def leave(mod, _inputs, outputs):
        depth[0] -= 1
        if depth[0] <= max_nesting:
            outputs = outputs if isinstance(outputs, (tuple, list)) else [outputs]
            calls.append((mod, [t for t in outputs if isinstance(t, torch.Tensor)]))

    handles = [m.register_forward_pre_hook(enter) for m in module.modules()]
    handles += [m.register_forward_hook(leave) for m in module.modules()]
    try:
        result = module(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return result, calls


def _summary_rows(module: torch.nn.Module, calls, skip_redundant: bool) -> list:
    """One row per recorded call (plus one per extra output). Each tensor counts once, at its first call."""
    names = {mod: name for name, mod in module.named_modules()}
    names[module] = '<top-level>'
    seen = set()
    rows, param_total, buffer_total = [], 0, 0
    for mod, outputs in calls:
        params = [t for t in mod.parameters() if id(t) not in seen]
        buffers = [t for t in mod.buffers() if id(t) not in seen]
        fresh_outputs = [t for t in outputs if id(t) not in seen]
        seen.update(id(t) for t in params + buffers + fresh_outputs)
        if skip_redundant and not (params or buffers or fresh_outputs):
            continue
        num_params, num_buffers = sum(t.numel() for t in params), sum(t.numel() for t in buffers)
        param_total, buffer_total = param_total + num_params, buffer_total + num_buffers
        shapes = [str(list(t.shape)) for t in outputs] or ['-']
        dtypes = [str(t.dtype).split('.')[-1] for t in outputs] or ['-']
        suffix = ':0' if len(outputs) > 1 else ''
        rows.append([names[mod] + suffix, str(num_params or '-'), str(num_buffers or '-'), shapes[0], dtypes[0]])
        rows += [[f'{names[mod]}:{k}', '-', '-', shapes[k], dtypes[k]] for k in range(1, len(outputs))]
    return rows + [['---'] * 5, ['Total', str(param_total), str(buffer_total), '-', '-']]


def print_module_summary(module: torch.nn.Module, inputs, max_nesting: int = 3, skip_redundant: bool = True):
    """Run module(*inputs) once, print a table of its submodules (parameters, buffers, output shapes and
    dtypes) and return the output."""
    assert isinstance(module, torch.nn.Module)
    assert not isinstance(module, torch.jit.ScriptModule)
    assert isinstance(inputs, (tuple, list))
    result, calls = _record_calls(module, inputs, max_nesting)
    header = [type(module).__name__, 'Parameters', 'Buffers', 'Output shape', 'Datatype']
    rows = [header, ['---'] * len(header)] + _summary_rows(module, calls, skip_redundant)
    widths = [max(len(cell) for cell in column) for column in zip(*rows)]
    print()
    for row in rows:
        print('  '.join(cell.ljust(width) for cell, width in zip(row, widths)))
    print()
    return result
