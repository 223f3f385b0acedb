import os
import socket
import subprocess
import sys
import textwrap

import pytest

from torch_utils import training_stats


def test_collector_mean_std_and_deltas():
    collector = training_stats.Collector(regex='Test/.*')
    training_stats.report('Test/a', [1.0, 2.0, 3.0])
    training_stats.report('Test/a', 4.0)
    training_stats.report('Other/b', 1.0)
    collector.update()
    assert collector.names() == ['Test/a']
    assert collector.num('Test/a') == 4
    assert collector.mean('Test/a') == pytest.approx(2.5)
    assert collector.std('Test/a') == pytest.approx(1.118033988749895)
    assert collector['Test/a'] == pytest.approx(2.5)
    # Only what was reported since the last update counts; keep_previous keeps stale names.
    training_stats.report('Test/a', 10.0)
    collector.update()
    assert collector.num('Test/a') == 1 and collector.mean('Test/a') == 10.0 and collector.std('Test/a') == 0
    collector.update()
    assert collector.num('Test/a') == 1
    assert collector.as_dict()['Test/a'] == dict(num=1, mean=10.0, std=0.0)


def test_report_returns_value_and_empty_reports():
    value = [1, 2]
    assert training_stats.report('Empty/x', value) is value
    collector = training_stats.Collector(regex='Empty/y')
    training_stats.report('Empty/y', [])
    collector.update()
    assert collector.num('Empty/y') == 0
    assert collector.mean('Empty/y') != collector.mean('Empty/y')  # NaN


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_collector_reduces_across_two_gloo_processes(tmp_path):
    script = textwrap.dedent('''
        import sys, torch, torch.distributed as dist
        from torch_utils import training_stats
        rank, port = int(sys.argv[1]), sys.argv[2]
        dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=2)
        training_stats.init_multiprocessing(rank=rank, sync_device=torch.device('cpu'))
        collector = training_stats.Collector()
        training_stats.report('Loss', [float(rank)] * (rank + 1))   # rank 0: [0], rank 1: [1, 1]
        training_stats.report0('Only0', 7.0 + rank)
        collector.update()
        print(collector.num('Loss'), round(collector.mean('Loss'), 6), collector.num('Only0'), collector.mean('Only0'))
        dist.destroy_process_group()
    ''')
    port = str(_free_port())
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    procs = [subprocess.Popen([sys.executable, '-c', script, str(rank), port], cwd=root, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for rank in range(2)]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
        assert out.split() == ['3', '0.666667', '1', '7.0']


def test_unread_and_carry_over_restore_a_collector_position():
    # Another collector's update folds values into the totals; a narrower collector has not read them yet.
    narrow = training_stats.Collector(regex='Carry/x')
    wide = training_stats.Collector(regex='Carry/.*')
    before = training_stats.totals('Carry/x')
    training_stats.report('Carry/x', [1.0, 3.0])
    wide.update()
    assert (training_stats.totals('Carry/x') - before).tolist() == [2.0, 4.0, 10.0]
    pending = narrow.unread('Carry/x')
    assert pending.tolist() == [2.0, 4.0, 10.0]
    # A fresh collector (as after a restart) that carries the pending moments over reads them at its next update.
    restored = training_stats.Collector(regex='Carry/x')
    assert restored.unread('Carry/x').tolist() == [0.0, 0.0, 0.0]
    restored.carry_over('Carry/x', pending.tolist())
    training_stats.report('Carry/x', 5.0)
    restored.update()
    assert restored.num('Carry/x') == 3 and restored.mean('Carry/x') == 3.0
    narrow.update()
    assert narrow.num('Carry/x') == 3 and narrow.mean('Carry/x') == 3.0
