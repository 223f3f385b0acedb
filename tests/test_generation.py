"""inference/generation.py: the generator loader."""

import pickle

import pytest
import torch

from inference import generation


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
