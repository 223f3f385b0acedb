"""The original EG3D camera module, kept under its name for user scripts: everything lives in training/cameras.py."""

from training.cameras import (  # noqa: F401
    FOV_to_intrinsics,
    GaussianCameraPoseSampler,
    LookAtPoseSampler,
    UniformCameraPoseSampler,
    create_cam2world_matrix,
)
from training.volumetric_rendering import math_utils  # noqa: F401
