"""Time the TriPlaneGenerator forward pass (inference, random weights) and report peak memory.

The generator is built with the exact constructor arguments of the released models' train.py configs
(tests/data/state_dicts/<cfg>_G_kwargs.json).

Examples:
    python benchmarks/bench_generator.py --cfg=shapenet --res=64 --device=cpu --batch=1
    python benchmarks/bench_generator.py --cfg=ffhq --res=128 --device=cuda --batch=4 --iters=20
    python benchmarks/bench_generator.py --cfg=shapenet --res=8 --device=cpu --cbase=1024 --cmax=16 --iters=1 --warmup=0
"""

import json
import math
import os
import resource
import sys
import time

import click
import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import cli  # noqa: E402
import dnnlib  # noqa: E402
from training import cameras, presets  # noqa: E402

KWARGS_DIR = os.path.join(REPO_ROOT, 'tests', 'data', 'state_dicts')


def build_generator(cfg, device, cbase=None, cmax=None, samples=None):
    """G of a released config in eval mode; cbase/cmax reduce the backbone and SR channels, samples = (coarse, fine)."""
    path = os.path.join(KWARGS_DIR, f'{cfg}_G_kwargs.json')
    with open(path) as f:
        kwargs = json.load(f)
    for key in ('mapping_kwargs', 'sr_kwargs'):
        kwargs[key] = dnnlib.EasyDict(kwargs[key])
    for key, value in dict(channel_base=cbase, channel_max=cmax).items():
        if value is not None:
            kwargs[key] = kwargs['sr_kwargs'][key] = value
    if samples is not None:
        kwargs['rendering_kwargs'].update(depth_resolution=samples[0], depth_resolution_importance=samples[1])
    G = dnnlib.util.construct_class_by_name(class_name='training.triplane.TriPlaneGenerator', **kwargs)
    return G.eval().requires_grad_(False).to(device)


def frontal_cameras(cfg, batch, device):
    """Labels [batch, 25] of the preset's frontal camera; the exact poses do not affect timing."""
    pivot, radius = cameras.camera_sphere(presets.rendering_preset(cfg), device=device)
    intrinsics = cameras.intrinsics_matrix(cameras.focal_length(cfg), device=device)
    return cameras.look_at_label(math.pi / 2, math.pi / 2, pivot, radius, intrinsics).repeat(batch, 1)


@click.command()
@click.option('--cfg', type=click.Choice(['ffhq', 'afhq', 'shapenet']), default='ffhq', show_default=True)
@click.option('--res', 'neural_res', type=click.IntRange(min=8), default=64, show_default=True,
    help='Neural rendering resolution.')
@click.option('--device', type=cli.DEVICE, default=None, help='Torch device  [default: cuda if available]')
@click.option('--batch', type=click.IntRange(min=1), default=1, show_default=True)
@click.option('--iters', type=click.IntRange(min=1), default=5, show_default=True, help='Timed iterations.')
@click.option('--warmup', type=click.IntRange(min=0), default=1, show_default=True)
@click.option('--noise-mode', type=click.Choice(['const', 'random', 'none']), default='const', show_default=True)
@click.option('--cbase', type=click.IntRange(min=1), help='Channel base of backbone and SR  [default: released]')
@click.option('--cmax', type=click.IntRange(min=1), help='Channel maximum of backbone and SR  [default: released]')
def main(cfg, neural_res, device, batch, iters, warmup, noise_mode, cbase, cmax):
    """Print G forward time per image and peak memory."""
    device = cli.parse_device(device)
    torch.manual_seed(0)
    G = build_generator(cfg, device, cbase=cbase, cmax=cmax)
    z = torch.randn(batch, G.z_dim, device=device)
    c = frontal_cameras(cfg, batch, device)

    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize(device)

    def run():
        return G(z, c, noise_mode=noise_mode, neural_rendering_resolution=neural_res)

    with torch.no_grad():
        for _ in range(warmup):
            run()
        sync()
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        for _ in range(iters):
            out = run()
        sync()
        elapsed = time.perf_counter() - start

    ms_per_image = elapsed / (iters * batch) * 1000
    print(f'cfg={cfg} device={device.type} batch={batch} neural_res={neural_res} '
        f'image={tuple(out["image"].shape[1:])} threads={torch.get_num_threads()}')
    print(f'G forward: {ms_per_image:.1f} ms/image ({iters} iterations)')
    if device.type == 'cuda':
        print(f'peak CUDA memory allocated: {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB')
    else:
        print(f'peak process RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB')


if __name__ == '__main__':
    main()
