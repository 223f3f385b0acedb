"""camera_utils against the official outputs in tests/data/golden/cameras.npz (tolerance 1e-6)."""

import json
import math
import os

import numpy as np
import pytest
import torch
from conftest import GOLDEN_DIR

import camera_utils

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

#----------------------------------------------------------------------------
# Mirrored cameras (shared by training/dataset.py and dataset_preprocessing/mirror_dataset.py).

def test_mirror_cam2world_spec_example():
    # The yaw +0.4 camera mirrors into the yaw -0.4 camera.
    pose = np.array([[0.90846, 0.05705, -0.41407, 1.04287], [0.0, -0.99064, -0.13649, 0.34377],
                     [-0.41798, 0.12400, -0.89995, 2.46662], [0, 0, 0, 1]])
    ref = np.array([[0.90846, -0.05705, 0.41407, -1.04287], [-0.0, -0.99064, -0.13649, 0.34377],
                    [0.41798, 0.12400, -0.89995, 2.46662], [0, 0, 0, 1]])
    np.testing.assert_array_equal(camera_utils.mirror_cam2world(pose), ref)
    np.testing.assert_array_equal(camera_utils.mirror_cam2world(np.stack([pose, ref])), np.stack([ref, pose]))

def test_mirror_label_batches_and_intrinsics():
    pose = camera_utils.LookAtPoseSampler.sample(math.pi / 2 + 0.3, math.pi / 2 - 0.2, torch.tensor([0.1, 0, 0.2]),
                                                 radius=2.7)[0].numpy()
    intrinsics = np.array([[4.2647, 0.01, 0.52], [0, 4.2647, 0.5], [0, 0, 1]])
    label = np.concatenate([pose.reshape(16), intrinsics.reshape(9)])
    mirrored = camera_utils.mirror_label(np.stack([label, label]))
    assert mirrored.shape == (2, 25) and mirrored.dtype == np.float64
    np.testing.assert_array_equal(mirrored[0], mirrored[1])
    np.testing.assert_array_equal(camera_utils.mirror_label(mirrored[0]), label)
    rotation = mirrored[0, :16].reshape(4, 4)[:3, :3]
    assert np.linalg.det(rotation) == pytest.approx(1, abs=1e-6)  # Still a proper rotation.
    np.testing.assert_allclose(mirrored[0, 16:], [4.2647, -0.01, 0.48, 0, 4.2647, 0.5, 0, 0, 1], atol=1e-15)
    # The camera that orbits the mirrored pivot from the mirrored yaw.
    expect = camera_utils.LookAtPoseSampler.sample(math.pi / 2 - 0.3, math.pi / 2 - 0.2, torch.tensor([-0.1, 0, 0.2]),
                                                   radius=2.7)[0].numpy()
    np.testing.assert_allclose(mirrored[0, :16].reshape(4, 4), expect, atol=1e-6)
    with pytest.raises(ValueError, match='25-number'):
        camera_utils.mirror_label(np.zeros(16))
