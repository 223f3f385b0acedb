"""Behaviour of the StyleGAN2 layers, blocks and networks in training/networks_stylegan2.py (tiny sizes)."""

import ast
import pathlib

import numpy as np
import pytest
import torch

from training import networks_stylegan2 as nets


def _lrelu(x):
    return torch.nn.functional.leaky_relu(x, 0.2) * np.sqrt(2)

#----------------------------------------------------------------------------
# Functions.

def test_normalize_2nd_moment():
    x = torch.randn(3, 7, 5) * 4
    y = nets.normalize_2nd_moment(x)
    torch.testing.assert_close(y.square().mean(dim=1), torch.ones(3, 5), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y, x / (x.square().mean(dim=1, keepdim=True) + 1e-8).sqrt())


def _modconv_reference(x, weight, styles, noise, demodulate):
    """Per-sample float64 convolution with explicitly modulated (and demodulated) weights, padding 1."""
    out = []
    for n in range(x.shape[0]):
        w = weight.double() * styles[n].double().reshape(1, -1, 1, 1)
        if demodulate:
            w = w / (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        out.append(torch.nn.functional.conv2d(x[n:n + 1].double(), w, padding=weight.shape[-1] // 2))
    out = torch.cat(out)
    return out + noise.double() if noise is not None else out


@pytest.mark.parametrize('fused', [True, False])
@pytest.mark.parametrize('demodulate', [True, False])
def test_modulated_conv2d_matches_per_sample_convolution(fused, demodulate):
    torch.manual_seed(0)
    x = torch.randn(3, 4, 6, 6)
    weight = torch.randn(5, 4, 3, 3)
    styles = torch.randn(3, 4) + 1
    noise = torch.randn(3, 1, 6, 6) * 0.3
    y = nets.modulated_conv2d(x, weight, styles, noise=noise, padding=1, demodulate=demodulate, fused_modconv=fused)
    ref = _modconv_reference(x, weight, styles, noise, demodulate)
    assert y.shape == (3, 5, 6, 6) and y.dtype == torch.float32
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-5)


def test_modulated_conv2d_fused_equals_unfused_when_upsampling():
    torch.manual_seed(1)
    x = torch.randn(2, 4, 5, 5)
    weight = torch.randn(3, 4, 3, 3)
    styles = torch.randn(2, 4)
    f = nets.upfirdn2d.setup_filter([1, 3, 3, 1])
    kwargs = dict(up=2, padding=1, resample_filter=f, flip_weight=False)
    fused = nets.modulated_conv2d(x, weight, styles, fused_modconv=True, **kwargs)
    unfused = nets.modulated_conv2d(x, weight, styles, fused_modconv=False, **kwargs)
    assert fused.shape == (2, 3, 10, 10)
    torch.testing.assert_close(fused, unfused, rtol=1e-5, atol=1e-5)

#----------------------------------------------------------------------------
# Equalized-learning-rate layers.

def test_fully_connected_layer_scales_at_runtime():
    layer = nets.FullyConnectedLayer(6, 4, lr_multiplier=0.01, bias_init=0.5)
    assert isinstance(layer.weight_gain, np.float64) and layer.bias_gain == 0.01
    torch.testing.assert_close(layer.bias.detach(), torch.full([4], 0.5))
    x = torch.randn(5, 6)
    expected = x @ (layer.weight * 0.01 / np.sqrt(6)).t() + layer.bias * 0.01
    torch.testing.assert_close(layer(x), expected)

    act = nets.FullyConnectedLayer(6, 4, activation='lrelu', bias_init=0.25)
    torch.testing.assert_close(act(x), _lrelu(x @ (act.weight / np.sqrt(6)).t() + act.bias))

    no_bias = nets.FullyConnectedLayer(6, 4, bias=False)
    assert no_bias.bias is None
    torch.testing.assert_close(no_bias(x), x @ (no_bias.weight / np.sqrt(6)).t())


def test_conv2d_layer_matches_plain_convolution():
    layer = nets.Conv2dLayer(3, 5, kernel_size=3, activation='lrelu', conv_clamp=0.5)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, 3, 8, 8)
    ref = torch.nn.functional.conv2d(x, layer.weight / np.sqrt(3 * 9), layer.bias, padding=1)
    y = layer(x, gain=2)
    torch.testing.assert_close(y, (_lrelu(ref) * 2).clamp(-1, 1))


def test_conv2d_layer_frozen_registers_buffers():
    layer = nets.Conv2dLayer(3, 5, kernel_size=1, trainable=False)
    assert not list(layer.parameters())
    assert [name for name, _ in layer.named_buffers()] == ['resample_filter', 'weight', 'bias']

#----------------------------------------------------------------------------
# Mapping.

def test_mapping_network_truncation_and_w_avg():
    torch.manual_seed(0)
    mapping = nets.MappingNetwork(z_dim=8, c_dim=3, w_dim=6, num_ws=4, num_layers=2)
    assert [name for name, _ in mapping.named_children()] == ['embed', 'fc0', 'fc1']
    assert mapping.fc0.weight.shape == (6, 8 + 6)
    z, c = torch.randn(5, 8), torch.randn(5, 3)

    ws = mapping(z, c, update_emas=True)
    assert ws.shape == (5, 4, 6)
    assert torch.equal(ws[:, 0], ws[:, 3])
    # w_avg <- mean + beta * (w_avg - mean), starting from zeros.
    torch.testing.assert_close(mapping.w_avg, ws[:, 0].mean(dim=0) * (1 - 0.998))

    with torch.no_grad():
        mapping.w_avg.normal_()
    truncated = mapping(z, c, truncation_psi=0.7)
    torch.testing.assert_close(truncated, mapping.w_avg + 0.7 * (ws - mapping.w_avg))
    cut = mapping(z, c, truncation_psi=0.7, truncation_cutoff=2)
    torch.testing.assert_close(cut[:, :2], truncated[:, :2])
    torch.testing.assert_close(cut[:, 2:], ws[:, 2:])


def test_mapping_network_label_only():
    mapping = nets.MappingNetwork(z_dim=0, c_dim=3, w_dim=6, num_ws=None, w_avg_beta=None)
    assert not hasattr(mapping, 'w_avg') and mapping.num_layers == 8
    assert mapping(None, torch.randn(2, 3)).shape == (2, 6)
    unconditional = nets.MappingNetwork(z_dim=4, c_dim=0, w_dim=6, num_ws=2)
    assert not hasattr(unconditional, 'embed') and unconditional.fc0.weight.shape == (6, 4)

#----------------------------------------------------------------------------
# Synthesis.

def _tiny_synthesis(**kwargs):
    return nets.SynthesisNetwork(w_dim=8, img_resolution=16, img_channels=3, channel_base=64, channel_max=8,
        num_fp16_res=0, **kwargs)


def test_synthesis_network_shares_torgb_w_with_next_conv0():
    synthesis = _tiny_synthesis()
    assert synthesis.block_resolutions == [4, 8, 16] and synthesis.num_ws == 6
    seen = {}
    for res in synthesis.block_resolutions:
        getattr(synthesis, f'b{res}').register_forward_pre_hook(
            lambda module, args, res=res: seen.__setitem__(res, args[2]))
    ws = torch.randn(2, 6, 8)
    img = synthesis(ws, noise_mode='const')
    assert img.shape == (2, 3, 16, 16) and img.dtype == torch.float32
    assert torch.equal(seen[4], ws[:, 0:2])
    assert torch.equal(seen[8], ws[:, 1:4])
    assert torch.equal(seen[16], ws[:, 3:6])


def test_synthesis_layer_noise_modes():
    torch.manual_seed(0)
    layer = nets.SynthesisLayer(4, 4, w_dim=8, resolution=8)
    with torch.no_grad():
        layer.noise_strength.fill_(0.5)
    x, w = torch.randn(2, 4, 8, 8), torch.randn(2, 8)
    none = layer(x, w, noise_mode='none')
    const = layer(x, w, noise_mode='const')
    assert torch.equal(const, layer(x, w, noise_mode='const'))
    assert not torch.allclose(none, const)

    # 'random' (the default) consumes exactly one randn of shape [N, 1, res, res].
    torch.manual_seed(3)
    layer(x, w)
    after_layer = torch.rand(4)
    torch.manual_seed(3)
    torch.randn([2, 1, 8, 8])
    assert torch.equal(after_layer, torch.rand(4))

    with pytest.raises(ValueError, match='noise_mode'):
        layer(x, w, noise_mode='bogus')


def test_synthesis_block_fused_modconv_inference_only(monkeypatch):
    block = nets.SynthesisBlock(0, 4, w_dim=8, resolution=4, img_channels=3, is_last=True,
        fused_modconv_default='inference_only')
    calls = []
    original = nets.modulated_conv2d
    monkeypatch.setattr(nets, 'modulated_conv2d', lambda *args, **kwargs: calls.append(kwargs['fused_modconv'])
        or original(*args, **kwargs))
    ws = torch.randn(2, 2, 8)
    block.train()(None, None, ws)
    block.eval()(None, None, ws)
    block.eval()(None, None, ws, fused_modconv=False)
    assert calls == [False, False, True, True, False, False]


def test_synthesis_block_fp16_is_float32_on_cpu():
    block = nets.SynthesisBlock(4, 4, w_dim=8, resolution=8, img_channels=3, is_last=False, use_fp16=True)
    x, img = block(torch.randn(2, 4, 4, 4), torch.randn(2, 3, 4, 4), torch.randn(2, 3, 8), noise_mode='none')
    assert x.dtype == torch.float32 and img.dtype == torch.float32
    assert x.shape == (2, 4, 8, 8) and img.shape == (2, 3, 8, 8)


def test_generator_builds_synthesis_then_mapping():
    G = nets.Generator(z_dim=4, c_dim=2, w_dim=8, img_resolution=8, img_channels=3, mapping_kwargs={'num_layers': 1},
        channel_base=32, channel_max=4, num_fp16_res=0)
    assert [name for name, _ in G.named_children()] == ['synthesis', 'mapping']
    assert G.num_ws == G.mapping.num_ws == 4
    assert G(torch.randn(2, 4), torch.randn(2, 2), noise_mode='none').shape == (2, 3, 8, 8)

#----------------------------------------------------------------------------
# Discriminator side.

def test_minibatch_std_uses_strided_groups():
    layer = nets.MinibatchStdLayer(group_size=2)
    x = torch.randn(4, 3, 2, 2)
    y = layer(x)
    assert y.shape == (4, 4, 2, 2) and torch.equal(y[:, :3], x)
    # Groups are {0, 2} and {1, 3}: sample n is in subgroup n mod (N / G).
    for members in ([0, 2], [1, 3]):
        group = x[members]
        std = (group.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        for n in members:
            torch.testing.assert_close(y[n, 3], std.expand(2, 2))
    with pytest.raises(ValueError, match='divisible'):
        nets.MinibatchStdLayer(group_size=4)(torch.randn(6, 3, 2, 2))


def test_discriminator_block_freeze_layers():
    block = nets.DiscriminatorBlock(0, 4, 8, resolution=8, img_channels=3, first_layer_idx=0, freeze_layers=2)
    assert block.num_layers == 4
    frozen = {name for name, _ in block.named_buffers() if not name.endswith('resample_filter')}
    assert frozen == {'fromrgb.weight', 'fromrgb.bias', 'conv0.weight', 'conv0.bias'}
    later = nets.DiscriminatorBlock(4, 4, 8, resolution=4, img_channels=3, first_layer_idx=4, freeze_layers=2)
    assert later.num_layers == 3 and not hasattr(later, 'fromrgb') and len(list(later.parameters())) == 5

    x, img = block(None, torch.randn(2, 3, 8, 8))
    assert x.shape == (2, 8, 4, 4) and img is None


def test_epilogue_projects_onto_cmap():
    epilogue = nets.DiscriminatorEpilogue(4, cmap_dim=6, resolution=4, img_channels=3, mbstd_group_size=2)
    x, cmap = torch.randn(2, 4, 4, 4), torch.randn(2, 6)
    out = epilogue(x, None, cmap)
    hidden = epilogue.out(epilogue.fc(epilogue.conv(epilogue.mbstd(x)).flatten(1)))
    torch.testing.assert_close(out, (hidden * cmap).sum(dim=1, keepdim=True) / np.sqrt(6))


def test_stylegan2_discriminator_forward():
    D = nets.Discriminator(c_dim=3, img_resolution=16, img_channels=3, channel_base=64, channel_max=8,
        epilogue_kwargs={'mbstd_group_size': 2})
    assert D.block_resolutions == [16, 8]
    assert [name for name, _ in D.named_children()] == ['b16', 'b8', 'mapping', 'b4']
    assert D.mapping.w_dim == 8 and D.b4.cmap_dim == 8
    logits = D(torch.randn(4, 3, 16, 16), torch.randn(4, 3))
    assert logits.shape == (4, 1) and logits.dtype == torch.float32
    unconditional = nets.Discriminator(c_dim=0, img_resolution=8, img_channels=3, channel_base=32, channel_max=4)
    assert not hasattr(unconditional, 'mapping') and unconditional(torch.randn(2, 3, 8, 8), None).shape == (2, 1)

#----------------------------------------------------------------------------
# Float64 re-computations straight from the spec formulas (networks.md §1-§4, §7) for the paths that the
# golden files do not exercise: 'skip'/'resnet'/'orig' blocks, up/down layers, noise modes and clamping.

_F64 = torch.float64
_FIR = torch.outer(torch.tensor([1., 3, 3, 1], dtype=_F64), torch.tensor([1., 3, 3, 1], dtype=_F64)) / 64


def _fir(x, pad, gain=1.0):
    """4x4 [1,3,3,1] FIR filter per channel after zero padding [x0, x1, y0, y1]."""
    weight = (_FIR * gain)[None, None].repeat(x.shape[1], 1, 1, 1)
    return torch.nn.functional.conv2d(torch.nn.functional.pad(x, pad), weight, groups=x.shape[1])


def _ref_upsample2d(x):
    """Zero insertion (sample k -> index 2k), pad 2 before / 1 after, filter with gain 4."""
    N, C, H, W = x.shape
    up = torch.zeros(N, C, H * 2, W * 2, dtype=x.dtype)
    up[:, :, ::2, ::2] = x
    return _fir(up, [2, 1, 2, 1], gain=4)


def _ref_downsample2d(x):
    return _fir(x, [1, 1, 1, 1])[:, :, ::2, ::2]


def _ref_act(x, activation, gain, clamp):
    if activation == 'lrelu':
        x = torch.nn.functional.leaky_relu(x, 0.2) * np.sqrt(2)
    x = x * gain
    return x.clamp(-clamp * gain, clamp * gain) if clamp is not None else x


def _ref_fc(layer, x):
    y = x @ (layer.weight.double() * layer.weight_gain).t() + layer.bias.double() * layer.bias_gain
    return _ref_act(y, layer.activation, 1, None)


def _ref_conv2d_layer(layer, x, gain=1):
    w = layer.weight.double() * layer.weight_gain
    k = w.shape[-1]
    if layer.down == 2 and k == 1:
        y = torch.nn.functional.conv2d(_ref_downsample2d(x), w)
    elif layer.down == 2:
        y = torch.nn.functional.conv2d(_fir(x, [2, 2, 2, 2]), w, stride=2)
    elif layer.up == 2:
        y = _ref_upsample2d(torch.nn.functional.conv2d(x, w))
    else:
        y = torch.nn.functional.conv2d(x, w, padding=k // 2)
    if layer.bias is not None:
        y = y + layer.bias.double().reshape(1, -1, 1, 1)
    return _ref_act(y, layer.activation, gain, layer.conv_clamp)


def _ref_synthesis_layer(layer, x, w, noise_mode, gain=1):
    styles = _ref_fc(layer.affine, w)
    out = []
    for n in range(x.shape[0]):
        weight = layer.weight.double() * styles[n].reshape(1, -1, 1, 1)
        weight = weight / (weight.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        if layer.up == 2: # transposed conv (stride 2, unflipped weight), then FIR with padding 1 and gain 4
            y = torch.nn.functional.conv_transpose2d(x[n:n + 1], weight.transpose(0, 1), stride=2)
            y = _fir(y, [1] * 4, gain=4)
        else:
            y = torch.nn.functional.conv2d(x[n:n + 1], weight, padding=1)
        out.append(y)
    y = torch.cat(out)
    if noise_mode == 'random':
        noise = torch.randn([x.shape[0], 1, layer.resolution, layer.resolution]).double()
        y = y + noise * layer.noise_strength.double()
    if noise_mode == 'const':
        y = y + layer.noise_const.double() * layer.noise_strength.double()
    return _ref_act(y + layer.bias.double().reshape(1, -1, 1, 1), 'lrelu', gain, layer.conv_clamp)


def _ref_torgb(layer, x, w):
    styles = _ref_fc(layer.affine, w) * layer.weight_gain
    y = torch.cat([torch.nn.functional.conv2d(x[n:n + 1], layer.weight.double() * styles[n].reshape(1, -1, 1, 1))
        for n in range(x.shape[0])])
    return _ref_act(y + layer.bias.double().reshape(1, -1, 1, 1), 'linear', 1, layer.conv_clamp)


def _ref_synthesis_block(block, x, img, ws, noise_mode):
    batch_size = ws.shape[0]
    ws = iter(ws.double().unbind(dim=1))
    if block.in_channels == 0:
        x = block.const.double()[None].repeat(batch_size, 1, 1, 1)
        x = _ref_synthesis_layer(block.conv1, x, next(ws), noise_mode)
    elif block.architecture == 'resnet':
        y = _ref_conv2d_layer(block.skip, x, gain=np.sqrt(0.5))
        x = _ref_synthesis_layer(block.conv0, x, next(ws), noise_mode)
        x = y + _ref_synthesis_layer(block.conv1, x, next(ws), noise_mode, gain=np.sqrt(0.5))
    else:
        x = _ref_synthesis_layer(block.conv1, _ref_synthesis_layer(block.conv0, x, next(ws), noise_mode), next(ws),
            noise_mode)
    if img is not None:
        img = _ref_upsample2d(img)
    if block.is_last or block.architecture == 'skip':
        y = _ref_torgb(block.torgb, x, next(ws))
        img = img + y if img is not None else y
    return x, img


def _perturb(module):
    """Move biases and noise strengths off their (inert) initial values."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith('noise_strength'):
                param.fill_(0.7)
            elif name.endswith('bias'):
                param.normal_()
    return module


@pytest.mark.parametrize('architecture', ['skip', 'resnet', 'orig'])
@pytest.mark.parametrize('is_last', [False, True])
@pytest.mark.parametrize('noise_mode', ['random', 'const', 'none'])
@pytest.mark.parametrize('fused', [True, False])
def test_synthesis_block_matches_float64_reference(architecture, is_last, noise_mode, fused):
    torch.manual_seed(0)
    block = _perturb(nets.SynthesisBlock(4, 6, w_dim=8, resolution=8, img_channels=3, is_last=is_last,
        architecture=architecture, conv_clamp=0.8))
    assert block.num_conv == 2 and block.num_torgb == int(is_last or architecture == 'skip')
    x = torch.randn(2, 4, 4, 4)
    img = torch.randn(2, 3, 4, 4) if architecture == 'skip' else None
    ws = torch.randn(2, block.num_conv + block.num_torgb, 8)
    torch.manual_seed(1) # 'random': one randn [N, 1, res, res] per layer, conv0 then conv1
    x_out, img_out = block(x, None if img is None else img.clone(), ws, noise_mode=noise_mode, fused_modconv=fused)
    torch.manual_seed(1)
    x_ref, img_ref = _ref_synthesis_block(block, x.double(), None if img is None else img.double(), ws, noise_mode)
    assert x_out.shape == (2, 6, 8, 8)
    torch.testing.assert_close(x_out.double(), x_ref, rtol=0, atol=1e-5)
    assert (img_out is None) == (img_ref is None)
    if img_ref is not None:
        assert img_out.shape == (2, 3, 8, 8) and img_out.dtype == torch.float32
        torch.testing.assert_close(img_out.double(), img_ref, rtol=0, atol=1e-5)


def test_first_synthesis_block_matches_float64_reference():
    torch.manual_seed(0)
    block = _perturb(nets.SynthesisBlock(0, 6, w_dim=8, resolution=4, img_channels=3, is_last=False, conv_clamp=None))
    assert not hasattr(block, 'conv0') and block.num_conv == 1
    ws = torch.randn(2, 2, 8)
    x_out, img_out = block(None, None, ws, noise_mode='const')
    x_ref, img_ref = _ref_synthesis_block(block, None, None, ws, 'const')
    torch.testing.assert_close(x_out.double(), x_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(img_out.double(), img_ref, rtol=0, atol=1e-5)


def test_modulated_conv2d_float16_prescaling():
    # float16 + demodulation: weight and styles are normalized first (demodulation cancels it), so styles far
    # beyond the float16 range still give finite results in both forms.
    torch.manual_seed(0)
    x = torch.randn(2, 4, 6, 6)
    weight = torch.randn(5, 4, 3, 3)
    styles = torch.randn(2, 4) * 1e5
    ref = _modconv_reference(x, weight, styles, None, demodulate=True)
    for fused in (True, False):
        y = nets.modulated_conv2d(x.half(), weight, styles, padding=1, fused_modconv=fused)
        assert y.dtype == torch.float16 and torch.isfinite(y).all()
        torch.testing.assert_close(y.double(), ref, rtol=0, atol=1e-2)


def _ref_discriminator_block(block, x, img):
    if block.in_channels == 0 or block.architecture == 'skip':
        y = _ref_conv2d_layer(block.fromrgb, img)
        x = x + y if x is not None else y
        img = _ref_downsample2d(img) if block.architecture == 'skip' else None
    if block.architecture == 'resnet':
        y = _ref_conv2d_layer(block.skip, x, gain=np.sqrt(0.5))
        x = y + _ref_conv2d_layer(block.conv1, _ref_conv2d_layer(block.conv0, x), gain=np.sqrt(0.5))
    else:
        x = _ref_conv2d_layer(block.conv1, _ref_conv2d_layer(block.conv0, x))
    return x, img


@pytest.mark.parametrize('architecture', ['skip', 'resnet', 'orig'])
@pytest.mark.parametrize('in_channels', [0, 4])
def test_discriminator_block_matches_float64_reference(architecture, in_channels):
    torch.manual_seed(0)
    block = _perturb(nets.DiscriminatorBlock(in_channels, 4, 6, resolution=8, img_channels=3, first_layer_idx=0,
        architecture=architecture, conv_clamp=0.9))
    x = torch.randn(2, 4, 8, 8) if in_channels else None
    img = torch.randn(2, 3, 8, 8) if in_channels == 0 or architecture == 'skip' else None
    x_out, img_out = block(x, img)
    x_ref, img_ref = _ref_discriminator_block(block, None if x is None else x.double(),
        None if img is None else img.double())
    assert x_out.shape == (2, 6, 4, 4)
    torch.testing.assert_close(x_out.double(), x_ref, rtol=0, atol=1e-5)
    assert (img_out is None) == (architecture != 'skip')
    if img_ref is not None:
        torch.testing.assert_close(img_out.double(), img_ref, rtol=0, atol=1e-6)


def test_skip_epilogue_adds_fromrgb():
    torch.manual_seed(0)
    epilogue = _perturb(nets.DiscriminatorEpilogue(4, cmap_dim=0, resolution=4, img_channels=3, architecture='skip',
        mbstd_group_size=2, mbstd_num_channels=0))
    assert epilogue.mbstd is None and epilogue.out.out_features == 1
    x, img = torch.randn(2, 4, 4, 4), torch.randn(2, 3, 4, 4)
    h = x.double() + _ref_conv2d_layer(epilogue.fromrgb, img.double())
    h = _ref_fc(epilogue.fc, _ref_conv2d_layer(epilogue.conv, h).flatten(1))
    torch.testing.assert_close(epilogue(x, img, None).double(), _ref_fc(epilogue.out, h), rtol=0, atol=1e-5)


def test_minibatch_std_with_several_channel_groups():
    x = torch.randn(6, 4, 3, 3)
    y = nets.MinibatchStdLayer(group_size=3, num_channels=2)(x)
    assert y.shape == (6, 6, 3, 3) and torch.equal(y[:, :4], x)
    for members in ([0, 2, 4], [1, 3, 5]): # subgroup n mod 2
        for f in range(2): # channels 2f, 2f+1
            group = x[members, 2 * f:2 * f + 2].double()
            std = (group.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
            for n in members:
                torch.testing.assert_close(y[n, 4 + f].double(), std.expand(3, 3), rtol=0, atol=1e-6)

#----------------------------------------------------------------------------
# Embedded-source contract (compat.md §9): snapshots carry this module's source, and the official code runs it
# against its own torch_utils. Only these imports and names exist there with the meaning we rely on.

_PORTABLE_IMPORTS = {'numpy', 'torch', 'scipy.signal', 'scipy.special', 'torch_utils.misc',
    'torch_utils.persistence', 'torch_utils.ops.bias_act', 'torch_utils.ops.conv2d_resample', 'torch_utils.ops.fma',
    'torch_utils.ops.upfirdn2d', 'torch_utils.ops.conv2d_gradfix', 'torch_utils.ops.filtered_lrelu'}
_PORTABLE_NAMES = {'misc': {'profiled_function', 'assert_shape', 'suppress_tracer_warnings'},
    'persistence': {'persistent_class'}, 'conv2d_resample': {'conv2d_resample'},
    'upfirdn2d': {'setup_filter', 'upsample2d', 'downsample2d'}, 'bias_act': {'bias_act', 'activation_funcs'},
    'fma': {'fma'}, 'conv2d_gradfix': {'conv2d'}, 'filtered_lrelu': {'filtered_lrelu'}}
# Public top-level names: official pickles are matched to our modules by the set of classes their embedded
# source defines, and other modules may import only official names from these two.
_OFFICIAL_DEFINITIONS = {
    'training/networks_stylegan2.py': {'normalize_2nd_moment', 'modulated_conv2d', 'FullyConnectedLayer',
        'Conv2dLayer', 'MappingNetwork', 'SynthesisLayer', 'ToRGBLayer', 'SynthesisBlock', 'SynthesisNetwork',
        'Generator', 'DiscriminatorBlock', 'MinibatchStdLayer', 'DiscriminatorEpilogue', 'Discriminator'},
    'training/networks_stylegan3.py': {'modulated_conv2d', 'design_lowpass_filter', 'FullyConnectedLayer',
        'MappingNetwork', 'SynthesisInput', 'SynthesisLayer', 'SynthesisNetwork', 'Generator'},
}


@pytest.mark.parametrize('path', sorted(_OFFICIAL_DEFINITIONS))
def test_embedded_module_uses_only_portable_names(path):
    tree = ast.parse((pathlib.Path(__file__).parents[1] / path).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported |= {f'{node.module}.{alias.name}' if node.module in ('torch_utils', 'torch_utils.ops')
                else node.module for alias in node.names}
    assert imported <= _PORTABLE_IMPORTS, imported - _PORTABLE_IMPORTS
    used = {(node.value.id, node.attr) for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in _PORTABLE_NAMES}
    assert used and all(attr in _PORTABLE_NAMES[module] for module, attr in used), used
    defined = {node.name for node in tree.body if isinstance(node, (ast.ClassDef, ast.FunctionDef))}
    assert {name for name in defined if not name.startswith('_')} == _OFFICIAL_DEFINITIONS[path]
