"""Registry of the named metrics, evaluation entry point and the metric-<name>.jsonl report."""

import json
import os
import time

import torch

import dnnlib

from . import frechet_inception_distance, inception_score, kernel_inception_distance, metric_utils, precision_recall

#----------------------------------------------------------------------------

_metric_dict = dict() # name => fn(opts) -> dict of results; registration order is the documented order.
_unsupported = dict() # name => why it cannot run on an EG3D generator.

def register_metric(fn):
    assert callable(fn)
    _metric_dict[fn.__name__] = fn
    return fn

def _register_unsupported(name, reason):
    # Registered so the name stays valid (as in the original); rejected before any work is done.
    def fn(opts):
        raise ValueError(f'{name}: {reason}')
    fn.__name__ = name
    _unsupported[name] = reason
    register_metric(fn)

def is_valid_metric(metric):
    return metric in _metric_dict

def list_valid_metrics():
    return list(_metric_dict.keys())

def is_supported_metric(metric):
    return is_valid_metric(metric) and metric not in _unsupported

def check_metric_supported(metric):
    """Raise ValueError (one line) for an unknown name or one that cannot run on an EG3D generator."""
    if not is_valid_metric(metric):
        raise ValueError(f'{metric}: unknown metric; valid names: {", ".join(list_valid_metrics())}')
    if metric in _unsupported:
        raise ValueError(f'{metric}: {_unsupported[metric]}')

#----------------------------------------------------------------------------

def calc_metric(metric, **kwargs): # See metric_utils.MetricOptions for the full list of arguments.
    check_metric_supported(metric)
    opts = metric_utils.MetricOptions(**kwargs)

    start_time = time.time()
    results = _metric_dict[metric](opts)
    total_time = time.time() - start_time

    # Only rank 0 computes the numbers; every rank reports rank 0's values.
    for key, value in list(results.items()):
        if opts.num_gpus > 1:
            value = torch.as_tensor(value, dtype=torch.float64, device=opts.device)
            torch.distributed.broadcast(tensor=value, src=0)
        results[key] = float(value)

    return dnnlib.EasyDict(
        results         = dnnlib.EasyDict(results),
        metric          = metric,
        total_time      = total_time,
        total_time_str  = dnnlib.util.format_time(total_time),
        num_gpus        = opts.num_gpus,
        # Not in the original record; says what the number was computed from.
        num_real        = opts.details.num_real,
        num_fake        = opts.details.num_fake,
        camera_source   = opts.details.camera_source,
        dataset_name    = opts.details.dataset_name,
        dataset_hash    = opts.details.dataset_hash, # md5 of the real-image statistics (cache file name).
    )

#----------------------------------------------------------------------------

_RECORD_HEAD = ('results', 'metric', 'total_time', 'total_time_str', 'num_gpus')

def report_metric(result_dict, run_dir=None, snapshot_pkl=None):
    """Print the result as one JSON line and append it to <run_dir>/metric-<name>.jsonl when run_dir exists."""
    metric = result_dict['metric']
    assert is_valid_metric(metric)
    if run_dir is not None and snapshot_pkl is not None:
        snapshot_pkl = os.path.relpath(snapshot_pkl, run_dir)

    # The original's keys in its order, then any extra provenance keys.
    record = {key: result_dict[key] for key in _RECORD_HEAD}
    record.update(snapshot_pkl=snapshot_pkl, timestamp=time.time())
    record.update((key, value) for key, value in result_dict.items() if key not in record)

    jsonl_line = json.dumps(record)
    print(jsonl_line)
    if run_dir is not None and os.path.isdir(run_dir):
        with open(os.path.join(run_dir, f'metric-{metric}.jsonl'), 'at') as f:
            f.write(jsonl_line + '\n')

#----------------------------------------------------------------------------
# Recommended metrics. Real images are the first items of the dataset in its item order.

@register_metric
def fid50k_full(opts):
    opts.dataset_kwargs.update(max_size=None, xflip=False)
    fid = frechet_inception_distance.compute_fid(opts, max_real=None, num_gen=50000)
    return dict(fid50k_full=fid)

@register_metric
def kid50k_full(opts):
    opts.dataset_kwargs.update(max_size=None, xflip=False)
    kid = kernel_inception_distance.compute_kid(opts, max_real=1000000, num_gen=50000, num_subsets=100, max_subset_size=1000)
    return dict(kid50k_full=kid)

@register_metric
def pr50k3_full(opts):
    opts.dataset_kwargs.update(max_size=None, xflip=False)
    precision, recall = precision_recall.compute_pr(opts, max_real=200000, num_gen=50000, nhood_size=3, row_batch_size=10000, col_batch_size=10000)
    return dict(pr50k3_full_precision=precision, pr50k3_full_recall=recall)

# The original registers these, but they cannot work with an EG3D generator (metrics.md 1); rejected up front.
_register_unsupported('ppl2_wend', 'perceptual path length is not supported for EG3D generators '
    '(it renders G.synthesis(ws) without the camera label c that the tri-plane renderer needs)')
for _name in ('eqt50k_int', 'eqt50k_frac', 'eqr50k'):
    _register_unsupported(_name, 'equivariance metrics are not supported for EG3D generators '
        '(they need a StyleGAN3 generator with user-specified input transformations, G.synthesis.input.transform)')

#----------------------------------------------------------------------------
# Legacy metrics.

@register_metric
def fid50k(opts):
    opts.dataset_kwargs.update(max_size=None)
    fid = frechet_inception_distance.compute_fid(opts, max_real=50000, num_gen=50000)
    return dict(fid50k=fid)

@register_metric
def kid50k(opts):
    opts.dataset_kwargs.update(max_size=None)
    kid = kernel_inception_distance.compute_kid(opts, max_real=50000, num_gen=50000, num_subsets=100, max_subset_size=1000)
    return dict(kid50k=kid)

@register_metric
def pr50k3(opts):
    opts.dataset_kwargs.update(max_size=None)
    precision, recall = precision_recall.compute_pr(opts, max_real=50000, num_gen=50000, nhood_size=3, row_batch_size=10000, col_batch_size=10000)
    return dict(pr50k3_precision=precision, pr50k3_recall=recall)

@register_metric
def is50k(opts):
    opts.dataset_kwargs.update(max_size=None, xflip=False)
    mean, std = inception_score.compute_is(opts, num_gen=50000, num_splits=10)
    return dict(is50k_mean=mean, is50k_std=std)

#----------------------------------------------------------------------------
