"""Evaluate quality metrics of a network snapshot against a dataset."""

import copy
import json
import os

import click
import torch

import cli
import dnnlib
from inference import generation
from metrics import metric_main, metric_utils
from torch_utils import distributed, misc, training_stats

#----------------------------------------------------------------------------
# The evaluating processes.

def evaluate(rank, job):
    """Compute every requested metric of job.G as process `rank` of job.num_gpus (rank 0 reports)."""
    device = distributed.device_for(rank)
    if job.num_gpus > 1:
        training_stats.init_multiprocessing(rank=rank, sync_device=device)
    speak = rank == 0 and job.verbose
    # Full-precision matmuls and convolutions, as in training.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    G = copy.deepcopy(job.G).eval().requires_grad_(False).to(device)
    if speak:
        # A real camera from the dataset, so that the summary's rendering is sane.
        camera = torch.as_tensor(job.summary_c, device=device).reshape(1, G.c_dim)
        misc.print_module_summary(G, [torch.zeros([1, G.z_dim], device=device), camera])
    for metric in job.metrics:
        if speak:
            print(f'Calculating {metric}...')
        result = metric_main.calc_metric(metric=metric, G=G, dataset_kwargs=job.dataset_kwargs,
                                         num_gpus=job.num_gpus, rank=rank, device=device, seed=job.seed,
                                         progress=metric_utils.ProgressMonitor(verbose=job.verbose))
        if rank == 0:
            metric_main.report_metric(result, run_dir=job.run_dir, snapshot_pkl=job.network_pkl)
        if speak:
            print()
    if speak:
        print('Exiting...')

def logged_evaluate(rank, job):
    with dnnlib.util.Logger(should_flush=True): # Flush every line: spawned processes write to pipes.
        evaluate(rank, job)

#----------------------------------------------------------------------------
# Checks and the job description, all before any metric runs.

def check_metrics(ctx, metrics):
    unknown = [name for name in metrics if not metric_main.is_valid_metric(name)]
    if unknown:
        ctx.fail(f'--metrics: unknown metric {unknown[0]} (valid: {", ".join(metric_main.list_valid_metrics())})')
    for name in metrics:
        try:
            metric_main.check_metric_supported(name)
        except ValueError as err:
            ctx.fail(f'--metrics: {err}')

def dataset_options(ctx, data, mirror, mirror_cameras, stored, G):
    """Dataset kwargs: --data, else what the pickle stored at training time (relative paths: against the cwd)."""
    if data is not None:
        kwargs = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=data)
    elif stored is not None:
        kwargs = dnnlib.EasyDict(stored)
    else:
        ctx.fail('Could not look up dataset options; please specify --data')
    kwargs.resolution = G.img_resolution
    kwargs.use_labels = G.c_dim != 0
    if mirror is not None:
        kwargs.xflip = mirror
    if mirror_cameras is not None:
        kwargs.mirror_cameras = mirror_cameras
    return kwargs

def first_label(dataset_kwargs, origin, c_dim):
    """Open and check the dataset; return its first label (the camera of the network summary)."""
    try:
        dataset = dnnlib.util.construct_class_by_name(**dataset_kwargs)
        validate = getattr(dataset, 'validate', None)
        if validate is not None:
            validate()
        label_dim = dataset.label_dim
    except (OSError, ValueError) as err:
        raise click.ClickException(f'{origin}: {" ".join(str(err).split())}')
    if label_dim != c_dim:
        raise click.ClickException(f'{origin}: {dataset_kwargs.path}: dataset labels have {label_dim} numbers, '
                                   f'the network expects c_dim = {c_dim} (labels come from dataset.json)')
    return dataset.get_label(0)

def run_dir_of(network_pkl):
    """The training run folder holding the pickle, where results are also appended; None elsewhere."""
    folder = os.path.dirname(network_pkl)
    if os.path.isfile(network_pkl) and os.path.isfile(os.path.join(folder, 'training_options.json')):
        return folder
    return None

#----------------------------------------------------------------------------

@click.command()
@click.pass_context
@click.option('network_pkl', '--network', help='Network pickle (path or URL)', metavar='PATH', type=cli.PATH, required=True)
@click.option('--metrics', help='Comma-separated metric names, or none', metavar='[NAME|A,B,C|none]', type=cli.parse_comma_separated_list, default='fid50k_full', show_default=True)
@click.option('--data', help='Dataset to compare against  [default: from the pickle]', metavar='[ZIP|DIR]', type=cli.PATH)
@click.option('--mirror', help='Add x-flipped copies of the dataset images  [default: from the pickle]', type=bool, metavar='BOOL')
@click.option('--mirror-cameras', help='The x-flipped copies carry the mirrored camera (the labels G is conditioned on)  [default: from the pickle, else False]', type=bool, metavar='BOOL')
@click.option('--seed', help='Seed of the latents, cameras and rendering noise (a training run\'s --metrics-seed reproduces its metric-*.jsonl)  [default: none, unseeded]', type=click.IntRange(min=0, max=2**32 - 1), metavar='INT')
@click.option('--gpus', help='Number of processes (one GPU each)', type=int, default=1, metavar='INT', show_default=True)
@click.option('--verbose', help='Print the network summary, progress and status lines', type=bool, default=True, metavar='BOOL', show_default=True)
@cli.trust_embedded_code_option
@cli.one_line_errors
def calc_metrics(ctx, network_pkl, metrics, data, mirror, mirror_cameras, seed, gpus, verbose, trust_embedded_code):
    """Evaluate metrics of a network snapshot (its G_ema) against a dataset.

    \b
    Snapshot of a training run: the dataset options come from the pickle and each result
    is also appended to metric-<name>.jsonl in the run directory:
    python calc_metrics.py --metrics=fid50k_full,kid50k_full \\
        --network=training-runs/00000-ffhq-ffhq512-gpus8-batch32-gamma1/network-snapshot-000000.pkl

    \b
    Any other pickle: name the dataset; the result is only printed:
    python calc_metrics.py --metrics=fid50k_full --data=datasets/FFHQ_512.zip --network=ffhq512-128.pkl

    \b
    Metrics: fid50k_full, kid50k_full, pr50k3_full (against the whole dataset),
    fid50k, kid50k, pr50k3 (against its first 50k images), is50k (Inception score).
    ppl2_wend, eqt50k_int, eqt50k_frac and eqr50k are known names that cannot run on EG3D.
    """
    with dnnlib.util.Logger(should_flush=True):
        check_metrics(ctx, metrics)
        if gpus < 1:
            ctx.fail('--gpus must be at least 1')
        if torch.cuda.is_available() and gpus > torch.cuda.device_count():
            ctx.fail(f'--gpus={gpus}, but only {torch.cuda.device_count()} CUDA device(s) are visible')
        if not dnnlib.util.is_url(network_pkl, allow_file_urls=True) and not os.path.isfile(network_pkl):
            ctx.fail(f'--network must point to a file or URL: {network_pkl}')

        if verbose:
            print(f'Loading network from "{network_pkl}"...')
        snapshot = generation.open_snapshot(network_pkl, trust_embedded_code=trust_embedded_code)
        G = snapshot['G_ema']
        dataset_kwargs = dataset_options(ctx, data, mirror, mirror_cameras, snapshot.get('training_set_kwargs'), G)
        if verbose:
            print('Dataset options:')
            print(json.dumps(dataset_kwargs, indent=2))
        origin = '--data' if data is not None else "dataset of the pickle's training_set_kwargs (--data overrides it)"
        job = dnnlib.EasyDict(G=G, metrics=metrics, num_gpus=gpus, network_pkl=network_pkl, verbose=verbose, seed=seed,
                              dataset_kwargs=dataset_kwargs, summary_c=first_label(dataset_kwargs, origin, G.c_dim),
                              run_dir=run_dir_of(network_pkl))

        if verbose:
            print('Launching processes...')
        try:
            distributed.launch_local(logged_evaluate, num_processes=gpus, args=(job,))
        except OSError as err: # Detector, statistics cache or image files: the messages name the file.
            raise click.ClickException(str(err))

#----------------------------------------------------------------------------

if __name__ == '__main__':
    calc_metrics()

#----------------------------------------------------------------------------
