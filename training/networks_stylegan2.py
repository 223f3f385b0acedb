"""StyleGAN2 networks: EG3D's tri-plane backbone, the blocks its super-resolution reuses, the discriminator parts.

This source travels inside pickles and may run against another release's torch_utils, so it calls only the helpers
every release has. Constructor arguments, instance attributes and parameter/buffer names (and their registration
order, which fixes the random initialisation) are part of the pickle format."""

import numpy as np
import torch

from torch_utils import misc, persistence
from torch_utils.ops import bias_act, conv2d_resample, fma, upfirdn2d

#----------------------------------------------------------------------------
# Small shared helpers.

def _conv_weight(out_channels: int, in_channels: int, kernel_size: int, channels_last: bool) -> torch.Tensor:
    layout = torch.channels_last if channels_last else torch.contiguous_format
    return torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=layout)

def _register_tensor(module: torch.nn.Module, name: str, tensor, *, trainable: bool) -> None:
    """A trainable tensor becomes a parameter, a frozen one a buffer of the same name; None stays an attribute."""
    if tensor is None:
        setattr(module, name, None)
    elif trainable:
        module.register_parameter(name, torch.nn.Parameter(tensor))
    else:
        module.register_buffer(name, tensor)

def _clamp_limit(conv_clamp, gain):
    return None if conv_clamp is None else conv_clamp * gain

def _block_format(*, use_fp16: bool, channels_last: bool, force_fp32: bool, device: torch.device):
    """(dtype, memory_format) a block computes in; float16 and channels-last are used on CUDA only."""
    fast = device.type == 'cuda' and not force_fp32
    dtype = torch.float16 if use_fp16 and fast else torch.float32
    layout = torch.channels_last if channels_last and fast else torch.contiguous_format
    return dtype, layout

def _check_architecture(owner: str, architecture: str) -> None:
    if architecture not in ('orig', 'skip', 'resnet'):
        raise ValueError(f"{owner}: architecture must be 'orig', 'skip' or 'resnet', got {architecture!r}")

def _repr_fields(*names):
    """An extra_repr method that lists the given attributes."""
    return lambda self: ', '.join(f'{name}={getattr(self, name)}' for name in names)

def _channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    return min(channel_base // resolution, channel_max)

def _lowest_fp16_resolution(resolution_log2: int, num_fp16_res: int) -> int:
    """Blocks at or above this resolution may use float16: the num_fp16_res highest ones, never 4x4."""
    return max(2 ** (resolution_log2 + 1 - num_fp16_res), 8)

#----------------------------------------------------------------------------
# Functional building blocks.

@misc.profiled_function
def normalize_2nd_moment(x: torch.Tensor, *, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Rescale x to unit mean square along `dim`."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()

def _float16_prescale(weight, styles):
    # Bring weight and styles to magnitude ~1 so float16 products stay finite; demodulation removes both scales.
    _, in_channels, kh, kw = weight.shape
    weight = weight * (1 / np.sqrt(in_channels * kh * kw) / weight.abs().amax(dim=[1, 2, 3], keepdim=True))
    styles = styles / styles.abs().amax(dim=1, keepdim=True)
    return weight, styles

def _modconv_grouped(x, sample_weight, dcoefs, noise, conv_kwargs):
    """All samples in one grouped convolution: the batch is folded into the channel axis."""
    _, out_channels, in_channels, kh, kw = sample_weight.shape
    if dcoefs is not None:
        sample_weight = sample_weight * dcoefs.reshape(-1, out_channels, 1, 1, 1)
    with misc.suppress_tracer_warnings():
        groups = int(x.shape[0])
    x = x.reshape(1, groups * in_channels, *x.shape[2:])
    kernel = sample_weight.reshape(groups * out_channels, in_channels, kh, kw).to(x.dtype)
    y = conv2d_resample.conv2d_resample(x=x, w=kernel, groups=groups, **conv_kwargs)
    y = y.reshape(groups, out_channels, *y.shape[2:])
    return y if noise is None else y.add_(noise)

def _modconv_scaled_activations(x, weight, styles, dcoefs, noise, conv_kwargs):
    """Shared weight; the styles scale the input activations and the demodulation the output."""
    batch_size, in_channels = styles.shape
    x = x * styles.to(x.dtype).reshape(batch_size, in_channels, 1, 1)
    x = conv2d_resample.conv2d_resample(x=x, w=weight.to(x.dtype), **conv_kwargs)
    if dcoefs is None:
        return x if noise is None else x.add_(noise.to(x.dtype))
    dcoefs = dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
    return x * dcoefs if noise is None else fma.fma(x, dcoefs, noise.to(x.dtype))

@misc.profiled_function
def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *, noise=None, up: int = 1,
        down: int = 1, padding: int = 0, resample_filter=None, demodulate: bool = True, flip_weight: bool = True,
        fused_modconv: bool = True) -> torch.Tensor:
    """Convolve x [N, I, H, W] with weight [O, I, kh, kw] modulated per sample by styles [N, I]; `demodulate`
    rescales each sample's filters to unit norm per output channel, `noise` is added last. `fused_modconv`: one
    grouped convolution with per-sample weights instead of scaling the activations around a shared one."""
    misc.assert_shape(x, [styles.shape[0], weight.shape[1], None, None])
    misc.assert_shape(styles, [x.shape[0], weight.shape[1]])
    if demodulate and x.dtype == torch.float16:
        weight, styles = _float16_prescale(weight, styles)
    conv_kwargs = dict(f=resample_filter, up=up, down=down, padding=padding, flip_weight=flip_weight)
    sample_weight = None # [N, O, I, kh, kw]
    if fused_modconv or demodulate:
        sample_weight = weight.unsqueeze(0) * styles.reshape(styles.shape[0], 1, -1, 1, 1)
    dcoefs = (sample_weight.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt() if demodulate else None # [N, O]
    if fused_modconv:
        return _modconv_grouped(x, sample_weight, dcoefs, noise, conv_kwargs)
    return _modconv_scaled_activations(x, weight, styles, dcoefs, noise, conv_kwargs)

#----------------------------------------------------------------------------
# Layers with equalized learning rate: parameters are stored with unit variance and scaled on use.

@persistence.persistent_class
class FullyConnectedLayer(torch.nn.Module):
    """Dense layer y = act(x W^T * weight_gain + b * bias_gain)."""

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True, activation: str = 'linear',
            lr_multiplier: float = 1, bias_init: float = 0):
        super().__init__()
        self.in_features, self.out_features, self.activation = in_features, out_features, activation
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = torch.nn.Parameter(torch.full([out_features], np.float32(bias_init))) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.to(x.dtype) * self.weight_gain
        bias = None if self.bias is None else self.bias.to(x.dtype)
        if bias is not None and self.bias_gain != 1:
            bias = bias * self.bias_gain
        if bias is not None and self.activation == 'linear':
            return torch.addmm(bias.unsqueeze(0), x, weight.t()) # One fused kernel for the common case.
        return bias_act.bias_act(x.matmul(weight.t()), bias, act=self.activation)

    extra_repr = _repr_fields('in_features', 'out_features', 'activation')

@persistence.persistent_class
class Conv2dLayer(torch.nn.Module):
    """Convolution with optional FIR up/downsampling, bias, activation and output clamping.
    `trainable=False` (Freeze-D) keeps weight and bias as buffers under the same names."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool = True,
            activation: str = 'linear', up: int = 1, down: int = 1, resample_filter=[1, 3, 3, 1], conv_clamp=None,
            channels_last: bool = False, trainable: bool = True):
        super().__init__()
        self.in_channels, self.out_channels, self.activation = in_channels, out_channels, activation
        self.up, self.down = up, down
        self.padding = kernel_size // 2
        self.conv_clamp = conv_clamp
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size ** 2))
        self.act_gain = bias_act.activation_funcs[activation].def_gain
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        weight = _conv_weight(out_channels, in_channels, kernel_size, channels_last)
        _register_tensor(self, 'weight', weight, trainable=trainable)
        _register_tensor(self, 'bias', torch.zeros([out_channels]) if bias else None, trainable=trainable)

    def forward(self, x: torch.Tensor, gain: float = 1) -> torch.Tensor:
        weight = (self.weight * self.weight_gain).to(x.dtype)
        x = conv2d_resample.conv2d_resample(x=x, w=weight, f=self.resample_filter, up=self.up, down=self.down,
            padding=self.padding, flip_weight=(self.up == 1))
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return bias_act.bias_act(x, bias, act=self.activation, gain=self.act_gain * gain,
            clamp=_clamp_limit(self.conv_clamp, gain))

    extra_repr = _repr_fields('in_channels', 'out_channels', 'activation', 'up', 'down')

#----------------------------------------------------------------------------
# Mapping.

@persistence.persistent_class
class MappingNetwork(torch.nn.Module):
    """Latent z and/or label c (a zero dim drops that input) -> w, optionally repeated num_ws times. With num_ws
    and w_avg_beta it also tracks the mean `w_avg` that truncation pulls towards."""

    def __init__(self, *, z_dim: int, c_dim: int, w_dim: int, num_ws, num_layers: int = 8, embed_features=None,
            layer_features=None, activation: str = 'lrelu', lr_multiplier: float = 0.01, w_avg_beta=0.998):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        embed_features = 0 if c_dim == 0 else (w_dim if embed_features is None else embed_features)
        hidden = w_dim if layer_features is None else layer_features
        widths = [z_dim + embed_features, *[hidden] * (num_layers - 1), w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
            self.add_module(f'fc{idx}', FullyConnectedLayer(fan_in, fan_out, activation=activation,
                lr_multiplier=lr_multiplier))
        if self._tracks_w_avg():
            self.register_buffer('w_avg', torch.zeros([w_dim]))

    def _tracks_w_avg(self):
        return self.num_ws is not None and self.w_avg_beta is not None

    def _embed_inputs(self, z, c):
        parts = []
        if self.z_dim > 0:
            misc.assert_shape(z, [None, self.z_dim])
            parts.append(normalize_2nd_moment(z.to(torch.float32)))
        if self.c_dim > 0:
            misc.assert_shape(c, [None, self.c_dim])
            parts.append(normalize_2nd_moment(self.embed(c.to(torch.float32))))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def forward(self, z, c, truncation_psi: float = 1, truncation_cutoff=None, update_emas: bool = False):
        w = self._embed_inputs(z, c)
        for idx in range(self.num_layers):
            w = getattr(self, f'fc{idx}')(w)
        if update_emas and self._tracks_w_avg():
            # lerp(a, b, t) = a + t (b - a): the batch mean moves towards the old average by beta.
            self.w_avg.copy_(w.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            w = w.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi == 1:
            return w
        assert self._tracks_w_avg(), 'truncation needs the tracked w_avg'
        if truncation_cutoff is None:
            return self.w_avg.lerp(w, truncation_psi)
        w[:, :truncation_cutoff] = self.w_avg.lerp(w[:, :truncation_cutoff], truncation_psi)
        return w

    extra_repr = _repr_fields('z_dim', 'c_dim', 'w_dim', 'num_ws')

#----------------------------------------------------------------------------
# Synthesis.

@persistence.persistent_class
class SynthesisLayer(torch.nn.Module):
    """Style-modulated convolution (optionally upsampling x2), per-pixel noise, bias and activation."""

    def __init__(self, in_channels: int, out_channels: int, *, w_dim: int, resolution: int, kernel_size: int = 3,
            up: int = 1, use_noise: bool = True, activation: str = 'lrelu', resample_filter=[1, 3, 3, 1],
            conv_clamp=None, channels_last: bool = False):
        super().__init__()
        self.in_channels, self.out_channels, self.w_dim = in_channels, out_channels, w_dim
        self.resolution, self.up = resolution, up
        self.padding = kernel_size // 2
        self.use_noise, self.activation = use_noise, activation
        self.act_gain = bias_act.activation_funcs[activation].def_gain
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        # Random draws happen in this order: affine weight, convolution weight, constant noise.
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(_conv_weight(out_channels, in_channels, kernel_size, channels_last))
        if use_noise:
            self.register_buffer('noise_const', torch.randn([resolution, resolution]))
            self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def _noise(self, batch_size, device, noise_mode):
        if noise_mode not in ('random', 'const', 'none'):
            raise ValueError(f'SynthesisLayer: unknown noise_mode {noise_mode!r}')
        if not self.use_noise or noise_mode == 'none':
            return None
        if noise_mode == 'const':
            return self.noise_const * self.noise_strength
        return torch.randn([batch_size, 1, self.resolution, self.resolution], device=device) * self.noise_strength

    def forward(self, x, w, noise_mode: str = 'random', fused_modconv: bool = True, gain: float = 1):
        in_size = self.resolution // self.up
        misc.assert_shape(x, [None, self.in_channels, in_size, in_size])
        styles = self.affine(w)
        noise = self._noise(x.shape[0], x.device, noise_mode)
        x = modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
            resample_filter=self.resample_filter, flip_weight=(self.up == 1), fused_modconv=fused_modconv)
        return bias_act.bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain,
            clamp=_clamp_limit(self.conv_clamp, gain))

    extra_repr = _repr_fields('in_channels', 'out_channels', 'w_dim', 'resolution', 'up', 'activation')

@persistence.persistent_class
class ToRGBLayer(torch.nn.Module):
    """Features -> image channels: a style-modulated 1x1 convolution without demodulation."""

    def __init__(self, in_channels: int, out_channels: int, *, w_dim: int, kernel_size: int = 1, conv_clamp=None,
            channels_last: bool = False):
        super().__init__()
        self.in_channels, self.out_channels, self.w_dim = in_channels, out_channels, w_dim
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size ** 2))
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(_conv_weight(out_channels, in_channels, kernel_size, channels_last))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x, w, fused_modconv: bool = True):
        # Without demodulation the equalized-lr gain has to be folded into the styles.
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act.bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)

    extra_repr = _repr_fields('in_channels', 'out_channels', 'w_dim')

@persistence.persistent_class
class SynthesisBlock(torch.nn.Module):
    """One synthesis resolution: learned constant (first block) or conv0 (up x2), then conv1; the incoming
    skip image is upsampled and the ToRGB output added. ws [N, num_conv + num_torgb, w_dim] are used in that
    order. `fused_modconv_default`: True, False or 'inference_only' (fused in eval mode)."""

    def __init__(self, in_channels: int, out_channels: int, *, w_dim: int, resolution: int, img_channels: int,
            is_last: bool, architecture: str = 'skip', resample_filter=[1, 3, 3, 1], conv_clamp=256,
            use_fp16: bool = False, fp16_channels_last: bool = False, fused_modconv_default=True, **layer_kwargs):
        _check_architecture('SynthesisBlock', architecture)
        super().__init__()
        self.in_channels, self.w_dim, self.resolution, self.img_channels = in_channels, w_dim, resolution, img_channels
        self.is_last, self.architecture = is_last, architecture
        self.use_fp16, self.channels_last = use_fp16, use_fp16 and fp16_channels_last
        self.fused_modconv_default = fused_modconv_default
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1 if self._has_torgb() else 0
        shared = dict(w_dim=w_dim, resolution=resolution, conv_clamp=conv_clamp, channels_last=self.channels_last)
        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=2, resample_filter=resample_filter, **shared,
                **layer_kwargs)
        self.conv1 = SynthesisLayer(out_channels, out_channels, **shared, **layer_kwargs)
        if self._has_torgb():
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp,
                channels_last=self.channels_last)
        if in_channels != 0 and architecture == 'resnet':
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                resample_filter=resample_filter, channels_last=self.channels_last)

    def _has_torgb(self):
        return self.is_last or self.architecture == 'skip'

    def _fused_modconv(self, requested):
        mode = self.fused_modconv_default if requested is None else requested
        return (not self.training) if mode == 'inference_only' else mode

    def _features(self, x, ws, layer_kwargs):
        if self.in_channels == 0:
            return self.conv1(x, next(ws), **layer_kwargs)
        if self.architecture != 'resnet':
            x = self.conv0(x, next(ws), **layer_kwargs)
            return self.conv1(x, next(ws), **layer_kwargs)
        shortcut = self.skip(x, gain=np.sqrt(0.5))
        x = self.conv0(x, next(ws), **layer_kwargs)
        x = self.conv1(x, next(ws), gain=np.sqrt(0.5), **layer_kwargs)
        return shortcut.add_(x)

    def forward(self, x, img, ws, force_fp32=False, fused_modconv=None, update_emas=False, **layer_kwargs):
        del update_emas # Part of the common block interface; nothing to update here.
        misc.assert_shape(ws, [None, self.num_conv + self.num_torgb, self.w_dim])
        dtype, layout = _block_format(use_fp16=self.use_fp16, channels_last=self.channels_last,
            force_fp32=force_fp32, device=ws.device)
        fused_modconv = self._fused_modconv(fused_modconv)
        in_size = self.resolution // 2
        if self.in_channels == 0:
            x = self.const.to(dtype=dtype, memory_format=layout).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
        else:
            misc.assert_shape(x, [None, self.in_channels, in_size, in_size])
            x = x.to(dtype=dtype, memory_format=layout)
        w_iter = iter(ws.unbind(dim=1))
        x = self._features(x, w_iter, dict(layer_kwargs, fused_modconv=fused_modconv))
        if img is not None:
            misc.assert_shape(img, [None, self.img_channels, in_size, in_size])
            img = upfirdn2d.upsample2d(img, self.resample_filter)
        if self._has_torgb():
            rgb = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            rgb = rgb.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            # img is a fresh upsampled tensor here, so adding in place is safe.
            img = rgb if img is None else img.add_(rgb)
        assert x.dtype == dtype and (img is None or img.dtype == torch.float32)
        return x, img

    extra_repr = _repr_fields('resolution', 'architecture')

@persistence.persistent_class
class SynthesisNetwork(torch.nn.Module):
    """SynthesisBlocks b4 ... b{img_resolution} with min(channel_base // res, channel_max) channels; returns the
    sum of their upsampled ToRGB outputs. The num_fp16_res highest resolutions may use float16 (CUDA only)."""

    def __init__(self, *, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
            channel_max: int = 512, num_fp16_res: int = 4, **block_kwargs):
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f'SynthesisNetwork: img_resolution must be a power of two >= 4, got {img_resolution}')
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.num_fp16_res = num_fp16_res
        self.block_resolutions = [4 << i for i in range(self.img_resolution_log2 - 1)]
        fp16_from = _lowest_fp16_resolution(self.img_resolution_log2, num_fp16_res)
        self.num_ws = in_channels = 0
        for res in self.block_resolutions:
            out_channels = _channels_at(res, channel_base, channel_max)
            block = SynthesisBlock(in_channels, out_channels, w_dim=w_dim, resolution=res, img_channels=img_channels,
                is_last=(res == img_resolution), use_fp16=(res >= fp16_from), **block_kwargs)
            self.add_module(f'b{res}', block)
            self.num_ws += block.num_conv
            in_channels = out_channels
        self.num_ws += block.num_torgb # Only the last ToRGB gets a w of its own (see forward).

    def forward(self, ws, **block_kwargs):
        misc.assert_shape(ws, [None, self.num_ws, self.w_dim])
        ws = ws.to(torch.float32)
        x, img, start = None, None, 0
        for res in self.block_resolutions:
            block = getattr(self, f'b{res}')
            block_ws = ws.narrow(1, start, block.num_conv + block.num_torgb)
            start += block.num_conv # A block's ToRGB shares its w with the next block's first layer.
            x, img = block(x, img, block_ws, **block_kwargs)
        return img

    extra_repr = _repr_fields('w_dim', 'num_ws', 'img_resolution', 'img_channels', 'num_fp16_res')

@persistence.persistent_class
class Generator(torch.nn.Module):
    """Mapping + synthesis. EG3D builds it as the tri-plane backbone (96 channels at 256x256)."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, *, img_resolution: int, img_channels: int,
            mapping_kwargs={}, **synthesis_kwargs):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        # The synthesis network comes first: it decides num_ws, and its weights are drawn first.
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
            **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs)

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False, **synthesis_kwargs):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
            update_emas=update_emas)
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)

#----------------------------------------------------------------------------
# Discriminator.

@persistence.persistent_class
class DiscriminatorBlock(torch.nn.Module):
    """One discriminator resolution, halving it: [fromrgb], conv0, conv1 (down x2), 'resnet' 1x1 skip.

    in_channels = 0 marks the first block, which reads the image. Layers count globally from first_layer_idx;
    those below freeze_layers are frozen (Freeze-D). `use_fp16` takes effect on CUDA only.
    """

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, *, resolution: int,
            img_channels: int, first_layer_idx: int, architecture: str = 'resnet', activation: str = 'lrelu',
            resample_filter=[1, 3, 3, 1], conv_clamp=None, use_fp16: bool = False, fp16_channels_last: bool = False,
            freeze_layers: int = 0):
        if in_channels not in (0, tmp_channels):
            raise ValueError(f'DiscriminatorBlock: in_channels must be 0 or {tmp_channels}, got {in_channels}')
        _check_architecture('DiscriminatorBlock', architecture)
        super().__init__()
        self.in_channels, self.resolution, self.img_channels = in_channels, resolution, img_channels
        self.first_layer_idx, self.architecture = first_layer_idx, architecture
        self.use_fp16, self.channels_last = use_fp16, use_fp16 and fp16_channels_last
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        layers = ['fromrgb'] * self._reads_image() + ['conv0', 'conv1'] + ['skip'] * (architecture == 'resnet')
        self.num_layers = len(layers)
        trainable = {name: first_layer_idx + pos >= freeze_layers for pos, name in enumerate(layers)}
        conv = dict(activation=activation, conv_clamp=conv_clamp, channels_last=self.channels_last)
        if self._reads_image():
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, trainable=trainable['fromrgb'],
                **conv)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, trainable=trainable['conv0'], **conv)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, down=2, trainable=trainable['conv1'],
            resample_filter=resample_filter, **conv)
        if architecture == 'resnet':
            self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                trainable=trainable['skip'], resample_filter=resample_filter, channels_last=self.channels_last)

    def _reads_image(self):
        return self.in_channels == 0 or self.architecture == 'skip'

    def forward(self, x, img, force_fp32=False):
        dtype, layout = _block_format(use_fp16=self.use_fp16, channels_last=self.channels_last,
            force_fp32=force_fp32, device=(img if x is None else x).device)
        if x is not None:
            misc.assert_shape(x, [None, self.in_channels, self.resolution, self.resolution])
            x = x.to(dtype=dtype, memory_format=layout)
        if self._reads_image():
            misc.assert_shape(img, [None, self.img_channels, self.resolution, self.resolution])
            img = img.to(dtype=dtype, memory_format=layout)
            from_image = self.fromrgb(img)
            x = from_image if x is None else x + from_image
            img = upfirdn2d.downsample2d(img, self.resample_filter) if self.architecture == 'skip' else None
        if self.architecture == 'resnet':
            # Both branches are scaled by sqrt(1/2) so that the sum keeps unit variance.
            shortcut = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv1(self.conv0(x), gain=np.sqrt(0.5))
            x = shortcut.add_(x)
        else:
            x = self.conv1(self.conv0(x))
        return x, img

    extra_repr = _repr_fields('resolution', 'architecture')

@persistence.persistent_class
class MinibatchStdLayer(torch.nn.Module):
    """Appends, as num_channels extra feature maps, the standard deviation of the features across a group."""

    def __init__(self, *, group_size, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x):
        batch, channels, height, width = x.shape
        group = batch if self.group_size is None else min(self.group_size, batch)
        if batch % group or channels % self.num_channels:
            raise ValueError(f'MinibatchStdLayer: batch {batch} must be divisible by the group size {group} '
                f'and channels {channels} by num_channels {self.num_channels}')
        # Sample n falls into subgroup n mod (batch / group): the groups are strided, not consecutive.
        grouped = x.reshape(group, -1, self.num_channels, channels // self.num_channels, height, width)
        centered = grouped - grouped.mean(dim=0)
        std = (centered.square().mean(dim=0) + 1e-8).sqrt() # [batch / group, F, C / F, H, W]
        stat = std.mean(dim=[2, 3, 4]).reshape(-1, self.num_channels, 1, 1)
        return torch.cat([x, stat.repeat(group, 1, height, width)], dim=1)

    extra_repr = _repr_fields('group_size', 'num_channels')

@persistence.persistent_class
class DiscriminatorEpilogue(torch.nn.Module):
    """The final 4x4 stage, always in float32: minibatch std, conv, fc, output (projected onto the label
    embedding `cmap` when cmap_dim > 0)."""

    def __init__(self, in_channels: int, *, cmap_dim: int, resolution: int, img_channels: int,
            architecture: str = 'resnet', mbstd_group_size=4, mbstd_num_channels: int = 1, activation: str = 'lrelu',
            conv_clamp=None):
        _check_architecture('DiscriminatorEpilogue', architecture)
        super().__init__()
        self.in_channels, self.cmap_dim, self.architecture = in_channels, cmap_dim, architecture
        self.resolution, self.img_channels = resolution, img_channels
        if architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = MinibatchStdLayer(group_size=mbstd_group_size, num_channels=mbstd_num_channels) \
            if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation,
            conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * (resolution ** 2), in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, cmap_dim if cmap_dim > 0 else 1)

    def forward(self, x, img, cmap, force_fp32=False):
        del force_fp32 # Accepted like the blocks'; this stage never uses float16.
        misc.assert_shape(x, [None, self.in_channels, self.resolution, self.resolution])
        x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        if self.architecture == 'skip':
            misc.assert_shape(img, [None, self.img_channels, self.resolution, self.resolution])
            x = x + self.fromrgb(img.to(dtype=torch.float32, memory_format=torch.contiguous_format))
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.out(self.fc(self.conv(x).flatten(1)))
        if self.cmap_dim == 0:
            return x
        misc.assert_shape(cmap, [None, self.cmap_dim])
        return (x * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))

    extra_repr = _repr_fields('resolution', 'architecture')

@persistence.persistent_class
class Discriminator(torch.nn.Module):
    """The StyleGAN2 discriminator: blocks b{img_resolution} ... b8, then the epilogue b4 (one logit per image,
    projected onto the embedded label when c_dim > 0). EG3D trains the variants in dual_discriminator.py."""

    def __init__(self, *, c_dim: int, img_resolution: int, img_channels: int, architecture: str = 'resnet',
            channel_base: int = 32768, channel_max: int = 512, num_fp16_res: int = 4, conv_clamp=256, cmap_dim=None,
            block_kwargs={}, mapping_kwargs={}, epilogue_kwargs={}):
        super().__init__()
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.block_resolutions = [img_resolution >> i for i in range(self.img_resolution_log2 - 2)]
        fp16_from = _lowest_fp16_resolution(self.img_resolution_log2, num_fp16_res)
        shared = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        layer_idx = 0
        for res in self.block_resolutions:
            tmp_channels = _channels_at(res, channel_base, channel_max)
            block = DiscriminatorBlock(0 if res == img_resolution else tmp_channels, tmp_channels,
                _channels_at(res // 2, channel_base, channel_max), resolution=res, first_layer_idx=layer_idx,
                use_fp16=(res >= fp16_from), **block_kwargs, **shared)
            self.add_module(f'b{res}', block)
            layer_idx += block.num_layers
        channels_4x4 = _channels_at(4, channel_base, channel_max)
        cmap_dim = 0 if c_dim == 0 else (channels_4x4 if cmap_dim is None else cmap_dim)
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None,
                **mapping_kwargs)
        self.b4 = DiscriminatorEpilogue(channels_4x4, cmap_dim=cmap_dim, resolution=4, **epilogue_kwargs, **shared)

    def forward(self, img, c, update_emas=False, **block_kwargs):
        del update_emas # Nothing to track.
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f'b{res}')(x, img, **block_kwargs)
        return self.b4(x, img, cmap)

    extra_repr = _repr_fields('c_dim', 'img_resolution', 'img_channels')
