"""Every benchmark script in its smallest CPU mode (the commands of docs/performance.md and the scripts' docstrings,
shrunk): each runs to the end and prints the columns it promises."""

import json
import os
import re
import subprocess
import sys

import pytest
from helpers import REPO_ROOT

pytestmark = pytest.mark.slow

TINY_G = ['--cbase=1024', '--cmax=16']
TINY_MODES = ['--device=cpu', '--cfgs=shapenet', *TINY_G, '--nrr=8', '--samples=4,4']
NUMBER = r'[0-9.]+'


def run_benchmark(script, *args):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, 'benchmarks', script), *args], env=env,
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_bench_generator():
    out = run_benchmark('bench_generator.py', '--cfg=shapenet', '--res=8', '--device=cpu', *TINY_G, '--iters=1',
                        '--warmup=0')
    assert 'cfg=shapenet device=cpu batch=1 neural_res=8 image=(3, 128, 128)' in out
    assert re.search(rf'^G forward: {NUMBER} ms/image \(1 iterations\)$', out, re.M)
    assert re.search(rf'^peak process RSS: {NUMBER} GiB$', out, re.M)


def test_bench_ops():
    out = run_benchmark('bench_ops.py', '--device=cpu', '--scale=0.1', '--iters=1').splitlines()
    assert out[0].startswith('device=cpu dtype=torch.float32 iters=1')
    assert out[1].split() == ['op', 'shape', 'ref', 'fwd', 'ref', 'f+b']
    rows = out[2:]
    assert {row.split()[0] for row in rows} >= {'bias_act', 'upsample2d', 'downsample2d', 'conv2d_resample'}
    for row in rows:
        assert re.search(rf' {NUMBER} +{NUMBER}$', row), row


def test_bench_training(tmp_path):
    out = run_benchmark('bench_training.py', '--cfg=shapenet', '--gpus=1', '--batch=2', '--mbstd-group=2', *TINY_G,
                        '--nrr=8', '--depth-resolution=4', '--depth-resolution-importance=4', '--iters=1',
                        '--warmup=0', f'--out={tmp_path / "results.json"}')
    results = json.loads((tmp_path / 'results.json').read_text())
    assert results['cfg'] == 'shapenet-synthetic128-gpus1-batch2-gamma1'
    assert results['phases'] == ['Gmain/1', 'Greg/4', 'Dmain/1', 'Dreg/16']
    assert results['batch'] == 2 and results['batch_gpu'] == 2 and results['iters'] == 1
    assert results['sec_per_kimg'] == pytest.approx(1 / results['kimg_per_sec'])
    assert re.search(rf'^{NUMBER} kimg/s  {NUMBER} s/kimg  peak {NUMBER} GB per GPU \(cpu\)$', out, re.M)


def test_bench_modes_table_against_a_baseline():
    # The documented table command with this checkout as its own baseline: main:exact is the speedup reference.
    out = run_benchmark('bench_modes.py', *TINY_MODES, '--modes=bf16', f'--baseline={REPO_ROOT}', '--repeats=1',
                        '--fwd-iters=1', '--train-iters=1').splitlines()
    header = [cell.strip() for cell in out[-4].strip('|').split('|')]
    assert header == ['cfg', 'code:mode', 'G fwd ms/img', 'speedup', 'train s/kimg', 'speedup', 'fwd peak RSS MB',
                      'train peak RSS MB']
    reference, bf16 = ([cell.strip() for cell in row.strip('|').split('|')] for row in out[-2:])
    assert reference[:2] == ['shapenet', 'main:exact'] and reference[3] == reference[5] == '1.00x'
    assert bf16[:2] == ['shapenet', 'this:bf16']
    for row in (reference, bf16):
        assert all(re.fullmatch(NUMBER + 'x?', cell) for cell in row[2:]), row


def test_bench_modes_profile():
    out = run_benchmark('bench_modes.py', *TINY_MODES, '--profile')
    assert '## shapenet: G forward, batch 1' in out
    assert '## shapenet: one training iteration (Gmain, Greg, Dmain, Dreg once each), batch 1' in out
    for label in ('G.backbone', 'renderer.decoder', 'Gmain_forward', 'Greg_forward', 'Dgen_forward', 'Dr1_forward'):
        assert re.search(rf'^\| {re.escape(label)} \| {NUMBER} \| {NUMBER} \|$', out, re.M), label
