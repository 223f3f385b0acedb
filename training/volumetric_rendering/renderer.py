"""Tri-plane volume renderer with stratified and importance sampling (EG3D's ImportanceRenderer).

Rendering options read from `rendering_options` (G.rendering_kwargs):
    ray_start, ray_end          numbers, or both 'auto' (clip each ray to the [-box_warp/2, box_warp/2]^3 cube)
    box_warp                    side length of the cube covered by the tri-planes
    depth_resolution            coarse samples per ray
    depth_resolution_importance fine samples per ray (0 disables the fine pass)
    disparity_space_sampling    stratify in inverse depth (numeric bounds only)
    clamp_mode, white_back      forwarded to the ray marcher
    density_noise               std of Gaussian noise added to raw densities (default 0)
    plane_layout                'xy_xz_zx' (default; the layout of all official weights, whose third
                                plane never sees y) or 'xy_xz_zy' (three distinct planes, for new runs)
    ray_chunk_size              rays per image processed at once (default None: all). Random numbers are
                                drawn for the whole batch first, so chunking changes only peak memory: the
                                output is bit-identical when the chunk size and the ray count are multiples
                                of 64 (else softplus's vectorised CPU kernel may differ by 1 ulp on the tail
                                elements of a chunk)
"""

import torch
import torch.nn.functional as F
from torch.profiler import record_function

from training.volumetric_rendering import math_utils
from training.volumetric_rendering.ray_marcher import (
    MipRayMarcher2,
    clamp_to_depth_range,
    finish_composite,
    interval_weights,
    sample_color_weights,
)

#----------------------------------------------------------------------------
# Tri-plane projection.

# Rows of each 3x3 matrix are the plane's axes; a point q lands on plane k at (q @ inverse(A_k))[:2].
_PLANE_AXES = {
    # Official layout: (x, y), (x, z), (z, x). The third plane repeats the second with swapped axes;
    # released weights depend on it.
    'xy_xz_zx': [[[1, 0, 0], [0, 1, 0], [0, 0, 1]],
                 [[1, 0, 0], [0, 0, 1], [0, 1, 0]],
                 [[0, 0, 1], [1, 0, 0], [0, 1, 0]]],
    # Three distinct planes (x, y), (x, z), (z, y).
    'xy_xz_zy': [[[1, 0, 0], [0, 1, 0], [0, 0, 1]],
                 [[1, 0, 0], [0, 0, 1], [0, 1, 0]],
                 [[0, 0, 1], [0, 1, 0], [1, 0, 0]]],
}
DEFAULT_PLANE_LAYOUT = 'xy_xz_zx'
PLANE_LAYOUTS = tuple(_PLANE_AXES)

def generate_planes(layout=DEFAULT_PLANE_LAYOUT):
    """Plane axis matrices [3,3,3] (float32) for the given layout (see _PLANE_AXES)."""
    if layout not in _PLANE_AXES:
        raise ValueError(f'rendering option plane_layout: unknown value {layout!r}; expected one of {sorted(_PLANE_AXES)}')
    return torch.tensor(_PLANE_AXES[layout], dtype=torch.float32)

def project_onto_planes(planes, coordinates):
    """planes [P,3,3], coordinates [N,M,3] -> 2-D plane coordinates [N*P, M, 2] (image-major, plane-minor)."""
    N, M, _ = coordinates.shape
    P = planes.shape[0]
    points = coordinates.unsqueeze(1).expand(N, P, M, 3).reshape(N * P, M, 3)
    inv_axes = torch.linalg.inv(planes).unsqueeze(0).expand(N, P, 3, 3).reshape(N * P, 3, 3)
    return torch.bmm(points, inv_axes)[..., :2]

def sample_from_planes(plane_axes, plane_features, coordinates, mode='bilinear', padding_mode='zeros', box_warp=None):
    """Bilinear tri-plane lookup.

    plane_axes [P,3,3], plane_features [N,P,C,H,W], coordinates [N,M,3] in world units ->
    features [N,P,M,C]. The cube [-box_warp/2, box_warp/2]^3 maps onto the planes' [-1, 1] extent.
    """
    assert padding_mode == 'zeros'
    N, P, C, H, W = plane_features.shape
    _, M, _ = coordinates.shape
    features = channels_last_planes(plane_features).reshape(N * P, C, H, W)
    grid = project_onto_planes(plane_axes, (2 / box_warp) * coordinates).unsqueeze(1)  # [N*P, 1, M, 2]
    sampled = F.grid_sample(features, grid.float(), mode=mode, padding_mode=padding_mode, align_corners=False)
    # A channel-major view, not a copy: the decoder averages over planes first, so only a third of the
    # data is ever transposed.
    return sampled.reshape(N, P, C, M).transpose(2, 3)

def channels_last_planes(plane_features):
    """The same [N,P,C,H,W] planes stored channels-last (a no-op if they already are): grid_sample then reads
    the C features of a texel from one place, which makes the CPU kernel about twice as fast."""
    N, P, C, H, W = plane_features.shape
    flat = plane_features.reshape(N * P, C, H, W).contiguous(memory_format=torch.channels_last)
    return flat.view(N, P, C, H, W)

#----------------------------------------------------------------------------

class ImportanceRenderer(torch.nn.Module):
    """Renders rays through tri-plane features: coarse stratified pass, then (optionally) a fine pass
    drawn from the coarse weights, then alpha compositing of all samples.

    forward(...) returns (features [N,M,C] scaled to [-1, 1], depth [N,M,1], weight sum [N,M,1]).
    render(...) returns the same plus the sample depths (and, on request, the decoder outputs).
    """

    def __init__(self):
        super().__init__()
        self.ray_marcher = MipRayMarcher2()
        # A plain attribute, not a buffer: official pickles store it this way, outside the state dict.
        self.plane_axes = generate_planes()

    def _plane_axes_for(self, rendering_options, reference):
        # A device copy for this call only: the module keeps its CPU tensor, so pickles never carry a CUDA one.
        layout = rendering_options.get('plane_layout', DEFAULT_PLANE_LAYOUT)
        axes = self.plane_axes if layout == DEFAULT_PLANE_LAYOUT else generate_planes(layout)
        return axes.to(device=reference.device, dtype=reference.dtype)

    def forward(self, planes, decoder, ray_origins, ray_directions, rendering_options):
        out = self.render(planes, decoder, ray_origins, ray_directions, rendering_options)
        return out['rgb'], out['depth'], out['weights_sum']

    def render(self, planes, decoder, ray_origins, ray_directions, rendering_options, return_samples=False):
        """Like forward, but returns a dict: rgb, depth, weights_sum, the sample depths depths_coarse
        [N,M,D,1] and (with importance sampling) depths_fine [N,M,D_imp,1], and, if return_samples,
        the decoder outputs coarse_rgb / fine_rgb [N,M,S,C] and coarse_sigma / fine_sigma [N,M,S,1]
        (large at high resolution, hence opt-in)."""
        N, M, _ = ray_origins.shape
        assert ray_directions.shape == (N, M, 3) and planes.shape[0] == N
        opts = rendering_options
        num_coarse = opts['depth_resolution']
        num_fine = opts['depth_resolution_importance']
        plane_axes = self._plane_axes_for(opts, ray_origins)

        # All random numbers are drawn for the whole batch first, in the official order (stratified
        # jitter, coarse density noise, importance uniforms, fine density noise), so that chunking
        # rays cannot change the draws.
        depths_coarse = self.sample_stratified(ray_origins, ray_directions, opts)
        noise_coarse = self._density_noise(opts, N, M * num_coarse, ray_origins.device)
        u_fine = noise_fine = None
        if num_fine > 0:
            u_fine = torch.rand(N * M, num_fine, device=ray_origins.device).reshape(N, M, num_fine)
            noise_fine = self._density_noise(opts, N, M * num_fine, ray_origins.device)

        chunk = opts.get('ray_chunk_size') or M
        results = []
        for start in range(0, M, chunk):
            rays = slice(start, min(start + chunk, M))
            results.append(self._render_chunk(
                planes, decoder, plane_axes, ray_origins[:, rays], ray_directions[:, rays], opts, return_samples,
                depths_coarse=depths_coarse[:, rays],
                noise_coarse=_slice_samples(noise_coarse, rays, num_coarse),
                u_fine=None if u_fine is None else u_fine[:, rays],
                noise_fine=_slice_samples(noise_fine, rays, num_fine)))
        out = results[0] if len(results) == 1 else {key: torch.cat([r[key] for r in results], dim=1) for key in results[0]}

        # The marcher clamps depth to the range of all samples of the batch; apply it once, batch-wide.
        all_depths = [depths_coarse] if num_fine == 0 else [depths_coarse, out['depths_fine']]
        out['depth'] = clamp_to_depth_range(out['depth'], *all_depths)
        out['depths_coarse'] = depths_coarse
        return out

    def _render_chunk(self, planes, decoder, plane_axes, ray_origins, ray_directions, opts, return_samples, *, depths_coarse, noise_coarse, u_fine, noise_fine):
        out = {}
        coarse = self._decode_samples(planes, decoder, plane_axes, ray_origins, ray_directions, depths_coarse, opts, noise_coarse)
        if return_samples:
            out['coarse_rgb'], out['coarse_sigma'] = coarse
        if u_fine is None:
            with record_function('renderer.ray_march'):
                rgb, depth, weights = self.ray_marcher.run_forward(*coarse, depths_coarse, opts, clamp_depth=False)
        else:
            with record_function('renderer.importance'):
                weights = interval_weights(coarse[1], depths_coarse, opts)  # the coarse colours are not composited
                depths_fine = self.sample_importance(depths_coarse, weights, u_fine.shape[-1], u=u_fine)
            fine = self._decode_samples(planes, decoder, plane_axes, ray_origins, ray_directions, depths_fine, opts, noise_fine)
            if return_samples:
                out['fine_rgb'], out['fine_sigma'] = fine
            out['depths_fine'] = depths_fine
            with record_function('renderer.ray_march'):
                rgb, depth, weights = self._composite_merged(coarse, depths_coarse, fine, depths_fine, opts)
        out['rgb'] = rgb
        out['depth'] = depth
        out['weights_sum'] = weights.sum(2)
        return out

    @staticmethod
    def _composite_merged(coarse, depths_coarse, fine, depths_fine, opts):
        """Marcher over the depth-sorted union of two sample sets, as unify_samples + run_forward, but
        only depths and densities are reordered: the colours are weighted in their original order."""
        depths, order = torch.sort(torch.cat([depths_coarse, depths_fine], dim=-2), dim=-2)
        densities = torch.gather(torch.cat([coarse[1], fine[1]], dim=-2), -2, order)
        weights = interval_weights(densities, depths, opts)
        color_weights = torch.zeros_like(depths).scatter(-2, order, sample_color_weights(weights))  # back to input order
        num_coarse = depths_coarse.shape[-2]
        weighted_rgb = (torch.matmul(color_weights[:, :, :num_coarse].transpose(-1, -2), coarse[0]) +
                        torch.matmul(color_weights[:, :, num_coarse:].transpose(-1, -2), fine[0])).squeeze(-2)
        rgb, depth = finish_composite(weighted_rgb, weights, depths, opts)
        return rgb, depth, weights

    def _decode_samples(self, planes, decoder, plane_axes, ray_origins, ray_directions, depths, opts, noise):
        """Decode the points o + t*d for depths [N,M,S,1] -> (colours [N,M,S,C], raw densities [N,M,S,1])."""
        N, M, S, _ = depths.shape
        points = (ray_origins.unsqueeze(-2) + depths * ray_directions.unsqueeze(-2)).reshape(N, M * S, 3)
        dirs = ray_directions.unsqueeze(-2).expand(N, M, S, 3).reshape(N, M * S, 3)
        out = self._run_model(planes, decoder, plane_axes, points, dirs, opts, noise)
        return out['rgb'].reshape(N, M, S, -1), out['sigma'].reshape(N, M, S, 1)

    @staticmethod
    def _density_noise(opts, N, num_points, device):
        std = opts.get('density_noise', 0)
        return torch.randn(N, num_points, 1, device=device) * std if std > 0 else None

    #------------------------------------------------------------------------
    # Public building blocks (also used by TriPlaneGenerator.sample / sample_mixed).

    def run_model(self, planes, decoder, sample_coordinates, sample_directions, options):
        """Raw decoder outputs at arbitrary points: {'rgb': [N,M,C], 'sigma': [N,M,1]} (density noise
        added if options['density_noise'] > 0)."""
        noise = self._density_noise(options, *sample_coordinates.shape[:2], sample_coordinates.device)
        return self._run_model(planes, decoder, self._plane_axes_for(options, sample_coordinates),
                               sample_coordinates, sample_directions, options, noise)

    @staticmethod
    def _run_model(planes, decoder, plane_axes, sample_coordinates, sample_directions, options, noise):
        with record_function('renderer.sample_planes'):
            features = sample_from_planes(plane_axes, planes, sample_coordinates, padding_mode='zeros', box_warp=options['box_warp'])
        with record_function('renderer.decoder'):
            out = decoder(features, sample_directions)
        if noise is not None:
            out['sigma'] = out['sigma'] + noise
        return out

    def sample_stratified(self, ray_origins, ray_directions, rendering_options):
        """Coarse sample depths [N,M,D,1]: D evenly spaced depths per ray, each jittered forward by
        up to one spacing (so the last may pass the far bound). Draws the jitter from the global RNG."""
        opts = rendering_options
        N, M, _ = ray_origins.shape
        D = opts['depth_resolution']
        device = ray_origins.device

        if opts['ray_start'] == opts['ray_end'] == 'auto':
            if opts.get('disparity_space_sampling', False):
                raise ValueError('rendering options: disparity_space_sampling requires numeric ray_start/ray_end, not "auto"')
            ray_start, ray_end = self._box_bounds(ray_origins, ray_directions, opts['box_warp'])
            depths = math_utils.linspace(ray_start, ray_end, D).permute(1, 2, 0, 3)  # [N,M,D,1]
            delta = (ray_end - ray_start) / (D - 1)
            # The official code drew this with rand_like on the permuted (non-contiguous) tensor,
            # which fills memory in [D,N,M,1] order; reproduce that order explicitly.
            jitter = torch.rand(D, N, M, 1, device=device).permute(1, 2, 0, 3)
            return depths + jitter * delta.unsqueeze(-2)

        ray_start, ray_end = opts['ray_start'], opts['ray_end']
        if opts.get('disparity_space_sampling', False):
            t = torch.linspace(0, 1, D, device=device).reshape(1, 1, D, 1).repeat(N, M, 1, 1)
            t = t + torch.rand(N, M, D, 1, device=device) * (1. / (D - 1))
            return 1. / (1. / ray_start * (1. - t) + 1. / ray_end * t)

        depths = torch.linspace(ray_start, ray_end, D, device=device).reshape(1, 1, D, 1).repeat(N, M, 1, 1)
        return depths + torch.rand(N, M, D, 1, device=device) * ((ray_end - ray_start) / (D - 1))

    @staticmethod
    def _box_bounds(ray_origins, ray_directions, box_warp):
        """Per-ray [start, end] from the box intersection; rays that miss it borrow a batch-wide range."""
        ray_start, ray_end = math_utils.get_ray_limits_box(ray_origins, ray_directions, box_warp)
        valid = ray_end > ray_start
        if torch.any(valid).item():
            # Quirk kept from the official code: both fallback bounds come from the valid rays' starts.
            valid_starts = ray_start[valid]
            ray_start = torch.where(valid, ray_start, valid_starts.min())
            ray_end = torch.where(valid, ray_end, valid_starts.max())
        return ray_start, ray_end

    def sample_importance(self, z_vals, weights, N_importance, u=None):
        """Fine sample depths [N,M,N_importance,1] drawn from the smoothed coarse weights.

        z_vals [N,M,D,1] coarse depths, weights [N,M,D-1,1] from the marcher. `u` ([N,M,N_importance]
        uniforms) defaults to a fresh torch.rand(N*M, N_importance) draw. Not differentiated.
        """
        N, M, D, _ = z_vals.shape
        with torch.no_grad():
            z_vals = z_vals.reshape(N * M, D)
            weights = weights.reshape(N * M, 1, D - 1)
            # Max then average over neighbouring intervals: widens peaks so thin surfaces are not missed.
            weights = F.max_pool1d(weights, 2, 1, padding=1)
            weights = F.avg_pool1d(weights, 2, 1).reshape(N * M, D - 1) + 0.01
            z_mid = 0.5 * (z_vals[:, :-1] + z_vals[:, 1:])
            if u is not None:
                u = u.reshape(N * M, N_importance)
            fine = self.sample_pdf(z_mid, weights[:, 1:-1], N_importance, u=u)
        return fine.reshape(N, M, N_importance, 1)

    @staticmethod
    def sample_pdf(bins, weights, N_importance, eps=1e-5, u=None):
        """Inverse-transform sampling of a piecewise-constant PDF.

        bins [R, B] bin positions, weights [R, W] with W = B - 2 (as called by sample_importance:
        knot j of the CDF is paired with bins[j], so the last bin is never reached; kept as in EG3D).
        Returns [R, N_importance]. `u` ([R, N_importance] uniforms) defaults to a fresh torch.rand draw.
        """
        R = weights.shape[0]
        weights = weights + eps
        pdf = weights / torch.sum(weights, -1, keepdim=True)
        cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, -1)], -1)  # [R, W+1]

        if u is None:
            u = torch.rand(R, N_importance, device=bins.device)
        u = u.contiguous()

        above = torch.searchsorted(cdf, u, right=True)
        below = torch.clamp_min(above - 1, 0)
        above = torch.clamp_max(above, cdf.shape[-1] - 1)
        idx = torch.stack([below, above], -1).reshape(R, 2 * N_importance)
        cdf_g = torch.gather(cdf, 1, idx).reshape(R, N_importance, 2)
        bins_g = torch.gather(bins, 1, idx).reshape(R, N_importance, 2)

        denom = cdf_g[..., 1] - cdf_g[..., 0]
        denom = torch.where(denom < eps, torch.ones_like(denom), denom)
        return bins_g[..., 0] + (u - cdf_g[..., 0]) / denom * (bins_g[..., 1] - bins_g[..., 0])

    @staticmethod
    def unify_samples(depths1, colors1, densities1, depths2, colors2, densities2):
        """Merge two sample sets along the sample axis, sorted by depth."""
        depths = torch.cat([depths1, depths2], dim=-2)
        colors = torch.cat([colors1, colors2], dim=-2)
        densities = torch.cat([densities1, densities2], dim=-2)
        depths, order = torch.sort(depths, dim=-2)
        colors = torch.gather(colors, -2, order.expand(-1, -1, -1, colors.shape[-1]))
        densities = torch.gather(densities, -2, order)
        return depths, colors, densities

#----------------------------------------------------------------------------

def _slice_samples(values, rays, samples_per_ray):
    """Select the rays of a chunk from a ray-major/sample-minor [N, M*S, 1] tensor (None passes through)."""
    if values is None:
        return None
    N = values.shape[0]
    return values.reshape(N, -1, samples_per_ray, 1)[:, rays].reshape(N, -1, 1)

#----------------------------------------------------------------------------
