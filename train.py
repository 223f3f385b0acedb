"""Train an EG3D generator (tri-plane generator + dual discriminator) on a camera-labelled dataset.

Examples:

\b
# FFHQ 512, first stage (neural rendering at 64x64), 8 GPUs:
python train.py --outdir=~/training-runs --cfg=ffhq --data=~/datasets/FFHQ_512.zip \\
  --gpus=8 --batch=32 --gamma=1 --gen_pose_cond=True

\b
# Continue the newest run of the same configuration (SLURM requeue, preemption):
python train.py --outdir=~/training-runs --cfg=ffhq --data=~/datasets/FFHQ_512.zip \\
  --gpus=8 --batch=32 --gamma=1 --gen_pose_cond=True --resume=latest

\b
# Tiny CPU run (no GPU needed):
python train.py --outdir=/tmp/runs --cfg=shapenet --data=tiny128.zip --gpus=1 --batch=2 \\
  --gamma=0.3 --cbase=1024 --cmax=32 --mbstd-group=2 --neural_rendering_resolution_initial=16 \\
  --depth-resolution=4 --depth-resolution-importance=4 --kimg=0.006 --tick=0.002 --snap=1 \\
  --metrics=none --workers=1 --grid=2x2

Multi-node: start the same command under torchrun on every node (env:// rendezvous; --gpus must equal the
total number of processes). See docs/training.md.
"""

import inspect
import json
import math
import os
import re
import sys
import tempfile

import click
import torch

import dnnlib
from metrics import metric_main
from torch_utils import training_stats
from training import presets, rendering_config, snapshot, training_loop

#----------------------------------------------------------------------------
# Presets.

# Default of an addition; the matching key enters training_options.json only when changed.
_NAN_LIMIT_DEFAULT = inspect.signature(training_loop.training_loop).parameters['nan_limit'].default

# Settings that may differ between a run and the run that continues it with its full training state
# (resources, bookkeeping and length); everything else must match for --resume-mode=auto to restore it.
_RESOURCE_KEYS = ('run_dir', 'data_loader_kwargs', 'num_gpus', 'batch_gpu', 'metrics', 'total_kimg', 'kimg_per_tick',
                  'image_snapshot_ticks', 'network_snapshot_ticks', 'cudnn_benchmark', 'resume_pkl', 'resume_state',
                  'resume_kimg', 'nan_limit', 'image_grid_size')

# Settings that the original changes when resuming; a full-state resume inherits them from the state instead.
_RESUME_LOSS_KEYS = ('blur_init_sigma', 'gpc_reg_fade_kimg')
_RESUME_LOOP_KEYS = ('ada_kimg', 'ema_rampup')

#----------------------------------------------------------------------------
# Click parameter types.

def parse_comma_separated_list(s):
    if isinstance(s, list):
        return s
    if s is None or s.lower() == 'none' or s == '':
        return []
    return s.split(',')

class PositiveNumber(click.ParamType):
    """A positive int or float; integral values stay ints (so training_options.json matches the original)."""
    name = 'number'

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = float(value)
            except ValueError:
                self.fail(f'{value!r} is not a number', param, ctx)
        if not (math.isfinite(number) and number > 0):
            self.fail(f'{value!r} is not a positive number', param, ctx)
        return int(number) if float(number).is_integer() else float(number)

class GridSize(click.ParamType):
    """'WxH' or 'W,H' with positive integers."""
    name = 'WxH'

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            return list(value)
        match = re.fullmatch(r'\s*(\d+)\s*[x,]\s*(\d+)\s*', str(value))
        if match is None or int(match.group(1)) < 1 or int(match.group(2)) < 1:
            self.fail(f'{value!r} is not of the form WxH with positive integers', param, ctx)
        return [int(match.group(1)), int(match.group(2))]

#----------------------------------------------------------------------------
# Configuration.

def _init_dataset_kwargs(data):
    """Open the dataset once to check it and fill in its size and resolution."""
    try:
        dataset_kwargs = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=data, use_labels=True,
                                         max_size=None, xflip=False)
        dataset_obj = dnnlib.util.construct_class_by_name(**dataset_kwargs)
        dataset_kwargs.resolution = dataset_obj.resolution
        dataset_kwargs.use_labels = dataset_obj.has_labels
        dataset_kwargs.max_size = len(dataset_obj)
        label_shape = dataset_obj.label_shape
        name = dataset_obj.name
        dataset_obj.close()
        return dataset_kwargs, name, label_shape
    except IOError as err:
        raise click.ClickException(f'--data: {err}')

def _loop_defaults():
    return {name: param.default for name, param in inspect.signature(training_loop.training_loop).parameters.items()
            if param.default is not inspect.Parameter.empty}

def _jsonable(value):
    return json.loads(json.dumps(value))

def _setup_differences(c, options):
    """Names of the training settings in which config c differs from the options stored in a training state."""
    defaults = _loop_defaults()
    diffs = []
    for key in sorted(set(c) | set(options)):
        if key in _RESOURCE_KEYS or key in _RESUME_LOOP_KEYS or key not in defaults:
            continue
        ours = _jsonable(c.get(key, defaults[key]))
        theirs = _jsonable(options.get(key, defaults[key]))
        if isinstance(ours, dict) and isinstance(theirs, dict):
            ignored = _RESUME_LOSS_KEYS if key == 'loss_kwargs' else ()
            diffs += [f'{key}.{sub}' for sub in sorted(set(ours) | set(theirs))
                      if sub not in ignored and ours.get(sub) != theirs.get(sub)]
        elif ours != theirs:
            diffs.append(key)
    return diffs

def _resolve_resume(c, opts, desc):
    """Fill in the resume settings: which pickle, and whether its training state continues the run exactly."""
    resume_pkl = opts.resume
    if resume_pkl == 'latest':
        found = snapshot.find_latest_snapshot(opts.outdir, desc)
        if found is None:
            print(f'--resume=latest: no snapshot of "{desc}" under {opts.outdir}; starting from scratch.')
            return
        resume_pkl = found[0]
        print(f'--resume=latest: {resume_pkl}')
    elif not dnnlib.util.is_url(resume_pkl, allow_file_urls=True) and not os.path.isfile(resume_pkl):
        raise click.ClickException(f'--resume: {resume_pkl}: no such file')

    state_pt = None
    if not dnnlib.util.is_url(resume_pkl, allow_file_urls=True):
        state_pt = snapshot.state_path_for(resume_pkl)
        if state_pt is not None and not os.path.isfile(state_pt):
            state_pt = None
    if opts.resume_mode == 'full' and state_pt is None:
        raise click.ClickException(f'--resume-mode=full: no training-state-KKKKKK.pt next to {resume_pkl}')

    options = None
    if state_pt is not None and opts.resume_mode != 'networks':
        try:
            options = snapshot.read_state_options(state_pt)
        except ValueError as err:
            raise click.ClickException(f'--resume: {err}')
        diffs = _setup_differences(c, options)
        if diffs and opts.resume_mode == 'auto':
            print(f'Not restoring the training state of {resume_pkl}: the training setup differs in '
                  f'{", ".join(diffs)}. Resuming the networks only (--resume-mode=full would force it).')
            options = None

    c.resume_pkl = resume_pkl
    if options is None:
        # Networks only, as the original: schedules restart and the ramps are skipped.
        c.ada_kimg = 100
        c.ema_rampup = None
        if not opts.resume_blur:
            c.loss_kwargs.blur_init_sigma = 0
            c.loss_kwargs.gpc_reg_fade_kimg = 0
    else:
        # Full state: continue exactly, with the resume-dependent settings of the run being continued.
        c.resume_state = state_pt
        defaults = _loop_defaults()
        for key in _RESUME_LOOP_KEYS:
            if options.get(key, defaults[key]) != defaults[key]:
                c[key] = options[key]
        for key in _RESUME_LOSS_KEYS:
            c.loss_kwargs[key] = options['loss_kwargs'][key]

def build_config(opts):
    """Turn the command-line options into the training-loop config; returns (c, desc). Raises click errors."""
    opts = dnnlib.EasyDict(opts)
    if not opts.cond:
        raise click.ClickException('--cond=False is not supported: EG3D needs the 25-float camera labels of '
                                   'dataset.json to render and to condition the discriminator')

    c = dnnlib.EasyDict()
    c.G_kwargs = dnnlib.EasyDict(class_name='training.triplane.TriPlaneGenerator', z_dim=512, w_dim=512,
                                 mapping_kwargs=dnnlib.EasyDict())
    c.D_kwargs = dnnlib.EasyDict(class_name='training.dual_discriminator.DualDiscriminator',
                                 block_kwargs=dnnlib.EasyDict(), mapping_kwargs=dnnlib.EasyDict(),
                                 epilogue_kwargs=dnnlib.EasyDict())
    c.G_opt_kwargs = dnnlib.EasyDict(class_name='torch.optim.Adam', betas=[0, 0.99], eps=1e-8)
    c.D_opt_kwargs = dnnlib.EasyDict(class_name='torch.optim.Adam', betas=[0, 0.99], eps=1e-8)
    c.loss_kwargs = dnnlib.EasyDict(class_name='training.loss.StyleGAN2Loss')
    c.data_loader_kwargs = dnnlib.EasyDict(pin_memory=True, prefetch_factor=2)

    # Dataset.
    c.training_set_kwargs, dataset_name, label_shape = _init_dataset_kwargs(data=opts.data)
    if opts.cond and not c.training_set_kwargs.use_labels:
        raise click.ClickException('--cond=True requires labels specified in dataset.json')
    if label_shape != [25]:
        raise click.ClickException(f'--data: {opts.data}: labels have shape {label_shape}; EG3D needs 25 floats '
                                   f'per image (cam2world 4x4 + intrinsics 3x3)')
    c.training_set_kwargs.use_labels = opts.cond
    c.training_set_kwargs.xflip = opts.mirror

    # Hyperparameters and settings (assignment order = key order of training_options.json).
    c.num_gpus = opts.gpus
    c.batch_size = opts.batch
    c.batch_gpu = opts.batch_gpu or opts.batch // opts.gpus
    c.G_kwargs.channel_base = c.D_kwargs.channel_base = opts.cbase
    c.G_kwargs.channel_max = c.D_kwargs.channel_max = opts.cmax
    c.G_kwargs.mapping_kwargs.num_layers = opts.map_depth
    c.D_kwargs.block_kwargs.freeze_layers = opts.freezed
    c.D_kwargs.epilogue_kwargs.mbstd_group_size = opts.mbstd_group
    c.loss_kwargs.r1_gamma = opts.gamma
    c.G_opt_kwargs.lr = opts.glr if opts.glr is not None else 0.0025 # The original's 0.002 applies to 'stylegan2' only.
    c.D_opt_kwargs.lr = opts.dlr
    c.metrics = opts.metrics
    c.total_kimg = opts.kimg
    c.kimg_per_tick = opts.tick
    c.image_snapshot_ticks = c.network_snapshot_ticks = opts.snap
    c.random_seed = c.training_set_kwargs.random_seed = opts.seed
    c.data_loader_kwargs.num_workers = opts.workers

    # Sanity checks.
    if c.batch_size % c.num_gpus != 0:
        raise click.ClickException('--batch must be a multiple of --gpus')
    if c.batch_size % (c.num_gpus * c.batch_gpu) != 0:
        raise click.ClickException('--batch must be a multiple of --gpus times --batch-gpu')
    if c.batch_gpu < opts.mbstd_group:
        raise click.ClickException('--batch-gpu cannot be smaller than --mbstd-group')
    if c.batch_gpu % opts.mbstd_group != 0:
        # The original crashes in the minibatch-std layer on the first iteration.
        raise click.ClickException('--batch-gpu must be a multiple of --mbstd-group (the discriminator splits each '
                                   'batch into groups of that size)')
    if any(not metric_main.is_valid_metric(metric) for metric in c.metrics):
        raise click.ClickException('\n'.join(['--metrics can only contain the following values:'] +
                                             metric_main.list_valid_metrics()))
    for metric in c.metrics:
        if not metric_main.is_supported_metric(metric):
            # The original accepts these and crashes at the first snapshot.
            raise click.ClickException(f'--metrics: {metric} cannot be computed for an EG3D generator')
    resolution = c.training_set_kwargs.resolution
    if resolution not in presets.SR_MODULES:
        raise click.ClickException(f'--data: dataset resolution {resolution} is not supported; the super-resolution '
                                   f'modules need 128, 256 or 512 (add a new module for other resolutions)')
    if opts.gen_pose_cond and opts.gpc_reg_prob > 1:
        raise click.ClickException('--gpc_reg_prob must be in [0, 1] with --gen_pose_cond=True')
    if opts.disc_c_noise > 0 and c.batch_gpu < 2:
        raise click.ClickException('--disc_c_noise needs --batch-gpu >= 2 (the noise is scaled by the label std '
                                   'over each batch, undefined for one sample)')
    sr_module = opts.sr_module if opts.sr_module is not None else presets.SR_MODULES[resolution]
    try:
        dnnlib.util.get_obj_by_name(sr_module)
    except (ImportError, AttributeError, ValueError) as err:
        raise click.ClickException(f'--sr-module: cannot import {sr_module} ({err})')
    if not opts.dry_run:
        _check_process_count(c.num_gpus) # A dry run may be prepared on a machine without the GPUs.

    # Base configuration.
    c.ema_kimg = c.batch_size * 10 / 32
    c.G_kwargs.class_name = 'training.triplane.TriPlaneGenerator'
    c.D_kwargs.class_name = 'training.dual_discriminator.DualDiscriminator'
    c.G_kwargs.fused_modconv_default = 'inference_only' # Non-fused modulated convs while training.
    c.loss_kwargs.filter_mode = 'antialiased'
    c.D_kwargs.disc_c_noise = opts.disc_c_noise

    rendering_options = {
        'image_resolution': resolution,
        'disparity_space_sampling': False,
        'clamp_mode': 'softplus',
        'superresolution_module': sr_module,
        'c_gen_conditioning_zero': not opts.gen_pose_cond,
        'gpc_reg_prob': opts.gpc_reg_prob if opts.gen_pose_cond else None,
        'c_scale': opts.c_scale,
        'superresolution_noise_mode': opts.sr_noise_mode,
        'density_reg': opts.density_reg,
        'density_reg_p_dist': opts.density_reg_p_dist,
        'reg_type': opts.reg_type,
        'decoder_lr_mul': opts.decoder_lr_mul,
        'sr_antialias': True,
    }
    # Rendering config (rcfg): preset or JSON file, then the override flags.
    try:
        rendering_options.update(rendering_config.resolve_rendering_options(
            opts.cfg, overrides=rendering_config.overrides_from_opts(opts)))
    except rendering_config.RenderingConfigError as err:
        raise click.ClickException(str(err))

    c.G_kwargs.rendering_kwargs = rendering_options
    c.G_kwargs.num_fp16_res = 0
    c.loss_kwargs.blur_init_sigma = 10
    c.loss_kwargs.blur_fade_kimg = c.batch_size * opts.blur_fade_kimg / 32
    c.loss_kwargs.gpc_reg_prob = opts.gpc_reg_prob if opts.gen_pose_cond else None
    c.loss_kwargs.gpc_reg_fade_kimg = opts.gpc_reg_fade_kimg
    c.loss_kwargs.dual_discrimination = True
    c.loss_kwargs.neural_rendering_resolution_initial = opts.neural_rendering_resolution_initial
    c.loss_kwargs.neural_rendering_resolution_final = opts.neural_rendering_resolution_final
    c.loss_kwargs.neural_rendering_resolution_fade_kimg = opts.neural_rendering_resolution_fade_kimg
    c.G_kwargs.sr_num_fp16_res = opts.sr_num_fp16_res
    c.G_kwargs.sr_kwargs = dnnlib.EasyDict(channel_base=opts.cbase, channel_max=opts.cmax,
                                           fused_modconv_default='inference_only')
    c.loss_kwargs.style_mixing_prob = opts.style_mixing_prob
    if opts.density_reg > 0:
        c.G_reg_interval = opts.density_reg_every # Absent otherwise: G then trains in a single 'Gboth' phase.

    # Augmentation.
    if opts.aug != 'noaug':
        c.augment_kwargs = dnnlib.EasyDict(class_name='training.augment.AugmentPipe', xflip=1, rotate90=1, xint=1,
                                           scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1, lumaflip=1,
                                           hue=1, saturation=1)
        if opts.aug == 'ada':
            c.ada_target = opts.target
        if opts.aug == 'fixed':
            c.augment_p = opts.p

    # Description string (also what --resume=latest looks for).
    cfg_name = rendering_config.config_name(opts.cfg) # rcfg: a config file's stem.
    desc = f'{cfg_name:s}-{dataset_name:s}-gpus{c.num_gpus:d}-batch{c.batch_size:d}-gamma{c.loss_kwargs.r1_gamma:g}'
    if opts.desc is not None:
        desc += f'-{opts.desc}'

    # Performance-related toggles.
    c.G_kwargs.num_fp16_res = opts.g_num_fp16_res
    c.G_kwargs.conv_clamp = 256 if opts.g_num_fp16_res > 0 else None
    c.D_kwargs.num_fp16_res = opts.d_num_fp16_res
    c.D_kwargs.conv_clamp = 256 if opts.d_num_fp16_res > 0 else None

    # Resume (needs the complete network settings to decide whether a training state applies).
    if opts.resume is not None:
        _resolve_resume(c, opts, desc)

    if opts.nobench:
        c.cudnn_benchmark = False

    # This project's additions, recorded only when used.
    if opts.nan_limit != _NAN_LIMIT_DEFAULT:
        c.nan_limit = opts.nan_limit
    if opts.grid is not None:
        c.image_grid_size = opts.grid
    return c, desc

def _check_process_count(num_gpus):
    world = _torchrun_env()
    if world is not None:
        if num_gpus != world.world_size:
            raise click.ClickException(f'--gpus={num_gpus} must equal the number of torchrun processes '
                                       f'({world.world_size})')
    elif torch.cuda.is_available() and num_gpus > torch.cuda.device_count():
        raise click.ClickException(f'--gpus={num_gpus}: only {torch.cuda.device_count()} CUDA device(s) visible')

#----------------------------------------------------------------------------
# Processes.

def _torchrun_env():
    """Rank info when started by torchrun (or any env:// launcher), else None."""
    if not all(key in os.environ for key in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')):
        return None
    return dnnlib.EasyDict(rank=int(os.environ['RANK']), world_size=int(os.environ['WORLD_SIZE']),
                           local_rank=int(os.environ['LOCAL_RANK']),
                           local_world_size=int(os.environ.get('LOCAL_WORLD_SIZE', os.environ['WORLD_SIZE'])))

def _device_for(local_rank):
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device('cuda', local_rank)
    return torch.device('cpu')

def _backend():
    return 'nccl' if torch.cuda.is_available() and os.name != 'nt' else 'gloo' # No NCCL on Windows.

def _file_init_method(init_file):
    """init_method URL of a rendezvous file (Windows needs the drive path after three slashes)."""
    if os.name == 'nt':
        return 'file:///' + init_file.replace('\\', '/')
    return f'file://{init_file}'

def _train_process(rank, c, device, local_world_size):
    """Body of every training process (torch.distributed already initialised when num_gpus > 1)."""
    if device.type == 'cpu' and local_world_size > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world_size)) # Do not oversubscribe the cores.
    sync_device = device if c.num_gpus > 1 else None
    training_stats.init_multiprocessing(rank=rank, sync_device=sync_device)
    training_loop.training_loop(rank=rank, device=device, **c)

def subprocess_fn(rank, c, temp_dir):
    """Entry point of the processes of a single-node run (rank 0 in-process when --gpus=1)."""
    with dnnlib.util.Logger(file_name=os.path.join(c.run_dir, 'log.txt'), file_mode='a', should_flush=True):
        if c.num_gpus > 1:
            init_file = os.path.abspath(os.path.join(temp_dir, '.torch_distributed_init'))
            torch.distributed.init_process_group(backend=_backend(), init_method=_file_init_method(init_file),
                                                 rank=rank, world_size=c.num_gpus)
        try:
            _train_process(rank=rank, c=c, device=_device_for(rank), local_world_size=c.num_gpus)
        except training_loop.TrainingDiverged as err:
            if c.num_gpus == 1:
                raise click.ClickException(str(err))
            if rank == 0:
                print(f'Error: {err}', file=sys.stderr)
            sys.exit(1)
        finally:
            if torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()

def _next_run_dir(outdir, desc):
    prev_ids = []
    if os.path.isdir(outdir):
        for name in os.listdir(outdir):
            match = re.match(r'\d+', name)
            if match is not None and os.path.isdir(os.path.join(outdir, name)):
                prev_ids.append(int(match.group()))
    return os.path.join(outdir, f'{max(prev_ids, default=-1) + 1:05d}-{desc}')

def prepare_run(c, desc, outdir, dry_run):
    """Pick the run directory, print the summary and (unless dry_run) create it with training_options.json."""
    c.run_dir = _next_run_dir(outdir, desc)
    print()
    print('Training options:')
    print(json.dumps(c, indent=2))
    print()
    print(f'Output directory:    {c.run_dir}')
    print(f'Number of GPUs:      {c.num_gpus}')
    print(f'Batch size:          {c.batch_size} images')
    print(f'Training duration:   {c.total_kimg} kimg')
    print(f'Dataset path:        {c.training_set_kwargs.path}')
    print(f'Dataset size:        {c.training_set_kwargs.max_size} images')
    print(f'Dataset resolution:  {c.training_set_kwargs.resolution}')
    print(f'Dataset labels:      {c.training_set_kwargs.use_labels}')
    print(f'Dataset x-flips:     {c.training_set_kwargs.xflip}')
    print()
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

def launch_training(c, desc, outdir, dry_run):
    """Single node: run in-process (--gpus=1) or spawn one process per GPU."""
    if not prepare_run(c, desc, outdir, dry_run):
        return
    print('Launching processes...')
    with tempfile.TemporaryDirectory() as temp_dir:
        if c.num_gpus == 1:
            subprocess_fn(rank=0, c=c, temp_dir=temp_dir)
        else:
            try:
                torch.multiprocessing.spawn(fn=subprocess_fn, args=(c, temp_dir), nprocs=c.num_gpus)
            except torch.multiprocessing.ProcessExitedException as err:
                raise click.ClickException(f'training process {err.error_index} exited with code {err.exit_code}; '
                                           f'see {os.path.join(c.run_dir, "log.txt")}')

def launch_torchrun(opts, world):
    """Multi-node (torchrun): rank 0 prepares the run and shares the config; every process trains."""
    device = _device_for(world.local_rank)
    torch.distributed.init_process_group(backend=_backend(), init_method='env://')
    try:
        payload = [dict()] # Empty: stop (dry run or a failed check on rank 0).
        if world.rank == 0:
            try:
                c, desc = build_config(opts)
                if prepare_run(c, desc, opts.outdir, opts.dry_run):
                    payload[0]['c'] = c
            except BaseException:
                torch.distributed.broadcast_object_list(payload, src=0) # Release the other ranks, then fail.
                raise
        torch.distributed.broadcast_object_list(payload, src=0)
        if 'c' not in payload[0]:
            return
        c = payload[0]['c']
        os.makedirs(c.run_dir, exist_ok=True) # Other nodes may not share rank 0's file system.
        with dnnlib.util.Logger(file_name=os.path.join(c.run_dir, 'log.txt'), file_mode='a', should_flush=True):
            try:
                _train_process(rank=world.rank, c=c, device=device, local_world_size=world.local_world_size)
            except training_loop.TrainingDiverged as err:
                raise click.ClickException(str(err))
    finally:
        torch.distributed.destroy_process_group()

#----------------------------------------------------------------------------

@click.command(epilog=rendering_config.TRAIN_HELP_EPILOG) # rcfg: the new-dataset workflow in --help.
# Required.
@click.option('--outdir', help='Parent directory of the run directories', metavar='DIR', required=True)
@click.option('--cfg', help='Rendering preset or JSON rendering config file', metavar='[ffhq|afhq|shapenet|FILE.json]', type=rendering_config.ConfigArg(), required=True)
@click.option('--data', help='Dataset zip or folder', metavar='[ZIP|DIR]', type=str, required=True)
@click.option('--gpus', help='Number of GPUs (processes)', metavar='INT', type=click.IntRange(min=1), required=True)
@click.option('--batch', help='Total batch size over all GPUs', metavar='INT', type=click.IntRange(min=1), required=True)
@click.option('--gamma', help='R1 weight', metavar='FLOAT', type=click.FloatRange(min=0), required=True)
# Optional features.
@click.option('--cond', help='Use the dataset camera labels (must stay on for EG3D)', metavar='BOOL', type=bool, default=True, show_default=True)
@click.option('--mirror', help='Add x-flipped copies of the images (cameras unchanged)', metavar='BOOL', type=bool, default=False, show_default=True)
@click.option('--aug', help='Discriminator augmentation', type=click.Choice(['noaug', 'ada', 'fixed']), default='noaug', show_default=True)
@click.option('--resume', help='Network pickle to start from, or "latest": newest snapshot of this configuration under --outdir', metavar='[PATH|URL|latest]', type=str)
@click.option('--freezed', help='Number of leading D layers to freeze', metavar='INT', type=click.IntRange(min=0), default=0, show_default=True)
# Misc hyperparameters.
@click.option('--p', help='Augmentation probability with --aug=fixed', metavar='FLOAT', type=click.FloatRange(min=0, max=1), default=0.2, show_default=True)
@click.option('--target', help='ADA target with --aug=ada', metavar='FLOAT', type=click.FloatRange(min=0, max=1), default=0.6, show_default=True)
@click.option('--batch-gpu', help='Samples per forward pass and GPU  [default: batch/gpus]', metavar='INT', type=click.IntRange(min=1))
@click.option('--cbase', help='Channel base of G backbone, SR and D', metavar='INT', type=click.IntRange(min=1), default=32768, show_default=True)
@click.option('--cmax', help='Channel maximum of G backbone, SR and D', metavar='INT', type=click.IntRange(min=1), default=512, show_default=True)
@click.option('--glr', help='G Adam learning rate  [default: 0.0025]', metavar='FLOAT', type=click.FloatRange(min=0))
@click.option('--dlr', help='D Adam learning rate', metavar='FLOAT', type=click.FloatRange(min=0), default=0.002, show_default=True)
@click.option('--map-depth', help='Layers of the G mapping network', metavar='INT', type=click.IntRange(min=1), default=2, show_default=True)
@click.option('--mbstd-group', help='Group size of the D minibatch-std layer', metavar='INT', type=click.IntRange(min=1), default=4, show_default=True)
# Misc settings.
@click.option('--desc', help='Suffix of the run directory name', metavar='STR', type=str)
@click.option('--metrics', help='Metrics evaluated at each network snapshot', metavar='[NAME|A,B,C|none]', type=parse_comma_separated_list, default='fid50k_full', show_default=True)
@click.option('--kimg', help='Training length in thousands of real images (fractions allowed)', metavar='KIMG', type=PositiveNumber(), default=25000, show_default=True)
@click.option('--tick', help='Progress line every this many kimg (fractions allowed)', metavar='KIMG', type=PositiveNumber(), default=4, show_default=True)
@click.option('--snap', help='Ticks between image and network snapshots', metavar='TICKS', type=click.IntRange(min=1), default=50, show_default=True)
@click.option('--seed', help='Global random seed', metavar='INT', type=click.IntRange(min=0), default=0, show_default=True)
@click.option('--nobench', help='Turn cuDNN benchmark mode off', metavar='BOOL', type=bool, default=False, show_default=True)
@click.option('--workers', help='Data loader worker processes', metavar='INT', type=click.IntRange(min=1), default=3, show_default=True)
@click.option('-n', '--dry-run', help='Print the options and exit', is_flag=True)
# EG3D.
@click.option('--neural_rendering_resolution_initial', help='Neural rendering resolution at the start', metavar='INT', type=click.IntRange(min=1), default=64, show_default=True)
@click.option('--neural_rendering_resolution_final', help='Fade linearly to this neural rendering resolution', metavar='INT', type=click.IntRange(min=1), default=None)
@click.option('--neural_rendering_resolution_fade_kimg', help='Length of that fade (kimg)', metavar='INT', type=click.IntRange(min=0), default=1000, show_default=True)
@click.option('--blur_fade_kimg', help='Length of the D input blur fade (kimg at batch 32)', metavar='INT', type=click.IntRange(min=1), default=200, show_default=True)
@click.option('--gen_pose_cond', help='Condition the G mapping on the camera (GPC)', metavar='BOOL', type=bool, default=False, show_default=True)
@click.option('--c-scale', help='Multiplier of the camera label seen by the G mapping', metavar='FLOAT', type=click.FloatRange(min=0), default=1, show_default=True)
@click.option('--c-noise', help='Ignored (kept for command-line compatibility)', metavar='FLOAT', type=click.FloatRange(min=0), default=0, show_default=True)
@click.option('--gpc_reg_prob', help='Final camera-swapping probability with GPC', metavar='FLOAT', type=click.FloatRange(min=0), default=0.5, show_default=True)
@click.option('--gpc_reg_fade_kimg', help='Length of the swapping-probability fade (kimg)', metavar='INT', type=click.IntRange(min=0), default=1000, show_default=True)
@click.option('--disc_c_noise', help='Noise on the D camera label, relative to its batch std', metavar='FLOAT', type=click.FloatRange(min=0), default=0, show_default=True)
@click.option('--sr_noise_mode', help='Noise mode of the super-resolution layers', type=click.Choice(['random', 'none']), default='none', show_default=True)
@click.option('--resume_blur', help='Keep the blur fade and the GPC fade when resuming', metavar='BOOL', type=bool, default=False, show_default=True)
@click.option('--sr_num_fp16_res', help='fp16 layers of the super-resolution module', metavar='INT', type=click.IntRange(min=0), default=4, show_default=True)
@click.option('--g_num_fp16_res', help='fp16 resolutions of the G backbone', metavar='INT', type=click.IntRange(min=0), default=0, show_default=True)
@click.option('--d_num_fp16_res', help='fp16 resolutions of D', metavar='INT', type=click.IntRange(min=0), default=4, show_default=True)
@click.option('--sr_first_cutoff', help='Ignored (kept for command-line compatibility)', metavar='INT', type=click.IntRange(min=2), default=2, show_default=True)
@click.option('--sr_first_stopband', help='Ignored (kept for command-line compatibility)', metavar='FLOAT', type=click.FloatRange(min=2), default=2**2.1, show_default=True)
@click.option('--style_mixing_prob', help='Style-mixing probability', metavar='FLOAT', type=click.FloatRange(min=0, max=1), default=0, show_default=True)
@click.option('--sr-module', help='Dotted class name of the super-resolution module  [default: by resolution]', metavar='STR', type=str)
@click.option('--density_reg', help='Density regularization weight (0: off)', metavar='FLOAT', type=click.FloatRange(min=0), default=0.25, show_default=True)
@click.option('--density_reg_every', help='Interval of the lazy density regularization', metavar='FLOAT', type=click.FloatRange(min=1), default=4, show_default=True)
@click.option('--density_reg_p_dist', help='Perturbation std of the l1 density regularization', metavar='FLOAT', type=click.FloatRange(min=0), default=0.004, show_default=True)
@click.option('--reg_type', help='Density regularization variant', type=click.Choice(['l1', 'l1-alt', 'monotonic-detach', 'monotonic-fixed', 'total-variation']), default='l1', show_default=True)
@click.option('--decoder_lr_mul', help='Learning-rate multiplier of the tri-plane decoder', metavar='FLOAT', type=click.FloatRange(min=0), default=1, show_default=True)
# Additions of this project (their defaults keep the original behaviour).
@click.option('--resume-mode', help='auto: restore the full training state when the snapshot has one and the setup matches; full: always; networks: never (original behaviour)', type=click.Choice(['auto', 'full', 'networks']), default='auto', show_default=True)
@click.option('--nan-limit', help='Stop after this many consecutive iterations with non-finite losses or gradients (0: never)', metavar='INT', type=click.IntRange(min=0), default=_NAN_LIMIT_DEFAULT, show_default=True)
@click.option('--depth-resolution', help='Coarse samples per ray  [default: from --cfg]', metavar='INT', type=click.IntRange(min=2)) # rcfg: min 2 (was 1).
@click.option('--depth-resolution-importance', help='Importance samples per ray  [default: from --cfg]', metavar='INT', type=click.IntRange(min=0))
@rendering_config.override_options # rcfg: --ray-start, --ray-end, --box-warp, --white-back, --avg-camera-radius/-pivot.
@click.option('--grid', help='Size of the snapshot image grids  [default: from the resolution]', metavar='WxH', type=GridSize())
def main(**kwargs):
    """Train EG3D on a camera-labelled dataset (see the module docstring for examples)."""
    opts = dnnlib.EasyDict(kwargs)
    world = _torchrun_env()
    if world is not None:
        launch_torchrun(opts, world)
        return
    c, desc = build_config(opts)
    launch_training(c=c, desc=desc, outdir=opts.outdir, dry_run=opts.dry_run)

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()

#----------------------------------------------------------------------------
