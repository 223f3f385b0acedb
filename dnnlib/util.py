"""Small general-purpose utilities: attribute dicts, class lookup by name, URL caching, logging."""

import contextlib
import hashlib
import importlib
import io
import os
import re
import sys
import tempfile
import threading
import types
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any, Optional

# ----------------------------------------------------------------------------


class EasyDict(dict):
    """A dict whose keys can also be read and written as attributes.

    Network pickles reference this class as `dnnlib.util.EasyDict`, so it must stay in this module.
    """

    __setattr__ = dict.__setitem__

    def __getattr__(self, name: str) -> Any:
        if name not in self:
            raise AttributeError(f'no key {name!r}')
        return self[name]

    def __delattr__(self, name: str) -> None:
        if name not in self:
            raise AttributeError(f'no key {name!r}')
        dict.__delitem__(self, name)


class UserError(ValueError):
    """A problem with the user's input whose message is one line naming the file or flag: the tools print it as is."""


# ----------------------------------------------------------------------------
# Crash-safe output files.

TEMP_PREFIX = '.tmp-'  # Temporary files of unfinished writes start with this; see remove_stale_temp_files().


@contextlib.contextmanager
def atomic_output(path: str):
    """Yield a temporary path beside `path`; it replaces `path` only if the block finishes without error.

    The temporary name keeps the final name as its suffix, so writers that pick a format by extension work.
    """
    directory, name = os.path.split(os.path.abspath(path))
    tmp_path = os.path.join(directory, f'{TEMP_PREFIX}{uuid.uuid4().hex[:12]}-{name}')
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)


def write_atomic(path: str, write_fn, binary: bool = True) -> None:
    """Call write_fn(file) on a fresh temporary file, flush it to disk, then rename it to `path`."""
    with atomic_output(path) as tmp_path:
        # Mode 'x' creates the file with the umask's permissions (mkstemp would make it private).
        with open(tmp_path, 'xb' if binary else 'x') as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())


def remove_stale_temp_files(directory: str) -> list:
    """Delete the temporary files that killed writes left in `directory`; returns their paths."""
    removed = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name.startswith(TEMP_PREFIX) and os.path.isfile(path):
            os.remove(path)
            removed.append(path)
    return removed


# ----------------------------------------------------------------------------


class Logger:
    """Copies everything written to stdout and stderr into a log file as well (a context manager)."""

    def __init__(self, file_name: Optional[str] = None, file_mode: str = 'w', should_flush: bool = True):
        self.should_flush = should_flush
        self.file = None if file_name is None else open(file_name, file_mode)
        self.stdout, self.stderr = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = self

    def _sinks(self) -> list:
        # Both captured streams end up on the console's stdout; the log file gets a copy.
        return [sink for sink in (self.file, self.stdout) if sink is not None]

    def write(self, text) -> None:
        text = text.decode() if isinstance(text, bytes) else text
        if not text:
            return
        for sink in self._sinks():
            sink.write(text)
        if self.should_flush:
            self.flush()

    def flush(self) -> None:
        for sink in self._sinks():
            sink.flush()

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        self.flush()
        # Only restore the streams we replaced; another Logger may have been installed since.
        for stream_name, saved in (('stdout', self.stdout), ('stderr', self.stderr)):
            if getattr(sys, stream_name) is self:
                setattr(sys, stream_name, saved)
        log_file, self.file = self.file, None
        if log_file is not None:
            log_file.close()

    def __enter__(self) -> 'Logger':
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


# ----------------------------------------------------------------------------


def format_time(seconds: float) -> str:
    """Human-readable duration: '12s', '3m 05s', '2h 01m 09s', '1d 04h 02m'."""
    s = int(round(seconds))
    if s < 60:
        return f'{s}s'
    if s < 60 * 60:
        return f'{s // 60}m {s % 60:02d}s'
    if s < 24 * 60 * 60:
        return f'{s // 3600}h {(s // 60) % 60:02d}m {s % 60:02d}s'
    return f'{s // 86400}d {(s // 3600) % 24:02d}h {(s // 60) % 60:02d}m'


# ----------------------------------------------------------------------------
# Objects by name.


def get_module_from_obj_name(obj_name: str) -> tuple[types.ModuleType, str]:
    """Split 'pkg.module.attr.sub' into the longest importable module and the remaining attribute path."""
    parts = obj_name.split('.')
    for split in range(len(parts) - 1, 0, -1):
        module_name = '.'.join(parts[:split])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            # Keep looking only if the missing module is the one we tried, not one it imports.
            if err.name is not None and module_name.startswith(err.name):
                continue
            raise
        remainder = '.'.join(parts[split:])
        try:
            get_obj_from_module(module, remainder)
        except AttributeError:
            continue
        return module, remainder
    raise ImportError(f'cannot find an object named "{obj_name}"')


def get_obj_from_module(module: types.ModuleType, obj_name: str) -> Any:
    obj = module
    for part in obj_name.split('.') if obj_name else []:
        obj = getattr(obj, part)
    return obj


_name_checks = threading.local()  # .check: callable(name) that raises to refuse a name, or None.


@contextlib.contextmanager
def thread_local_setting(local: threading.local, name: str, value, default=None):
    """Set local.<name> to `value` within this context (in this thread), then restore what it was."""
    previous = getattr(local, name, default)
    setattr(local, name, value)
    try:
        yield
    finally:
        setattr(local, name, previous)


def restrict_names(check):
    """Within this context (in this thread), get_obj_by_name() and the constructors built on it first pass every
    name to check(name), which raises to refuse it; nothing is imported for a refused name."""
    return thread_local_setting(_name_checks, 'check', check)


def get_obj_by_name(name: str) -> Any:
    check = getattr(_name_checks, 'check', None)
    if check is not None:
        check(name)
    module, obj_name = get_module_from_obj_name(name)
    return get_obj_from_module(module, obj_name)


def call_func_by_name(*args, func_name: str = None, **kwargs) -> Any:
    assert func_name is not None
    func = get_obj_by_name(func_name)
    if not callable(func):
        raise TypeError(f'"{func_name}" is not callable')
    return func(*args, **kwargs)


def construct_class_by_name(*args, class_name: str = None, **kwargs) -> Any:
    return call_func_by_name(*args, func_name=class_name, **kwargs)


# ----------------------------------------------------------------------------
# Cache directory and URLs.

_dnnlib_cache_dir = None


def set_cache_dir(path: Optional[str]) -> None:
    global _dnnlib_cache_dir
    _dnnlib_cache_dir = path


def make_cache_dir_path(*paths: str) -> str:
    """Path inside the cache: set_cache_dir() > $DNNLIB_CACHE_DIR > ~/.cache/dnnlib (HOME, USERPROFILE) > temp dir."""
    root = _dnnlib_cache_dir if _dnnlib_cache_dir is not None else os.environ.get('DNNLIB_CACHE_DIR')
    if root is None:
        home = os.environ.get('HOME', os.environ.get('USERPROFILE'))
        root = os.path.join(home if home is not None else tempfile.gettempdir(), '.cache', 'dnnlib')
    return os.path.join(root, *paths)


def is_url(obj: Any, allow_file_urls: bool = False) -> bool:
    if not isinstance(obj, str) or '://' not in obj:
        return False
    if allow_file_urls and obj.startswith('file://'):
        return True
    try:
        res = urllib.parse.urlparse(obj)
        if not res.scheme or not res.netloc or '.' not in res.netloc:
            return False
        res = urllib.parse.urlparse(urllib.parse.urljoin(obj, '/'))
        if not res.scheme or not res.netloc or '.' not in res.netloc:
            return False
    except ValueError:
        return False
    return True


def url_cache_path(url: str, cache_dir: Optional[str] = None) -> str:
    """Where open_url() keeps (or expects) the cached copy of `url`: <cache>/downloads/<md5>_<basename>."""
    if cache_dir is None:
        cache_dir = make_cache_dir_path('downloads')
    url_md5 = hashlib.md5(url.encode('utf-8')).hexdigest()
    basename = re.sub(r'[^0-9A-Za-z._-]', '_', os.path.basename(urllib.parse.urlparse(url).path)) or 'download'
    return os.path.join(cache_dir, f'{url_md5}_{basename}')


class DownloadError(IOError):
    """Raised when a URL cannot be fetched and no cached copy exists."""


def open_url(url: str, cache_dir: Optional[str] = None, num_attempts: int = 10, verbose: bool = True,
             return_filename: bool = False, cache: bool = True) -> Any:
    """Open a local path, a file:// URL or an http(s) URL (downloaded once into the cache).

    Returns a binary file object, or the local file name with return_filename=True.
    """
    assert num_attempts >= 1
    assert not (return_filename and not cache)

    # Local paths and file:// URLs.
    if not re.match('^[a-z]+://', url):
        if not os.path.isfile(url):
            raise FileNotFoundError(f'{url}: no such file')
        return url if return_filename else open(url, 'rb')
    if url.startswith('file://'):
        filename = urllib.parse.urlparse(url).path
        if re.match(r'^/[a-zA-Z]:', filename):  # file:///C:/dir/file on Windows
            filename = filename[1:]
        filename = urllib.request.url2pathname(filename)
        if not os.path.isfile(filename):
            raise FileNotFoundError(f'{url}: no such file')
        return filename if return_filename else open(filename, 'rb')

    assert is_url(url), f'not a valid URL: {url}'
    cache_file = url_cache_path(url, cache_dir)
    if cache and os.path.isfile(cache_file):
        return cache_file if return_filename else open(cache_file, 'rb')

    data = _download(url, num_attempts=num_attempts, verbose=verbose, cache_file=cache_file)

    if cache:
        os.makedirs(os.path.dirname(cache_file), exist_ok=True)
        fd, tmp_file = tempfile.mkstemp(dir=os.path.dirname(cache_file), prefix='.tmp_')
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
        os.replace(tmp_file, cache_file)
        if return_filename:
            return cache_file
    return io.BytesIO(data)


def _download(url: str, num_attempts: int, verbose: bool, cache_file: str) -> bytes:
    last_error = None
    for attempt in range(num_attempts):
        if verbose:
            print(f'Downloading {url} ...', end='', flush=True)
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                data = response.read()
            if verbose:
                print(' done')
            return data
        except urllib.error.HTTPError as err:
            if verbose:
                print(' failed')
            last_error = err
            if err.code in (401, 403, 404):
                break  # Retrying will not help.
        except (urllib.error.URLError, OSError) as err:
            if verbose:
                print(' failed')
            last_error = err
            if attempt >= 1 and isinstance(getattr(err, 'reason', None), OSError):
                break  # Offline: name resolution / connection refused keeps failing.
    raise DownloadError(f'cannot download {url} ({last_error}); if you are offline, download it elsewhere '
                        f'and place it at {cache_file}')
