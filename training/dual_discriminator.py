"""EG3D discriminators. DualDiscriminator sees the super-resolved image and the upsampled raw rendering
stacked on the channel axis (6 channels), conditioned on the camera label through the projection in
the epilogue."""

# The import list mirrors the official module's (compat.md §9); some names are unused here.
import numpy as np  # noqa: F401
import torch

from torch_utils import persistence
from torch_utils.ops import upfirdn2d
from training.networks_stylegan2 import DiscriminatorBlock, DiscriminatorEpilogue, MappingNetwork

#----------------------------------------------------------------------------

def filtered_resizing(image_orig_tensor, size, f, filter_mode='antialiased'):
    """Resize [N, C, H, W] images to size x size.

    filter_mode: 'antialiased' (bilinear with antialiasing), 'none' (plain bilinear), 'classic' (FIR
    upsample x2, bilinear to 2*size+2, FIR downsample x2 with f), or a float a in (0, 1) blending
    (1-a) * plain + a * antialiased.
    """
    def bilinear(x, out_size, antialias):
        return torch.nn.functional.interpolate(x, size=(out_size, out_size), mode='bilinear', align_corners=False,
            antialias=antialias)

    if isinstance(filter_mode, str) and filter_mode == 'antialiased':
        return bilinear(image_orig_tensor, size, antialias=True)
    if isinstance(filter_mode, str) and filter_mode == 'none':
        return bilinear(image_orig_tensor, size, antialias=False)
    if isinstance(filter_mode, str) and filter_mode == 'classic':
        x = upfirdn2d.upsample2d(image_orig_tensor, f, up=2)
        x = bilinear(x, size * 2 + 2, antialias=False)
        return upfirdn2d.downsample2d(x, f, down=2, flip_filter=True, padding=-1)
    if isinstance(filter_mode, float) and 0 < filter_mode < 1:
        aliased = bilinear(image_orig_tensor, size, antialias=False)
        filtered = bilinear(image_orig_tensor, size, antialias=True)
        return (1 - filter_mode) * aliased + filter_mode * filtered
    raise ValueError(f"filtered_resizing: unknown filter_mode {filter_mode!r} "
        "(expected 'antialiased', 'none', 'classic' or a float in (0, 1))")

#----------------------------------------------------------------------------
# Shared by the three discriminators below: they differ only in how the input image is assembled.

def build_discriminator_trunk(module, c_dim, img_resolution, img_channels, architecture, channel_base, channel_max,
        num_fp16_res, conv_clamp, cmap_dim, block_kwargs, mapping_kwargs, epilogue_kwargs):
    """Registers blocks b{img_resolution}..b8, the label `mapping` and the `b4` epilogue on `module`."""
    module.c_dim = c_dim
    module.img_resolution = img_resolution
    module.img_resolution_log2 = int(np.log2(img_resolution))
    module.img_channels = img_channels
    module.block_resolutions = [2 ** i for i in range(module.img_resolution_log2, 2, -1)]
    channels = {res: min(channel_base // res, channel_max) for res in module.block_resolutions + [4]}
    fp16_resolution = max(2 ** (module.img_resolution_log2 + 1 - num_fp16_res), 8)
    if cmap_dim is None:
        cmap_dim = channels[4]
    if c_dim == 0:
        cmap_dim = 0

    common_kwargs = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
    layer_idx = 0
    for res in module.block_resolutions:
        in_channels = channels[res] if res < img_resolution else 0
        block = DiscriminatorBlock(in_channels, channels[res], channels[res // 2], resolution=res,
            first_layer_idx=layer_idx, use_fp16=(res >= fp16_resolution), **block_kwargs, **common_kwargs)
        setattr(module, f'b{res}', block)
        layer_idx += block.num_layers
    if c_dim > 0:
        module.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None,
            **mapping_kwargs)
    module.b4 = DiscriminatorEpilogue(channels[4], cmap_dim=cmap_dim, resolution=4, **epilogue_kwargs,
        **common_kwargs)


def run_discriminator_trunk(module, img, c, **block_kwargs):
    """Runs the blocks of build_discriminator_trunk on an assembled image; returns logits [N, 1]."""
    x = None
    for res in module.block_resolutions:
        x, img = getattr(module, f'b{res}')(x, img, **block_kwargs)
    cmap = module.mapping(None, c) if module.c_dim > 0 else None
    return module.b4(x, img, cmap)

#----------------------------------------------------------------------------

@persistence.persistent_class
class DualDiscriminator(torch.nn.Module):
    def __init__(self,
        c_dim,                          # Camera label dimensionality (25).
        img_resolution,
        img_channels,                   # Per image; the network sees twice as many.
        architecture        = 'resnet',
        channel_base        = 32768,
        channel_max         = 512,
        num_fp16_res        = 4,
        conv_clamp          = 256,
        cmap_dim            = None,
        disc_c_noise        = 0,        # Relative strength of noise added to c (in place!).
        block_kwargs        = {},
        mapping_kwargs      = {},
        epilogue_kwargs     = {},
    ):
        super().__init__()
        build_discriminator_trunk(self, c_dim=c_dim, img_resolution=img_resolution, img_channels=img_channels * 2,
            architecture=architecture, channel_base=channel_base, channel_max=channel_max, num_fp16_res=num_fp16_res,
            conv_clamp=conv_clamp, cmap_dim=cmap_dim, block_kwargs=block_kwargs, mapping_kwargs=mapping_kwargs,
            epilogue_kwargs=epilogue_kwargs)
        self.register_buffer('resample_filter', upfirdn2d.setup_filter([1, 3, 3, 1]))
        self.disc_c_noise = disc_c_noise

    def forward(self, img, c, update_emas=False, **block_kwargs):
        del update_emas # Nothing to track.
        image_raw = filtered_resizing(img['image_raw'], size=img['image'].shape[-1], f=self.resample_filter)
        x = torch.cat([img['image'], image_raw], dim=1)
        if self.c_dim > 0 and self.disc_c_noise > 0:
            # Modifies the caller's label tensor, as the official code does.
            c += torch.randn_like(c) * c.std(0) * self.disc_c_noise
        return run_discriminator_trunk(self, x, c, **block_kwargs)

    def extra_repr(self):
        return f'c_dim={self.c_dim:d}, img_resolution={self.img_resolution:d}, img_channels={self.img_channels:d}'

#----------------------------------------------------------------------------

@persistence.persistent_class
class SingleDiscriminator(torch.nn.Module):
    """Discriminator on the final image only (img['image'])."""

    def __init__(self,
        c_dim,
        img_resolution,
        img_channels,
        architecture        = 'resnet',
        channel_base        = 32768,
        channel_max         = 512,
        num_fp16_res        = 4,
        conv_clamp          = 256,
        cmap_dim            = None,
        sr_upsample_factor  = 1,        # Accepted for config compatibility, unused.
        block_kwargs        = {},
        mapping_kwargs      = {},
        epilogue_kwargs     = {},
    ):
        del sr_upsample_factor
        super().__init__()
        build_discriminator_trunk(self, c_dim=c_dim, img_resolution=img_resolution, img_channels=img_channels,
            architecture=architecture, channel_base=channel_base, channel_max=channel_max, num_fp16_res=num_fp16_res,
            conv_clamp=conv_clamp, cmap_dim=cmap_dim, block_kwargs=block_kwargs, mapping_kwargs=mapping_kwargs,
            epilogue_kwargs=epilogue_kwargs)

    def forward(self, img, c, update_emas=False, **block_kwargs):
        del update_emas # Nothing to track.
        return run_discriminator_trunk(self, img['image'], c, **block_kwargs)

    def extra_repr(self):
        return f'c_dim={self.c_dim:d}, img_resolution={self.img_resolution:d}, img_channels={self.img_channels:d}'

#----------------------------------------------------------------------------

@persistence.persistent_class
class DummyDualDiscriminator(torch.nn.Module):
    """DualDiscriminator whose raw-image half fades out linearly over 500k images (32 per call)."""

    def __init__(self,
        c_dim,
        img_resolution,
        img_channels,
        architecture        = 'resnet',
        channel_base        = 32768,
        channel_max         = 512,
        num_fp16_res        = 4,
        conv_clamp          = 256,
        cmap_dim            = None,
        block_kwargs        = {},
        mapping_kwargs      = {},
        epilogue_kwargs     = {},
    ):
        super().__init__()
        build_discriminator_trunk(self, c_dim=c_dim, img_resolution=img_resolution, img_channels=img_channels * 2,
            architecture=architecture, channel_base=channel_base, channel_max=channel_max, num_fp16_res=num_fp16_res,
            conv_clamp=conv_clamp, cmap_dim=cmap_dim, block_kwargs=block_kwargs, mapping_kwargs=mapping_kwargs,
            epilogue_kwargs=epilogue_kwargs)
        self.register_buffer('resample_filter', upfirdn2d.setup_filter([1, 3, 3, 1]))
        self.raw_fade = 1

    def forward(self, img, c, update_emas=False, **block_kwargs):
        del update_emas # Nothing to track.
        self.raw_fade = max(0, self.raw_fade - 1 / (500000 / 32))
        image_raw = filtered_resizing(img['image_raw'], size=img['image'].shape[-1], f=self.resample_filter)
        x = torch.cat([img['image'], image_raw * self.raw_fade], dim=1)
        return run_discriminator_trunk(self, x, c, **block_kwargs)

    def extra_repr(self):
        return f'c_dim={self.c_dim:d}, img_resolution={self.img_resolution:d}, img_channels={self.img_channels:d}'

#----------------------------------------------------------------------------
