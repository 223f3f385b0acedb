"""Render images (three views per seed) and, optionally, density volumes or meshes from a trained EG3D network.

Examples:

\b
# Images for seeds 0-3 with truncation.
python gen_samples.py --outdir=out --trunc=0.7 --seeds=0-3 --network=ffhq512-128.pkl

\b
# Images plus a 512^3 density volume (.mrc, viewable in ChimeraX) per seed.
python gen_samples.py --outdir=out --seeds=0 --shapes=true --network=ffhq512-128.pkl

\b
# Images plus a coloured mesh per seed.
python gen_samples.py --outdir=out --seeds=0 --shapes=true --shape-format=.ply --network=ffhq512-128.pkl
"""

import os

import click
import numpy as np
import PIL.Image
import torch

import dnnlib
from camera_utils import FOV_to_intrinsics, LookAtPoseSampler
from torch_utils import misc
from training import network_pickle, shape_extraction
from training.cli_utils import SEED_RANGE

# ----------------------------------------------------------------------------
# Helpers shared with gen_videos.py.


def pick_device(device):
    if device is None:
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    device = torch.device(device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise click.ClickException(f'--device={device}: CUDA is not available on this machine')
    return device


def load_generator(network_pkl, device, reload_modules=False):
    """G_ema of a snapshot (path or URL) on `device`, optionally rebuilt with the current code."""
    print(f'Loading networks from "{network_pkl}"...')
    try:
        G = network_pickle.open_network_pkl(network_pkl)['G_ema']
    except network_pickle.NetworkPickleError as err:
        raise click.ClickException(str(err))
    G = G.to(device).eval().requires_grad_(False)
    if reload_modules:
        print('Reloading modules...')
        G_new = type(G)(*G.init_args, **G.init_kwargs).eval().requires_grad_(False).to(device)
        misc.copy_params_and_buffers(G, G_new, require_all=True)
        G_new.neural_rendering_resolution = G.neural_rendering_resolution
        G_new.rendering_kwargs = G.rendering_kwargs
        G = G_new
    return G


def camera_orbit(G, device):
    """(pivot [3], radius) of the scripts' camera sphere, from the generator's rendering_kwargs."""
    pivot = torch.tensor(G.rendering_kwargs.get('avg_camera_pivot', [0, 0, 0]), dtype=torch.float32, device=device)
    return pivot, G.rendering_kwargs.get('avg_camera_radius', 2.7)


def camera_label(cam2world, intrinsics):
    """[B, 25] = cam2world (16, row-major) and intrinsics (9)."""
    cam2world = cam2world.reshape(-1, 16)
    return torch.cat([cam2world, intrinsics.reshape(1, 9).expand(len(cam2world), 9)], dim=1)


def to_uint8(img):
    """[N, C, H, W] in [-1, 1] -> [N, H, W, C] uint8, truncating like the official scripts."""
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def save_png(path, array):
    with dnnlib.util.atomic_output(path) as tmp_path:
        PIL.Image.fromarray(array, 'RGB').save(tmp_path, format='png')

# ----------------------------------------------------------------------------


def generate_shape(G, ws, seed, outdir, shape_res, shape_format, level, mesh_colors, device):
    """Density grid of the official layout -> .mrc volume or .ply/.obj mesh at `outdir/seed%04d.<ext>`.

    ws are those of the image run (frontal conditioning camera, same truncation); the original maps z again
    inside G.sample(), which gives the same ws.
    """
    box_warp = G.rendering_kwargs['box_warp']
    sample_fn = lambda coordinates, directions: G.sample_mixed(coordinates, directions, ws, noise_mode='const')
    sigmas = shape_extraction.sample_density_grid(sample_fn, shape_res, box_warp, device=device)
    volume = shape_extraction.finish_volume(sigmas, pad=int(30 * shape_res / 256), pad_value=-1000)
    path = os.path.join(outdir, f'seed{seed:04d}{shape_format}')
    if shape_format == '.mrc':
        shape_extraction.write_mrc(path, volume)
        return path
    try:
        verts, faces = shape_extraction.extract_mesh(volume, level)
    except ValueError as err:
        raise click.ClickException(f'{path}: {err}; choose another --level')
    colors = None
    if mesh_colors:
        colors = shape_extraction.vertex_colors(sample_fn, verts, shape_res, box_warp, device=device)
    shape_extraction.write_mesh(path, verts, faces, colors)
    return path


@click.command()
@click.option('--network', 'network_pkl', help='Network pickle filename or URL', required=True)
@click.option('--seeds', type=SEED_RANGE, help="List of random seeds (e.g., '0,1,4-6')", required=True)
@click.option('--trunc', 'truncation_psi', type=float, help='Truncation psi', default=1, show_default=True)
@click.option('--trunc-cutoff', 'truncation_cutoff', type=int, help='Truncation cutoff', default=14,
              show_default=True)
@click.option('--class', 'class_idx', type=int, help='Class label (accepted and ignored, as in the original)')
@click.option('--outdir', help='Where to save the output images', type=str, required=True, metavar='DIR')
@click.option('--shapes', help='Also export a shape per seed (see --shape-format)', type=bool, metavar='BOOL',
              default=False, show_default=True)
@click.option('--shape-res', help='Voxel grid side N', type=click.IntRange(min=2), metavar='INT', default=512,
              show_default=True)
@click.option('--fov-deg', help='Field of view of the rendering cameras in degrees (the original effectively '
              'used 18; non-integers are accepted too)', type=float, metavar='FLOAT', default=18, show_default=True)
@click.option('--shape-format', help='Density volume (.mrc) or iso-surface mesh (.ply, .obj)',
              type=click.Choice(['.mrc', '.ply', '.obj']), default='.mrc', show_default=True)
@click.option('--level', help='Iso-level of the mesh surface (raw density)', type=float, default=10,
              show_default=True)
@click.option('--mesh-colors', help='Colour mesh vertices with the generator\'s rgb at the surface (off by default: '
              'the original\'s .ply holds positions and faces only)', type=bool, metavar='BOOL', default=False,
              show_default=True)
@click.option('--reload_modules', help='Rebuild G with the current code and copy its weights', type=bool,
              metavar='BOOL', default=False, show_default=True)
@click.option('--seed-noise', help='Seed torch with each seed so images are reproducible; False keeps the '
              'original\'s unseeded noise', type=bool, metavar='BOOL', default=True, show_default=True)
@click.option('--device', help='Torch device (default: cuda if available, else cpu)', type=str, default=None)
def generate_images(network_pkl, seeds, truncation_psi, truncation_cutoff, class_idx, outdir, shapes, shape_res,
                    fov_deg, shape_format, level, mesh_colors, reload_modules, seed_noise, device):
    """Generate images (left, frontal and right view side by side) and shapes with a pretrained EG3D network.

    PNGs are written as <outdir>/seed<SEED:04d>.png, shapes as <outdir>/seed<SEED:04d>.<mrc|ply|obj>.
    """
    del class_idx  # EG3D is conditioned on cameras only.
    device = pick_device(device)
    G = load_generator(network_pkl, device, reload_modules=reload_modules)
    os.makedirs(outdir, exist_ok=True)

    pivot, radius = camera_orbit(G, device)
    intrinsics = FOV_to_intrinsics(fov_deg, device=device)
    conditioning = camera_label(LookAtPoseSampler.sample(np.pi / 2, np.pi / 2, pivot, radius=radius, device=device),
                                intrinsics)
    # Left-to-right: yaw +0.4, 0, -0.4 around the front, all slightly above it.
    views = [camera_label(LookAtPoseSampler.sample(np.pi / 2 + yaw, np.pi / 2 - 0.2, pivot, radius=radius,
                                                   device=device), intrinsics) for yaw in (0.4, 0, -0.4)]

    for seed_idx, seed in enumerate(seeds):
        print(f'Generating image for seed {seed} ({seed_idx}/{len(seeds)}) ...')
        if seed_noise:
            torch.manual_seed(seed)
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).to(device)
        with torch.no_grad():
            ws = G.mapping(z, conditioning, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
            images = [to_uint8(G.synthesis(ws, view)['image']) for view in views]
        save_png(os.path.join(outdir, f'seed{seed:04d}.png'), torch.cat(images, dim=2)[0].cpu().numpy())

        if shapes:
            generate_shape(G, ws, seed, outdir, shape_res, shape_format, level, mesh_colors, device)


if __name__ == '__main__':
    generate_images()
