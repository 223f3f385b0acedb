"""Scalar statistics reported from anywhere in the code and averaged over ranks at collection time.

`report(name, value)` adds the values' moments (count, sum, sum of squares) to a per-name accumulator on
the reporting device; nothing is synchronised then. A `Collector` folds the accumulators into running
totals (summed over ranks once `init_multiprocessing` named a sync device) and reports the mean and
standard deviation of what arrived since its previous `update()`. `totals()`, `Collector.unread()` and
`Collector.carry_over()` let a caller save and restore a collector's position across a restart.
"""

import math
import re

import torch

import dnnlib

_NUM_MOMENTS = 3                # count, sum, sum of squares
_WIRE_DTYPE = torch.float32     # all_reduce runs in float32: not every backend sums float64
_ACC_DTYPE = torch.float64      # accumulators and totals


class _Process:
    rank = 0
    sync_device = None          # None: single process, nothing to reduce
    has_synced = False


_accumulators = dict()          # name -> {device: moments reported since the last fold}
_totals = dict()                # name -> moments of all folds so far, summed over ranks (CPU)


def _zero_moments(device=None) -> torch.Tensor:
    return torch.zeros([_NUM_MOMENTS], dtype=_ACC_DTYPE, device=device)


def init_multiprocessing(rank: int, sync_device) -> None:
    """Call once per process, before the first Collector.update(), when torch.distributed is in use."""
    assert not _Process.has_synced, 'init_multiprocessing() must come before the first Collector.update()'
    _Process.rank = rank
    _Process.sync_device = sync_device


def report(name: str, value):
    """Record the scalar(s) in `value` under `name`; returns `value` so that it can wrap an expression.

    Every rank has to report each name at least once over the run (possibly with no values), since the
    collectors all-reduce the names they know in one go.
    """
    per_device = _accumulators.setdefault(name, dict())
    values = torch.as_tensor(value)
    if values.numel() == 0:
        return value
    values = values.detach().reshape(-1).to(_WIRE_DTYPE)
    count = values.new_full([], values.numel())
    moments = torch.stack([count, values.sum(), (values * values).sum()]).to(_ACC_DTYPE)
    if moments.device in per_device:
        per_device[moments.device].add_(moments)
    else:
        per_device[moments.device] = moments
    return value


def report0(name: str, value):
    """report() with the values of rank 0 only; the other ranks report the name with no values."""
    report(name, value if _Process.rank == 0 else [])
    return value


def totals(name: str) -> torch.Tensor:
    """Moments of `name` over every rank, as of the latest fold (a copy; zeros if never folded)."""
    return _totals.get(name, _zero_moments()).clone()


def _fold(names: list) -> dict:
    """Move the accumulators of `names` into the totals (summed over ranks); {name: totals}."""
    if not names:
        return dict()
    _Process.has_synced = True
    device = _Process.sync_device if _Process.sync_device is not None else torch.device('cpu')
    rows = []
    for name in names:
        row = _zero_moments(device)
        for moments in _accumulators[name].values():
            row.add_(moments.to(device))
            moments.zero_()
        rows.append(row)
    block = torch.stack(rows)
    if _Process.sync_device is not None:
        summed = block.to(_WIRE_DTYPE)
        torch.distributed.all_reduce(summed)
        block = summed.to(_ACC_DTYPE)
    block = block.cpu()
    for name, row in zip(names, block):
        _totals.setdefault(name, _zero_moments()).add_(row)
    return {name: _totals[name] for name in names}


class Collector:
    """Statistics whose names match `regex`, over the values reported between its last two update() calls.

    With keep_previous, a name that received nothing new keeps its previous reading instead of going empty.
    """

    def __init__(self, regex: str = '.*', keep_previous: bool = True):
        self._pattern = re.compile(regex)
        self._keep_previous = keep_previous
        self._read_upto = dict()    # name -> totals at the previous update()
        self._readings = dict()     # name -> moments between the last two update() calls
        self.update()               # Values reported before construction do not count.
        self._readings.clear()

    def names(self) -> list:
        # Sorted: all ranks must reduce the same names in the same order.
        return sorted(name for name in _accumulators if self._pattern.fullmatch(name))

    def update(self) -> None:
        """Take a new reading; when distributed, every rank has to call this at the same point."""
        if not self._keep_previous:
            self._readings.clear()
        for name, total in _fold(self.names()).items():
            new = total - self._read_upto.get(name, _zero_moments())
            self._read_upto[name] = total.clone()
            if float(new[0]) != 0:
                self._readings[name] = new

    def unread(self, name: str) -> torch.Tensor:
        """Moments of `name` folded into the totals since this collector's last update() (e.g. by another
        collector's update): what its next update() would add."""
        return totals(name) - self._read_upto.get(name, _zero_moments())

    def carry_over(self, name: str, moments) -> None:
        """Make the next update() include `moments` as if they had been reported again (restoring unread())."""
        moments = torch.as_tensor(moments, dtype=_ACC_DTYPE)
        self._read_upto[name] = self._read_upto.get(name, _zero_moments()) - moments

    def _reading(self, name: str) -> tuple:
        assert self._pattern.fullmatch(name), name
        count, total, total_sq = self._readings.get(name, _zero_moments()).tolist()
        return count, total, total_sq

    def num(self, name: str) -> int:
        return int(self._reading(name)[0])

    def mean(self, name: str) -> float:
        count, total, _ = self._reading(name)
        return total / count if count != 0 else float('nan')

    def std(self, name: str) -> float:
        count, total, total_sq = self._reading(name)
        if count == 0 or not math.isfinite(total):
            return float('nan')
        if count == 1:
            return 0.0
        mean = total / count
        return math.sqrt(max(total_sq / count - mean * mean, 0))

    def as_dict(self) -> dnnlib.EasyDict:
        """{name: {num, mean, std}} for every matching name."""
        return dnnlib.EasyDict({name: dnnlib.EasyDict(num=self.num(name), mean=self.mean(name), std=self.std(name))
                                for name in self.names()})

    def __getitem__(self, name: str) -> float:
        return self.mean(name)
