"""Super-resolution modules of EG3D: two StyleGAN2 blocks that turn the raw neural rendering (3 colour +
29 more feature channels) into the final image, conditioned on the last w of the backbone.

All classes are persistent and built from keyword arguments by TriPlaneGenerator
(`rendering_kwargs['superresolution_module']`).
"""

# Only names listed in compat.md §9 are imported, and used with the meaning spec/networks.md gives them:
# snapshots embed this source, and the original EG3D executes it against its own networks_stylegan2.
import torch

from torch_utils import misc, persistence
from torch_utils.ops import upfirdn2d
from training.networks_stylegan2 import Conv2dLayer, SynthesisBlock, SynthesisLayer, ToRGBLayer

#----------------------------------------------------------------------------

@persistence.persistent_class
class SynthesisBlockNoUp(torch.nn.Module):
    """A SynthesisBlock (same constructor, members and pickled attributes) that stays at its input
    resolution: conv0 does not upsample and the incoming image is not upsampled before the ToRGB add.
    That add happens IN PLACE on the given image tensor, which official outputs depend on (see
    _HybridSuperresolution._refine)."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels, is_last,
            architecture='skip', resample_filter=[1, 3, 3, 1], conv_clamp=256, use_fp16=False,
            fp16_channels_last=False, fused_modconv_default=True, **layer_kwargs):
        assert architecture in ('orig', 'skip', 'resnet')
        super().__init__()
        self.resolution, self.w_dim = resolution, w_dim
        self.in_channels, self.img_channels = in_channels, img_channels
        self.architecture, self.is_last = architecture, is_last
        self.use_fp16, self.channels_last = use_fp16, (use_fp16 and fp16_channels_last)
        self.fused_modconv_default = fused_modconv_default
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter)) # Stored, never used.
        layer_kwargs = dict(w_dim=w_dim, resolution=resolution, conv_clamp=conv_clamp, channels_last=self.channels_last,
            **layer_kwargs)

        # Registration order fixes the init RNG order: const or conv0, conv1, torgb, skip.
        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, **layer_kwargs)
        self.conv1 = SynthesisLayer(out_channels, out_channels, **layer_kwargs)
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1 if (is_last or architecture == 'skip') else 0
        if self.num_torgb:
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp,
                channels_last=self.channels_last)
        if in_channels != 0 and architecture == 'resnet':
            # Registered with up=2 so that the parameters and pickled kwargs match; forward rejects 'resnet'.
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                resample_filter=resample_filter, channels_last=self.channels_last)

    def forward(self, x, img, ws, force_fp32=False, fused_modconv=None, update_emas=False, **layer_kwargs):
        del update_emas # Nothing to track.
        if self.architecture == 'resnet':
            raise ValueError('SynthesisBlockNoUp: architecture "resnet" cannot run (its skip layer upsamples)')
        misc.assert_shape(ws, [None, self.num_conv + self.num_torgb, self.w_dim])
        half = self.use_fp16 and not force_fp32 and ws.device.type == 'cuda' # fp16 only on CUDA.
        dtype = torch.float16 if half else torch.float32
        memory_format = torch.channels_last if (half and self.channels_last) else torch.contiguous_format
        if fused_modconv is None:
            fused_modconv = self.fused_modconv_default
        if fused_modconv == 'inference_only':
            fused_modconv = not self.training
        styles = list(ws.unbind(dim=1))
        layer_kwargs = dict(layer_kwargs, fused_modconv=fused_modconv)

        if self.in_channels == 0:
            x = self.const.to(dtype=dtype, memory_format=memory_format).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
        else:
            misc.assert_shape(x, [None, self.in_channels, self.resolution, self.resolution])
            x = self.conv0(x.to(dtype=dtype, memory_format=memory_format), styles.pop(0), **layer_kwargs)
        x = self.conv1(x, styles.pop(0), **layer_kwargs)
        if self.num_torgb:
            if img is not None:
                misc.assert_shape(img, [None, self.img_channels, self.resolution, self.resolution])
            y = self.torgb(x, styles.pop(0), fused_modconv=fused_modconv)
            y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = y if img is None else img.add_(y)
        return x, img

#----------------------------------------------------------------------------

class _HybridSuperresolution(torch.nn.Module):
    """Shared constructor and forward of the SuperresolutionHybrid* modules (not persistent by itself).
    Each subclass states its row of the layout table (networks.md §6) in these class attributes."""
    _img_resolution = None          # The only output resolution the class accepts.
    _input_resolution = None        # Resolution that block0 works at (stored as `input_resolution`).
    _block0_class = SynthesisBlock  # SynthesisBlockNoUp where block0 keeps the input resolution.
    _block_channels = (128, 64)     # Output channels of block0 and block1.
    _has_resample_filter = True     # An unused `resample_filter` buffer is part of the layout (not for 8XDC).
    _resize_smaller_only = False    # Resize only narrower inputs; otherwise any width but input_resolution.

    def __init__(self, channels, img_resolution, sr_num_fp16_res, sr_antialias,
            num_fp16_res=4, conv_clamp=None, channel_base=None, channel_max=None, **block_kwargs):
        del num_fp16_res, conv_clamp, channel_base, channel_max # Accepted for the generator's sr_kwargs, unused.
        super().__init__()
        self._build(channels, img_resolution, sr_num_fp16_res, block_kwargs)
        self.sr_antialias = sr_antialias

    def _build(self, channels, img_resolution, sr_num_fp16_res, block_kwargs):
        assert img_resolution == self._img_resolution
        self.input_resolution = self._input_resolution
        # fp16 blocks also clamp their activations, even when fp16 is unavailable (CPU).
        use_fp16 = sr_num_fp16_res > 0
        conv_clamp = 256 if use_fp16 else None
        mid_channels, out_channels = self._block_channels
        self.block0 = self._block0_class(channels, mid_channels, w_dim=512, resolution=img_resolution // 2,
            img_channels=3, is_last=False, use_fp16=use_fp16, conv_clamp=conv_clamp, **block_kwargs)
        self.block1 = SynthesisBlock(mid_channels, out_channels, w_dim=512, resolution=img_resolution, img_channels=3,
            is_last=True, use_fp16=use_fp16, conv_clamp=conv_clamp, **block_kwargs)
        if self._has_resample_filter:
            self.register_buffer('resample_filter', upfirdn2d.setup_filter([1, 3, 3, 1])) # Stored, never used.

    def forward(self, rgb, x, ws, **block_kwargs):
        return self._refine(rgb, x, ws, antialias=self.sr_antialias, **block_kwargs)

    def _refine(self, rgb, x, ws, antialias, **block_kwargs):
        misc.assert_shape(rgb, [None, 3, None, None])
        misc.assert_shape(x, [rgb.shape[0], None, rgb.shape[2], rgb.shape[3]])
        ws = ws[:, -1:, :].repeat(1, 3, 1) # Both blocks see only the last w, three times.
        width = x.shape[-1]
        resize = (width < self.input_resolution) if self._resize_smaller_only else (width != self.input_resolution)
        if resize:
            size = (self.input_resolution, self.input_resolution)
            x = torch.nn.functional.interpolate(x, size=size, mode='bilinear', align_corners=False, antialias=antialias)
            rgb = torch.nn.functional.interpolate(rgb, size=size, mode='bilinear', align_corners=False,
                antialias=antialias)
        elif isinstance(self.block0, SynthesisBlockNoUp):
            # rgb may be a view into x (it is in TriPlaneGenerator) and block0 adds into rgb in place, which
            # is reproduced on purpose (image_raw then includes block0's ToRGB output). Copy x so that the
            # in-place add cannot invalidate tensors that block0 saved for backward (CPU float32 training).
            x = x.clone()
        x, rgb = self.block0(x, rgb, ws, **block_kwargs)
        x, rgb = self.block1(x, rgb, ws, **block_kwargs)
        return rgb

#----------------------------------------------------------------------------

@persistence.persistent_class
class SuperresolutionHybrid2X(_HybridSuperresolution):
    """64 -> 128 (shapenet)."""
    _img_resolution, _input_resolution = 128, 64
    _block0_class = SynthesisBlockNoUp

#----------------------------------------------------------------------------

@persistence.persistent_class
class SuperresolutionHybrid4X(_HybridSuperresolution):
    """128 -> 256. Inputs above 128 are not resized (and then rejected by block0)."""
    _img_resolution, _input_resolution = 256, 128
    _block0_class = SynthesisBlockNoUp
    _resize_smaller_only = True

#----------------------------------------------------------------------------

@persistence.persistent_class
class SuperresolutionHybrid8X(_HybridSuperresolution):
    """128 -> 512."""
    _img_resolution, _input_resolution = 512, 128

#----------------------------------------------------------------------------

@persistence.persistent_class
class SuperresolutionHybrid8XDC(_HybridSuperresolution):
    """128 -> 512 with twice the channels of SuperresolutionHybrid8X (ffhq, afhq)."""
    _img_resolution, _input_resolution = 512, 128
    _block_channels = (256, 128)
    _has_resample_filter = False

#----------------------------------------------------------------------------

@persistence.persistent_class
class SuperresolutionHybridDeepfp32(_HybridSuperresolution):
    """Legacy 128 -> 256 module kept for old pickles; laid out as SuperresolutionHybrid4X. It has no
    `sr_antialias` argument, so the current TriPlaneGenerator cannot build it (the extra kwarg reaches
    SynthesisLayer and raises TypeError), and it resizes without antialiasing."""
    _img_resolution, _input_resolution = 256, 128
    _block0_class = SynthesisBlockNoUp
    _resize_smaller_only = True

    def __init__(self, channels, img_resolution, sr_num_fp16_res,
            num_fp16_res=4, conv_clamp=None, channel_base=None, channel_max=None, **block_kwargs):
        del num_fp16_res, conv_clamp, channel_base, channel_max # Accepted for the generator's sr_kwargs, unused.
        torch.nn.Module.__init__(self) # Not the base constructor: that one sets sr_antialias.
        self._build(channels, img_resolution, sr_num_fp16_res, block_kwargs)

    def forward(self, rgb, x, ws, **block_kwargs):
        return self._refine(rgb, x, ws, antialias=False, **block_kwargs)

#----------------------------------------------------------------------------
