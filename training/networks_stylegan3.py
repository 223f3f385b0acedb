"""Alias-free StyleGAN3 generator (Karras et al., "Alias-Free Generative Adversarial Networks", 2021).

EG3D never instantiates these classes, but its official super-resolution module imports
`SynthesisLayer` from here, so this module provides StyleGAN3's class names, constructor signatures and
parameter names in a compact form: Fourier-feature input, modulated convolutions, and filtered leaky
ReLUs whose up/down-sampling filters follow the paper's cutoff schedule.
"""

import numpy as np
import scipy.signal
import scipy.special
import torch

from torch_utils import misc, persistence
from torch_utils.ops import bias_act, conv2d_gradfix, filtered_lrelu


def _normalize_2nd_moment(x, eps=1e-8):
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def modulated_conv2d(x, w, s, demodulate=True, padding=0, input_gain=None):
    """Convolve each sample of x [N, I, H, W] with w [O, I, k, k] scaled by its styles s [N, I]."""
    batch = x.shape[0]
    out_channels, in_channels, kh, kw = w.shape
    misc.assert_shape(x, [batch, in_channels, None, None])
    misc.assert_shape(s, [batch, in_channels])
    if demodulate:
        # Unit-RMS weight and styles keep the products in range; demodulation cancels these scales.
        w = w * w.square().mean([1, 2, 3], keepdim=True).rsqrt()
        s = s * s.square().mean().rsqrt()
    sample_w = w.unsqueeze(0) * s.reshape(batch, 1, in_channels, 1, 1)
    if demodulate:
        sample_w = sample_w * (sample_w.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    if input_gain is not None:
        sample_w = sample_w * input_gain.expand(batch, in_channels).reshape(batch, 1, in_channels, 1, 1)
    # One grouped convolution over the batch folded into channels.
    x = x.reshape(1, batch * in_channels, *x.shape[2:])
    x = conv2d_gradfix.conv2d(input=x, weight=sample_w.reshape(-1, in_channels, kh, kw).to(x.dtype), padding=padding, groups=batch)
    return x.reshape(batch, out_channels, *x.shape[2:])


def design_lowpass_filter(numtaps, cutoff, width, fs, radial=False):
    """Kaiser-windowed low-pass filter (1-D separable, or 2-D radially symmetric); None for a single tap."""
    assert numtaps >= 1
    if numtaps == 1:
        return None
    if not radial:
        return torch.as_tensor(scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs), dtype=torch.float32)
    # Impulse response of an ideal disk-shaped pass band: cutoff * J1(2 pi cutoff r) / r (limit pi cutoff^2 at r = 0).
    t = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(t, t))
    safe_r = np.where(r > 0, r, 1)
    f = np.where(r > 0, cutoff * scipy.special.j1(2 * np.pi * cutoff * safe_r) / safe_r, np.pi * cutoff ** 2)
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    window = np.kaiser(numtaps, beta)
    f = f * np.outer(window, window)
    return torch.as_tensor(f / np.sum(f), dtype=torch.float32)


@persistence.persistent_class
class FullyConnectedLayer(torch.nn.Module):
    """Dense layer with equalized learning rate."""

    def __init__(self, in_features, out_features, activation='linear', bias=True, lr_multiplier=1, weight_init=1, bias_init=0):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) * (weight_init / lr_multiplier))
        bias_init = np.broadcast_to(np.asarray(bias_init, dtype=np.float32), [out_features])
        self.bias = torch.nn.Parameter(torch.from_numpy((bias_init / lr_multiplier).astype(np.float32))) if bias else None
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype) * self.bias_gain if self.bias is not None else None
        if self.activation == 'linear' and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act.bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self):
        return f'in_features={self.in_features:d}, out_features={self.out_features:d}, activation={self.activation:s}'


@persistence.persistent_class
class MappingNetwork(torch.nn.Module):
    """z (and label c) -> w, broadcast to num_ws copies, with truncation towards the tracked mean w_avg."""

    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=2, lr_multiplier=0.01, w_avg_beta=0.998):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        self.embed = FullyConnectedLayer(c_dim, w_dim) if c_dim > 0 else None
        features = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * num_layers
        for idx in range(num_layers):
            setattr(self, f'fc{idx}', FullyConnectedLayer(features[idx], features[idx + 1], activation='lrelu', lr_multiplier=lr_multiplier))
        self.register_buffer('w_avg', torch.zeros([w_dim]))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        misc.assert_shape(z, [None, self.z_dim])
        x = _normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            misc.assert_shape(c, [z.shape[0], self.c_dim])
            x = torch.cat([x, _normalize_2nd_moment(self.embed(c.to(torch.float32)))], dim=1)
        for idx in range(self.num_layers):
            x = getattr(self, f'fc{idx}')(x)
        if update_emas:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            x[:, :cutoff] = self.w_avg.lerp(x[:, :cutoff], truncation_psi)
        return x

    def extra_repr(self):
        return f'z_dim={self.z_dim:d}, c_dim={self.c_dim:d}, w_dim={self.w_dim:d}, num_ws={self.num_ws:d}'


@persistence.persistent_class
class SynthesisInput(torch.nn.Module):
    """Band-limited Fourier features, rotated and translated per sample by an affine map of w."""

    def __init__(self, w_dim, channels, size, sampling_rate, bandwidth):
        super().__init__()
        self.w_dim = w_dim
        self.channels = channels
        self.size = np.broadcast_to(np.asarray(size), [2])  # [width, height]
        self.sampling_rate = sampling_rate
        self.bandwidth = bandwidth
        # Frequencies uniformly distributed over the disk of radius `bandwidth`; random phases.
        angle = torch.rand([channels]) * (2 * np.pi)
        radius = torch.rand([channels]).sqrt() * bandwidth
        self.register_buffer('freqs', torch.stack([angle.cos(), angle.sin()], dim=1) * radius.unsqueeze(1))
        self.register_buffer('phases', torch.rand([channels]) - 0.5)
        self.weight = torch.nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0])  # (cos, sin, tx, ty)
        self.register_buffer('transform', torch.eye(3, 3))  # User-specified extra transform (e.g. by metrics).

    def forward(self, w):
        batch = w.shape[0]
        t = self.affine(w)
        t = t / t[:, :2].norm(dim=1, keepdim=True)  # Pure rotation; translation scaled along.
        rotate = torch.eye(3, device=w.device).repeat([batch, 1, 1])
        rotate[:, 0, 0], rotate[:, 0, 1], rotate[:, 1, 0], rotate[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
        translate = torch.eye(3, device=w.device).repeat([batch, 1, 1])
        translate[:, 0, 2], translate[:, 1, 2] = -t[:, 2], -t[:, 3]
        m = rotate @ translate @ self.transform.unsqueeze(0)  # Image point p is sampled at m p.

        # sin(2 pi (f . (A p + b) + phase)) = sin(2 pi ((A^T f) . p + f . b + phase)).
        freqs = self.freqs.unsqueeze(0) @ m[:, :2, :2]                                   # [N, C, 2]
        phases = self.phases.unsqueeze(0) + (self.freqs.unsqueeze(0) @ m[:, :2, 2:]).squeeze(2)  # [N, C]
        # Fade out frequencies that the transform pushed beyond the band.
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)

        # Pixel centres in units where the canvas has `sampling_rate` samples per unit, centred at 0.
        width, height = int(self.size[0]), int(self.size[1])
        xs = (torch.arange(width, device=w.device) + 0.5 - width / 2) / self.sampling_rate
        ys = (torch.arange(height, device=w.device) + 0.5 - height / 2) / self.sampling_rate
        grid = torch.stack(torch.meshgrid(xs, ys, indexing='xy'), dim=-1)               # [H, W, 2]
        x = torch.einsum('hwd,ncd->nhwc', grid, freqs) + phases[:, None, None, :]
        x = torch.sin(x * (2 * np.pi)) * amplitudes[:, None, None, :]
        x = x @ (self.weight / np.sqrt(self.channels)).t()
        x = x.permute(0, 3, 1, 2)
        misc.assert_shape(x, [batch, self.channels, height, width])
        return x.contiguous()

    def extra_repr(self):
        return (f'w_dim={self.w_dim:d}, channels={self.channels:d}, size={list(self.size)}, '
                f'sampling_rate={self.sampling_rate:g}, bandwidth={self.bandwidth:g}')


@persistence.persistent_class
class SynthesisLayer(torch.nn.Module):
    """Modulated convolution followed by an alias-free (filtered) leaky ReLU, or the final toRGB layer."""

    def __init__(self, w_dim, is_torgb, is_critically_sampled, use_fp16, in_channels, out_channels, in_size, out_size,
            in_sampling_rate, out_sampling_rate, in_cutoff, out_cutoff, in_half_width, out_half_width,
            conv_kernel=3, filter_size=6, lrelu_upsampling=2, use_radial_filters=False, conv_clamp=256,
            magnitude_ema_beta=0.999):
        super().__init__()
        self.w_dim = w_dim
        self.is_torgb = is_torgb
        self.is_critically_sampled = is_critically_sampled
        self.use_fp16 = use_fp16
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.in_size = np.broadcast_to(np.asarray(in_size), [2])
        self.out_size = np.broadcast_to(np.asarray(out_size), [2])
        self.in_sampling_rate = in_sampling_rate
        self.out_sampling_rate = out_sampling_rate
        self.in_cutoff = in_cutoff
        self.out_cutoff = out_cutoff
        self.in_half_width = in_half_width
        self.out_half_width = out_half_width
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        self.magnitude_ema_beta = magnitude_ema_beta

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, self.conv_kernel, self.conv_kernel]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer('magnitude_ema', torch.ones([]))

        # The nonlinearity runs at a temporarily higher rate (lrelu_upsampling) to keep its harmonics
        # below the final Nyquist frequency, between an upsampling and a downsampling low-pass filter.
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.up_factor = int(np.rint(self.tmp_sampling_rate / in_sampling_rate))
        assert in_sampling_rate * self.up_factor == self.tmp_sampling_rate
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        self.register_buffer('up_filter', design_lowpass_filter(numtaps=self.up_taps, cutoff=in_cutoff,
            width=in_half_width * 2, fs=self.tmp_sampling_rate))
        self.down_factor = int(np.rint(self.tmp_sampling_rate / out_sampling_rate))
        assert out_sampling_rate * self.down_factor == self.tmp_sampling_rate
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        self.down_radial = use_radial_filters and not is_critically_sampled
        self.register_buffer('down_filter', design_lowpass_filter(numtaps=self.down_taps, cutoff=out_cutoff,
            width=out_half_width * 2, fs=self.tmp_sampling_rate, radial=self.down_radial))

        # Padding that maps the full convolution of in_size onto exactly out_size outputs; the +up_factor
        # in the split keeps the zero-inserted samples centred.
        pad_total = (self.out_size - 1) * self.down_factor - (self.in_size + self.conv_kernel - 1) * self.up_factor \
            + self.up_taps + self.down_taps - 1
        pad_lo = (pad_total + self.up_factor) // 2
        pad_hi = pad_total - pad_lo
        self.padding = [int(pad_lo[0]), int(pad_hi[0]), int(pad_lo[1]), int(pad_hi[1])]

    def forward(self, x, w, noise_mode='random', force_fp32=False, update_emas=False):
        assert noise_mode in ['random', 'const', 'none']  # StyleGAN3 has no noise inputs; kept for the interface.
        misc.assert_shape(x, [None, self.in_channels, int(self.in_size[1]), int(self.in_size[0])])
        misc.assert_shape(w, [x.shape[0], self.w_dim])
        if update_emas:
            with torch.autograd.profiler.record_function('update_magnitude_ema'):
                self.magnitude_ema.copy_(x.detach().to(torch.float32).square().mean().lerp(self.magnitude_ema, self.magnitude_ema_beta))
        input_gain = self.magnitude_ema.rsqrt()

        styles = self.affine(w)
        if self.is_torgb:
            styles = styles * (1 / np.sqrt(self.in_channels * self.conv_kernel ** 2))
        dtype = torch.float16 if (self.use_fp16 and not force_fp32 and x.device.type == 'cuda') else torch.float32
        x = modulated_conv2d(x.to(dtype), self.weight, styles, demodulate=(not self.is_torgb),
            padding=self.conv_kernel - 1, input_gain=input_gain)
        gain = 1 if self.is_torgb else np.sqrt(2)
        slope = 1 if self.is_torgb else 0.2
        x = filtered_lrelu.filtered_lrelu(x, fu=self.up_filter, fd=self.down_filter, b=self.bias.to(x.dtype),
            up=self.up_factor, down=self.down_factor, padding=self.padding, gain=gain, slope=slope, clamp=self.conv_clamp)
        misc.assert_shape(x, [None, self.out_channels, int(self.out_size[1]), int(self.out_size[0])])
        assert x.dtype == dtype
        return x

    def extra_repr(self):
        return (f'w_dim={self.w_dim:d}, is_torgb={self.is_torgb}, in_channels={self.in_channels:d}, '
                f'out_channels={self.out_channels:d}, in_size={list(self.in_size)}, out_size={list(self.out_size)}, '
                f'up={self.up_factor}, down={self.down_factor}')


@persistence.persistent_class
class SynthesisNetwork(torch.nn.Module):
    """Fourier input followed by num_layers + 1 synthesis layers (the last one is toRGB).

    Cutoffs and stopbands grow geometrically from the first layer to the last `num_critical` layers, which
    are critically sampled at the output resolution; every layer works on a margin around the image.
    """

    def __init__(self, w_dim, img_resolution, img_channels, channel_base=32768, channel_max=512, num_layers=14,
            num_critical=2, first_cutoff=2, first_stopband=2 ** 2.1, last_stopband_rel=2 ** 0.3, margin_size=10,
            output_scale=0.25, num_fp16_res=4, **layer_kwargs):
        super().__init__()
        self.w_dim = w_dim
        self.num_ws = num_layers + 2
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_layers = num_layers
        self.num_critical = num_critical
        self.margin_size = margin_size
        self.output_scale = output_scale
        self.num_fp16_res = num_fp16_res

        last_cutoff = img_resolution / 2
        last_stopband = last_cutoff * last_stopband_rel
        progress = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
        cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** progress
        stopbands = first_stopband * (last_stopband / first_stopband) ** progress
        sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
        half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
        sizes = sampling_rates + margin_size * 2
        sizes[-2:] = img_resolution
        channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
        channels[-1] = img_channels

        self.input = SynthesisInput(w_dim=w_dim, channels=int(channels[0]), size=int(sizes[0]),
            sampling_rate=sampling_rates[0], bandwidth=cutoffs[0])
        self.layer_names = []
        for idx in range(num_layers + 1):
            prev = max(idx - 1, 0)
            layer = SynthesisLayer(w_dim=w_dim, is_torgb=(idx == num_layers),
                is_critically_sampled=(idx >= num_layers - num_critical),
                use_fp16=bool(sampling_rates[idx] * (2 ** num_fp16_res) > img_resolution),
                in_channels=int(channels[prev]), out_channels=int(channels[idx]),
                in_size=int(sizes[prev]), out_size=int(sizes[idx]),
                in_sampling_rate=int(sampling_rates[prev]), out_sampling_rate=int(sampling_rates[idx]),
                in_cutoff=cutoffs[prev], out_cutoff=cutoffs[idx],
                in_half_width=half_widths[prev], out_half_width=half_widths[idx], **layer_kwargs)
            name = f'L{idx}_{layer.out_size[0]}_{layer.out_channels}'
            setattr(self, name, layer)
            self.layer_names.append(name)

    def forward(self, ws, **layer_kwargs):
        misc.assert_shape(ws, [None, self.num_ws, self.w_dim])
        ws = ws.to(torch.float32).unbind(dim=1)
        x = self.input(ws[0])
        for name, w in zip(self.layer_names, ws[1:]):
            x = getattr(self, name)(x, w, **layer_kwargs)
        if self.output_scale != 1:
            x = x * self.output_scale
        misc.assert_shape(x, [None, self.img_channels, self.img_resolution, self.img_resolution])
        return x.to(torch.float32)

    def extra_repr(self):
        return (f'w_dim={self.w_dim:d}, num_ws={self.num_ws:d}, img_resolution={self.img_resolution:d}, '
                f'img_channels={self.img_channels:d}, num_layers={self.num_layers:d}, num_critical={self.num_critical:d}')


@persistence.persistent_class
class Generator(torch.nn.Module):
    def __init__(self, z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs={}, **synthesis_kwargs):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs)

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False, **synthesis_kwargs):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, update_emas=update_emas)
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)
