"""Alpha compositing of samples along rays (the mip-NeRF style marcher used by EG3D)."""

import torch
import torch.nn.functional as F

#----------------------------------------------------------------------------

class MipRayMarcher2(torch.nn.Module):
    """Composites per-sample colours and raw densities into per-ray colour, depth and weights.

    Samples are paired into S-1 intervals; colour, raw density and depth are averaged over each
    interval before the density activation. No learnable state (pickled by reference).
    """

    def __init__(self):
        super().__init__()

    def run_forward(self, colors, densities, depths, rendering_options, clamp_depth=True):
        """colors [N,M,S,C], densities [N,M,S,1], depths [N,M,S,1] ->
        (composite colour [N,M,C], depth [N,M,1], weights [N,M,S-1,1]).

        With clamp_depth=False the depth is returned unclamped (NaN already replaced by +inf), so a
        caller that marches rays in chunks can apply the batch-wide clamp itself afterwards.
        """
        assert colors.ndim == 4 and colors.shape[:3] == densities.shape[:3]
        weights = interval_weights(densities, depths, rendering_options)
        colors_mid = (colors[:, :, :-1] + colors[:, :, 1:]) / 2
        composite_rgb, composite_depth = finish_composite(torch.sum(weights * colors_mid, -2), weights, depths, rendering_options)
        if clamp_depth:
            composite_depth = clamp_to_depth_range(composite_depth, depths)
        return composite_rgb, composite_depth, weights

    def forward(self, colors, densities, depths, rendering_options):
        return self.run_forward(colors, densities, depths, rendering_options)

#----------------------------------------------------------------------------

def interval_weights(densities, depths, rendering_options):
    """Compositing weights [N,M,S-1,1] of the S-1 intervals between sorted samples (no colours needed)."""
    assert densities.ndim == 4 and densities.shape == depths.shape and densities.shape[-1] == 1
    assert rendering_options['clamp_mode'] == 'softplus', 'MipRayMarcher2 only supports clamp_mode "softplus"'
    deltas = depths[:, :, 1:] - depths[:, :, :-1]
    densities_mid = (densities[:, :, :-1] + densities[:, :, 1:]) / 2

    # The raw densities are shifted by -1 so that a freshly initialised decoder starts mostly transparent.
    sigma = F.softplus(densities_mid - 1)
    alpha = 1 - torch.exp(-(sigma * deltas))

    # Transmittance before each interval: exclusive cumulative product of (1 - alpha), nudged away from 0.
    survive = torch.cat([torch.ones_like(alpha[:, :, :1]), 1 - alpha + 1e-10], dim=-2)
    return alpha * torch.cumprod(survive, dim=-2)[:, :, :-1]

def sample_color_weights(weights):
    """Per-sample colour weights [N,M,S,1] equivalent to compositing the interval midpoints:
    sum_i w_i (c_i + c_{i+1}) / 2 == sum_j c_j (w_{j-1} + w_j) / 2. Lets a caller composite colours
    without reordering them."""
    return (F.pad(weights, (0, 0, 1, 0)) + F.pad(weights, (0, 0, 0, 1))) / 2

def finish_composite(weighted_rgb, weights, depths, rendering_options):
    """Weighted colour sum [N,M,C] and weights -> (colour in [-1, 1] [N,M,C], unclamped depth [N,M,1])."""
    weight_total = weights.sum(2)
    depths_mid = (depths[:, :, :-1] + depths[:, :, 1:]) / 2
    composite_depth = torch.sum(weights * depths_mid, -2) / weight_total
    composite_depth = torch.nan_to_num(composite_depth, nan=float('inf'))  # rays with zero total weight
    if rendering_options.get('white_back', False):
        weighted_rgb = weighted_rgb + 1 - weight_total
    return weighted_rgb * 2 - 1, composite_depth

def clamp_to_depth_range(composite_depth, *depths):
    """Clamp to [min, max] over all the given depth tensors: the range is batch-wide, not per ray (as in EG3D)."""
    low = torch.stack([d.min() for d in depths]).min()
    high = torch.stack([d.max() for d in depths]).max()
    return torch.clamp(composite_depth, low, high)

#----------------------------------------------------------------------------
