"""ImportanceRenderer, MipRayMarcher2 and the tri-plane helpers.

Golden: tests/data/golden/renderer.npz, produced by the official renderer with the golden G's
decoder after torch.manual_seed(11) (tolerance 1e-4).
"""

import json
import os
import pickle

import numpy as np
import pytest
import torch
from helpers import GOLDEN_DIR

from training.triplane import OSGDecoder
from training.volumetric_rendering import math_utils
from training.volumetric_rendering import renderer as renderer_module
from training.volumetric_rendering.ray_marcher import MipRayMarcher2
from training.volumetric_rendering.renderer import (
    ImportanceRenderer,
    generate_planes,
    project_onto_planes,
    sample_from_planes,
)

TOL = 1e-4

with open(os.path.join(GOLDEN_DIR, 'shapenet_config.json')) as _f:
    VARIANTS = {v['key']: v['rendering_kwargs'] for v in json.load(_f)['renderer']['variants']}

@pytest.fixture(scope='module')
def golden():
    return np.load(os.path.join(GOLDEN_DIR, 'renderer.npz'))

@pytest.fixture(scope='module')
def decoder():
    # The golden G's decoder: OSGDecoder with the 'decoder.*' weights of shapenet_G_state.npz.
    state = np.load(os.path.join(GOLDEN_DIR, 'shapenet_G_state.npz'))
    dec = OSGDecoder(32, {'decoder_lr_mul': VARIANTS['shapenet']['decoder_lr_mul'], 'decoder_output_dim': 32})
    dec.load_state_dict({k[len('decoder.'):]: torch.from_numpy(state[k]) for k in state.files if k.startswith('decoder.')})
    return dec.eval().requires_grad_(False)

def _inputs(golden, variant):
    return (torch.from_numpy(golden['planes']), torch.from_numpy(golden[f'{variant}.ray_origins']),
            torch.from_numpy(golden[f'{variant}.ray_directions']))

def _render(decoder, planes, origins, directions, options, seed=11):
    torch.manual_seed(seed)
    return ImportanceRenderer().render(planes, decoder, origins, directions, options, return_samples=True)

#----------------------------------------------------------------------------
# Golden comparisons.

@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_render_matches_golden(golden, decoder, variant):
    out = _render(decoder, *_inputs(golden, variant), VARIANTS[variant])
    names = ['rgb', 'depth', 'weights_sum', 'depths_coarse'] + (['depths_fine'] if f'{variant}.depths_fine' in golden else [])
    assert ('depths_fine' in out) == ('depths_fine' in names)
    for name in names:
        expected = golden[f'{variant}.{name}']
        assert tuple(out[name].shape) == expected.shape, name
        assert np.abs(out[name].numpy() - expected).max() <= TOL, name

def test_forward_returns_render_outputs_and_draws_in_order(golden, decoder):
    # forward == render's first three outputs; RNG use = stratified [N,M,D,1] then importance [N*M, D_imp].
    planes, origins, directions = _inputs(golden, 'shapenet')
    opts = VARIANTS['shapenet']
    torch.manual_seed(11)
    rgb, depth, weights_sum = ImportanceRenderer()(planes, decoder, origins, directions, opts)
    after = torch.rand(8)
    ref = _render(decoder, planes, origins, directions, opts)
    assert torch.equal(rgb, ref['rgb']) and torch.equal(depth, ref['depth']) and torch.equal(weights_sum, ref['weights_sum'])
    torch.manual_seed(11)
    plain = ImportanceRenderer().render(planes, decoder, origins, directions, opts)
    assert sorted(plain) == ['depth', 'depths_coarse', 'depths_fine', 'rgb', 'weights_sum']  # decoder outputs are opt-in
    torch.manual_seed(11)
    torch.rand(1, 64, opts['depth_resolution'], 1)
    torch.rand(64, opts['depth_resolution_importance'])
    assert torch.equal(after, torch.rand(8))

#----------------------------------------------------------------------------
# Ray chunking.

def _assert_same_render(decoder, planes, origins, directions, opts, change, extra=None):
    """Render with and without `change` to the options: the same draws, and results within rounding."""
    full = _render(decoder, planes, origins, directions, dict(opts, **(extra or {})))
    changed = _render(decoder, planes, origins, directions, dict(opts, **change, **(extra or {})))
    assert full.keys() == changed.keys()
    assert torch.equal(full['depths_coarse'], changed['depths_coarse'])
    for name in full:
        if name in ('rgb', 'depth', 'weights_sum'):
            # The composited outputs keep their earlier bound: a few float32 ulps of values of order 1.
            torch.testing.assert_close(changed[name], full[name], rtol=0, atol=1e-6, msg=name)
        else:
            # Per-sample decoder outputs (sigma is unbounded) and the importance depths inverted from their CDF.
            torch.testing.assert_close(changed[name], full[name], rtol=1e-5, atol=1e-5, msg=name)
    return full

@pytest.mark.parametrize('variant, extra', [('shapenet', {}), ('no_importance', {}), ('shapenet', {'density_noise': 1.0})])
def test_chunking_keeps_draws_and_results(golden, decoder, variant, extra):
    inputs = _inputs(golden, variant)
    full = _assert_same_render(decoder, *inputs, VARIANTS[variant], dict(ray_chunk_size=32), extra)
    if extra:
        noiseless = _render(decoder, *inputs, VARIANTS[variant])
        assert torch.equal(full['depths_coarse'], noiseless['depths_coarse'])  # noise is drawn after the jitter
        assert not torch.allclose(full['coarse_sigma'], noiseless['coarse_sigma'], atol=0.1)

def test_gradients_reach_planes(golden, decoder):
    planes, origins, directions = _inputs(golden, 'shapenet')
    planes = planes.clone().requires_grad_(True)
    rgb, depth, _ = ImportanceRenderer()(planes, decoder, origins, directions, dict(VARIANTS['shapenet'], ray_chunk_size=16))
    (rgb.sum() + depth.sum()).backward()
    assert planes.grad is not None and planes.grad.abs().sum() > 0

def test_uneven_chunks_draw_the_same_samples(golden, decoder):
    # A remainder chunk changes no random draw, so the coarse depths are identical. Everything computed from
    # decoder outputs may differ by rounding: the decoder's matmuls and the vectorised softplus/exp kernels
    # pick different code paths for different row counts. Importance depths invert a CDF built from those
    # weights, so they move by a few float32 ulps of the depth range (2.25..3.3).
    _assert_same_render(decoder, *_inputs(golden, 'ffhq_like'), VARIANTS['ffhq_like'], dict(ray_chunk_size=5))

#----------------------------------------------------------------------------
# Tri-plane layout.

def test_plane_projection_layouts():
    p = torch.tensor([[[0.1, 0.2, 0.3]]])
    x, y, z = 0.1, 0.2, 0.3
    official = project_onto_planes(generate_planes(), p)[:, 0]
    assert torch.equal(official, torch.tensor([[x, y], [x, z], [z, x]]))  # plane 2 never sees y (quirk)
    distinct = project_onto_planes(generate_planes('xy_xz_zy'), p)[:, 0]
    assert torch.equal(distinct, torch.tensor([[x, y], [x, z], [z, y]]))
    with pytest.raises(ValueError, match='plane_layout'):
        generate_planes('xyz')

def test_sample_from_planes_texel_centres():
    # Texel (row r, col c) of an HxW plane sits at ((2c+1)/W - 1, (2r+1)/H - 1) in [-1, 1] units, box_warp maps to that range.
    H = W = 4
    planes = torch.arange(3 * H * W, dtype=torch.float32).reshape(1, 3, 1, H, W)
    r, c, box = 1, 2, 2.0
    point = torch.tensor([[[(2 * c + 1) / W - 1, (2 * r + 1) / H - 1, 0.0]]])  # x indexes columns, y rows on plane 0
    out = sample_from_planes(generate_planes(), planes, point, box_warp=box)
    assert out.shape == (1, 3, 1, 1)
    assert out[0, 0, 0, 0] == planes[0, 0, 0, r, c]
    outside = sample_from_planes(generate_planes(), planes, torch.full((1, 1, 3), 5.0), box_warp=box)
    assert torch.equal(outside, torch.zeros_like(outside))

def test_plane_layout_option(golden, decoder):
    planes, origins, directions = _inputs(golden, 'ffhq_like')
    opts = VARIANTS['ffhq_like']
    default = _render(decoder, planes, origins, directions, opts)
    explicit = _render(decoder, planes, origins, directions, dict(opts, plane_layout='xy_xz_zx'))
    distinct = _render(decoder, planes, origins, directions, dict(opts, plane_layout='xy_xz_zy'))
    assert torch.equal(default['rgb'], explicit['rgb'])
    assert not torch.allclose(default['rgb'], distinct['rgb'], atol=1e-3)

    renderer = ImportanceRenderer()
    points = torch.rand(1, 10, 3) - 0.5
    run = lambda layout: renderer.run_model(planes, decoder, points, torch.zeros_like(points), dict(opts, plane_layout=layout))
    features = sample_from_planes(generate_planes('xy_xz_zy'), planes, points, box_warp=opts['box_warp'])
    assert torch.equal(run('xy_xz_zy')['sigma'], decoder(features, None)['sigma'])
    with pytest.raises(ValueError, match='plane_layout'):
        run('zx')

def test_plane_axes_is_plain_attribute_left_untouched(golden, decoder):
    renderer = ImportanceRenderer()
    axes = renderer.plane_axes
    assert axes.dtype == torch.float32 and axes.shape == (3, 3, 3)
    assert 'plane_axes' not in renderer.state_dict()
    assert not list(renderer.parameters()) and not list(renderer.buffers())
    planes, origins, directions = _inputs(golden, 'shapenet')
    renderer(planes, decoder, origins, directions, VARIANTS['shapenet'])
    assert renderer.plane_axes is axes  # no per-call reassignment (official code moved it to the rays' device)
    clone = pickle.loads(pickle.dumps(renderer))
    assert torch.equal(clone.plane_axes, axes) and isinstance(clone.ray_marcher, MipRayMarcher2)

#----------------------------------------------------------------------------
# Depth bounds and sampling.

def test_ray_limits_box():
    origins = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, 2.0], [0.0, 0.0, -2.0]])
    directions = torch.tensor([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    start, end = math_utils.get_ray_limits_box(origins, directions, 1.0)
    assert start.shape == end.shape == (3, 1)
    assert start[:, 0].tolist() == [1.5, -1.0, -2.5]  # hit; miss -> (-1, -2); box behind the camera still counts
    assert end[:, 0].tolist() == [2.5, -2.0, -1.5]

def test_auto_bounds_stratified_sampling():
    origins = torch.tensor([[[0.0, 0.0, 2.0], [0.0, 0.0, 3.0], [0.0, 5.0, 2.0]]])
    directions = torch.tensor([[[0.0, 0.0, -1.0]] * 3])
    opts = dict(ray_start='auto', ray_end='auto', box_warp=1.0, depth_resolution=5)
    torch.manual_seed(0)
    depths = ImportanceRenderer().sample_stratified(origins, directions, opts)
    # Valid rays span [1.5, 2.5] and [2.5, 3.5]; the miss gets [min start, max start] of the valid rays = [1.5, 2.5].
    start = torch.tensor([1.5, 2.5, 1.5]).reshape(1, 3, 1, 1)
    step = 0.25
    torch.manual_seed(0)
    jitter = torch.rand(5, 1, 3, 1).permute(1, 2, 0, 3)  # memory order of the official rand_like draw
    expected = start + torch.arange(5.0).reshape(1, 1, 5, 1) * step + jitter * step
    assert depths.shape == (1, 3, 5, 1)
    assert torch.allclose(depths, expected, atol=1e-6)
    with pytest.raises(ValueError, match='disparity_space_sampling'):
        ImportanceRenderer().sample_stratified(origins, directions, dict(opts, disparity_space_sampling=True))

def test_disparity_space_sampling():
    # t = linspace(0, 1, D) + U / (D - 1) with U = rand[N, M, D, 1]; depth = 1 / ((1/s)(1 - t) + (1/e) t).
    origins = torch.zeros(2, 3, 3)
    opts = dict(ray_start=0.5, ray_end=4.0, depth_resolution=6, disparity_space_sampling=True)
    torch.manual_seed(2)
    depths = ImportanceRenderer().sample_stratified(origins, origins, opts)
    torch.manual_seed(2)
    t = torch.linspace(0, 1, 6, dtype=torch.float64).reshape(1, 1, 6, 1) + torch.rand(2, 3, 6, 1).double() / 5
    expected = 1 / ((1 / 0.5) * (1 - t) + (1 / 4.0) * t)
    assert depths.shape == (2, 3, 6, 1)
    assert torch.allclose(depths.double(), expected, rtol=1e-5, atol=0)

def test_density_noise_draw_order_and_scale(golden, decoder):
    # RNG order per render: stratified jitter, coarse density noise randn [N, M*D, 1], importance uniforms,
    # fine density noise randn [N, M*D_imp, 1]; the noise is added to the raw decoder sigma.
    planes, origins, directions = _inputs(golden, 'shapenet')
    N, M = origins.shape[:2]
    opts = VARIANTS['shapenet']
    D, D_imp = opts['depth_resolution'], opts['depth_resolution_importance']
    noisy = _render(decoder, planes, origins, directions, dict(opts, density_noise=0.5))
    after = torch.rand(8)
    clean = _render(decoder, planes, origins, directions, opts)
    torch.manual_seed(11)
    torch.rand(N, M, D, 1)
    coarse_noise = torch.randn(N, M * D, 1).reshape(N, M, D, 1)
    torch.rand(N * M, D_imp)
    torch.randn(N, M * D_imp, 1)
    assert torch.equal(after, torch.rand(8))
    assert torch.allclose(noisy['coarse_sigma'], clean['coarse_sigma'] + coarse_noise * 0.5, rtol=0, atol=1e-6)
    sample = ImportanceRenderer().run_model(planes, decoder, origins, directions, dict(opts, density_noise=0.5))
    torch.manual_seed(11)
    plain = ImportanceRenderer().run_model(planes, decoder, origins, directions, opts)
    assert not torch.allclose(sample['sigma'], plain['sigma'], atol=0.01)  # run_model (G.sample) adds it too

def test_importance_samples_stay_inside_coarse_midpoints():
    torch.manual_seed(1)
    D = 10
    z = torch.sort(torch.rand(2, 7, D, 1) * 3 + 1, dim=2).values
    w = torch.rand(2, 7, D - 1, 1)
    fine = ImportanceRenderer().sample_importance(z, w, 16)
    mid = (z[:, :, :-1] + z[:, :, 1:]) / 2
    assert fine.shape == (2, 7, 16, 1)
    assert (fine >= mid[:, :, :1]).all() and (fine <= mid[:, :, D - 3:D - 2]).all()  # last midpoint unused (quirk)

#----------------------------------------------------------------------------
# Ray marcher.

def test_ray_marcher_limits():
    marcher = MipRayMarcher2()
    depths = torch.linspace(1, 2, 8).reshape(1, 1, 8, 1).repeat(1, 2, 1, 1)
    colors = torch.full((1, 2, 8, 3), 0.25)
    densities = torch.tensor([-1e4, 1e4]).reshape(1, 2, 1, 1).expand(1, 2, 8, 1).contiguous()
    opts = dict(clamp_mode='softplus')
    rgb, depth, weights = marcher(colors, densities, depths, opts)
    assert weights.shape == (1, 2, 7, 1)
    # Empty ray: zero weight, NaN depth -> +inf -> clamped to the batch's max depth; colour 2*0 - 1.
    assert depth[0, 0, 0] == 2 and torch.equal(rgb[0, 0], torch.full((3,), -1.0))
    # Opaque ray: everything lands on the first interval's midpoint and colour.
    assert torch.allclose(depth[0, 1, 0], torch.tensor(1 + 1 / 14)) and torch.allclose(rgb[0, 1], torch.full((3,), -0.5))
    white, _, _ = marcher(colors, densities, depths, dict(opts, white_back=True))
    assert torch.equal(white[0, 0], torch.ones(3))
    with pytest.raises(AssertionError, match='softplus'):
        marcher(colors, densities, depths, dict(clamp_mode='relu'))

#----------------------------------------------------------------------------

#----------------------------------------------------------------------------
# Fast-path equivalences.

def test_merged_composite_matches_unify_and_march():
    # Colours weighted in input order == sorting everything and compositing interval midpoints (rounding only).
    torch.manual_seed(0)
    N, M, D, C = 2, 5, 6, 4
    opts = dict(clamp_mode='softplus', white_back=True)
    depths = [torch.rand(N, M, D, 1).sort(dim=-2)[0] * 2 + 1, torch.rand(N, M, D, 1) * 2 + 1]
    colors = [torch.rand(N, M, D, C), torch.rand(N, M, D, C)]
    sigmas = [torch.randn(N, M, D, 1) * 3, torch.randn(N, M, D, 1) * 3]
    merged = ImportanceRenderer._composite_merged((colors[0], sigmas[0]), depths[0], (colors[1], sigmas[1]), depths[1], opts)
    unified = ImportanceRenderer.unify_samples(depths[0], colors[0], sigmas[0], depths[1], colors[1], sigmas[1])
    reference = MipRayMarcher2().run_forward(unified[1], unified[2], unified[0], opts, clamp_depth=False)
    for got, expected in zip(merged, reference):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)  # float32 sums of 12 terms of order 1

def test_channels_last_planes_sample_identically():
    torch.manual_seed(0)
    planes = torch.randn(2, 3, 8, 16, 16)
    coords = torch.rand(2, 50, 3) * 2.2 - 1.1
    expected = sample_from_planes(generate_planes(), planes, coords, box_warp=2.0)
    channels_last = renderer_module.channels_last_planes(planes)
    assert channels_last.is_contiguous() is False and torch.equal(channels_last, planes)
    assert torch.equal(sample_from_planes(generate_planes(), channels_last, coords, box_warp=2.0), expected)

def test_third_plane_sees_y_only_in_the_new_layout(decoder):
    # Features only on the third plane, varying over the whole plane: moving a point along y changes what the
    # decoder gets under xy_xz_zy, and cannot under the original xy_xz_zx (its third plane spans z and x).
    planes = torch.zeros(1, 3, 32, 16, 16)
    planes[:, 2] = torch.randn(32, 16, 16, generator=torch.Generator().manual_seed(0))
    points = torch.rand(1, 20, 3, generator=torch.Generator().manual_seed(1)) - 0.5
    moved = points + torch.tensor([0, 0.3, 0])
    renderer = ImportanceRenderer()
    opts = dict(box_warp=2, plane_layout='xy_xz_zx')
    sigma = lambda p, layout: renderer.run_model(planes, decoder, p, torch.zeros_like(p), dict(opts, plane_layout=layout))['sigma']
    assert torch.equal(sigma(points, 'xy_xz_zx'), sigma(moved, 'xy_xz_zx'))
    assert (sigma(points, 'xy_xz_zy') - sigma(moved, 'xy_xz_zy')).abs().min() > 1e-4
