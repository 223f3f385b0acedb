"""training/cameras.py: the original camera_utils API against the official outputs in tests/data/golden/cameras.npz
(tolerance 1e-6), the label layout, and the NumPy and torch variants against each other."""

import importlib
import json
import math
import os
import types

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import GOLDEN_DIR, STATE_DICTS_DIR

import camera_utils
from training import cameras, presets

TOL = 1e-6

with open(os.path.join(GOLDEN_DIR, 'cameras.json')) as _f:
    CAMERAS = json.load(_f)

@pytest.fixture(scope='module')
def golden():
    return np.load(os.path.join(GOLDEN_DIR, 'cameras.npz'))

def _max_err(actual, expected):
    assert tuple(actual.shape) == expected.shape
    return float(np.abs(actual.numpy().astype(np.float64) - expected).max())

#----------------------------------------------------------------------------

@pytest.mark.parametrize('case', CAMERAS['samplers'], ids=lambda c: c['key'])
def test_pose_samplers_match_golden(case, golden):
    sampler = getattr(camera_utils, case['fn'].split('.')[0])
    args = dict(case['args'])
    if 'lookat_position' in args:
        args['lookat_position'] = torch.tensor(args['lookat_position'], dtype=torch.float32)
    torch.manual_seed(case['seed'])
    poses = sampler.sample(**args)
    assert poses.dtype == torch.float32
    assert _max_err(poses, golden[case['key']]) <= TOL

@pytest.mark.parametrize('case', CAMERAS['intrinsics'], ids=lambda c: c['key'])
def test_fov_to_intrinsics_matches_golden(case, golden):
    assert _max_err(camera_utils.FOV_to_intrinsics(case['fov_degrees']), golden[case['key']]) <= TOL

@pytest.mark.parametrize('case', CAMERAS['cam2world'], ids=lambda c: c['key'])
def test_create_cam2world_matrix_matches_golden(case, golden):
    pose = camera_utils.create_cam2world_matrix(torch.tensor(case['forward_vector']), torch.tensor(case['origin']))
    assert _max_err(pose, golden[case['key']]) <= TOL

#----------------------------------------------------------------------------

def test_focal_factor_quirk():
    # Truncated pi and sqrt(2): 18.837 deg -> 4.263391; gen_samples' effective default 18 -> 4.465175.
    assert camera_utils.FOV_to_intrinsics(18.837)[0, 0].item() == pytest.approx(4.263391, abs=1e-6)
    assert camera_utils.FOV_to_intrinsics(18)[1, 1].item() == pytest.approx(4.465175, abs=1e-6)
    exact = 1 / (math.tan(math.radians(18.837) / 2) * math.sqrt(2))
    assert abs(camera_utils.FOV_to_intrinsics(18.837)[0, 0].item() - exact) > 1e-5

@pytest.mark.parametrize('sampler, draw', [
    (camera_utils.GaussianCameraPoseSampler, torch.randn),
    (camera_utils.UniformCameraPoseSampler, torch.rand),
])
def test_samplers_draw_twice_even_with_zero_stddev(sampler, draw):
    torch.manual_seed(3)
    sampler.sample(math.pi / 2, math.pi / 2, radius=2, batch_size=3)
    after = torch.rand(4)
    torch.manual_seed(3)
    draw(3, 1)
    draw(3, 1)
    assert torch.equal(after, torch.rand(4))

def test_frontal_camera_axes():
    # (pi/2, pi/2) puts the camera on +z looking at the origin with OpenCV axes and image up = world +y.
    pose = camera_utils.LookAtPoseSampler.sample(math.pi / 2, math.pi / 2, torch.zeros(3), radius=2.7)[0]
    expected = torch.tensor([[1, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 2.7], [0, 0, 0, 1]], dtype=torch.float32)
    assert torch.allclose(pose, expected, atol=1e-6)
    rotation = pose[:3, :3]
    assert torch.allclose(rotation @ rotation.T, torch.eye(3), atol=1e-6)

#----------------------------------------------------------------------------

def test_cameras_come_from_the_presets():
    assert cameras.focal_length('Shapenet') == cameras.FOCAL_SHAPENET
    assert cameras.focal_length('afhq') == cameras.focal_length('FFHQ') == cameras.FOCAL_FFHQ
    pivot, radius = cameras.camera_sphere(presets.rendering_preset('ffhq'))
    expected_pivot, expected_radius = presets.camera_orbit(presets.rendering_preset('ffhq'))
    assert pivot.tolist() == pytest.approx(expected_pivot) and radius == expected_radius
    pivot, radius = cameras.camera_sphere({})
    assert pivot.tolist() == list(presets.DEFAULT_CAMERA_PIVOT) and radius == presets.DEFAULT_CAMERA_RADIUS

def test_camera_label_layout():
    intrinsics = cameras.intrinsics_matrix(2.5)
    assert intrinsics.tolist() == [[2.5, 0, 0.5], [0, 2.5, 0.5], [0, 0, 1]]
    pivot = torch.tensor([0, 0, 0.2])
    label = cameras.look_at_label(1.2, 1.4, pivot, 2.7, intrinsics)
    cam2world = cameras.LookAtPoseSampler.sample(1.2, 1.4, pivot, radius=2.7)
    assert label.shape == (1, 25)
    assert torch.equal(label[0, :16], cam2world.reshape(16)) and torch.equal(label[0, 16:], intrinsics.reshape(9))
    batch = cameras.camera_label(cam2world.repeat(3, 1, 1), intrinsics)
    assert batch.shape == (3, 25) and torch.equal(batch[2], label[0])

def test_camera_utils_keeps_the_original_api():
    for name in ('GaussianCameraPoseSampler', 'LookAtPoseSampler', 'UniformCameraPoseSampler', 'create_cam2world_matrix',
                 'FOV_to_intrinsics'):
        assert getattr(camera_utils, name) is getattr(cameras, name)
    assert camera_utils.math_utils.normalize_vecs(torch.tensor([[3.0, 4.0, 0.0]]))[0].tolist() == pytest.approx([0.6, 0.8, 0])

def test_numpy_and_torch_look_at_agree():
    pivot = torch.tensor([0.0, 0.0, 0.2])
    pose = cameras.LookAtPoseSampler.sample(math.pi / 2 + 0.4, math.pi / 2 - 0.2, pivot, radius=2.7)[0]
    same = cameras.lookat_cam2world(pose[:3, 3].numpy(), pivot.numpy())
    assert np.abs(same - pose.numpy()).max() < 1e-5
    label = cameras.make_label(same, focal=cameras.focal_length('ffhq'))
    assert len(label) == cameras.LABEL_DIM
    torch_label = cameras.camera_label(pose[None], cameras.intrinsics_matrix(cameras.FOCAL_FFHQ))[0]
    assert np.abs(np.array(label) - torch_label.numpy()).max() < 1e-5

#----------------------------------------------------------------------------
# Mirrored cameras (shared by training/dataset.py and dataset_preprocessing/mirror_dataset.py).

def test_mirror_cam2world_spec_example():
    # The yaw +0.4 camera mirrors into the yaw -0.4 camera.
    pose = np.array([[0.90846, 0.05705, -0.41407, 1.04287], [0.0, -0.99064, -0.13649, 0.34377],
                     [-0.41798, 0.12400, -0.89995, 2.46662], [0, 0, 0, 1]])
    ref = np.array([[0.90846, -0.05705, 0.41407, -1.04287], [-0.0, -0.99064, -0.13649, 0.34377],
                    [0.41798, 0.12400, -0.89995, 2.46662], [0, 0, 0, 1]])
    np.testing.assert_array_equal(cameras.mirror_cam2world(pose), ref)
    np.testing.assert_array_equal(cameras.mirror_cam2world(np.stack([pose, ref])), np.stack([ref, pose]))

def test_mirror_label_batches_and_intrinsics():
    pose = cameras.LookAtPoseSampler.sample(math.pi / 2 + 0.3, math.pi / 2 - 0.2, torch.tensor([0.1, 0, 0.2]),
                                            radius=2.7)[0].numpy()
    intrinsics = np.array([[4.2647, 0.01, 0.52], [0, 4.2647, 0.5], [0, 0, 1]])
    label = np.concatenate([pose.reshape(16), intrinsics.reshape(9)])
    mirrored = cameras.mirror_label(np.stack([label, label]))
    assert mirrored.shape == (2, 25) and mirrored.dtype == np.float64
    np.testing.assert_array_equal(mirrored[0], mirrored[1])
    np.testing.assert_array_equal(cameras.mirror_label(mirrored[0]), label)
    rotation = mirrored[0, :16].reshape(4, 4)[:3, :3]
    assert np.linalg.det(rotation) == pytest.approx(1, abs=1e-6)  # Still a proper rotation.
    np.testing.assert_allclose(mirrored[0, 16:], [4.2647, -0.01, 0.48, 0, 4.2647, 0.5, 0, 0, 1], atol=1e-15)
    # The camera that orbits the mirrored pivot from the mirrored yaw.
    expect = cameras.LookAtPoseSampler.sample(math.pi / 2 - 0.3, math.pi / 2 - 0.2, torch.tensor([-0.1, 0, 0.2]),
                                              radius=2.7)[0].numpy()
    np.testing.assert_allclose(mirrored[0, :16].reshape(4, 4), expect, atol=1e-6)
    with pytest.raises(ValueError, match='25-number'):
        cameras.mirror_label(np.zeros(16))

#----------------------------------------------------------------------------
# The camera of a snapshot, and what "degrees" means.

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
        camera = cameras.snapshot_camera(_released(name))
        assert (camera.focal, camera.pivot, camera.radius) == (focal, pivot, radius)
        assert 'records no focal' in camera.source

def test_snapshot_camera_precedence():
    G = _released('shapenet', avg_camera_focal=2.0)  # What this project's training records.
    assert cameras.snapshot_camera(G).focal == 2.0
    assert cameras.snapshot_camera(G, cfg='FFHQ').focal == cameras.FOCAL_FFHQ
    assert cameras.snapshot_camera(G, cfg='FFHQ', fov_deg=18).focal == cameras.fov_to_focal(18)
    custom = _released('shapenet', avg_camera_radius=1.2)  # No preset, no focal: FFHQ's, and it says so.
    assert presets.family_of(custom.rendering_kwargs) is None
    camera = cameras.snapshot_camera(custom)
    assert camera.focal == cameras.FOCAL_FFHQ and 'matches no preset' in camera.source
    assert cameras.describe_camera(camera).startswith('Camera: focal 4.2647 (18.831 degrees, FFHQ default;')

def test_degrees_are_the_originals():
    # One meaning of "degrees" for every tool: FOV_to_intrinsics' (gen_samples' old default 18 -> 4.465175).
    for degrees in (18, 18.837, 45, 100):
        assert cameras.intrinsics_matrix(cameras.fov_to_focal(degrees)).tolist() == \
            cameras.FOV_to_intrinsics(degrees).tolist()
        assert cameras.focal_to_fov(cameras.fov_to_focal(degrees)) == pytest.approx(degrees, abs=1e-12)
    assert cameras.fov_to_focal(18) == pytest.approx(4.465175, abs=1e-6)

@pytest.mark.parametrize('tool', ['gen_samples', 'gen_videos', 'visualizer'])
def test_every_help_says_what_degrees_mean(tool):
    module = importlib.import_module(tool)
    command = next(value for value in vars(module).values() if isinstance(value, click.Command))
    text = ' '.join(CliRunner().invoke(command, ['--help']).output.split())
    assert 'FOV_to_intrinsics' in text and '1 / (1.414 tan(deg / 2)), not the true field of view' in text
