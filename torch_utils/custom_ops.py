"""Just-in-time compilation of the CUDA plugins behind `torch_utils.ops`.

`get_plugin()` builds a PyTorch C++/CUDA extension with `torch.utils.cpp_extension.load` (ninja) and
imports it. The build directory is named after a hash of the source contents, the build flags and the
torch/Python versions, so an unchanged plugin is compiled once and then only re-imported, and an edited
one never picks up stale objects. A finished build records the GPU architectures it was compiled for
(`eg3d_build.json`); a later process whose GPUs that build covers imports the library directly, without
ninja or nvcc, which is how training reuses a prebuilt plugin on a compute node.

Builds in one directory are serialized by a lock file holding the owner's host and pid, which the owner
touches while it builds; on a shared filesystem one rank builds and the others wait, then import. A lock
whose owner died, or which has not been touched for `lock_stale_seconds`, is removed, so a crashed build
never makes others wait long.

Architectures: TORCH_CUDA_ARCH_LIST when set (as torch does); else those of the visible GPUs; else (a login
node, a container build, CI) the architectures of `DEFAULT_ARCHS` that the installed nvcc supports, with
+PTX on the newest. An architecture nvcc rejects is reported before compiling.

Every failure (no toolkit, an architecture the toolkit dropped, a compile error) surfaces as
`PluginBuildError` with a one-line message naming the cause. The ops catch it through `OptionalPlugin`:
one warning, then the pure-PyTorch reference path.

Prebuild both plugins (e.g. on a login node or in a container image): `python -m torch_utils.ops.prebuild --build`.

Environment variables:
    EG3D_DISABLE_CUDA_OPS=1   never build or use the plugins; every op runs its reference implementation.
    TORCH_EXTENSIONS_DIR      root of the build directories (default: torch's extension cache).
    TORCH_CUDA_ARCH_LIST      architectures to build for, e.g. "8.0;8.6;9.0+PTX".
"""

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
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
ARCH_ENV_VAR = 'TORCH_CUDA_ARCH_LIST'
MANIFEST_NAME = 'eg3d_build.json'

# Default targets without a GPU or an arch list: Volta, Turing, Ampere, Ada, Hopper, Blackwell (data center
# and consumer). Only those the installed nvcc supports are built.
DEFAULT_ARCHS = ('7.0', '7.5', '8.0', '8.6', '8.9', '9.0', '10.0', '12.0')

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


#----------------------------------------------------------------------------
# GPU architectures.

def _arch_key(arch: str):
    """'8.6' or '8.6+PTX' -> (8, 6); None for what is not a plain version (e.g. '9.0a', 'Ampere')."""
    match = re.fullmatch(r'(\d+)\.(\d+)(\+PTX)?', arch)
    return (int(match.group(1)), int(match.group(2))) if match else None


def parse_arch_list(text: str) -> list:
    """Entries of a TORCH_CUDA_ARCH_LIST value (separated by ';', ',' or spaces)."""
    return [arch for arch in re.split(r'[;,\s]+', text.strip()) if arch]


def nvcc_path() -> str:
    """The nvcc that torch's extension builder runs, or PluginBuildError naming what to set."""
    if os.environ.get('PYTORCH_NVCC'):
        return os.environ['PYTORCH_NVCC']
    home = torch.utils.cpp_extension.CUDA_HOME
    if home is None:
        raise PluginBuildError('no CUDA toolkit found (no CUDA_HOME, no nvcc on PATH, no /usr/local/cuda): '
            f'install the toolkit matching torch\'s CUDA {torch.version.cuda} and set CUDA_HOME to it')
    path = os.path.join(home, 'bin', 'nvcc')
    if not os.path.isfile(path):
        raise PluginBuildError(f'no nvcc at {path}: set CUDA_HOME to a CUDA toolkit (the one matching torch\'s CUDA {torch.version.cuda})')
    return path


def nvcc_info(nvcc: str):
    """(release, supported) of an nvcc: release like '13.0', supported archs like ['7.5', '8.0', ...]."""
    def run(*args):
        try:
            result = subprocess.run([nvcc, *args], capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as err:
            raise PluginBuildError(f'could not run {nvcc} {" ".join(args)}: {err}') from err
        if result.returncode != 0:
            raise PluginBuildError(f'{nvcc} {" ".join(args)} failed: {(result.stderr or result.stdout).strip()[:300]}')
        return result.stdout
    release = re.search(r'release (\d+\.\d+)', run('--version'))
    if release is None:
        raise PluginBuildError(f'{nvcc} --version does not name a CUDA release')
    supported = sorted({(int(m.group(1)[:-1]), int(m.group(1)[-1])) for m in re.finditer(r'\bcompute_(\d{2,3})\b', run('--list-gpu-arch'))})
    return release.group(1), [f'{major}.{minor}' for major, minor in supported]


def visible_gpu_archs() -> list:
    """Architectures of the visible GPUs, e.g. ['8.0']; empty without a GPU."""
    if not torch.cuda.is_available():
        return []
    return sorted({'%d.%d' % torch.cuda.get_device_capability(idx) for idx in range(torch.cuda.device_count())}, key=_arch_key)


def select_archs():
    """(archs, why) for a build: TORCH_CUDA_ARCH_LIST, else the visible GPUs, else the default list.

    Raises PluginBuildError when nvcc rejects one of them.
    """
    requested = parse_arch_list(os.environ.get(ARCH_ENV_VAR, ''))
    if requested:
        archs, why = requested, ARCH_ENV_VAR
    else:
        archs, why = visible_gpu_archs(), 'the GPUs present'
    nvcc = nvcc_path()
    release, supported = nvcc_info(nvcc)
    if not archs:
        archs = [arch for arch in DEFAULT_ARCHS if arch in supported]
        if not archs:
            raise PluginBuildError(f'nvcc {release} ({nvcc}) supports none of the default architectures {";".join(DEFAULT_ARCHS)}: '
                f'set {ARCH_ENV_VAR} to the GPUs you train on')
        archs[-1] += '+PTX'
        why = f'no GPU visible and {ARCH_ENV_VAR} unset: default list, as supported by nvcc {release}; set {ARCH_ENV_VAR} to choose'
    for arch in archs:
        key = _arch_key(arch)
        if key is None or not supported or f'{key[0]}.{key[1]}' in supported:
            continue
        name = f'compute_{key[0]}{key[1]}'
        newest = _arch_key(supported[-1])
        if key < newest:
            remedy = 'use an older CUDA toolkit (with the PyTorch build for it)'
        else:
            remedy = 'use a newer CUDA toolkit (with the PyTorch build for it)'
        if why == ARCH_ENV_VAR:
            remedy = f'remove {key[0]}.{key[1]} from {ARCH_ENV_VAR}, or ' + remedy
        raise PluginBuildError(f'CUDA {release} (nvcc {nvcc}) cannot compile for {name}, requested by {why}; it supports '
            f'compute_{supported[0].replace(".", "")} to compute_{supported[-1].replace(".", "")}: {remedy}')
    return archs, why


def archs_cover(built, wanted) -> bool:
    """True when a library compiled for `built` runs everywhere `wanted` asks for.

    A plain arch X.Y is covered by code for X.Y, by binary code for X.Z with Z < Y (same major), or by
    PTX for any older arch (JIT-compiled by the driver); an entry with +PTX needs exactly that entry.
    """
    built = list(built)
    for arch in wanted:
        if arch in built:
            continue
        key = _arch_key(arch)
        if key is None or arch.endswith('+PTX'):
            return False
        ok = False
        for have in built:
            have_key = _arch_key(have)
            if have_key is None or have_key > key:
                continue
            ok = ok or have.endswith('+PTX') or have_key[0] == key[0]
        if not ok:
            return False
    return True

#----------------------------------------------------------------------------
# Building and importing.

def _summarize(err: BaseException) -> str:
    """One line naming the cause: the compiler's first error line, else the message's first line."""
    if isinstance(err, PluginBuildError):
        return str(err)
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()] or ['(no message)']
    errors = [line for line in lines[1:] if re.search(r'\berror\b', line, re.IGNORECASE) and not line.startswith('[')]
    if errors:
        more = f' (+{len(errors) - 1} more error lines)' if len(errors) > 1 else ''
        return errors[0][:400] + more
    return f'{type(err).__name__}: {lines[0][:400]}'


def _read_manifest(build_dir: str):
    try:
        with open(os.path.join(build_dir, MANIFEST_NAME), 'r', encoding='utf-8') as f:
            manifest = json.load(f)
        library = os.path.join(build_dir, os.path.basename(manifest['library']))
        return (library, list(manifest['archs'])) if os.path.isfile(library) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_manifest(build_dir: str, library: str, archs):
    tmp = os.path.join(build_dir, f'{MANIFEST_NAME}.tmp-{uuid.uuid4().hex}')
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(dict(library=os.path.basename(library), archs=list(archs)), f)
    os.replace(tmp, os.path.join(build_dir, MANIFEST_NAME))


def _import_library(module_name: str, path: str):
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _reusable(build_dir: str, wanted):
    """The library of a finished build in `build_dir` that covers `wanted` (None: whatever it was built for)."""
    found = _read_manifest(build_dir)
    if found is not None and (wanted is None or archs_cover(found[1], wanted)):
        return found[0]
    return None


def _compile(module_name, sources, build_dir, archs, build_kwargs):
    """Compile for `archs` with torch's builder; records them in the manifest once the library exists."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(build_dir, MANIFEST_NAME))
    previous = os.environ.get(ARCH_ENV_VAR)
    os.environ[ARCH_ENV_VAR] = ';'.join(archs)
    try:
        module = torch.utils.cpp_extension.load(name=module_name, sources=sources, build_directory=build_dir,
            verbose=(verbosity == 'full'), **build_kwargs)
    finally:
        if previous is None:
            del os.environ[ARCH_ENV_VAR]
        else:
            os.environ[ARCH_ENV_VAR] = previous
    _write_manifest(build_dir, module.__file__, archs)
    return module


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
    build_dir = None
    try:
        if cuda_ops_disabled():
            raise PluginBuildError(f'{DISABLE_ENV_VAR} is set')
        build_dir = build_dir_for(module_name, files, build_kwargs)
        # A process with GPUs needs code for them; one without (the prebuild command) takes any finished build
        # unless TORCH_CUDA_ARCH_LIST asks for more.
        wanted = parse_arch_list(os.environ.get(ARCH_ENV_VAR, '')) or visible_gpu_archs() or None
        library = _reusable(build_dir, wanted)
        if library is None:
            os.makedirs(build_dir, exist_ok=True)
            with build_lock(build_dir):
                library = _reusable(build_dir, wanted)  # Another process may have built it while we waited.
                if library is None:
                    archs, why = select_archs()
                    if verbosity != 'none':
                        print(f'building for {";".join(archs)} ({why})... ', end='' if verbosity == 'brief' else '\n', flush=True)
                    copied = [_copy_if_missing(path, build_dir) for path in files]
                    module = _compile(module_name, copied[:len(sources)], build_dir, archs, build_kwargs)
        if library is not None:
            module = _import_library(module_name, library)
    except Exception as err:
        if verbosity == 'brief':
            print('Failed!')
        message = f'Could not build PyTorch plugin "{module_name}": {_summarize(err)}'
        if build_dir is not None and not isinstance(err, PluginBuildError) and os.path.isdir(build_dir):
            log = os.path.join(build_dir, 'eg3d_build_error.log')
            with contextlib.suppress(OSError), open(log, 'w', encoding='utf-8') as f:
                f.write(f'{err}\n')
            message += f' (full log: {log})'
        raise PluginBuildError(message) from err
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

#----------------------------------------------------------------------------
