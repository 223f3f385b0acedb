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
import torch

import cli
from inference import generation, shape_extraction
from torch_utils import misc
from training import cameras, image_grid

# Rendering views, left to right: yaw offsets around the front, all seen from slightly above.
VIEW_YAWS = (0.4, 0.0, -0.4)
VIEW_PITCH = -0.2

# ----------------------------------------------------------------------------


def generate_shape(G, ws, seed, outdir, shape_res, shape_format, level, mesh_colors, device):
    """Density grid of the released layout (rendering grid of inference/shape_extraction.py) -> .mrc volume or .ply/.obj mesh at `outdir/seed%04d.<ext>`.

    ws are those of the image run (frontal conditioning camera, same truncation), which is what mapping z
    again inside G.sample() would give.
    """
    path = os.path.join(outdir, f'seed{seed:04d}{shape_format}')
    try:
        return shape_extraction.save_generator_shape(G, ws, path, shape_res, level, mesh_colors, device)
    except ValueError as err:
        raise click.ClickException(f'{path}: {err}; choose another --level')


def output_names(seeds, shapes, shape_format):
    """The files written for each seed, in order."""
    extensions = ['.png'] + ([shape_format] if shapes else [])
    return [f'seed{seed:04d}{ext}' for seed in seeds for ext in extensions]


def check_shape_options(shapes, shape_format, shape_res):
    if shapes and shape_format != '.mrc' and shape_res < shape_extraction.MIN_MESH_RESOLUTION:
        raise click.BadParameter(f'{shape_res}: meshes need at least {shape_extraction.MIN_MESH_RESOLUTION} voxels '
                                 f'per side (smaller grids are all border)', param_hint='--shape-res')

# ----------------------------------------------------------------------------


@click.command()
@click.option('--network', 'network_pkl', help='Network pickle filename or URL', type=cli.PATH, required=True)
@click.option('--seeds', type=cli.SEED_RANGE, help="List of random seeds (e.g., '0,1,4-6')", required=True)
@click.option('--trunc', 'truncation_psi', type=cli.FiniteFloat(), help='Truncation psi', default=1,
              show_default=True)
@click.option('--trunc-cutoff', 'truncation_cutoff', type=click.IntRange(min=0), help='Truncation cutoff',
              default=14, show_default=True)
@click.option('--class', 'class_idx', type=int, help='Class label (accepted and ignored: EG3D is conditioned on '
              'cameras only)')
@click.option('--outdir', help='Where to save the output images', type=cli.PATH, required=True, metavar='DIR')
@click.option('--shapes', help='Also export a shape per seed (see --shape-format)', type=bool, metavar='BOOL',
              default=False, show_default=True)
@click.option('--shape-res', help='Voxel grid side N', type=click.IntRange(min=2), metavar='INT', default=512,
              show_default=True)
@click.option('--fov-deg', help=f'Field of view of the rendering cameras in degrees, as camera_utils.FOV_to_intrinsics '
              f'reads them ({cameras.DEGREES_NOTE}; the original\'s default was 18)  '
              f'[default: the snapshot\'s focal]',
              type=cli.FiniteFloat(min=0, max=180, min_open=True, max_open=True), metavar='FLOAT', default=None)
@click.option('--shape-format', help='Density volume (.mrc) or iso-surface mesh (.ply, .obj)',
              type=click.Choice(['.mrc', '.ply', '.obj']), default='.mrc', show_default=True)
@click.option('--level', help='Iso-level of the mesh surface (raw density)', type=cli.FiniteFloat(), default=10,
              show_default=True)
@click.option('--mesh-colors', help='Colour mesh vertices with the generator\'s rgb at the surface (off by default: '
              'plain .ply files hold positions and faces only)', type=bool, metavar='BOOL', default=False,
              show_default=True)
@click.option('--reload_modules', help='Rebuild G with the current code and copy its weights', type=bool,
              metavar='BOOL', default=False, show_default=True)
@click.option('--seed-noise', help='Seed torch with each seed so images are reproducible (False: unseeded noise, '
              'see docs/compat.md)', type=bool, metavar='BOOL', default=True, show_default=True)
@click.option('--device', help='Torch device (default: cuda if available, else cpu)', type=cli.DEVICE,
              default=None)
@cli.trust_embedded_code_option
@cli.one_line_errors
def generate_images(network_pkl, seeds, truncation_psi, truncation_cutoff, class_idx, outdir, shapes, shape_res,
                    fov_deg, shape_format, level, mesh_colors, reload_modules, seed_noise, device,
                    trust_embedded_code):
    """Generate images (left, frontal and right view side by side) and shapes with a pretrained EG3D network.

    PNGs are written as <outdir>/seed<SEED:04d>.png, shapes as <outdir>/seed<SEED:04d>.<mrc|ply|obj>.
    """
    del class_idx
    check_shape_options(shapes, shape_format, shape_res)
    cli.check_output_dir(outdir, file_names=output_names(seeds, shapes, shape_format))
    device = cli.parse_device(device)
    G = generation.load_generator(network_pkl, device, reload_modules=reload_modules,
                                  trust_embedded_code=trust_embedded_code)
    os.makedirs(outdir, exist_ok=True)

    camera = cameras.snapshot_camera(G, fov_deg=fov_deg)
    print(cameras.describe_camera(camera))
    pivot, radius = cameras.camera_sphere(G.rendering_kwargs, device=device)
    intrinsics = cameras.intrinsics_matrix(camera.focal, device=device)
    conditioning = cameras.look_at_label(np.pi / 2, np.pi / 2, pivot, radius, intrinsics)
    views = [cameras.look_at_label(np.pi / 2 + yaw, np.pi / 2 + VIEW_PITCH, pivot, radius, intrinsics)
             for yaw in VIEW_YAWS]

    for seed_idx, seed in enumerate(seeds):
        print(f'Generating image for seed {seed} ({seed_idx}/{len(seeds)}) ...')
        if seed_noise:
            torch.manual_seed(seed)
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).to(device)
        with torch.no_grad():
            ws = G.mapping(z, conditioning, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
            images = [misc.to_uint8(G.synthesis(ws, view)['image']) for view in views]
        image_grid.save_png(os.path.join(outdir, f'seed{seed:04d}.png'), torch.cat(images, dim=2)[0].cpu().numpy())
        if shapes:
            generate_shape(G, ws, seed, outdir, shape_res, shape_format, level, mesh_colors, device)


if __name__ == '__main__':
    generate_images()
