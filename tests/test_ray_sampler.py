"""RaySampler against tests/data/golden/cameras.npz (rays_0, rays_1; tolerance 1e-6)."""

import os
import pickle

import numpy as np
import pytest
import torch
from helpers import GOLDEN_DIR

from training.volumetric_rendering.ray_sampler import RaySampler


@pytest.fixture(scope='module')
def golden():
    return np.load(os.path.join(GOLDEN_DIR, 'cameras.npz'))

@pytest.mark.parametrize('key, resolution', [('rays_0', 4), ('rays_1', 7)])
def test_rays_match_golden(golden, key, resolution):
    origins, directions = RaySampler()(torch.from_numpy(golden[f'{key}.cam2world']), torch.from_numpy(golden[f'{key}.intrinsics']), resolution)
    for name, actual in [('ray_origins', origins), ('ray_directions', directions)]:
        expected = golden[f'{key}.{name}']
        assert tuple(actual.shape) == expected.shape
        assert np.abs(actual.numpy() - expected).max() <= 1e-6, name

def test_pixel_order_and_principal_ray():
    # Identity pose, centred principal point: the ray through the image centre is +z, and ray
    # m = row * R + col, with columns moving along +x and rows along +y (OpenCV).
    R = 5
    intrinsics = torch.tensor([[[2.0, 0, 0.5], [0, 2.0, 0.5], [0, 0, 1]]])
    origins, directions = RaySampler()(torch.eye(4)[None], intrinsics, R)
    assert origins.shape == directions.shape == (1, R * R, 3)
    assert torch.allclose(directions.norm(dim=-1), torch.ones(1, R * R))
    assert torch.allclose(directions[0, 2 * R + 2], torch.tensor([0., 0., 1.]))
    assert directions[0, 2 * R + 3, 0] > 0 and directions[0, 3 * R + 2, 1] > 0

def test_pickled_attributes():
    sampler = pickle.loads(pickle.dumps(RaySampler()))
    for name in ['ray_origins_h', 'ray_directions', 'depths', 'image_coords', 'rendering_options']:
        assert getattr(sampler, name) is None
    assert not list(sampler.parameters()) and not list(sampler.buffers())

def test_rejects_bad_shapes():
    with pytest.raises(AssertionError, match='intrinsics'):
        RaySampler()(torch.eye(4)[None], torch.eye(3), 4)
