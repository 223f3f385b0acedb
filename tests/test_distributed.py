"""torch_utils/distributed.py: backend and rendezvous choice, torchrun detection, and a 2-process local launch."""

import os

import pytest
import torch

from torch_utils import distributed


def test_backend_and_rendezvous_url(monkeypatch):
    monkeypatch.setattr(distributed.torch.cuda, 'is_available', lambda: True)
    assert distributed.backend() == 'nccl'
    assert distributed.file_init_method('/tmp/x/.torch_distributed_init') == 'file:///tmp/x/.torch_distributed_init'
    monkeypatch.setattr(distributed.os, 'name', 'nt') # No NCCL on Windows; the drive path follows three slashes.
    assert distributed.backend() == 'gloo'
    assert distributed.file_init_method('C:\\tmp\\.torch_distributed_init') == 'file:///C:/tmp/.torch_distributed_init'
    monkeypatch.undo()
    monkeypatch.setattr(distributed.torch.cuda, 'is_available', lambda: False)
    assert distributed.backend() == 'gloo'
    assert distributed.device_for(3) == torch.device('cpu')


def test_torchrun_world(monkeypatch):
    for key in distributed.TORCHRUN_VARIABLES + ('LOCAL_WORLD_SIZE',):
        monkeypatch.delenv(key, raising=False)
    assert distributed.torchrun_world() is None
    env = dict(RANK='5', WORLD_SIZE='8', LOCAL_RANK='1', MASTER_ADDR='head', MASTER_PORT='29500')
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert distributed.torchrun_world() == dict(rank=5, world_size=8, local_rank=1, local_world_size=8)
    monkeypatch.setenv('LOCAL_WORLD_SIZE', '4')
    assert distributed.torchrun_world().local_world_size == 4


def _sum_ranks(rank, out_dir):
    value = torch.tensor([float(rank + 1)])
    torch.distributed.all_reduce(value)
    with open(os.path.join(out_dir, f'rank{rank}.txt'), 'w') as f:
        f.write(f'{torch.distributed.get_world_size()} {value.item()}')


def test_launch_local_in_process(tmp_path):
    seen = []
    distributed.launch_local(lambda rank, tag: seen.append((rank, tag, torch.distributed.is_initialized())), 1,
                             args=('x',))
    assert seen == [(0, 'x', False)] # One process: no process group.


@pytest.mark.slow
def test_launch_local_two_processes(tmp_path):
    distributed.launch_local(_sum_ranks, 2, args=(str(tmp_path),))
    for rank in range(2):
        assert (tmp_path / f'rank{rank}.txt').read_text() == '2 3.0' # 1 + 2 summed over the gloo group.
    assert not torch.distributed.is_initialized()


def test_rank_selects_its_gpu_before_joining(monkeypatch, tmp_path):
    """Each local process makes its own GPU current before NCCL (or anything else) can create a context on GPU 0."""
    events = []
    monkeypatch.setattr(distributed.torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(distributed.torch.cuda, 'set_device', lambda index: events.append(('set_device', index)))
    monkeypatch.setattr(distributed.torch.distributed, 'init_process_group',
                        lambda backend, init_method, rank, world_size: events.append(('init', backend, rank)))
    monkeypatch.setattr(distributed, 'close_process_group', lambda: events.append(('close',)))
    distributed._local_process(1, lambda rank: events.append(('fn', rank)), 2, str(tmp_path), ())
    assert events == [('set_device', 1), ('init', 'nccl', 1), ('fn', 1), ('close',)]
