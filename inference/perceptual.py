"""Perceptual image distance from the VGG16 LPIPS feature network used by the StyleGAN projectors.

The detector is a TorchScript file fetched and cached like the metrics' detectors (metrics/metric_utils.py):
a URL cached by dnnlib, or a file of the same name in $EG3D_DETECTOR_DIR on offline machines. It is called as
`detector(images, resize_images=False, return_lpips=True)` on [N, 3, H, W] images in [0, 255] and returns
[N, F] unit-normalised, channel-weighted features; the squared Euclidean distance between two images' features
is their LPIPS distance.
"""

import torch

from metrics import metric_utils

VGG16_URL = 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt'

# What PerceptualDistance() raises when the detector file cannot be fetched or read (a one-line message).
DetectorError = metric_utils.FeatureDetectorError

# The LPIPS weights were calibrated on 256 px crops; larger images are box-filtered down to this size first.
MAX_RESOLUTION = 256

# ----------------------------------------------------------------------------


class PerceptualDistance:
    """LPIPS distance between batches of [N, 3, H, W] images in [-1, 1]; differentiable in both arguments."""

    def __init__(self, device, url=VGG16_URL):
        self.detector = metric_utils.get_feature_detector(url, device=device).eval()
        for param in self.detector.parameters():  # A ScriptModule has no requires_grad_().
            param.requires_grad_(False)

    def features(self, images):
        assert images.ndim == 4 and images.shape[1] == 3, f'expected [N, 3, H, W] images, got {list(images.shape)}'
        images = (images + 1) * (255 / 2)
        if images.shape[2] > MAX_RESOLUTION:
            images = torch.nn.functional.interpolate(images, size=(MAX_RESOLUTION, MAX_RESOLUTION), mode='area')
        return self.detector(images, resize_images=False, return_lpips=True)

    def __call__(self, images, target_features):
        """[N] distances between `images` and precomputed `target_features` (from features())."""
        return (self.features(images) - target_features).square().sum(dim=1)
