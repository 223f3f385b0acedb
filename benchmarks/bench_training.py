"""Training throughput of one process: kimg/s, s/kimg and peak memory per GPU for a train.py configuration.

Builds G, D, the loss and the phases exactly as training does (train.py's config derivation, the training
loop's phase setup and phase runner), feeds synthetic real images, and times whole iterations, including the
lazy regularization phases in their proper proportion. Measures one rank with batch/gpus images per iteration;
the multi-GPU figure assumes the gradient all-reduce is negligible. Schedules are those of the start of
training (t = 0: D input blur on, initial neural rendering resolution via --nrr).

Examples:

\b
# Default FFHQ setting of the paper (8 GPUs, batch 32 -> 4 per GPU), on this machine's first GPU:
python benchmarks/bench_training.py --cfg=ffhq --gpus=8 --batch=32

\b
# Tiny CPU configuration:
python benchmarks/bench_training.py --cfg=shapenet --gpus=1 --batch=2 --mbstd-group=2 --cbase=1024 --cmax=32 \\
    --nrr=16 --depth-resolution=4 --depth-resolution-importance=4 --iters=4 --warmup=1
"""

import contextlib
import copy
import json
import os
import resource
import sys
import tempfile
import time

import click
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cli  # noqa: E402
import dnnlib  # noqa: E402
import train  # noqa: E402
from torch_utils.ops import conv2d_gradfix, grid_sample_gradfix  # noqa: E402
from training import cameras, presets  # noqa: E402
from training import phases as training_phases  # noqa: E402

RESOLUTIONS = dict(ffhq=512, afhq=512, shapenet=128)

#----------------------------------------------------------------------------

def make_synthetic_dataset(path, cfg, resolution, num_images=8, seed=0):
    """Random images with cameras around the preset's pivot (only the labels matter for timing)."""
    import PIL.Image
    rnd = np.random.RandomState(seed)
    pivot, radius = cameras.camera_sphere(presets.rendering_preset(cfg))
    intrinsics = cameras.intrinsics_matrix(cameras.focal_length(cfg))
    labels = []
    for idx in range(num_images):
        name = f'{idx:05d}.png'
        PIL.Image.fromarray((rnd.rand(resolution, resolution, 3) * 255).astype(np.uint8)).save(os.path.join(path, name))
        yaw, pitch = np.pi / 2 + rnd.uniform(-0.5, 0.5), np.pi / 2 + rnd.uniform(-0.2, 0.2)
        labels.append([name, cameras.look_at_label(yaw, pitch, pivot, radius, intrinsics)[0].tolist()])
    with open(os.path.join(path, 'dataset.json'), 'w') as f:
        json.dump(dict(labels=labels), f)

def _no_context(_batch_idx):
    return contextlib.nullcontext()

def _peak_memory_gb(device):
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2**30, torch.cuda.max_memory_reserved(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, None # ru_maxrss is in KiB on Linux.

def benchmark(c, device, iters, warmup, prepare=None, every_phase=False, around_iteration=None):
    """Time `iters` iterations after `warmup`; returns a dict of results.

    prepare(G, D) -> G runs before the phases are set up (speed modes, profiler labels); every_phase runs each
    phase in every iteration (lazy intervals 1); around_iteration(batch_idx) returns a context manager that wraps
    one iteration's phases (a profiler).
    """
    torch.backends.cudnn.benchmark = c.get('cudnn_benchmark', True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    conv2d_gradfix.enabled = True
    grid_sample_gradfix.enabled = False
    torch.manual_seed(0)
    np.random.seed(0)

    training_set = dnnlib.util.construct_class_by_name(**c.training_set_kwargs)
    common_kwargs = dict(c_dim=training_set.label_dim, img_resolution=training_set.resolution,
                         img_channels=training_set.num_channels)
    G = dnnlib.util.construct_class_by_name(**c.G_kwargs, **common_kwargs).train().requires_grad_(False).to(device)
    G.register_buffer('dataset_label_std', torch.tensor(training_set.get_label_std()).to(device))
    D = dnnlib.util.construct_class_by_name(**c.D_kwargs, **common_kwargs).train().requires_grad_(False).to(device)
    G_ema = copy.deepcopy(G).eval()
    augment_pipe = None
    if c.get('augment_kwargs') is not None and (c.get('augment_p', 0) > 0 or c.get('ada_target') is not None):
        augment_pipe = dnnlib.util.construct_class_by_name(**c.augment_kwargs).train().requires_grad_(False).to(device)
        augment_pipe.p.copy_(torch.as_tensor(c.get('augment_p', 0)))
    if prepare is not None:
        G = prepare(G, D)
    loss = dnnlib.util.construct_class_by_name(device=device, G=G, D=D, augment_pipe=augment_pipe, **c.loss_kwargs)
    phases, _optimizers = training_phases.setup_phases(G=G, D=D, G_opt_kwargs=c.G_opt_kwargs, D_opt_kwargs=c.D_opt_kwargs,
                                                     G_reg_interval=c.get('G_reg_interval'),
                                                     D_reg_interval=c.get('D_reg_interval', 16))
    if every_phase:
        for phase in phases:
            phase.interval = 1

    per_gpu = c.batch_size // c.num_gpus
    res = training_set.resolution
    timings = []
    for batch_idx in range(warmup + iters):
        real = torch.randint(0, 256, [per_gpu, 3, res, res], device=device).to(torch.float32) / 127.5 - 1
        real_c = torch.from_numpy(np.stack([training_set.get_label(i % len(training_set)) for i in range(per_gpu)]))
        all_gen_z, all_gen_c = training_phases.draw_generator_inputs(training_set, num_phases=len(phases),
                                                                   batch_size=c.batch_size, batch_gpu=c.batch_gpu,
                                                                   z_dim=G.z_dim, device=device)
        if batch_idx == warmup and device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with (around_iteration or _no_context)(batch_idx):
            training_phases.run_phases(phases, loss, real.split(c.batch_gpu), real_c.to(device).split(c.batch_gpu),
                                       all_gen_z, all_gen_c, batch_idx=batch_idx, cur_nimg=0, num_gpus=1, device=device)
        training_phases.update_ema(G_ema, G, cur_nimg=batch_idx * c.batch_size, batch_size=c.batch_size,
                                 ema_kimg=c.ema_kimg, ema_rampup=c.get('ema_rampup', 0.05))
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        if batch_idx >= warmup:
            timings.append(time.perf_counter() - start)

    # batch_idx runs from 0, so the lazy phases occur in their long-run proportion over whole intervals.
    sec_per_iter = float(np.mean(timings))
    kimg_per_sec = c.batch_size / sec_per_iter / 1000 # All GPUs, assuming perfect scaling.
    peak_gb, reserved_gb = _peak_memory_gb(device)
    return dict(
        device=str(torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'),
        batch=c.batch_size, gpus=c.num_gpus, batch_gpu=c.batch_gpu, iters=iters,
        phases=[f'{p.name}/{p.interval:g}' for p in phases],
        sec_per_iter=sec_per_iter, kimg_per_sec=kimg_per_sec, sec_per_kimg=1 / kimg_per_sec,
        peak_mem_gb_per_gpu=peak_gb, peak_reserved_gb_per_gpu=reserved_gb,
        params_G=sum(p.numel() for p in G.parameters()), params_D=sum(p.numel() for p in D.parameters()),
    )

#----------------------------------------------------------------------------

@click.command(context_settings=dict(ignore_unknown_options=True))
@click.option('--cfg', type=click.Choice(list(RESOLUTIONS)), default='ffhq', show_default=True)
@click.option('--data', help='Dataset (default: synthetic at the cfg resolution)', type=cli.PATH)
@click.option('--gpus', help='GPUs of the run being modelled (sets the per-GPU batch)', type=click.IntRange(min=1), default=8, show_default=True)
@click.option('--batch', help='Total batch size', type=click.IntRange(min=1), default=32, show_default=True)
@click.option('--nrr', help='Neural rendering resolution', type=click.IntRange(min=1), default=64, show_default=True)
@click.option('--iters', help='Timed iterations (use a multiple of 16 to weight the lazy phases exactly)', type=click.IntRange(min=1), default=32, show_default=True)
@click.option('--warmup', help='Untimed iterations first', type=click.IntRange(min=0), default=4, show_default=True)
@click.option('--device', help='Torch device  [default: cuda if available]', type=cli.DEVICE, default=None)
@click.option('--out', help='Also write the results to this JSON file', type=cli.PATH)
@click.argument('train_args', nargs=-1, type=click.UNPROCESSED)
def main(cfg, data, gpus, batch, nrr, iters, warmup, device, out, train_args):
    """Time training iterations; extra arguments are passed to train.py's option parser (e.g. --gamma=1 --aug=ada)."""
    device = cli.parse_device(device)
    with tempfile.TemporaryDirectory() as tmp:
        if data is None:
            data = os.path.join(tmp, f'synthetic{RESOLUTIONS[cfg]}')
            os.makedirs(data)
            make_synthetic_dataset(data, cfg, RESOLUTIONS[cfg])
        args = [f'--outdir={tmp}', f'--cfg={cfg}', f'--data={data}', f'--gpus={gpus}', f'--batch={batch}',
                f'--neural_rendering_resolution_initial={nrr}', '--dry-run', '--metrics=none']
        if not any(arg.startswith('--gamma') for arg in train_args):
            args.append('--gamma=1')
        c, desc = train.config_from_args(args + list(train_args))
        results = dict(cfg=desc, **benchmark(c, device, iters=iters, warmup=warmup))
    print(json.dumps(results, indent=2))
    print(f'{results["kimg_per_sec"]:.4f} kimg/s  {results["sec_per_kimg"]:.1f} s/kimg  '
          f'peak {results["peak_mem_gb_per_gpu"]:.2f} GB per GPU ({results["device"]})')
    if out is not None:
        with open(out, 'w') as f:
            json.dump(results, f, indent=2)

if __name__ == '__main__':
    main()

#----------------------------------------------------------------------------
