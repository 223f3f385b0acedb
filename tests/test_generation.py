"""inference/generation.py: device parsing, the generator loader, camera labels and image conversion."""

import pickle

import click
import numpy as np
import PIL.Image
import pytest
import torch

from camera_utils import LookAtPoseSampler
from inference import generation
from training import presets


def test_parse_device():
    assert generation.parse_device('cpu') == torch.device('cpu')
    assert generation.parse_device(None) == torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    with pytest.raises(ValueError, match='^"tpu" is not a torch device'):
        generation.parse_device('tpu')
    with pytest.raises(ValueError, match='only cpu and cuda'):
        generation.parse_device('meta')
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='CUDA is not available'):
            generation.parse_device('cuda:0')


def test_cameras_come_from_the_presets():
    assert generation.focal_length('Shapenet') == presets.FOCAL_SHAPENET
    assert generation.focal_length('afhq') == generation.focal_length('FFHQ') == presets.FOCAL_FFHQ
    pivot, radius = generation.camera_sphere(presets.rendering_preset('ffhq'))
    expected_pivot, expected_radius = presets.camera_orbit(presets.rendering_preset('ffhq'))
    assert pivot.tolist() == pytest.approx(expected_pivot) and radius == expected_radius
    pivot, radius = generation.camera_sphere({})
    assert pivot.tolist() == list(presets.DEFAULT_CAMERA_PIVOT) and radius == presets.DEFAULT_CAMERA_RADIUS


def test_camera_label_layout():
    intrinsics = generation.intrinsics_matrix(2.5)
    assert intrinsics.tolist() == [[2.5, 0, 0.5], [0, 2.5, 0.5], [0, 0, 1]]
    pivot = torch.tensor([0, 0, 0.2])
    label = generation.look_at_label(1.2, 1.4, pivot, 2.7, intrinsics)
    cam2world = LookAtPoseSampler.sample(1.2, 1.4, pivot, radius=2.7)
    assert label.shape == (1, 25)
    assert torch.equal(label[0, :16], cam2world.reshape(16)) and torch.equal(label[0, 16:], intrinsics.reshape(9))
    batch = generation.camera_label(cam2world.repeat(3, 1, 1), intrinsics)
    assert batch.shape == (3, 25) and torch.equal(batch[2], label[0])


def test_to_uint8_truncates_after_clamping(tmp_path):
    img = torch.tensor([-1.5, -1.0, -0.001, 0.0, 0.5, 0.999, 1.2]).reshape(1, 1, 1, 7).expand(1, 3, 1, 7)
    nchw = generation.to_uint8(img, channels_last=False)
    assert nchw.shape == (1, 3, 1, 7) and nchw[0, 0, 0].tolist() == [0, 0, 127, 128, 191, 255, 255]
    nhwc = generation.to_uint8(img)
    assert nhwc.shape == (1, 1, 7, 3) and torch.equal(nhwc[0, 0, :, 1], nchw[0, 1, 0])
    path = str(tmp_path / 'x.png')
    generation.save_png(path, nhwc[0].numpy())
    with PIL.Image.open(path) as png:
        assert png.mode == 'RGB' and np.array_equal(np.asarray(png), nhwc[0].numpy())


def test_load_generator_names_the_flag_and_file(tmp_path, monkeypatch):
    junk = tmp_path / 'junk.pkl'
    junk.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(click.ClickException, match=f'^--network: {junk}: not a network snapshot'):
        generation.load_generator(str(junk), 'cpu')
    with pytest.raises(click.ClickException, match=f'^--data-net: {junk}: not a network snapshot'):
        generation.open_snapshot(str(junk), flag='--data-net')

    class NotEG3D(torch.nn.Module):
        c_dim = 0
    monkeypatch.setattr(generation.network_pickle, 'open_network_pkl', lambda path, **kwargs: dict(G_ema=NotEG3D()))
    with pytest.raises(click.ClickException, match='^--net: x.pkl: G_ema is a NotEG3D, not an EG3D generator'):
        generation.load_generator('x.pkl', 'cpu', flag='--net')
