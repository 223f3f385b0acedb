"""benchmarks/gpu_check.py: the tiny CPU mode runs every section end to end and writes its table and JSON."""

import json
import os
import sys

import pytest
import torch
from helpers import REPO_ROOT

sys.path.insert(0, os.path.join(REPO_ROOT, 'benchmarks'))
import gpu_check  # noqa: E402


@pytest.mark.slow
def test_tiny_cpu_check(tmp_path, call_main):
    result = call_main(gpu_check.main, '--device=cpu', f'--outdir={tmp_path}')
    assert result.returncode == 0, result.stderr
    with open(tmp_path / 'gpu_check.json') as f:
        report = json.load(f)
    assert report['ok'] and report['environment']['device_name'] == 'CPU'
    ops = {row['op'] for row in report['ops']}
    assert ops == {'bias_act', 'upfirdn2d'}
    assert all(row['ok'] and set(row['errors']) >= {'y', 'dx'} for row in report['ops'])
    assert report['networks']['finite'] and set(report['networks']['max_abs_diff']) >= {'image', 'logits', 'G parameter gradients'}
    assert [row['mode'] for row in report['ticks']] == ['exact']
    assert all(row['ok'] and row['sec_per_kimg'] > 0 and row['nonfinite_losses'] == [] for row in report['ticks'])
    assert [row['neural_rendering_resolution'] for row in report['inference']] == [16, 32]
    assert all(row['img_per_sec'] > 0 and row['viewer_frame_ms'] > 0 for row in report['inference'])
    assert 'ddp' not in report
    table = (tmp_path / 'gpu_check.md').read_text()
    assert table.startswith('## GPU check: CPU') and '| exact |' in table and 'Not run: fewer than 2 GPUs.' in table
    assert result.stdout.startswith('ops...')


def test_recorded_calls_cover_both_ops_and_compare():
    """The recorder sees the networks' calls with their arguments; compare_op flags a wrong kernel."""
    size = dict(gpu_check.SIZES['tiny'])
    G, D = gpu_check.build_networks(size, torch.device('cpu'))
    with gpu_check.recorded_op_calls() as calls:
        gpu_check.forward_backward(G, D, size, torch.device('cpu'))
    acts = {call['args']['act'] for call in calls.values() if call['op'] == 'bias_act'}
    assert {'lrelu', 'linear'} <= acts
    assert any(call['op'] == 'upfirdn2d' and call['args']['up'] == 2 for call in calls.values())
    assert any(call['op'] == 'upfirdn2d' and call['args']['down'] == 2 for call in calls.values())
    call = next(call for call in calls.values() if call['op'] == 'bias_act' and call['args']['act'] == 'lrelu')
    assert gpu_check.compare_op(call, torch.device('cpu'))['ok']
    wrong = dict(call, args=dict(call['args']))
    real = gpu_check.bias_act.bias_act

    def broken(x, b=None, impl='cuda', **kwargs):
        y = real(x, b, impl='ref', **kwargs)
        return y * 1.001 if impl == 'cuda' else y

    gpu_check.bias_act.bias_act = broken
    try:
        result = gpu_check.compare_op(wrong, torch.device('cpu'))
    finally:
        gpu_check.bias_act.bias_act = real
    assert not result['ok'] and result['errors']['y'] > result['tolerance']


def test_unknown_mode(call_main, tmp_path):
    result = call_main(gpu_check.main, '--device=cpu', '--modes=exact,turbo', f'--outdir={tmp_path}')
    assert result.returncode == 1 and '--modes: unknown mode turbo' in result.stderr
