"""Scalar statistics reported from anywhere in the code and averaged over ranks at collection time.

`report(name, value)` adds values to per-name running moments (count, sum, sum of squares) kept on
the reporting device. A `Collector` turns the moments gathered since its last `update()` into
mean and standard deviation; with torch.distributed initialised through `init_multiprocessing`, the
moments are summed over all ranks first, so every rank sees the same numbers.
"""

import re

import numpy as np
import torch

import dnnlib

_num_moments = 3                # count, sum, sum of squares
_reduce_dtype = torch.float32   # what all_reduce sums in (float64 is not supported by every backend)
_counter_dtype = torch.float64  # what the running moments accumulate in
_rank = 0
_sync_device = None             # device used for all_reduce (None: single process)
_sync_called = False
_counters = dict()              # name -> device -> moments tensor
_cumulative = dict()            # name -> moments summed over ranks so far (float64 on the CPU)


def init_multiprocessing(rank: int, sync_device) -> None:
    """Call once per process before reporting, when using torch.distributed (sync_device=None: no syncing)."""
    global _rank, _sync_device
    assert not _sync_called
    _rank = rank
    _sync_device = sync_device


def report(name: str, value):
    """Record one or more scalar values under `name`; returns `value` unchanged so it can wrap expressions.

    Every rank must report the same names over the run (a name missing on one rank would deadlock the
    all_reduce), but the number of values may differ.
    """
    if name not in _counters:
        _counters[name] = dict()

    elems = torch.as_tensor(value)
    if elems.numel() == 0:
        return value

    elems = elems.detach().flatten().to(_reduce_dtype)
    moments = torch.stack([
        torch.ones_like(elems).sum(),
        elems.sum(),
        elems.square().sum(),
    ])
    assert moments.ndim == 1 and moments.shape[0] == _num_moments
    moments = moments.to(_counter_dtype)

    device = moments.device
    if device not in _counters[name]:
        _counters[name][device] = torch.zeros_like(moments)
    _counters[name][device].add_(moments)
    return value


def report0(name: str, value):
    """Like report(), but only rank 0 contributes values (the others report an empty set to stay in step)."""
    report(name, value if _rank == 0 else [])
    return value


class Collector:
    """Averages of the statistics reported since the previous update(), over every rank.

    Statistics matching `regex` are collected; with keep_previous, names that got no new values keep the
    previous result instead of becoming empty.
    """

    def __init__(self, regex: str = '.*', keep_previous: bool = True):
        self._regex = re.compile(regex)
        self._keep_previous = keep_previous
        self._cumulative = dict()
        self._moments = dict()
        self.update()
        self._moments.clear()

    def names(self) -> list:
        # Sorted, so that every rank all-reduces the names in the same order.
        return sorted(name for name in _counters if self._regex.fullmatch(name))

    def update(self) -> None:
        """Take a new reading. Every rank must call this together when distributed."""
        if not self._keep_previous:
            self._moments.clear()
        for name, cumulative in _sync(self.names()):
            if name not in self._cumulative:
                self._cumulative[name] = torch.zeros([_num_moments], dtype=_counter_dtype)
            delta = cumulative - self._cumulative[name]
            self._cumulative[name].copy_(cumulative)
            if float(delta[0]) != 0:
                self._moments[name] = delta

    def _get_delta(self, name: str) -> torch.Tensor:
        assert self._regex.fullmatch(name)
        if name not in self._moments:
            self._moments[name] = torch.zeros([_num_moments], dtype=_counter_dtype)
        return self._moments[name]

    def num(self, name: str) -> int:
        return int(self._get_delta(name)[0])

    def mean(self, name: str) -> float:
        delta = self._get_delta(name)
        if int(delta[0]) == 0:
            return float('nan')
        return float(delta[1] / delta[0])

    def std(self, name: str) -> float:
        delta = self._get_delta(name)
        if int(delta[0]) == 0 or not np.isfinite(float(delta[1])):
            return float('nan')
        if int(delta[0]) == 1:
            return float(0)
        mean = float(delta[1] / delta[0])
        raw_var = float(delta[2] / delta[0])
        return float(np.sqrt(max(raw_var - np.square(mean), 0)))

    def as_dict(self) -> dnnlib.EasyDict:
        """{name: {num, mean, std}} for every statistic read by the last update()."""
        stats = dnnlib.EasyDict()
        for name in self.names():
            stats[name] = dnnlib.EasyDict(num=self.num(name), mean=self.mean(name), std=self.std(name))
        return stats

    def __getitem__(self, name: str) -> float:
        return self.mean(name)


def _sync(names: list) -> list:
    """Fold the local counters into the global cumulative moments, summed over ranks; [(name, moments)]."""
    if len(names) == 0:
        return []
    global _sync_called
    _sync_called = True

    # Local moments since the last sync, one row per name.
    deltas = []
    device = _sync_device if _sync_device is not None else torch.device('cpu')
    for name in names:
        delta = torch.zeros([_num_moments], dtype=_counter_dtype, device=device)
        for counter in _counters[name].values():
            delta.add_(counter.to(device))
            counter.copy_(torch.zeros_like(counter))
        deltas.append(delta)
    deltas = torch.stack(deltas)

    if _sync_device is not None:
        reduced = deltas.to(_reduce_dtype)
        torch.distributed.all_reduce(reduced)
        deltas = reduced.to(_counter_dtype)

    deltas = deltas.cpu()
    result = []
    for idx, name in enumerate(names):
        if name not in _cumulative:
            _cumulative[name] = torch.zeros([_num_moments], dtype=_counter_dtype)
        _cumulative[name].add_(deltas[idx])
        result.append((name, _cumulative[name]))
    return result
