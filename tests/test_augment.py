"""AugmentPipe: buffers and kwargs against the afhq tables, and the effect of every augmentation."""

import copy
import csv
import json
import math
import os
import pickle

import pytest
import torch
from helpers import STATE_DICTS_DIR

import dnnlib
from training.augment import AugmentPipe

GEOMETRIC = dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1)
COLOR = dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
EVERYTHING = dict(GEOMETRIC, **COLOR, imgfilter=1, noise=1, cutout=1)


def _smooth_images(n=2, c=3, res=32, seed=0):
    """Band-limited images (amplitude ~1-2). Flips and rotations through the resampler are not exact even for
    these: sym6 is not linear-phase, which leaves errors of a few hundredths (0.1 tolerated below)."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randn([n, c, 4, 4], generator=gen)
    return torch.nn.functional.interpolate(coarse, size=(res, res), mode='bicubic', align_corners=True)


def _interior(x, border=4):
    return x[..., border:-border, border:-border]


def _blob(res=64, sigma=4.0):
    coord = torch.arange(res, dtype=torch.float32) - (res - 1) / 2
    return torch.exp(-(coord[None, :] ** 2 + coord[:, None] ** 2) / (2 * sigma ** 2))[None, None]


def _spread(img):
    """Standard deviations of the (non-negative) image mass along x and y."""
    img = img[0, 0].clamp(min=0)
    coord = torch.arange(img.shape[0], dtype=torch.float32) - (img.shape[0] - 1) / 2
    mass = img.sum()
    sx = ((img.sum(0) * coord ** 2).sum() / mass).sqrt()
    sy = ((img.sum(1) * coord ** 2).sum() / mass).sqrt()
    return float(sx), float(sy)


def _percentile_for(value):
    """debug_percentile q whose Gaussian draw erfinv(2q - 1) equals value."""
    return (1 + math.erf(value)) / 2


# ----------------------------------------------------------------------------
# Layout.


def test_buffers_and_kwargs_match_afhq_tables():
    with open(os.path.join(STATE_DICTS_DIR, 'afhq_augment_pipe_kwargs.json')) as f:
        kwargs = json.load(f)
    with open(os.path.join(STATE_DICTS_DIR, 'afhq_augment_pipe_buffers.json')) as f:
        buffers = json.load(f)
    with open(os.path.join(STATE_DICTS_DIR, 'afhq_augment_pipe.tsv')) as f:
        table = list(csv.DictReader(f, delimiter='\t'))

    pipe = dnnlib.util.construct_class_by_name(class_name='training.augment.AugmentPipe', **kwargs)
    assert pipe.init_kwargs == kwargs and pipe.init_args == ()
    assert float(pipe.p) == 1.0
    pipe.p.copy_(torch.as_tensor(buffers['p_initial']))  # what the training loop does for --aug=ada

    state = pipe.state_dict()
    assert [row['name'] for row in table] == list(state.keys())
    for row in table:
        assert row['kind'] == 'buffer'
        assert list(state[row['name']].shape) == json.loads(row['shape'])
        assert str(state[row['name']].dtype) == 'torch.' + row['dtype']
    assert float(state['p']) == buffers['p_initial']
    assert torch.equal(state['Hz_geom'], torch.tensor(buffers['Hz_geom'], dtype=torch.float32))
    # Hz_fbank comes from float64 np.convolve, whose summation order follows the BLAS kernel of the CPU: the
    # float64 results differ by ~1e-13, which may move the float32 rounding by one ulp.
    torch.testing.assert_close(state['Hz_fbank'], torch.tensor(buffers['Hz_fbank'], dtype=torch.float32),
                               rtol=1.2e-7, atol=1e-12)
    assert len(list(pipe.parameters())) == 0


def test_attribute_defaults():
    pipe = AugmentPipe()
    expected = dict(xflip=0, rotate90=0, xint=0, xint_max=0.125, scale=0, rotate=0, aniso=0, xfrac=0,
                    scale_std=0.2, rotate_max=1, aniso_std=0.2, xfrac_std=0.125, brightness=0, contrast=0,
                    lumaflip=0, hue=0, saturation=0, brightness_std=0.2, contrast_std=0.5, hue_max=1,
                    saturation_std=1, imgfilter=0, imgfilter_std=1, noise=0, cutout=0, noise_std=0.1,
                    cutout_size=0.5)
    for name, value in expected.items():
        assert isinstance(getattr(pipe, name), float) and getattr(pipe, name) == value, name
    assert pipe.imgfilter_bands == [1, 1, 1, 1]


def test_pickle_round_trip():
    pipe = AugmentPipe(**EVERYTHING)
    pipe.p.fill_(0.7)
    clone = pickle.loads(pickle.dumps(pipe))
    assert type(clone).__name__ == 'AugmentPipe' and clone.init_kwargs == EVERYTHING
    x = _smooth_images()
    torch.manual_seed(3)
    a = pipe(x)
    torch.manual_seed(3)
    b = clone(x)
    assert torch.equal(a, b)

# ----------------------------------------------------------------------------
# Probability handling.


def test_p_zero_is_identity():
    x = torch.randn([2, 6, 32, 32])
    pipe = AugmentPipe(**COLOR, imgfilter=1, noise=1, cutout=1)
    pipe.p.zero_()
    assert torch.allclose(pipe(x), x, atol=1e-5, rtol=0)
    # The geometric resampling still runs at p = 0 (original behaviour) but is a near-identity.
    pipe = AugmentPipe(**EVERYTHING)
    pipe.p.zero_()
    assert torch.allclose(pipe(x), x, atol=1e-4, rtol=0)


def test_disabled_pipe_returns_input():
    x = torch.randn([2, 3, 8, 8])
    assert AugmentPipe()(x) is x


def test_xflip_follows_rng_order():
    # Parameter draw first, then the gate; with p = 1 every gate is open.
    x = _smooth_images(n=8, c=1)
    torch.manual_seed(5)
    flips = torch.floor(torch.rand([8]) * 2)
    torch.manual_seed(5)
    y = AugmentPipe(xflip=1)(x)
    for n in range(8):
        target = x[n].flip(2) if flips[n] else x[n]
        assert torch.allclose(_interior(y[n]), _interior(target), atol=0.1), n
    assert 0 < flips.sum() < 8


def test_seeded_runs_reproduce():
    x = _smooth_images(c=3)
    pipe = AugmentPipe(**EVERYTHING)
    pipe.p.fill_(0.5)
    outs = []
    for seed in [1, 1, 2]:
        torch.manual_seed(seed)
        outs.append(pipe(x))
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], outs[2])


@pytest.mark.parametrize('channels', [1, 3, 6])
def test_shape_and_dtype_preserved(channels):
    x = torch.randn([2, channels, 24, 32])  # image filtering reflect-pads by 21 pixels
    torch.manual_seed(0)
    y = AugmentPipe(**EVERYTHING)(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert not torch.allclose(y, x)

# ----------------------------------------------------------------------------
# Each augmentation with a fixed percentile.


def test_xflip_and_rotate90():
    x = _smooth_images()
    assert torch.allclose(AugmentPipe(xflip=1)(x, debug_percentile=0.25), x, atol=1e-4)
    y = AugmentPipe(xflip=1)(x, debug_percentile=0.75)
    assert torch.allclose(_interior(y), _interior(x.flip(3)), atol=0.1)
    assert not torch.allclose(_interior(y), _interior(x), atol=0.5)
    for q, k in [(0.1, 0), (0.3, 1), (0.6, 2), (0.9, 3)]:
        y = AugmentPipe(rotate90=1)(x, debug_percentile=q)
        assert torch.allclose(_interior(y), _interior(torch.rot90(x, k, dims=[2, 3])), atol=0.1 if k else 1e-4), k


def test_integer_translation_is_exact():
    x = _smooth_images(res=32)
    y = AugmentPipe(xint=1)(x, debug_percentile=0.75)  # t = 0.5 * xint_max = 1/16 of the size = 2 px
    assert torch.allclose(y[..., 2:, 2:], x[..., :-2, :-2], atol=1e-5)
    y = AugmentPipe(xint=1)(x, debug_percentile=0.25)
    assert torch.allclose(y[..., :-2, :-2], x[..., 2:, 2:], atol=1e-5)


def test_fractional_translation():
    x = _smooth_images(res=32)
    y = AugmentPipe(xfrac=1)(x, debug_percentile=_percentile_for(0.5))  # t = 0.5 * xfrac_std = 2 px
    assert torch.allclose(y[..., 2:, 2:], x[..., :-2, :-2], atol=1e-4)


def test_isotropic_and_anisotropic_scaling():
    blob = _blob()
    sx, sy = _spread(blob)
    q = _percentile_for(math.log2(1.5) / 0.2)  # s = 1.5
    zx, zy = _spread(AugmentPipe(scale=1)(blob, debug_percentile=q))
    assert zx / sx == pytest.approx(1.5, rel=0.02) and zy / sy == pytest.approx(1.5, rel=0.02)
    ax, ay = _spread(AugmentPipe(aniso=1)(blob, debug_percentile=q))
    assert ax / sx == pytest.approx(1.5, rel=0.02) and ay / sy == pytest.approx(1 / 1.5, rel=0.02)


def test_debug_percentile_sets_only_the_pre_rotation():
    # The pre-rotation turns by (2q - 1) * pi * rotate_max; the post-rotation stays zero (original behaviour).
    x = _smooth_images()
    quarter = _interior(torch.rot90(x, 1, dims=[2, 3]))
    assert torch.allclose(_interior(AugmentPipe(rotate=1)(x, debug_percentile=0.75)), quarter, atol=0.1)
    y = AugmentPipe(rotate=1, rotate_max=0.5)(x, debug_percentile=1.0)
    assert torch.allclose(_interior(y), quarter, atol=0.1)
    y = AugmentPipe(rotate=1)(x, debug_percentile=0.625)  # pi/4 only, not a quarter turn
    assert not torch.allclose(_interior(y), quarter, atol=0.5)
    theta = math.pi / 4
    rotation = torch.tensor([[math.cos(theta), -math.sin(theta), 0], [math.sin(theta), math.cos(theta), 0], [0, 0, 1]])
    G_inv = AugmentPipe(rotate=1)._draw_geometric(2, 8, 8, 'cpu', torch.tensor(0.625))
    assert torch.allclose(G_inv, rotation.expand(2, 3, 3), atol=1e-6)


def test_brightness_and_contrast():
    x = torch.randn([2, 3, 8, 8])
    q = _percentile_for(1.0)
    y = AugmentPipe(brightness=1)(x, debug_percentile=q)
    assert torch.allclose(y, x + 0.2, atol=1e-6)
    y = AugmentPipe(contrast=1)(x, debug_percentile=q)
    assert torch.allclose(y, x * 2 ** 0.5, atol=1e-6)
    y = AugmentPipe(brightness=1, contrast=1)(x, debug_percentile=q)
    assert torch.allclose(y, (x + 0.2) * 2 ** 0.5, atol=1e-5)  # contrast scales around zero after brightness
    y = AugmentPipe(brightness=1)(x[:, :1], debug_percentile=q)
    assert torch.allclose(y, x[:, :1] + 0.2, atol=1e-6)


def test_lumaflip_hue_saturation():
    x = torch.randn([2, 3, 8, 8])
    luma = x.mean(dim=1, keepdim=True)
    y = AugmentPipe(lumaflip=1)(x, debug_percentile=0.75)
    assert torch.allclose(y.mean(dim=1, keepdim=True), -luma, atol=1e-6)
    assert torch.allclose(y - y.mean(dim=1, keepdim=True), x - luma, atol=1e-6)
    assert torch.allclose(AugmentPipe(lumaflip=1)(x[:, :1], debug_percentile=0.75), -x[:, :1], atol=1e-6)
    assert torch.allclose(AugmentPipe(lumaflip=1)(x, debug_percentile=0.25), x, atol=1e-6)

    # A third of a turn around the grey axis cycles the channels.
    y = AugmentPipe(hue=1)(x, debug_percentile=5 / 6)
    assert torch.allclose(y, x[:, [2, 0, 1]], atol=1e-5)
    assert torch.equal(AugmentPipe(hue=1)(x[:, :1], debug_percentile=5 / 6), x[:, :1])  # no hue for 1 channel

    y = AugmentPipe(saturation=1)(x, debug_percentile=_percentile_for(1.0))  # s = 2
    assert torch.allclose(y.mean(dim=1, keepdim=True), luma, atol=1e-5)
    assert torch.allclose(y - luma, (x - luma) * 2, atol=1e-5)


def test_six_channels_share_the_colour_transform():
    x = torch.randn([2, 3, 8, 8])
    y = AugmentPipe(**COLOR)(torch.cat([x, x], dim=1), debug_percentile=0.8)
    assert torch.equal(y[:, :3], y[:, 3:])
    assert torch.allclose(y[:, :3], AugmentPipe(**COLOR)(x, debug_percentile=0.8), atol=1e-6)
    with pytest.raises(ValueError, match='1, 3 or 6 channels'):
        AugmentPipe(brightness=1)(torch.zeros([1, 2, 4, 4]))


def test_imgfilter():
    x = _smooth_images(c=1) + torch.randn([2, 1, 32, 32]) * 0.2
    assert torch.allclose(AugmentPipe(imgfilter=1)(x, debug_percentile=0.5), x, atol=1e-5)

    # Boost only the highest band by t; the gains are renormalised to keep the expected power, and the filter
    # runs along both axes, so DC is scaled by g^2 and the checkerboard (Nyquist on both axes) by (t g)^2.
    q = _percentile_for(1 / math.sqrt(2))  # t = 2 ** (erfinv(2q - 1) * std)
    t = 2 ** (1 / math.sqrt(2))
    g = 1 / math.sqrt((12 + t * t) / 13)
    pipe = AugmentPipe(imgfilter=1, imgfilter_bands=[0, 0, 0, 1])
    ones = torch.ones([1, 1, 64, 64])
    assert torch.allclose(pipe(ones, debug_percentile=q), ones * g * g, atol=1e-5)
    idx = torch.arange(64)
    checker = ((idx[None, :] + idx[:, None]) % 2 * 2 - 1).float()[None, None]
    y = pipe(checker, debug_percentile=q)
    assert torch.allclose(y[..., 24:40, 24:40], checker[..., 24:40, 24:40] * (t * g) ** 2, atol=1e-3)


def test_noise():
    x = torch.zeros([1, 3, 64, 64])
    q = 0.9
    y = AugmentPipe(noise=1)(x, debug_percentile=q)
    sigma = torch.erfinv(torch.tensor(q)).item() * 0.1
    assert y.std().item() == pytest.approx(sigma, rel=0.05)


def test_cutout():
    x = torch.ones([1, 3, 16, 16])
    y = AugmentPipe(cutout=1)(x, debug_percentile=0.5)  # centre 0.5, size 0.5: pixels 4..11 cut
    expected = torch.ones([16, 16])
    expected[4:12, 4:12] = 0
    assert torch.equal(y[0, 0], expected) and torch.equal(y[0, 2], expected)

# ----------------------------------------------------------------------------
# Gradients (R1 on augmented reals needs second order through the resampler).


def test_second_order_gradients_through_geometry():
    pipe = AugmentPipe(**GEOMETRIC, **COLOR, imgfilter=1)
    x = _smooth_images(res=24).requires_grad_(True)
    v = torch.randn_like(x)
    q = 0.7  # fixed parameters: the pipe is an affine map A x + b

    y = pipe(x, debug_percentile=q)
    (g,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)      # 2 A^T (A x + b)
    (h,) = torch.autograd.grad((g * v).sum(), x)                             # 2 A^T A v
    A_v = pipe(v, debug_percentile=q) - pipe(torch.zeros_like(v), debug_percentile=q)
    (expected,) = torch.autograd.grad(pipe(x, debug_percentile=q), x, grad_outputs=2 * A_v)
    assert h.abs().max() > 0.1
    assert torch.allclose(h, expected, atol=1e-4, rtol=1e-4)


def test_gradients_reach_inputs_with_random_draws():
    pipe = AugmentPipe(**EVERYTHING)
    x = torch.randn([2, 6, 24, 24], requires_grad=True)
    torch.manual_seed(0)
    (g,) = torch.autograd.grad(pipe(x).square().sum(), x, create_graph=True)
    g.square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # A deep copy (as the training loop makes for each rank) behaves the same.
    outs = []
    for module in [pipe, copy.deepcopy(pipe)]:
        torch.manual_seed(0)
        outs.append(module(x.detach()))
    assert torch.equal(outs[0], outs[1])

# ----------------------------------------------------------------------------
# Parameter draws against float64 re-computations of networks.md §8 (every draw, in order, with p < 1 so
# that some gates close).


def _matrix3(n, entries):
    m = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
    for (r, c), v in entries.items():
        m[:, r, c] = v
    return m


def _ref_translate(tx, ty):
    return _matrix3(len(tx), {(0, 2): tx, (1, 2): ty})


def _ref_scale(sx, sy):
    return _matrix3(len(sx), {(0, 0): sx, (1, 1): sy})


def _ref_rotate(a):
    return _matrix3(len(a), {(0, 0): a.cos(), (0, 1): -a.sin(), (1, 0): a.sin(), (1, 1): a.cos()})


def test_geometric_draws_follow_spec_order():
    N, H, W, p = 6, 20, 24, 0.6
    kwargs = dict(xint_max=0.2, scale_std=0.3, rotate_max=0.7, aniso_std=0.25, xfrac_std=0.1)
    pipe = AugmentPipe(**GEOMETRIC, **kwargs)
    pipe.p.fill_(p)
    torch.manual_seed(3)
    G_inv = pipe._draw_geometric(N, H, W, 'cpu', None)
    after = torch.rand(4)

    torch.manual_seed(3)
    def gated(value, identity, shape):
        return torch.where(torch.rand(shape) < p, value.double(), torch.full_like(value.double(), identity))
    p_rot = 1 - math.sqrt(1 - p)
    def rotation():
        theta = (torch.rand([N]) * 2 - 1).double() * math.pi * kwargs['rotate_max']
        return torch.where(torch.rand([N]) < p_rot, theta, torch.zeros_like(theta))
    ones = torch.ones([N], dtype=torch.float64)
    inv = torch.linalg.inv
    ref = torch.eye(3, dtype=torch.float64).repeat(N, 1, 1)
    i = gated(torch.floor(torch.rand([N]) * 2), 0, [N])
    ref = ref @ inv(_ref_scale(1 - 2 * i, ones))
    i = gated(torch.floor(torch.rand([N]) * 4), 0, [N])
    ref = ref @ inv(_ref_rotate(-math.pi / 2 * i))
    t = gated((torch.rand([N, 2]) * 2 - 1) * kwargs['xint_max'], 0, [N, 1])
    ref = ref @ inv(_ref_translate(torch.round(t[:, 0] * W), torch.round(t[:, 1] * H)))
    s = gated(2 ** (torch.randn([N]).double() * kwargs['scale_std']), 1, [N])
    ref = ref @ inv(_ref_scale(s, s))
    ref = ref @ inv(_ref_rotate(-rotation()))
    s = gated(2 ** (torch.randn([N]).double() * kwargs['aniso_std']), 1, [N])
    ref = ref @ inv(_ref_scale(s, 1 / s))
    ref = ref @ inv(_ref_rotate(-rotation()))
    t = gated(torch.randn([N, 2]) * kwargs['xfrac_std'], 0, [N, 1])
    ref = ref @ inv(_ref_translate(t[:, 0] * W, t[:, 1] * H))

    assert torch.equal(after, torch.rand(4))
    assert torch.allclose(G_inv.double(), ref, rtol=0, atol=1e-5)
    assert not torch.allclose(ref[:, :2, :2], torch.eye(2, dtype=torch.float64).expand(N, 2, 2), atol=0.01)


def test_colour_draws_follow_spec_order():
    N, p = 6, 0.6
    kwargs = dict(brightness_std=0.3, contrast_std=0.4, hue_max=0.8, saturation_std=0.7)
    pipe = AugmentPipe(**COLOR, **kwargs)
    pipe.p.fill_(p)
    torch.manual_seed(4)
    C = pipe._draw_color(N, 3, 'cpu', None)
    after = torch.rand(4)

    torch.manual_seed(4)
    def gated(value, identity, shape):
        return torch.where(torch.rand(shape) < p, value.double(), torch.full_like(value.double(), identity))
    I = torch.eye(4, dtype=torch.float64)
    v = torch.tensor([1, 1, 1, 0], dtype=torch.float64) / math.sqrt(3)
    vv = torch.outer(v, v)
    ref = I.repeat(N, 1, 1)
    b = gated(torch.randn([N]) * kwargs['brightness_std'], 0, [N])
    shift = I.repeat(N, 1, 1)
    shift[:, :3, 3] = b[:, None]
    ref = shift @ ref
    c = gated(2 ** (torch.randn([N]).double() * kwargs['contrast_std']), 1, [N])
    ref = torch.diag_embed(torch.stack([c, c, c, torch.ones_like(c)], dim=1)) @ ref
    i = gated(torch.floor(torch.rand([N, 1, 1]) * 2), 0, [N, 1, 1])
    ref = (I - 2 * vv * i) @ ref
    theta = gated((torch.rand([N]) * 2 - 1) * math.pi * kwargs['hue_max'], 0, [N])
    cross = torch.tensor([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]], dtype=torch.float64)
    rot = I.repeat(N, 1, 1)
    cos, sin = theta.cos()[:, None, None], theta.sin()[:, None, None]
    rot[:, :3, :3] = cos * torch.eye(3, dtype=torch.float64) + sin * cross + (1 - cos) * vv[:3, :3] # Rodrigues, about v
    ref = rot @ ref
    s = gated(2 ** (torch.randn([N, 1, 1]).double() * kwargs['saturation_std']), 1, [N, 1, 1])
    ref = (vv + (I - vv) * s) @ ref

    assert torch.equal(after, torch.rand(4))
    assert torch.allclose(C.double(), ref, rtol=0, atol=1e-5)

    # Applied as C[:3, :3] @ rgb + C[:3, 3]; for one channel the mean output row acts on the grey value.
    x = torch.randn([N, 3, 5, 5])
    torch.manual_seed(4)
    y = pipe(x)
    expected = torch.einsum('nij,njhw->nihw', ref[:, :3, :3], x.double()) + ref[:, :3, 3, None, None]
    assert torch.allclose(y.double(), expected, rtol=0, atol=1e-5)
    pipe1 = AugmentPipe(brightness=1, contrast=1, lumaflip=1, **kwargs)
    pipe1.p.fill_(p)
    torch.manual_seed(4)
    C1 = pipe1._draw_color(N, 1, 'cpu', None).double()
    grey = torch.randn([N, 1, 5, 5])
    torch.manual_seed(4)
    y1 = pipe1(grey)
    row = C1[:, :3, :].mean(dim=1)
    expected1 = grey.double() * row[:, :3].sum(dim=1)[:, None, None, None] + row[:, 3, None, None, None]
    assert torch.allclose(y1.double(), expected1, rtol=0, atol=1e-5)


def test_geometric_resampling_follows_spec_steps():
    # Reflect-pad by the corner margins, 2x upsample with Hz_geom, bilinear grid_sample on normalized coordinates,
    # 2x downsample with Hz_geom (flipped) and crop: re-computed in float64 for a fixed G_inv.
    pipe = AugmentPipe(rotate=1, scale=1)
    N, C, H, W = 2, 3, 12, 14
    x = torch.randn([N, C, H, W], generator=torch.Generator().manual_seed(0))
    G_inv = torch.tensor([[[0.9, -0.3, 1.2], [0.25, 1.1, -0.7], [0, 0, 1]],
                          [[1.2, 0.1, -0.4], [-0.2, 0.8, 0.3], [0, 0, 1]]])
    y = pipe._resample(x, G_inv)

    f = pipe.Hz_geom.double()
    pad = len(f) // 4
    cx, cy = (W - 1) / 2, (H - 1) / 2
    corners = torch.tensor([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]], dtype=torch.float64)
    pts = torch.einsum('nij,kj->nki', G_inv.double(), corners)[..., :2].reshape(-1, 2)
    lo = (-pts).max(dim=0).values + torch.tensor([2 * pad - cx, 2 * pad - cy], dtype=torch.float64)
    hi = pts.max(dim=0).values + torch.tensor([2 * pad - cx, 2 * pad - cy], dtype=torch.float64)
    limit = torch.tensor([W - 1, H - 1], dtype=torch.float64)
    mx0, my0 = [int(v) for v in lo.clamp(min=0).minimum(limit).ceil()]
    mx1, my1 = [int(v) for v in hi.clamp(min=0).minimum(limit).ceil()]
    img = torch.nn.functional.pad(x.double(), [mx0, mx1, my0, my1], mode='reflect')

    def separable(img, taps, step_pad):  # true convolution along W then H, per channel
        k = taps.flip(0)
        img = torch.nn.functional.pad(img, step_pad)
        ch = img.shape[1]
        img = torch.nn.functional.conv2d(img, k.reshape(1, 1, 1, -1).repeat(ch, 1, 1, 1), groups=ch)
        return torch.nn.functional.conv2d(img, k.reshape(1, 1, -1, 1).repeat(ch, 1, 1, 1), groups=ch)
    fw = len(f)
    up = torch.zeros(N, C, img.shape[2] * 2, img.shape[3] * 2, dtype=torch.float64)
    up[:, :, ::2, ::2] = img
    up = separable(up, f * 2, [(fw + 1) // 2, (fw - 2) // 2] * 2)

    # Output pixel centres (size (H + 2 pad) * 2) mapped through G_inv into the upsampled padded input.
    Ho, Wo = (H + 2 * pad) * 2, (W + 2 * pad) * 2
    ox = torch.arange(Wo, dtype=torch.float64) - (Wo - 1) / 2
    oy = torch.arange(Ho, dtype=torch.float64) - (Ho - 1) / 2
    gy, gx = torch.meshgrid(oy, ox, indexing='ij')
    out_pts = torch.stack([(gx + 0.5) / 2, (gy + 0.5) / 2, torch.ones_like(gx)], dim=-1)  # output pixel units
    M = torch.eye(3, dtype=torch.float64).repeat(N, 1, 1)
    M[:, 0, 2] = (mx0 - mx1) / 2
    M[:, 1, 2] = (my0 - my1) / 2
    M = M @ G_inv.double()
    src = torch.einsum('nij,hwj->nhwi', M, out_pts)[..., :2]
    src = src * 2 - 0.5  # input pixel units -> upsampled pixel units (centred)
    grid = torch.stack([src[..., 0] * 2 / up.shape[3], src[..., 1] * 2 / up.shape[2]], dim=-1)
    sampled = torch.nn.functional.grid_sample(up, grid, mode='bilinear', padding_mode='zeros', align_corners=False)
    down = separable(sampled, f.flip(0), [(fw - 1) // 2 - 2 * pad, (fw - 2) // 2 - 2 * pad] * 2)[:, :, ::2, ::2]
    assert y.shape == down.shape == x.shape
    assert torch.allclose(y.double(), down, rtol=0, atol=1e-5)
