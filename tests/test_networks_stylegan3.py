"""training/networks_stylegan3.py exists for import compatibility (EG3D's super-resolution module imports its
SynthesisLayer); check that it builds, runs and pickles."""

import pickle

import torch

from training import networks_stylegan3


def test_generator_runs_forward_and_backward():
    torch.manual_seed(11)
    G = networks_stylegan3.Generator(z_dim=8, c_dim=3, w_dim=8, img_resolution=16, img_channels=3, channel_base=256,
        channel_max=8, num_layers=4, num_critical=2, margin_size=2, mapping_kwargs=dict(num_layers=1))
    assert G.num_ws == 6
    z, c = torch.randn([2, 8]), torch.randn([2, 3])
    img = G(z, c, truncation_psi=0.7, update_emas=True)
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()
    img.square().mean().backward()
    assert G.synthesis.L0_20_8.weight.grad is not None and G.synthesis.input.weight.grad is not None
    radial = networks_stylegan3.design_lowpass_filter(numtaps=6, cutoff=4, width=4, fs=16, radial=True)
    assert radial.shape == (6, 6) and abs(float(radial.sum()) - 1) < 1e-6


def test_pickle_round_trip():
    torch.manual_seed(0)
    layer_kwargs = dict(w_dim=4, is_torgb=False, is_critically_sampled=False, use_fp16=False, in_channels=4,
                        out_channels=4, in_size=8, out_size=8, in_sampling_rate=8, out_sampling_rate=8,
                        in_cutoff=2, out_cutoff=2, in_half_width=2, out_half_width=2)
    layer = networks_stylegan3.SynthesisLayer(**layer_kwargs)
    copy = pickle.loads(pickle.dumps(layer))
    assert type(copy).__name__ == 'SynthesisLayer'
    x, w = torch.randn([1, 4, 8, 8]), torch.randn([1, 4])
    assert torch.equal(copy(x, w, noise_mode='const', force_fp32=True), layer(x, w, noise_mode='const', force_fp32=True))
