"""Evaluate quality metrics of a network snapshot against a dataset."""

import copy
import json
import os
import tempfile

import click
import torch

import dnnlib
from metrics import metric_main, metric_utils
from torch_utils import misc, training_stats
from training import network_pickle

#----------------------------------------------------------------------------

def subprocess_fn(rank, args, temp_dir):
    with dnnlib.util.Logger(should_flush=True): # Flush every line (spawned processes write to pipes).
        _evaluate(rank=rank, args=args, temp_dir=temp_dir)

def _evaluate(rank, args, temp_dir):
    use_cuda = torch.cuda.is_available()
    device = torch.device('cuda', rank) if use_cuda else torch.device('cpu')

    if args.num_gpus > 1:
        init_file = os.path.abspath(os.path.join(temp_dir, '.torch_distributed_init'))
        if os.name == 'nt':
            init_method, backend = 'file:///' + init_file.replace('\\', '/'), 'gloo'
        else:
            init_method, backend = f'file://{init_file}', ('nccl' if use_cuda else 'gloo')
        torch.distributed.init_process_group(backend=backend, init_method=init_method, rank=rank, world_size=args.num_gpus)
        training_stats.init_multiprocessing(rank=rank, sync_device=device)

    # Full-precision matmuls and convolutions, as in training.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    G = copy.deepcopy(args.G).eval().requires_grad_(False).to(device)
    if rank == 0 and args.verbose:
        z = torch.zeros([1, G.z_dim], device=device)
        c = torch.as_tensor(args.summary_c, device=device).reshape(1, G.c_dim) # A real camera, so rendering is sane.
        misc.print_module_summary(G, [z, c])

    for metric in args.metrics:
        if rank == 0 and args.verbose:
            print(f'Calculating {metric}...')
        progress = metric_utils.ProgressMonitor(verbose=args.verbose)
        result_dict = metric_main.calc_metric(metric=metric, G=G, dataset_kwargs=args.dataset_kwargs,
            num_gpus=args.num_gpus, rank=rank, device=device, progress=progress)
        if rank == 0:
            metric_main.report_metric(result_dict, run_dir=args.run_dir, snapshot_pkl=args.network_pkl)
        if rank == 0 and args.verbose:
            print()
    if rank == 0 and args.verbose:
        print('Exiting...')
    if args.num_gpus > 1:
        torch.distributed.destroy_process_group() # Exiting with live gloo threads can abort the process.

#----------------------------------------------------------------------------

def parse_comma_separated_list(s):
    # 'none' (any case) and the empty string mean no metrics.
    if isinstance(s, list):
        return s
    if s is None or s.lower() in ('', 'none'):
        return []
    return s.split(',')

#----------------------------------------------------------------------------

@click.command()
@click.pass_context
@click.option('network_pkl', '--network', help='Network pickle (path or URL)', metavar='PATH', required=True)
@click.option('--metrics', help='Comma-separated metric names, or none', metavar='[NAME|A,B,C|none]', type=parse_comma_separated_list, default='fid50k_full', show_default=True)
@click.option('--data', help='Dataset to compare against  [default: from the pickle]', metavar='[ZIP|DIR]')
@click.option('--mirror', help='Add x-flipped copies of the dataset images  [default: from the pickle]', type=bool, metavar='BOOL')
@click.option('--gpus', help='Number of processes (one GPU each)', type=int, default=1, metavar='INT', show_default=True)
@click.option('--verbose', help='Print the network summary, progress and status lines', type=bool, default=True, metavar='BOOL', show_default=True)
def calc_metrics(ctx, network_pkl, metrics, data, mirror, gpus, verbose):
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
        _calc_metrics(ctx, network_pkl=network_pkl, metrics=metrics, data=data, mirror=mirror, gpus=gpus, verbose=verbose)

def _calc_metrics(ctx, network_pkl, metrics, data, mirror, gpus, verbose):
    args = dnnlib.EasyDict(metrics=metrics, num_gpus=gpus, network_pkl=network_pkl, verbose=verbose)

    if not all(metric_main.is_valid_metric(metric) for metric in args.metrics):
        ctx.fail('\n'.join(['--metrics can only contain the following values:'] + metric_main.list_valid_metrics()))
    for metric in args.metrics:
        try:
            metric_main.check_metric_supported(metric)
        except ValueError as err:
            ctx.fail(f'--metrics: {err}')
    if not args.num_gpus >= 1:
        ctx.fail('--gpus must be at least 1')
    if torch.cuda.is_available() and args.num_gpus > torch.cuda.device_count():
        ctx.fail(f'--gpus={args.num_gpus}, but only {torch.cuda.device_count()} CUDA device(s) are visible')

    if not dnnlib.util.is_url(network_pkl, allow_file_urls=True) and not os.path.isfile(network_pkl):
        ctx.fail(f'--network must point to a file or URL: {network_pkl}')
    if args.verbose:
        print(f'Loading network from "{network_pkl}"...')
    try:
        network_dict = network_pickle.open_network_pkl(network_pkl)
    except network_pickle.NetworkPickleError as err:
        raise click.ClickException(str(err))
    args.G = network_dict['G_ema']

    # Dataset: --data, else the options stored at training time (relative paths resolve against the cwd).
    if data is not None:
        args.dataset_kwargs = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=data)
    elif network_dict.get('training_set_kwargs') is not None:
        args.dataset_kwargs = dnnlib.EasyDict(network_dict['training_set_kwargs'])
    else:
        ctx.fail('Could not look up dataset options; please specify --data')
    args.dataset_kwargs.resolution = args.G.img_resolution
    args.dataset_kwargs.use_labels = (args.G.c_dim != 0)
    if mirror is not None:
        args.dataset_kwargs.xflip = mirror
    if args.verbose:
        print('Dataset options:')
        print(json.dumps(args.dataset_kwargs, indent=2))

    # Fail here, in one line, rather than inside the metric loop.
    origin = '--data' if data is not None else 'dataset of the pickle\'s training_set_kwargs (--data overrides it)'
    try:
        dataset = dnnlib.util.construct_class_by_name(**args.dataset_kwargs)
        label_dim = dataset.label_dim
    except OSError as err:
        raise click.ClickException(f'{origin}: {err}')
    if label_dim != args.G.c_dim:
        raise click.ClickException(f'{origin}: {args.dataset_kwargs.path}: dataset labels have {label_dim} numbers, '
                                   f'the network expects c_dim = {args.G.c_dim} (labels come from dataset.json)')
    args.summary_c = dataset.get_label(0)

    # Results go to the run dir when the pickle sits in one.
    args.run_dir = None
    if os.path.isfile(network_pkl):
        pkl_dir = os.path.dirname(network_pkl)
        if os.path.isfile(os.path.join(pkl_dir, 'training_options.json')):
            args.run_dir = pkl_dir

    if args.verbose:
        print('Launching processes...')
    with tempfile.TemporaryDirectory() as temp_dir:
        if args.num_gpus == 1:
            try:
                subprocess_fn(rank=0, args=args, temp_dir=temp_dir)
            except OSError as err: # Detector, statistics cache or image files: the messages name the file.
                raise click.ClickException(str(err))
        else:
            torch.multiprocessing.spawn(fn=subprocess_fn, args=(args, temp_dir), nprocs=args.num_gpus)

#----------------------------------------------------------------------------

if __name__ == '__main__':
    calc_metrics()

#----------------------------------------------------------------------------
