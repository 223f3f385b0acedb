"""training/phases.py: phases and lazy-regularization rates, chunked gradient accumulation, gradient reduction,
the G_ema update and the ADA step."""

import copy

import pytest
import torch

from training import phases as training_phases

#----------------------------------------------------------------------------

def test_phases_and_lazy_regularization_rates():
    G, D = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    opt_kwargs = dict(class_name='torch.optim.Adam', betas=[0, 0.99], eps=1e-8)
    phases, opts = training_phases.setup_phases(G=G, D=D, G_opt_kwargs=dict(opt_kwargs, lr=0.0025),
                                              D_opt_kwargs=dict(opt_kwargs, lr=0.002), G_reg_interval=4.0,
                                              D_reg_interval=16)
    assert [(p.name, p.interval) for p in phases] == [('Gmain', 1), ('Greg', 4.0), ('Dmain', 1), ('Dreg', 16)]
    assert phases[0].opt is phases[1].opt is opts['G'] and phases[2].opt is phases[3].opt is opts['D']
    G_group, D_group = opts['G'].param_groups[0], opts['D'].param_groups[0]
    assert G_group['lr'] == pytest.approx(0.002, abs=1e-12) and G_group['eps'] == 1e-8
    assert G_group['betas'][0] == 0 and G_group['betas'][1] == pytest.approx(0.9919919678, abs=1e-10)
    assert D_group['lr'] == pytest.approx(0.0018823529, abs=1e-10)
    assert D_group['betas'][1] == pytest.approx(0.9905854573, abs=1e-10)
    phases, _ = training_phases.setup_phases(G=G, D=D, G_opt_kwargs=dict(opt_kwargs, lr=0.0025),
                                           D_opt_kwargs=dict(opt_kwargs, lr=0.002), G_reg_interval=None,
                                           D_reg_interval=2.5)
    assert [p.name for p in phases] == ['Gboth', 'Dmain', 'Dreg']
    assert phases[0].opt.param_groups[0]['lr'] == 0.0025
    assert [i for i in range(12) if i % phases[2].interval == 0] == [0, 5, 10] # Float intervals.

def test_run_phases_sums_chunk_gradients():
    G, D = torch.nn.Linear(2, 1, bias=False), torch.nn.Linear(2, 1, bias=False)
    G.requires_grad_(False)
    D.requires_grad_(False)
    opt_kwargs = dict(class_name='torch.optim.Adam', betas=[0, 0.99], eps=1e-8, lr=0.001)
    phases, _ = training_phases.setup_phases(G=G, D=D, G_opt_kwargs=opt_kwargs, D_opt_kwargs=opt_kwargs,
                                           G_reg_interval=4.0, D_reg_interval=16)
    calls = []

    class MeanLoss:
        nonfinite = torch.zeros([])

        def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
            module = G if phase.startswith('G') else D
            calls.append((phase, gain, module.weight.requires_grad))
            (module(real_img).mean() * gain).backward()

    real = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).split(1) # Two chunks: d mean / d weight = the chunk's row.
    gen = [torch.zeros([3, 1]).split(1)] * len(phases) # Three generator chunks, as on multi-GPU runs: one unused.
    for batch_idx, expected_calls, gains in [(1, ['Gmain', 'Dmain'], (1, 1)), (16, [p.name for p in phases], (4, 16))]:
        calls.clear()
        training_phases.run_phases(phases, MeanLoss(), real, real, gen, gen, batch_idx=batch_idx, cur_nimg=0,
                                 num_gpus=1, device=torch.device('cpu'))
        assert [name for name, _gain, _rg in calls] == [name for name in expected_calls for _chunk in range(2)]
        assert all(requires_grad for _name, _gain, requires_grad in calls) and not G.weight.requires_grad
        # Chunk gradients are summed, not averaged; the last phase of each network leaves its gradient behind.
        assert G.weight.grad.tolist() == [[4 * gains[0], 6 * gains[0]]]
        assert D.weight.grad.tolist() == [[4 * gains[1], 6 * gains[1]]]

def test_ema_update():
    G = torch.nn.Linear(3, 2)
    G.register_buffer('w_avg', torch.randn(2))
    G.neural_rendering_resolution, G.rendering_kwargs = 96, dict(a=1)
    G_ema = copy.deepcopy(G)
    with torch.no_grad():
        G_ema.weight.fill_(1)
        G.w_avg.fill_(3)
    old = G_ema.weight.clone()
    beta = training_phases.update_ema(G_ema, G, cur_nimg=10**6, batch_size=32, ema_kimg=10, ema_rampup=0.05)
    assert beta == pytest.approx(0.9977843871, abs=1e-10)
    assert torch.allclose(G_ema.weight, beta * old + (1 - beta) * G.weight)
    assert torch.equal(G_ema.w_avg, G.w_avg) and G_ema.neural_rendering_resolution == 96
    assert G_ema.rendering_kwargs == G.rendering_kwargs and G_ema.rendering_kwargs is not G.rendering_kwargs
    assert training_phases.update_ema(G_ema, G, 40000, 32, 10, 0.05) == pytest.approx(0.9889709164, abs=1e-10)
    assert training_phases.update_ema(G_ema, G, 0, 32, 10, 0.05) == 0 # First iteration: G_ema becomes G.
    assert torch.equal(G_ema.weight, G.weight)
    assert training_phases.update_ema(G_ema, G, 0, 32, 10, None) == pytest.approx(0.9977843871, abs=1e-10)

def test_ada_adjustment():
    assert training_phases.ada_adjustment(0.7, 0.6, batch_size=32, ada_interval=4, ada_kimg=500) == 0.000256
    assert training_phases.ada_adjustment(0.5, 0.6, 32, 4, 100) == pytest.approx(-0.00128)
    assert training_phases.ada_adjustment(0.6, 0.6, 32, 4, 500) == 0

def test_reduce_gradients_sanitizes_and_flags():
    module = torch.nn.Linear(2, 2)
    module.weight.grad = torch.tensor([[float('nan'), float('inf')], [-float('inf'), 2.0]])
    flag = training_phases.reduce_gradients(module, torch.zeros([]), num_gpus=1)
    assert float(flag) == 1 and module.bias.grad is None
    assert module.weight.grad.tolist() == [[0, 1e5], [-1e5, 2]]
    module.weight.grad = torch.ones(2, 2)
    assert float(training_phases.reduce_gradients(module, torch.zeros([]), num_gpus=1)) == 0
    assert float(training_phases.reduce_gradients(module, torch.ones([]), num_gpus=1)) == 1 # Non-finite loss.

#----------------------------------------------------------------------------
