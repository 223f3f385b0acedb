"""training/snapshot.py: snapshot names, pickle/state pairs that vouch for each other, and what --resume continues
from after a write was killed at any point (simulated stage by stage, and once with a real kill -9)."""

import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from helpers import write_pair

import dnnlib
from training import snapshot

DESC = 'shapenet-cars_128-gpus1-batch2-gamma0.3'

#----------------------------------------------------------------------------
# Helpers.

def latest(outdir, warnings=None):
    return snapshot.find_latest_snapshot(str(outdir), DESC, warn=(warnings if warnings is not None else []).append)

#----------------------------------------------------------------------------

def test_snapshot_names_never_collide():
    assert snapshot.snapshot_name(32) == 'network-snapshot-000000.pkl'
    assert snapshot.snapshot_name(4032, previous_nimg=32) == 'network-snapshot-000004.pkl' # Usual runs: as before.
    assert snapshot.snapshot_name(3, previous_nimg=1) == 'network-snapshot-000000_003.pkl'
    assert snapshot.snapshot_name(1005, previous_nimg=1003) == 'network-snapshot-000001_005.pkl'
    names = []
    previous = None
    for nimg in [1, 3, 5, 999, 1000, 1001, 2000, 25_000_032]:
        names.append(snapshot.snapshot_name(nimg, previous))
        previous = nimg
    assert len(set(names)) == len(names)
    assert sorted(names) == names # Sorting the file names lists the snapshots of a run in order.
    assert names[-1] == 'network-snapshot-025000.pkl'
    assert snapshot.state_path_for('/r/network-snapshot-000000_003.pkl') == '/r/training-state-000000_003.pt'
    assert snapshot.state_path_for('/r/network-snapshot-000012.pkl') == '/r/training-state-000012.pt'
    assert snapshot.state_path_for('/r/my.pkl') is None

def test_pickle_hash_and_pair_checks(tmp_path):
    run_dir = str(tmp_path / f'00000-{DESC}')
    pkl = write_pair(run_dir, 1000, payload=b'x' * 1000)
    assert snapshot.pair_problem(pkl) is None
    assert snapshot.read_state_header(snapshot.state_path_for(pkl))['snapshot']['sha256'] == snapshot.file_sha256(pkl)
    # The same name, other bytes (a file copied over it): the state no longer vouches for it.
    with open(pkl, 'wb') as f:
        pickle.dump(dict(nimg=1000, payload=b'y'), f)
    assert 'content hash differs' in snapshot.pair_problem(pkl)
    # A state moved next to another pickle.
    other = write_pair(run_dir, 2000, previous_nimg=1000)
    shutil.copy(snapshot.state_path_for(pkl), snapshot.state_path_for(other))
    assert 'does not name network-snapshot-000002.pkl' in snapshot.pair_problem(other)
    # A truncated state.
    state = snapshot.state_path_for(other)
    with open(state, 'r+b') as f:
        f.truncate(os.path.getsize(state) // 2)
    assert 'cannot read the training state' in snapshot.pair_problem(other)

@pytest.mark.parametrize('stage', ['pickle_tmp', 'pickle', 'pickle_and_state_tmp', 'complete'])
def test_every_stage_of_a_killed_snapshot_write(tmp_path, stage):
    # Pair A is complete; the write of pair B stops at `stage`, as a kill -9 would leave it (temporary files
    # stay, since nothing runs the cleanup of atomic_output).
    outdir = tmp_path / 'runs'
    run_dir = str(outdir / f'00000-{DESC}')
    pkl_a = write_pair(run_dir, 1, payload=b'a' * 100)
    scratch = str(tmp_path / 'scratch')
    pkl_b_full = write_pair(scratch, 3, previous_nimg=1, payload=b'b' * 100)
    pkl_b = os.path.join(run_dir, os.path.basename(pkl_b_full))
    state_b = snapshot.state_path_for(pkl_b)
    half = lambda path: open(path, 'rb').read()[:os.path.getsize(path) // 2] # noqa: E731
    tmp = lambda path: os.path.join(run_dir, f'{dnnlib.util.TEMP_PREFIX}0123456789ab-{os.path.basename(path)}') # noqa: E731
    if stage == 'pickle_tmp':
        open(tmp(pkl_b), 'wb').write(half(pkl_b_full))
    if stage in ('pickle', 'pickle_and_state_tmp', 'complete'):
        shutil.copy(pkl_b_full, pkl_b)
    if stage == 'pickle_and_state_tmp':
        open(tmp(state_b), 'wb').write(half(snapshot.state_path_for(pkl_b_full)))
    if stage == 'complete':
        shutil.copy(snapshot.state_path_for(pkl_b_full), state_b)

    expected = pkl_b if stage == 'complete' else pkl_a
    warnings = []
    assert latest(outdir, warnings) == (expected, snapshot.state_path_for(expected))
    assert len(warnings) == (1 if stage in ('pickle', 'pickle_and_state_tmp') else 0)
    assert all('\n' not in line for line in warnings)

    # Resuming removes the temporary files of the killed write and takes the same pair.
    choice = snapshot.choose_resume('latest', str(outdir), DESC, mode='auto', options={})
    assert choice[:2] == (expected, snapshot.state_path_for(expected))
    assert [name for name in os.listdir(run_dir) if name.startswith(dnnlib.util.TEMP_PREFIX)] == []
    with open(choice[0], 'rb') as f:
        assert pickle.load(f)['nimg'] == snapshot.load_training_state(choice[1])['cur_nimg']

def test_explicit_resume_with_a_foreign_state(tmp_path, capsys):
    run_dir = str(tmp_path / f'00000-{DESC}')
    pkl = write_pair(run_dir, 2000)
    with open(pkl, 'ab') as f:
        f.write(b'tampered')
    assert snapshot.choose_resume(pkl, str(tmp_path), DESC, mode='auto', options={}) == (pkl, None, None)
    assert 'Warning: --resume: not restoring the training state beside' in capsys.readouterr().out
    with pytest.raises(snapshot.ResumeError, match='--resume-mode=full: no training-state-KKKKKK.pt next to'):
        snapshot.choose_resume(pkl, str(tmp_path), DESC, mode='full', options={})

def test_dry_run_warns_about_a_missing_resume_file(tmp_path, capsys):
    missing = str(tmp_path / 'missing.pkl')
    assert snapshot.choose_resume(missing, str(tmp_path), DESC, mode='auto', options={}, dry_run=True) == (
        missing, None, None)
    assert f'Warning: --resume: {missing}: no such file' in capsys.readouterr().out
    with pytest.raises(snapshot.ResumeError, match='no such file'):
        snapshot.choose_resume(missing, str(tmp_path), DESC, mode='auto', options={})

@pytest.mark.slow
def test_real_kill_during_snapshot_writes(tmp_path):
    # A process writes snapshot pairs as fast as it can and is killed with SIGKILL; whatever it leaves behind,
    # --resume=latest takes a consistent pair and cleans up.
    outdir = tmp_path / 'runs'
    run_dir = str(outdir / f'00000-{DESC}')
    script = textwrap.dedent(f'''
        import sys
        sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
        from helpers import write_pair
        previous = None
        for nimg in range(1, 10**6):
            write_pair({run_dir!r}, nimg, previous, payload=bytes(2 << 20))
            previous = nimg
            if nimg == 2:
                print('ready', flush=True)
    ''')
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for delay in [0.0, 0.05, 0.13]:
        proc = subprocess.Popen([sys.executable, '-c', script], cwd=root, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == 'ready'
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        pkl, state = snapshot.choose_resume('latest', str(outdir), DESC, mode='auto', options={})[:2]
        assert state == snapshot.state_path_for(pkl) and snapshot.pair_problem(pkl) is None
        with open(pkl, 'rb') as f:
            assert pickle.load(f)['nimg'] == snapshot.load_training_state(state)['cur_nimg'] >= 2
        assert [name for name in os.listdir(run_dir) if name.startswith(dnnlib.util.TEMP_PREFIX)] == []
        shutil.rmtree(run_dir)
