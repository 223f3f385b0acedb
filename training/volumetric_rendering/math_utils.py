"""Small vector and ray helpers shared by the renderer and the camera utilities."""

import torch

#----------------------------------------------------------------------------

def normalize_vecs(vectors: torch.Tensor) -> torch.Tensor:
    """Scale vectors along the last axis to unit length (no epsilon: zero vectors give NaN)."""
    return vectors / torch.norm(vectors, dim=-1, keepdim=True)

#----------------------------------------------------------------------------

def torch_dot(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Dot product along the last axis."""
    return (x * y).sum(-1)

#----------------------------------------------------------------------------

def linspace(start: torch.Tensor, stop: torch.Tensor, num: int) -> torch.Tensor:
    """Per-element linspace: returns [num, *start.shape] with out[k] = start + k/(num-1) * (stop - start).

    The fractions k/(num-1) are computed in float32, which is what the per-ray ('auto' bounds)
    stratified sampling of the official renderer relies on.
    """
    fractions = torch.arange(num, dtype=torch.float32, device=start.device) / (num - 1)
    fractions = fractions.reshape([num] + [1] * start.ndim)
    return start.unsqueeze(0) + fractions * (stop - start).unsqueeze(0)

#----------------------------------------------------------------------------

def get_ray_limits_box(rays_o: torch.Tensor, rays_d: torch.Tensor, box_side_length: float):
    """Entry and exit ray parameters of the axis-aligned cube [-L/2, L/2]^3 (slab method).

    rays_o, rays_d: [..., 3]. Returns (t_start, t_end), each [..., 1]. Rays that miss the cube get
    t_start = -1, t_end = -2 so that `t_end > t_start` marks the valid ones. Intersections behind the
    origin are not rejected.
    """
    batch_shape = rays_o.shape[:-1]
    origins = rays_o.detach().reshape(-1, 3)
    dirs = rays_d.detach().reshape(-1, 3)

    half = box_side_length / 2
    lower = torch.full_like(origins, -half)
    upper = torch.full_like(origins, half)
    inv_dirs = 1 / dirs  # +-inf for zero components, which the comparisons below handle

    # Per axis, a ray with a non-negative inverse direction enters through the lower face.
    forward = inv_dirs >= 0
    entry = torch.where(forward, lower, upper)
    exit_ = torch.where(forward, upper, lower)
    t_entry = (entry - origins) * inv_dirs
    t_exit = (exit_ - origins) * inv_dirs

    valid = torch.ones(origins.shape[0], dtype=torch.bool, device=origins.device)
    t0 = t_entry[:, 0]
    t1 = t_exit[:, 0]
    for axis in (1, 2):
        valid = valid & ~((t0 > t_exit[:, axis]) | (t_entry[:, axis] > t1))
        t0 = torch.maximum(t0, t_entry[:, axis])
        t1 = torch.minimum(t1, t_exit[:, axis])

    t0 = torch.where(valid, t0, torch.full_like(t0, -1))
    t1 = torch.where(valid, t1, torch.full_like(t1, -2))
    return t0.reshape(*batch_shape, 1), t1.reshape(*batch_shape, 1)

#----------------------------------------------------------------------------
