"""EG3D generator: a StyleGAN2 backbone synthesizes three axis-aligned feature planes, a small MLP decodes
sampled plane features into density and colour features, a volume renderer integrates them into a
low-resolution feature image, and a super-resolution module produces the final image."""

# Only names listed in docs/compat.md ("Embedded sources") are imported: snapshots embed this source and
# the original EG3D executes it against its own modules. The renderer, ray sampler and decoder are pickled
# by reference, so they are driven only through the interfaces the original classes share with ours.
import torch

import dnnlib
from torch_utils import persistence
from training.networks_stylegan2 import FullyConnectedLayer
from training.networks_stylegan2 import Generator as StyleGAN2Backbone
from training.volumetric_rendering.ray_sampler import RaySampler
from training.volumetric_rendering.renderer import ImportanceRenderer

PLANE_COUNT = 3             # Axis-aligned feature planes.
PLANE_CHANNELS = 32         # Features per plane (also the decoder input and the raw feature image depth).
PLANE_RESOLUTION = 256      # Backbone output resolution.
DECODER_HIDDEN = 64         # Width of the decoder's hidden layer.
RGB_MARGIN = 0.001          # Decoded colours span [-margin, 1 + margin] so that 0 and 1 are reachable.

#----------------------------------------------------------------------------

def split_planes(backbone_output):
    """[N, PLANE_COUNT * PLANE_CHANNELS, H, W] -> [N, PLANE_COUNT, PLANE_CHANNELS, H, W] (a view)."""
    return backbone_output.view(backbone_output.shape[0], PLANE_COUNT, PLANE_CHANNELS, *backbone_output.shape[-2:])

#----------------------------------------------------------------------------

@persistence.persistent_class
class TriPlaneGenerator(torch.nn.Module):
    def __init__(self, z_dim, c_dim, w_dim,
            img_resolution,             # Output (super-resolved) resolution.
            img_channels,
            sr_num_fp16_res=0,          # > 0: super-resolution blocks use fp16 (CUDA) and clamp at 256.
            mapping_kwargs={},
            rendering_kwargs={},        # Must contain 'superresolution_module' and 'sr_antialias'.
            sr_kwargs={},
            **synthesis_kwargs):        # Backbone options (channel_base, channel_max, num_fp16_res, ...).
        super().__init__()
        # Children in this order: it fixes the state-dict layout and the init RNG order.
        self.renderer = ImportanceRenderer()
        self.ray_sampler = RaySampler()
        self.backbone = StyleGAN2Backbone(z_dim, c_dim, w_dim, img_resolution=PLANE_RESOLUTION,
            img_channels=PLANE_COUNT * PLANE_CHANNELS, mapping_kwargs=mapping_kwargs, **synthesis_kwargs)
        self.superresolution = dnnlib.util.construct_class_by_name(
            class_name=rendering_kwargs['superresolution_module'], channels=PLANE_CHANNELS,
            img_resolution=img_resolution, sr_num_fp16_res=sr_num_fp16_res,
            sr_antialias=rendering_kwargs['sr_antialias'], **sr_kwargs)
        decoder_options = dict(decoder_lr_mul=rendering_kwargs.get('decoder_lr_mul', 1),
            decoder_output_dim=PLANE_CHANNELS)
        self.decoder = OSGDecoder(PLANE_CHANNELS, decoder_options)

        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.neural_rendering_resolution = 64   # Updated by every synthesis() call that names one.
        self.rendering_kwargs = rendering_kwargs # The caller's dict itself: later edits reach the generator.
        self._last_planes = None                # Backbone output kept by synthesis(cache_backbone=True).

    def mapping(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        options = self.rendering_kwargs
        label = torch.zeros_like(c) if options['c_gen_conditioning_zero'] else c
        # Without 'c_scale' the label is multiplied by 0, i.e. ignored.
        return self.backbone.mapping(z, label * options.get('c_scale', 0), truncation_psi=truncation_psi,
            truncation_cutoff=truncation_cutoff, update_emas=update_emas)

    def synthesis(self, ws, c, neural_rendering_resolution=None, update_emas=False, cache_backbone=False,
            use_cached_backbone=False, **synthesis_kwargs):
        if neural_rendering_resolution is not None:
            self.neural_rendering_resolution = neural_rendering_resolution # Sticky for later calls.
        # The cache holds the backbone output as produced ([N, 96, H, W]), as pickles carry it.
        planes = self._last_planes if use_cached_backbone else None
        if planes is None:
            planes = self.backbone.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)
        if cache_backbone:
            self._last_planes = planes
        return self.render_planes(planes, ws, c, neural_rendering_resolution=self.neural_rendering_resolution,
            **synthesis_kwargs)

    def render_planes(self, planes, ws, c, neural_rendering_resolution=None, super_resolution=True,
            rendering_overrides=None, **synthesis_kwargs):
        """The rendering half of synthesis(): images of given backbone output `planes` [N, 96, H, W] with
        latents `ws` [N, num_ws, w_dim] seen from cameras `c` [N, 25], for callers that keep planes.

        The resolution applies to this call only (default: the sticky one). super_resolution=False leaves out
        'image' and the SR module's cost. rendering_overrides replace entries of rendering_kwargs for this call.
        """
        batch = c.shape[0]
        assert c.ndim == 2 and c.shape[1] == 25, f'c must be [N, 25], got {list(c.shape)}'
        assert planes.ndim == 4 and planes.shape[1] == PLANE_COUNT * PLANE_CHANNELS, \
            f'planes must be [N, {PLANE_COUNT * PLANE_CHANNELS}, H, W], got {list(planes.shape)}'
        res = self.neural_rendering_resolution if neural_rendering_resolution is None else neural_rendering_resolution
        options = self.rendering_kwargs if rendering_overrides is None else {**self.rendering_kwargs,
            **rendering_overrides}
        cam2world, intrinsics = c[:, :16].reshape(batch, 4, 4), c[:, 16:25].reshape(batch, 3, 3)
        ray_origins, ray_directions = self.ray_sampler(cam2world, intrinsics, res)
        features, depth, _ = self.renderer(split_planes(planes), self.decoder, ray_origins, ray_directions, options)
        # Rays are in row-major pixel order: [N, res*res, C] -> [N, C, res, res].
        feature_image = features.transpose(1, 2).reshape(batch, -1, res, res).contiguous()
        depth_image = depth.transpose(1, 2).reshape(batch, 1, res, res)
        # A view of feature_image: SR modules whose first block keeps the resolution add into it in place.
        rgb_image = feature_image[:, :3]
        out = {}
        if super_resolution:
            sr_kwargs = dict(synthesis_kwargs)
            sr_kwargs['noise_mode'] = options['superresolution_noise_mode']
            out['image'] = self.superresolution(rgb_image, feature_image, ws, **sr_kwargs)
        out.update(image_raw=rgb_image, image_depth=depth_image)
        return out

    def sample(self, coordinates, directions, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False,
            **synthesis_kwargs):
        """Raw decoder outputs ('rgb' [N,M,32], 'sigma' [N,M,1]) at arbitrary points, for shape extraction."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
            update_emas=update_emas)
        return self.sample_mixed(coordinates, directions, ws, update_emas=update_emas, **synthesis_kwargs)

    def sample_mixed(self, coordinates, directions, ws, truncation_psi=1, truncation_cutoff=None, update_emas=False,
            **synthesis_kwargs):
        """As sample(), from given ws (the truncation arguments are accepted and ignored)."""
        del truncation_psi, truncation_cutoff
        planes = split_planes(self.backbone.synthesis(ws, update_emas=update_emas, **synthesis_kwargs))
        return self.renderer.run_model(planes, self.decoder, coordinates, directions, self.rendering_kwargs)

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, neural_rendering_resolution=None,
            update_emas=False, cache_backbone=False, use_cached_backbone=False, **synthesis_kwargs):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
            update_emas=update_emas)
        return self.synthesis(ws, c, neural_rendering_resolution=neural_rendering_resolution,
            update_emas=update_emas, cache_backbone=cache_backbone, use_cached_backbone=use_cached_backbone,
            **synthesis_kwargs)

#----------------------------------------------------------------------------

class OSGDecoder(torch.nn.Module):
    """Tri-plane feature decoder: averages the plane samples and maps them through a one-hidden-layer MLP
    to a raw density and colour features in [-RGB_MARGIN, 1 + RGB_MARGIN]. Not persistent (pickled by
    reference), so forward() reads only `net`."""

    def __init__(self, n_features, options):
        super().__init__()
        self.hidden_dim = DECODER_HIDDEN
        lr_multiplier = options['decoder_lr_mul']
        self.net = torch.nn.Sequential(
            FullyConnectedLayer(n_features, self.hidden_dim, lr_multiplier=lr_multiplier),
            torch.nn.Softplus(),
            FullyConnectedLayer(self.hidden_dim, 1 + options['decoder_output_dim'], lr_multiplier=lr_multiplier))

    def forward(self, sampled_features, ray_directions):
        del ray_directions # View-independent.
        points = sampled_features.mean(dim=1) # [N, planes, M, C] -> [N, M, C]
        out = self.net(points.flatten(0, 1)).unflatten(0, points.shape[:2])
        sigma, features = out.split([1, out.shape[-1] - 1], dim=-1)
        return {'rgb': torch.sigmoid(features) * (1 + 2 * RGB_MARGIN) - RGB_MARGIN, 'sigma': sigma}

#----------------------------------------------------------------------------
