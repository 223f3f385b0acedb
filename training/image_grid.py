"""Images on disk: PNG files, and the snapshot image grids (which dataset items they show, how [N, C, H, W]
images become one PNG)."""

import os

import numpy as np
import PIL.Image
import torch

import dnnlib


def save_png(path: str, array: np.ndarray) -> None:
    """uint8 [H, W, 3] or [H, W] -> PNG at `path`, written under a temporary name and renamed."""
    assert array.dtype == np.uint8 and array.ndim in (2, 3), f'{array.dtype} array of shape {array.shape}'
    with dnnlib.util.atomic_output(path) as tmp_path:
        PIL.Image.fromarray(array).save(tmp_path, format='png')

def _grid_indices(training_set, rnd, count, columns):
    if not training_set.has_labels:
        order = list(range(len(training_set)))
        rnd.shuffle(order)
        return [order[i % len(order)] for i in range(count)]
    # Each row shows one group of items that share a label (continuous cameras: mostly single items);
    # consecutive rows of the same group continue where the previous one stopped.
    groups = dict()
    for index in range(len(training_set)):
        groups.setdefault(tuple(training_set.get_label(index).flat[::-1]), []).append(index)
    keys = list(groups)
    rnd.shuffle(keys)
    for key in keys:
        rnd.shuffle(groups[key])
    chosen = []
    for row in range(count // columns):
        members = groups[keys[row % len(keys)]]
        chosen.extend(members[col % len(members)] for col in range(columns))
        shift = columns % len(members)
        members[:] = members[shift:] + members[:shift]
    return chosen

def setup_snapshot_image_grid(training_set, random_seed=0, grid_size=None):
    """Dataset items shown in the snapshot grids: ((gw, gh), images [N, C, H, W], labels [N, c_dim])."""
    _channels, height, width = training_set.image_shape
    if grid_size is None:
        grid_size = (int(np.clip(7680 // width, 7, 32)), int(np.clip(4320 // height, 4, 32)))
    gw, gh = grid_size
    indices = _grid_indices(training_set, np.random.RandomState(random_seed), count=gw * gh, columns=gw)
    items = [training_set[index] for index in indices]
    return (gw, gh), np.stack([image for image, _label in items]), np.stack([label for _image, label in items])

def save_image_grid(img, fname, drange, grid_size):
    """Tile [N, C, H, W] images (values in drange) row-major into a gw x gh grid PNG (C = 1 or 3)."""
    low, high = drange
    gain = 255 / (high - low) if high != low else 0
    pixels = np.rint((np.asarray(img, dtype=np.float32) - low) * gain).clip(0, 255).astype(np.uint8)
    gw, gh = grid_size
    count, channels, height, width = pixels.shape
    assert channels in (1, 3) and count == gw * gh, (pixels.shape, grid_size)
    tiled = pixels.reshape(gh, gw, channels, height, width).transpose(0, 3, 1, 4, 2)
    tiled = tiled.reshape(gh * height, gw * width, channels)
    save_png(fname, tiled[:, :, 0] if channels == 1 else tiled)

@torch.no_grad()
def export_fakes(G_ema, grid, run_dir, cur_nimg):
    outputs = [G_ema(z=z, c=c, noise_mode='const') for z, c in zip(grid.z, grid.c)]
    def gather(key):
        return torch.cat([out[key].cpu() for out in outputs]).numpy()
    prefix = os.path.join(run_dir, f'fakes{cur_nimg // 1000:06d}')
    save_image_grid(gather('image'), prefix + '.png', drange=[-1, 1], grid_size=grid.size)
    save_image_grid(gather('image_raw'), prefix + '_raw.png', drange=[-1, 1], grid_size=grid.size)
    depth = -gather('image_depth') # Near = bright.
    save_image_grid(depth, prefix + '_depth.png', drange=[depth.min(), depth.max()], grid_size=grid.size)
