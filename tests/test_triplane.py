"""TriPlaneGenerator against the golden outputs of the official code (reduced shapenet config), plus
generator-level behaviour (sticky rendering resolution, label handling, backbone cache, OSGDecoder)."""

import os

import numpy as np
import pytest
import torch
from helpers import GOLDEN_DIR, build_golden_generator

import dnnlib
from training.networks_stylegan2 import SynthesisLayer
from training.triplane import OSGDecoder

TOL = 1e-4


@pytest.fixture(scope='module')
def G():
    return build_golden_generator()


@pytest.fixture(scope='module')
def io():
    return np.load(os.path.join(GOLDEN_DIR, 'shapenet_io.npz'))


def _inputs(io):
    return torch.from_numpy(io['z']), torch.from_numpy(io['c'])


def _check(actual, ref, name):
    actual = actual.detach().cpu().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    assert actual.shape == ref.shape, f'{name}: shape {actual.shape} != {ref.shape}'
    err = float(np.abs(actual.astype(np.float64) - ref.astype(np.float64)).max())
    assert err <= TOL, f'{name}: max abs error {err:.3g} > {TOL}'


@pytest.fixture(scope='module')
def psi1_run(G, io):
    """One G(z, c) call at psi 1 with every intermediate the golden file stores captured on the way."""
    captured = {}
    hooks = [
        G.backbone.synthesis.register_forward_hook(lambda m, a, out: captured.__setitem__('planes', out)),
        G.ray_sampler.register_forward_hook(lambda m, a, out: captured.__setitem__('rays', out)),
        G.renderer.register_forward_hook(lambda m, a, out: captured.__setitem__('render', out)),
        G.decoder.register_forward_hook(lambda m, a, out: captured.setdefault('decoder', []).append(out)),
        # Clone: the SR module adds into the raw rgb in place.
        G.superresolution.register_forward_pre_hook(
            lambda m, args: captured.__setitem__('sr_in', [t.clone() for t in args[:2]])),
    ]
    renderer = G.renderer
    renderer.sample_stratified = _recording(renderer.sample_stratified, captured, 'depths_coarse')
    renderer.sample_importance = _recording(renderer.sample_importance, captured, 'depths_fine')
    try:
        z, c = _inputs(io)
        torch.manual_seed(7)
        captured['out'] = G(z, c, truncation_psi=1, noise_mode='const', neural_rendering_resolution=32)
        captured['ws'] = G.mapping(z, c)
    finally:
        for hook in hooks:
            hook.remove()
        del renderer.sample_stratified, renderer.sample_importance
    return captured


def _recording(method, captured, key):
    def wrapper(*args, **kwargs):
        captured[key] = method(*args, **kwargs)
        return captured[key]
    return wrapper

#----------------------------------------------------------------------------
# Golden comparisons.

def _check_outputs(out, ws, io, prefix):
    for key in ('image', 'image_raw', 'image_depth'):
        _check(out[key], io[f'{prefix}.{key}'], f'{prefix}.{key}')
    _check(ws, io[f'{prefix}.ws'], f'{prefix}.ws')


def test_golden_outputs_psi1(psi1_run, io):
    _check_outputs(psi1_run['out'], psi1_run['ws'], io, 'psi1')


def test_golden_outputs_psi07(G, io):
    z, c = _inputs(io)
    torch.manual_seed(7)
    out = G(z, c, truncation_psi=0.7, noise_mode='const', neural_rendering_resolution=32)
    _check_outputs(out, G.mapping(z, c, truncation_psi=0.7), io, 'psi07')


def test_golden_planes(psi1_run, io):
    planes = psi1_run['planes'].double()
    _check(planes[:, :, 112:144, 112:144], io['psi1.planes.crop'], 'planes.crop')
    _check(planes[0, :, ::8, ::8], io['psi1.planes.stride8'], 'planes.stride8')
    _check(planes.mean(dim=[2, 3]), io['psi1.planes.channel_mean'], 'planes.channel_mean')
    _check(planes.std(dim=[2, 3]), io['psi1.planes.channel_std'], 'planes.channel_std')
    _check(planes.abs().amax(dim=[2, 3]), io['psi1.planes.channel_absmax'], 'planes.channel_absmax')


def test_golden_rendering(psi1_run, io):
    origins, directions = psi1_run['rays']
    _check(origins, io['psi1.ray_origins'], 'ray_origins')
    _check(directions, io['psi1.ray_directions'], 'ray_directions')
    features, depth, weights = psi1_run['render']
    _check(features, io['psi1.render.feature_samples'], 'feature_samples')
    _check(depth, io['psi1.render.depth_samples'], 'depth_samples')
    _check(weights, io['psi1.render.weights_samples'], 'weights_samples')
    _check(psi1_run['depths_coarse'], io['psi1.render.depths_coarse'], 'depths_coarse')
    _check(psi1_run['depths_fine'], io['psi1.render.depths_fine'], 'depths_fine')
    coarse, fine = psi1_run['decoder']
    N, M, S = io['psi1.render.coarse_sigma'].shape
    for name, decoded in (('coarse', coarse), ('fine', fine)):
        _check(decoded['sigma'].reshape(N, M, S), io[f'psi1.render.{name}_sigma'], f'{name}_sigma')
        _check(decoded['rgb'].reshape(N, M, S, -1)[..., :3], io[f'psi1.render.{name}_rgb3'], f'{name}_rgb3')


def test_golden_superresolution_inputs(psi1_run, io):
    rgb_in, features_in = psi1_run['sr_in']
    _check(rgb_in, io['psi1.sr.rgb_in'], 'sr.rgb_in')
    _check(features_in, io['psi1.sr.features_in'], 'sr.features_in')
    # At 32x32 the 2X module resizes its input, so image_raw is the clean rendering.
    _check(psi1_run['out']['image_raw'], io['psi1.sr.rgb_in'], 'image_raw')


def test_golden_random_numbers_are_the_renderers(io):
    """The golden call draws exactly the stored uniforms, in this order, from the global generator."""
    torch.manual_seed(7)
    assert np.array_equal(torch.rand(2, 1024, 24, 1).numpy(), io['rng.stratified_u'])
    assert np.array_equal(torch.rand(2048, 24).numpy(), io['rng.importance_u'])

#----------------------------------------------------------------------------
# Generator behaviour.

def test_mapping_label_handling(G, io):
    z, c = _inputs(io)
    rendering_kwargs = G.rendering_kwargs
    assert rendering_kwargs['c_gen_conditioning_zero'] is True
    reference = G.mapping(z, torch.zeros_like(c))
    torch.testing.assert_close(G.mapping(z, c), reference, rtol=0, atol=0) # c is zeroed.
    try:
        rendering_kwargs['c_gen_conditioning_zero'] = False
        conditioned = G.mapping(z, c)
        assert not torch.allclose(conditioned, reference)
        del rendering_kwargs['c_scale'] # Missing c_scale means 0: the label is ignored.
        torch.testing.assert_close(G.mapping(z, c), reference, rtol=0, atol=0)
    finally:
        rendering_kwargs['c_gen_conditioning_zero'] = True
        rendering_kwargs['c_scale'] = 1.0


def test_sticky_rendering_resolution_and_backbone_cache(G, io):
    z, c = _inputs(io)
    ws = G.mapping(z[:1], c[:1])
    try:
        G.neural_rendering_resolution = 64
        sr_args = []
        hook = G.superresolution.register_forward_pre_hook(lambda m, args: sr_args.append(args[:2]))
        torch.manual_seed(0)
        try:
            first = G.synthesis(ws, c[:1], neural_rendering_resolution=16, cache_backbone=True, noise_mode='const')
        finally:
            hook.remove()
        # The SR module gets the raw rgb as a view of the feature image (what the in-place quirk relies on).
        rgb_in, features_in = sr_args[0]
        assert rgb_in.untyped_storage().data_ptr() == features_in.untyped_storage().data_ptr()
        assert torch.equal(first['image_raw'], features_in[:, :3])
        assert first['image_raw'].shape == (1, 3, 16, 16) and first['image'].shape == (1, 3, 128, 128)
        assert G.neural_rendering_resolution == 16 # A given resolution persists on the module.
        assert G._last_planes.shape == (1, 96, 256, 256)

        # Cached planes replace the backbone output; the SR still sees the new ws.
        torch.manual_seed(0)
        reused = G.synthesis(G.mapping(z[1:], c[:1]), c[:1], use_cached_backbone=True, noise_mode='const')
        assert reused['image_depth'].shape == (1, 1, 16, 16)
        torch.testing.assert_close(reused['image_depth'], first['image_depth'], rtol=0, atol=0)
        torch.testing.assert_close(reused['image_raw'], first['image_raw'], rtol=0, atol=0)
        assert not torch.allclose(reused['image'], first['image'])
    finally:
        G._last_planes = None
        G.neural_rendering_resolution = 64


def test_render_planes_is_synthesis_from_given_planes(G, io):
    # The viewer keeps planes and renders them from other cameras, at other resolutions and sample counts.
    z, c = _inputs(io)
    ws = G.mapping(z, c)
    options = G.rendering_kwargs
    saved = dict(options)
    fewer = dict(depth_resolution=4, depth_resolution_importance=2)
    try:
        torch.manual_seed(3)
        expected = G.synthesis(ws, c, neural_rendering_resolution=16, noise_mode='const')
        options.update(fewer)
        torch.manual_seed(3)
        expected_fewer = G.synthesis(ws, c, noise_mode='const')
        options.update(saved)
        G.neural_rendering_resolution = 64

        planes = G.backbone.synthesis(ws, noise_mode='const')
        torch.manual_seed(3)
        out = G.render_planes(planes, ws, c, neural_rendering_resolution=16, noise_mode='const')
        assert list(out) == list(expected) == ['image', 'image_raw', 'image_depth']
        for key in expected:
            assert torch.equal(out[key], expected[key]), key  # bit-identical
        assert G.neural_rendering_resolution == 64  # not sticky

        torch.manual_seed(3)
        raw = G.render_planes(planes, ws, c, neural_rendering_resolution=16, super_resolution=False)
        assert list(raw) == ['image_raw', 'image_depth']
        assert torch.equal(raw['image_depth'], expected['image_depth'])
        assert torch.equal(raw['image_raw'], expected['image_raw'])

        torch.manual_seed(3)
        out = G.render_planes(planes, ws, c, neural_rendering_resolution=16, rendering_overrides=fewer)
        assert options == saved  # the overrides hold for the call only
        for key in expected_fewer:
            assert torch.equal(out[key], expected_fewer[key]), key
        assert not torch.equal(out['image_depth'], expected['image_depth'])

        with pytest.raises(AssertionError, match=r'planes must be \[N, 96, H, W\], got \[2, 32, 256, 256\]'):
            G.render_planes(planes[:, :32], ws, c)
    finally:
        options.update(saved)
        G.neural_rendering_resolution = 64


@pytest.mark.parametrize('sr_noise_mode', ['none', 'random'])
def test_random_noise_draw_order(G, io, sr_noise_mode):
    # One G(z, c) call with noise_mode='random' draws (networks.md §10): one randn [N,1,res,res] per backbone
    # SynthesisLayer (b4.conv1, b8.conv0, b8.conv1, ..., b256.conv1), the renderer's stratified then importance
    # uniforms, then SR noise only if rendering_kwargs['superresolution_noise_mode'] is 'random'; the SR module
    # gets that mode whatever the caller passed.
    z, c = _inputs(io)
    opts = G.rendering_kwargs
    sr_kwargs = []
    hook = G.superresolution.register_forward_pre_hook(lambda m, args, kwargs: sr_kwargs.append(dict(kwargs)),
        with_kwargs=True)
    try:
        opts['superresolution_noise_mode'] = sr_noise_mode
        torch.manual_seed(5)
        G(z[:1], c[:1], noise_mode='random', neural_rendering_resolution=16)
        after = torch.rand(4)
    finally:
        hook.remove()
        opts['superresolution_noise_mode'] = 'none'
        G.neural_rendering_resolution = 64
    assert sr_kwargs == [{'noise_mode': sr_noise_mode}]

    torch.manual_seed(5)
    for name, layer in G.backbone.synthesis.named_modules():
        if isinstance(layer, SynthesisLayer):
            torch.randn([1, 1, layer.resolution, layer.resolution])
    torch.rand(1, 16 * 16, opts['depth_resolution'], 1)
    torch.rand(16 * 16, opts['depth_resolution_importance'])
    if sr_noise_mode == 'random':
        for res in (64, 64, 128, 128): # block0 (no up, after the resize to 64), block1
            torch.randn([1, 1, res, res])
    assert torch.equal(after, torch.rand(4))


def test_sample_and_sample_mixed(G, io):
    z, c = _inputs(io)
    coords = torch.rand(1, 50, 3) * 1.6 - 0.8
    dirs = torch.zeros(1, 50, 3)
    out = G.sample(coords, dirs, z[:1], c[:1], noise_mode='const')
    assert out['rgb'].shape == (1, 50, 32) and out['sigma'].shape == (1, 50, 1)
    ws = G.mapping(z[:1], c[:1])
    mixed = G.sample_mixed(coords, dirs, ws, truncation_psi=0.5, noise_mode='const')
    torch.testing.assert_close(mixed['sigma'], out['sigma'], rtol=0, atol=0)
    torch.testing.assert_close(mixed['rgb'], out['rgb'], rtol=0, atol=0)


def test_osg_decoder():
    decoder = OSGDecoder(32, {'decoder_lr_mul': 1, 'decoder_output_dim': 32})
    assert decoder.hidden_dim == 64
    assert [type(m).__name__ for m in decoder.net] == ['FullyConnectedLayer', 'Softplus', 'FullyConnectedLayer']
    assert decoder.net[2].weight.shape == (33, 64)
    with torch.no_grad():
        decoder.net[2].bias.normal_()
    features = torch.randn(2, 3, 7, 32)
    with torch.no_grad():
        out = decoder(features, torch.randn(2, 7, 3))
    hidden = torch.nn.functional.softplus(features.mean(1) @ (decoder.net[0].weight / np.sqrt(32)).t())
    raw = hidden @ (decoder.net[2].weight / 8).t() + decoder.net[2].bias
    torch.testing.assert_close(out['sigma'], raw[..., :1])
    torch.testing.assert_close(out['rgb'], torch.sigmoid(raw[..., 1:]) * 1.002 - 0.001)
    assert float(out['rgb'].min()) >= -0.001 and float(out['rgb'].max()) <= 1.001


def test_requires_superresolution_settings():
    with pytest.raises(KeyError):
        dnnlib.util.construct_class_by_name(class_name='training.triplane.TriPlaneGenerator', z_dim=8, c_dim=25,
            w_dim=8, img_resolution=128, img_channels=3, rendering_kwargs={'sr_antialias': True})

#----------------------------------------------------------------------------
