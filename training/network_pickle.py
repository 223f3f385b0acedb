"""Reading network pickles (official EG3D snapshots and our own) safely, and writing them.

`load_network_pkl(f)` never executes code from the file by default. Globals resolve through an
allow-list; each persistent record (a network with its embedded source, compat.md §2) becomes a fresh
instance of this repository's class of the same name, built from the pickled constructor arguments,
and every parameter and buffer is copied over by name. The original instead executes the embedded
source; `trust_embedded_code=True` does that too, for pickles of forks whose classes we do not have.
"""

import copy
import io
import os
import pickle
import sys

import numpy as np
import torch

import dnnlib
from torch_utils import misc, persistence

SNAPSHOT_KEYS = ('training_set_kwargs', 'G', 'D', 'G_ema', 'augment_pipe')

# Plain attributes that training may change after construction, so they are taken from the pickle.
_CARRIED_ATTRIBUTES = ('neural_rendering_resolution', 'rendering_kwargs')


class NetworkPickleError(Exception):
    """A network pickle cannot be loaded; the message names the file and the problem in one line."""


# ----------------------------------------------------------------------------
# Safe unpickling.


class PersistentRecord:
    """What a persistent object of a pickle holds, before anything is built from it."""

    def __init__(self, meta):
        self.meta = persistence._prepare_meta(meta)
        self.class_name = self.meta.class_name
        self.state = self.meta.state
        self.init_args = tuple(self.state.get('_init_args', ()))
        self.init_kwargs = dict(self.state.get('_init_kwargs', {}))


def _load_storage_on_cpu(data: bytes):
    # The official pickles hold each storage as a legacy torch.save() stream. Reading it with the weights-only
    # loader and mapping to the CPU works on machines without CUDA, even for tensors saved from a GPU.
    return torch.load(io.BytesIO(data), weights_only=True, map_location='cpu')


def _allowed_globals() -> dict:
    from training.triplane import OSGDecoder
    from training.volumetric_rendering.ray_marcher import MipRayMarcher2
    from training.volumetric_rendering.ray_sampler import RaySampler
    from training.volumetric_rendering.renderer import ImportanceRenderer
    allowed = {
        ('dnnlib.util', 'EasyDict'): dnnlib.EasyDict,
        ('dnnlib', 'EasyDict'): dnnlib.EasyDict,
        ('training.triplane', 'OSGDecoder'): OSGDecoder,
        ('training.volumetric_rendering.renderer', 'ImportanceRenderer'): ImportanceRenderer,
        ('training.volumetric_rendering.ray_sampler', 'RaySampler'): RaySampler,
        ('training.volumetric_rendering.ray_marcher', 'MipRayMarcher2'): MipRayMarcher2,
        ('torch.nn.modules.container', 'Sequential'): torch.nn.Sequential,
        ('torch.nn.modules.container', 'ModuleList'): torch.nn.ModuleList,
        ('torch.nn.modules.container', 'ModuleDict'): torch.nn.ModuleDict,
        ('torch.nn.modules.activation', 'Softplus'): torch.nn.Softplus,
        ('torch.nn.modules.activation', 'ReLU'): torch.nn.ReLU,
        ('torch.nn.modules.activation', 'LeakyReLU'): torch.nn.LeakyReLU,
        ('torch.nn.modules.activation', 'Sigmoid'): torch.nn.Sigmoid,
        ('torch.nn.modules.activation', 'Tanh'): torch.nn.Tanh,
        ('torch._utils', '_rebuild_parameter'): torch._utils._rebuild_parameter,
        ('torch._utils', '_rebuild_tensor_v2'): torch._utils._rebuild_tensor_v2,
        ('torch.storage', '_load_from_bytes'): _load_storage_on_cpu,
        ('collections', 'OrderedDict'): __import__('collections').OrderedDict,
        ('builtins', 'set'): set,
        ('builtins', 'frozenset'): frozenset,
        ('numpy', 'dtype'): np.dtype,
        ('numpy.core.multiarray', 'scalar'): _numpy_scalar,
        ('numpy._core.multiarray', 'scalar'): _numpy_scalar,
    }
    if hasattr(torch._utils, '_rebuild_parameter_with_state'):
        allowed[('torch._utils', '_rebuild_parameter_with_state')] = torch._utils._rebuild_parameter_with_state
    return allowed


def _numpy_scalar(dtype, data=None):
    # numpy's own reconstructor for scalars, reached without importing the deprecated numpy.core alias.
    return np.frombuffer(data, dtype=dtype, count=1)[0].copy()


class _NetworkUnpickler(pickle.Unpickler):
    def __init__(self, file, trust_embedded_code: bool):
        super().__init__(file)
        self.trust_embedded_code = trust_embedded_code
        self.allowed = _allowed_globals()

    def find_class(self, module, name):
        if (module, name) == ('torch_utils.persistence', '_reconstruct_persistent_obj'):
            return persistence._reconstruct_persistent_obj if self.trust_embedded_code else PersistentRecord
        if (module, name) in self.allowed:
            return self.allowed[(module, name)]
        if self.trust_embedded_code:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f'refusing to load global "{module}.{name}", which is not on the allow-list '
                                     f'of network pickles (use trust_embedded_code=True only if you trust the file)')


# ----------------------------------------------------------------------------
# Turning records into networks.


def _node_state(node):
    state = node.state if isinstance(node, PersistentRecord) else node.__dict__
    return state


def _record_tensors(node, prefix: str = '') -> dict:
    """Every parameter and buffer below a record (or a plainly unpickled module), by state-dict name."""
    state = _node_state(node)
    tensors = dict()
    for group in ('_parameters', '_buffers'):
        for name, tensor in (state.get(group) or {}).items():
            if tensor is not None:
                tensors[prefix + name] = tensor
    for name, child in (state.get('_modules') or {}).items():
        if child is not None:
            tensors.update(_record_tensors(child, prefix + name + '.'))
    return tensors


def build_network(record: PersistentRecord, force_fp16: bool = False) -> torch.nn.Module:
    """A fresh network of our class for the record, with the record's parameters, buffers and carried attributes."""
    cls = persistence.resolve_record_class(record.meta)
    kwargs = copy.deepcopy(record.init_kwargs)
    if force_fp16:
        _force_fp16_kwargs(kwargs)
    net = cls(*copy.deepcopy(record.init_args), **kwargs)
    _load_tensors(net, _record_tensors(record))
    for name in _CARRIED_ATTRIBUTES:
        if name in record.state and hasattr(net, name):
            setattr(net, name, copy.deepcopy(record.state[name]))
    return net.eval().requires_grad_(False)


def _force_fp16_kwargs(kwargs: dict) -> None:
    target = kwargs.get('synthesis_kwargs', kwargs)
    target['num_fp16_res'] = 4
    target['conv_clamp'] = 256


def _load_tensors(net: torch.nn.Module, tensors: dict) -> None:
    ours = dict(misc.named_params_and_buffers(net))
    # Buffers the training loop attaches after construction (dataset_label_std) sit at the top level.
    for name in [n for n in tensors if n not in ours and '.' not in n]:
        net.register_buffer(name, tensors[name].detach().clone().float())
        ours[name] = getattr(net, name)
    missing = sorted(set(ours) - set(tensors))
    extra = sorted(set(tensors) - set(ours))
    if missing or extra:
        raise NetworkPickleError(f'{type(net).__name__}: parameters/buffers do not match this repository\'s class '
                                 f'(missing: {missing[:5]}, unexpected: {extra[:5]})')
    with torch.no_grad():
        for name, tensor in ours.items():
            src = tensors[name]
            if tuple(src.shape) != tuple(tensor.shape):
                raise NetworkPickleError(f'{type(net).__name__}.{name}: shape {list(src.shape)} in the pickle, '
                                         f'{list(tensor.shape)} expected')
            tensor.copy_(src.detach().to(tensor.device, tensor.dtype))


def _as_network(value, force_fp16: bool):
    if value is None:
        return None
    if isinstance(value, PersistentRecord):
        return build_network(value, force_fp16=force_fp16)
    if force_fp16 and persistence.is_persistent(value):
        kwargs = value.init_kwargs
        _force_fp16_kwargs(kwargs)
        rebuilt = type(value)(*value.init_args, **kwargs)
        misc.copy_params_and_buffers(value, rebuilt, require_all=True)
        for name in _CARRIED_ATTRIBUTES:
            if hasattr(value, name):
                setattr(rebuilt, name, copy.deepcopy(getattr(value, name)))  # the original drops these: fix
        value = rebuilt.eval().requires_grad_(False)
    return value


# ----------------------------------------------------------------------------


def load_network_pkl(f, force_fp16: bool = False, trust_embedded_code: bool = False) -> dict:
    """Read a network snapshot: dict(training_set_kwargs, G, D, G_ema, augment_pipe) with our classes.

    `f` is a binary file object or a path. Errors come as NetworkPickleError with a one-line message.
    """
    if isinstance(f, (str, os.PathLike)):
        with open(f, 'rb') as file:
            return load_network_pkl(file, force_fp16=force_fp16, trust_embedded_code=trust_embedded_code)
    source = getattr(f, 'name', '<network pickle>')
    if trust_embedded_code:
        print(f'{source}: executing the source code embedded in the pickle (trust_embedded_code=True)', file=sys.stderr)

    try:
        with persistence.allow_embedded_code(trust_embedded_code):
            data = _NetworkUnpickler(f, trust_embedded_code=trust_embedded_code).load()
    except persistence.EmbeddedCodeError as err:
        raise NetworkPickleError(f'{source}: {err}') from err
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, ImportError, IndexError,
            RuntimeError, KeyError) as err:
        truncated = isinstance(err, EOFError) or 'truncated' in str(err)
        kind = 'truncated file' if truncated else type(err).__name__
        raise NetworkPickleError(f'{source}: cannot read the network pickle ({kind}: {_one_line(err)})') from err

    if not isinstance(data, dict):
        raise NetworkPickleError(f'{source}: not a network snapshot (the pickle holds a {type(data).__name__}, '
                                 f'expected a dict with keys G, D, G_ema)')
    missing = [key for key in ('G', 'D', 'G_ema') if key not in data]
    if missing:
        raise NetworkPickleError(f'{source}: not a network snapshot (missing key{"s" if len(missing) > 1 else ""} '
                                 f'{", ".join(missing)})')

    try:
        with persistence.allow_embedded_code(trust_embedded_code):
            result = dict(data)
            for key in ('G', 'D', 'G_ema', 'augment_pipe'):
                result[key] = _as_network(data.get(key), force_fp16=force_fp16 and key != 'augment_pipe')
    except (persistence.EmbeddedCodeError, NetworkPickleError) as err:
        raise NetworkPickleError(f'{source}: {err}') from err
    result.setdefault('training_set_kwargs', None)
    result.setdefault('augment_pipe', None)

    for key in ('G', 'D', 'G_ema'):
        if not isinstance(result[key], torch.nn.Module):
            raise NetworkPickleError(f'{source}: "{key}" is a {type(result[key]).__name__}, not a network')
    if result['augment_pipe'] is not None and not isinstance(result['augment_pipe'], torch.nn.Module):
        raise NetworkPickleError(f'{source}: "augment_pipe" is not a network')
    if result['training_set_kwargs'] is not None and not isinstance(result['training_set_kwargs'], dict):
        raise NetworkPickleError(f'{source}: "training_set_kwargs" is not a dict')
    return result


def _one_line(err: BaseException) -> str:
    return ' '.join(str(err).split())


def open_network_pkl(network_pkl: str, **load_kwargs) -> dict:
    """load_network_pkl() for a path or URL (cached by dnnlib.util.open_url)."""
    try:
        with dnnlib.util.open_url(network_pkl) as f:
            return load_network_pkl(f, **load_kwargs)
    except (OSError, dnnlib.util.DownloadError) as err:
        message = _one_line(err)
        if network_pkl not in message:
            message = f'{network_pkl}: {message}'
        raise NetworkPickleError(message) from err


def save_network_pkl(data: dict, path: str) -> None:
    """pickle.dump a snapshot dict; the file appears under `path` only once it is complete."""
    dnnlib.util.write_atomic(path, lambda f: pickle.dump(data, f))
