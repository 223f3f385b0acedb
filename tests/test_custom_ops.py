"""torch_utils.custom_ops: build directory hashing, caching, lock handling and error reporting.

The compiler is replaced by a fake `torch.utils.cpp_extension.load`, so no toolchain is needed.
"""

import os
import socket
import subprocess
import sys
import threading
import time
import types

import pytest
import torch.utils.cpp_extension

from torch_utils import custom_ops


@pytest.fixture
def sources(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    (src / 'op.cpp').write_text('// op\n#include "op.h"\n')
    (src / 'op.cu').write_text('// kernel\n')
    (src / 'op.h').write_text('#pragma once\n')
    return src


@pytest.fixture
def fake_build(tmp_path, monkeypatch):
    """Build root in tmp_path, empty plugin cache, and a fake compiler that records its calls."""
    monkeypatch.setenv('TORCH_EXTENSIONS_DIR', str(tmp_path / 'build'))
    monkeypatch.delenv(custom_ops.DISABLE_ENV_VAR, raising=False)
    monkeypatch.setattr(custom_ops, '_cached_plugins', {})
    monkeypatch.setattr(custom_ops, 'verbosity', 'none')
    calls = []

    def load(name, sources, build_directory, verbose, **kwargs):
        assert not os.path.exists(os.path.join(build_directory, 'lock')), 'stale torch lock was not removed'
        calls.append(dict(name=name, sources=sources, build_directory=build_directory, kwargs=kwargs, time=time.time()))
        return types.SimpleNamespace(name=name)

    monkeypatch.setattr(torch.utils.cpp_extension, 'load', load)
    return calls


def get_test_plugin(sources, **kwargs):
    return custom_ops.get_plugin('test_plugin', sources=['op.cpp', 'op.cu'], headers=['op.h'], source_dir=str(sources), **kwargs)


def build_dir_of(sources, **build_kwargs):
    return custom_ops.build_dir_for('test_plugin', [str(sources / name) for name in ['op.cpp', 'op.cu', 'op.h']], build_kwargs)


def test_build_dir_depends_on_contents_and_flags(sources, fake_build, tmp_path):
    first = build_dir_of(sources)
    assert first == build_dir_of(sources)
    assert os.path.dirname(first) == str(tmp_path / 'build')
    assert os.path.basename(first).startswith('test_plugin-')
    assert build_dir_of(sources, extra_cuda_cflags=['-O3']) != first
    (sources / 'op.h').write_text('#pragma once\n#define CHANGED 1\n')
    assert build_dir_of(sources) != first


def test_get_plugin_builds_once(sources, fake_build):
    module = get_test_plugin(sources, extra_cuda_cflags=['-O3'])
    assert module.name == 'test_plugin'
    assert len(fake_build) == 1
    call = fake_build[0]
    assert call['build_directory'] == build_dir_of(sources, extra_cuda_cflags=['-O3'])
    assert call['kwargs'] == dict(extra_cuda_cflags=['-O3'])
    # Sources (and the header they include) are compiled from copies inside the hashed directory.
    assert [os.path.dirname(path) for path in call['sources']] == [call['build_directory']] * 2
    assert sorted(os.listdir(call['build_directory'])) == ['op.cpp', 'op.cu', 'op.h']
    assert get_test_plugin(sources, extra_cuda_cflags=['-O3']) is module
    assert len(fake_build) == 1


@pytest.mark.parametrize('mode, expected', [('brief', 'Setting up PyTorch plugin "test_plugin"... Done.\n'), ('none', '')])
def test_status_line(mode, expected, sources, fake_build, monkeypatch, capsys):
    monkeypatch.setattr(custom_ops, 'verbosity', mode)
    get_test_plugin(sources)
    assert capsys.readouterr().out == expected


def _dead_pid():
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    return proc.pid


def _write_lock(build_dir, owner, age=0.0):
    os.makedirs(build_dir, exist_ok=True)
    path = os.path.join(build_dir, 'eg3d_build.lock')
    with open(path, 'w', encoding='utf-8') as f:
        f.write(owner + '\n')
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


@pytest.mark.skipif(os.name != 'posix', reason='pid probing is POSIX-only')
def test_lock_of_dead_process_is_removed(sources, fake_build, monkeypatch):
    monkeypatch.setattr(custom_ops, 'lock_stale_seconds', 3600)
    lock = _write_lock(build_dir_of(sources), f'{socket.gethostname()} {_dead_pid()}')
    start = time.time()
    get_test_plugin(sources)
    assert len(fake_build) == 1 and time.time() - start < 30
    assert not os.path.exists(lock)


def test_old_lock_is_removed(sources, fake_build, monkeypatch):
    monkeypatch.setattr(custom_ops, 'lock_stale_seconds', 60)
    lock = _write_lock(build_dir_of(sources), 'some-other-host 1', age=3600)
    get_test_plugin(sources)
    assert len(fake_build) == 1
    assert not os.path.exists(lock)


def test_leftover_torch_lock_is_removed(sources, fake_build):
    build_dir = build_dir_of(sources)
    os.makedirs(build_dir)
    open(os.path.join(build_dir, 'lock'), 'w').close()
    get_test_plugin(sources)  # The fake loader asserts that torch's baton is gone.
    assert len(fake_build) == 1


def test_live_lock_is_waited_for(sources, fake_build, monkeypatch):
    monkeypatch.setattr(custom_ops, 'lock_stale_seconds', 600)
    monkeypatch.setattr(custom_ops, 'lock_poll_seconds', 0.02)
    lock = _write_lock(build_dir_of(sources), f'{socket.gethostname()} {os.getpid()}')
    released = []

    def release():
        time.sleep(0.3)
        released.append(time.time())
        os.remove(lock)

    thread = threading.Thread(target=release)
    thread.start()
    get_test_plugin(sources)
    thread.join()
    assert len(fake_build) == 1 and fake_build[0]['time'] >= released[0]


def test_live_lock_expires(sources, fake_build, monkeypatch):
    """A lock whose owner is alive but which never goes away is broken after lock_stale_seconds."""
    monkeypatch.setattr(custom_ops, 'lock_stale_seconds', 0.3)
    monkeypatch.setattr(custom_ops, 'lock_poll_seconds', 0.02)
    _write_lock(build_dir_of(sources), f'{socket.gethostname()} {os.getpid()}')
    start = time.time()
    get_test_plugin(sources)
    assert len(fake_build) == 1 and 0.25 <= time.time() - start < 30


def test_lock_is_kept_fresh_during_a_long_build(sources, fake_build, monkeypatch):
    monkeypatch.setattr(custom_ops, 'lock_stale_seconds', 0.2)
    lock = os.path.join(build_dir_of(sources), 'eg3d_build.lock')
    seen = []

    def slow_load(**_kwargs):
        start = time.time()
        time.sleep(0.6)
        seen.append((start, os.path.getmtime(lock), custom_ops._lock_is_stale(lock)))
        return types.SimpleNamespace()

    monkeypatch.setattr(torch.utils.cpp_extension, 'load', slow_load)
    get_test_plugin(sources)
    (start, touched, stale), = seen
    assert touched > start + 0.1 and not stale
    assert not os.path.exists(lock)


def test_failed_build_raises_with_cause(sources, fake_build, monkeypatch, capsys):
    monkeypatch.setattr(custom_ops, 'verbosity', 'brief')

    def failing_load(**_kwargs):
        log = ['[1/3] nvcc ' + '-I/some/include ' * 100 + '-c op.cu'] * 30 + ['op.cu(3): error: identifier "foo" is undefined']
        raise RuntimeError("Error building extension 'test_plugin': " + '\n'.join(log + ['ninja: build stopped']))

    monkeypatch.setattr(torch.utils.cpp_extension, 'load', failing_load)
    with pytest.raises(custom_ops.PluginBuildError, match='identifier "foo" is undefined') as info:
        get_test_plugin(sources)
    assert 'test_plugin' in str(info.value) and isinstance(info.value.__cause__, RuntimeError)
    assert len(str(info.value)) < 2000  # The compiler's command lines are dropped from the summary.
    assert capsys.readouterr().out == 'Setting up PyTorch plugin "test_plugin"... Failed!\n'
    assert not os.path.exists(os.path.join(build_dir_of(sources), 'eg3d_build.lock'))
    assert 'test_plugin' not in custom_ops._cached_plugins


def test_disabled_by_environment(sources, fake_build, monkeypatch):
    monkeypatch.setenv(custom_ops.DISABLE_ENV_VAR, '1')
    assert custom_ops.cuda_ops_disabled()
    with pytest.raises(custom_ops.PluginBuildError, match=custom_ops.DISABLE_ENV_VAR):
        get_test_plugin(sources)
    assert fake_build == []


def test_duplicate_file_names_rejected(sources, fake_build):
    with pytest.raises(custom_ops.PluginBuildError, match='unique'):
        custom_ops.get_plugin('test_plugin', sources=['op.cpp', os.path.join(str(sources), 'op.cpp')], source_dir=None)
