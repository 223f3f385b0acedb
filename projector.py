"""Fit an EG3D generator to a photo with a known camera: project it to a latent, optionally fine-tune the
generator around that latent (pivotal tuning), and render the subject from new views.

Examples:

\b
# A preprocessed FFHQ-style photo (dataset_preprocessing/ffhq) with its label from the dataset.json.
python projector.py --network=ffhq512-128.pkl --target=crops/face.png --camera=crops/dataset.json --outdir=out

\b
# w+ projection, 500 pivotal-tuning steps, a mesh; camera given as 25 numbers.
python projector.py --network=ffhq512-128.pkl --target=face.png --camera=1,0,0,0,...,1 --outdir=out \\
    --latent-space=w_plus --pti-steps=500 --shapes=true

Writes to <outdir>: proj.png (target | projection [| tuned]), projected_w.npz (w [1, num_ws, w_dim] and the
camera c [1, 25]), optimization.mp4, novel_views.mp4, tuned.pkl (with --pti-steps) and shape.ply (with
--shapes). See docs/projection.md.
"""

import copy
import os
import re

import click
import imageio
import numpy as np
import PIL.Image
import torch
from tqdm import tqdm

import cli
import dnnlib
from cli import PATH, one_line_errors, trust_embedded_code_option
from inference import generation, projection, shape_extraction
from inference.perceptual import DetectorError, PerceptualDistance
from torch_utils import misc
from training import cameras, image_grid, network_pickle
from training.camera_validation import DatasetError, check_camera_labels, parse_dataset_json
from training.dataset_transform import make_transform

# ----------------------------------------------------------------------------
# Inputs: everything is read and checked before the output folder is created.


def read_target(path):
    """The photo as an [H, W, 3] uint8 array."""
    try:
        with PIL.Image.open(path) as img:
            return np.array(img.convert('RGB'))
    except (OSError, ValueError, PIL.Image.DecompressionBombError) as err:
        raise click.ClickException(f'--target={path}: cannot read the image ({" ".join(str(err).split())})')


def target_tensor(photo, resolution, device):
    """Centre-cropped to a square and resized with dataset_tool's rule; [1, 3, R, R] in [-1, 1]."""
    if photo.shape[0] != photo.shape[1]:
        print(f'Cropping the {photo.shape[1]}x{photo.shape[0]} target to its centre square')
    image = make_transform('center-crop', resolution, resolution)(photo)
    return torch.from_numpy(image).to(device).permute(2, 0, 1)[None].to(torch.float32) / 127.5 - 1


def label_from_dataset_json(path, target_path):
    """The label of the dataset.json entry whose file name matches the target's (exactly, else by stem)."""
    try:
        with open(path, 'rb') as f:
            labels = parse_dataset_json(f.read(), where=path)
    except OSError as err:
        raise click.ClickException(f'--camera={path}: cannot read ({err.strerror or err})')
    except DatasetError as err:
        raise click.ClickException(str(err))
    if labels is None:
        raise click.ClickException(f'{path}: "labels" is null; it holds no cameras')
    base = os.path.basename(target_path)
    stem = os.path.splitext(base)[0]
    for key in (lambda name: os.path.basename(name) == base,
                lambda name: os.path.splitext(os.path.basename(name))[0] == stem):
        found = {name: label for name, label in labels if key(name)}
        if len(found) > 1:
            raise click.ClickException(f'{path}: several labels match "{base}": {", ".join(sorted(found))}')
        if found:
            return next(iter(found.items()))
    raise click.ClickException(f'{path}: no label for a file named like the target "{base}"')


def read_camera(camera, target_path):
    """[name, 25 floats] from a dataset.json or a list of numbers, checked like dataset_tool checks labels."""
    if camera.lower().endswith('.json') or os.path.isfile(camera):
        name, label = label_from_dataset_json(camera, target_path)
        where = f'{camera} ({name})'
    else:
        try:
            label = [float(v) for v in re.split(r'[,\s]+', camera.strip())]
        except ValueError:
            raise click.ClickException(f'--camera: "{camera[:40]}" is neither a dataset.json file nor a list of '
                                       f'{cameras.LABEL_DIM} numbers')
        name, where = os.path.basename(target_path), '--camera'
    if not (isinstance(label, list) and len(label) == cameras.LABEL_DIM):
        size = len(label) if isinstance(label, list) else type(label).__name__
        raise click.ClickException(f'{where}: a camera label has {cameras.LABEL_DIM} numbers (cam2world 4x4, intrinsics '
                                   f'3x3), got {size}')
    report = check_camera_labels([[name, label]], where=where)
    if not report.ok:
        raise click.ClickException(report.errors[0])
    for line in report.warnings:
        print(f'Warning: {line}')
    return label


def frontal_label(G):
    """The label of the snapshot's frontal camera (cameras.snapshot_camera()), for photos without a camera."""
    camera = cameras.snapshot_camera(G)
    print(f'No --camera: fitting from the snapshot\'s frontal camera. {cameras.describe_camera(camera)}')
    pivot = torch.tensor(camera.pivot, dtype=torch.float32)
    return cameras.look_at_label(np.pi / 2, np.pi / 2, pivot, camera.radius,
                                    cameras.intrinsics_matrix(camera.focal))[0].tolist()


def load_snapshot(network_pkl, trust_embedded_code):
    print(f'Loading networks from "{network_pkl}"...')
    data = generation.open_snapshot(network_pkl, trust_embedded_code=trust_embedded_code)
    generation.check_eg3d_generator(data['G_ema'], network_pkl)
    return data

# ----------------------------------------------------------------------------
# Outputs.


def side_by_side(*images):
    """[1, 3, H, W] images in [-1, 1] -> one [H, n * W, 3] uint8 array."""
    return misc.to_uint8(torch.cat(images, dim=3))[0].cpu().numpy()


def render(G, ws, c, seed):
    """Seeded: the renderer draws its depth jitter from torch's global generator."""
    torch.manual_seed(seed)
    with torch.no_grad():
        return G.synthesis(ws, c, noise_mode='const')['image']


def write_novel_views(G, ws, c, path, num_frames, seed):
    """An orbit around the subject on the generator's camera sphere, with the target camera's intrinsics."""
    pivot, radius = cameras.camera_sphere(G.rendering_kwargs, device=ws.device)
    with dnnlib.util.atomic_output(path) as tmp_path:
        writer = imageio.get_writer(tmp_path, mode='I', fps=30, codec='libx264', bitrate='10M')
        try:
            for frame_idx in tqdm(range(num_frames), desc='novel views'):
                cam2world = cameras.orbit_camera(frame_idx, num_frames, pivot, radius, ws.device)
                view = cameras.camera_label(cam2world, c[:, 16:])
                writer.append_data(misc.to_uint8(render(G, ws, view, seed + frame_idx))[0].cpu().numpy())
        finally:
            writer.close()


def write_latent(path, ws, c):
    dnnlib.util.write_atomic(path, lambda f: np.savez(f, w=ws.cpu().numpy(), c=c.cpu().numpy()))


def save_tuned_snapshot(path, data, G_tuned):
    """A snapshot of the usual layout (tuned weights as G and G_ema) that gen_samples.py and gen_videos.py load."""
    snapshot = copy.deepcopy(dict(training_set_kwargs=data['training_set_kwargs'], G=G_tuned, D=data['D'],
                                  G_ema=G_tuned, augment_pipe=data['augment_pipe']))  # One copy of G_tuned.
    for value in snapshot.values():
        if isinstance(value, torch.nn.Module):
            value.cpu()
    network_pickle.save_network_pkl(snapshot, path)


# ----------------------------------------------------------------------------


def run_stages(G, target, c, loss_fn, proj_opts, tune_opts, seed, record):
    """Projection, then pivotal tuning when tune_opts.num_steps > 0; record(image) gets every step's render.

    Returns (ws, G_projected, G_tuned or None).
    """
    G_proj = copy.deepcopy(G)  # Its noise maps become part of the fit.
    bar = tqdm(total=proj_opts.num_steps, desc='projection')
    def on_projection_step(step, ws, image, loss):
        record(image)
        bar.set_postfix(loss=f'{loss:.4f}', psnr=f'{float(projection.psnr(image, target)):.2f}')
        bar.update(1)
    ws = projection.project(G_proj, c, loss_fn, proj_opts, seed=seed, callback=on_projection_step)
    bar.close()
    if tune_opts.num_steps == 0:
        return ws, G_proj, None
    bar = tqdm(total=tune_opts.num_steps, desc='pivotal tuning')
    def on_tuning_step(step, image, loss):
        record(image)
        bar.set_postfix(loss=f'{loss:.4f}', psnr=f'{float(projection.psnr(image, target)):.2f}')
        bar.update(1)
    G_tuned = projection.pivotal_tuning(G_proj, ws, c, loss_fn, tune_opts, seed=seed, callback=on_tuning_step)
    bar.close()
    return ws, G_proj, G_tuned


@click.command()
@click.option('--network', 'network_pkl', help='Network pickle filename or URL', type=PATH, required=True)
@click.option('--target', 'target_path', help='Photo to fit (cropped and resized to the generator\'s resolution)',
              type=PATH, required=True, metavar='FILE')
@click.option('--camera', help='dataset.json holding the photo\'s label (matched by file name), or 25 numbers  '
              '[default: the snapshot\'s frontal camera: its average pivot and radius, its focal]',
              type=PATH, metavar='JSON|NUMBERS')
@click.option('--outdir', help='Where to save the results', type=PATH, required=True, metavar='DIR')
@click.option('--latent-space', help='One latent for all layers (w) or one per layer (w_plus)',
              type=click.Choice(['w', 'w_plus']), default='w', show_default=True)
@click.option('--num-steps', help='Projection steps', type=click.IntRange(min=1), default=1000, show_default=True)
@click.option('--pti-steps', help='Pivotal tuning steps (0 = none)', type=click.IntRange(min=0), default=0,
              show_default=True)
@click.option('--pti-lr', help='Pivotal tuning learning rate', type=click.FloatRange(min=0, min_open=True),
              default=3e-4, show_default=True)
@click.option('--loss', 'loss_kind', help='Image loss: LPIPS (VGG16 detector) plus pixel MSE, or pixel MSE alone',
              type=click.Choice(['lpips+mse', 'mse']), default='lpips+mse', show_default=True)
@click.option('--mse-weight', help='Weight of the pixel MSE', type=click.FloatRange(min=0), default=1.0,
              show_default=True)
@click.option('--seed', help='Random seed', type=int, default=0, show_default=True)
@click.option('--num-frames', help='Frames of novel_views.mp4', type=click.IntRange(min=1), default=120,
              show_default=True)
@click.option('--shapes', help='Also export the fitted shape as shape.ply', type=bool, metavar='BOOL',
              default=False, show_default=True)
@click.option('--shape-res', help='Voxel grid side for --shapes', type=click.IntRange(min=2), default=512,
              show_default=True)
@click.option('--device', help='Torch device (default: cuda if available, else cpu)', type=cli.DEVICE, default=None)
@click.option('--deterministic', help='cuDNN benchmark off and deterministic algorithms on, so that the same seed '
              'repeats the fit bit for bit (docs/projection.md says where)', type=bool, metavar='BOOL', default=False,
              show_default=True)
@trust_embedded_code_option
@one_line_errors
def run_projection(network_pkl, target_path, camera, outdir, latent_space, num_steps, pti_steps, pti_lr, loss_kind,
                   mse_weight, seed, num_frames, shapes, shape_res, device, deterministic, trust_embedded_code):
    """Project a photo into an EG3D generator's latent space and render it from new views."""
    if deterministic:
        misc.make_deterministic()
    device = cli.parse_device(device)
    photo = read_target(target_path)
    label = read_camera(camera, target_path) if camera is not None else None
    data = load_snapshot(network_pkl, trust_embedded_code)
    G = data['G_ema'].to(device).eval().requires_grad_(False)
    if label is None:
        label = frontal_label(G)
    perceptual = None
    if loss_kind == 'lpips+mse':
        try:
            perceptual = PerceptualDistance(device)
        except DetectorError as err:
            raise click.ClickException(f'{err} (or run with --loss=mse)')
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise click.ClickException(f'--outdir={outdir}: exists and is not a directory')

    torch.manual_seed(seed)
    target = target_tensor(photo, G.img_resolution, device)
    c = torch.tensor([label], dtype=torch.float32, device=device)
    loss_fn = projection.ImageLoss(target, perceptual=perceptual, mse_weight=mse_weight)
    proj_opts = projection.ProjectionOptions(num_steps=num_steps, latent_space=latent_space)
    tune_opts = projection.TuningOptions(num_steps=pti_steps, learning_rate=pti_lr)
    os.makedirs(outdir, exist_ok=True)

    with dnnlib.util.atomic_output(os.path.join(outdir, 'optimization.mp4')) as tmp_path:
        video = imageio.get_writer(tmp_path, mode='I', fps=10, codec='libx264', bitrate='16M')
        try:
            record = lambda image: video.append_data(side_by_side(target, image))
            ws, G_proj, G_tuned = run_stages(G, target, c, loss_fn, proj_opts, tune_opts, seed, record)
        finally:
            video.close()

    G_final = G_proj if G_tuned is None else G_tuned
    panels = [target, render(G_proj, ws, c, seed)] + ([] if G_tuned is None else [render(G_tuned, ws, c, seed)])
    print(f'PSNR of the fit: {float(projection.psnr(panels[-1], target)):.2f} dB')
    image_grid.save_png(os.path.join(outdir, 'proj.png'), side_by_side(*panels))
    write_latent(os.path.join(outdir, 'projected_w.npz'), ws, c)
    if G_tuned is not None:
        save_tuned_snapshot(os.path.join(outdir, 'tuned.pkl'), data, G_tuned)
    write_novel_views(G_final, ws, c, os.path.join(outdir, 'novel_views.mp4'), num_frames, seed)
    if shapes:
        shape_extraction.save_frame_mesh(G_final, ws, os.path.join(outdir, 'shape.ply'), shape_res, device)


if __name__ == '__main__':
    run_projection()
