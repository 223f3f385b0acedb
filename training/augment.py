"""Adaptive discriminator augmentation (ADA): the differentiable augmentation pipeline of StyleGAN2-ADA,
with EG3D's extension to 6-channel inputs (image and upsampled raw image side by side)."""

import numpy as np
import scipy.signal
import torch

from torch_utils import misc, persistence
from torch_utils.ops import conv2d_gradfix, grid_sample_gradfix, upfirdn2d

# ----------------------------------------------------------------------------
# Low-pass decomposition filters of two Daubechies symlets (standard published coefficients).

_SYM2 = [-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025]
_SYM6 = [0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
         0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
         -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148]


def _octave_filter_bank(lowpass, num_bands):
    """Zero-phase filters splitting an image into octave bands; row 0 keeps the lowest band, rows sum to a delta.

    Each level stretches the existing bands by 2 (dilating their support, i.e. halving their frequency),
    smooths them with the power response of the low-pass, and puts the high-pass power response into the
    newly split band.
    """
    lowpass = np.asarray(lowpass, dtype=np.float64)
    highpass = lowpass * (-1.0) ** np.arange(lowpass.size)          # mirror the response around pi/2
    low_power = np.convolve(lowpass, lowpass[::-1]) / 2             # |H(w)|^2 / 2
    high_power = np.convolve(highpass, highpass[::-1]) / 2          # |H(w + pi)|^2 / 2
    bands = np.eye(num_bands, 1)
    for band in range(1, num_bands):
        dilated = np.zeros([num_bands, bands.shape[1] * 2 - 1])
        dilated[:, ::2] = bands
        bands = scipy.signal.convolve(dilated, low_power[np.newaxis])
        start = (bands.shape[1] - high_power.size) // 2
        bands[band, start:start + high_power.size] += high_power
    return bands

# ----------------------------------------------------------------------------
# Homogeneous transformation matrices. Entries are Python numbers or [N] tensors; the result is [N, R, C]
# (or [R, C] when every entry is a number).


def _matrix(*rows, device=None):
    entries = [x for row in rows for x in row]
    batched = [x for x in entries if isinstance(x, torch.Tensor)]
    if not batched:
        return misc.constant(np.asarray(rows), device=device)
    ref = batched[0]
    entries = [x if isinstance(x, torch.Tensor) else misc.constant(x, shape=ref.shape, device=ref.device)
               for x in entries]
    return torch.stack(entries, dim=-1).reshape(*ref.shape, len(rows), len(rows[0]))


def _translate2d(tx, ty, **kwargs):
    return _matrix([1, 0, tx], [0, 1, ty], [0, 0, 1], **kwargs)


def _scale2d(sx, sy, **kwargs):
    return _matrix([sx, 0, 0], [0, sy, 0], [0, 0, 1], **kwargs)


def _rotate2d(theta, **kwargs):
    c, s = torch.cos(theta), torch.sin(theta)
    return _matrix([c, -s, 0], [s, c, 0], [0, 0, 1], **kwargs)


def _translate3d(tx, ty, tz, **kwargs):
    return _matrix([1, 0, 0, tx], [0, 1, 0, ty], [0, 0, 1, tz], [0, 0, 0, 1], **kwargs)


def _scale3d(sx, sy, sz, **kwargs):
    return _matrix([sx, 0, 0, 0], [0, sy, 0, 0], [0, 0, sz, 0], [0, 0, 0, 1], **kwargs)


def _rotate3d(axis, theta, **kwargs):
    """Rodrigues rotation by theta [N] around the unit vector axis (first three entries used)."""
    x, y, z = axis[0], axis[1], axis[2]
    c, s = torch.cos(theta), torch.sin(theta)
    d = 1 - c
    return _matrix([x * x * d + c, x * y * d - z * s, x * z * d + y * s, 0],
                   [y * x * d + z * s, y * y * d + c, y * z * d - x * s, 0],
                   [z * x * d - y * s, z * y * d + x * s, z * z * d + c, 0],
                   [0, 0, 0, 1], **kwargs)

# ----------------------------------------------------------------------------


@persistence.persistent_class
class AugmentPipe(torch.nn.Module):
    """Applies each enabled augmentation with probability strength * p.

    Everything forward() reads is one of the constructor-named attributes or a buffer: pickled instances
    carry exactly those.
    """

    def __init__(self,
        xflip=0, rotate90=0, xint=0, xint_max=0.125,                            # Pixel blitting.
        scale=0, rotate=0, aniso=0, xfrac=0,                                    # General geometric transforms ...
        scale_std=0.2, rotate_max=1, aniso_std=0.2, xfrac_std=0.125,            # ... and their ranges.
        brightness=0, contrast=0, lumaflip=0, hue=0, saturation=0,              # Colour transforms ...
        brightness_std=0.2, contrast_std=0.5, hue_max=1, saturation_std=1,      # ... and their ranges.
        imgfilter=0, imgfilter_bands=[1, 1, 1, 1], imgfilter_std=1,             # Image-space filtering.
        noise=0, cutout=0, noise_std=0.1, cutout_size=0.5,                      # Image-space corruptions.
    ):
        super().__init__()
        # Every setting becomes a float attribute of the same name (the band gains a list): pickles carry them.
        settings = dict(xflip=xflip, rotate90=rotate90, xint=xint, xint_max=xint_max, scale=scale, rotate=rotate,
            aniso=aniso, xfrac=xfrac, scale_std=scale_std, rotate_max=rotate_max, aniso_std=aniso_std,
            xfrac_std=xfrac_std, brightness=brightness, contrast=contrast, lumaflip=lumaflip, hue=hue,
            saturation=saturation, brightness_std=brightness_std, contrast_std=contrast_std, hue_max=hue_max,
            saturation_std=saturation_std, imgfilter=imgfilter, imgfilter_std=imgfilter_std, noise=noise,
            cutout=cutout, noise_std=noise_std, cutout_size=cutout_size)
        for name, value in settings.items():
            setattr(self, name, float(value))
        self.imgfilter_bands = list(imgfilter_bands)
        self.register_buffer('p', torch.ones([]))  # Overall multiplier; ADA adjusts it during training.

        # Anti-aliasing filter for the 2x up/down-sampling around geometric resampling (sum 1, separable).
        sym6 = torch.as_tensor(_SYM6, dtype=torch.float32)
        self.register_buffer('Hz_geom', sym6 / sym6.sum())

        # Octave-band filters for image-space filtering.
        self.register_buffer('Hz_fbank', torch.as_tensor(_octave_filter_bank(_SYM2, num_bands=4), dtype=torch.float32))

    @staticmethod
    def _gate(value, strength, identity, shape):
        """Keep `value` where a fresh rand(shape) < strength (per sample), else `identity`."""
        keep = torch.rand(shape, device=value.device) < strength
        return torch.where(keep, value, identity)

    def forward(self, images, debug_percentile=None):
        """images [N, C, H, W]; debug_percentile in [0, 1] replaces every random parameter by that percentile
        (gates open) so each augmentation can be inspected deterministically."""
        assert isinstance(images, torch.Tensor) and images.ndim == 4
        batch_size, num_channels, height, width = images.shape
        device = images.device
        if debug_percentile is not None:
            debug_percentile = torch.as_tensor(debug_percentile, dtype=torch.float32, device=device)

        G_inv = self._draw_geometric(batch_size, height, width, device, debug_percentile)
        if G_inv is not None:
            images = self._resample(images, G_inv)

        C = self._draw_color(batch_size, num_channels, device, debug_percentile)
        if C is not None:
            images = self._apply_color(images, C)

        if self.imgfilter > 0:
            images = self._filter(images, debug_percentile)
        if self.noise > 0:
            images = self._add_noise(images, debug_percentile)
        if self.cutout > 0:
            images = self._cut_out(images, debug_percentile)
        return images

    # ------------------------------------------------------------------------
    # Geometry. G_inv maps output pixel coordinates (centred, in pixels) to input coordinates.

    def _draw_geometric(self, N, H, W, device, q):
        """Compose the inverse geometric transform; None when no geometric augmentation is enabled."""
        G_inv = torch.eye(3, device=device)
        enabled = False

        if self.xflip > 0:
            i = torch.floor(torch.rand([N], device=device) * 2)
            i = self._gate(i, self.xflip * self.p, torch.zeros_like(i), [N])
            if q is not None:
                i = torch.full_like(i, torch.floor(q * 2))
            G_inv = G_inv @ _scale2d(1 / (1 - 2 * i), 1)
            enabled = True

        if self.rotate90 > 0:
            i = torch.floor(torch.rand([N], device=device) * 4)
            i = self._gate(i, self.rotate90 * self.p, torch.zeros_like(i), [N])
            if q is not None:
                i = torch.full_like(i, torch.floor(q * 4))
            G_inv = G_inv @ _rotate2d(np.pi / 2 * i)  # inverse of a rotation by -90 degrees * i
            enabled = True

        if self.xint > 0:
            t = (torch.rand([N, 2], device=device) * 2 - 1) * self.xint_max
            t = self._gate(t, self.xint * self.p, torch.zeros_like(t), [N, 1])
            if q is not None:
                t = torch.full_like(t, (q * 2 - 1) * self.xint_max)
            G_inv = G_inv @ _translate2d(-torch.round(t[:, 0] * W), -torch.round(t[:, 1] * H))
            enabled = True

        if self.scale > 0:
            s = torch.exp2(torch.randn([N], device=device) * self.scale_std)
            s = self._gate(s, self.scale * self.p, torch.ones_like(s), [N])
            if q is not None:
                s = torch.full_like(s, torch.exp2(torch.erfinv(q * 2 - 1) * self.scale_std))
            G_inv = G_inv @ _scale2d(1 / s, 1 / s)
            enabled = True

        # Rotation is split in two halves around the anisotropic scaling; each half fires with the probability
        # that makes "at least one fires" equal rotate * p.
        p_rot = 1 - torch.sqrt((1 - self.rotate * self.p).clamp(0, 1))
        if self.rotate > 0:
            G_inv = G_inv @ _rotate2d(self._draw_rotation(N, p_rot, device, q, post=False))
            enabled = True

        if self.aniso > 0:
            s = torch.exp2(torch.randn([N], device=device) * self.aniso_std)
            s = self._gate(s, self.aniso * self.p, torch.ones_like(s), [N])
            if q is not None:
                s = torch.full_like(s, torch.exp2(torch.erfinv(q * 2 - 1) * self.aniso_std))
            G_inv = G_inv @ _scale2d(1 / s, s)
            enabled = True

        if self.rotate > 0:
            G_inv = G_inv @ _rotate2d(self._draw_rotation(N, p_rot, device, q, post=True))

        if self.xfrac > 0:
            t = torch.randn([N, 2], device=device) * self.xfrac_std
            t = self._gate(t, self.xfrac * self.p, torch.zeros_like(t), [N, 1])
            if q is not None:
                t = torch.full_like(t, torch.erfinv(q * 2 - 1) * self.xfrac_std)
            G_inv = G_inv @ _translate2d(-t[:, 0] * W, -t[:, 1] * H)
            enabled = True

        return G_inv if enabled else None

    def _draw_rotation(self, N, p_rot, device, q, post):
        """Draw theta for one rotation half; the output is rotated by -theta, so the inverse rotates by +theta.
        A debug percentile sets the pre-rotation only and leaves the post-rotation (post=True) at zero, so
        that debug views match pickled pipes' behaviour."""
        theta = (torch.rand([N], device=device) * 2 - 1) * np.pi * self.rotate_max
        theta = self._gate(theta, p_rot, torch.zeros_like(theta), [N])
        if q is not None:
            theta = torch.zeros_like(theta) if post else torch.full_like(theta, (q * 2 - 1) * np.pi * self.rotate_max)
        return theta

    def _resample(self, images, G_inv):
        """Warp by G_inv at 2x resolution: reflect-pad, upsample, bilinear grid_sample, downsample."""
        N, C, H, W = images.shape
        device = images.device
        Hz_pad = self.Hz_geom.shape[0] // 4

        # Margins needed so the transformed output never samples outside the (reflect-padded) input.
        cx, cy = (W - 1) / 2, (H - 1) / 2
        corners = misc.constant([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]], device=device)
        corners = G_inv @ corners.t()                                   # [N, xyz, corner]
        xy = corners[:, :2, :].permute(1, 0, 2).flatten(1)              # [xy, N * corner]
        margin = torch.cat([-xy, xy]).max(dim=1).values                 # [x0, y0, x1, y1]
        margin = margin + misc.constant([Hz_pad * 2 - cx, Hz_pad * 2 - cy] * 2, device=device)
        margin = margin.max(misc.constant([0, 0] * 2, device=device))
        margin = margin.min(misc.constant([W - 1, H - 1] * 2, device=device))
        mx0, my0, mx1, my1 = margin.ceil().to(torch.int32).tolist()

        images = torch.nn.functional.pad(input=images, pad=[mx0, mx1, my0, my1], mode='reflect')
        G_inv = _translate2d((mx0 - mx1) / 2, (my0 - my1) / 2, device=device) @ G_inv

        # Resample at twice the resolution to limit aliasing; the pixel grid shifts by half a pixel.
        images = upfirdn2d.upsample2d(x=images, f=self.Hz_geom, up=2)
        G_inv = _scale2d(2, 2, device=device) @ G_inv @ _scale2d(1 / 2, 1 / 2, device=device)
        G_inv = _translate2d(-0.5, -0.5, device=device) @ G_inv @ _translate2d(0.5, 0.5, device=device)

        # Express in the normalised [-1, 1] coordinates of affine_grid (output) and grid_sample (input).
        shape = [N, C, (H + Hz_pad * 2) * 2, (W + Hz_pad * 2) * 2]
        G_inv = (_scale2d(2 / images.shape[3], 2 / images.shape[2], device=device) @ G_inv
                 @ _scale2d(shape[3] / 2, shape[2] / 2, device=device))
        grid = torch.nn.functional.affine_grid(theta=G_inv[:, :2, :], size=shape, align_corners=False)
        images = grid_sample_gradfix.grid_sample(images, grid)

        return upfirdn2d.downsample2d(x=images, f=self.Hz_geom, down=2, padding=-Hz_pad * 2, flip_filter=True)

    # ------------------------------------------------------------------------
    # Colour: a per-sample 4x4 affine transform of homogeneous RGB.

    def _draw_color(self, N, num_channels, device, q):
        """Compose the colour matrix; None when no colour augmentation is enabled."""
        I_4 = torch.eye(4, device=device)
        C = I_4
        enabled = False

        if self.brightness > 0:
            b = torch.randn([N], device=device) * self.brightness_std
            b = self._gate(b, self.brightness * self.p, torch.zeros_like(b), [N])
            if q is not None:
                b = torch.full_like(b, torch.erfinv(q * 2 - 1) * self.brightness_std)
            C = _translate3d(b, b, b) @ C
            enabled = True

        if self.contrast > 0:
            c = torch.exp2(torch.randn([N], device=device) * self.contrast_std)
            c = self._gate(c, self.contrast * self.p, torch.ones_like(c), [N])
            if q is not None:
                c = torch.full_like(c, torch.exp2(torch.erfinv(q * 2 - 1) * self.contrast_std))
            C = _scale3d(c, c, c) @ C
            enabled = True

        luma = misc.constant(np.asarray([1, 1, 1, 0]) / np.sqrt(3), device=device)
        luma_outer = torch.outer(luma, luma)

        if self.lumaflip > 0:
            i = torch.floor(torch.rand([N, 1, 1], device=device) * 2)
            i = self._gate(i, self.lumaflip * self.p, torch.zeros_like(i), [N, 1, 1])
            if q is not None:
                i = torch.full_like(i, torch.floor(q * 2))
            C = (I_4 - 2 * luma_outer * i) @ C  # Householder reflection of the luma component
            enabled = True

        if self.hue > 0 and num_channels > 1:
            theta = (torch.rand([N], device=device) * 2 - 1) * np.pi * self.hue_max
            theta = self._gate(theta, self.hue * self.p, torch.zeros_like(theta), [N])
            if q is not None:
                theta = torch.full_like(theta, (q * 2 - 1) * np.pi * self.hue_max)
            C = _rotate3d(luma, theta) @ C
            enabled = True

        if self.saturation > 0 and num_channels > 1:
            s = torch.exp2(torch.randn([N, 1, 1], device=device) * self.saturation_std)
            s = self._gate(s, self.saturation * self.p, torch.ones_like(s), [N, 1, 1])
            if q is not None:
                s = torch.full_like(s, torch.exp2(torch.erfinv(q * 2 - 1) * self.saturation_std))
            C = (luma_outer + (I_4 - luma_outer) * s) @ C
            enabled = True

        return C if enabled else None

    def _apply_color(self, images, C):
        N, num_channels, H, W = images.shape
        pixels = images.reshape([N, num_channels, H * W])
        if num_channels == 3:
            pixels = C[:, :3, :3] @ pixels + C[:, :3, 3:]
        elif num_channels == 1:
            row = C[:, :3, :].mean(dim=1, keepdim=True)                 # average of the RGB output rows
            pixels = pixels * row[:, :, :3].sum(dim=2, keepdim=True) + row[:, :, 3:]
        elif num_channels == 6:
            # EG3D: the same transform on the final image (0-2) and the upsampled raw image (3-5).
            halves = [C[:, :3, :3] @ half + C[:, :3, 3:] for half in pixels.split(3, dim=1)]
            pixels = torch.cat(halves, dim=1)
        else:
            raise ValueError(f'AugmentPipe: colour transforms need 1, 3 or 6 channels, got {num_channels}')
        return pixels.reshape([N, num_channels, H, W])

    # ------------------------------------------------------------------------
    # Image-space filtering and corruptions.

    def _filter(self, images, q):
        """Amplify or attenuate each octave band by a random gain while keeping the expected power."""
        N, num_channels, H, W = images.shape
        device = images.device
        num_bands = self.Hz_fbank.shape[0]
        assert len(self.imgfilter_bands) == num_bands
        expected_power = misc.constant(np.array([10, 1, 1, 1]) / 13, device=device)  # natural-image spectrum

        g = torch.ones([N, num_bands], device=device)
        for i, band_strength in enumerate(self.imgfilter_bands):
            t_i = torch.exp2(torch.randn([N], device=device) * self.imgfilter_std)
            t_i = self._gate(t_i, self.imgfilter * self.p * band_strength, torch.ones_like(t_i), [N])
            if q is not None:
                t_i = (torch.full_like(t_i, torch.exp2(torch.erfinv(q * 2 - 1) * self.imgfilter_std))
                       if band_strength > 0 else torch.ones_like(t_i))
            t = torch.ones([N, num_bands], device=device)
            t[:, i] = t_i
            t = t / (expected_power * t.square()).sum(dim=-1, keepdim=True).sqrt()
            g = g * t

        # Per-sample separable filter, one group per (sample, channel).
        taps = (g @ self.Hz_fbank).unsqueeze(1).repeat([1, num_channels, 1]).reshape([N * num_channels, 1, -1])
        pad = self.Hz_fbank.shape[1] // 2
        x = images.reshape([1, N * num_channels, H, W])
        x = torch.nn.functional.pad(input=x, pad=[pad, pad, pad, pad], mode='reflect')
        x = conv2d_gradfix.conv2d(input=x, weight=taps.unsqueeze(2), groups=N * num_channels)
        x = conv2d_gradfix.conv2d(input=x, weight=taps.unsqueeze(3), groups=N * num_channels)
        return x.reshape([N, num_channels, H, W])

    def _add_noise(self, images, q):
        N, num_channels, H, W = images.shape
        device = images.device
        sigma = torch.randn([N, 1, 1, 1], device=device).abs() * self.noise_std
        sigma = self._gate(sigma, self.noise * self.p, torch.zeros_like(sigma), [N, 1, 1, 1])
        if q is not None:
            sigma = torch.full_like(sigma, torch.erfinv(q) * self.noise_std)  # quantile of |normal| (up to sqrt 2)
        return images + torch.randn([N, num_channels, H, W], device=device) * sigma

    def _cut_out(self, images, q):
        """Zero a rectangle of relative size cutout_size around a random centre."""
        N, num_channels, H, W = images.shape
        device = images.device
        size = torch.full([N, 2, 1, 1, 1], self.cutout_size, device=device)
        size = self._gate(size, self.cutout * self.p, torch.zeros_like(size), [N, 1, 1, 1, 1])
        center = torch.rand([N, 2, 1, 1, 1], device=device)
        if q is not None:
            size = torch.full_like(size, self.cutout_size)
            center = torch.full_like(center, q)
        coord_x = torch.arange(W, device=device).reshape([1, 1, 1, -1])
        coord_y = torch.arange(H, device=device).reshape([1, 1, -1, 1])
        outside_x = ((coord_x + 0.5) / W - center[:, 0]).abs() >= size[:, 0] / 2
        outside_y = ((coord_y + 0.5) / H - center[:, 1]).abs() >= size[:, 1] / 2
        mask = torch.logical_or(outside_x, outside_y).to(images.dtype)
        return images * mask
