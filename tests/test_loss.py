"""training/loss.py: schedules, blur, adversarial terms, dual R1, density regularization variants, GPC swapping,
style mixing, augmentation wiring, neural rendering resolution fade. A small scripted generator stands in for
TriPlaneGenerator (cheap, and it records what the loss passes); the discriminator is the real DualDiscriminator."""

import numpy as np
import pytest
import scipy.ndimage
import torch

from torch_utils import training_stats
from training import loss as loss_module
from training.augment import AugmentPipe
from training.dual_discriminator import DualDiscriminator
from training.loss import StyleGAN2Loss

RES = 32        # Image resolution of the tests.
NUM_WS = 14

#----------------------------------------------------------------------------
# Stand-ins.

class ScriptedG(torch.nn.Module):
    """Generator with TriPlaneGenerator's interface; outputs depend smoothly on its parameters and inputs."""

    def __init__(self, **rendering_kwargs):
        super().__init__()
        self.w_scale = torch.nn.Parameter(torch.linspace(0.5, 1.5, 8))
        self.pattern = torch.nn.Parameter(torch.randn([1, 3, RES, RES]) * 0.3)
        self.density = torch.nn.Parameter(torch.tensor([[0.3], [-0.2], [0.7]]))
        self.rendering_kwargs = dict(dict(density_reg=0.25, density_reg_p_dist=0.004, reg_type='l1', box_warp=1.6),
                                     **rendering_kwargs)
        self.neural_rendering_resolution = 64
        self.calls = []

    def mapping(self, z, c, update_emas=False):
        self.calls.append(dict(fn='mapping', c=c.detach().clone(), update_emas=update_emas))
        w = z[:, :8] * self.w_scale + c[:, :8] * 0.1
        return w.unsqueeze(1) * torch.arange(1, NUM_WS + 1, dtype=torch.float32).reshape(1, NUM_WS, 1)

    def synthesis(self, ws, c, neural_rendering_resolution=None, update_emas=False):
        self.calls.append(dict(fn='synthesis', ws=ws.detach().clone(), c=c.detach().clone(),
                               nrr=neural_rendering_resolution, update_emas=update_emas))
        self.neural_rendering_resolution = neural_rendering_resolution
        offset = ws.mean([1, 2]).reshape(-1, 1, 1, 1) * 0.1
        image = torch.tanh(self.pattern + offset)
        raw = torch.nn.functional.interpolate(image, size=neural_rendering_resolution, mode='area')
        return dict(image=image, image_raw=raw, image_depth=raw[:, :1])

    def sample_mixed(self, coordinates, directions, ws, update_emas=False):
        self.calls.append(dict(fn='sample_mixed', coordinates=coordinates.detach().clone(),
                               directions_shape=tuple(directions.shape), update_emas=update_emas))
        return dict(sigma=coordinates @ self.density + ws.mean([1, 2]).reshape(-1, 1, 1) * 0.01)

    def called(self, fn):
        return [call for call in self.calls if call['fn'] == fn]

class RecordingD(torch.nn.Module):
    """Real DualDiscriminator that also records its inputs."""

    def __init__(self, **kwargs):
        super().__init__()
        self.D = DualDiscriminator(c_dim=25, img_resolution=RES, img_channels=3, channel_base=256, channel_max=16,
                                   num_fp16_res=0, conv_clamp=None, epilogue_kwargs=dict(mbstd_group_size=2), **kwargs)
        self.seen = []

    def forward(self, img, c, update_emas=False):
        self.seen.append(dict(image=img['image'].detach().clone(), image_raw=img['image_raw'].detach().clone(),
                              c=c.detach().clone()))
        return self.D(img, c, update_emas=update_emas)

def make_loss(G=None, D=None, augment_pipe=None, **kwargs):
    torch.manual_seed(123)
    G = (G if G is not None else ScriptedG()).requires_grad_(False) # As the training loop keeps them.
    D = (D if D is not None else RecordingD()).requires_grad_(False)
    kwargs = dict(dict(r1_gamma=4.0, neural_rendering_resolution_initial=16, dual_discrimination=True), **kwargs)
    return StyleGAN2Loss(device=torch.device('cpu'), G=G, D=D, augment_pipe=augment_pipe, **kwargs)

def make_batch(n=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    real = torch.rand([n, 3, RES, RES], generator=gen) * 2 - 1
    c = torch.randn([n, 25], generator=gen)
    z = torch.randn([n, 512], generator=gen)
    gen_c = torch.randn([n, 25], generator=gen)
    return real, c, z, gen_c

def run_phase(loss, phase, batch, gain=1, cur_nimg=0):
    """Run one phase on a fresh gradient state; returns {param name: grad} of the phase's module."""
    module = loss.G if phase.startswith('G') else loss.D
    module.zero_grad(set_to_none=True)
    module.requires_grad_(True)
    real, c, z, gen_c = batch
    loss.accumulate_gradients(phase=phase, real_img=real, real_c=c, gen_z=z, gen_c=gen_c, gain=gain, cur_nimg=cur_nimg)
    module.requires_grad_(False)
    return {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}

def reference_blur(x, sigma):
    """Blur with the documented kernel (taps 2^-(t/sigma)^2, |t| <= floor(3 sigma), zero padding), via scipy."""
    radius = int(np.floor(sigma * 3))
    taps = np.exp2(-np.square(np.arange(-radius, radius + 1) / sigma))
    taps /= taps.sum()
    y = scipy.ndimage.convolve1d(x.detach().double().numpy(), taps, axis=3, mode='constant')
    y = scipy.ndimage.convolve1d(y, taps, axis=2, mode='constant')
    return torch.from_numpy(y).float()

def resize(x, size):
    return torch.nn.functional.interpolate(x, size=(size, size), mode='bilinear', align_corners=False, antialias=True)

def collect(fn):
    """Run fn and return the means of the Loss/* statistics it reported."""
    collector = training_stats.Collector(regex='Loss/.*', keep_previous=False)
    fn()
    collector.update()
    return {name: collector.mean(name) for name in collector.names() if collector.num(name) > 0}

#----------------------------------------------------------------------------
# Schedules and blur.

def test_schedules():
    assert loss_module.blur_sigma_at(0, 10, 200) == 10
    assert loss_module.blur_sigma_at(100_000, 10, 200) == 5
    assert loss_module.blur_sigma_at(10**6, 10, 200) == 0
    assert loss_module.blur_sigma_at(0, 10, 0) == 0
    assert loss_module.swapping_prob_at(0, None, 1000) is None
    assert loss_module.swapping_prob_at(0, 0.5, 1000) == 1
    assert loss_module.swapping_prob_at(500_000, 0.5, 1000) == 0.75
    assert loss_module.swapping_prob_at(2 * 10**6, 0.5, 1000) == 0.5
    assert loss_module.swapping_prob_at(0, 0.8, 0) == 0.8 # Resumed without --resume_blur.
    assert loss_module.neural_rendering_resolution_at(10**9, 64, None, 1000) == 64
    assert loss_module.neural_rendering_resolution_at(0, 64, 128, 1000) == 64
    assert loss_module.neural_rendering_resolution_at(500_000, 64, 128, 1000) == 96
    assert loss_module.neural_rendering_resolution_at(508_000, 64, 128, 1000) == 97 # 96.512
    assert loss_module.neural_rendering_resolution_at(3_906_250, 64, 65, 7812.5) == 64 # 64.5: half to even.
    assert loss_module.neural_rendering_resolution_at(0, 64, 128, 0) == 128 # Fixed: no division by zero.

def test_blur_matches_documented_kernel():
    x = torch.randn([2, 3, 64, 64])
    for sigma in [10, 2.5, 1 / 3]:
        assert torch.allclose(loss_module.blur_image(x, sigma), reference_blur(x, sigma), atol=1e-5)
    assert loss_module.blur_image(x, 0.33) is x # floor(3 sigma) = 0: off.
    taps = 2 * int(np.floor(3 * 10)) + 1
    assert taps == 61

#----------------------------------------------------------------------------
# Adversarial terms.

def test_gmain_non_saturating_loss():
    loss = make_loss(blur_init_sigma=2, blur_fade_kimg=100)
    batch = make_batch()
    stats = collect(lambda: run_phase(loss, 'Gmain', batch, gain=3))
    grads = {name: p.grad for name, p in loss.G.named_parameters() if p.grad is not None}
    assert set(grads) == {'w_scale', 'pattern'} and not any(p.grad is not None for p in loss.D.parameters())

    # Gmain does not update the mapping's running averages (only the fake half of Dmain does).
    assert [call['update_emas'] for call in loss.G.calls] == [False, False]

    # Reference: D sees the blurred fake image and the unblurred fake raw image.
    _real, _c, z, gen_c = batch
    G, D = loss.G, loss.D.D
    params = [G.w_scale, G.pattern]
    for p in params:
        p.requires_grad_(True)
    out = G.synthesis(G.mapping(z, torch.zeros_like(gen_c)), gen_c, neural_rendering_resolution=16)
    logits = D(dict(image=loss_module.blur_image(out['image'], 2), image_raw=out['image_raw']), gen_c.clone())
    expected = torch.nn.functional.softplus(-logits)
    ref_grads = torch.autograd.grad(expected.mean() * 3, params)
    assert stats['Loss/G/loss'] == pytest.approx(float(expected.detach().mean()), rel=1e-5)
    assert stats['Loss/scores/fake'] == pytest.approx(float(logits.detach().mean()), rel=1e-5, abs=1e-7)
    assert torch.allclose(grads['w_scale'], ref_grads[0], rtol=1e-4, atol=1e-8)
    assert torch.allclose(grads['pattern'], ref_grads[1], rtol=1e-4, atol=1e-8)

def test_dmain_logistic_loss_and_blurred_reals():
    loss = make_loss(blur_init_sigma=2, blur_fade_kimg=100)
    batch = make_batch()
    real, c, z, gen_c = batch
    c_orig = c.clone()
    stats = collect(lambda: run_phase(loss, 'Dmain', batch, gain=2))
    fake_seen, real_seen = loss.D.seen
    assert [call['update_emas'] for call in loss.G.calls] == [True, True] # mapping + synthesis with update_emas.
    # Fake: image blurred, raw not (original behaviour). Real: both blurred, raw resized to the rendering resolution.
    fake = loss.G.synthesis(loss.G.mapping(z, torch.zeros_like(gen_c)), gen_c, neural_rendering_resolution=16)
    assert torch.allclose(fake_seen['image'], reference_blur(fake['image'], 2), atol=1e-5)
    assert torch.allclose(fake_seen['image_raw'], fake['image_raw'])
    assert torch.allclose(real_seen['image'], reference_blur(real, 2), atol=1e-5)
    assert torch.allclose(real_seen['image_raw'], reference_blur(resize(real, 16), 2), atol=1e-5)
    assert torch.equal(real_seen['c'], c_orig) and torch.equal(fake_seen['c'], gen_c)

    D = loss.D.D
    with torch.no_grad():
        fake_logits = D(dict(image=fake_seen['image'], image_raw=fake_seen['image_raw']), gen_c.clone())
        real_logits = D(dict(image=real_seen['image'], image_raw=real_seen['image_raw']), c.clone())
    expected = torch.nn.functional.softplus(fake_logits) + torch.nn.functional.softplus(-real_logits)
    assert stats['Loss/D/loss'] == pytest.approx(float(expected.mean()), rel=1e-5)
    assert stats['Loss/signs/real'] == float(real_logits.sign().mean())
    assert 'Loss/r1_penalty' not in stats

@pytest.mark.parametrize('dual', [True, False])
def test_r1_on_both_inputs(dual):
    loss = make_loss(r1_gamma=4.0, blur_init_sigma=2, blur_fade_kimg=100, dual_discrimination=dual)
    batch = make_batch()
    stats = collect(lambda: run_phase(loss, 'Dreg', batch, gain=16))
    grads = {name: p.grad for name, p in loss.D.named_parameters() if p.grad is not None}
    assert loss.G.calls == [] # R1 needs no generator.

    # Reference: gradients w.r.t. exactly what D consumed (the blurred real image and blurred raw image).
    real, c, _z, _gen_c = batch
    D = loss.D.D
    image = reference_blur(real, 2).requires_grad_(True)
    image_raw = reference_blur(resize(real, 16), 2).requires_grad_(True)
    D.requires_grad_(True)
    logits = D(dict(image=image, image_raw=image_raw), c.clone())
    inputs = [image, image_raw] if dual else [image]
    r1_grads = torch.autograd.grad(logits.sum(), inputs, create_graph=True)
    r1 = sum(g.square().sum([1, 2, 3]) for g in r1_grads)
    params = [p for _name, p in loss.D.named_parameters()]
    ref = torch.autograd.grad((r1 * 2.0).mean() * 16, params, allow_unused=True)
    D.requires_grad_(False)
    r1_mean = float(r1.detach().mean())
    assert stats['Loss/r1_penalty'] == pytest.approx(r1_mean, rel=1e-4)
    assert stats['Loss/D/reg'] == pytest.approx(r1_mean * 2, rel=1e-4)
    for (name, p), g in zip(loss.D.named_parameters(), ref):
        if g is not None and g.abs().max() > 0:
            assert torch.allclose(grads[name], g, rtol=1e-3, atol=1e-3 * float(g.abs().max())), name
    if dual:
        raw_only = float(r1_grads[1].detach().square().sum([1, 2, 3]).mean())
        assert raw_only > 0 # The raw-image term contributes.

def test_phase_remapping_without_regularization():
    batch = make_batch()
    loss = make_loss(r1_gamma=0)
    assert run_phase(loss, 'Dreg', batch) == {}
    both = run_phase(loss, 'Dboth', batch)
    loss = make_loss(r1_gamma=0)
    main = run_phase(loss, 'Dmain', batch)
    assert both.keys() == main.keys() and all(torch.allclose(both[k], main[k]) for k in main)

    G = ScriptedG(density_reg=0)
    loss = make_loss(G=G)
    assert run_phase(loss, 'Greg', batch) == {} and G.calls == []
    assert set(run_phase(loss, 'Gboth', batch)) == {'w_scale', 'pattern'} and G.called('sample_mixed') == []

def test_disc_c_noise_modifies_the_real_labels_in_place_twice():
    loss = make_loss(D=RecordingD(disc_c_noise=1.0))
    batch = make_batch()
    c_orig = batch[1].clone()
    run_phase(loss, 'Dmain', batch)
    after_main = batch[1].clone()
    run_phase(loss, 'Dreg', batch)
    assert not torch.equal(after_main, c_orig) and not torch.equal(batch[1], after_main)

def test_nonfinite_losses_are_counted(monkeypatch):
    # Keep the NaN statistics out of the process-wide training_stats totals (they would poison later tests).
    monkeypatch.setattr(loss_module.training_stats, 'report', lambda name, value: value)
    G = ScriptedG()
    with torch.no_grad():
        G.pattern[0, 0, 0, 0] = float('nan')
    loss = make_loss(G=G)
    run_phase(loss, 'Gmain', make_batch())
    assert float(loss.nonfinite) == 1
    run_phase(loss, 'Dreg', make_batch())
    assert float(loss.nonfinite) == 1 # Reals are finite.

#----------------------------------------------------------------------------
# Generator conditioning, style mixing, resolution fade.

def test_gpc_swapping():
    batch = make_batch(n=4)
    gen_c = batch[3]
    G = ScriptedG()
    run_phase(make_loss(G=G, gpc_reg_prob=None), 'Gmain', batch)
    assert torch.equal(G.called('mapping')[0]['c'], torch.zeros_like(gen_c)) # No GPC: zero label.

    G = ScriptedG()
    run_phase(make_loss(G=G, gpc_reg_prob=0.5, gpc_reg_fade_kimg=1000), 'Gmain', batch, cur_nimg=0)
    assert torch.equal(G.called('mapping')[0]['c'], torch.roll(gen_c, 1, 0)) # p_swap = 1: sample i gets i-1's.
    assert torch.equal(G.called('synthesis')[0]['c'], gen_c) # Rendering camera never swapped.

    G = ScriptedG()
    run_phase(make_loss(G=G, gpc_reg_prob=0, gpc_reg_fade_kimg=1000), 'Gmain', batch, cur_nimg=10**6)
    assert torch.equal(G.called('mapping')[0]['c'], gen_c)

    # p_swap = 0.5: per-sample decisions in run_G; one decision per chunk for density regularization.
    batch = make_batch(n=64)
    G = ScriptedG()
    loss = make_loss(G=G, gpc_reg_prob=0.5, gpc_reg_fade_kimg=0)
    run_phase(loss, 'Gmain', batch)
    swapped = (G.called('mapping')[0]['c'] == torch.roll(batch[3], 1, 0)).all(1)
    assert 10 < int(swapped.sum()) < 54
    decisions = set()
    for _ in range(8):
        G.calls.clear()
        run_phase(loss, 'Greg', batch)
        rows = (G.called('mapping')[0]['c'] == torch.roll(batch[3], 1, 0)).all(1)
        assert bool(rows.all()) or not bool(rows.any())
        decisions.add(bool(rows.all()))
    assert decisions == {True, False}

def test_style_mixing():
    batch = make_batch(n=2)
    G = ScriptedG()
    run_phase(make_loss(G=G, style_mixing_prob=1, gpc_reg_prob=0.5, gpc_reg_fade_kimg=1000), 'Gmain', batch)
    first, second = G.called('mapping')
    assert torch.equal(first['c'], torch.roll(batch[3], 1, 0)) and torch.equal(second['c'], batch[3])
    ws = G.called('synthesis')[0]['ws']
    ws_first = G.mapping(batch[2], first['c']).detach()
    cutoff = int((ws == ws_first).all(2).all(0).sum())
    assert 1 <= cutoff <= NUM_WS - 1
    assert not (ws[:, cutoff:] == ws_first[:, cutoff:]).any()

    G = ScriptedG()
    run_phase(make_loss(G=G, style_mixing_prob=0.5), 'Greg', batch) # Fixed: raises NameError in the original.
    assert len(G.called('mapping')) == 2 and len(G.called('sample_mixed')) == 1

def test_neural_rendering_resolution_fade():
    G = ScriptedG()
    loss = make_loss(G=G, neural_rendering_resolution_initial=16, neural_rendering_resolution_final=32,
                     neural_rendering_resolution_fade_kimg=1)
    run_phase(loss, 'Dmain', make_batch(), cur_nimg=500)
    assert G.called('synthesis')[0]['nrr'] == 24 and G.neural_rendering_resolution == 24
    assert [tuple(seen['image_raw'].shape[2:]) for seen in loss.D.seen] == [(24, 24), (24, 24)]

#----------------------------------------------------------------------------
# Density regularization.

def _density_reference(G, calls, reg_type, gain):
    """Recompute the density losses from the recorded sample points; returns the gradient of G.density."""
    options = G.rendering_kwargs
    total = 0
    for idx, call in enumerate(calls):
        points = call['coordinates']
        half = points.shape[1] // 2
        sigma = points @ G.density # The ws enter as a per-sample offset that cancels in every difference.
        s0, s1 = sigma[:, :half], sigma[:, half:]
        if reg_type != 'l1' and idx == 0:
            s0 = s0.detach() if reg_type == 'monotonic-detach' else s0
            total = total + torch.relu(s0 - s1).mean() * 10 * gain
        else:
            total = total + (s0 - s1).abs().mean() * options['density_reg'] * gain
    return torch.autograd.grad(total, [G.density])[0]

@pytest.mark.parametrize('reg_type', ['l1', 'monotonic-detach', 'monotonic-fixed'])
def test_density_regularization(reg_type):
    G = ScriptedG(reg_type=reg_type)
    loss = make_loss(G=G)
    grads = run_phase(loss, 'Greg', make_batch(n=2), gain=4)
    calls = G.called('sample_mixed')
    assert all(call['update_emas'] is False for call in G.calls if 'update_emas' in call)
    box_warp = G.rendering_kwargs['box_warp']
    if reg_type == 'l1':
        assert [tuple(call['coordinates'].shape) for call in calls] == [(2, 2000, 3)]
        step = G.rendering_kwargs['density_reg_p_dist']
    else:
        assert [tuple(call['coordinates'].shape) for call in calls] == [(2, 4000, 3), (2, 2000, 3)]
        first = calls[0]['coordinates']
        delta = first[:, 2000:] - first[:, :2000]
        assert torch.allclose(delta, torch.tensor([0, 0, -box_warp / 256]).expand_as(delta), atol=1e-6)
        step = box_warp / 256
    last = calls[-1]['coordinates']
    assert last[:, :1000].abs().max() <= 1 and last.shape[1] == 2000
    assert float((last[:, 1000:] - last[:, :1000]).std()) == pytest.approx(step, rel=0.1)
    assert all(call['directions_shape'] == tuple(call['coordinates'].shape) for call in calls)
    G.requires_grad_(True)
    expected = _density_reference(G, calls, reg_type, gain=4)
    assert torch.allclose(grads['density'], expected, rtol=1e-5, atol=1e-9)

@pytest.mark.parametrize('reg_type', ['l1-alt', 'total-variation'])
def test_density_regularization_no_ops(reg_type):
    G = ScriptedG(reg_type=reg_type)
    assert run_phase(make_loss(G=G), 'Greg', make_batch()) == {} and G.calls == []

#----------------------------------------------------------------------------
# Augmentation.

def test_augmentation_on_the_image_pair():
    pipe = AugmentPipe(brightness=1).requires_grad_(False)
    pipe.p.copy_(torch.tensor(1.0))
    loss = make_loss(augment_pipe=pipe)
    batch = make_batch(n=4)
    stats = collect(lambda: run_phase(loss, 'Dreg', batch, gain=16))
    seen = loss.D.seen[0]
    real = batch[0]
    offset = seen['image'] - real # Same brightness offset for every pixel of a sample ...
    assert torch.allclose(offset, offset[:, :1, :1, :1].expand_as(offset), atol=1e-5)
    assert offset.abs().amax([1, 2, 3]).min() > 0
    # ... and for its raw image (after the up/down resize round trip).
    raw = resize(resize(resize(real, 16), RES), 16)
    assert torch.allclose(seen['image_raw'] - raw, offset[:, :, :16, :16], atol=1e-5)
    assert np.isfinite(stats['Loss/r1_penalty']) and stats['Loss/r1_penalty'] > 0

#----------------------------------------------------------------------------
