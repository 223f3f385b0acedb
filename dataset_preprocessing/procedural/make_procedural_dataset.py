"""Render a small multi-view dataset of procedural toy objects with exact cameras.

Each object is a ball resting on a slab, with random colours, sizes and proportions, ray-cast
analytically and shaded with one directional light. Cameras sit on a sphere around the origin and
look at it, in EG3D's convention (OpenCV cam2world, intrinsics normalised by the image size), so the
output folder (PNG images + dataset.json) feeds dataset_tool.py and then train.py --cfg=shapenet.

    python dataset_preprocessing/procedural/make_procedural_dataset.py --outdir=/tmp/toys --count=256 --res=64
"""

import json
import os
import sys

import click
import numpy as np
import PIL.Image
import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import cli  # noqa: E402
from training.cameras import FOCAL_SHAPENET as FOCAL  # noqa: E402
from training.cameras import lookat_cam2world, make_label  # noqa: E402

CAMERA_RADIUS = 1.7             # Same sphere as the shapenet preset's avg_camera_radius.
LIGHT_DIR = np.array([0.4, 0.8, 0.45]) / np.linalg.norm([0.4, 0.8, 0.45])


def sample_camera(rnd: np.random.RandomState) -> np.ndarray:
    yaw = rnd.uniform(0, 2 * np.pi)
    elevation = rnd.uniform(0.05, 0.6)  # radians above the horizon
    origin = CAMERA_RADIUS * np.array([np.cos(elevation) * np.sin(yaw), np.sin(elevation), np.cos(elevation) * np.cos(yaw)])
    return lookat_cam2world(origin)


def sample_object(rnd: np.random.RandomState) -> dict:
    slab_half = np.array([rnd.uniform(0.25, 0.4), rnd.uniform(0.04, 0.08), rnd.uniform(0.18, 0.32)])
    ball_radius = rnd.uniform(0.12, 0.22)
    slab_top = -0.15 + slab_half[1]
    return dict(
        slab_center=np.array([0.0, -0.15, 0.0]), slab_half=slab_half, slab_color=rnd.uniform(0.1, 0.9, size=3),
        ball_center=np.array([rnd.uniform(-0.1, 0.1), slab_top + ball_radius, rnd.uniform(-0.08, 0.08)]),
        ball_radius=ball_radius, ball_color=rnd.uniform(0.1, 0.9, size=3),
    )


def camera_rays(cam2world: np.ndarray, res: int) -> tuple[np.ndarray, np.ndarray]:
    """Ray origins and unit directions through pixel centres, [res*res, 3] each."""
    coords = (np.arange(res) + 0.5) / res
    v, u = np.meshgrid(coords, coords, indexing='ij')
    x_cam = (u - 0.5) / FOCAL
    y_cam = (v - 0.5) / FOCAL
    dirs_cam = np.stack([x_cam, y_cam, np.ones_like(x_cam)], axis=-1).reshape(-1, 3)
    dirs = dirs_cam @ cam2world[:3, :3].T
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    return np.broadcast_to(cam2world[:3, 3], dirs.shape), dirs


def intersect_sphere(origins, dirs, center, radius):
    oc = origins - center
    b = np.sum(oc * dirs, axis=-1)
    disc = b * b - (np.sum(oc * oc, axis=-1) - radius * radius)
    t = -b - np.sqrt(np.maximum(disc, 0))
    t = np.where((disc > 0) & (t > 0), t, np.inf)
    normals = origins + t[:, None] * dirs - center
    return t, normals / radius


def intersect_box(origins, dirs, center, half):
    with np.errstate(divide='ignore', invalid='ignore'):
        inv = 1.0 / dirs
        t0 = (center - half - origins) * inv
        t1 = (center + half - origins) * inv
    t_near = np.nanmax(np.minimum(t0, t1), axis=-1)
    t_far = np.nanmin(np.maximum(t0, t1), axis=-1)
    hit = (t_near <= t_far) & (t_near > 0)
    t = np.where(hit, t_near, np.inf)
    # The face hit is the axis whose slab was entered last.
    axis = np.argmax(np.minimum(t0, t1), axis=-1)
    normals = np.zeros_like(dirs)
    normals[np.arange(len(dirs)), axis] = -np.sign(dirs[np.arange(len(dirs)), axis])
    return t, normals


def render(obj: dict, cam2world: np.ndarray, res: int) -> np.ndarray:
    origins, dirs = camera_rays(cam2world, res)
    t_ball, n_ball = intersect_sphere(origins, dirs, obj['ball_center'], obj['ball_radius'])
    t_slab, n_slab = intersect_box(origins, dirs, obj['slab_center'], obj['slab_half'])
    ball_first = t_ball < t_slab
    normals = np.where(ball_first[:, None], n_ball, n_slab)
    albedo = np.where(ball_first[:, None], obj['ball_color'], obj['slab_color'])
    shade = 0.35 + 0.65 * np.clip(normals @ LIGHT_DIR, 0, 1)
    image = np.ones_like(dirs)  # white background, as the shapenet preset renders
    hit = np.isfinite(np.minimum(t_ball, t_slab))
    image[hit] = albedo[hit] * shade[hit, None]
    return (image.reshape(res, res, 3) * 255 + 0.5).clip(0, 255).astype(np.uint8)


def make_dataset(outdir: str, count: int, res: int, views_per_object: int, seed: int) -> None:
    if os.path.isdir(outdir) and os.listdir(outdir):
        raise click.ClickException(f'{outdir}: output folder exists and is not empty')
    os.makedirs(outdir, exist_ok=True)
    rnd = np.random.RandomState(seed)
    labels = []
    obj = None
    for idx in tqdm.trange(count, desc='Rendering', unit='img'):
        if idx % views_per_object == 0:
            obj = sample_object(rnd)
        cam2world = sample_camera(rnd)
        name = f'img{idx:05d}.png'
        PIL.Image.fromarray(render(obj, cam2world, res)).save(os.path.join(outdir, name))
        labels.append([name, make_label(cam2world, focal=FOCAL)])
    with open(os.path.join(outdir, 'dataset.json'), 'w') as f:
        json.dump({'labels': labels}, f)


@click.command()
@click.option('--outdir', help='Output folder (images + dataset.json)', type=cli.PATH, required=True, metavar='DIR')
@click.option('--count', help='Number of images', type=click.IntRange(min=1), default=256, show_default=True)
@click.option('--res', help='Image resolution', type=click.IntRange(min=8), default=64, show_default=True)
@click.option('--views-per-object', help='Views rendered of each random object', type=click.IntRange(min=1),
              default=8, show_default=True)
@click.option('--seed', help='Random seed', type=int, default=0, show_default=True)
def main(outdir, count, res, views_per_object, seed):
    """Render procedural multi-view images with EG3D camera labels."""
    make_dataset(outdir, count=count, res=res, views_per_object=views_per_object, seed=seed)
    print(f'Wrote {count} images and dataset.json to {outdir}')


if __name__ == '__main__':
    main()
