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

import cli
import dnnlib
from inference import generation, shape_extraction
from torch_utils import misc
from training import cameras

# ----------------------------------------------------------------------------
# Keyframes and interpolation.


def keyframe_seeds(seeds, num_keyframes, grid_w, grid_h, shuffle_seed=None):
    """K * w * h seeds: the given list repeated cyclically, optionally shuffled. Returns (seeds, K)."""
    num_cells = grid_w * grid_h
    if num_keyframes is None:
        if len(seeds) % num_cells != 0:
            raise ValueError(f'the number of seeds ({len(seeds)}) is not divisible by the number of grid cells '
                             f'({grid_w}x{grid_h}); give a multiple of {num_cells} seeds or --num-keyframes')
        num_keyframes = len(seeds) // num_cells
    all_seeds = np.array([seeds[i % len(seeds)] for i in range(num_keyframes * num_cells)], dtype=np.int64)
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


def map_keyframes(G, all_seeds, label, grid_w, grid_h, num_keyframes, psi, truncation_cutoff):
    """ws of every keyframe seed, mapped with one camera label -> float32 array [h, w, K, num_ws, w_dim]."""
    device = label.device
    zs = torch.from_numpy(np.stack([np.random.RandomState(seed).randn(G.z_dim) for seed in all_seeds])).to(device)
    with torch.no_grad():
        ws = G.mapping(z=zs, c=label.repeat(len(zs), 1), truncation_psi=psi, truncation_cutoff=truncation_cutoff)
    return ws.reshape(grid_h, grid_w, num_keyframes, *ws.shape[1:]).cpu().numpy()

# ----------------------------------------------------------------------------
# Frames.


def render_cell(G, w, label, image_mode):
    """One cell of a frame, [C, H, W] in [-1, 1]; depth is negated (near = bright) and min-max normalised."""
    with torch.no_grad():
        img = G.synthesis(ws=w.unsqueeze(0), c=label, noise_mode='const')[image_mode][0]
    if image_mode == 'image_depth':
        img = -img
        img = (img - img.min()) / (img.max() - img.min()) * 2 - 1
    return img


def layout_grid(img, grid_w, grid_h):
    """[grid_h * grid_w, C, H, W] in [-1, 1] (row-major cells) -> [grid_h * H, grid_w * W, C] uint8 array."""
    batch_size, channels, img_h, img_w = img.shape
    assert batch_size == grid_w * grid_h
    img = misc.to_uint8(img)                                    # [B, H, W, C]
    img = img.reshape(grid_h, grid_w, img_h, img_w, channels).permute(0, 2, 1, 3, 4)
    return img.reshape(grid_h * img_h, grid_w * img_w, channels).cpu().numpy()

# ----------------------------------------------------------------------------
# Shapes.


def shape_folder(all_seeds):
    """Folder of the per-frame meshes, relative to the working directory (where the released script puts them)."""
    second = all_seeds[1] if len(all_seeds) > 1 else all_seeds[0]
    return f'interpolation_{all_seeds[0]}_{second}'


def shape_file_name(frame_idx):
    return f'{frame_idx:04d}_shape.ply'


def trajectory_path(mp4):
    return os.path.splitext(mp4)[0] + '_trajectory.npy'


def extract_frame_shape(G, w, path, resolution, device):
    try:
        shape_extraction.save_frame_mesh(G, w, path, resolution, device)
    except ValueError as err:
        raise click.ClickException(f'{path}: {err}')

# ----------------------------------------------------------------------------


def gen_interp_video(G, mp4, seeds, shuffle_seed=None, w_frames=60 * 4, kind='cubic', grid_dims=(1, 1),
                     num_keyframes=None, wraps=2, psi=1, truncation_cutoff=14, cfg=None, fov_deg=None,
                     image_mode='image',
                     gen_shapes=False, shape_res=512, device=torch.device('cuda'), **video_kwargs):
    """Write one looping video of K * w_frames frames through the keyframe latents of each grid cell.

    With gen_shapes, also a mesh per frame and cell in shape_folder() and the cameras next to the video.
    """
    grid_w, grid_h = grid_dims
    all_seeds, num_keyframes = keyframe_seeds(seeds, num_keyframes, grid_w, grid_h, shuffle_seed)
    pivot, radius = cameras.camera_sphere(G.rendering_kwargs, device=device)
    camera = cameras.snapshot_camera(G, cfg=cfg, fov_deg=fov_deg)
    intrinsics = cameras.intrinsics_matrix(camera.focal, device=device)
    frontal = cameras.look_at_label(cameras.HALF_TURN / 2, cameras.HALF_TURN / 2, pivot, radius, intrinsics)
    ws = map_keyframes(G, all_seeds, frontal, grid_w, grid_h, num_keyframes, psi, truncation_cutoff)
    grid = make_interpolators(ws, kind=kind, wraps=wraps)

    shape_dir = shape_folder(all_seeds) if gen_shapes else None
    if shape_dir is not None:
        os.makedirs(shape_dir, exist_ok=True)
    num_frames = num_keyframes * w_frames
    all_poses = []
    with dnnlib.util.atomic_output(mp4) as tmp_path:
        video_out = imageio.get_writer(tmp_path, mode='I', fps=60, codec='libx264', **video_kwargs)
        try:
            for frame_idx in tqdm(range(num_frames), desc='frames'):
                cells = []
                for yi in range(grid_h):
                    for xi in range(grid_w):
                        cam2world = cameras.orbit_camera(frame_idx, num_frames, pivot, radius, device)
                        all_poses.append(cam2world.squeeze(0).cpu().numpy())
                        # The spline's float64 goes in as is: the super-resolution affines then run in double.
                        w = torch.from_numpy(grid[yi][xi](frame_idx / w_frames)).to(device)
                        cells.append(render_cell(G, w, cameras.camera_label(cam2world, intrinsics), image_mode))
                        if shape_dir is not None:
                            print(f'Generating shape for frame {frame_idx} / {num_frames} ...')
                            shape_path = os.path.join(shape_dir, shape_file_name(frame_idx))
                            extract_frame_shape(G, w.unsqueeze(0), shape_path, shape_res, device)
                video_out.append_data(layout_grid(torch.stack(cells), grid_w=grid_w, grid_h=grid_h))
        finally:
            video_out.close()

    if gen_shapes:
        dnnlib.util.write_atomic(trajectory_path(mp4), lambda f: np.save(f, np.stack(all_poses)))

# ----------------------------------------------------------------------------
# Command line.


def plan_videos(outdir, seeds, interpolate, shapes, grid, num_keyframes, shuffle_seed, w_frames):
    """[(mp4 path, seeds, gen_shapes)] after checking, without creating anything, that every output can be made."""
    if interpolate:
        jobs = [(os.path.join(outdir, 'interpolation.mp4'), seeds, shapes)]
    else:
        jobs = [(os.path.join(outdir, f'{seed}.mp4'), [seed], False) for seed in seeds]
    out_names = [os.path.basename(mp4) for mp4, _, _ in jobs]
    for mp4, video_seeds, gen_shapes in jobs:
        try:
            all_seeds, keyframes = keyframe_seeds(video_seeds, num_keyframes, *grid, shuffle_seed=shuffle_seed)
        except ValueError as err:
            raise click.ClickException(f'--seeds: {err} ({mp4})')
        if gen_shapes:
            out_names.append(os.path.basename(trajectory_path(mp4)))
            cli.check_output_dir(shape_folder(all_seeds), flag='--shapes (mesh folder)',
                                       file_names=[shape_file_name(i) for i in range(keyframes * w_frames)])
    cli.check_output_dir(outdir, file_names=out_names)
    return jobs


def set_depth_samples(G, sampling_multiplier):
    """Scale G's samples per ray, truncating like the released script; at least one coarse sample must remain."""
    scaled = {key: int(G.rendering_kwargs[key] * sampling_multiplier)
              for key in ('depth_resolution', 'depth_resolution_importance')}
    if scaled['depth_resolution'] < 1:
        raise click.BadParameter(f'{sampling_multiplier:g} x {G.rendering_kwargs["depth_resolution"]} depth samples '
                                 f'leaves no sample per ray', param_hint='--sample_mult')
    G.rendering_kwargs.update(scaled)


@click.command()
@click.option('--network', 'network_pkl', help='Network pickle filename or URL', type=cli.PATH, required=True)
@click.option('--seeds', type=cli.SEED_RANGE, help="List of keyframe seeds (e.g., '0,1,4-6')", required=True)
@click.option('--shuffle-seed', type=click.IntRange(0, cli.MAX_SEED),
              help='Shuffle the keyframe seeds with this random seed', default=None)
@click.option('--grid', type=cli.POSITIVE_PAIR, help='Grid width x height (e.g. 4x3)', default=(1, 1),
              show_default=True)
@click.option('--num-keyframes', type=click.IntRange(min=1), help='Number of keyframes (default: seeds / grid cells)',
              default=None)
@click.option('--w-frames', type=click.IntRange(min=1), help='Frames between keyframes', default=120,
              show_default=True)
@click.option('--trunc', 'truncation_psi', type=cli.FiniteFloat(), help='Truncation psi', default=1,
              show_default=True)
@click.option('--trunc-cutoff', 'truncation_cutoff', type=click.IntRange(min=0), help='Truncation cutoff',
              default=14, show_default=True)
@click.option('--outdir', help='Output directory', type=cli.PATH, required=True, metavar='DIR')
@click.option('--reload_modules', help='Accepted and ignored', type=bool, metavar='BOOL', default=False,
              show_default=True)
@click.option('--cfg', help='Dataset family whose focal length the cameras use (the original\'s default was FFHQ)  '
              '[default: the snapshot\'s focal]', type=click.Choice(['FFHQ', 'AFHQ', 'Shapenet']), default=None)
@click.option('--fov-deg', help=f'Field of view of the cameras in degrees, as camera_utils.FOV_to_intrinsics reads them '
              f'({cameras.DEGREES_NOTE}); overrides --cfg', metavar='FLOAT', default=None,
              type=cli.FiniteFloat(min=0, max=180, min_open=True, max_open=True))
@click.option('--image_mode', help='Generator output to film',
              type=click.Choice(['image', 'image_depth', 'image_raw']), default='image', show_default=True)
@click.option('--sample_mult', 'sampling_multiplier', type=cli.FiniteFloat(min=0, min_open=True),
              help='Multiplier for the depth samples per ray', default=2, show_default=True)
@click.option('--nrr', type=click.IntRange(min=1), help='Neural rendering resolution override', default=None)
@click.option('--shapes', type=bool, help='Also extract a mesh per frame (interpolate mode only)', default=False,
              show_default=True, metavar='BOOL')
@click.option('--shape-res', type=click.IntRange(min=shape_extraction.MIN_MESH_RESOLUTION),
              help='Voxel grid side for --shapes', default=512, show_default=True)
@click.option('--interpolate', type=bool, help='One video through all seeds (else one video per seed)',
              default=True, show_default=True, metavar='BOOL')
@click.option('--seed-noise', help='Seed torch (ray jitter) so videos are reproducible (False: unseeded, see '
              'docs/compat.md)', type=bool, metavar='BOOL', default=True, show_default=True)
@click.option('--device', help='Torch device (default: cuda if available, else cpu)', type=cli.DEVICE,
              default=None)
@cli.trust_embedded_code_option
@cli.one_line_errors
def generate_videos(network_pkl, seeds, shuffle_seed, grid, num_keyframes, w_frames, truncation_psi,
                    truncation_cutoff, outdir, reload_modules, cfg, fov_deg, image_mode, sampling_multiplier, nrr,
                    shapes, shape_res, interpolate, seed_noise, device, trust_embedded_code):
    """Render a latent interpolation video of a pretrained EG3D network.

    Writes <outdir>/interpolation.mp4 (or <outdir>/<SEED>.mp4 per seed with --interpolate=false).
    """
    del reload_modules
    jobs = plan_videos(outdir, seeds, interpolate, shapes, grid, num_keyframes, shuffle_seed, w_frames)
    device = cli.parse_device(device)
    G = generation.load_generator(network_pkl, device, trust_embedded_code=trust_embedded_code)
    set_depth_samples(G, sampling_multiplier)
    if nrr is not None:
        G.neural_rendering_resolution = nrr
    print(cameras.describe_camera(cameras.snapshot_camera(G, cfg=cfg, fov_deg=fov_deg)))
    os.makedirs(outdir, exist_ok=True)

    if truncation_cutoff == 0:
        truncation_psi = 1.0  # nothing is truncated anyway
    if truncation_psi == 1.0:
        truncation_cutoff = 14  # the cutoff does not matter without truncation

    for mp4, video_seeds, gen_shapes in jobs:
        if seed_noise:
            torch.manual_seed(video_seeds[0])
        gen_interp_video(G=G, mp4=mp4, seeds=video_seeds, bitrate='10M', grid_dims=grid, num_keyframes=num_keyframes,
                         w_frames=w_frames, shuffle_seed=shuffle_seed, psi=truncation_psi,
                         truncation_cutoff=truncation_cutoff, cfg=cfg, fov_deg=fov_deg, image_mode=image_mode,
                         gen_shapes=gen_shapes, shape_res=shape_res, device=device)


if __name__ == '__main__':
    generate_videos()
