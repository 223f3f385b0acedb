"""Cameras: the label layout, the focal constants, pose samplers, look-at and orbit helpers, intrinsics.

A label is LABEL_DIM = 25 numbers: cam2world (4x4, row-major) then the intrinsics divided by the image size
(3x3). Poses are cam2world matrices with OpenCV camera axes (+x right, +y down, +z forward) in a world frame
with +y up. The scripts' cameras sit on a sphere and are parameterised by a yaw-like angle `horizontal`
(pi/2 = on the +z axis, larger values move toward +x) and a pitch-like `vertical` in (0, pi) (pi/2 = equator,
smaller values raise the camera; the height is linear in it).

NumPy variants (lookat_cam2world, make_label, mirror_label: dataset tools, the dataset's x-flips and tests) and torch variants (samplers, labels for
the generator) sit side by side. The torch functions import torch when called, so that the dataset checks,
which use only the constants and NumPy, start without it. camera_utils.py re-exports the original API.
"""

import math

import numpy as np

import dnnlib
from training import presets

LABEL_DIM = 25  # cam2world (16, row-major) followed by the normalised intrinsics (9).

# Focal lengths in units of the image size: FFHQ/AFHQ (2985.29 / 700) and the ShapeNet cars' wider view.
FOCAL_FFHQ = 4.2647
FOCAL_SHAPENET = 1.7074

# Focal length of each preset's datasets: the generation tools render a network of that preset with it when the
# network records no focal of its own (the released pickles).
PRESET_FOCAL = dict(ffhq=FOCAL_FFHQ, afhq=FOCAL_FFHQ, shapenet=FOCAL_SHAPENET)

# What "degrees" means for every tool's field of view: fov_to_focal()'s convention.
DEGREES_NOTE = "focal = 1 / (1.414 tan(deg / 2)), not the true field of view: docs/cameras.md"

# The video trajectory uses 3.14 for pi (so does the keyframe camera): released videos were rendered this way.
HALF_TURN = 3.14

#----------------------------------------------------------------------------
# Focal lengths and intrinsics.

def focal_length(cfg: str) -> float:
    """Normalised focal length of a dataset family (FFHQ, AFHQ, Shapenet; any case)."""
    return PRESET_FOCAL[cfg.lower()]

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
    import torch
    focal = fov_to_focal(fov_degrees)
    return torch.tensor([[focal, 0, 0.5], [0, focal, 0.5], [0, 0, 1]], device=device)

def intrinsics_matrix(focal: float, device='cpu'):
    """[3, 3] float32 normalised intrinsics with principal point (0.5, 0.5)."""
    import torch
    return torch.tensor([[focal, 0, 0.5], [0, focal, 0.5], [0, 0, 1]], dtype=torch.float32, device=device)

#----------------------------------------------------------------------------
# NumPy: labels of dataset.json files.

def lookat_cam2world(position, target=(0, 0, 0), up=(0, 1, 0)) -> np.ndarray:
    """float64 cam2world [4, 4] (OpenCV axes) of a camera at `position` looking at `target`, image-up toward `up`."""
    position, target, up = (np.asarray(v, dtype=np.float64) for v in (position, target, up))
    forward = (target - position) / np.linalg.norm(target - position)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, np.cross(forward, right), forward], axis=1)
    pose[:3, 3] = position
    return pose

def make_label(cam2world, focal=FOCAL_FFHQ, cx=0.5, cy=0.5) -> list:
    """The LABEL_DIM numbers of a dataset.json label for a cam2world matrix and normalised intrinsics."""
    intrinsics = np.array([[focal, 0, cx], [0, focal, cy], [0, 0, 1]])
    return np.asarray(cam2world, dtype=np.float64).reshape(16).tolist() + intrinsics.reshape(9).tolist()

#----------------------------------------------------------------------------
# NumPy: mirrored images. Mirroring an image left-right is the same as reflecting the world in the plane x = 0
# and looking at it with the reflected camera, whose x axis is negated again so that the rotation stays proper.

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
    """The label [..., LABEL_DIM] of the mirrored image, as float64. Mirroring twice gives the label back."""
    label = np.asarray(label, dtype=np.float64)
    if label.shape[-1:] != (LABEL_DIM,):
        raise ValueError(f'expected {LABEL_DIM}-number camera labels, got shape {list(label.shape)}')
    batch = label.shape[:-1]
    cam2world = mirror_cam2world(label[..., :16].reshape(*batch, 4, 4))
    intrinsics = mirror_intrinsics(label[..., 16:].reshape(*batch, 3, 3))
    return np.concatenate([cam2world.reshape(*batch, 16), intrinsics.reshape(*batch, 9)], axis=-1)

#----------------------------------------------------------------------------
# torch: poses on the camera sphere.

def _orbit_origins(horizontal, vertical, radius):
    """Camera centres [B,3] on a sphere of the given radius around the world origin."""
    import torch
    vertical = torch.clamp(vertical, 1e-5, math.pi - 1e-5)
    phi = torch.arccos(1 - 2 * (vertical / math.pi))
    theta = math.pi - horizontal
    x = radius * torch.sin(phi) * torch.cos(theta)
    y = radius * torch.cos(phi)
    z = radius * torch.sin(phi) * torch.sin(theta)
    return torch.cat([x, y, z], dim=-1)

def _normalize(vectors):
    from training.volumetric_rendering import math_utils
    return math_utils.normalize_vecs(vectors)

def _look_at(origins, lookat_position):
    return create_cam2world_matrix(_normalize(lookat_position - origins), origins)

def _draw_angles(draw, horizontal_mean, vertical_mean, horizontal_stddev, vertical_stddev, batch_size, device):
    # Both draws always happen (even for zero stddev) so the global RNG advances predictably.
    h = draw((batch_size, 1), device=device) * horizontal_stddev + horizontal_mean
    v = draw((batch_size, 1), device=device) * vertical_stddev + vertical_mean
    return h, v

def _looking_at_origin(draw, horizontal_mean, vertical_mean, horizontal_stddev, vertical_stddev, radius, batch_size,
                       device):
    h, v = _draw_angles(draw, horizontal_mean, vertical_mean, horizontal_stddev, vertical_stddev, batch_size, device)
    origins = _orbit_origins(h, v, radius)
    return _look_at(origins, origins.new_zeros(origins.shape))

def _uniform(shape, device):
    import torch
    return torch.rand(shape, device=device) * 2 - 1

def _gaussian(shape, device):
    import torch
    return torch.randn(shape, device=device)

class GaussianCameraPoseSampler:
    """Yaw and pitch drawn from normal distributions; the camera looks at the world origin."""

    @staticmethod
    def sample(horizontal_mean, vertical_mean, horizontal_stddev=0, vertical_stddev=0, radius=1, batch_size=1, device='cpu'):
        return _looking_at_origin(_gaussian, horizontal_mean, vertical_mean, horizontal_stddev, vertical_stddev, radius,
                                  batch_size, device)

class LookAtPoseSampler:
    """Like GaussianCameraPoseSampler, but the camera looks at `lookat_position` (a [3] tensor)."""

    @staticmethod
    def sample(horizontal_mean, vertical_mean, lookat_position, horizontal_stddev=0, vertical_stddev=0, radius=1, batch_size=1, device='cpu'):
        h, v = _draw_angles(_gaussian, horizontal_mean, vertical_mean, horizontal_stddev, vertical_stddev, batch_size, device)
        return _look_at(_orbit_origins(h, v, radius), lookat_position)

class UniformCameraPoseSampler:
    """Yaw and pitch drawn uniformly from mean +- stddev; the camera looks at the world origin."""

    @staticmethod
    def sample(horizontal_mean, vertical_mean, horizontal_stddev=0, vertical_stddev=0, radius=1, batch_size=1, device='cpu'):
        return _looking_at_origin(_uniform, horizontal_mean, vertical_mean, horizontal_stddev, vertical_stddev, radius,
                                  batch_size, device)

def create_cam2world_matrix(forward_vector, origin):
    """forward_vector [B,3] (viewing direction), origin [B,3] (camera centre) -> cam2world [B,4,4].

    The camera's x axis is horizontal (world +y is the reference up), so image up is world up.
    """
    import torch
    forward = _normalize(forward_vector)
    world_up = torch.tensor([0, 1, 0], dtype=torch.float32, device=origin.device).expand_as(forward)
    right = -_normalize(torch.linalg.cross(world_up, forward, dim=-1))
    up = _normalize(torch.linalg.cross(forward, right, dim=-1))

    cam2world = torch.eye(4, device=origin.device).repeat(forward.shape[0], 1, 1)
    cam2world[:, :3, :3] = torch.stack([right, up, forward], dim=-1)
    cam2world[:, :3, 3] = origin
    return cam2world

#----------------------------------------------------------------------------
# The camera of a snapshot.

def snapshot_camera(G, cfg: str = None, fov_deg: float = None) -> dnnlib.EasyDict:
    """The camera the tools render a generator with by default: focal, pivot [3], radius, and where the focal came from.

    Pivot and radius are the snapshot's avg_camera_pivot and avg_camera_radius. The focal is, in order: --fov-deg
    or --cfg when given; the avg_camera_focal that this project's training records; for pickles that record
    none (the released ones), the focal of the dataset family whose rendering preset the snapshot matches.
    """
    pivot, radius = presets.camera_orbit(G.rendering_kwargs)
    recorded = G.rendering_kwargs.get('avg_camera_focal')
    family = presets.family_of(G.rendering_kwargs)
    if fov_deg is not None:
        focal, source = fov_to_focal(fov_deg), f'--fov-deg={fov_deg:g}'
    elif cfg is not None:
        focal, source = focal_length(cfg), f'--cfg={cfg}'
    elif recorded is not None:
        focal, source = float(recorded), 'recorded in the snapshot'
    elif family is not None:
        focal, source = PRESET_FOCAL[family], f'{family} preset; the snapshot records no focal'
    else:
        focal, source = FOCAL_FFHQ, 'FFHQ default; the snapshot records no focal and matches no preset'
    return dnnlib.EasyDict(focal=focal, pivot=pivot, radius=radius, source=source)

def describe_camera(camera: dnnlib.EasyDict) -> str:
    """One line for the tools' output: the camera they render with and where its focal comes from."""
    return (f'Camera: focal {camera.focal:.4f} ({focal_to_fov(camera.focal):.3f} degrees, {camera.source}), '
            f'radius {camera.radius:g}, pivot {[round(v, 4) for v in camera.pivot]}')

#----------------------------------------------------------------------------
# torch: generator labels.

def camera_sphere(rendering_kwargs: dict, device='cpu') -> tuple:
    """(pivot [3] tensor, radius) of the sphere the scripts' cameras move on, from a generator's rendering options."""
    import torch
    pivot, radius = presets.camera_orbit(rendering_kwargs)
    return torch.tensor(pivot, dtype=torch.float32, device=device), radius

def camera_label(cam2world, intrinsics):
    """cam2world [B, 4, 4] and one intrinsics [3, 3] -> generator labels [B, LABEL_DIM]."""
    import torch
    cam2world = cam2world.reshape(-1, 16)
    assert intrinsics.numel() == 9, f'intrinsics of shape {tuple(intrinsics.shape)}'
    intrinsics = intrinsics.reshape(1, 9).to(cam2world).expand(len(cam2world), 9)
    return torch.cat([cam2world, intrinsics], dim=1)

def look_at_label(yaw: float, pitch: float, pivot, radius: float, intrinsics):
    """Label [1, LABEL_DIM] of a camera at (yaw, pitch) on the sphere, looking at the pivot (LookAtPoseSampler angles)."""
    cam2world = LookAtPoseSampler.sample(yaw, pitch, pivot, radius=radius, device=pivot.device)
    return camera_label(cam2world, intrinsics)

def orbit_camera(frame_idx, num_frames, pivot, radius, device):
    """cam2world [1, 4, 4] of the video trajectory: a yaw swing of +-0.35 and a pitch swing of +-0.25 per loop."""
    phase = 2 * HALF_TURN * frame_idx / num_frames
    yaw = HALF_TURN / 2 + 0.35 * np.sin(phase)
    pitch = HALF_TURN / 2 - 0.05 + 0.25 * np.cos(phase)
    return LookAtPoseSampler.sample(yaw, pitch, pivot, radius=radius, device=device)

#----------------------------------------------------------------------------
