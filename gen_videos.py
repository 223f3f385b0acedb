"""Render latent-interpolation videos with an orbiting camera from a trained EG3D network.

Examples:

\b
# A 2x2 grid of looping interpolations through 4 keyframes per cell.
python gen_videos.py --outdir=out --trunc=0.7 --seeds=0-15 --grid=2x2 --network=ffhq512-128.pkl

\b
# Depth video of a single seed.
python gen_videos.py --outdir=out --seeds=0 --interpolate=false --image_mode=image_depth --network=afhqcats512-128.pkl
"""

import os

import click
import imageio
import numpy as np
import scipy.interpolate
import torch
from tqdm import tqdm

import dnnlib
from camera_utils import LookAtPoseSampler
from gen_samples import camera_label, camera_orbit, load_generator, pick_device, to_uint8
from training import presets, shape_extraction
from training.cli_utils import PAIR, SEED_RANGE

# ----------------------------------------------------------------------------


def layout_grid(img, grid_w, grid_h):
    """[grid_h * grid_w, C, H, W] in [-1, 1] (row-major cells) -> [grid_h * H, grid_w * W, C] uint8 array."""
    batch_size, channels, img_h, img_w = img.shape
    assert batch_size == grid_w * grid_h
    img = to_uint8(img)                                               # [B, H, W, C]
    img = img.reshape(grid_h, grid_w, img_h, img_w, channels).permute(0, 2, 1, 3, 4)
    return img.reshape(grid_h * img_h, grid_w * img_w, channels).cpu().numpy()


def focal_length(cfg):
    return presets.FOCAL_SHAPENET if cfg == 'Shapenet' else presets.FOCAL_FFHQ


def orbit_camera(frame_idx, num_frames, pivot, radius, device):
    """The official video trajectory: a yaw swing of +-0.35 and a pitch swing of +-0.25 over one loop."""
    phase = 2 * 3.14 * frame_idx / num_frames
    return LookAtPoseSampler.sample(3.14 / 2 + 0.35 * np.sin(phase), 3.14 / 2 - 0.05 + 0.25 * np.cos(phase), pivot,
                                    radius=radius, device=device)


def keyframe_seeds(seeds, num_keyframes, grid_w, grid_h, shuffle_seed=None):
    """K * w * h seeds: the given list repeated cyclically, optionally shuffled."""
    if num_keyframes is None:
        if len(seeds) % (grid_w * grid_h) != 0:
            raise ValueError(f'the number of seeds ({len(seeds)}) must be divisible by the grid size '
                             f'{grid_w}x{grid_h}, or give --num-keyframes')
        num_keyframes = len(seeds) // (grid_w * grid_h)
    all_seeds = np.array([seeds[i % len(seeds)] for i in range(num_keyframes * grid_w * grid_h)], dtype=np.int64)
    if shuffle_seed is not None:
        np.random.RandomState(seed=shuffle_seed).shuffle(all_seeds)
    return all_seeds, num_keyframes


def make_interpolators(ws, kind='cubic', wraps=2):
    """ws [h, w, K, num_ws, w_dim] -> per-cell interpolators t -> w(t), periodic with period K.

    The keyframes are tiled 2 * wraps + 1 times on knots -wraps*K ... (wraps+1)*K - 1 so the spline is smooth
    across the loop point for t in [0, K).
    """
    grid_h, grid_w, num_keyframes = ws.shape[:3]
    knots = np.arange(-num_keyframes * wraps, num_keyframes * (wraps + 1))
    return [[scipy.interpolate.interp1d(knots, np.tile(ws[yi, xi], [wraps * 2 + 1, 1, 1]), kind=kind, axis=0)
             for xi in range(grid_w)] for yi in range(grid_h)]


def extract_frame_shape(G, w, path, resolution, device):
    """Mesh of the frame's w with gen_videos' borders (0; 38/256 at the top of the second axis), level 10."""
    sample_fn = lambda coordinates, directions: G.sample_mixed(coordinates, directions, w, noise_mode='const')
    sigmas = shape_extraction.sample_density_grid(sample_fn, resolution, G.rendering_kwargs['box_warp'],
                                                  device=device)
    volume = shape_extraction.finish_volume(sigmas, pad=int(30 * resolution / 256), pad_value=0,
                                            pad_top=int(38 * resolution / 256))
    try:
        verts, faces = shape_extraction.extract_mesh(volume, level=10)
    except ValueError as err:
        raise click.ClickException(f'{path}: {err}')
    shape_extraction.write_ply(path, verts, faces)


def gen_interp_video(G, mp4, seeds, shuffle_seed=None, w_frames=60 * 4, kind='cubic', grid_dims=(1, 1),
                     num_keyframes=None, wraps=2, psi=1, truncation_cutoff=14, cfg='FFHQ', image_mode='image',
                     gen_shapes=False, shape_res=512, device=torch.device('cuda'), **video_kwargs):
    """Write one looping video of K * w_frames frames through the keyframe latents of each grid cell."""
    grid_w, grid_h = grid_dims
    all_seeds, num_keyframes = keyframe_seeds(seeds, num_keyframes, grid_w, grid_h, shuffle_seed)

    # All keyframe latents are mapped with the frontal camera (3.14, not pi, as in the original).
    pivot, radius = camera_orbit(G, device)
    f = focal_length(cfg)
    intrinsics = torch.tensor([[f, 0, 0.5], [0, f, 0.5], [0, 0, 1]], dtype=torch.float32, device=device)
    zs = torch.from_numpy(np.stack([np.random.RandomState(seed).randn(G.z_dim) for seed in all_seeds])).to(device)
    c = camera_label(LookAtPoseSampler.sample(3.14 / 2, 3.14 / 2, pivot, radius=radius, device=device), intrinsics)
    with torch.no_grad():
        ws = G.mapping(z=zs, c=c.repeat(len(zs), 1), truncation_psi=psi, truncation_cutoff=truncation_cutoff)
    ws = ws.reshape(grid_h, grid_w, num_keyframes, *ws.shape[1:]).cpu().numpy()
    grid = make_interpolators(ws, kind=kind, wraps=wraps)

    shape_dir = None
    if gen_shapes:
        # Relative to the working directory, not the video's folder (original location, kept for scripts).
        second = all_seeds[1] if len(all_seeds) > 1 else all_seeds[0]  # the original needed >= 2 seeds: fixed
        shape_dir = f'interpolation_{all_seeds[0]}_{second}/'
        os.makedirs(shape_dir, exist_ok=True)

    num_frames = num_keyframes * w_frames
    all_poses = []
    with dnnlib.util.atomic_output(mp4) as tmp_path:
        video_out = imageio.get_writer(tmp_path, mode='I', fps=60, codec='libx264', **video_kwargs)
        try:
            for frame_idx in tqdm(range(num_frames), desc='frames'):
                imgs = []
                for yi in range(grid_h):
                    for xi in range(grid_w):
                        cam2world = orbit_camera(frame_idx, num_frames, pivot, radius, device)
                        all_poses.append(cam2world.squeeze(0).cpu().numpy())
                        # float64, as in the original: the super-resolution affines then run in double.
                        w = torch.from_numpy(grid[yi][xi](frame_idx / w_frames)).to(device)
                        with torch.no_grad():
                            img = G.synthesis(ws=w.unsqueeze(0), c=camera_label(cam2world, intrinsics),
                                              noise_mode='const')[image_mode][0]
                        if image_mode == 'image_depth':
                            img = -img  # near = bright
                            img = (img - img.min()) / (img.max() - img.min()) * 2 - 1
                        imgs.append(img)
                        if shape_dir is not None:
                            print(f'Generating shape for frame {frame_idx} / {num_frames} ...')
                            shape_path = os.path.join(shape_dir, f'{frame_idx:04d}_shape.ply')
                            extract_frame_shape(G, w.unsqueeze(0), shape_path, shape_res, device)
                video_out.append_data(layout_grid(torch.stack(imgs), grid_w=grid_w, grid_h=grid_h))
        finally:
            video_out.close()

    if gen_shapes:
        with dnnlib.util.atomic_output(mp4.replace('.mp4', '_trajectory.npy')) as tmp_path:
            with open(tmp_path, 'wb') as fp:
                np.save(fp, np.stack(all_poses))

# ----------------------------------------------------------------------------


@click.command()
@click.option('--network', 'network_pkl', help='Network pickle filename or URL', required=True)
@click.option('--seeds', type=SEED_RANGE, help="List of keyframe seeds (e.g., '0,1,4-6')", required=True)
@click.option('--shuffle-seed', type=int, help='Shuffle the keyframe seeds with this random seed', default=None)
@click.option('--grid', type=PAIR, help='Grid width x height (e.g. 4x3)', default=(1, 1), show_default=True)
@click.option('--num-keyframes', type=int, help='Number of keyframes (default: seeds / grid cells)', default=None)
@click.option('--w-frames', type=click.IntRange(min=1), help='Frames between keyframes', default=120,
              show_default=True)
@click.option('--trunc', 'truncation_psi', type=float, help='Truncation psi', default=1, show_default=True)
@click.option('--trunc-cutoff', 'truncation_cutoff', type=int, help='Truncation cutoff', default=14,
              show_default=True)
@click.option('--outdir', help='Output directory', type=str, required=True, metavar='DIR')
@click.option('--reload_modules', help='Accepted and ignored, as in the original', type=bool, metavar='BOOL',
              default=False, show_default=True)
@click.option('--cfg', help='Config (picks the focal length)', type=click.Choice(['FFHQ', 'AFHQ', 'Shapenet']),
              default='FFHQ', show_default=True)
@click.option('--image_mode', help='Generator output to film',
              type=click.Choice(['image', 'image_depth', 'image_raw']), default='image', show_default=True)
@click.option('--sample_mult', 'sampling_multiplier', type=float, help='Multiplier for the depth samples per ray',
              default=2, show_default=True)
@click.option('--nrr', type=int, help='Neural rendering resolution override', default=None)
@click.option('--shapes', type=bool, help='Also extract a mesh per frame (interpolate mode only)', default=False,
              show_default=True, metavar='BOOL')
@click.option('--shape-res', type=click.IntRange(min=2), help='Voxel grid side for --shapes', default=512,
              show_default=True)
@click.option('--interpolate', type=bool, help='One video through all seeds (else one video per seed)',
              default=True, show_default=True, metavar='BOOL')
@click.option('--seed-noise', help='Seed torch (ray jitter) so videos are reproducible; False keeps the '
              'original\'s unseeded behaviour', type=bool, metavar='BOOL', default=True, show_default=True)
@click.option('--device', help='Torch device (default: cuda if available, else cpu)', type=str, default=None)
def generate_videos(network_pkl, seeds, shuffle_seed, grid, num_keyframes, w_frames, truncation_psi,
                    truncation_cutoff, outdir, reload_modules, cfg, image_mode, sampling_multiplier, nrr, shapes,
                    shape_res, interpolate, seed_noise, device):
    """Render a latent interpolation video of a pretrained EG3D network.

    Writes <outdir>/interpolation.mp4 (or <outdir>/<SEED>.mp4 per seed with --interpolate=false).
    """
    del reload_modules
    device = pick_device(device)
    G = load_generator(network_pkl, device)
    os.makedirs(outdir, exist_ok=True)

    G.rendering_kwargs['depth_resolution'] = int(G.rendering_kwargs['depth_resolution'] * sampling_multiplier)
    G.rendering_kwargs['depth_resolution_importance'] = int(
        G.rendering_kwargs['depth_resolution_importance'] * sampling_multiplier)
    if nrr is not None:
        G.neural_rendering_resolution = nrr

    if truncation_cutoff == 0:
        truncation_psi = 1.0  # nothing is truncated anyway
    if truncation_psi == 1.0:
        truncation_cutoff = 14  # the cutoff does not matter without truncation

    common = dict(G=G, bitrate='10M', grid_dims=grid, num_keyframes=num_keyframes, w_frames=w_frames,
                  shuffle_seed=shuffle_seed, psi=truncation_psi, truncation_cutoff=truncation_cutoff, cfg=cfg,
                  image_mode=image_mode, device=device)
    jobs = [(os.path.join(outdir, 'interpolation.mp4'), seeds, shapes)] if interpolate else \
        [(os.path.join(outdir, f'{seed}.mp4'), [seed], False) for seed in seeds]
    for mp4, video_seeds, gen_shapes in jobs:
        try:
            keyframe_seeds(video_seeds, num_keyframes, *grid)
        except ValueError as err:
            raise click.ClickException(f'{mp4}: {err}')
        if seed_noise:
            torch.manual_seed(video_seeds[0])
        gen_interp_video(mp4=mp4, seeds=video_seeds, gen_shapes=gen_shapes, shape_res=shape_res, **common)


if __name__ == '__main__':
    generate_videos()
