"""EG3D discriminators. DualDiscriminator sees the super-resolved image and the upsampled raw rendering
stacked on the channel axis (6 channels), conditioned on the camera label through the projection in
the epilogue."""

# Only names listed in compat.md §9 are imported: snapshots embed this source, and the original EG3D
# executes it against its own training.networks_stylegan2.
import numpy as np
import torch

from torch_utils import persistence
from torch_utils.ops import upfirdn2d
from training.networks_stylegan2 import DiscriminatorBlock, DiscriminatorEpilogue, MappingNetwork

#----------------------------------------------------------------------------

def _bilinear(x, size, antialias):
    return torch.nn.functional.interpolate(x, size=(size, size), mode='bilinear', align_corners=False,
        antialias=antialias)

def _fir_resize(x, size, f):
    """Classic resize: FIR x2 upsampling, plain bilinear to 2*size+2, FIR x2 downsampling cropping one pixel."""
    x = upfirdn2d.upsample2d(x, f, up=2)
    x = _bilinear(x, 2 * size + 2, antialias=False)
    return upfirdn2d.downsample2d(x, f, down=2, flip_filter=True, padding=-1)

def filtered_resizing(image_orig_tensor, size, f, filter_mode='antialiased'):
    """Resize [N, C, H, W] images to size x size.

    filter_mode: 'antialiased' (bilinear with antialiasing), 'none' (plain bilinear), 'classic' (FIR
    upsample x2, bilinear to 2*size+2, FIR downsample x2 with f), or a float a in (0, 1) blending
    (1-a) * plain + a * antialiased.
    """
    if isinstance(filter_mode, str):
        if filter_mode == 'classic':
            return _fir_resize(image_orig_tensor, size, f)
        if filter_mode in ('antialiased', 'none'):
            return _bilinear(image_orig_tensor, size, antialias=(filter_mode == 'antialiased'))
    elif isinstance(filter_mode, float) and 0 < filter_mode < 1:
        sharp = _bilinear(image_orig_tensor, size, antialias=False)
        smooth = _bilinear(image_orig_tensor, size, antialias=True)
        return (1 - filter_mode) * sharp + filter_mode * smooth
    raise ValueError(f"filtered_resizing: unknown filter_mode {filter_mode!r} "
        "(expected 'antialiased', 'none', 'classic' or a float in (0, 1))")

#----------------------------------------------------------------------------

class _ConditionalTrunk(torch.nn.Module):
    """Block pyramid b{img_resolution}..b8, label embedding `mapping` and projection epilogue `b4`, shared by
    the discriminators below (not persistent by itself; its subclasses are)."""

    def _build_trunk(self, c_dim, img_resolution, img_channels, architecture, channel_base, channel_max,
            num_fp16_res, conv_clamp, cmap_dim, block_kwargs, mapping_kwargs, epilogue_kwargs):
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2 ** k for k in range(self.img_resolution_log2, 2, -1)]

        def width(res):
            return min(channel_base // res, channel_max)
        if c_dim == 0:
            cmap_dim = 0
        elif cmap_dim is None:
            cmap_dim = width(4)
        shared = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        lowest_fp16_res = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)

        # Registration order (blocks from the top, then mapping, then epilogue) fixes the init RNG order.
        next_layer = 0
        for res in self.block_resolutions:
            tmp_channels = width(res)
            block = DiscriminatorBlock(tmp_channels if res < img_resolution else 0, tmp_channels, width(res // 2),
                resolution=res, first_layer_idx=next_layer, use_fp16=(res >= lowest_fp16_res), **block_kwargs,
                **shared)
            self.add_module(f'b{res}', block)
            next_layer += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None,
                **mapping_kwargs)
        self.b4 = DiscriminatorEpilogue(width(4), cmap_dim=cmap_dim, resolution=4, **epilogue_kwargs, **shared)

    def _score(self, img, c, **block_kwargs):
        """Logits [N, 1] for an assembled [N, img_channels, R, R] input."""
        features = None
        for res in self.block_resolutions:
            features, img = getattr(self, f'b{res}')(features, img, **block_kwargs)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(features, img, cmap)

    def _with_raw(self, img, raw_weight=None):
        """The final image and the raw rendering resized to its resolution (optionally scaled), stacked."""
        raw = filtered_resizing(img['image_raw'], size=img['image'].shape[-1], f=self.resample_filter)
        if raw_weight is not None:
            raw = raw * raw_weight
        return torch.cat([img['image'], raw], dim=1)

    def extra_repr(self):
        return f'c_dim={self.c_dim:d}, img_resolution={self.img_resolution:d}, img_channels={self.img_channels:d}'

#----------------------------------------------------------------------------

@persistence.persistent_class
class DualDiscriminator(_ConditionalTrunk):
    def __init__(self, c_dim, img_resolution, img_channels, architecture='resnet', channel_base=32768,
            channel_max=512, num_fp16_res=4, conv_clamp=256, cmap_dim=None,
            disc_c_noise=0,     # Relative std of the noise added to the label (in place) before embedding.
            block_kwargs={}, mapping_kwargs={}, epilogue_kwargs={}):
        super().__init__()
        # img_channels counts one image; the network sees the image and the raw rendering.
        self._build_trunk(c_dim, img_resolution, img_channels * 2, architecture, channel_base, channel_max,
            num_fp16_res, conv_clamp, cmap_dim, block_kwargs, mapping_kwargs, epilogue_kwargs)
        self.register_buffer('resample_filter', upfirdn2d.setup_filter([1, 3, 3, 1]))
        self.disc_c_noise = disc_c_noise

    def forward(self, img, c, update_emas=False, **block_kwargs):
        del update_emas # Nothing to track.
        x = self._with_raw(img)
        if self.disc_c_noise > 0 and self.c_dim > 0:
            # In place: the caller's label tensor carries the noise afterwards (kept for pickle parity).
            c += torch.randn_like(c) * c.std(0) * self.disc_c_noise
        return self._score(x, c, **block_kwargs)

#----------------------------------------------------------------------------

@persistence.persistent_class
class SingleDiscriminator(_ConditionalTrunk):
    """Discriminator on the final image only (img['image'])."""

    def __init__(self, c_dim, img_resolution, img_channels, architecture='resnet', channel_base=32768,
            channel_max=512, num_fp16_res=4, conv_clamp=256, cmap_dim=None,
            sr_upsample_factor=1,   # Accepted for config compatibility, unused.
            block_kwargs={}, mapping_kwargs={}, epilogue_kwargs={}):
        del sr_upsample_factor
        super().__init__()
        self._build_trunk(c_dim, img_resolution, img_channels, architecture, channel_base, channel_max,
            num_fp16_res, conv_clamp, cmap_dim, block_kwargs, mapping_kwargs, epilogue_kwargs)

    def forward(self, img, c, update_emas=False, **block_kwargs):
        del update_emas # Nothing to track.
        return self._score(img['image'], c, **block_kwargs)

#----------------------------------------------------------------------------

RAW_FADE_IMAGES = 500000    # DummyDualDiscriminator: images until the raw half is faded out ...
RAW_FADE_BATCH = 32         # ... assuming this many images per forward call.

@persistence.persistent_class
class DummyDualDiscriminator(_ConditionalTrunk):
    """DualDiscriminator whose raw-image half fades out linearly over 500k images (32 per call)."""

    def __init__(self, c_dim, img_resolution, img_channels, architecture='resnet', channel_base=32768,
            channel_max=512, num_fp16_res=4, conv_clamp=256, cmap_dim=None,
            block_kwargs={}, mapping_kwargs={}, epilogue_kwargs={}):
        super().__init__()
        self._build_trunk(c_dim, img_resolution, img_channels * 2, architecture, channel_base, channel_max,
            num_fp16_res, conv_clamp, cmap_dim, block_kwargs, mapping_kwargs, epilogue_kwargs)
        self.register_buffer('resample_filter', upfirdn2d.setup_filter([1, 3, 3, 1]))
        self.raw_fade = 1

    def forward(self, img, c, update_emas=False, **block_kwargs):
        del update_emas # Nothing to track.
        self.raw_fade = max(0, self.raw_fade - RAW_FADE_BATCH / RAW_FADE_IMAGES)
        return self._score(self._with_raw(img, raw_weight=self.raw_fade), c, **block_kwargs)

#----------------------------------------------------------------------------
