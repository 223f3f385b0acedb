"""Opt-in speed modes: each runs on CPU and stays within a stated tolerance of the exact path; wrapping
changes neither state-dict names nor pickles."""

import copy
import os
import pickle
import warnings

import numpy as np
import pytest
import torch
from helpers import GOLDEN_DIR, build_golden_generator

from torch_utils import fast_modes

#----------------------------------------------------------------------------

def _run(G):
    io = np.load(os.path.join(GOLDEN_DIR, 'shapenet_io.npz'))
    torch.manual_seed(5)
    with torch.no_grad():
        return G(torch.from_numpy(io['z']), torch.from_numpy(io['c']), noise_mode='const')

@pytest.fixture(scope='module')
def exact():
    return _run(build_golden_generator())

#----------------------------------------------------------------------------

def test_configure_tf32_flags():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        fast_modes.configure(tf32=True)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        fast_modes.configure(tf32=False)
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before

@pytest.mark.parametrize('impl', ['foreach', 'fused'])
def test_adam_impls_match_default(impl):
    # Same update rule, different kernels: float32 rounding of a few steps of values of order 1.
    torch.manual_seed(0)
    init = [torch.randn(7, 5), torch.randn(3)]
    grads = [[torch.randn_like(p) for p in init] for _ in range(3)]
    results = []
    for kwargs in ({}, fast_modes.adam_kwargs(impl)):
        params = [p.clone().requires_grad_(True) for p in init]
        opt = torch.optim.Adam(params, lr=0.01, betas=(0.0, 0.99), eps=1e-8, **kwargs)
        for step in grads:
            for p, g in zip(params, step):
                p.grad = g.clone()
            opt.step()
        results.append(params)
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)
    assert fast_modes.adam_kwargs(None) == {}
    with pytest.raises(ValueError, match='adam implementation'):
        fast_modes.adam_kwargs('apex')

@pytest.mark.slow  # golden G forward passes (~15 s each on a shared 2-core CPU)
def test_bf16_decoder_close_to_exact(exact):
    G = fast_modes.wrap_generator_for_speed(build_golden_generator(), precision='bf16')
    out = _run(G)
    for name in ('image', 'image_raw'):
        assert out[name].dtype == torch.float32
        # bf16 keeps 8 mantissa bits: ~4e-3 relative error in the decoder MLP, compounded through compositing.
        torch.testing.assert_close(out[name], exact[name], rtol=0, atol=0.05)
    assert not torch.equal(out['image_raw'], exact['image_raw'])
    with pytest.raises(ValueError, match='precision'):
        fast_modes.wrap_generator_for_speed(G, precision='fp16')

@pytest.mark.slow  # golden G forward passes (~15 s each on a shared 2-core CPU)
def test_compile_falls_back_with_one_warning(exact):
    fast_modes._Compiled._warned = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        G = fast_modes.wrap_generator_for_speed(build_golden_generator(), compile=True, compile_kwargs=dict(backend='no_such_backend'))
        out = _run(G)
    assert [str(w.message).startswith('torch.compile unavailable') for w in caught] == [True]
    assert torch.equal(out['image'], exact['image'])

@pytest.mark.slow
def test_compile_eager_backend_matches_exact(exact):
    # Dynamo tracing with the eager backend runs the same kernels: equal up to rounding of reordered ops.
    G = fast_modes.wrap_generator_for_speed(build_golden_generator(), compile=True, compile_kwargs=dict(backend='eager'))
    out = _run(G)
    torch.testing.assert_close(out['image'], exact['image'], rtol=1e-5, atol=1e-5)

@pytest.mark.slow  # golden G forward passes (~15 s each on a shared 2-core CPU)
def test_wrapping_keeps_state_dict_and_pickle(exact):
    plain = build_golden_generator()
    G = fast_modes.wrap_generator_for_speed(build_golden_generator(), compile=True, precision='bf16',
                                            compile_kwargs=dict(backend='eager'))
    assert list(G.state_dict()) == list(plain.state_dict())
    for clone in (pickle.loads(pickle.dumps(G)), copy.deepcopy(G)):
        assert all(m._compiled_call_impl is None for m in clone.modules())
        assert torch.equal(_run(clone)['image'], exact['image'])
    assert fast_modes.unwrap(G) is G and all(m._compiled_call_impl is None for m in G.modules())
    assert torch.equal(_run(G)['image'], exact['image'])

#----------------------------------------------------------------------------
