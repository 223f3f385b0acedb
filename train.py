"""Train an EG3D generator (tri-plane generator + dual discriminator) on a camera-labelled dataset.

Examples:

\b
# FFHQ 512, first stage (neural rendering at 64x64), 8 GPUs:
python train.py --outdir=~/training-runs --cfg=ffhq --data=~/datasets/FFHQ_512.zip \\
  --gpus=8 --batch=32 --gamma=1 --gen_pose_cond=True

\b
# Continue the newest run of the same configuration and dataset, also on another number of GPUs (SLURM requeue):
python train.py --outdir=~/training-runs --cfg=ffhq --data=~/datasets/FFHQ_512.zip \\
  --gpus=8 --batch=32 --gamma=1 --gen_pose_cond=True --resume=latest

\b
# Tiny CPU run (no GPU needed):
python train.py --outdir=/tmp/runs --cfg=shapenet --data=tiny128.zip --gpus=1 --batch=2 \\
  --gamma=0.3 --cbase=1024 --cmax=32 --mbstd-group=2 --neural_rendering_resolution_initial=16 \\
  --depth-resolution=4 --depth-resolution-importance=4 --kimg=0.006 --tick=0.002 --snap=1 \\
  --metrics=none --workers=1 --grid=2x2

A --resume pickle that does not exist is only a warning with --dry-run; a real run refuses it, and every other
input (dataset images, --resume pickle, numbers) is checked before the run directory is created.

Multi-node: start the same command under torchrun on every node (env:// rendezvous; --gpus must equal the
total number of processes). See docs/training.md.
"""

import json
import math
import os
import re
import sys

import click
import torch

import cli
import dnnlib
from cli import train_options as sections
from metrics import metric_main
from torch_utils import distributed, fast_modes, training_stats
from training import camera_validation, network_pickle, presets, rendering_config, snapshot, training_loop

# Default of the command line that no library shares.
NEURAL_RENDERING_FADE_KIMG = 1000   # Length of the rendering-resolution fade when a final resolution is given.

#----------------------------------------------------------------------------
# Click parameter types.

def _parse_kimg(value):
    """A positive, finite number of kimg; integral values stay ints, as training_options.json shows them."""
    if isinstance(value, bool):
        raise ValueError(f'{value!r} is not a number')
    number = value if isinstance(value, (int, float)) else float(value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f'{value!r} is not a positive number')
    return int(number) if float(number).is_integer() else float(number)

def _parse_grid(value):
    return list(value) if isinstance(value, list) else list(cli.parse_tuple(value, min_value=1))

KIMG = cli.click_type(_parse_kimg, 'number')
GRID = cli.click_type(_parse_grid, 'WxH')

#----------------------------------------------------------------------------
# Checks of the inputs (all before the run directory exists).

def inspect_dataset(data):
    """Open the dataset once: check every image it lists, return its kwargs, name and label shape."""
    try:
        dataset = dnnlib.util.construct_class_by_name(class_name='training.dataset.ImageFolderDataset', path=data,
                                                      use_labels=True, max_size=None, xflip=False)
        try:
            validate = getattr(dataset, 'validate', None)
            if validate is not None:
                validate()
            summary = dnnlib.EasyDict(resolution=dataset.resolution, has_labels=dataset.has_labels,
                                      size=len(dataset), label_shape=list(dataset.label_shape), name=dataset.name)
        finally:
            dataset.close()
    except (OSError, ValueError, KeyError) as err:
        raise click.ClickException(f'--data: {" ".join(str(err).split())}')
    if not summary.has_labels:
        raise click.ClickException('--cond=True requires labels specified in dataset.json')
    if summary.label_shape != [25]:
        raise click.ClickException(f'--data: {data}: labels have shape {summary.label_shape}; EG3D needs 25 floats '
                                   f'per image (cam2world 4x4 + intrinsics 3x3)')
    if summary.resolution not in presets.SR_MODULES:
        raise click.ClickException(f'--data: dataset resolution {summary.resolution} is not supported; the '
                                   f'super-resolution modules need 128, 256 or 512 (add a new module for other '
                                   f'resolutions)')
    return summary

def warn_camera_fit(data, cfg, rendering_kwargs):
    """Warn about each rendering option that does not fit the dataset's cameras (dataset_tool.py --check-only --cfg)."""
    try:
        report = camera_validation.check_dataset(data, scan=False)
    except camera_validation.DatasetError as err:
        raise click.ClickException(f'--data: {err}')
    for line in camera_validation.check_rendering_fit(report, rendering_kwargs, rendering_config.base_preset(cfg)):
        print(f'Warning: {line}')

def check_batch_and_metrics(opts, batch_gpu):
    if opts.batch % opts.gpus != 0:
        raise click.ClickException('--batch must be a multiple of --gpus')
    if opts.batch % (opts.gpus * batch_gpu) != 0:
        raise click.ClickException('--batch must be a multiple of --gpus times --batch-gpu')
    if batch_gpu < opts.mbstd_group:
        raise click.ClickException('--batch-gpu cannot be smaller than --mbstd-group')
    if batch_gpu % opts.mbstd_group != 0:
        raise click.ClickException('--batch-gpu must be a multiple of --mbstd-group (the discriminator splits each '
                                   'batch into groups of that size)')
    unknown = [name for name in opts.metrics if not metric_main.is_valid_metric(name)]
    if unknown:
        raise click.ClickException(f'--metrics: unknown metric {unknown[0]} (valid: '
                                   f'{", ".join(metric_main.list_valid_metrics())})')
    for name in opts.metrics:
        if not metric_main.is_supported_metric(name):
            raise click.ClickException(f'--metrics: {name} cannot be computed for an EG3D generator')
    if opts.gen_pose_cond and opts.gpc_reg_prob > 1:
        raise click.ClickException('--gpc_reg_prob must be in [0, 1] with --gen_pose_cond=True')
    if opts.disc_c_noise > 0 and batch_gpu < 2:
        raise click.ClickException('--disc_c_noise needs --batch-gpu >= 2 (the noise is scaled by the label std '
                                   'over each batch, undefined for one sample)')

def check_sr_module(sr_module):
    try:
        dnnlib.util.get_obj_by_name(sr_module)
    except (ImportError, AttributeError, ValueError) as err:
        raise click.ClickException(f'--sr-module: cannot import {sr_module} ({err})')

def check_process_count(num_gpus):
    world = distributed.torchrun_world()
    if world is not None and num_gpus != world.world_size:
        raise click.ClickException(f'--gpus={num_gpus} must equal the number of torchrun processes '
                                   f'({world.world_size})')
    if world is None and torch.cuda.is_available() and num_gpus > torch.cuda.device_count():
        raise click.ClickException(f'--gpus={num_gpus}: only {torch.cuda.device_count()} CUDA device(s) visible')

def check_resume_pickle(c, dry_run=False):
    """A real run loads the --resume pickle before creating anything, so that a broken file stops it early.

    Each construction option in which the new G and D differ from the pickle's is printed as a warning, with the
    flag that would match: the resume copies weights by name, so the new values would apply without a word. A
    dry run does the same for a pickle on this machine, and only warns when it cannot be read.
    """
    if c.get('resume_pkl') is None or (dry_run and not os.path.isfile(c.resume_pkl)):
        return
    try:
        resumed = network_pickle.open_network_pkl(c.resume_pkl, trust_embedded_code=c.get('trust_embedded_code', False))
    except network_pickle.NetworkPickleError as err:
        if dry_run:
            print(f'Warning: --resume: {err} (a real run stops here)')
            return
        raise click.ClickException(f'--resume: {err}')
    for line in sections.describe_resume_differences(c, resumed):
        print(f'Warning: --resume={c.resume_pkl}: {line}')

def apply_resume(c, opts, desc, family):
    """Record what --resume continues from, and the settings that a networks-only resume changes."""
    try:
        choice = snapshot.choose_resume(opts.resume, opts.outdir, desc, opts.resume_mode,
                                        training_loop.recorded_options(c), dry_run=opts.dry_run, family=family)
    except snapshot.ResumeError as err:
        raise click.ClickException(str(err))
    if choice is None:
        return
    c.resume_pkl, state_pt, their_options = choice
    if state_pt is None:
        # Schedules restart, so skip their ramps (unless --resume_blur keeps the blur and GPC fades).
        c.ada_kimg = 100
        c.ema_rampup = None
        if not opts.resume_blur:
            c.loss_kwargs.update(blur_init_sigma=0, gpc_reg_fade_kimg=0)
        return
    # Continue exactly: take the resume-dependent settings from the run being continued.
    c.resume_state = state_pt
    ours = training_loop.recorded_options(c)
    for key in snapshot.RESUME_LOOP_KEYS:
        if their_options[key] != ours[key]:
            c[key] = their_options[key]
    for key in snapshot.RESUME_LOSS_KEYS:
        c.loss_kwargs[key] = their_options['loss_kwargs'][key]

def build_config(opts):
    """The training-loop config of the command-line options, after every check: (c, desc)."""
    opts = dnnlib.EasyDict(opts)
    if not opts.cond:
        raise click.ClickException('--cond=False is not supported: EG3D needs the 25-float camera labels of '
                                   'dataset.json to render and to condition the discriminator')
    dataset = inspect_dataset(opts.data)
    batch_gpu = opts.batch_gpu or opts.batch // opts.gpus
    check_batch_and_metrics(opts, batch_gpu)
    sr_module = opts.sr_module or presets.SR_MODULES[dataset.resolution]
    check_sr_module(sr_module)
    if not opts.dry_run:
        check_process_count(opts.gpus) # A dry run may be prepared on a machine without the GPUs.

    c = dnnlib.EasyDict()
    try:
        rendering_kwargs = sections.rendering_kwargs_for(opts, dataset.resolution, sr_module)
    except rendering_config.RenderingConfigError as err:
        raise click.ClickException(str(err))
    warn_camera_fit(opts.data, opts.cfg, rendering_kwargs)
    c.G_kwargs = sections.generator_kwargs(opts, rendering_kwargs)
    c.D_kwargs = sections.discriminator_kwargs(opts)
    c.G_opt_kwargs = sections.adam_kwargs(opts.glr if opts.glr is not None else sections.G_LR)
    c.D_opt_kwargs = sections.adam_kwargs(opts.dlr)
    c.loss_kwargs = sections.loss_kwargs_for(opts)
    c.data_loader_kwargs = dnnlib.EasyDict(pin_memory=True, prefetch_factor=2, num_workers=opts.workers)
    c.training_set_kwargs = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=opts.data,
                                            use_labels=opts.cond, max_size=dataset.size, xflip=opts.mirror,
                                            resolution=dataset.resolution, random_seed=opts.seed)
    if opts.mirror and opts.mirror_cameras: # Absent (the dataset's default, False) when it changes nothing.
        c.training_set_kwargs.mirror_cameras = True
    c.update(num_gpus=opts.gpus, batch_size=opts.batch, batch_gpu=batch_gpu, metrics=opts.metrics,
             total_kimg=opts.kimg, kimg_per_tick=opts.tick, image_snapshot_ticks=opts.snap,
             network_snapshot_ticks=opts.snap, random_seed=opts.seed, ema_kimg=opts.batch * 10 / 32)
    if opts.density_reg > 0:
        c.G_reg_interval = opts.density_reg_every # Absent otherwise: G then trains in a single 'Gboth' phase.
    c.update(sections.augment_options(opts.aug, target=opts.target, p=opts.p))
    desc = sections.run_description(opts, dataset.name)
    if opts.resume is not None:
        apply_resume(c, opts, desc, family=sections.run_family(opts, dataset.name))
    if opts.nobench:
        c.cudnn_benchmark = False
    # This project's additions enter training_options.json only when they differ from the default.
    if opts.nan_limit != training_loop.DEFAULTS.nan_limit:
        c.nan_limit = opts.nan_limit
    if opts.grid is not None:
        c.image_grid_size = opts.grid
    if opts.metrics_seed is not None:
        c.metrics_seed = opts.metrics_seed
    if opts.trust_embedded_code:
        c.trust_embedded_code = True
    if opts.deterministic:
        c.deterministic = True
    speed = dict(tf32=opts.tf32, compile=opts.compile, precision=opts.precision)
    if speed != training_loop.EXACT_SPEED_MODES:
        c.fast_modes = speed
    if opts.adam != 'default':
        for opt_kwargs in (c.G_opt_kwargs, c.D_opt_kwargs):
            opt_kwargs.update(fast_modes.adam_kwargs(opts.adam))
    return c, desc

#----------------------------------------------------------------------------
# Run directory.

def next_run_dir(outdir, desc):
    """<outdir>/<id:05d>-<desc>, id one above the largest leading number of a folder in outdir."""
    ids = [-1]
    if os.path.isdir(outdir):
        for entry in os.scandir(outdir):
            match = re.match(r'\d+', entry.name)
            if match is not None and entry.is_dir():
                ids.append(int(match.group()))
    return os.path.join(outdir, f'{max(ids) + 1:05d}-{desc}')

def print_summary(c):
    dataset = c.training_set_kwargs
    rows = [('Output directory', c.run_dir), ('Number of GPUs', c.num_gpus), ('Batch size', f'{c.batch_size} images'),
            ('Training duration', f'{c.total_kimg} kimg'), ('Dataset path', dataset.path),
            ('Dataset size', f'{dataset.max_size} images'), ('Dataset resolution', dataset.resolution),
            ('Dataset labels', dataset.use_labels), ('Dataset x-flips', dataset.xflip)]
    print('\nTraining options:')
    print(json.dumps(c, indent=2))
    print()
    for label, value in rows:
        print(f'{label + ":":<21}{value}')
    print()

def prepare_run(c, desc, outdir, dry_run):
    """Name the run directory and print the summary; unless dry_run, create it with training_options.json."""
    c.run_dir = next_run_dir(outdir, desc)
    print_summary(c)
    if dry_run:
        print('Dry run; exiting.')
        return False
    print('Creating output directory...')
    os.makedirs(outdir, exist_ok=True)
    try:
        os.mkdir(c.run_dir)
    except FileExistsError:
        raise click.ClickException(f'{c.run_dir}: run directory already exists')
    snapshot.save_json(os.path.join(c.run_dir, 'training_options.json'), c)
    return True

#----------------------------------------------------------------------------
# Training processes.

def train_process(rank, c, device, processes_per_node):
    """One training process; torch.distributed is already initialised when there are several."""
    distributed.share_cpu_cores(device, processes_per_node)
    if c.num_gpus > 1: # A single process keeps the defaults, so it may train again in the same Python process.
        training_stats.init_multiprocessing(rank=rank, sync_device=device)
    with dnnlib.util.Logger(file_name=os.path.join(c.run_dir, 'log.txt'), file_mode='a', should_flush=True):
        try:
            training_loop.training_loop(rank=rank, device=device, **c)
        except training_loop.TrainingDiverged as err:
            if c.num_gpus == 1:
                raise click.ClickException(str(err))
            if rank == 0:
                print(f'Error: {err}', file=sys.stderr)
            sys.exit(1)

def local_process(rank, c):
    """Entry point of the processes of a single-node run (rank 0 runs in-process when --gpus=1)."""
    train_process(rank, c, distributed.device_for(rank), processes_per_node=c.num_gpus)

def launch_local(c, desc, outdir, dry_run):
    if not prepare_run(c, desc, outdir, dry_run):
        return
    print('Launching processes...')
    try:
        distributed.launch_local(local_process, num_processes=c.num_gpus, args=(c,))
    except torch.multiprocessing.ProcessExitedException as err:
        raise click.ClickException(f'training process {err.error_index} exited with code {err.exit_code}; '
                                   f'see {os.path.join(c.run_dir, "log.txt")}')

def launch_torchrun(opts, world):
    """Multi-node (torchrun): rank 0 checks the options and prepares the run, then every process trains."""
    device = distributed.device_for(world.local_rank)
    distributed.init_env_process_group()
    try:
        shared = [dict()] # Stays empty for a dry run or a failed check on rank 0: the other ranks stop.
        if world.rank == 0:
            try:
                c, desc = build_config(opts)
                check_resume_pickle(c, dry_run=opts.dry_run)
                if prepare_run(c, desc, opts.outdir, opts.dry_run):
                    shared[0]['c'] = c
            finally:
                torch.distributed.broadcast_object_list(shared, src=0)
        else:
            torch.distributed.broadcast_object_list(shared, src=0)
        if 'c' not in shared[0]:
            return
        c = shared[0]['c']
        os.makedirs(c.run_dir, exist_ok=True) # Other nodes may not share rank 0's file system.
        train_process(world.rank, c, device, processes_per_node=world.local_world_size)
    finally:
        distributed.close_process_group()

#----------------------------------------------------------------------------

@click.command(epilog=sections.TRAIN_HELP_EPILOG)
# Required.
@click.option('--outdir', help='Parent directory of the run directories', metavar='DIR', type=cli.PATH, required=True)
@click.option('--cfg', help='Rendering preset or JSON rendering config file', metavar='[ffhq|afhq|shapenet|FILE.json]', type=sections.ConfigArg(), required=True)
@click.option('--data', help='Dataset zip or folder', metavar='[ZIP|DIR]', type=cli.PATH, required=True)
@click.option('--gpus', help='Number of GPUs (processes)', metavar='INT', type=click.IntRange(min=1), required=True)
@click.option('--batch', help='Total batch size over all GPUs', metavar='INT', type=click.IntRange(min=1), required=True)
@click.option('--gamma', help='R1 weight', metavar='FLOAT', type=cli.FiniteFloat(min=0), required=True)
# Optional features.
@click.option('--cond', help='Use the dataset camera labels (must stay on for EG3D)', metavar='BOOL', type=bool, default=True, show_default=True)
@click.option('--mirror', help='Add x-flipped copies of the images', metavar='BOOL', type=bool, default=False, show_default=True)
@click.option('--mirror-cameras', help='With --mirror: the x-flipped copies carry the mirrored camera (False: the unchanged one, as the original)', metavar='BOOL', type=bool, default=True, show_default=True)
@click.option('--aug', help='Discriminator augmentation', type=click.Choice(['noaug', 'ada', 'fixed']), default='noaug', show_default=True)
@click.option('--resume', help='Network pickle to start from, or "latest": newest snapshot of this configuration and dataset under --outdir (any --gpus and --batch)', metavar='[PATH|URL|latest]', type=cli.PATH)
@click.option('--freezed', help='Number of leading D layers to freeze', metavar='INT', type=click.IntRange(min=0), default=0, show_default=True)
# Misc hyperparameters.
@click.option('--p', help='Augmentation probability with --aug=fixed', metavar='FLOAT', type=cli.FiniteFloat(min=0, max=1), default=0.2, show_default=True)
@click.option('--target', help='ADA target with --aug=ada', metavar='FLOAT', type=cli.FiniteFloat(min=0, max=1), default=0.6, show_default=True)
@click.option('--batch-gpu', help='Samples per forward pass and GPU  [default: batch/gpus]', metavar='INT', type=click.IntRange(min=1))
@click.option('--cbase', help='Channel base of G backbone, SR and D', metavar='INT', type=click.IntRange(min=1), default=32768, show_default=True)
@click.option('--cmax', help='Channel maximum of G backbone, SR and D', metavar='INT', type=click.IntRange(min=1), default=512, show_default=True)
@click.option('--glr', help='G Adam learning rate  [default: 0.0025]', metavar='FLOAT', type=cli.FiniteFloat(min=0))
@click.option('--dlr', help='D Adam learning rate', metavar='FLOAT', type=cli.FiniteFloat(min=0), default=0.002, show_default=True)
@click.option('--map-depth', help='Layers of the G mapping network', metavar='INT', type=click.IntRange(min=1), default=2, show_default=True)
@click.option('--mbstd-group', help='Group size of the D minibatch-std layer', metavar='INT', type=click.IntRange(min=1), default=4, show_default=True)
# Misc settings.
@click.option('--desc', help='Suffix of the run directory name', metavar='STR', type=str)
@click.option('--metrics', help='Metrics evaluated at each network snapshot', metavar='[NAME|A,B,C|none]', type=cli.parse_comma_separated_list, default='fid50k_full', show_default=True)
@click.option('--kimg', help='Training length in thousands of real images (fractions allowed)', metavar='KIMG', type=KIMG, default=25000, show_default=True)
@click.option('--tick', help='Progress line every this many kimg (fractions allowed)', metavar='KIMG', type=KIMG, default=4, show_default=True)
@click.option('--snap', help='Ticks between image and network snapshots', metavar='TICKS', type=click.IntRange(min=1), default=50, show_default=True)
@click.option('--seed', help='Global random seed', metavar='INT', type=click.IntRange(min=0), default=0, show_default=True)
@click.option('--nobench', help='Turn cuDNN benchmark mode off', metavar='BOOL', type=bool, default=False, show_default=True)
@click.option('--deterministic', help='cuDNN benchmark off and deterministic algorithms on, for runs that repeat bit for bit (docs/training.md says where)', metavar='BOOL', type=bool, default=False, show_default=True)
@click.option('--workers', help='Data loader worker processes', metavar='INT', type=click.IntRange(min=1), default=3, show_default=True)
@click.option('-n', '--dry-run', help='Print the options and exit', is_flag=True)
# EG3D.
@click.option('--neural_rendering_resolution_initial', help='Neural rendering resolution at the start', metavar='INT', type=click.IntRange(min=1), default=presets.NEURAL_RENDERING_RESOLUTION, show_default=True)
@click.option('--neural_rendering_resolution_final', help='Fade linearly to this neural rendering resolution', metavar='INT', type=click.IntRange(min=1), default=None)
@click.option('--neural_rendering_resolution_fade_kimg', help='Length of that fade (kimg)', metavar='INT', type=click.IntRange(min=0), default=NEURAL_RENDERING_FADE_KIMG, show_default=True)
@click.option('--blur_fade_kimg', help='Length of the D input blur fade (kimg at batch 32)', metavar='INT', type=click.IntRange(min=1), default=200, show_default=True)
@click.option('--gen_pose_cond', help='Condition the G mapping on the camera (GPC)', metavar='BOOL', type=bool, default=False, show_default=True)
@click.option('--c-scale', help='Multiplier of the camera label seen by the G mapping', metavar='FLOAT', type=cli.FiniteFloat(min=0), default=1, show_default=True)
@click.option('--c-noise', help='Ignored (kept for command-line compatibility)', metavar='FLOAT', type=cli.FiniteFloat(min=0), default=0, show_default=True)
@click.option('--gpc_reg_prob', help='Final camera-swapping probability with GPC', metavar='FLOAT', type=cli.FiniteFloat(min=0), default=0.5, show_default=True)
@click.option('--gpc_reg_fade_kimg', help='Length of the swapping-probability fade (kimg)', metavar='INT', type=click.IntRange(min=0), default=1000, show_default=True)
@click.option('--disc_c_noise', help='Noise on the D camera label, relative to its batch std', metavar='FLOAT', type=cli.FiniteFloat(min=0), default=0, show_default=True)
@click.option('--sr_noise_mode', help='Noise mode of the super-resolution layers', type=click.Choice(['random', 'none']), default='none', show_default=True)
@click.option('--resume_blur', help='Keep the blur fade and the GPC fade when resuming', metavar='BOOL', type=bool, default=False, show_default=True)
@click.option('--sr_num_fp16_res', help='fp16 layers of the super-resolution module', metavar='INT', type=click.IntRange(min=0), default=4, show_default=True)
@click.option('--g_num_fp16_res', help='fp16 resolutions of the G backbone', metavar='INT', type=click.IntRange(min=0), default=0, show_default=True)
@click.option('--d_num_fp16_res', help='fp16 resolutions of D', metavar='INT', type=click.IntRange(min=0), default=4, show_default=True)
@click.option('--sr_first_cutoff', help='Ignored (kept for command-line compatibility)', metavar='INT', type=click.IntRange(min=2), default=2, show_default=True)
@click.option('--sr_first_stopband', help='Ignored (kept for command-line compatibility)', metavar='FLOAT', type=cli.FiniteFloat(min=2), default=2**2.1, show_default=True)
@click.option('--style_mixing_prob', help='Style-mixing probability', metavar='FLOAT', type=cli.FiniteFloat(min=0, max=1), default=0, show_default=True)
@click.option('--sr-module', help='Dotted class name of the super-resolution module  [default: by resolution]', metavar='STR', type=str)
@click.option('--density_reg', help='Density regularization weight (0: off)', metavar='FLOAT', type=cli.FiniteFloat(min=0), default=0.25, show_default=True)
@click.option('--density_reg_every', help='Interval of the lazy density regularization', metavar='FLOAT', type=cli.FiniteFloat(min=1), default=4, show_default=True)
@click.option('--density_reg_p_dist', help='Perturbation std of the l1 density regularization', metavar='FLOAT', type=cli.FiniteFloat(min=0), default=0.004, show_default=True)
@click.option('--reg_type', help='Density regularization variant', type=click.Choice(['l1', 'l1-alt', 'monotonic-detach', 'monotonic-fixed', 'total-variation']), default='l1', show_default=True)
@click.option('--decoder_lr_mul', help='Learning-rate multiplier of the tri-plane decoder', metavar='FLOAT', type=cli.FiniteFloat(min=0), default=1, show_default=True)
# Additions of this project; their defaults change nothing (docs/training.md).
@click.option('--resume-mode', help='auto: restore the full training state when the snapshot has one and the setup matches; full: always; networks: never', type=click.Choice(['auto', 'full', 'networks']), default='auto', show_default=True)
@click.option('--nan-limit', help='Stop after this many consecutive iterations with non-finite losses or gradients (0: never)', metavar='INT', type=click.IntRange(min=0), default=training_loop.DEFAULTS.nan_limit, show_default=True)
@click.option('--depth-resolution', help='Coarse samples per ray  [default: from --cfg]', metavar='INT', type=click.IntRange(min=2))
@click.option('--depth-resolution-importance', help='Importance samples per ray  [default: from --cfg]', metavar='INT', type=click.IntRange(min=0))
@sections.override_options
@cli.trust_embedded_code_option
@click.option('--metrics-seed', help='Seed of the metrics\' latents, cameras and rendering noise, so that calc_metrics.py --seed reproduces them  [default: none, the training\'s random streams]', metavar='INT', type=click.IntRange(min=0, max=2**32 - 1))
@click.option('--grid', help='Size of the snapshot image grids  [default: from the resolution]', metavar='WxH', type=GRID)
# Opt-in speed modes (docs/performance.md); the defaults reproduce the exact numbers.
@click.option('--tf32', help='Let CUDA matmuls and convolutions use TF32', metavar='BOOL', type=bool, default=False, show_default=True)
@click.option('--compile', help='torch.compile the renderer, decoder and super-resolution', metavar='BOOL', type=bool, default=False, show_default=True)
@click.option('--precision', help='Precision of the tri-plane decoder (bf16: autocast)', type=click.Choice(['fp32', 'bf16']), default='fp32', show_default=True)
@click.option('--adam', help='Adam implementation', type=click.Choice(['default', 'foreach', 'fused']), default='default', show_default=True)
@cli.one_line_errors
def main(**kwargs):
    """Train EG3D on a camera-labelled dataset (see the module docstring for examples)."""
    opts = dnnlib.EasyDict(kwargs)
    world = distributed.torchrun_world()
    if world is not None:
        launch_torchrun(opts, world)
        return
    c, desc = build_config(opts)
    check_resume_pickle(c, dry_run=opts.dry_run)
    launch_local(c, desc, opts.outdir, opts.dry_run)

def config_from_args(args) -> tuple:
    """(c, desc) of a train.py command line (a list of flags), checked like a run but creating nothing.

    The benchmarks build their training setups with it. Bad flags raise click.UsageError (or a subclass), bad inputs
    click.ClickException, with the messages train.py prints.
    """
    with main.make_context('train.py', list(args)) as ctx:
        return build_config(ctx.params)

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()

#----------------------------------------------------------------------------
