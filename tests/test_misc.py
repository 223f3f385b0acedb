import itertools
import os

import pytest
import torch

from torch_utils import misc


class _Sized:
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n


def _take(sampler, count):
    return list(itertools.islice(iter(sampler), count))


def test_infinite_sampler_matches_reference_order():
    # Reference sequences of the original sampler (len 8, seed 0), from the spec.
    assert _take(misc.InfiniteSampler(_Sized(8), seed=0), 12) == [6, 2, 1, 7, 3, 0, 5, 2, 7, 6, 3, 4]
    assert _take(misc.InfiniteSampler(_Sized(8), rank=0, num_replicas=2, seed=0), 12) == [6, 1, 3, 5, 7, 3, 1, 7, 4, 6, 5, 2]
    assert _take(misc.InfiniteSampler(_Sized(8), rank=1, num_replicas=2, seed=0), 12) == [2, 7, 0, 2, 6, 4, 0, 2, 1, 0, 3, 4]


def test_infinite_sampler_deterministic_and_covers_dataset():
    a = _take(misc.InfiniteSampler(_Sized(50), seed=3), 500)
    b = _take(misc.InfiniteSampler(_Sized(50), seed=3), 500)
    assert a == b
    assert set(a) == set(range(50))
    assert a != _take(misc.InfiniteSampler(_Sized(50), seed=4), 500)
    assert _take(misc.InfiniteSampler(_Sized(5), shuffle=False), 7) == [0, 1, 2, 3, 4, 0, 1]


def test_infinite_sampler_works_in_dataloader():
    dataset = torch.utils.data.TensorDataset(torch.arange(10))
    loader = torch.utils.data.DataLoader(dataset, sampler=misc.InfiniteSampler(dataset, seed=1), batch_size=4)
    batch, = next(iter(loader))
    assert batch.shape == (4,)


def test_assert_shape():
    x = torch.zeros(2, 3, 4)
    misc.assert_shape(x, [2, None, 4])
    with pytest.raises(AssertionError, match='dimension 1'):
        misc.assert_shape(x, [2, 5, 4])
    with pytest.raises(AssertionError, match='number of dimensions'):
        misc.assert_shape(x, [2, 3])


def test_constant_is_cached_and_broadcast():
    a = misc.constant([1, 2], shape=[3, 2])
    assert a.shape == (3, 2) and a.dtype == torch.float32
    assert misc.constant([1, 2], shape=[3, 2]) is a
    assert misc.constant([1, 2], dtype=torch.float64).dtype == torch.float64


def test_copy_params_and_buffers():
    src = torch.nn.BatchNorm1d(3)
    dst = torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        src.weight.fill_(2)
        src.running_mean.fill_(5)
    misc.copy_params_and_buffers(src, dst, require_all=True)
    assert torch.equal(dst.weight, src.weight) and torch.equal(dst.running_mean, src.running_mean)
    assert dst.weight.requires_grad
    with pytest.raises(KeyError, match='bias'):
        misc.copy_params_and_buffers(torch.nn.Linear(3, 3, bias=False), torch.nn.Linear(3, 3), require_all=True)
    names = [name for name, _ in misc.named_params_and_buffers(src)]
    assert names[:2] == ['weight', 'bias'] and 'running_mean' in names
    assert len(misc.params_and_buffers(src)) == len(names)


def test_profiled_function_keeps_name_and_result():
    @misc.profiled_function
    def add(a, b):
        return a + b
    assert add.__name__ == 'add' and add(1, 2) == 3


def test_print_module_summary(capsys):
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    out = misc.print_module_summary(net, [torch.zeros(3, 4)])
    assert out.shape == (3, 2)
    text = capsys.readouterr().out
    assert 'Total' in text and str(4 * 8 + 8 + 8 * 2 + 2) in text and '[3, 8]' in text


def test_ddp_sync_plain_module_is_noop():
    # A module that is not DistributedDataParallel has no gradient sync to skip: backward works as usual.
    module = torch.nn.Linear(1, 1)
    with misc.ddp_sync(module, sync=False):
        module(torch.full([1, 1], 3.0)).sum().backward()
    assert module.weight.grad.item() == 3.0 and module.bias.grad.item() == 1.0


def test_make_deterministic(restore_determinism):
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.benchmark = True
    misc.make_deterministic()
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic) == (False, True)
    assert os.environ['CUBLAS_WORKSPACE_CONFIG'] == ':4096:8'
