"""Alias-free StyleGAN3 generator (Karras et al., "Alias-Free Generative Adversarial Networks", 2021).

EG3D never instantiates these classes, but its super-resolution module imports `SynthesisLayer` from here, so
this module provides StyleGAN3's class names, constructor signatures and parameter names in a compact form:
Fourier-feature input, modulated convolutions, and filtered leaky ReLUs whose up/down-sampling filters follow
the paper's cutoff schedule. Like networks_stylegan2.py it travels inside pickles, so it calls only the
torch_utils names every release has (misc, persistence, bias_act, conv2d_gradfix, filtered_lrelu).
"""

import numpy as np
import scipy.signal
import scipy.special
import torch

from torch_utils import misc, persistence
from torch_utils.ops import bias_act, conv2d_gradfix, filtered_lrelu

#----------------------------------------------------------------------------
# Helpers.

def _pair(value) -> np.ndarray:
    """[width, height] from a single size or a pair."""
    return np.broadcast_to(np.asarray(value), [2])


def _unit_rms(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def _integer_ratio(high_rate, low_rate) -> int:
    """high_rate / low_rate, which must be a whole number."""
    ratio = int(np.rint(high_rate / low_rate))
    assert low_rate * ratio == high_rate, f'sampling rates {high_rate} and {low_rate} are not commensurate'
    return ratio


def modulated_conv2d(x: torch.Tensor, w: torch.Tensor, s: torch.Tensor, *, demodulate: bool = True,
        padding: int = 0, input_gain=None) -> torch.Tensor:
    """Convolve each sample of x [N, I, H, W] with w [O, I, k, k] scaled by its styles s [N, I]."""
    batch, in_channels = s.shape
    misc.assert_shape(x, [batch, w.shape[1], None, None])
    misc.assert_shape(s, [x.shape[0], in_channels])
    if demodulate:
        # Unit-RMS weight and styles keep the products in range; demodulation cancels these scales.
        w = w * w.square().mean([1, 2, 3], keepdim=True).rsqrt()
        s = s * s.square().mean().rsqrt()
    kernels = w.unsqueeze(0) * s.reshape(batch, 1, in_channels, 1, 1) # [N, O, I, k, k]
    if demodulate:
        kernels = kernels * (kernels.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    if input_gain is not None:
        kernels = kernels * input_gain.expand(batch, in_channels).reshape(batch, 1, in_channels, 1, 1)
    # The batch is folded into the channels: one grouped convolution for all samples.
    y = conv2d_gradfix.conv2d(input=x.reshape(1, batch * in_channels, *x.shape[2:]),
        weight=kernels.reshape(-1, in_channels, *w.shape[2:]).to(x.dtype), padding=padding, groups=batch)
    return y.reshape(batch, -1, *y.shape[2:])


def design_lowpass_filter(numtaps, cutoff, width, fs, radial=False):
    """Kaiser-windowed low-pass filter (1-D separable, or 2-D radially symmetric); None for a single tap."""
    assert numtaps >= 1
    if numtaps == 1:
        return None
    if not radial:
        taps = scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
        return torch.as_tensor(taps, dtype=torch.float32)
    # Impulse response of an ideal disk-shaped pass band: cutoff * J1(2 pi cutoff r) / r (limit pi cutoff^2 at r = 0).
    t = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(t, t))
    safe_r = np.where(r > 0, r, 1)
    f = np.where(r > 0, cutoff * scipy.special.j1(2 * np.pi * cutoff * safe_r) / safe_r, np.pi * cutoff ** 2)
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    window = np.kaiser(numtaps, beta)
    f = f * np.outer(window, window)
    return torch.as_tensor(f / np.sum(f), dtype=torch.float32)

#----------------------------------------------------------------------------
# Mapping.

@persistence.persistent_class
class FullyConnectedLayer(torch.nn.Module):
    """Dense layer with equalized learning rate; `weight_init` scales the initial weights, `bias_init` may be
    a per-feature list."""

    def __init__(self, in_features: int, out_features: int, *, activation: str = 'linear', bias: bool = True,
            lr_multiplier: float = 1, weight_init: float = 1, bias_init=0):
        super().__init__()
        self.in_features, self.out_features, self.activation = in_features, out_features, activation
        self.weight_gain, self.bias_gain = lr_multiplier / np.sqrt(in_features), lr_multiplier
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) * (weight_init / lr_multiplier))
        initial_bias = np.broadcast_to(np.asarray(bias_init, dtype=np.float32), [out_features]) / lr_multiplier
        self.bias = torch.nn.Parameter(torch.from_numpy(initial_bias.astype(np.float32))) if bias else None

    def forward(self, x):
        weight = self.weight.to(x.dtype) * self.weight_gain
        bias = None if self.bias is None else self.bias.to(x.dtype) * self.bias_gain
        if bias is None or self.activation != 'linear':
            return bias_act.bias_act(x.matmul(weight.t()), bias, act=self.activation)
        return torch.addmm(bias.unsqueeze(0), x, weight.t())

    def extra_repr(self):
        return f'in_features={self.in_features:d}, out_features={self.out_features:d}, activation={self.activation:s}'


@persistence.persistent_class
class MappingNetwork(torch.nn.Module):
    """z (and label c) -> w, broadcast to num_ws copies, with truncation towards the tracked mean w_avg."""

    def __init__(self, *, z_dim: int, c_dim: int, w_dim: int, num_ws: int, num_layers: int = 2,
            lr_multiplier: float = 0.01, w_avg_beta: float = 0.998):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        self.embed = FullyConnectedLayer(c_dim, w_dim) if c_dim > 0 else None
        fan_in = z_dim + (w_dim if c_dim > 0 else 0)
        for idx in range(num_layers):
            self.add_module(f'fc{idx}', FullyConnectedLayer(fan_in, w_dim, activation='lrelu',
                lr_multiplier=lr_multiplier))
            fan_in = w_dim
        self.register_buffer('w_avg', torch.zeros([w_dim]))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        misc.assert_shape(z, [None, self.z_dim])
        inputs = [_unit_rms(z.to(torch.float32))]
        if self.c_dim > 0:
            misc.assert_shape(c, [z.shape[0], self.c_dim])
            inputs.append(_unit_rms(self.embed(c.to(torch.float32))))
        w = torch.cat(inputs, dim=1)
        for idx in range(self.num_layers):
            w = getattr(self, f'fc{idx}')(w)
        if update_emas:
            self.w_avg.copy_(w.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        ws = w.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            head = slice(None, truncation_cutoff) # None: every w is truncated.
            ws[:, head] = self.w_avg.lerp(ws[:, head], truncation_psi)
        return ws

    def extra_repr(self):
        return f'z_dim={self.z_dim:d}, c_dim={self.c_dim:d}, w_dim={self.w_dim:d}, num_ws={self.num_ws:d}'

#----------------------------------------------------------------------------
# Synthesis.

@persistence.persistent_class
class SynthesisInput(torch.nn.Module):
    """Band-limited Fourier features, rotated and translated per sample by an affine map of w."""

    def __init__(self, *, w_dim: int, channels: int, size, sampling_rate, bandwidth):
        super().__init__()
        self.w_dim, self.channels, self.size = w_dim, channels, _pair(size) # size: [width, height]
        self.sampling_rate, self.bandwidth = sampling_rate, bandwidth
        # Frequencies uniformly distributed over the disk of radius `bandwidth`; random phases.
        angle = torch.rand([channels]) * (2 * np.pi)
        radius = torch.rand([channels]).sqrt() * bandwidth
        self.register_buffer('freqs', torch.stack([angle.cos(), angle.sin()], dim=1) * radius.unsqueeze(1))
        self.register_buffer('phases', torch.rand([channels]) - 0.5)
        self.weight = torch.nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0]) # (cos, sin, tx, ty)
        self.register_buffer('transform', torch.eye(3, 3)) # User-specified extra transform (e.g. by metrics).

    def forward(self, w):
        batch = w.shape[0]
        t = self.affine(w)
        t = t / t[:, :2].norm(dim=1, keepdim=True) # Pure rotation; translation scaled along.
        rotate = torch.eye(3, device=w.device).repeat([batch, 1, 1])
        rotate[:, 0, 0], rotate[:, 0, 1], rotate[:, 1, 0], rotate[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
        translate = torch.eye(3, device=w.device).repeat([batch, 1, 1])
        translate[:, 0, 2], translate[:, 1, 2] = -t[:, 2], -t[:, 3]
        m = rotate @ translate @ self.transform.unsqueeze(0) # Image point p is sampled at m p.

        # sin(2 pi (f . (A p + b) + phase)) = sin(2 pi ((A^T f) . p + f . b + phase)).
        freqs = self.freqs.unsqueeze(0) @ m[:, :2, :2]                                   # [N, C, 2]
        phases = self.phases.unsqueeze(0) + (self.freqs.unsqueeze(0) @ m[:, :2, 2:]).squeeze(2) # [N, C]
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
    """Modulated convolution followed by an alias-free (filtered) leaky ReLU, or the final toRGB layer.

    The nonlinearity runs at a temporarily higher rate (lrelu_upsampling times the larger of the in/out
    rates) between an upsampling and a downsampling low-pass filter, so that its harmonics stay below the
    output Nyquist frequency.
    """

    def __init__(self, *, w_dim, is_torgb, is_critically_sampled, use_fp16, in_channels, out_channels, in_size,
            out_size, in_sampling_rate, out_sampling_rate, in_cutoff, out_cutoff, in_half_width, out_half_width,
            conv_kernel=3, filter_size=6, lrelu_upsampling=2, use_radial_filters=False, conv_clamp=256,
            magnitude_ema_beta=0.999):
        super().__init__()
        self.w_dim, self.in_channels, self.out_channels = w_dim, in_channels, out_channels
        self.is_torgb, self.is_critically_sampled, self.use_fp16 = is_torgb, is_critically_sampled, use_fp16
        self.in_size, self.out_size = _pair(in_size), _pair(out_size)
        self.in_sampling_rate, self.out_sampling_rate = in_sampling_rate, out_sampling_rate
        self.in_cutoff, self.out_cutoff = in_cutoff, out_cutoff
        self.in_half_width, self.out_half_width = in_half_width, out_half_width
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp, self.magnitude_ema_beta = conv_clamp, magnitude_ema_beta
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, self.conv_kernel, self.conv_kernel]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer('magnitude_ema', torch.ones([]))

        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.up_factor = _integer_ratio(self.tmp_sampling_rate, in_sampling_rate)
        self.down_factor = _integer_ratio(self.tmp_sampling_rate, out_sampling_rate)
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        self.down_radial = use_radial_filters and not is_critically_sampled
        self.register_buffer('up_filter', design_lowpass_filter(numtaps=self.up_taps, cutoff=in_cutoff,
            width=in_half_width * 2, fs=self.tmp_sampling_rate))
        self.register_buffer('down_filter', design_lowpass_filter(numtaps=self.down_taps, cutoff=out_cutoff,
            width=out_half_width * 2, fs=self.tmp_sampling_rate, radial=self.down_radial))
        self.padding = self._filter_padding()

    def _filter_padding(self):
        """[x0, x1, y0, y1] padding that maps the full convolution of in_size onto exactly out_size outputs."""
        upsampled = (self.in_size + self.conv_kernel - 1) * self.up_factor
        total = (self.out_size - 1) * self.down_factor - upsampled + self.up_taps + self.down_taps - 1
        before = (total + self.up_factor) // 2 # The +up_factor keeps the zero-inserted samples centred.
        after = total - before
        return [int(before[0]), int(after[0]), int(before[1]), int(after[1])]

    def forward(self, x, w, noise_mode='random', force_fp32=False, update_emas=False):
        if noise_mode not in ('random', 'const', 'none'): # No noise inputs; accepted for the common interface.
            raise ValueError(f'SynthesisLayer: unknown noise_mode {noise_mode!r}')
        misc.assert_shape(x, [None, self.in_channels, int(self.in_size[1]), int(self.in_size[0])])
        misc.assert_shape(w, [x.shape[0], self.w_dim])
        if update_emas:
            with torch.autograd.profiler.record_function('update_magnitude_ema'):
                magnitude = x.detach().to(torch.float32).square().mean()
                self.magnitude_ema.copy_(magnitude.lerp(self.magnitude_ema, self.magnitude_ema_beta))

        styles = self.affine(w)
        if self.is_torgb: # No demodulation, so the equalized-lr gain goes into the styles.
            styles = styles * (1 / np.sqrt(self.in_channels * self.conv_kernel ** 2))
        use_half = self.use_fp16 and not force_fp32 and x.device.type == 'cuda'
        dtype = torch.float16 if use_half else torch.float32
        x = modulated_conv2d(x.to(dtype), self.weight, styles, demodulate=(not self.is_torgb),
            padding=self.conv_kernel - 1, input_gain=self.magnitude_ema.rsqrt())
        x = filtered_lrelu.filtered_lrelu(x, fu=self.up_filter, fd=self.down_filter, b=self.bias.to(x.dtype),
            up=self.up_factor, down=self.down_factor, padding=self.padding, gain=(1 if self.is_torgb else np.sqrt(2)),
            slope=(1 if self.is_torgb else 0.2), clamp=self.conv_clamp)
        misc.assert_shape(x, [None, self.out_channels, int(self.out_size[1]), int(self.out_size[0])])
        assert x.dtype == dtype
        return x

    def extra_repr(self):
        return (f'w_dim={self.w_dim:d}, is_torgb={self.is_torgb}, in_channels={self.in_channels:d}, '
                f'out_channels={self.out_channels:d}, in_size={list(self.in_size)}, out_size={list(self.out_size)}, '
                f'up={self.up_factor}, down={self.down_factor}')


def _layer_schedule(*, img_resolution, img_channels, channel_base, channel_max, num_layers, num_critical,
        first_cutoff, first_stopband, last_stopband_rel, margin_size):
    """Per-layer arrays (index 0 = the Fourier input, last = ToRGB) of the cutoff schedule.

    Cutoffs and stopbands grow geometrically until the last num_critical layers, which are critically
    sampled at the output resolution; every other layer works on a margin around the image.
    """
    last_cutoff = img_resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    progress = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** progress
    stopbands = first_stopband * (last_stopband / first_stopband) ** progress
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    sizes = rates + margin_size * 2
    sizes[-2:] = img_resolution
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    return dict(cutoffs=cutoffs, half_widths=half_widths, rates=rates, sizes=sizes, channels=channels)


@persistence.persistent_class
class SynthesisNetwork(torch.nn.Module):
    """Fourier input followed by num_layers + 1 synthesis layers (the last one is toRGB)."""

    def __init__(self, *, w_dim, img_resolution, img_channels, channel_base=32768, channel_max=512, num_layers=14,
            num_critical=2, first_cutoff=2, first_stopband=2 ** 2.1, last_stopband_rel=2 ** 0.3, margin_size=10,
            output_scale=0.25, num_fp16_res=4, **layer_kwargs):
        super().__init__()
        self.w_dim, self.num_ws = w_dim, num_layers + 2
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.num_layers, self.num_critical, self.margin_size = num_layers, num_critical, margin_size
        self.output_scale, self.num_fp16_res = output_scale, num_fp16_res
        plan = _layer_schedule(img_resolution=img_resolution, img_channels=img_channels, channel_base=channel_base,
            channel_max=channel_max, num_layers=num_layers, num_critical=num_critical, first_cutoff=first_cutoff,
            first_stopband=first_stopband, last_stopband_rel=last_stopband_rel, margin_size=margin_size)
        cutoffs, half_widths, rates = plan['cutoffs'], plan['half_widths'], plan['rates']
        sizes, channels = plan['sizes'].astype(int), plan['channels'].astype(int)

        self.input = SynthesisInput(w_dim=w_dim, channels=int(channels[0]), size=int(sizes[0]),
            sampling_rate=rates[0], bandwidth=cutoffs[0])
        self.layer_names = []
        for idx in range(num_layers + 1):
            src = max(idx - 1, 0) # The first layer reads the input at the input's own rate.
            layer = SynthesisLayer(w_dim=w_dim, is_torgb=(idx == num_layers),
                is_critically_sampled=(idx >= num_layers - num_critical),
                use_fp16=bool(rates[idx] * (2 ** num_fp16_res) > img_resolution),
                in_channels=int(channels[src]), out_channels=int(channels[idx]),
                in_size=int(sizes[src]), out_size=int(sizes[idx]),
                in_sampling_rate=int(rates[src]), out_sampling_rate=int(rates[idx]),
                in_cutoff=cutoffs[src], out_cutoff=cutoffs[idx],
                in_half_width=half_widths[src], out_half_width=half_widths[idx], **layer_kwargs)
            self.layer_names.append(f'L{idx}_{layer.out_size[0]}_{layer.out_channels}')
            self.add_module(self.layer_names[-1], layer)

    def forward(self, ws, **layer_kwargs):
        misc.assert_shape(ws, [None, self.num_ws, self.w_dim])
        first, *rest = ws.to(torch.float32).unbind(dim=1)
        x = self.input(first)
        for name, w in zip(self.layer_names, rest):
            x = getattr(self, name)(x, w, **layer_kwargs)
        x = x if self.output_scale == 1 else x * self.output_scale
        misc.assert_shape(x, [None, self.img_channels, self.img_resolution, self.img_resolution])
        return x.to(torch.float32)

    def extra_repr(self):
        return (f'w_dim={self.w_dim:d}, num_ws={self.num_ws:d}, img_resolution={self.img_resolution:d}, '
                f'img_channels={self.img_channels:d}, num_layers={self.num_layers:d}, '
                f'num_critical={self.num_critical:d}')


@persistence.persistent_class
class Generator(torch.nn.Module):
    """Mapping + alias-free synthesis."""

    def __init__(self, *, z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs={}, **synthesis_kwargs):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
            **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws # Set by the synthesis network, needed by the mapping.
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs)

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False, **synthesis_kwargs):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
            update_emas=update_emas)
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)
