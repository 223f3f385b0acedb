"""EG3D discriminators: golden logits and input gradients (reduced shapenet config), filtered_resizing,
label noise, and the Single/Dummy variants."""

import os

import numpy as np
import pytest
import torch
from helpers import GOLDEN_DIR, build_golden_discriminator

from training import dual_discriminator as dd

LOGIT_TOL = 1e-4
GRAD_REL_TOL = 1e-3


@pytest.fixture(scope='module')
def D():
    return build_golden_discriminator()


@pytest.fixture(scope='module')
def io():
    return np.load(os.path.join(GOLDEN_DIR, 'shapenet_io.npz'))


def _max_err(actual, ref):
    return float(np.abs(actual.detach().numpy().astype(np.float64) - ref.astype(np.float64)).max())

#----------------------------------------------------------------------------

def test_golden_logits_on_generator_output(D, io):
    img = dict(image=torch.from_numpy(io['psi1.image']), image_raw=torch.from_numpy(io['psi1.image_raw']))
    logits = D(img, torch.from_numpy(io['c']))
    assert logits.shape == (2, 1)
    assert _max_err(logits, io['D.a.logits']) <= LOGIT_TOL


def test_golden_logits_and_input_gradients(D, io):
    image = torch.from_numpy(io['D.b.image']).requires_grad_(True)
    image_raw = torch.from_numpy(io['D.b.image_raw']).requires_grad_(True)
    c = torch.from_numpy(io['D.b.c'])
    c_before = c.clone()
    logits = D(dict(image=image, image_raw=image_raw), c)
    assert _max_err(logits, io['D.b.logits']) <= LOGIT_TOL
    logits.sum().backward()
    for name, grad in (('grad_image', image.grad), ('grad_image_raw', image_raw.grad)):
        ref = io[f'D.b.{name}']
        assert _max_err(grad, ref) <= GRAD_REL_TOL * float(np.abs(ref).max()), name
    assert torch.equal(c, c_before) # disc_c_noise = 0: the label is untouched.


def test_attributes(D):
    assert D.img_channels == 6 and D.init_kwargs.img_channels == 3
    assert D.block_resolutions == [128, 64, 32, 16, 8] and D.img_resolution_log2 == 7
    assert D.b128.img_channels == 6 and D.b128.fromrgb.weight.shape[1] == 6
    assert D.disc_c_noise == 0.0

#----------------------------------------------------------------------------

def test_filtered_resizing_modes():
    torch.manual_seed(0)
    f = dd.upfirdn2d.setup_filter([1, 3, 3, 1])
    x = torch.randn(2, 3, 16, 16)

    def bilinear(antialias):
        return torch.nn.functional.interpolate(x, size=(32, 32), mode='bilinear', align_corners=False,
            antialias=antialias)

    torch.testing.assert_close(dd.filtered_resizing(x, 32, f), bilinear(True), rtol=0, atol=0)
    torch.testing.assert_close(dd.filtered_resizing(x, 32, f, filter_mode='none'), bilinear(False), rtol=0, atol=0)
    torch.testing.assert_close(dd.filtered_resizing(x, 32, f, filter_mode=0.25),
        0.75 * bilinear(False) + 0.25 * bilinear(True))
    classic = dd.filtered_resizing(x, 32, f, filter_mode='classic')
    assert classic.shape == (2, 3, 32, 32)
    # FIR up, bilinear to 2*size+2, FIR down with 1 px crop: a constant image stays constant.
    flat = dd.filtered_resizing(torch.ones(1, 1, 16, 16), 8, f, filter_mode='classic')
    torch.testing.assert_close(flat[..., 1:-1, 1:-1], torch.ones(1, 1, 6, 6))
    for bad in ('bicubic', 1.5, 2):
        with pytest.raises(ValueError, match='filter_mode'):
            dd.filtered_resizing(x, 32, f, filter_mode=bad)


def test_filtered_resizing_classic_matches_float64_reference():
    # upsample2d (zero insertion, pad 2/1, 4x4 [1,3,3,1] filter with gain 4), bilinear to 2*size+2 without
    # antialiasing, then downsample2d (flipped filter, pad 1/1 minus the 1 px crop, keep even samples).
    torch.manual_seed(0)
    f = dd.upfirdn2d.setup_filter([1, 3, 3, 1])
    x = torch.randn(2, 3, 8, 8)
    size = 12
    k = f.double()[None, None].repeat(3, 1, 1, 1)
    up = torch.zeros(2, 3, 16, 16, dtype=torch.float64)
    up[:, :, ::2, ::2] = x.double()
    up = torch.nn.functional.conv2d(torch.nn.functional.pad(up, [2, 1, 2, 1]), k * 4, groups=3)
    mid = torch.nn.functional.interpolate(up, size=(2 * size + 2, 2 * size + 2), mode='bilinear', align_corners=False)
    expected = torch.nn.functional.conv2d(mid, k, groups=3)[:, :, ::2, ::2]
    out = dd.filtered_resizing(x, size, f, filter_mode='classic')
    assert out.shape == (2, 3, size, size)
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=1e-5)


def _tiny(cls, **kwargs):
    return cls(c_dim=4, img_resolution=16, img_channels=3, channel_base=64, channel_max=8,
        epilogue_kwargs={'mbstd_group_size': 2}, **kwargs)


def test_disc_c_noise_modifies_label_in_place():
    torch.manual_seed(0)
    D = _tiny(dd.DualDiscriminator, disc_c_noise=0.5)
    img = dict(image=torch.randn(4, 3, 16, 16), image_raw=torch.randn(4, 3, 8, 8))
    c = torch.randn(4, 4)
    c_before = c.clone()
    torch.manual_seed(1)
    D(img, c)
    torch.manual_seed(1)
    expected = c_before + torch.randn_like(c_before) * c_before.std(0) * 0.5
    torch.testing.assert_close(c, expected)


def test_single_discriminator_ignores_raw_image():
    D = _tiny(dd.SingleDiscriminator, sr_upsample_factor=2)
    assert D.img_channels == 3
    image, c = torch.randn(2, 3, 16, 16), torch.randn(2, 4)
    a = D(dict(image=image, image_raw=torch.randn(2, 3, 8, 8)), c)
    b = D(dict(image=image, image_raw=torch.zeros(2, 3, 8, 8)), c)
    assert a.shape == (2, 1)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_dummy_dual_discriminator_fades_raw_image(monkeypatch):
    D = _tiny(dd.DummyDualDiscriminator)
    assert D.raw_fade == 1 and D.img_channels == 6
    seen = []
    monkeypatch.setattr(D, '_score', lambda x, c, **kw: seen.append(x) or x[:, :1, 0, 0])
    image_raw = torch.ones(2, 3, 8, 8)
    D(dict(image=torch.zeros(2, 3, 16, 16), image_raw=image_raw), torch.randn(2, 4))
    D(dict(image=torch.zeros(2, 3, 16, 16), image_raw=image_raw), torch.randn(2, 4))
    step = 32 / 500000
    assert D.raw_fade == pytest.approx(1 - 2 * step)
    torch.testing.assert_close(seen[1][:, 3:], torch.full((2, 3, 16, 16), 1 - 2 * step))
    D.raw_fade = step / 2
    D(dict(image=torch.zeros(2, 3, 16, 16), image_raw=image_raw), torch.randn(2, 4))
    assert D.raw_fade == 0

#----------------------------------------------------------------------------
