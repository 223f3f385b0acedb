"""training/image_grid.py: which dataset items the snapshot grids show, the grid PNGs, and torch_utils.misc.to_uint8."""

import glob

import numpy as np
import PIL.Image
import torch
from helpers import make_dataset

import dnnlib
from torch_utils import misc
from training import cameras, image_grid

#----------------------------------------------------------------------------

def test_snapshot_image_grid(tmp_path):
    dataset = dnnlib.util.construct_class_by_name(class_name='training.dataset.ImageFolderDataset',
                                                  path=make_dataset(tmp_path / 'd', num_images=5), use_labels=True,
                                                  xflip=True)
    (gw, gh), images, labels = image_grid.setup_snapshot_image_grid(dataset)
    assert (gw, gh) == (32, 32) and images.shape == (1024, 3, 128, 128) and labels.shape == (1024, 25)
    rows = labels.reshape(gh, gw, 25)
    # Continuous cameras: each group is an image and its x-flipped copy (same label), so each row shows one camera.
    assert all((row == row[0]).all() for row in rows)
    assert len({tuple(row[0]) for row in rows[:5]}) == 5
    (gw, gh), images, labels = image_grid.setup_snapshot_image_grid(dataset, grid_size=(3, 2))
    assert images.shape == (6, 3, 128, 128)

    grid = np.array([-1, 0, 1, 0.5], dtype=np.float32).reshape(4, 1, 1, 1) * np.ones([4, 3, 2, 2], np.float32)
    image_grid.save_image_grid(grid, str(tmp_path / 'g.png'), drange=[-1, 1], grid_size=(2, 2))
    out = np.asarray(PIL.Image.open(tmp_path / 'g.png'))
    assert out.shape == (4, 4, 3) and out[0, 0, 0] == 0 and out[0, 2, 0] == 128 and out[2, 0, 0] == 255
    assert out[2, 2, 0] == 191 # Rounded to nearest.
    image_grid.save_image_grid(grid[:, :1], str(tmp_path / 'd.png'), drange=[-1, 0.5], grid_size=(2, 2))
    assert PIL.Image.open(tmp_path / 'd.png').mode == 'L'
    assert not glob.glob(str(tmp_path / '.*')) # Written through temporary files that were renamed.

#----------------------------------------------------------------------------


def test_to_uint8_truncates_after_clamping(tmp_path):
    img = torch.tensor([-1.5, -1.0, -0.001, 0.0, 0.5, 0.999, 1.2]).reshape(1, 1, 1, 7).expand(1, 3, 1, 7)
    nchw = misc.to_uint8(img, channels_last=False)
    assert nchw.shape == (1, 3, 1, 7) and nchw[0, 0, 0].tolist() == [0, 0, 127, 128, 191, 255, 255]
    nhwc = misc.to_uint8(img)
    assert nhwc.shape == (1, 1, 7, 3) and torch.equal(nhwc[0, 0, :, 1], nchw[0, 1, 0])
    path = str(tmp_path / 'x.png')
    image_grid.save_png(path, nhwc[0].numpy())
    with PIL.Image.open(path) as png:
        assert png.mode == 'RGB' and np.array_equal(np.asarray(png), nhwc[0].numpy())


def test_grid_of_mirrored_cameras(tmp_path):
    dataset = dnnlib.util.construct_class_by_name(class_name='training.dataset.ImageFolderDataset',
                                                  path=make_dataset(tmp_path / 'd', num_images=5), use_labels=True,
                                                  xflip=True, mirror_cameras=True)
    (gw, gh), images, labels = image_grid.setup_snapshot_image_grid(dataset, grid_size=(2, 10))
    # Each x-flipped copy is its own group now, shown with (and rendered by the fakes from) the mirrored camera.
    rows = labels.reshape(gh, gw, 25)
    assert all((row == row[0]).all() for row in rows) and len({tuple(row[0]) for row in rows}) == 10
    raw = {tuple(dataset.get_details(i).raw_label): i for i in range(5)}
    for image, label in zip(images, labels):
        if tuple(label) in raw:
            np.testing.assert_array_equal(image, dataset[raw[tuple(label)]][0])
        else:
            original = raw[tuple(cameras.mirror_label(label).astype(np.float32))]
            np.testing.assert_array_equal(image, dataset[original][0][:, :, ::-1])
