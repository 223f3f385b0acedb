"""training/generation.py: device parsing, the generator loader, camera labels and image conversion."""

import importlib
import json
import os
import pickle
import types

import click
import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import camera_utils
from camera_utils import FOV_to_intrinsics, LookAtPoseSampler
from conftest import STATE_DICTS_DIR
from training import generation, presets


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


def _released(family, **extra):
    """A stand-in for a released generator: the rendering options of its original G_kwargs."""
    with open(os.path.join(STATE_DICTS_DIR, f'{family}_G_kwargs.json')) as f:
        rendering_kwargs = json.load(f)['rendering_kwargs']
    return types.SimpleNamespace(rendering_kwargs=dict(rendering_kwargs, **extra))


def test_released_pickles_get_their_familys_focal():
    assert [presets.family_of(_released(name).rendering_kwargs) for name in ('ffhq', 'afhq', 'shapenet')] == [
        'ffhq', 'afhq', 'shapenet']
    for name, focal, pivot, radius in [('ffhq', 4.2647, [0, 0, 0.2], 2.7), ('afhq', 4.2647, [0, 0, -0.06], 2.7),
                                       ('shapenet', 1.7074, [0, 0, 0], 1.7)]:
        camera = generation.snapshot_camera(_released(name))
        assert (camera.focal, camera.pivot, camera.radius) == (focal, pivot, radius)
        assert 'records no focal' in camera.source


def test_snapshot_camera_precedence():
    G = _released('shapenet', avg_camera_focal=2.0)  # What this project's training records.
    assert generation.snapshot_camera(G).focal == 2.0
    assert generation.snapshot_camera(G, cfg='FFHQ').focal == presets.FOCAL_FFHQ
    assert generation.snapshot_camera(G, cfg='FFHQ', fov_deg=18).focal == camera_utils.fov_to_focal(18)
    custom = _released('shapenet', avg_camera_radius=1.2)  # No preset, no focal: FFHQ's, and it says so.
    assert presets.family_of(custom.rendering_kwargs) is None
    camera = generation.snapshot_camera(custom)
    assert camera.focal == presets.FOCAL_FFHQ and 'matches no preset' in camera.source
    assert generation.describe_camera(camera).startswith('Camera: focal 4.2647 (18.831 degrees, FFHQ default;')


def test_degrees_are_the_originals():
    # One meaning of "degrees" for every tool: FOV_to_intrinsics' (gen_samples' old default 18 -> 4.465175).
    for degrees in (18, 18.837, 45, 100):
        assert generation.intrinsics_matrix(camera_utils.fov_to_focal(degrees)).tolist() == \
            FOV_to_intrinsics(degrees).tolist()
        assert camera_utils.focal_to_fov(camera_utils.fov_to_focal(degrees)) == pytest.approx(degrees, abs=1e-12)
    assert camera_utils.fov_to_focal(18) == pytest.approx(4.465175, abs=1e-6)


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


@pytest.mark.parametrize('tool', ['gen_samples', 'gen_videos', 'visualizer'])
def test_every_help_says_what_degrees_mean(tool):
    module = importlib.import_module(tool)
    command = next(value for value in vars(module).values() if isinstance(value, click.Command))
    text = ' '.join(CliRunner().invoke(command, ['--help']).output.split())
    assert 'FOV_to_intrinsics' in text and '1 / (1.414 tan(deg / 2)), not the true field of view' in text
