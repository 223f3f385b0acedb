"""Reading network pickles (official EG3D snapshots and our own) safely, and writing them.

`load_network_pkl(f)` never executes code from the file by default. Globals resolve through an
allow-list; every class or function name the data holds (`class_name`, `superresolution_module`, ... at
any depth) must name a class of this repository; each persistent record (a network with its embedded
source) becomes a fresh instance of this repository's class of the same name, built from the pickled
constructor arguments, and every parameter and buffer is copied over by name. `trust_embedded_code=True`
lifts all of this and executes the embedded source, for pickles of forks whose classes we do not have;
`rebase_onto_repository()` then turns such networks into ours (docs/compat.md).
"""

import contextlib
import copy
import importlib
import io
import json
import os
import pickle
import sys

import numpy as np
import torch

import dnnlib
from torch_utils import misc, persistence

SNAPSHOT_KEYS = ('training_set_kwargs', 'G', 'D', 'G_ema', 'augment_pipe')
NETWORK_KEYS = ('G', 'D', 'G_ema', 'augment_pipe')

# Our modules whose classes a snapshot may name (networks, super-resolution modules, augmentation, datasets).
NAME_MODULES = persistence.KNOWN_MODULES + ('training.dataset',)

# Plain attributes that training may change after construction, so they are taken from the pickle.
_CARRIED_ATTRIBUTES = ('neural_rendering_resolution', 'rendering_kwargs')


class NetworkPickleError(Exception):
    """A network pickle cannot be loaded; the message names the file and the problem in one line."""


# ----------------------------------------------------------------------------
# Safe unpickling.


class PersistentRecord:
    """What a persistent object of a pickle holds, before anything is built from it."""

    def __init__(self, meta):
        self.meta = persistence.prepare_record(meta)
        self.class_name = self.meta.class_name
        self.state = self.meta.state
        self.init_args = tuple(self.state.get('_init_args', ()))
        self.init_kwargs = dict(self.state.get('_init_kwargs', {}))


# ----------------------------------------------------------------------------
# Names of classes inside the data: the one allow-list.


def repository_class(name):
    """The class of this repository that `name` ('package.module.Class') denotes, or None.

    Decided from the text first: only modules of this repository are ever imported here.
    """
    if not isinstance(name, str):
        return None
    module_name, _, attr = name.rpartition('.')
    if module_name not in NAME_MODULES or not attr.isidentifier() or attr.startswith('_'):
        return None
    obj = importlib.import_module(module_name).__dict__.get(attr)
    if not isinstance(obj, type) or obj.__module__ != module_name:
        return None  # Absent, or imported from elsewhere.
    return obj if issubclass(obj, (torch.nn.Module, torch.utils.data.Dataset)) else None


_TRUST_HINT = ('; refused without importing it (trust_embedded_code=True / --trust-embedded-code lifts this, '
               'for files you trust)')


def _refusal(path: str, value) -> str:
    shown = json.dumps(value) if isinstance(value, str) else repr(value)
    return f'{path}: {shown} is not a class of this repository'


def _require_repository_class(name) -> None:
    if repository_class(name) is None:
        raise NetworkPickleError(_refusal('class name', name) + _TRUST_HINT)


def _holds_name(key) -> bool:
    # dnnlib.util.construct_class_by_name() takes class_name; the generator resolves superresolution_module.
    return isinstance(key, str) and (key in ('class_name', 'func_name') or
                                     key.endswith(('_class_name', '_func_name', '_module', '_class')))


def _children(value):
    """(path suffix, key, child) for each part of a value of unpickled data; tensors and scalars have none."""
    if isinstance(value, (PersistentRecord, torch.nn.Module)):
        for key, item in _node_state(value).items():
            if key in ('_init_args', '_init_kwargs'):
                yield key.replace('_init', '.init'), key, item
            elif key == '_modules':
                yield from ((_key_path(name), name, child) for name, child in (item or {}).items())
            elif key not in ('_parameters', '_buffers'):
                yield _key_path(key), key, item
    elif isinstance(value, dict):
        yield from ((_key_path(key), key, item) for key, item in value.items())
    elif isinstance(value, (list, tuple, set, frozenset)):
        yield from ((f'[{index}]', None, item) for index, item in enumerate(value))


def _key_path(key) -> str:
    return f'.{key}' if isinstance(key, str) and key.isidentifier() else f'[{key!r}]'


def _is_name_like(value) -> bool:
    # A class or function the pickle references, standing where a name belongs, is refused like a foreign name.
    return isinstance(value, (str, type)) or (callable(value) and not isinstance(value, torch.nn.Module))


def check_names(data: dict) -> None:
    """Raise NetworkPickleError for the first class or function name in `data` that is not on the allow-list.

    Everything is walked: constructor arguments at any depth, module attributes, nested networks,
    training_set_kwargs (which the tools construct later). Nothing is imported for a refused name.
    """
    seen = set()
    pending = [(key if isinstance(key, str) else repr(key), item) for key, item in reversed(data.items())]
    while pending:
        path, value = pending.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        children = list(_children(value))
        for suffix, key, child in children:
            if _holds_name(key) and _is_name_like(child) and repository_class(child) is None:
                raise NetworkPickleError(_refusal(path + suffix, child))
        pending.extend((path + suffix, child) for suffix, _key, child in reversed(children))


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
        if (module, name) == persistence.RECONSTRUCTOR_GLOBAL:
            return persistence.rebuild_object if self.trust_embedded_code else PersistentRecord
        if (module, name) in self.allowed:
            return self.allowed[(module, name)]
        if self.trust_embedded_code:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f'refusing to load global "{module}.{name}", which is not on the allow-list '
                                     f'of network pickles (use trust_embedded_code=True only if you trust the file)')


# ----------------------------------------------------------------------------
# Turning records into networks.


def _node_state(node) -> dict:
    return node.state if isinstance(node, PersistentRecord) else vars(node)


def _record_tensors(node, prefix: str = '') -> dict:
    """Every parameter and buffer below a record (or an unpickled module), by state-dict name."""
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


def build_network(cls, init_args, init_kwargs, node, force_fp16: bool = False) -> torch.nn.Module:
    """A fresh `cls` built from the constructor arguments, holding the parameters, buffers and carried attributes
    of `node` (a record, or a network unpickled with trusted code)."""
    kwargs = copy.deepcopy(dict(init_kwargs))
    if force_fp16:
        target = kwargs.get('synthesis_kwargs', kwargs)
        target['num_fp16_res'] = 4
        target['conv_clamp'] = 256
    net = cls(*copy.deepcopy(tuple(init_args)), **kwargs)
    _load_tensors(net, _record_tensors(node))
    state = _node_state(node)
    for name in _CARRIED_ATTRIBUTES:
        if name in state and hasattr(net, name):
            setattr(net, name, copy.deepcopy(state[name]))
    return net.eval().requires_grad_(False)


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
    if isinstance(value, PersistentRecord):
        cls = persistence.resolve_record_class(value.meta)
        return build_network(cls, value.init_args, value.init_kwargs, value, force_fp16=force_fp16)
    if force_fp16 and persistence.is_persistent(value):
        return build_network(type(value), value._init_args, value._init_kwargs, value, force_fp16=True)
    return value


def rebase_onto_repository(data: dict, force_fp16: bool = False) -> dict:
    """The snapshot with each network rebuilt as this repository's class of the same name.

    For snapshots loaded with trust_embedded_code=True, whose networks may be instances of a fork's classes:
    the result pickles with our classes (and our source), so it loads without trust. Raises NetworkPickleError
    naming the network and the reason when a class has no counterpart here or its parameters differ.
    """
    try:
        check_names(data)
    except NetworkPickleError as err:
        raise NetworkPickleError(f'{err} (the converted snapshot could not be loaded)') from err
    result = dict(data)
    for key in NETWORK_KEYS:
        net = data.get(key)
        if net is None:
            continue
        if not persistence.is_persistent(net):
            raise NetworkPickleError(f'{key}: a {type(net).__name__} without recorded constructor arguments has no '
                                     f'counterpart in this repository')
        cls = persistence.counterpart_class(net._orig_module_src, net._orig_class_name)
        if cls is None:
            raise NetworkPickleError(f'{key}: class "{net._orig_class_name}" has no counterpart in this repository')
        try:
            with dnnlib.util.restrict_names(_require_repository_class):
                result[key] = build_network(cls, net._init_args, net._init_kwargs, net,
                                            force_fp16=force_fp16 and key != 'augment_pipe')
        except NetworkPickleError as err:
            raise NetworkPickleError(f'{key}: {err}') from err
        except Exception as err:
            raise NetworkPickleError(f'{key}: cannot rebuild it as this repository\'s {cls.__name__} '
                                     f'({_describe(err)})') from err
    return result


# ----------------------------------------------------------------------------


def load_network_pkl(f, force_fp16: bool = False, trust_embedded_code: bool = False) -> dict:
    """Read a network snapshot: dict(training_set_kwargs, G, D, G_ema, augment_pipe) with our classes.

    `f` is a binary file object or a path. Every failure comes as NetworkPickleError with a one-line message.
    """
    if isinstance(f, (str, os.PathLike)):
        try:
            file = open(f, 'rb')
        except OSError as err:
            raise NetworkPickleError(f'{os.fspath(f)}: {err.strerror or _one_line(err)}') from err
        with file:
            return load_network_pkl(file, force_fp16=force_fp16, trust_embedded_code=trust_embedded_code)
    source = getattr(f, 'name', '<network pickle>')
    if trust_embedded_code:
        print(f'WARNING: {source}: TRUSTING EMBEDDED CODE: the Python code inside this pickle runs now, with your '
              f'permissions, and can do anything you can; do this only for files from a source you trust',
              file=sys.stderr, flush=True)
    try:
        return _read_snapshot(f, force_fp16=force_fp16, trust_embedded_code=trust_embedded_code)
    except NetworkPickleError as err:
        raise NetworkPickleError(f'{source}: {err}') from err
    except Exception as err:
        raise NetworkPickleError(f'{source}: cannot load the network pickle ({_describe(err)})') from err


def _read_snapshot(f, force_fp16: bool, trust_embedded_code: bool) -> dict:
    try:
        with persistence.allow_embedded_code(trust_embedded_code):
            data = _NetworkUnpickler(f, trust_embedded_code=trust_embedded_code).load()
    except Exception as err:
        raise NetworkPickleError(f'cannot read the network pickle ({_describe(err)})') from err
    if not isinstance(data, dict):
        raise NetworkPickleError(f'not a network snapshot (the pickle holds a {type(data).__name__}, '
                                 f'expected a dict with keys G, D, G_ema)')
    missing = [key for key in ('G', 'D', 'G_ema') if key not in data]
    if missing:
        raise NetworkPickleError(f'not a network snapshot (missing key{"s" if len(missing) > 1 else ""} '
                                 f'{", ".join(missing)})')

    result = dict(data)
    result.setdefault('training_set_kwargs', None)
    guard = contextlib.nullcontext() if trust_embedded_code else dnnlib.util.restrict_names(_require_repository_class)
    if not trust_embedded_code:
        try:
            check_names(data)
        except NetworkPickleError as err:
            raise NetworkPickleError(f'{err}{_TRUST_HINT}') from err
    with persistence.allow_embedded_code(trust_embedded_code), guard:
        for key in NETWORK_KEYS:
            try:
                result[key] = _as_network(data.get(key), force_fp16=force_fp16 and key != 'augment_pipe')
            except (persistence.EmbeddedCodeError, NetworkPickleError) as err:
                raise NetworkPickleError(f'{key}: {_one_line(err)}') from err
            except Exception as err:
                raise NetworkPickleError(f'{key}: cannot rebuild the network ({_describe(err)})') from err

    for key in ('G', 'D', 'G_ema'):
        if not isinstance(result[key], torch.nn.Module):
            raise NetworkPickleError(f'"{key}" is a {type(result[key]).__name__}, not a network')
    if result['augment_pipe'] is not None and not isinstance(result['augment_pipe'], torch.nn.Module):
        raise NetworkPickleError('"augment_pipe" is not a network')
    if result['training_set_kwargs'] is not None and not isinstance(result['training_set_kwargs'], dict):
        raise NetworkPickleError('"training_set_kwargs" is not a dict')
    return result


def _describe(err: BaseException) -> str:
    if isinstance(err, EOFError) or 'truncated' in str(err):
        return f'truncated file: {_one_line(err)}'
    return f'{type(err).__name__}: {_one_line(err)}'


def _one_line(err: BaseException) -> str:
    return ' '.join(str(err).split()) or type(err).__name__


def open_network_pkl(network_pkl: str, **load_kwargs) -> dict:
    """load_network_pkl() for a path or URL (cached by dnnlib.util.open_url)."""
    try:
        with dnnlib.util.open_url(network_pkl) as f:
            return load_network_pkl(f, **load_kwargs)
    except NetworkPickleError:
        raise
    except Exception as err:
        message = _one_line(err)
        if network_pkl not in message:
            message = f'{network_pkl}: {message}'
        raise NetworkPickleError(message) from err


def save_network_pkl(data: dict, path: str) -> None:
    """pickle.dump a snapshot dict; the file appears under `path` only once it is complete."""
    dnnlib.util.write_atomic(path, lambda f: pickle.dump(data, f))


def portable_snapshot_bytes(data: dict) -> bytes:
    """The snapshot pickled, after making sure it loads back without trust_embedded_code (else NetworkPickleError)."""
    blob = pickle.dumps({key: data.get(key) for key in SNAPSHOT_KEYS})
    try:
        _read_snapshot(io.BytesIO(blob), force_fp16=False, trust_embedded_code=False)
    except NetworkPickleError as err:
        raise NetworkPickleError(f'the converted snapshot would not load without trusting its code: {err}') from err
    return blob
