"""Camera pose samplers and intrinsics helpers.

Poses are 4x4 cam2world matrices with OpenCV camera axes (+x right, +y down, +z forward) in a
world frame with +y up. Cameras sit on a sphere and are parameterised by a yaw-like angle
`horizontal` (pi/2 = on the +z axis, larger values move toward +x) and a pitch-like `vertical`
in (0, pi) (pi/2 = equator, smaller values raise the camera; the height is linear in it).
"""

import math

import numpy as np
import torch

from training.volumetric_rendering import math_utils

#----------------------------------------------------------------------------

def _orbit_origins(horizontal, vertical, radius):
    """Camera centres [B,3] on a sphere of the given radius around the world origin."""
    vertical = torch.clamp(vertical, 1e-5, math.pi - 1e-5)
    phi = torch.arccos(1 - 2 * (vertical / math.pi))
    theta = math.pi - horizontal
    x = radius * torch.sin(phi) * torch.cos(theta)
    y = radius * torch.cos(phi)
    z = radius * torch.sin(phi) * torch.sin(theta)
    return torch.cat([x, y, z], dim=-1)

def _look_at(origins, lookat_position):
    return create_cam2world_matrix(math_utils.normalize_vecs(lookat_position - origins), origins)

#----------------------------------------------------------------------------

class GaussianCameraPoseSampler:
    """Yaw and pitch drawn from normal distributions; the camera looks at the world origin."""

    @staticmethod
    def sample(horizontal_mean, vertical_mean, horizontal_stddev=0, vertical_stddev=0, radius=1, batch_size=1, device='cpu'):
        # Both draws always happen (even for zero stddev) so the global RNG advances predictably.
        h = torch.randn((batch_size, 1), device=device) * horizontal_stddev + horizontal_mean
        v = torch.randn((batch_size, 1), device=device) * vertical_stddev + vertical_mean
        origins = _orbit_origins(h, v, radius)
        return _look_at(origins, torch.zeros_like(origins))

#----------------------------------------------------------------------------

class LookAtPoseSampler:
    """Like GaussianCameraPoseSampler, but the camera looks at `lookat_position` (a [3] tensor)."""

    @staticmethod
    def sample(horizontal_mean, vertical_mean, lookat_position, horizontal_stddev=0, vertical_stddev=0, radius=1, batch_size=1, device='cpu'):
        h = torch.randn((batch_size, 1), device=device) * horizontal_stddev + horizontal_mean
        v = torch.randn((batch_size, 1), device=device) * vertical_stddev + vertical_mean
        origins = _orbit_origins(h, v, radius)
        return _look_at(origins, lookat_position)

#----------------------------------------------------------------------------

class UniformCameraPoseSampler:
    """Yaw and pitch drawn uniformly from mean +- stddev; the camera looks at the world origin."""

    @staticmethod
    def sample(horizontal_mean, vertical_mean, horizontal_stddev=0, vertical_stddev=0, radius=1, batch_size=1, device='cpu'):
        h = (torch.rand((batch_size, 1), device=device) * 2 - 1) * horizontal_stddev + horizontal_mean
        v = (torch.rand((batch_size, 1), device=device) * 2 - 1) * vertical_stddev + vertical_mean
        origins = _orbit_origins(h, v, radius)
        return _look_at(origins, torch.zeros_like(origins))

#----------------------------------------------------------------------------

def create_cam2world_matrix(forward_vector, origin):
    """forward_vector [B,3] (viewing direction), origin [B,3] (camera centre) -> cam2world [B,4,4].

    The camera's x axis is horizontal (world +y is the reference up), so image up is world up.
    """
    forward = math_utils.normalize_vecs(forward_vector)
    world_up = torch.tensor([0, 1, 0], dtype=torch.float32, device=origin.device).expand_as(forward)
    right = -math_utils.normalize_vecs(torch.linalg.cross(world_up, forward, dim=-1))
    up = math_utils.normalize_vecs(torch.linalg.cross(forward, right, dim=-1))

    cam2world = torch.eye(4, device=origin.device).repeat(forward.shape[0], 1, 1)
    cam2world[:, :3, :3] = torch.stack([right, up, forward], dim=-1)
    cam2world[:, :3, 3] = origin
    return cam2world

#----------------------------------------------------------------------------

def fov_to_focal(fov_degrees):
    """Normalized focal length of an angle of view in degrees, as every tool of this repository reads them.

    The truncated constants 3.14159 and 1.414 (instead of pi and 2) are the original's: the released cameras
    were made with them. So this is not the true field of view, which is 2 * atan(1 / (2 * focal)).
    """
    return float(1 / (math.tan(fov_degrees * 3.14159 / 360) * 1.414))

def focal_to_fov(focal):
    """Inverse of fov_to_focal()."""
    return math.atan(1 / (focal * 1.414)) * 360 / 3.14159

def FOV_to_intrinsics(fov_degrees, device='cpu'):
    """Normalized intrinsics [3,3] for a square image with the given angle of view (fov_to_focal's degrees)."""
    focal = fov_to_focal(fov_degrees)
    return torch.tensor([[focal, 0, 0.5], [0, focal, 0.5], [0, 0, 1]], device=device)

#----------------------------------------------------------------------------

# Mirroring an image left-right is the same as reflecting the world in the plane x = 0 and looking at it
# with the reflected camera, whose x axis is negated again so that the rotation stays proper.

_REFLECT_X = np.diag([-1.0, 1.0, 1.0, 1.0])

def mirror_cam2world(cam2world):
    """cam2world [..., 4, 4] of the left-right mirrored image: S P S with S = diag(-1, 1, 1, 1), i.e. entries
    (0,1), (0,2), (0,3), (1,0) and (2,0) change sign. Returns float64."""
    return _REFLECT_X @ np.asarray(cam2world, dtype=np.float64) @ _REFLECT_X

def mirror_intrinsics(intrinsics):
    """Normalised intrinsics [..., 3, 3] of the mirrored image: the principal point x becomes 1 - x and the skew
    changes sign (no change for the usual cx = 0.5 and zero skew). Returns float64."""
    flipped = np.array(intrinsics, dtype=np.float64)
    flipped[..., 0, 1] = -flipped[..., 0, 1]
    flipped[..., 0, 2] = 1.0 - flipped[..., 0, 2]
    return flipped

def mirror_label(label):
    """The 25-number EG3D label [..., 25] (cam2world 4x4 + intrinsics 3x3, row-major) of the mirrored image,
    as float64. Mirroring twice gives the label back."""
    label = np.asarray(label, dtype=np.float64)
    if label.shape[-1:] != (25,):
        raise ValueError(f'expected 25-number camera labels, got shape {list(label.shape)}')
    batch = label.shape[:-1]
    cam2world = mirror_cam2world(label[..., :16].reshape(*batch, 4, 4))
    intrinsics = mirror_intrinsics(label[..., 16:].reshape(*batch, 3, 3))
    return np.concatenate([cam2world.reshape(*batch, 16), intrinsics.reshape(*batch, 9)], axis=-1)

#----------------------------------------------------------------------------
