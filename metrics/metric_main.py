"""The named metrics: their registry, the evaluation entry point and the metric-<name>.jsonl report.

Each metric compares a generator against real images in one of two ways: the whole dataset without x-flips
(the `_full` metrics and is50k), or its first 50k items as the dataset options say (the legacy metrics).
"""

import json
import os
import time

import torch

import dnnlib

from . import frechet_inception_distance, inception_score, kernel_inception_distance, metric_utils, precision_recall

#----------------------------------------------------------------------------
# Registry.

_metric_dict = dict()  # name -> fn(opts) returning {result key: value}; insertion order is the documented order.
_unsupported = dict()  # name -> why it cannot run on an EG3D generator.

def register_metric(fn):
    """Add fn(opts) -> dict under its __name__ (also usable as a decorator)."""
    assert callable(fn), f'{fn!r} is not callable'
    _metric_dict[fn.__name__] = fn
    return fn

def is_valid_metric(metric):
    return metric in _metric_dict

def list_valid_metrics():
    return list(_metric_dict)

def is_supported_metric(metric):
    return is_valid_metric(metric) and metric not in _unsupported

def check_metric_supported(metric):
    """Raise ValueError (one line) for an unknown name or one that cannot run on an EG3D generator."""
    if not is_valid_metric(metric):
        raise ValueError(f'{metric}: unknown metric; valid names: {", ".join(list_valid_metrics())}')
    if metric in _unsupported:
        raise ValueError(f'{metric}: {_unsupported[metric]}')

#----------------------------------------------------------------------------
# The metrics.

_WHOLE_DATASET = dict(max_size=None, xflip=False)
_DATASET_AS_CONFIGURED = dict(max_size=None)

def _define_metric(name, real_images, module, compute, suffixes=('',), **compute_kwargs):
    """Register `name`: restrict the dataset options, run module.compute(opts, **compute_kwargs), name its value(s).

    The function is looked up at each evaluation, so it can be replaced on the module.
    """
    def metric_fn(opts):
        opts.dataset_kwargs.update(real_images)
        values = getattr(module, compute)(opts, **compute_kwargs)
        values = values if isinstance(values, tuple) else (values,)
        assert len(values) == len(suffixes)
        return {name + suffix: value for suffix, value in zip(suffixes, values)}
    metric_fn.__name__ = name
    return register_metric(metric_fn)

def _define_unsupported(name, reason):
    """Keep a known name valid but reject it before any work."""
    def metric_fn(opts):
        raise ValueError(f'{name}: {reason}')
    metric_fn.__name__ = name
    _unsupported[name] = reason
    register_metric(metric_fn)

_KID = dict(num_gen=50000, num_subsets=100, max_subset_size=1000)
_PR = dict(num_gen=50000, nhood_size=3, row_batch_size=10000, col_batch_size=10000)
_PR_KEYS = ('_precision', '_recall')

_define_metric('fid50k_full', _WHOLE_DATASET, frechet_inception_distance, 'compute_fid', max_real=None, num_gen=50000)
_define_metric('kid50k_full', _WHOLE_DATASET, kernel_inception_distance, 'compute_kid', max_real=1000000, **_KID)
_define_metric('pr50k3_full', _WHOLE_DATASET, precision_recall, 'compute_pr', _PR_KEYS, max_real=200000, **_PR)

_define_unsupported('ppl2_wend', 'perceptual path length is not supported for EG3D generators '
                    '(it renders G.synthesis(ws) without the camera label c that the tri-plane renderer needs)')
for _name in ('eqt50k_int', 'eqt50k_frac', 'eqr50k'):
    _define_unsupported(_name, 'equivariance metrics are not supported for EG3D generators '
                        '(they need a StyleGAN3 generator with user-specified input transformations, '
                        'G.synthesis.input.transform)')

_define_metric('fid50k', _DATASET_AS_CONFIGURED, frechet_inception_distance, 'compute_fid', max_real=50000, num_gen=50000)
_define_metric('kid50k', _DATASET_AS_CONFIGURED, kernel_inception_distance, 'compute_kid', max_real=50000, **_KID)
_define_metric('pr50k3', _DATASET_AS_CONFIGURED, precision_recall, 'compute_pr', _PR_KEYS, max_real=50000, **_PR)
_define_metric('is50k', _WHOLE_DATASET, inception_score, 'compute_is', ('_mean', '_std'), num_gen=50000, num_splits=10)

#----------------------------------------------------------------------------
# Evaluation and report.

def _value_of_rank0(value, opts):
    # Only rank 0 computes the numbers (the others hold nan); every rank reports rank 0's.
    if opts.num_gpus == 1:
        return float(value)
    shared = torch.as_tensor(value, dtype=torch.float64, device=opts.device)
    torch.distributed.broadcast(tensor=shared, src=0)
    return float(shared)

def calc_metric(metric, **kwargs):
    """Evaluate one metric; kwargs are those of metric_utils.MetricOptions. Returns the report record."""
    check_metric_supported(metric)
    opts = metric_utils.MetricOptions(**kwargs)
    started = time.time()
    with metric_utils.seeded_random_streams(opts):
        values = _metric_dict[metric](opts)
    opts.record_dataset()
    elapsed = time.time() - started
    results = dnnlib.EasyDict({key: _value_of_rank0(value, opts) for key, value in values.items()})
    record = dnnlib.EasyDict(results=results, metric=metric, total_time=elapsed,
                             total_time_str=dnnlib.util.format_time(elapsed), num_gpus=opts.num_gpus)
    record.update(opts.details)  # Provenance: image counts, cameras, dataset, statistics hash, mirroring and seed.
    return record

_RECORD_HEAD = ('results', 'metric', 'total_time', 'total_time_str', 'num_gpus')

def report_metric(result_dict, run_dir=None, snapshot_pkl=None):
    """Print the result as one JSON line and append it to <run_dir>/metric-<name>.jsonl when run_dir exists."""
    metric = result_dict['metric']
    assert is_valid_metric(metric)
    if run_dir is not None and snapshot_pkl is not None:
        snapshot_pkl = os.path.relpath(snapshot_pkl, run_dir)

    # The established keys in their order, then the provenance keys.
    record = {key: result_dict[key] for key in _RECORD_HEAD}
    record.update(snapshot_pkl=snapshot_pkl, timestamp=time.time())
    record.update((key, value) for key, value in result_dict.items() if key not in record)

    jsonl_line = json.dumps(record)
    print(jsonl_line)
    if run_dir is not None and os.path.isdir(run_dir):
        with open(os.path.join(run_dir, f'metric-{metric}.jsonl'), 'at') as f:
            f.write(jsonl_line + '\n')

#----------------------------------------------------------------------------
