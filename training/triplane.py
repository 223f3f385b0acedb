"""EG3D generator: a StyleGAN2 backbone synthesizes three axis-aligned feature planes, a small MLP decodes
sampled plane features into density and colour features, a volume renderer integrates them into a
low-resolution feature image, and a super-resolution module produces the final image."""

import torch

import dnnlib
from torch_utils import persistence
from training.networks_stylegan2 import FullyConnectedLayer
from training.networks_stylegan2 import Generator as StyleGAN2Backbone
from training.volumetric_rendering.ray_sampler import RaySampler
from training.volumetric_rendering.renderer import ImportanceRenderer

#----------------------------------------------------------------------------

@persistence.persistent_class
class TriPlaneGenerator(torch.nn.Module):
    def __init__(self,
        z_dim,                      # Latent dimensionality.
        c_dim,                      # Camera label dimensionality (25).
        w_dim,                      # Intermediate latent dimensionality.
        img_resolution,             # Output (super-resolved) resolution.
        img_channels,               # Output colour channels.
        sr_num_fp16_res     = 0,    # > 0: super-resolution blocks use fp16 (CUDA) and clamp at 256.
        mapping_kwargs      = {},
        rendering_kwargs    = {},   # Must contain 'superresolution_module' and 'sr_antialias'.
        sr_kwargs           = {},
        **synthesis_kwargs,         # Backbone options (channel_base, channel_max, num_fp16_res, ...).
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.renderer = ImportanceRenderer()
        self.ray_sampler = RaySampler()
        self.backbone = StyleGAN2Backbone(z_dim, c_dim, w_dim, img_resolution=256, img_channels=32 * 3,
            mapping_kwargs=mapping_kwargs, **synthesis_kwargs)
        self.superresolution = dnnlib.util.construct_class_by_name(class_name=rendering_kwargs['superresolution_module'],
            channels=32, img_resolution=img_resolution, sr_num_fp16_res=sr_num_fp16_res,
            sr_antialias=rendering_kwargs['sr_antialias'], **sr_kwargs)
        self.decoder = OSGDecoder(32, {'decoder_lr_mul': rendering_kwargs.get('decoder_lr_mul', 1),
            'decoder_output_dim': 32})
        self.neural_rendering_resolution = 64
        self.rendering_kwargs = rendering_kwargs # Kept by reference, as the official generator does.
        self._last_planes = None

    def mapping(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        if self.rendering_kwargs['c_gen_conditioning_zero']:
            c = torch.zeros_like(c)
        # A missing 'c_scale' means 0 (the label is ignored), as in the official code.
        return self.backbone.mapping(z, c * self.rendering_kwargs.get('c_scale', 0), truncation_psi=truncation_psi,
            truncation_cutoff=truncation_cutoff, update_emas=update_emas)

    def synthesis(self, ws, c, neural_rendering_resolution=None, update_emas=False, cache_backbone=False,
            use_cached_backbone=False, **synthesis_kwargs):
        cam2world_matrix = c[:, :16].reshape(-1, 4, 4)
        intrinsics = c[:, 16:25].reshape(-1, 3, 3)
        # A given resolution is remembered on the module and used by later calls that pass None.
        if neural_rendering_resolution is None:
            neural_rendering_resolution = self.neural_rendering_resolution
        else:
            self.neural_rendering_resolution = neural_rendering_resolution
        ray_origins, ray_directions = self.ray_sampler(cam2world_matrix, intrinsics, neural_rendering_resolution)
        N = ray_origins.shape[0]

        if use_cached_backbone and self._last_planes is not None:
            planes = self._last_planes
        else:
            planes = self.backbone.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)
        if cache_backbone:
            self._last_planes = planes
        planes = planes.view(len(planes), 3, 32, planes.shape[-2], planes.shape[-1])

        feature_samples, depth_samples, _weights_sum = self.renderer(planes, self.decoder, ray_origins, ray_directions,
            self.rendering_kwargs)

        H = W = neural_rendering_resolution
        feature_image = feature_samples.permute(0, 2, 1).reshape(N, feature_samples.shape[-1], H, W).contiguous()
        depth_image = depth_samples.permute(0, 2, 1).reshape(N, 1, H, W)
        # A view: SR modules with a same-resolution first block add into it in place (see superresolution.py).
        rgb_image = feature_image[:, :3]
        sr_kwargs = {k: v for k, v in synthesis_kwargs.items() if k != 'noise_mode'}
        sr_image = self.superresolution(rgb_image, feature_image, ws,
            noise_mode=self.rendering_kwargs['superresolution_noise_mode'], **sr_kwargs)
        return {'image': sr_image, 'image_raw': rgb_image, 'image_depth': depth_image}

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
        planes = self.backbone.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)
        planes = planes.view(len(planes), 3, 32, planes.shape[-2], planes.shape[-1])
        return self.renderer.run_model(planes, self.decoder, coordinates, directions, self.rendering_kwargs)

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, neural_rendering_resolution=None,
            update_emas=False, cache_backbone=False, use_cached_backbone=False, **synthesis_kwargs):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
            update_emas=update_emas)
        return self.synthesis(ws, c, update_emas=update_emas, neural_rendering_resolution=neural_rendering_resolution,
            cache_backbone=cache_backbone, use_cached_backbone=use_cached_backbone, **synthesis_kwargs)

#----------------------------------------------------------------------------

class OSGDecoder(torch.nn.Module):
    """Tri-plane feature decoder: averages the three plane samples and maps them through a one-hidden-layer
    MLP to a raw density and 32 sigmoid-bounded colour features. Not persistent (pickled by reference)."""

    def __init__(self, n_features, options):
        super().__init__()
        self.hidden_dim = 64
        self.net = torch.nn.Sequential(
            FullyConnectedLayer(n_features, self.hidden_dim, lr_multiplier=options['decoder_lr_mul']),
            torch.nn.Softplus(),
            FullyConnectedLayer(self.hidden_dim, 1 + options['decoder_output_dim'],
                lr_multiplier=options['decoder_lr_mul']),
        )

    def forward(self, sampled_features, ray_directions):
        del ray_directions # View-independent decoder.
        x = sampled_features.mean(1) # [N, 3, M, C] -> [N, M, C]
        N, M, C = x.shape
        x = self.net(x.reshape(N * M, C)).reshape(N, M, -1)
        rgb = torch.sigmoid(x[..., 1:]) * (1 + 2 * 0.001) - 0.001 # Slightly widened so 0 and 1 are reachable.
        sigma = x[..., 0:1]
        return {'rgb': rgb, 'sigma': sigma}

#----------------------------------------------------------------------------
