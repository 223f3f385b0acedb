"""Super-resolution modules: structure, resize rules, last-w conditioning and the in-place image_raw quirk."""

import pytest
import torch

import dnnlib
from training import superresolution as sr_lib
from training.networks_stylegan2 import SynthesisBlock

SR_KWARGS = dict(channels=32, sr_num_fp16_res=4, channel_base=32768, channel_max=512,
    fused_modconv_default='inference_only')

# class name -> (img_resolution, input_resolution, block0 type, block0 (in, out, res), block1 (in, out, res))
LAYOUTS = {
    'SuperresolutionHybrid2X':   (128, 64, sr_lib.SynthesisBlockNoUp, (32, 128, 64), (128, 64, 128)),
    'SuperresolutionHybrid4X':   (256, 128, sr_lib.SynthesisBlockNoUp, (32, 128, 128), (128, 64, 256)),
    'SuperresolutionHybrid8X':   (512, 128, SynthesisBlock, (32, 128, 256), (128, 64, 512)),
    'SuperresolutionHybrid8XDC': (512, 128, SynthesisBlock, (32, 256, 256), (256, 128, 512)),
}


def _build(name, **overrides):
    kwargs = dict(SR_KWARGS, img_resolution=LAYOUTS[name][0], sr_antialias=True)
    kwargs.update(overrides)
    return dnnlib.util.construct_class_by_name(class_name=f'training.superresolution.{name}', **kwargs)


def _block_layout(block):
    conv0 = block.conv0
    return (conv0.in_channels, conv0.out_channels, block.resolution)


@pytest.fixture(scope='module')
def sr2x():
    torch.manual_seed(0)
    return _build('SuperresolutionHybrid2X').eval()


@pytest.mark.parametrize('name', sorted(LAYOUTS))
def test_structure(name):
    img_res, input_res, block0_type, block0, block1 = LAYOUTS[name]
    sr = _build(name)
    assert sr.input_resolution == input_res and sr.sr_antialias is True
    assert type(sr.block0) is block0_type and type(sr.block1) is SynthesisBlock
    assert _block_layout(sr.block0) == block0 and _block_layout(sr.block1) == block1
    assert sr.block1.is_last and not sr.block0.is_last
    assert sr.block0.use_fp16 and sr.block0.conv0.conv_clamp == 256 # sr_num_fp16_res > 0 also turns on clamping
    assert ('resample_filter' in dict(sr.named_buffers())) == (name != 'SuperresolutionHybrid8XDC')
    with pytest.raises(AssertionError):
        _build(name, img_resolution=img_res * 2)


def test_no_fp16_means_no_clamp():
    sr = _build('SuperresolutionHybrid2X', sr_num_fp16_res=0)
    assert not sr.block0.use_fp16 and sr.block0.conv1.conv_clamp is None and sr.block1.torgb.conv_clamp is None


class _Recorder(torch.nn.Module):
    """Stands in for an SR block: records what it receives and passes it through."""
    def __init__(self, log):
        super().__init__()
        self.log = log

    def forward(self, x, img, ws, **kwargs):
        self.log.append((tuple(x.shape), tuple(img.shape), ws.clone(), kwargs))
        return x, img


@pytest.mark.parametrize('name, width, resized', [
    ('SuperresolutionHybrid2X', 64, False), ('SuperresolutionHybrid2X', 32, True),
    ('SuperresolutionHybrid2X', 128, True), ('SuperresolutionHybrid4X', 64, True),
    ('SuperresolutionHybrid4X', 128, False), ('SuperresolutionHybrid4X', 256, False),
    ('SuperresolutionHybrid8XDC', 64, True), ('SuperresolutionHybrid8XDC', 256, True),
    ('SuperresolutionHybrid8X', 128, False),
])
def test_resize_rule_and_last_w(name, width, resized):
    sr = _build(name)
    log = []
    sr.block0, sr.block1 = _Recorder(log), _Recorder(log)
    ws = torch.randn(2, 14, 512)
    sr(torch.randn(2, 3, width, width), torch.randn(2, 32, width, width), ws, noise_mode='none')
    expected = sr.input_resolution if resized else width
    assert log[0][0] == (2, 32, expected, expected) and log[0][1] == (2, 3, expected, expected)
    for _, _, block_ws, kwargs in log:
        assert torch.equal(block_ws, ws[:, -1:].repeat(1, 3, 1)) # Only the last w, three times.
        assert kwargs == {'noise_mode': 'none'}


def test_resize_is_bilinear_with_antialias_flag():
    for antialias in (True, False):
        sr = _build('SuperresolutionHybrid2X', sr_antialias=antialias)
        log = []
        sr.block0, sr.block1 = _Recorder(log), _Recorder(log)
        rgb = torch.randn(1, 3, 128, 128)
        out = sr(rgb, torch.randn(1, 32, 128, 128), torch.randn(1, 14, 512))
        ref = torch.nn.functional.interpolate(rgb, size=(64, 64), mode='bilinear', align_corners=False,
            antialias=antialias)
        torch.testing.assert_close(out, ref)


def test_2x_adds_block0_rgb_into_raw_image_in_place(sr2x):
    torch.manual_seed(1)
    features = torch.randn(2, 32, 64, 64)
    rgb = features[:, :3] # The generator passes a view, exactly like this.
    raw_before = rgb.clone()
    torgb_out = []
    handle = sr2x.block0.torgb.register_forward_hook(lambda module, args, out: torgb_out.append(out.clone()))
    ws = torch.randn(2, 14, 512)
    try:
        image = sr2x(rgb, features, ws, noise_mode='none')
    finally:
        handle.remove()
    assert image.shape == (2, 3, 128, 128)
    torch.testing.assert_close(rgb, raw_before + torgb_out[0], rtol=0, atol=0)
    assert not torch.equal(rgb, raw_before)

    # The SR output itself does not depend on the aliasing.
    clean = sr2x(raw_before.clone(), torch.cat([raw_before, features[:, 3:]], dim=1), ws, noise_mode='none')
    torch.testing.assert_close(image, clean, rtol=0, atol=0)

    # After a resize the caller's tensor is left alone.
    small = torch.randn(2, 32, 32, 32)
    small_rgb = small[:, :3]
    small_before = small_rgb.clone()
    sr2x(small_rgb, small, ws, noise_mode='none')
    assert torch.equal(small_rgb, small_before)


def test_2x_training_backward_through_in_place_raw_image():
    torch.manual_seed(2)
    sr = _build('SuperresolutionHybrid2X', sr_num_fp16_res=0).train()
    features = torch.randn(1, 32, 64, 64, requires_grad=True)
    feature_image = features * 1 # Non-leaf, like the renderer output.
    rgb = feature_image[:, :3]
    image = sr(rgb, feature_image, torch.randn(1, 14, 512), noise_mode='none')
    (image.square().mean() + rgb.mean()).backward() # Gradient also flows through the in-place add.
    assert features.grad is not None and torch.isfinite(features.grad).all()
    assert sr.block0.torgb.bias.grad is not None


def test_deepfp32_cannot_take_sr_antialias():
    sr = dnnlib.util.construct_class_by_name(class_name='training.superresolution.SuperresolutionHybridDeepfp32',
        channels=32, img_resolution=256, sr_num_fp16_res=0)
    assert sr.input_resolution == 128 and not hasattr(sr, 'sr_antialias')
    assert type(sr.block0) is sr_lib.SynthesisBlockNoUp
    with pytest.raises(TypeError):
        dnnlib.util.construct_class_by_name(class_name='training.superresolution.SuperresolutionHybridDeepfp32',
            channels=32, img_resolution=256, sr_num_fp16_res=0, sr_antialias=True)

#----------------------------------------------------------------------------

def test_no_up_block_keeps_resolution():
    torch.manual_seed(3)
    block = sr_lib.SynthesisBlockNoUp(4, 6, w_dim=8, resolution=8, img_channels=3, is_last=False, conv_clamp=None)
    assert block.conv0.up == 1 and 'resample_filter' not in block.conv0.init_kwargs
    assert 'resample_filter' in dict(block.named_buffers()) # registered, never used
    x, img, ws = torch.randn(2, 4, 8, 8), torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8)
    x_out, img_out = block(x, img.clone(), ws, noise_mode='none')
    assert x_out.shape == (2, 6, 8, 8)
    expected_x = block.conv1(block.conv0(x, ws[:, 0], noise_mode='none'), ws[:, 1], noise_mode='none')
    torch.testing.assert_close(x_out, expected_x, rtol=0, atol=0)
    torch.testing.assert_close(img_out, img + block.torgb(x_out, ws[:, 2]), rtol=0, atol=0) # no upsampling
    with pytest.raises(AssertionError):
        block(torch.randn(2, 4, 4, 4), None, ws) # input must already be at the block's resolution

    # The unused 'resnet' skip is the original's up-2 layer (constructor and pickled attributes as in SynthesisBlock).
    resnet = sr_lib.SynthesisBlockNoUp(4, 6, w_dim=8, resolution=8, img_channels=3, is_last=True, architecture='resnet')
    assert resnet.skip.up == 2 and resnet.skip.init_kwargs['up'] == 2


def test_deepfp32_resizes_narrower_inputs_without_antialias():
    sr = dnnlib.util.construct_class_by_name(class_name='training.superresolution.SuperresolutionHybridDeepfp32',
        channels=32, img_resolution=256, sr_num_fp16_res=0)
    log = []
    sr.block0, sr.block1 = _Recorder(log), _Recorder(log)
    rgb, ws = torch.randn(1, 3, 64, 64), torch.randn(1, 14, 512)
    out = sr(rgb, torch.randn(1, 32, 64, 64), ws)
    ref = torch.nn.functional.interpolate(rgb, size=(128, 128), mode='bilinear', align_corners=False, antialias=False)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    assert torch.equal(log[0][2], ws[:, -1:].repeat(1, 3, 1))
    wide = torch.randn(1, 3, 256, 256)
    assert sr(wide, torch.randn(1, 32, 256, 256), ws) is wide # only narrower inputs are resized
