"""Just-in-time compilation of the CUDA plugins behind `torch_utils.ops`.

`get_plugin()` builds a PyTorch C++/CUDA extension with `torch.utils.cpp_extension.load` (ninja) and
imports it. The build directory is named after a hash of the source contents, the build flags and the
torch/Python versions, so an unchanged plugin is compiled once and then only re-imported, and an edited
one never picks up stale objects. Builds in one directory are serialized by a lock file holding the
owner's host and pid, which the owner touches while it builds. A lock whose owner died, or which has not
been touched for `lock_stale_seconds`, is removed, so a crashed build never makes others wait long.

Every failure (no compiler, no CUDA toolkit, a compile error, a timeout) surfaces as `PluginBuildError`
whose message names the cause. The ops catch it through `OptionalPlugin`: one warning, then the
pure-PyTorch reference path.

Environment variables:
    EG3D_DISABLE_CUDA_OPS=1   never build or use the plugins; every op runs its reference implementation.
    TORCH_EXTENSIONS_DIR      root of the build directories (default: torch's extension cache).
"""

import contextlib
import hashlib
import os
import shutil
import socket
import sys
import threading
import time
import uuid
import warnings

import torch
import torch.utils.cpp_extension

verbosity = 'brief'         # 'none': silent, 'brief': one status line per plugin, 'full': compiler output.
lock_stale_seconds = 120    # A build lock untouched for this long is treated as abandoned.
lock_poll_seconds = 1.0     # How often a waiting process looks at the lock again.

DISABLE_ENV_VAR = 'EG3D_DISABLE_CUDA_OPS'

_cached_plugins = dict()    # module_name => imported module


class PluginBuildError(RuntimeError):
    """Building or importing a plugin failed; the message names the cause."""


def cuda_ops_disabled() -> bool:
    """True when the environment asks for the reference implementations only."""
    return os.environ.get(DISABLE_ENV_VAR, '').strip().lower() not in ('', '0', 'false', 'no', 'off')


def build_dir_for(module_name, files, build_kwargs=None) -> str:
    """Build directory of a plugin: depends on file names and contents, build flags and versions."""
    md5 = hashlib.md5()
    for path in sorted(files, key=os.path.basename):
        md5.update(os.path.basename(path).encode('utf-8') + b'\0')
        with open(path, 'rb') as f:
            md5.update(f.read() + b'\0')
    env = (torch.__version__, torch.version.cuda, sys.version_info[:2], sys.platform, sorted((build_kwargs or {}).items()))
    md5.update(repr(env).encode('utf-8'))
    root = os.environ.get('TORCH_EXTENSIONS_DIR') or torch.utils.cpp_extension.get_default_build_root()
    return os.path.join(root, f'{module_name}-{md5.hexdigest()[:16]}')


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # Exists but belongs to someone else, or cannot be probed: assume alive.
    return True


def _lock_is_stale(lock_path: str) -> bool:
    try:
        age = time.time() - os.path.getmtime(lock_path)
        with open(lock_path, 'r', encoding='utf-8') as f:
            owner = f.read().split()
    except FileNotFoundError:
        return False  # Released meanwhile; the caller simply retries.
    if age > lock_stale_seconds:
        return True
    # The pid is only meaningful on the host that wrote it (build dirs may live on a shared disk).
    # os.kill(pid, 0) is a liveness probe on POSIX only.
    if os.name == 'posix' and len(owner) == 2 and owner[0] == socket.gethostname() and owner[1].isdigit():
        return not _pid_alive(int(owner[1]))
    return False


@contextlib.contextmanager
def build_lock(build_dir: str):
    """Exclusive lock on a build directory that never waits on a dead or abandoned owner."""
    lock_path = os.path.join(build_dir, 'eg3d_build.lock')
    while True:
        try:
            fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            if _lock_is_stale(lock_path):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(lock_path)
            else:
                time.sleep(lock_poll_seconds)
    with os.fdopen(fd, 'w', encoding='utf-8') as f:
        f.write(f'{socket.gethostname()} {os.getpid()}\n')

    # Heartbeat: keep the lock fresh however long the compiler runs.
    stop = threading.Event()

    def touch_until_stopped():
        while not stop.wait(lock_stale_seconds / 4):
            with contextlib.suppress(OSError):
                os.utime(lock_path)

    heartbeat = threading.Thread(target=touch_until_stopped, daemon=True)
    heartbeat.start()
    try:
        # torch's own baton: while we hold our lock, a leftover one can only come from a killed build.
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(build_dir, 'lock'))
        yield
    finally:
        stop.set()
        heartbeat.join()
        with contextlib.suppress(FileNotFoundError):
            os.remove(lock_path)


def _copy_if_missing(src: str, dst_dir: str) -> str:
    dst = os.path.join(dst_dir, os.path.basename(src))
    if not os.path.isfile(dst):
        tmp = f'{dst}.tmp-{uuid.uuid4().hex}'
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    return dst


def _summarize(err: BaseException, max_lines: int = 20, max_chars: int = 400) -> str:
    """First line of the message plus the compiler's error lines (or the log's tail); the full text stays in __cause__."""
    lines = [line.rstrip()[:max_chars] for line in str(err).strip().splitlines() if line.strip()] or ['(no message)']
    errors = [line for line in lines[1:] if 'error' in line.lower()]
    body = errors[:max_lines] if errors else lines[1:][-max_lines:]
    return f'{type(err).__name__}: ' + '\n'.join([lines[0]] + body)


def get_plugin(module_name, sources, headers=None, source_dir=None, **build_kwargs):
    """Compile (if needed) and import a C++/CUDA extension; raises PluginBuildError on any failure.

    `sources` and `headers` are file names, relative to `source_dir` when given. They are copied into
    the hashed build directory, so sources include their headers with `#include "name.h"`.
    `build_kwargs` go to `torch.utils.cpp_extension.load` (e.g. extra_cuda_cflags).
    """
    assert verbosity in ['none', 'brief', 'full']
    if module_name in _cached_plugins:
        return _cached_plugins[module_name]
    headers = list(headers or [])
    if source_dir is not None:
        sources = [os.path.join(source_dir, name) for name in sources]
        headers = [os.path.join(source_dir, name) for name in headers]
    files = list(sources) + headers
    if len({os.path.basename(path) for path in files}) != len(files):
        raise PluginBuildError(f'Plugin "{module_name}": source and header file names must be unique: {files}')

    if verbosity == 'full':
        print(f'Setting up PyTorch plugin "{module_name}"...')
    elif verbosity == 'brief':
        print(f'Setting up PyTorch plugin "{module_name}"... ', end='', flush=True)
    try:
        if cuda_ops_disabled():
            raise RuntimeError(f'{DISABLE_ENV_VAR} is set')
        build_dir = build_dir_for(module_name, files, build_kwargs)
        os.makedirs(build_dir, exist_ok=True)
        with build_lock(build_dir):
            copied = [_copy_if_missing(path, build_dir) for path in files]
            module = torch.utils.cpp_extension.load(name=module_name, sources=copied[:len(sources)],
                build_directory=build_dir, verbose=(verbosity == 'full'), **build_kwargs)
    except Exception as err:
        if verbosity == 'brief':
            print('Failed!')
        raise PluginBuildError(f'Could not build PyTorch plugin "{module_name}": {_summarize(err)}') from err
    if verbosity == 'brief':
        print('Done.')
    _cached_plugins[module_name] = module
    return module


class OptionalPlugin:
    """A plugin that is built on first use; if that fails, warns once and reports None from then on."""

    def __init__(self, module_name, sources, headers=None, source_dir=None, **build_kwargs):
        self._args = dict(module_name=module_name, sources=sources, headers=headers, source_dir=source_dir, **build_kwargs)
        self._module = None
        self._error = None

    def get(self):
        """The imported plugin, or None when disabled by the environment or when the build failed."""
        if cuda_ops_disabled():
            return None
        if self._module is None and self._error is None:
            try:
                self._module = get_plugin(**self._args)
            except Exception as err:
                self._error = err
                warnings.warn(f'{err}\nFalling back to the slow reference implementation '
                    f'(set {DISABLE_ENV_VAR}=1 to skip the build).', RuntimeWarning, stacklevel=3)
        return self._module

    def for_tensor(self, x, impl):
        """The plugin if an op on `x` should run compiled: impl == 'cuda', x on a CUDA device, plugin usable."""
        if impl != 'cuda' or x.device.type != 'cuda':
            return None
        return self.get()
