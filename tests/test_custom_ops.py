"""torch_utils.custom_ops: build directory hashing, caching, lock handling, architecture selection, reuse of
prebuilt plugins, the prebuild command and error reporting.

The compiler is replaced by a fake `torch.utils.cpp_extension.load` (it writes a Python module where the
library would be) and nvcc by a shell script, so no toolchain or GPU is needed.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import torch.utils.cpp_extension

from torch_utils import custom_ops
from torch_utils.ops import prebuild


@pytest.fixture
def sources(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    (src / 'op.cpp').write_text('// op\n#include "op.h"\n')
    (src / 'op.cu').write_text('// kernel\n')
    (src / 'op.h').write_text('#pragma once\n')
    return src


NVCC_13 = ('13.0', ['75', '80', '86', '87', '88', '89', '90', '100', '110', '103', '120', '121'])
NVCC_12 = ('12.8', ['50', '52', '53', '60', '61', '62', '70', '72', '75', '80', '86', '87', '89', '90', '100', '101', '120'])


def make_fake_nvcc(root, release, computes):
    """A CUDA_HOME whose bin/nvcc answers --version and --list-gpu-arch like the real one."""
    nvcc = root / 'bin' / 'nvcc'
    nvcc.parent.mkdir(parents=True, exist_ok=True)
    archs = '\\n'.join(f'compute_{arch}' for arch in computes)
    nvcc.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        case "$1" in
            --version) echo "Cuda compilation tools, release {release}, V{release}.88";;
            --list-gpu-arch) printf '{archs}\\n';;
            *) exit 1;;
        esac
        """))
    nvcc.chmod(0o755)
    return root


def fake_load(calls):
    """Stands in for torch.utils.cpp_extension.load: records the call and 'builds' an importable module."""
    def load(name, sources, build_directory, verbose, **kwargs):
        assert not os.path.exists(os.path.join(build_directory, 'lock')), 'stale torch lock was not removed'
        calls.append(dict(name=name, sources=sources, build_directory=build_directory, kwargs=kwargs, time=time.time(),
            archs=os.environ.get('TORCH_CUDA_ARCH_LIST')))
        path = os.path.join(build_directory, f'{name}.py')
        with open(path, 'w', encoding='utf-8') as f:
            f.write(f'name = {name!r}\n')
        return custom_ops._import_library(name, path)
    return load


@pytest.fixture
def fake_build(tmp_path, monkeypatch):
    """Build root in tmp_path, empty plugin cache, no GPU, CUDA 13 nvcc, and a fake compiler that records its calls."""
    monkeypatch.setenv('TORCH_EXTENSIONS_DIR', str(tmp_path / 'build'))
    monkeypatch.delenv(custom_ops.DISABLE_ENV_VAR, raising=False)
    monkeypatch.delenv('TORCH_CUDA_ARCH_LIST', raising=False)
    monkeypatch.delenv('PYTORCH_NVCC', raising=False)
    monkeypatch.setattr(custom_ops, '_cached_plugins', {})
    monkeypatch.setattr(custom_ops, 'verbosity', 'none')
    monkeypatch.setattr(custom_ops, 'visible_gpu_archs', lambda: [])
    monkeypatch.setattr(torch.utils.cpp_extension, 'CUDA_HOME', str(make_fake_nvcc(tmp_path / 'cuda', *NVCC_13)))
    calls = []
    monkeypatch.setattr(torch.utils.cpp_extension, 'load', fake_load(calls))
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
    assert sorted(os.listdir(call['build_directory'])) == ['eg3d_build.json', 'op.cpp', 'op.cu', 'op.h', 'test_plugin.py']
    assert get_test_plugin(sources, extra_cuda_cflags=['-O3']) is module
    assert len(fake_build) == 1


@pytest.mark.parametrize('mode, expected', [
    ('brief', 'Setting up PyTorch plugin "test_plugin"... building for 8.0;8.6 (TORCH_CUDA_ARCH_LIST)... Done.\n'),
    ('none', '')])
def test_status_line(mode, expected, sources, fake_build, monkeypatch, capsys):
    monkeypatch.setattr(custom_ops, 'verbosity', mode)
    monkeypatch.setenv('TORCH_CUDA_ARCH_LIST', '8.0 8.6')
    get_test_plugin(sources)
    assert capsys.readouterr().out == expected
    custom_ops._cached_plugins.clear()
    get_test_plugin(sources)  # A new process: imports the finished build and says nothing about architectures.
    assert capsys.readouterr().out == expected.replace('building for 8.0;8.6 (TORCH_CUDA_ARCH_LIST)... ', '')
    assert len(fake_build) == 1


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

    def slow_load(**kwargs):
        start = time.time()
        time.sleep(0.6)
        seen.append((start, os.path.getmtime(lock), custom_ops._lock_is_stale(lock)))
        return fake_load([])(**kwargs)

    monkeypatch.setattr(torch.utils.cpp_extension, 'load', slow_load)
    get_test_plugin(sources)
    (start, touched, stale), = seen
    assert touched > start + 0.1 and not stale
    assert not os.path.exists(lock)


def test_failed_build_raises_with_cause(sources, fake_build, monkeypatch, capsys):
    monkeypatch.setattr(custom_ops, 'verbosity', 'brief')
    monkeypatch.setenv('TORCH_CUDA_ARCH_LIST', '8.0')

    def failing_load(**_kwargs):
        log = ['[1/3] nvcc ' + '-I/some/include ' * 100 + '-c op.cu'] * 30 + ['op.cu(3): error: identifier "foo" is undefined']
        raise RuntimeError("Error building extension 'test_plugin': " + '\n'.join(log + ['ninja: build stopped']))

    monkeypatch.setattr(torch.utils.cpp_extension, 'load', failing_load)
    with pytest.raises(custom_ops.PluginBuildError, match='identifier "foo" is undefined') as info:
        get_test_plugin(sources)
    assert 'test_plugin' in str(info.value) and isinstance(info.value.__cause__, RuntimeError)
    message = str(info.value)
    assert '\n' not in message and len(message) < 1000  # One line: the compiler's command lines stay in the log.
    log = os.path.join(build_dir_of(sources), 'eg3d_build_error.log')
    assert message.endswith(f'op.cu(3): error: identifier "foo" is undefined (full log: {log})')
    with open(log, encoding='utf-8') as f:
        assert 'ninja: build stopped' in f.read()
    assert capsys.readouterr().out == 'Setting up PyTorch plugin "test_plugin"... building for 8.0 (TORCH_CUDA_ARCH_LIST)... Failed!\n'
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


def test_bare_exception_becomes_one_line(sources, fake_build, monkeypatch):
    def failing_load(**_kwargs):
        raise IndexError('list index out of range')

    monkeypatch.setattr(torch.utils.cpp_extension, 'load', failing_load)
    with pytest.raises(custom_ops.PluginBuildError) as info:
        get_test_plugin(sources)
    assert str(info.value).startswith('Could not build PyTorch plugin "test_plugin": IndexError: list index out of range (full log: ')
    assert '\n' not in str(info.value)

#----------------------------------------------------------------------------
# Architectures.

def test_default_archs_without_gpu_or_arch_list(sources, fake_build, monkeypatch, capsys):
    monkeypatch.setattr(custom_ops, 'verbosity', 'brief')
    get_test_plugin(sources)
    default = '7.5;8.0;8.6;8.9;9.0;10.0;12.0+PTX'  # No 7.0: CUDA 13 dropped it.
    assert [call['archs'] for call in fake_build] == [default]
    assert capsys.readouterr().out == (f'Setting up PyTorch plugin "test_plugin"... building for {default} (no GPU visible and '
        'TORCH_CUDA_ARCH_LIST unset: default list, as supported by nvcc 13.0; set TORCH_CUDA_ARCH_LIST to choose)... Done.\n')
    assert 'TORCH_CUDA_ARCH_LIST' not in os.environ  # Set for the build only.
    with open(os.path.join(build_dir_of(sources), 'eg3d_build.json'), encoding='utf-8') as f:
        assert json.load(f) == dict(library='test_plugin.py', archs=default.split(';'))


def test_default_archs_follow_the_toolkit(tmp_path, monkeypatch):
    monkeypatch.delenv('TORCH_CUDA_ARCH_LIST', raising=False)
    monkeypatch.delenv('PYTORCH_NVCC', raising=False)
    monkeypatch.setattr(custom_ops, 'visible_gpu_archs', lambda: [])
    monkeypatch.setattr(torch.utils.cpp_extension, 'CUDA_HOME', str(make_fake_nvcc(tmp_path / 'cuda12', *NVCC_12)))
    archs, why = custom_ops.select_archs()
    assert archs == ['7.0', '7.5', '8.0', '8.6', '8.9', '9.0', '10.0', '12.0+PTX'] and 'nvcc 12.8' in why
    assert custom_ops.nvcc_info(str(tmp_path / 'cuda12' / 'bin' / 'nvcc'))[1][:3] == ['5.0', '5.2', '5.3']


def test_gpu_archs_and_arch_list(fake_build, monkeypatch):
    monkeypatch.setattr(custom_ops, 'visible_gpu_archs', lambda: ['8.0', '8.6'])
    assert custom_ops.select_archs() == (['8.0', '8.6'], 'the GPUs present')
    monkeypatch.setenv('TORCH_CUDA_ARCH_LIST', '9.0;10.0+PTX')  # An explicit list wins, as in torch.
    assert custom_ops.select_archs() == (['9.0', '10.0+PTX'], 'TORCH_CUDA_ARCH_LIST')


def test_no_gpu_no_toolkit(sources, fake_build, monkeypatch):
    monkeypatch.setattr(torch.utils.cpp_extension, 'CUDA_HOME', None)
    with pytest.raises(custom_ops.PluginBuildError) as info:
        get_test_plugin(sources)
    assert str(info.value) == ('Could not build PyTorch plugin "test_plugin": no CUDA toolkit found (no CUDA_HOME, no nvcc '
        f'on PATH, no /usr/local/cuda): install the toolkit matching torch\'s CUDA {torch.version.cuda} and set CUDA_HOME to it')
    assert fake_build == []


def test_missing_nvcc(sources, fake_build, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.utils.cpp_extension, 'CUDA_HOME', str(tmp_path))
    with pytest.raises(custom_ops.PluginBuildError, match=f'no nvcc at {tmp_path / "bin" / "nvcc"}: set CUDA_HOME'):
        get_test_plugin(sources)


def test_arch_list_with_dropped_arch(sources, fake_build, monkeypatch):
    monkeypatch.setenv('TORCH_CUDA_ARCH_LIST', '7.0;8.0')
    with pytest.raises(custom_ops.PluginBuildError) as info:
        get_test_plugin(sources)
    nvcc = os.path.join(torch.utils.cpp_extension.CUDA_HOME, 'bin', 'nvcc')
    assert str(info.value) == (f'Could not build PyTorch plugin "test_plugin": CUDA 13.0 (nvcc {nvcc}) cannot compile for '
        'compute_70, requested by TORCH_CUDA_ARCH_LIST; it supports compute_75 to compute_121: remove 7.0 from '
        'TORCH_CUDA_ARCH_LIST, or use an older CUDA toolkit (with the PyTorch build for it)')
    assert fake_build == []


def test_old_gpu_with_new_toolkit(fake_build, monkeypatch):
    monkeypatch.setattr(custom_ops, 'visible_gpu_archs', lambda: ['7.0'])
    with pytest.raises(custom_ops.PluginBuildError, match=r'cannot compile for compute_70, requested by the GPUs present; '
            r'it supports compute_75 to compute_121: use an older CUDA toolkit \(with the PyTorch build for it\)$'):
        custom_ops.select_archs()


def test_arch_newer_than_toolkit(fake_build, monkeypatch):
    monkeypatch.setenv('TORCH_CUDA_ARCH_LIST', '13.0')
    with pytest.raises(custom_ops.PluginBuildError, match='cannot compile for compute_130.*use a newer CUDA toolkit'):
        custom_ops.select_archs()


@pytest.mark.parametrize('built, wanted, expected', [
    (['8.0', '8.6'], ['8.6'], True),
    (['8.0'], ['8.6'], True),               # Binary code runs on later minor versions of its major.
    (['8.6'], ['8.0'], False),
    (['8.0'], ['9.0'], False),
    (['8.0+PTX'], ['9.0'], True),           # PTX is JIT-compiled for newer GPUs.
    (['9.0+PTX'], ['8.0'], False),
    (['8.0', '9.0'], ['9.0+PTX'], False),
    (['8.0', '9.0+PTX'], ['9.0+PTX'], True),
    (['9.0a'], ['9.0a'], True),
    (['9.0a'], ['9.0'], False),
])
def test_archs_cover(built, wanted, expected):
    assert custom_ops.archs_cover(built, wanted) is expected

#----------------------------------------------------------------------------
# Reuse of a prebuilt plugin.

def test_training_reuses_prebuilt_plugin(sources, fake_build, monkeypatch):
    get_test_plugin(sources)  # The prebuild: no GPU, default list.
    custom_ops._cached_plugins.clear()
    monkeypatch.setattr(custom_ops, 'visible_gpu_archs', lambda: ['8.6', '9.0'])
    monkeypatch.setattr(torch.utils.cpp_extension, 'CUDA_HOME', None)  # A compute node without the toolkit.
    assert get_test_plugin(sources).name == 'test_plugin'
    assert len(fake_build) == 1


def test_uncovered_gpu_rebuilds(sources, fake_build, monkeypatch):
    monkeypatch.setenv('TORCH_CUDA_ARCH_LIST', '8.0')
    get_test_plugin(sources)
    custom_ops._cached_plugins.clear()
    monkeypatch.delenv('TORCH_CUDA_ARCH_LIST')
    monkeypatch.setattr(custom_ops, 'visible_gpu_archs', lambda: ['9.0'])
    get_test_plugin(sources)
    assert [call['archs'] for call in fake_build] == ['8.0', '9.0']
    with open(os.path.join(build_dir_of(sources), 'eg3d_build.json'), encoding='utf-8') as f:
        assert json.load(f)['archs'] == ['9.0']


_BUILDER = """
import os, sys, time
sys.path.insert(0, {root!r})
sys.path.insert(0, {tests!r})
import torch.utils.cpp_extension
import test_custom_ops as t
from torch_utils import custom_ops
calls = []
load = t.fake_load(calls)
def slow_load(**kwargs):
    time.sleep(1.0)
    return load(**kwargs)
torch.utils.cpp_extension.load = slow_load
torch.utils.cpp_extension.CUDA_HOME = {cuda!r}
custom_ops.visible_gpu_archs = lambda: []
custom_ops.verbosity = 'none'
custom_ops.lock_poll_seconds = 0.05
module = custom_ops.get_plugin('test_plugin', sources=['op.cpp', 'op.cu'], headers=['op.h'], source_dir={src!r})
print(module.name, len(calls))
"""


def test_concurrent_processes_build_once(sources, tmp_path):
    """Several ranks start at once on one (shared) build root: one compiles, the others wait and import."""
    script = _BUILDER.format(root=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        tests=os.path.dirname(os.path.abspath(__file__)), cuda=str(make_fake_nvcc(tmp_path / 'cuda', *NVCC_13)), src=str(sources))
    env = dict(os.environ, TORCH_EXTENSIONS_DIR=str(tmp_path / 'build'))
    for name in ['TORCH_CUDA_ARCH_LIST', 'PYTORCH_NVCC', custom_ops.DISABLE_ENV_VAR]:
        env.pop(name, None)
    procs = [subprocess.Popen([sys.executable, '-c', script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)]
    results = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], [err for _, err in results]
    assert sorted(out.split()[-1] for out, _ in results) == ['0', '0', '1']  # Exactly one process compiled.
    assert all(out.split()[0] == 'test_plugin' for out, _ in results)

#----------------------------------------------------------------------------
# Prebuild command.

def test_prebuild_command(sources, fake_build, monkeypatch, capsys):
    plugin = custom_ops.OptionalPlugin('test_plugin', sources=['op.cpp', 'op.cu'], headers=['op.h'], source_dir=str(sources))
    monkeypatch.setattr(prebuild, 'plugins', lambda: [plugin])
    assert prebuild.main(['--build']) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith('Setting up PyTorch plugin "test_plugin"... building for 7.5;') and out[0].endswith('Done.')
    assert out[1].startswith(f'test_plugin: {os.path.join(build_dir_of(sources), "test_plugin.py")} (') and out[1].endswith(' s)')
    custom_ops._cached_plugins.clear()
    assert prebuild.main(['--build']) == 0  # A finished build is only imported.
    assert len(fake_build) == 1


def test_prebuild_command_reports_failure(sources, fake_build, monkeypatch, capsys):
    plugin = custom_ops.OptionalPlugin('test_plugin', sources=['op.cpp', 'op.cu'], headers=['op.h'], source_dir=str(sources))
    monkeypatch.setattr(prebuild, 'plugins', lambda: [plugin])
    monkeypatch.setenv('TORCH_CUDA_ARCH_LIST', '7.0')
    assert prebuild.main(['--build']) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: Could not build PyTorch plugin "test_plugin": CUDA 13.0 ') and err.count('\n') == 1


def test_prebuild_command_needs_build_flag(capsys):
    with pytest.raises(SystemExit) as info:
        prebuild.main([])
    assert info.value.code == 2 and 'pass --build' in capsys.readouterr().err


def test_prebuild_command_lists_both_plugins():
    assert [plugin._args['module_name'] for plugin in prebuild.plugins()] == ['eg3d_bias_act_plugin', 'eg3d_upfirdn2d_plugin']
