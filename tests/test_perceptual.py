"""inference/perceptual.py with a small stand-in for the VGG16 LPIPS TorchScript file in $EG3D_DETECTOR_DIR."""


import pytest
import torch
from helpers import StandInLPIPS, write_stand_in_detector

import dnnlib
from inference import perceptual
from metrics import metric_utils

pytestmark = pytest.mark.filterwarnings('ignore:`torch.jit')

# ----------------------------------------------------------------------------


@pytest.fixture
def detector_dir(tmp_path, monkeypatch):
    folder = str(tmp_path / 'detectors')
    write_stand_in_detector(folder)
    monkeypatch.setenv(metric_utils.DETECTOR_DIR_ENV, folder)
    return folder

# ----------------------------------------------------------------------------


def test_distance(detector_dir):
    dist = perceptual.PerceptualDistance(device='cpu')
    gen = torch.Generator().manual_seed(0)
    a = torch.rand([2, 3, 64, 64], generator=gen) * 2 - 1
    b = torch.rand([2, 3, 64, 64], generator=gen) * 2 - 1
    assert torch.equal(dist(a, dist.features(a)), torch.zeros(2))

    # The squared distance of unit-normalised stand-in features, computed here from the module itself.
    module = StandInLPIPS()
    fa, fb = (module((x + 1) * 127.5, return_lpips=True) for x in (a, b))
    b.requires_grad_(True)
    d = dist(b, dist.features(a))
    assert torch.allclose(d, (fa - fb).square().sum(dim=1), atol=1e-6, rtol=1e-5)
    assert (d > 0).all()
    d.sum().backward()
    assert b.grad.abs().sum() > 0


def test_large_images_are_box_filtered_to_256(detector_dir):
    dist = perceptual.PerceptualDistance(device='cpu')
    image = torch.rand([1, 3, 512, 512], generator=torch.Generator().manual_seed(1)) * 2 - 1
    small = image.reshape(1, 3, 256, 2, 256, 2).mean(dim=[3, 5])  # Exact 2x2 box average.
    assert torch.allclose(dist.features(image), dist.features(small), atol=1e-6, rtol=0)


def test_missing_detector_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv(metric_utils.DETECTOR_DIR_ENV, str(tmp_path))
    with pytest.raises(perceptual.DetectorError, match=r'vgg16.pt: no such file \(\$EG3D_DETECTOR_DIR is set: '
                                                                r'place vgg16.pt from https://\S+/vgg16.pt there\)'):
        perceptual.PerceptualDistance(device='cpu')

    monkeypatch.delenv(metric_utils.DETECTOR_DIR_ENV)
    def offline(url, **kwargs):
        raise dnnlib.util.DownloadError(f'cannot download {url}; place it at {dnnlib.util.url_cache_path(url)}')
    monkeypatch.setattr(dnnlib.util, 'open_url', offline)
    with pytest.raises(perceptual.DetectorError) as info:
        perceptual.PerceptualDistance(device='cpu')
    assert '\n' not in str(info.value) and 'vgg16.pt' in str(info.value) and '$EG3D_DETECTOR_DIR' in str(info.value)
