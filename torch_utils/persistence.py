"""Pickling of network classes together with the source code that defines them.

`@persistent_class` makes instances pickle as a reduce tuple
`(_reconstruct_persistent_obj, (meta,), None)`, where `meta` records the full text of the defining module,
the class name and the instance state; official EG3D snapshots use exactly this layout (version 6).

Unpickling maps a record onto this repository's class of the same name by default (found by comparing
the classes the embedded module defines with ours), so loading never executes text from the file
(docs/compat.md). Executing the embedded source, which pickles from other forks need, is an explicit
opt-in: `with allow_embedded_code(): ...` or `legacy.load_network_pkl(..., trust_embedded_code=True)`.
"""

import ast
import copy
import importlib
import inspect
import pickle
import sys
import threading
import types
import uuid

import dnnlib

_VERSION = 6                    # Format version written into every record; the official snapshots use 6.
_decorators = set()             # Every class produced by persistent_class().
_import_hooks = []              # Callables meta -> meta applied before a record is resolved.
_module_to_src = dict()         # module -> source text (shared str object, so pickle memoizes it once).
_src_to_module = dict()         # source text -> module built from it (embedded-code path only).
_state = threading.local()      # .allow_exec: whether embedded source may be executed in this thread.

# Modules whose persistent classes may stand in for records of official pickles.
KNOWN_MODULES = (
    'training.triplane',
    'training.networks_stylegan2',
    'training.networks_stylegan3',
    'training.superresolution',
    'training.dual_discriminator',
    'training.augment',
)


class EmbeddedCodeError(pickle.UnpicklingError):
    """A record cannot be mapped onto this repository's classes, and executing its source is not allowed."""


# ----------------------------------------------------------------------------


def persistent_class(orig_class):
    """Class decorator: instances remember their constructor arguments and pickle with their module's source."""
    assert isinstance(orig_class, type)
    if is_persistent(orig_class):
        return orig_class
    assert orig_class.__module__ in sys.modules
    defining_module = sys.modules[orig_class.__module__]
    namespace = dict(
        _orig_module_src=_module_source(defining_module),
        _orig_class_name=orig_class.__name__,
        __init__=_recording_init(orig_class, defining_module),
        __reduce__=_record_reduce(orig_class),
        init_args=property(lambda self: copy.deepcopy(self._init_args)),
        init_kwargs=property(lambda self: dnnlib.EasyDict(copy.deepcopy(self._init_kwargs))),
        __module__=orig_class.__module__,
        __qualname__=orig_class.__qualname__,
        __doc__=orig_class.__doc__,
    )
    persistent = type(orig_class)(orig_class.__name__, (orig_class,), namespace)
    _decorators.add(persistent)
    return persistent


def _recording_init(orig_class, defining_module):
    def __init__(self, *args, **kwargs):
        orig_class.__init__(self, *args, **kwargs)
        self._init_args, self._init_kwargs = copy.deepcopy(args), copy.deepcopy(kwargs)
        # The record names the class by its module-level name; a nested class could not be found again.
        assert defining_module.__dict__.get(orig_class.__name__) is not None
        _check_pickleable(self.__reduce__())
    return __init__


def _record_reduce(orig_class):
    def __reduce__(self):
        reduced = tuple(orig_class.__reduce__(self))
        reduced += (None,) * (3 - len(reduced))
        if reduced[0] is _reconstruct_persistent_obj:
            return reduced  # An inner persistent base class already produced the record.
        meta = dict(type='class', version=_VERSION, module_src=self._orig_module_src,
                    class_name=self._orig_class_name, state=reduced[2])
        return (_reconstruct_persistent_obj, (meta,), None) + reduced[3:]
    return __reduce__


def is_persistent(obj) -> bool:
    """True for a persistent class or an instance of one."""
    candidates = (obj, type(obj)) if isinstance(obj, type) else (type(obj),)
    return any(candidate in _decorators for candidate in candidates)


def import_hook(hook):
    """Register hook(meta) -> meta, called on every record before it is resolved (e.g. to patch old sources)."""
    if not callable(hook):
        raise TypeError(f'import_hook() needs a callable, not {type(hook).__name__}')
    _import_hooks.append(hook)
    return hook


def allow_embedded_code(allow: bool = True):
    """Within this context, records that match none of our classes are rebuilt by executing their source."""
    return dnnlib.util.thread_local_setting(_state, 'allow_exec', allow, default=False)


# ----------------------------------------------------------------------------
# Unpickling.


# The global (module, name) that every persistent object's pickle calls with its record.
RECONSTRUCTOR_GLOBAL = (__name__, '_reconstruct_persistent_obj')


def _reconstruct_persistent_obj(meta):
    """Named in every pickle: its name and signature must not change."""
    return rebuild_object(meta)


def rebuild_object(meta):
    """The object a persistent record stands for, built from its class and instance state."""
    meta = prepare_record(meta)
    return _instance_from_state(resolve_record_class(meta), meta.state)


def _instance_from_state(cls, state):
    # Records carry the instance state, not constructor calls: __init__ must not run here.
    instance = cls.__new__(cls)
    if callable(getattr(instance, '__setstate__', None)):
        instance.__setstate__(state)
    else:
        vars(instance).update(state)
    return instance


def prepare_record(meta):
    """A record as EasyDicts after the import hooks; UnpicklingError for an unknown record type or version."""
    meta = dnnlib.EasyDict(meta)
    meta.state = dnnlib.EasyDict(meta.state)
    for hook in _import_hooks:
        meta = hook(meta)
        assert meta is not None
    if meta.get('type') != 'class':
        raise pickle.UnpicklingError(f'unsupported persistent record type {meta.get("type")!r}')
    if meta.get('version') != _VERSION:
        raise pickle.UnpicklingError(f'unsupported persistent record version {meta.get("version")!r} '
                                     f'(expected {_VERSION})')
    return meta


def resolve_record_class(meta):
    """The persistent class a record stands for: ours if one matches, else (opt-in only) the embedded one."""
    module = match_known_module(meta.module_src, meta.class_name)
    if module is not None:
        return persistent_class(module.__dict__[meta.class_name])
    if not getattr(_state, 'allow_exec', False):
        defined = sorted(_top_level_class_names(meta.module_src))
        raise EmbeddedCodeError(
            f'the pickle defines class "{meta.class_name}" in embedded source that matches none of this '
            f'repository\'s modules (it defines {", ".join(defined[:6])}{", ..." if len(defined) > 6 else ""}); '
            f'loading it would execute that code: if you trust the file, pass trust_embedded_code=True to '
            f'legacy.load_network_pkl() or --trust-embedded-code to the command-line tools')
    module = _module_from_source(meta.module_src)
    return persistent_class(module.__dict__[meta.class_name])


def match_known_module(module_src: str, class_name: str):
    """Our module that best matches the set of classes an embedded source defines, or None.

    Class names alone are ambiguous (networks_stylegan2 and networks_stylegan3 share several), so the
    whole set of top-level class names decides. The source is parsed, never executed.
    """
    if class_name not in _top_level_class_names(module_src):
        return None
    score, module = max(_modules_defining(module_src, class_name), default=(0.0, None), key=lambda item: item[0])
    # Require a clear majority of shared classes so a foreign module with one familiar name is not matched.
    return module if score >= 0.5 else None


def counterpart_class(module_src: str, class_name: str):
    """Our persistent class named `class_name` (the best-matching module decides between namesakes), or None.

    Used when converting a fork's pickle: the fork's module may differ a lot from ours, so only the class
    name has to agree; parameter names and shapes are checked when the network is rebuilt.
    """
    score, module = max(_modules_defining(module_src, class_name), default=(0.0, None), key=lambda item: item[0])
    return None if module is None else persistent_class(module.__dict__[class_name])


def _modules_defining(module_src: str, class_name: str) -> list:
    """(share of class names in common with `module_src`, module) for our modules defining persistent `class_name`."""
    embedded = _top_level_class_names(module_src)
    found = []
    for name in KNOWN_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        ours = _top_level_class_names(_module_source(module))
        if class_name not in ours or not is_persistent(module.__dict__.get(class_name)):
            continue  # Absent, or only imported there.
        found.append((len(ours & embedded) / len(ours | embedded), module))
    return found


_class_names_cache = dict()


def _top_level_class_names(src: str) -> frozenset:
    names = _class_names_cache.get(src)
    if names is None:
        try:
            tree = ast.parse(src)
        except SyntaxError:
            tree = ast.Module(body=[], type_ignores=[])
        names = frozenset(node.name for node in tree.body if isinstance(node, ast.ClassDef))
        _class_names_cache[src] = names
    return names


def _module_from_source(src: str) -> types.ModuleType:
    module = _src_to_module.get(src)
    if module is None:
        name = f'_imported_module_{uuid.uuid4().hex}'
        module = types.ModuleType(name)
        sys.modules[name] = module
        _module_to_src[module] = src
        _src_to_module[src] = module
        exec(src, module.__dict__)  # noqa: S102 -- only reached with allow_embedded_code().
    return module


def _module_source(module: types.ModuleType) -> str:
    src = _module_to_src.get(module)
    if src is None:
        src = inspect.getsource(module)
        _module_to_src[module] = src
        _src_to_module[src] = module
    return src


# ----------------------------------------------------------------------------


def _check_pickleable(obj) -> None:
    """Fail at construction time, not at snapshot time, if a persistent object holds something unpicklable."""
    def walk(value):
        if isinstance(value, (type(None), bool, int, float, complex, str, bytes, bytearray)):
            return
        if isinstance(value, (list, tuple, set, frozenset)):
            for item in value:
                walk(item)
            return
        if isinstance(value, dict):
            for key, item in value.items():
                walk(key)
                walk(item)
            return
        if is_persistent(value) or type(value).__module__.split('.')[0] in ('torch', 'numpy'):
            return  # Tensors, parameters, arrays and dtypes pickle fine; persistent objects check themselves.
        if value is _reconstruct_persistent_obj:
            return
        try:
            pickle.dumps(value)
        except Exception as err:
            raise TypeError(f'persistent object holds an unpicklable value of type {type(value).__name__}: {err}')
    walk(obj)
