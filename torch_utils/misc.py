"""Helpers shared by the networks, the training loop and the tools."""

import contextlib
import re
import warnings

import numpy as np
import torch

import dnnlib

# ----------------------------------------------------------------------------
# Cached constant tensors: building small filters and masks once per device saves work in every forward.

_constant_cache = dict()


def constant(value, shape=None, dtype=None, device=None, memory_format=None) -> torch.Tensor:
    value = np.asarray(value)
    if shape is not None:
        shape = tuple(shape)
    if dtype is None:
        dtype = torch.get_default_dtype()
    if device is None:
        device = torch.device('cpu')
    if memory_format is None:
        memory_format = torch.contiguous_format

    key = (value.shape, value.dtype, value.tobytes(), shape, dtype, device, memory_format)
    tensor = _constant_cache.get(key, None)
    if tensor is None:
        tensor = torch.as_tensor(value.copy(), dtype=dtype, device=device)
        if shape is not None:
            tensor, _ = torch.broadcast_tensors(tensor, torch.empty(shape))
        tensor = tensor.contiguous(memory_format=memory_format)
        _constant_cache[key] = tensor
    return tensor


def nan_to_num(input, nan=0.0, posinf=None, neginf=None, *, out=None) -> torch.Tensor:
    return torch.nan_to_num(input, nan=nan, posinf=posinf, neginf=neginf, out=out)


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
        self.dataset = dataset
        self.rank = rank
        self.num_replicas = num_replicas
        self.shuffle = shuffle
        self.seed = seed
        self.window_size = window_size

    def __iter__(self):
        order = np.arange(len(self.dataset))
        rnd = None
        window = 0
        if self.shuffle:
            rnd = np.random.RandomState(self.seed)
            rnd.shuffle(order)
            window = int(np.rint(order.size * self.window_size))

        idx = 0
        while True:
            i = idx % order.size
            if idx % self.num_replicas == self.rank:
                yield int(order[i])
            if window >= 2:
                j = (i - rnd.randint(window)) % order.size
                order[i], order[j] = order[j], order[i]
            idx += 1


# ----------------------------------------------------------------------------
# Parameters and buffers.


def params_and_buffers(module: torch.nn.Module) -> list:
    assert isinstance(module, torch.nn.Module)
    return list(module.parameters()) + list(module.buffers())


def named_params_and_buffers(module: torch.nn.Module) -> list:
    assert isinstance(module, torch.nn.Module)
    return list(module.named_parameters()) + list(module.named_buffers())


@torch.no_grad()
def copy_params_and_buffers(src_module: torch.nn.Module, dst_module: torch.nn.Module, require_all: bool = False) -> None:
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


@contextlib.contextmanager
def ddp_sync(module: torch.nn.Module, sync: bool):
    """Skip DDP's gradient all-reduce for the accumulation steps that do not need it."""
    assert isinstance(module, torch.nn.Module)
    if sync or not isinstance(module, torch.nn.parallel.DistributedDataParallel):
        yield
    else:
        with module.no_sync():
            yield


def check_ddp_consistency(module: torch.nn.Module, ignore_regex: str = None) -> None:
    """Assert that every rank holds identical parameters and buffers (NaNs compare equal)."""
    assert isinstance(module, torch.nn.Module)
    for name, tensor in named_params_and_buffers(module):
        fullname = type(module).__name__ + '.' + name
        if ignore_regex is not None and re.fullmatch(ignore_regex, fullname):
            continue
        tensor = tensor.detach()
        if tensor.is_floating_point():
            tensor = nan_to_num(tensor)
        other = tensor.clone()
        torch.distributed.broadcast(tensor=other, src=0)
        if not (tensor == other).all():
            raise AssertionError(f'DDP ranks disagree on {fullname}')


# ----------------------------------------------------------------------------
# Module summary table.


def print_module_summary(module: torch.nn.Module, inputs, max_nesting: int = 3, skip_redundant: bool = True):
    """Run module(*inputs) once and print a table of submodules, their parameters, buffers and output shapes."""
    assert isinstance(module, torch.nn.Module)
    assert not isinstance(module, torch.jit.ScriptModule)
    assert isinstance(inputs, (tuple, list))

    entries = []
    nesting = [0]

    def pre_hook(_mod, _inputs):
        nesting[0] += 1

    def post_hook(mod, _inputs, outputs):
        nesting[0] -= 1
        if nesting[0] <= max_nesting:
            outputs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
            outputs = [t for t in outputs if isinstance(t, torch.Tensor)]
            entries.append(dnnlib.EasyDict(mod=mod, outputs=outputs))

    hooks = [mod.register_forward_pre_hook(pre_hook) for mod in module.modules()]
    hooks += [mod.register_forward_hook(post_hook) for mod in module.modules()]
    outputs = module(*inputs)
    for hook in hooks:
        hook.remove()

    # Count each tensor once, at the outermost module that first used it.
    seen = set()
    for entry in entries:
        entry.unique_params = [t for t in entry.mod.parameters() if id(t) not in seen]
        entry.unique_buffers = [t for t in entry.mod.buffers() if id(t) not in seen]
        entry.unique_outputs = [t for t in entry.outputs if id(t) not in seen]
        seen |= {id(t) for t in entry.unique_params + entry.unique_buffers + entry.unique_outputs}
    if skip_redundant:
        entries = [e for e in entries if len(e.unique_params) or len(e.unique_buffers) or len(e.unique_outputs)]

    rows = [[type(module).__name__, 'Parameters', 'Buffers', 'Output shape', 'Datatype']]
    rows.append(['---'] * len(rows[0]))
    param_total = 0
    buffer_total = 0
    submodule_names = {mod: name for name, mod in module.named_modules()}
    for entry in entries:
        name = '<top-level>' if entry.mod is module else submodule_names[entry.mod]
        param_size = sum(t.numel() for t in entry.unique_params)
        buffer_size = sum(t.numel() for t in entry.unique_buffers)
        output_shapes = [str(list(t.shape)) for t in entry.outputs]
        output_dtypes = [str(t.dtype).split('.')[-1] for t in entry.outputs]
        rows.append([
            name + (':0' if len(entry.outputs) >= 2 else ''),
            str(param_size) if param_size else '-',
            str(buffer_size) if buffer_size else '-',
            (output_shapes + ['-'])[0],
            (output_dtypes + ['-'])[0],
        ])
        for idx in range(1, len(entry.outputs)):
            rows.append([name + f':{idx}', '-', '-', output_shapes[idx], output_dtypes[idx]])
        param_total += param_size
        buffer_total += buffer_size
    rows.append(['---'] * len(rows[0]))
    rows.append(['Total', str(param_total), str(buffer_total), '-', '-'])

    widths = [max(len(cell) for cell in column) for column in zip(*rows)]
    print()
    for row in rows:
        print('  '.join(cell + ' ' * (width - len(cell)) for cell, width in zip(row, widths)))
    print()
    return outputs
