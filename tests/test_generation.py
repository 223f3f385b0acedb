"""inference/generation.py: the generator loader and image conversion."""

import pickle

import numpy as np
import PIL.Image
import pytest
import torch

from inference import generation


def test_to_uint8_truncates_after_clamping(tmp_path):
    img = torch.tensor([-1.5, -1.0, -0.001, 0.0, 0.5, 0.999, 1.2]).reshape(1, 1, 1, 7).expand(1, 3, 1, 7)
    nchw = generation.to_uint8(img, channels_last=False)
    assert nchw.shape == (1, 3, 1, 7) and nchw[0, 0, 0].tolist() == [0, 0, 127, 128, 191, 255, 255]
    nhwc = generation.to_uint8(img)
    assert nhwc.shape == (1, 1, 7, 3) and torch.equal(nhwc[0, 0, :, 1], nchw[0, 1, 0])
    path = str(tmp_path / 'x.png')
    generation.save_png(path, nhwc[0].numpy())
    with PIL.Image.open(path) as png:
        assert png.mode == 'RGB' and np.array_equal(np.asarray(png), nhwc[0].numpy())


def test_load_generator_names_the_flag_and_file(tmp_path, monkeypatch):
    junk = tmp_path / 'junk.pkl'
    junk.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(generation.GeneratorError, match=f'^--network: {junk}: not a network snapshot'):
        generation.load_generator(str(junk), 'cpu')
    with pytest.raises(generation.GeneratorError, match=f'^--data-net: {junk}: not a network snapshot'):
        generation.open_snapshot(str(junk), flag='--data-net')

    class NotEG3D(torch.nn.Module):
        c_dim = 0
    monkeypatch.setattr(generation.network_pickle, 'open_network_pkl', lambda path, **kwargs: dict(G_ema=NotEG3D()))
    with pytest.raises(generation.GeneratorError, match='^--net: x.pkl: G_ema is a NotEG3D, not an EG3D generator'):
        generation.load_generator('x.pkl', 'cpu', flag='--net')
