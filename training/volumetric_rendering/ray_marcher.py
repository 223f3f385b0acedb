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
        assert colors.ndim == 4 and densities.shape == depths.shape == colors.shape[:3] + (1,)
        assert rendering_options['clamp_mode'] == 'softplus', 'MipRayMarcher2 only supports clamp_mode "softplus"'

        deltas = depths[:, :, 1:] - depths[:, :, :-1]
        colors_mid = (colors[:, :, :-1] + colors[:, :, 1:]) / 2
        densities_mid = (densities[:, :, :-1] + densities[:, :, 1:]) / 2
        depths_mid = (depths[:, :, :-1] + depths[:, :, 1:]) / 2

        # The raw densities are shifted by -1 so that a freshly initialised decoder starts mostly transparent.
        sigma = F.softplus(densities_mid - 1)
        alpha = 1 - torch.exp(-(sigma * deltas))

        # Transmittance before each interval: exclusive cumulative product of (1 - alpha), nudged away from 0.
        survive = torch.cat([torch.ones_like(alpha[:, :, :1]), 1 - alpha + 1e-10], dim=-2)
        weights = alpha * torch.cumprod(survive, dim=-2)[:, :, :-1]

        weight_total = weights.sum(2)
        composite_rgb = torch.sum(weights * colors_mid, -2)
        composite_depth = torch.sum(weights * depths_mid, -2) / weight_total
        composite_depth = torch.nan_to_num(composite_depth, nan=float('inf'))  # rays with zero total weight
        if clamp_depth:
            composite_depth = clamp_to_depth_range(composite_depth, depths)

        if rendering_options.get('white_back', False):
            composite_rgb = composite_rgb + 1 - weight_total

        composite_rgb = composite_rgb * 2 - 1
        return composite_rgb, composite_depth, weights

    def forward(self, colors, densities, depths, rendering_options):
        return self.run_forward(colors, densities, depths, rendering_options)

#----------------------------------------------------------------------------

def clamp_to_depth_range(composite_depth, depths):
    """Clamp to [min, max] of the whole depths tensor: the range is batch-wide, not per ray (as in EG3D)."""
    return torch.clamp(composite_depth, torch.min(depths), torch.max(depths))

#----------------------------------------------------------------------------
