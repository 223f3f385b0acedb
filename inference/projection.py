"""Inverting an EG3D generator: find the latent of a photo taken from a known camera, then optionally fine-tune
the generator around that latent (pivotal tuning).

Stage 1 (project): Adam on w (one latent broadcast to all layers) or w+ (one per layer) together with the
backbone's constant noise maps, from the tracked average latent, with a learning rate that ramps up and then
down along a half cosine, Gaussian jitter on w that fades out, and a penalty on spatial autocorrelation of the
noise maps at every scale so they cannot absorb image content.

Stage 2 (pivotal_tuning): Adam on all generator weights with the latent fixed, plus a locality term: at random
latents a bounded distance from the pivot, the tuned generator must keep rendering what the original did.
"""

import copy
import dataclasses
import math

import numpy as np
import torch

# ----------------------------------------------------------------------------
# Options.


@dataclasses.dataclass
class ProjectionOptions:
    num_steps: int = 1000
    latent_space: str = 'w'                # 'w' or 'w_plus'
    learning_rate: float = 0.1
    lr_rampup: float = 0.05                # Fractions of num_steps.
    lr_rampdown: float = 0.25
    w_noise_factor: float = 0.05           # Initial jitter on w, in units of the latent spread.
    w_noise_ramp: float = 0.75             # Fraction of num_steps over which the jitter fades to zero.
    noise_reg_weight: float = 1e5
    w_stats_samples: int = 10000           # z samples behind the latent spread estimate.


@dataclasses.dataclass
class TuningOptions:
    num_steps: int = 350
    learning_rate: float = 3e-4
    locality_weight: float = 0.1
    locality_radius: float = 30.0          # Largest distance from the pivot of the locality samples (w space).
    locality_interval: int = 1             # Steps between locality terms.

# ----------------------------------------------------------------------------
# Image loss shared by both stages.


class ImageLoss:
    """Per-image loss perceptual_weight * LPIPS + mse_weight * mean squared pixel error against one target.

    target: [1, 3, H, W] in [-1, 1]. perceptual: a inference.perceptual.PerceptualDistance, or None for pixels only.
    """

    def __init__(self, target, perceptual=None, mse_weight=1.0):
        assert target.ndim == 4 and target.shape[:2] == (1, 3), f'expected [1, 3, H, W], got {list(target.shape)}'
        self.target = target
        self.perceptual = perceptual
        self.mse_weight = mse_weight
        self.target_features = None if perceptual is None else perceptual.features(target).detach()

    def __call__(self, images):
        assert images.shape[1:] == self.target.shape[1:], f'{list(images.shape)} vs {list(self.target.shape)}'
        loss = self.mse_weight * (images - self.target).square().mean(dim=[1, 2, 3])
        if self.perceptual is not None:
            loss = loss + self.perceptual(images, self.target_features.expand(len(images), -1))
        return loss


def psnr(images, target):
    """Peak signal-to-noise ratio in dB of [N, 3, H, W] images in [-1, 1] (clipped) against the target."""
    mse = (images.clamp(-1, 1) - target.clamp(-1, 1)).square().mean(dim=[1, 2, 3])
    return 10 * torch.log10(4 / mse)

# ----------------------------------------------------------------------------
# Schedules and noise maps.


def learning_rate_factor(t, rampup, rampdown):
    """Multiplier of the base learning rate at progress t in [0, 1]: linear warm-up, half-cosine cool-down."""
    down = min(1.0, (1.0 - t) / rampdown)
    factor = 0.5 * (1 - math.cos(math.pi * down))
    return factor * min(1.0, t / rampup)


def w_noise_scale(t, factor, ramp):
    """Standard deviation (relative to the latent spread) of the jitter added to w at progress t."""
    return factor * max(0.0, 1.0 - t / ramp) ** 2


def noise_buffers(G):
    """The backbone synthesis layers' constant noise maps, by name ('noise_mode="const"' renders with them)."""
    return {name: buf for name, buf in G.backbone.synthesis.named_buffers() if name.endswith('noise_const')}


def noise_regularization(buffers):
    """Sum over maps and over a pyramid of 2x box-downsampled copies (down to 8x8) of the squared correlation
    between each map and its one-pixel circular shifts along x and y."""
    total = 0
    for buf in buffers:
        x = buf[None, None]
        while True:
            total = total + (x * torch.roll(x, shifts=1, dims=3)).mean().square()
            total = total + (x * torch.roll(x, shifts=1, dims=2)).mean().square()
            if x.shape[2] <= 8:
                break
            x = torch.nn.functional.avg_pool2d(x, kernel_size=2)
    return total


@torch.no_grad()
def normalize_noise_(buffers):
    for buf in buffers:
        buf -= buf.mean()
        buf *= buf.square().mean().rsqrt()

# ----------------------------------------------------------------------------
# Stage 1.


@torch.no_grad()
def latent_spread(G, c, num_samples, seed):
    """Root mean squared distance of mapped latents (z ~ N(0, I), camera c) from the tracked average."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(num_samples, G.z_dim)).to(torch.float32)
    w = G.mapping(z.to(c.device), c.expand(num_samples, -1))[:, 0]
    return float((w - G.backbone.mapping.w_avg).square().sum(dim=1).mean().sqrt())


def project(G, c, loss_fn, opts, seed=0, callback=None):
    """Optimise a latent (and G's constant noise maps, in place) so G renders the loss's target from camera c.

    G: a TriPlaneGenerator (its noise maps are overwritten: pass a copy). c: [1, 25] camera label.
    callback(step, ws, image, loss) is called after every step with the rendered image of that step.
    Returns ws [1, num_ws, w_dim] of the last step (without jitter).
    """
    assert c.ndim == 2 and c.shape[0] == 1, f'expected a [1, c_dim] camera label, got {list(c.shape)}'
    assert opts.latent_space in ('w', 'w_plus'), opts.latent_space
    device = c.device
    num_ws = G.backbone.mapping.num_ws
    w_std = latent_spread(G, c, opts.w_stats_samples, seed)
    rng = torch.Generator(device=device).manual_seed(seed)

    w_avg = G.backbone.mapping.w_avg.detach().reshape(1, 1, -1)
    w_opt = w_avg.repeat(1, num_ws if opts.latent_space == 'w_plus' else 1, 1).clone().requires_grad_(True)
    buffers = list(noise_buffers(G).values())
    with torch.no_grad():
        for buf in buffers:
            buf.copy_(torch.randn(buf.shape, generator=rng, device=device))
            buf.requires_grad_(True)
    optimizer = torch.optim.Adam([w_opt] + buffers, betas=(0.9, 0.999), lr=opts.learning_rate)

    try:
        for step in range(opts.num_steps):
            t = step / opts.num_steps
            for group in optimizer.param_groups:
                group['lr'] = opts.learning_rate * learning_rate_factor(t, opts.lr_rampup, opts.lr_rampdown)
            jitter = torch.randn(w_opt.shape, generator=rng, device=device)
            jitter *= w_std * w_noise_scale(t, opts.w_noise_factor, opts.w_noise_ramp)
            ws = (w_opt + jitter).expand(1, num_ws, -1)
            image = G.synthesis(ws, c, noise_mode='const')['image']
            image_loss = loss_fn(image).sum()
            loss = image_loss + opts.noise_reg_weight * noise_regularization(buffers)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            normalize_noise_(buffers)
            if callback is not None:
                callback(step, ws.detach(), image.detach(), float(image_loss.detach()))
    finally:
        for buf in buffers:
            buf.requires_grad_(False)
    return w_opt.detach().expand(1, num_ws, -1).clone()

# ----------------------------------------------------------------------------
# Stage 2.


def locality_latents(G, w_pivot, c, radius, generator):
    """[1, num_ws, w_dim]: a mapped random latent moved toward the pivot until at most `radius` away from it."""
    z = torch.randn([1, G.z_dim], generator=generator, device=c.device)
    with torch.no_grad():
        w = G.mapping(z, c)[:, :1]
    offset = w - w_pivot[:, :1]
    scale = torch.clamp(radius / offset.norm(), max=1.0)
    return (w_pivot[:, :1] + offset * scale).expand_as(w_pivot)


def pivotal_tuning(G, w_pivot, c, loss_fn, opts, seed=0, callback=None):
    """A copy of G fine-tuned to render the loss's target at latent w_pivot [1, num_ws, w_dim] from camera c.

    callback(step, image, loss) is called after every step with the pivot render of that step.
    Returns the tuned copy (eval mode, gradients off).
    """
    assert w_pivot.ndim == 3 and w_pivot.shape[0] == 1, f'expected [1, num_ws, w_dim], got {list(w_pivot.shape)}'
    G_tuned = copy.deepcopy(G).train().requires_grad_(True)  # Training mode: the backbone's training-time convs.
    G_tuned.backbone.mapping.requires_grad_(False)  # The pivot is a w: the mapping network plays no part.
    G_frozen = copy.deepcopy(G).eval().requires_grad_(False)
    params = [p for p in G_tuned.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=opts.learning_rate)
    rng = torch.Generator(device=c.device).manual_seed(seed)
    w_pivot = w_pivot.detach()

    for step in range(opts.num_steps):
        image = G_tuned.synthesis(w_pivot, c, noise_mode='const')['image']
        image_loss = loss_fn(image).sum()
        loss = image_loss
        if opts.locality_weight > 0 and step % opts.locality_interval == 0:
            w_local = locality_latents(G_frozen, w_pivot, c, opts.locality_radius, rng)
            with torch.no_grad():
                reference = G_frozen.synthesis(w_local, c, noise_mode='const')['image']
            moved = G_tuned.synthesis(w_local, c, noise_mode='const')['image']
            locality_loss = ImageLoss(reference, perceptual=loss_fn.perceptual, mse_weight=loss_fn.mse_weight)
            loss = loss + opts.locality_weight * locality_loss(moved).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if callback is not None:
            callback(step, image.detach(), float(image_loss.detach()))
    return G_tuned.eval().requires_grad_(False)
