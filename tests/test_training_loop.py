"""training/training_loop.py and training/snapshot.py: phases, EMA, ADA, image grids, exact full-state resume,
crash-safe snapshots, and the non-finite guard (in-process runs of the loop on CPU)."""

import json
import os
import pickle
import types

import numpy as np
import pytest
import torch
from helpers import make_dataset, parse_config, tiny_args
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import dnnlib
import legacy
from metrics import metric_main
from torch_utils import misc, training_stats
from training import snapshot, training_loop

#----------------------------------------------------------------------------
# Helpers.

def run_loop(run_dir, c, **overrides):
    """Run the training loop in this process (rank 0 of 1, no DataLoader workers)."""
    os.makedirs(run_dir, exist_ok=True)
    kwargs = dict(c, **overrides)
    kwargs['data_loader_kwargs'] = dict(kwargs['data_loader_kwargs'], num_workers=0)
    training_loop.training_loop(run_dir=str(run_dir), rank=0, **kwargs)
    return str(run_dir)

class ScriptedLoss:
    """Cheap stand-in for StyleGAN2Loss: reports a fixed sign for the real logits (drives ADA), gives the
    phase's first parameter a NaN gradient at the scripted values of cur_nimg (drives the non-finite guard), and
    records its calls and the random-stream states at its construction."""

    latest = None # The loss of the most recent training loop in this process.

    def __init__(self, device, G, D, augment_pipe=None, sign=1.0, nan_at=()):
        self.G, self.D, self.sign, self.nan_at = G, D, sign, set(nan_at)
        self.nonfinite = torch.zeros([], device=device)
        self.torch_rng_at_init = torch.get_rng_state()
        self.numpy_rng_at_init = np.random.get_state()
        self.calls = []
        ScriptedLoss.latest = self

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
        self.calls.append(dict(phase=phase, gen_z=gen_z.clone(), gen_c=gen_c.clone(), gain=gain, cur_nimg=cur_nimg))
        module = self.G if phase.startswith('G') else self.D
        if phase.startswith('D'):
            training_stats.report('Loss/signs/real', torch.full([real_img.shape[0]], self.sign))
        value = float('nan') if cur_nimg in self.nan_at else 0.0
        (next(module.parameters()).sum() * value).backward()

def _load(path):
    with open(path, 'rb') as f:
        return legacy.load_network_pkl(f)

def _tensors(data):
    return {f'{key}.{name}': tensor for key in ('G', 'D', 'G_ema')
            for name, tensor in misc.named_params_and_buffers(data[key])}

@pytest.fixture(scope='module')
def data128(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp('data') / 'cars_128')

@pytest.fixture(scope='module')
def scripted_config(data128, tmp_path_factory):
    c, _ = parse_config(tiny_args(tmp_path_factory.mktemp('cfg'), data128, '--batch=1', '--mbstd-group=1',
                                  '--aug=ada'))
    c.loss_kwargs = dnnlib.EasyDict(class_name='test_training_loop.ScriptedLoss')
    c.image_snapshot_ticks = None
    return c

#----------------------------------------------------------------------------
# Building blocks.

def test_skipping_sampler_continues_the_stream():
    dataset = list(range(11))
    for rank in range(2):
        stream = iter(misc.InfiniteSampler(dataset, rank=rank, num_replicas=2, seed=3))
        full = [next(stream) for _ in range(40)]
        resumed = iter(training_loop._SkippingSampler(misc.InfiniteSampler(dataset, rank=rank, num_replicas=2, seed=3),
                                                      skip=25))
        assert [next(resumed) for _ in range(15)] == full[25:]

def test_snapshot_copy_moves_plain_tensor_attributes():
    module = torch.nn.Linear(2, 2)
    module.plane_axes = torch.zeros(3, 3, 3, dtype=torch.float64) # Stand-in for a GPU tensor.
    copied = training_loop._snapshot_copy(module)
    assert not copied.training and not any(p.requires_grad for p in copied.parameters())
    assert copied.plane_axes.device.type == 'cpu' and module.weight.requires_grad

def test_atomic_write_failure_leaves_target(tmp_path):
    path = str(tmp_path / 'file.pkl')
    snapshot.save_pickle(path, dict(a=1))

    def broken(f):
        f.write(b'partial')
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        dnnlib.util.write_atomic(path, broken)
    assert pickle.load(open(path, 'rb')) == dict(a=1) and os.listdir(tmp_path) == ['file.pkl']

#----------------------------------------------------------------------------
# Full runs with the real networks and loss.

@pytest.mark.slow
def test_resume_continues_exactly_after_a_failed_snapshot(data128, tmp_path, monkeypatch):
    # GPC swapping, a neural-rendering-resolution fade, ADA, density and R1 regularization every 2 iterations.
    c, _ = parse_config(tiny_args(tmp_path, data128, '--batch=1', '--mbstd-group=1', '--aug=ada',
                                  '--gen_pose_cond=True', '--neural_rendering_resolution_final=24',
                                  '--density_reg_every=2', '--tick=0.001'))
    c.update(D_reg_interval=2, ada_interval=2, ada_kimg=0.1, image_snapshot_ticks=None, network_snapshot_ticks=100)
    c.ada_target = -1.5 # Always step p up, so that augmentation is active from the first adjustment on.
    c.loss_kwargs.neural_rendering_resolution_fade_kimg = 0.004 # 16, 18, 20 at t = 0, 1, 2.

    # Reference: 3 iterations in one go.
    run_a = run_loop(tmp_path / 'a', c, total_kimg=0.003)

    # Interrupted run: snapshot after every iteration; the second snapshot's pickle write fails midway.
    calls = []

    def failing_dump(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            f.write(b'\x80\x04 truncated')
            raise OSError('disk full (simulated)')
        pickle.dump(obj, f, *args, **kwargs)
    with monkeypatch.context() as patch:
        patch.setattr(snapshot, 'pickle', types.SimpleNamespace(dump=failing_dump)) # Only the snapshot writer.
        with pytest.raises(OSError, match='simulated'):
            run_loop(tmp_path / 'b1', c, total_kimg=0.003, network_snapshot_ticks=1)
    assert len(calls) == 2
    names = os.listdir(tmp_path / 'b1')
    assert [name for name in names if name.startswith('.')] == [] # The broken temporary file was removed.
    assert sorted(name for name in names if name.endswith(('.pkl', '.pt'))) == ['network-snapshot-000000.pkl',
                                                                              'training-state-000000.pt']
    pkl = str(tmp_path / 'b1' / 'network-snapshot-000000.pkl')
    state = snapshot.load_training_state(snapshot.state_path_for(pkl))
    assert (state['cur_nimg'], state['cur_tick'], state['batch_idx'], state['sampler_nimg']) == (1, 1, 1, 1)
    assert state['ada_pending'][0] == 2 # Two real signs (Dmain + Dreg of iteration 0) since the last adjustment.

    # Continue from the surviving snapshot with its training state: identical to the uninterrupted run.
    run_b2 = run_loop(tmp_path / 'b2', c, total_kimg=0.003, resume_pkl=pkl, resume_state=snapshot.state_path_for(pkl))
    # Run a snapshots at tick 0 and at the end, both within kimg 0, so the second name carries its image count;
    # run b2 snapshots only at the end.
    final_a = _load(os.path.join(run_a, 'network-snapshot-000000_003.pkl'))
    final_b = _load(os.path.join(run_b2, 'network-snapshot-000000.pkl'))
    tensors_a, tensors_b = _tensors(final_a), _tensors(final_b)
    assert tensors_a.keys() == tensors_b.keys()
    assert [name for name in tensors_a if not torch.equal(tensors_a[name], tensors_b[name])] == []
    assert float(final_a['augment_pipe'].p) == float(final_b['augment_pipe'].p) > 0 # ADA moved p.
    assert final_b['G_ema'].neural_rendering_resolution == final_a['G_ema'].neural_rendering_resolution == 20

    state_a = snapshot.load_training_state(os.path.join(run_a, 'training-state-000000_003.pt'))
    state_b = snapshot.load_training_state(os.path.join(run_b2, 'training-state-000000.pt'))
    for key in ['cur_nimg', 'cur_tick', 'batch_idx', 'sampler_nimg', 'augment_p', 'ada_pending']:
        assert state_a[key] == state_b[key], key
    assert (state_b['cur_nimg'], state_b['batch_idx']) == (3, 3)
    for name in ['G', 'D']:
        opt_a, opt_b = state_a['optimizers'][name], state_b['optimizers'][name]
        assert opt_a['param_groups'] == opt_b['param_groups']
        for idx in opt_a['state']:
            for key, value in opt_a['state'][idx].items():
                assert torch.equal(value, opt_b['state'][idx][key]), (name, idx, key)
    assert torch.equal(state_a['per_rank'][0]['rng']['torch'], state_b['per_rank'][0]['rng']['torch'])

    # Logs of the continued run: kimg numbering continues; all losses finite.
    lines_a = [json.loads(line) for line in open(os.path.join(run_a, 'stats.jsonl'))]
    lines_b = [json.loads(line) for line in open(os.path.join(run_b2, 'stats.jsonl'))]
    assert [line['Progress/tick']['mean'] for line in lines_b] == [1, 2]
    assert [line['Loss/G/loss'] for line in lines_b] == [line['Loss/G/loss'] for line in lines_a[1:]]
    for line in lines_a + lines_b:
        assert all(np.isfinite(value['mean']) for key, value in line.items()
                   if key.startswith('Loss/') and value['num'] > 0)

#----------------------------------------------------------------------------
# Scripted-loss runs (real networks are built, but no forward passes in the iterations).

def test_deterministic_mode_only_when_asked(scripted_config, tmp_path, restore_determinism):
    torch.use_deterministic_algorithms(False)
    run_loop(tmp_path / 'a', scripted_config, total_kimg=0.001)
    assert not torch.are_deterministic_algorithms_enabled() and 'CUBLAS_WORKSPACE_CONFIG' not in os.environ
    run_loop(tmp_path / 'b', scripted_config, total_kimg=0.001, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
    assert os.environ['CUBLAS_WORKSPACE_CONFIG'] == ':4096:8'

def test_ada_moves_p(scripted_config, tmp_path):
    c = scripted_config
    c_up = dict(c, loss_kwargs=dict(c.loss_kwargs, sign=1.0))
    run_dir = run_loop(tmp_path / 'up', c_up, total_kimg=0.005, ada_interval=1, ada_kimg=0.01)
    data = _load(os.path.join(run_dir, 'network-snapshot-000000_005.pkl')) # The last of the snapshots at 1, 3, 5.
    assert float(data['augment_pipe'].p) == pytest.approx(0.5) # 5 steps of 1 * 1 / 10 upwards (sign > target).
    last = [json.loads(line) for line in open(os.path.join(run_dir, 'stats.jsonl'))][-1]
    assert last['Progress/augment']['mean'] == pytest.approx(0.5)
    c_down = dict(c, loss_kwargs=dict(c.loss_kwargs, sign=-1.0))
    run_dir = run_loop(tmp_path / 'down', c_down, total_kimg=0.003, ada_interval=1, ada_kimg=0.01)
    assert float(_load(os.path.join(run_dir, 'network-snapshot-000000_003.pkl'))['augment_pipe'].p) == 0 # Clamped.

def test_random_streams_and_phase_schedule(scripted_config, data128, tmp_path):
    # Original order: torch draws the snapshot-grid z right after setup, then len(phases) * batch z per iteration
    # (whether or not a phase runs); NumPy's global stream, untouched until then, draws the generator cameras.
    run_loop(tmp_path / 'run', scripted_config, total_kimg=0.002, random_seed=3)
    loss = ScriptedLoss.latest
    np.random.seed(3)
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), loss.numpy_rng_at_init))
    assert [(call['phase'], call['gain'], call['cur_nimg']) for call in loss.calls] == [
        ('Gmain', 1, 0), ('Greg', 4.0, 0), ('Dmain', 1, 0), ('Dreg', 16, 0), ('Gmain', 1, 1), ('Dmain', 1, 1)]

    torch.set_rng_state(loss.torch_rng_at_init)
    torch.randn([2 * 2, 512]) # grid_z of the 2x2 grid.
    expected_z = [torch.randn([4, 512]), torch.randn([4, 512])] # One per iteration: 4 phases x batch 1.
    dataset = dnnlib.util.construct_class_by_name(**scripted_config.training_set_kwargs)
    expected_c = [np.stack([dataset.get_label(np.random.randint(len(dataset))) for _ in range(4)]) for _ in range(2)]
    for call, (it, idx) in zip(loss.calls, [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 2)]):
        assert torch.equal(call['gen_z'], expected_z[it][idx:idx + 1]), call['phase']
        assert np.array_equal(call['gen_c'].numpy(), expected_c[it][idx:idx + 1]), call['phase']

def test_transient_nonfinite_is_logged(scripted_config, tmp_path, capsys):
    c = dict(scripted_config, loss_kwargs=dict(scripted_config.loss_kwargs, nan_at=[2]))
    stale = tmp_path / 'run' / '.tmp-0123456789ab-network-snapshot-000000.pkl' # Left by a killed write.
    os.makedirs(stale.parent)
    stale.write_bytes(b'partial')
    run_loop(tmp_path / 'run', c, total_kimg=0.005, kimg_per_tick=0.002, nan_limit=2)
    assert not stale.exists() # Removed when the run starts.
    out = capsys.readouterr().out
    assert 'Warning: 1 iteration(s) of this tick had non-finite losses or gradients' in out
    assert 'Exiting...' in out

def test_persistent_nonfinite_stops(scripted_config, tmp_path):
    c = dict(scripted_config, loss_kwargs=dict(scripted_config.loss_kwargs, nan_at=list(range(2, 100))))
    run_dir = tmp_path / 'run'
    with pytest.raises(training_loop.TrainingDiverged) as err:
        run_loop(run_dir, c, total_kimg=0.05, kimg_per_tick=0.002, network_snapshot_ticks=1, nan_limit=3)
    pkl = str(run_dir / 'network-snapshot-000000_003.pkl') # The second snapshot within kimg 0.
    assert str(err.value).startswith('3 consecutive iterations with non-finite losses or gradients (limit 3)')
    assert str(err.value).endswith(f'Last good snapshot: {pkl}')
    assert snapshot.load_training_state(snapshot.state_path_for(pkl))['cur_nimg'] == 3 # Written at tick 1.
    assert all(torch.isfinite(p).all() for p in _load(pkl)['G'].parameters())
def test_metrics_at_snapshots(scripted_config, tmp_path, monkeypatch):
    seen = []

    def toy_metric(opts):
        seen.append(dict(training=opts.G.training, dataset_kwargs=dict(opts.dataset_kwargs), rank=opts.rank))
        return dict(toy_metric=float(len(seen)))
    monkeypatch.setitem(metric_main._metric_dict, 'toy_metric', toy_metric)
    run_dir = run_loop(tmp_path / 'run', scripted_config, total_kimg=0.004, metrics=['toy_metric'])
    assert len(seen) == 3 and not seen[0]['training'] and seen[0]['rank'] == 0 # Ticks 0 and 1, and the end.
    assert seen[0]['dataset_kwargs'] == scripted_config.training_set_kwargs
    records = [json.loads(line) for line in open(os.path.join(run_dir, 'metric-toy_metric.jsonl'))]
    assert [r['results'] for r in records] == [dict(toy_metric=1.0), dict(toy_metric=2.0), dict(toy_metric=3.0)]
    assert records[0]['snapshot_pkl'] == 'network-snapshot-000000.pkl'

    events = EventAccumulator(run_dir)
    events.Reload()
    assert [event.value for event in events.Scalars('Metrics/toy_metric')] == [1.0, 2.0, 3.0]
    assert [event.value for event in events.Scalars('Progress/tick')] == [0, 1, 2]
    assert [event.step for event in events.Scalars('Progress/kimg')] == [0, 0, 0] # int(kimg)

#----------------------------------------------------------------------------
