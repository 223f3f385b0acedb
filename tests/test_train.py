"""train.py: options, derived settings (training_options.json), run directories, early failures, resume
selection, and one short 2-process CPU training run."""

import glob
import json
import math
import os
import pickle

import PIL.Image
import pytest
import torch
from helpers import GOLDEN_DIR, STATE_DICTS_DIR, invoke, make_dataset, parse_config, tiny_args

import dnnlib
import legacy
import train
from torch_utils import training_stats
from training import snapshot, training_loop

#----------------------------------------------------------------------------
# Helpers shared with test_training_loop.py.


@pytest.fixture(scope='module')
def data128(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp('data') / 'cars_128')

#----------------------------------------------------------------------------
# Derived configuration.

def test_dry_run_matches_golden_shapenet_kwargs(data128, tmp_path):
    outdir = tmp_path / 'runs'
    result = invoke([f'--outdir={outdir}', '--cfg=shapenet', f'--data={data128}', '--gpus=1', '--batch=4',
                     '--gamma=0.3', '--cbase=4096', '--cmax=64', '--depth-resolution=24',
                     '--depth-resolution-importance=24', '--dry-run'])
    assert result.exit_code == 0, result.output
    assert 'Dry run; exiting.' in result.output
    assert not outdir.exists() # Nothing created.
    options = json.loads(result.output[result.output.index('{'):result.output.index('\nOutput directory:')])
    golden = json.load(open(os.path.join(GOLDEN_DIR, 'shapenet_config.json')))
    # Same values and the same key order (json.loads keeps the order of the printed text).
    assert json.dumps(options['G_kwargs']) == json.dumps(golden['G_kwargs'])
    assert json.dumps(options['D_kwargs']) == json.dumps(golden['D_kwargs'])
    assert options['run_dir'] == os.path.join(str(outdir), '00000-shapenet-cars_128-gpus1-batch4-gamma0.3')

def test_ffhq_training_options(tmp_path):
    data = make_dataset(tmp_path / 'FFHQ_512', num_images=1, resolution=512)
    c, desc = parse_config([f'--outdir={tmp_path}', '--cfg=ffhq', f'--data={data}', '--gpus=8', '--batch=32',
                            '--gamma=1', '--gen_pose_cond=True', '--dry-run'])
    assert desc == 'ffhq-FFHQ_512-gpus8-batch32-gamma1'
    assert list(c.keys()) == ['G_kwargs', 'D_kwargs', 'G_opt_kwargs', 'D_opt_kwargs', 'loss_kwargs',
                              'data_loader_kwargs', 'training_set_kwargs', 'num_gpus', 'batch_size', 'batch_gpu',
                              'metrics', 'total_kimg', 'kimg_per_tick', 'image_snapshot_ticks',
                              'network_snapshot_ticks', 'random_seed', 'ema_kimg', 'G_reg_interval']
    common = dict(c_dim=25, img_resolution=512, img_channels=3)
    for name, reference in [('G_kwargs', 'ffhq_G_kwargs.json'), ('D_kwargs', 'ffhq_D_kwargs.json')]:
        expected = json.load(open(os.path.join(STATE_DICTS_DIR, reference)))
        ours = {key: value for key, value in c[name].items() if key != 'class_name'}
        assert json.dumps(dict(ours, **common)) == json.dumps(expected)
    assert isinstance(c.G_kwargs.mapping_kwargs, dnnlib.EasyDict) and isinstance(c.G_kwargs.sr_kwargs, dnnlib.EasyDict)
    assert type(c.G_kwargs.rendering_kwargs) is dict
    assert c.G_opt_kwargs == dict(class_name='torch.optim.Adam', betas=[0, 0.99], eps=1e-8, lr=0.0025)
    assert c.D_opt_kwargs == dict(class_name='torch.optim.Adam', betas=[0, 0.99], eps=1e-8, lr=0.002)
    assert json.dumps(c.loss_kwargs) == json.dumps(dict(
        class_name='training.loss.StyleGAN2Loss', r1_gamma=1.0, filter_mode='antialiased', blur_init_sigma=10,
        blur_fade_kimg=200.0, gpc_reg_prob=0.5, gpc_reg_fade_kimg=1000, dual_discrimination=True,
        neural_rendering_resolution_initial=64, neural_rendering_resolution_final=None,
        neural_rendering_resolution_fade_kimg=1000, style_mixing_prob=0.0))
    assert json.dumps(c.data_loader_kwargs) == '{"pin_memory": true, "prefetch_factor": 2, "num_workers": 3}'
    assert json.dumps(c.training_set_kwargs) == json.dumps(dict(
        class_name='training.dataset.ImageFolderDataset', path=data, use_labels=True, max_size=1, xflip=False,
        resolution=512, random_seed=0))
    assert (c.batch_gpu, c.metrics, c.total_kimg, c.kimg_per_tick) == (4, ['fid50k_full'], 25000, 4)
    assert (c.image_snapshot_ticks, c.network_snapshot_ticks, c.ema_kimg, c.G_reg_interval) == (50, 50, 10.0, 4.0)

def test_mirror_cameras_option(data128, tmp_path):
    base = dict(class_name='training.dataset.ImageFolderDataset', path=data128, use_labels=True, max_size=8, xflip=True,
                resolution=128, random_seed=0)
    c, _ = parse_config(tiny_args(tmp_path, data128, '--mirror=1'))
    assert json.dumps(c.training_set_kwargs) == json.dumps(dict(base, mirror_cameras=True))
    c, _ = parse_config(tiny_args(tmp_path, data128, '--mirror=1', '--mirror-cameras=0'))
    assert json.dumps(c.training_set_kwargs) == json.dumps(base)  # The original's options.
    c, _ = parse_config(tiny_args(tmp_path, data128, '--mirror-cameras=1'))
    assert 'mirror_cameras' not in c.training_set_kwargs and not c.training_set_kwargs.xflip

def test_metrics_seed_option(data128, tmp_path):
    assert 'metrics_seed' not in parse_config(tiny_args(tmp_path, data128))[0]
    assert parse_config(tiny_args(tmp_path, data128, '--metrics-seed=7'))[0].metrics_seed == 7

def test_afhq_ada_resume_and_nobench_options(tmp_path):
    data = make_dataset(tmp_path / 'afhq', num_images=1, resolution=512)
    pkl = tmp_path / 'prev.pkl'
    pkl.write_bytes(b'')
    c, desc = parse_config([f'--outdir={tmp_path}', '--cfg=afhq', f'--data={data}', '--gpus=1', '--batch=4',
                            '--gamma=5', '--aug=ada', '--gen_pose_cond=True', '--gpc_reg_prob=0.8',
                            '--neural_rendering_resolution_final=128', f'--resume={pkl}', '--density_reg=0',
                            '--nobench=1', '--desc=cats', '--dry-run'])
    assert desc == 'afhq-afhq-gpus1-batch4-gamma5-cats'
    expected = json.load(open(os.path.join(STATE_DICTS_DIR, 'afhq_G_kwargs.json')))['rendering_kwargs']
    assert json.dumps(c.G_kwargs.rendering_kwargs) == json.dumps(dict(expected, density_reg=0.0))
    assert json.dumps(c.augment_kwargs) == json.dumps(dict(class_name='training.augment.AugmentPipe', **json.load(
        open(os.path.join(STATE_DICTS_DIR, 'afhq_augment_pipe_kwargs.json')))))
    assert list(c.keys())[-7:] == ['ema_kimg', 'augment_kwargs', 'ada_target', 'resume_pkl', 'ada_kimg',
                                   'ema_rampup', 'cudnn_benchmark']
    assert 'G_reg_interval' not in c # density_reg=0: G trains in one 'Gboth' phase.
    assert (c.ada_target, c.resume_pkl, c.ada_kimg, c.ema_rampup) == (0.6, str(pkl), 100, None)
    assert c.cudnn_benchmark is False
    assert (c.loss_kwargs.blur_init_sigma, c.loss_kwargs.gpc_reg_fade_kimg, c.loss_kwargs.gpc_reg_prob) == (0, 0, 0.8)
    assert c.loss_kwargs.neural_rendering_resolution_final == 128
    c, _ = parse_config([f'--outdir={tmp_path}', '--cfg=afhq', f'--data={data}', '--gpus=1', '--batch=4',
                         '--gamma=5', '--aug=fixed', '--p=0.3', f'--resume={pkl}', '--resume_blur=1', '--dry-run'])
    assert (c.augment_p, c.loss_kwargs.blur_init_sigma, c.loss_kwargs.gpc_reg_fade_kimg) == (0.3, 10, 1000)

def test_cameras_that_do_not_fit_the_rendering_options_warn_first(data128, tmp_path):
    result = invoke(tiny_args(tmp_path / 'runs', data128, '--dry-run'))
    assert result.exit_code == 0 and 'Warning' not in result.output    # The cameras sit 1.73 from the origin.
    result = invoke(tiny_args(tmp_path / 'runs', data128, '--dry-run', '--ray-end=2.2', '--avg-camera-radius=2.7'))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    where = os.path.join(data128, 'dataset.json')
    assert lines[:2] == [
        f"Warning: {where}: avg_camera_radius 2.7 differs from the cameras' distance to the origin (median 1.726): "
        "avg_camera_radius=1.73 would fit",
        f'Warning: {where}: ray_end 2.2 stops short of the back of the box for 8 of 8 cameras (farthest 2.526 away): '
        'ray_end=2.53 would fit (or ray_start and ray_end "auto")']
    assert lines[2] == 'Training options:' or lines[3] == 'Training options:'
    assert not (tmp_path / 'runs').exists()

def test_run_dir_naming(data128, tmp_path):
    outdir = tmp_path / 'runs'
    for name in ['00003-old', 'notes', '0012x-other']:
        (outdir / name).mkdir(parents=True)
    (outdir / '00042').write_text('a file, not a run') # Only directories count.
    result = invoke(tiny_args(outdir, data128, '--desc=foo', '--gamma=0.25', '--dry-run'))
    assert f'Output directory:    {outdir / "00013-shapenet-cars_128-gpus1-batch2-gamma0.25-foo"}' in result.output
    result = invoke(tiny_args(outdir, data128 + '/', '--dry-run')) # Trailing slash: empty dataset name (quirk).
    assert f'Output directory:    {outdir / "00013-shapenet--gpus1-batch2-gamma0.3"}' in result.output

def test_comma_list_and_number_types(data128, tmp_path):
    c, _ = parse_config(tiny_args(tmp_path, data128, '--metrics=fid50k_full,kid50k_full', '--kimg=3', '--tick=1.5'))
    assert (c.metrics, c.total_kimg, c.kimg_per_tick) == (['fid50k_full', 'kid50k_full'], 3, 1.5)
    assert isinstance(c.total_kimg, int)
    for value in ['none', 'NONE', '']:
        assert parse_config(tiny_args(tmp_path, data128, f'--metrics={value}'))[0].metrics == []
    c, _ = parse_config(tiny_args(tmp_path, data128, '--nan-limit=7', '--grid=3,2'))
    assert (c.nan_limit, c.image_grid_size) == (7, [3, 2])
    c, _ = parse_config(tiny_args(tmp_path, data128))
    assert 'nan_limit' not in c # Defaults of the additions leave training_options.json as the original's.

#----------------------------------------------------------------------------
# Failures at start.

@pytest.mark.parametrize('extra, message', [
    (['--gpus=3'], '--batch must be a multiple of --gpus'),
    (['--batch-gpu=4'], '--batch must be a multiple of --gpus times --batch-gpu'),
    (['--mbstd-group=4'], '--batch-gpu cannot be smaller than --mbstd-group'),
    (['--batch=6', '--batch-gpu=3'], '--batch-gpu must be a multiple of --mbstd-group'),
    (['--metrics=fid50k_full,fid1k'], '--metrics: unknown metric fid1k (valid: fid50k_full, kid50k_full,'),
    (['--metrics=ppl2_wend'], '--metrics: ppl2_wend cannot be computed for an EG3D generator'),
    (['--metrics=eqt50k_int'], '--metrics: eqt50k_int cannot be computed for an EG3D generator'),
    (['--cond=False'], '--cond=False is not supported'),
    (['--gen_pose_cond=True', '--gpc_reg_prob=1.5'], '--gpc_reg_prob must be in [0, 1]'),
    (['--disc_c_noise=0.1', '--batch=1', '--mbstd-group=1'], '--disc_c_noise needs --batch-gpu >= 2'),
    (['--resume=/nonexistent/x.pkl'], '--resume: /nonexistent/x.pkl: no such file'),
    (['--sr-module=training.superresolution.NoSuchModule'], '--sr-module: cannot import'),
])
def test_invalid_combinations_fail_at_start(data128, tmp_path, extra, message):
    result = invoke(tiny_args(tmp_path / 'runs', data128, *extra))
    assert result.exit_code == 1
    assert f'Error: {message}' in result.output
    assert not (tmp_path / 'runs').exists()

def test_bad_datasets_fail_at_start(tmp_path):
    cases = [
        (str(tmp_path / 'missing.zip'), '--data: '),
        (make_dataset(tmp_path / 'nolabels', num_images=2, labels=False), '--cond=True requires labels'),
        (make_dataset(tmp_path / 'short', num_images=2, label_dim=16), 'labels have shape [16]; EG3D needs 25'),
        (make_dataset(tmp_path / 'small', num_images=2, resolution=64), 'dataset resolution 64 is not supported'),
    ]
    for data, message in cases:
        result = invoke(tiny_args(tmp_path / 'runs', data))
        assert result.exit_code == 1 and message in result.output, result.output

@pytest.mark.parametrize('extra', [['--cfg=stylegan2'], ['--kimg=0'], ['--gpc-reg-prob=0.5'], ['--c_scale=1'],
                                   ['--mirror=maybe']])
def test_usage_errors(data128, tmp_path, extra):
    assert invoke(tiny_args(tmp_path, data128, *extra)).exit_code == 2

def test_bool_spellings(data128, tmp_path):
    for value, expected in [('1', True), ('yes', True), ('On', True), ('0', False), ('f', False), ('n', False)]:
        assert parse_config(tiny_args(tmp_path, data128, f'--mirror={value}'))[0].training_set_kwargs.xflip is expected

#----------------------------------------------------------------------------
# Resume selection.

def _touch(path, data=b''):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)

def _write_pair(pkl, c=None, nimg=None):
    """A stand-in snapshot pair: pickle bytes and a training state that records them (and config c's options)."""
    pkl = str(pkl)
    _touch(pkl, data=f'stand-in for {pkl}'.encode())
    if nimg is None:
        nimg = int(os.path.basename(pkl).split('-')[-1].split('.')[0]) * 1000
    options = training_loop.recorded_options(c or {}) # What the training loop stores.
    identity = snapshot.pickle_identity(os.path.basename(pkl), snapshot.file_sha256(pkl), cur_nimg=nimg, cur_tick=1)
    snapshot.save_training_state(snapshot.state_path_for(pkl), dict(options=options, snapshot=identity))

def test_find_latest_snapshot(tmp_path):
    desc = 'shapenet-cars_128-gpus1-batch2-gamma0.3'
    assert snapshot.find_latest_snapshot(str(tmp_path / 'none'), desc) is None
    _write_pair(tmp_path / f'00000-{desc}' / 'network-snapshot-000400.pkl')
    _write_pair(tmp_path / f'00001-{desc}' / 'network-snapshot-000200.pkl')
    _write_pair(tmp_path / f'00001-{desc}' / 'network-snapshot-000100.pkl')
    _touch(tmp_path / f'00002-{desc}' / 'network-snapshot-000300.pkl') # Killed before its state was written.
    _touch(tmp_path / f'00002-{desc}' / '.tmp-0123456789ab-network-snapshot-000400.pkl') # Killed while writing.
    _write_pair(tmp_path / f'00009-{desc}-other' / 'network-snapshot-000900.pkl')
    warnings = []
    pkl, state = snapshot.find_latest_snapshot(str(tmp_path), desc, warn=warnings.append)
    assert pkl == str(tmp_path / f'00001-{desc}' / 'network-snapshot-000200.pkl')
    assert state == str(tmp_path / f'00001-{desc}' / 'training-state-000200.pt')
    assert len(warnings) == 1 and 'network-snapshot-000300.pkl has no consistent training state' in warnings[0]
    for path in glob.glob(str(tmp_path / '*' / 'training-state-*.pt')):
        os.remove(path)
    assert snapshot.find_latest_snapshot(str(tmp_path), desc, warn=warnings.append) == (
        str(tmp_path / f'00002-{desc}' / 'network-snapshot-000300.pkl'), None)

def test_resume_latest_and_state_decision(data128, tmp_path):
    outdir = tmp_path / 'runs'
    result = invoke(tiny_args(outdir, data128, '--resume=latest', '--dry-run'))
    assert '--resume=latest: no snapshot of "shapenet-cars_128-gpus1-batch2-gamma0.3"' in result.output
    assert '"resume_pkl"' not in result.output

    # A previous run of the same configuration with a full training state: continued exactly.
    c_prev, desc = parse_config(tiny_args(outdir, data128))
    run_dir = outdir / f'00000-{desc}'
    pkl = str(run_dir / 'network-snapshot-000004.pkl')
    _write_pair(pkl, c_prev)
    c, _ = parse_config(tiny_args(outdir, data128, '--resume=latest', '--kimg=1', '--snap=5', '--workers=2'))
    assert (c.resume_pkl, c.resume_state) == (pkl, snapshot.state_path_for(pkl))
    assert 'ada_kimg' not in c and 'ema_rampup' not in c # Schedules continue: no resume changes.
    assert (c.loss_kwargs.blur_init_sigma, c.loss_kwargs.gpc_reg_fade_kimg) == (10, 1000)

    # A different training setup (e.g. the second, 128-px rendering stage): networks only, as the original.
    result = invoke(tiny_args(outdir, data128, f'--resume={pkl}', '--neural_rendering_resolution_final=32',
                              '--dry-run'))
    assert 'the training setup differs in loss_kwargs.neural_rendering_resolution_final' in result.output
    c, _ = parse_config(tiny_args(outdir, data128, f'--resume={pkl}', '--neural_rendering_resolution_final=32'))
    assert 'resume_state' not in c and (c.ada_kimg, c.ema_rampup, c.loss_kwargs.blur_init_sigma) == (100, None, 0)
    c, _ = parse_config(tiny_args(outdir, data128, f'--resume={pkl}', '--neural_rendering_resolution_final=32',
                                  '--resume-mode=full'))
    assert c.resume_state == snapshot.state_path_for(pkl)
    c, _ = parse_config(tiny_args(outdir, data128, f'--resume={pkl}', '--resume-mode=networks'))
    assert 'resume_state' not in c and c.ada_kimg == 100

    # A continued run inherits the resume-dependent settings of the run it continues.
    c_stage2, _ = parse_config(tiny_args(outdir, data128, f'--resume={pkl}', '--resume-mode=networks'))
    pkl2 = str(outdir / f'00001-{desc}' / 'network-snapshot-000008.pkl')
    _write_pair(pkl2, c_stage2)
    c, _ = parse_config(tiny_args(outdir, data128, '--resume=latest'))
    assert (c.resume_pkl, c.ada_kimg, c.ema_rampup, c.loss_kwargs.blur_init_sigma) == (pkl2, 100, None, 0)

    result = invoke(tiny_args(outdir, data128, f'--resume={tmp_path / "x" / "network-snapshot-000001.pkl"}'))
    assert result.exit_code == 1
    _touch(tmp_path / 'y.pkl')
    result = invoke(tiny_args(outdir, data128, f'--resume={tmp_path / "y.pkl"}', '--resume-mode=full'))
    assert result.exit_code == 1 and '--resume-mode=full: no training-state-KKKKKK.pt next to' in result.output

def test_deterministic_is_recorded_only_when_on(data128, tmp_path):
    c, _ = parse_config(tiny_args(tmp_path, data128))
    assert 'deterministic' not in c # Default: training_options.json as the original's.
    c, _ = parse_config(tiny_args(tmp_path, data128, '--deterministic=True'))
    assert c.deterministic is True and list(c)[-1] == 'deterministic'

def test_resume_latest_across_gpus_and_batch(data128, tmp_path):
    # A run on 2 processes (a SLURM job), requeued on another number of GPUs: the same run is continued.
    outdir = tmp_path / 'runs'
    c_prev, desc_prev = parse_config(tiny_args(outdir, data128, '--gpus=2', '--batch=4'))
    pkl = str(outdir / f'00000-{desc_prev}' / 'network-snapshot-000004.pkl')
    _write_pair(pkl, c_prev)
    result = invoke(tiny_args(outdir, data128, '--batch=4', '--resume=latest', '--dry-run'))
    assert f'--resume=latest: {pkl} (written with gpus=2; this run has gpus=1)\n' in result.output
    assert (f'Restoring the training state of {pkl}, written by 2 process(es), on 1: optimizers, counters and '
            f'augmentation continue;') in result.output
    c, desc = parse_config(tiny_args(outdir, data128, '--batch=4', '--resume=latest'))
    assert (c.resume_pkl, c.resume_state) == (pkl, snapshot.state_path_for(pkl))
    assert desc == 'shapenet-cars_128-gpus1-batch4-gamma0.3' # The continued run gets a folder of its own.

    # Another batch: found as well, but the state does not fit (EMA and blur lengths follow the batch).
    result = invoke(tiny_args(outdir, data128, '--resume=latest', '--dry-run'))
    assert f'--resume=latest: {pkl} (written with gpus=2, batch=4; this run has gpus=1, batch=2)\n' in result.output
    assert (f'Not restoring the training state of {pkl}: the training setup differs in batch_size, ema_kimg, '
            f'loss_kwargs.blur_fade_kimg.') in result.output
    c, _ = parse_config(tiny_args(outdir, data128, '--resume=latest'))
    assert c.resume_pkl == pkl and 'resume_state' not in c

    # Any other change of the configuration or the dataset is another run.
    for other in ['--gamma=1', '--desc=x']:
        result = invoke(tiny_args(outdir, data128, other, '--resume=latest', '--dry-run'))
        assert '--resume=latest: no snapshot of' in result.output, other

#----------------------------------------------------------------------------
# A short distributed run: 2 processes, gloo, CPU.

@pytest.mark.slow
def test_two_process_training_run(data128, tmp_path):
    outdir = tmp_path / 'runs'
    result = invoke(tiny_args(outdir, data128, '--gpus=2', '--batch-gpu=1', '--mbstd-group=1', '--gen_pose_cond=True',
                              '--neural_rendering_resolution_final=24', '--neural_rendering_resolution_fade_kimg=0'))
    assert result.exit_code == 0, result.output
    run_dir, = glob.glob(str(outdir / '00000-shapenet-cars_128-gpus2-batch2-gamma0.3'))
    names = sorted(os.listdir(run_dir))
    assert [name for name in names if name.startswith('.')] == [] # No temporary files left behind.
    for name in ['training_options.json', 'log.txt', 'stats.jsonl', 'reals.png',
                 'fakes000000.png', 'fakes000000_raw.png', 'fakes000000_depth.png', 'network-snapshot-000000.pkl',
                 'training-state-000000.pt']:
        assert name in names
    assert 'fakes_init.png' not in names  # the original (EG3D) does not write it
    assert any(name.startswith('events.out.tfevents.') for name in names)

    options = json.load(open(os.path.join(run_dir, 'training_options.json')))
    assert (options['num_gpus'], options['batch_gpu'], options['run_dir']) == (2, 1, run_dir)
    log = open(os.path.join(run_dir, 'log.txt')).read()
    assert 'Distributing across 2 GPUs...' in log and 'tick 1 ' in log and 'Exiting...' in log

    lines = [json.loads(line) for line in open(os.path.join(run_dir, 'stats.jsonl'))]
    assert len(lines) == 2 and list(lines[0])[-1] == 'timestamp'
    for key in ['Loss/G/loss', 'Loss/D/loss', 'Loss/r1_penalty', 'Loss/D/reg', 'Loss/scores/real', 'Loss/scores/fake']:
        assert math.isfinite(lines[0][key]['mean']), key
    # Both ranks' values are summed: tick 0 saw 2 chunks of Gmain (one per rank), each 1 sample.
    assert lines[0]['Loss/G/loss']['num'] == 2
    assert lines[1]['Progress/kimg']['mean'] == pytest.approx(0.004)

    data = legacy.load_network_pkl(os.path.join(run_dir, 'network-snapshot-000000.pkl'))
    assert set(data) == {'training_set_kwargs', 'G', 'D', 'G_ema', 'augment_pipe'}
    assert data['G_ema'].neural_rendering_resolution == 24 # Fade of length 0: the final resolution at once.
    assert all(torch.isfinite(p).all() for p in data['G'].parameters())
    # Snapshots at tick 0 (2 images) and at the end (4 images): the second name carries its image count.
    state = snapshot.load_training_state(os.path.join(run_dir, 'training-state-000000_004.pt'))
    assert (state['cur_nimg'], state['cur_tick'], state['batch_idx'], state['num_gpus']) == (4, 2, 2, 2)
    assert snapshot.pair_problem(os.path.join(run_dir, 'network-snapshot-000000_004.pkl')) is None
    assert len(state['per_rank']) == 2
    # Each rank has its own RNG stream (seed * W + rank).
    assert not torch.equal(state['per_rank'][0]['rng']['torch'], state['per_rank'][1]['rng']['torch'])

#----------------------------------------------------------------------------
#----------------------------------------------------------------------------
# Inputs checked before anything is created (one line naming the file or flag, non-zero exit, no run folder).

def _error_line(result):
    lines = [line for line in result.output.splitlines() if line.startswith('Error:')]
    assert len(lines) == 1, result.output
    return lines[0]

@pytest.mark.parametrize('content, problem', [(None, 'truncated file'), (b'just some text\n', 'cannot read')])
def test_unreadable_resume_pickle_fails_at_start(data128, tmp_path, content, problem):
    pkl = tmp_path / 'prev.pkl'
    if content is None: # A real pickle, cut short.
        payload = pickle.dumps(dict(G=list(range(10000))))
        content = payload[:len(payload) // 2]
    pkl.write_bytes(content)
    result = invoke(tiny_args(tmp_path / 'runs', data128, f'--resume={pkl}'))
    assert result.exit_code == 1
    line = _error_line(result)
    assert line.startswith(f'Error: --resume: {pkl}') and problem in line
    assert not (tmp_path / 'runs').exists()

def test_dry_run_with_missing_resume_file_warns(data128, tmp_path):
    missing = tmp_path / 'gone' / 'network-snapshot-000100.pkl'
    result = invoke(tiny_args(tmp_path / 'runs', data128, f'--resume={missing}', '--dry-run'))
    assert result.exit_code == 0, result.output
    assert f'Warning: --resume: {missing}: no such file' in result.output
    assert f'"resume_pkl": "{missing}"' in result.output and 'Dry run; exiting.' in result.output
    result = invoke(tiny_args(tmp_path / 'runs', data128, f'--resume={missing}'))
    assert result.exit_code == 1 and _error_line(result) == f'Error: --resume: {missing}: no such file'
    assert not (tmp_path / 'runs').exists()

@pytest.mark.parametrize('flag', ['--gamma=nan', '--gamma=inf', '--dlr=nan', '--density_reg_every=inf', '--kimg=nan',
                                  '--tick=-1'])
def test_non_finite_numbers_are_refused(data128, tmp_path, flag):
    result = invoke(tiny_args(tmp_path / 'runs', data128, flag))
    assert result.exit_code == 2
    assert flag.split('=')[0] in _error_line(result)
    assert not (tmp_path / 'runs').exists()

def test_trust_embedded_code_reaches_the_loader(data128, tmp_path, monkeypatch):
    pkl = tmp_path / 'fork.pkl'
    pkl.write_bytes(b'stand-in')
    seen = []
    monkeypatch.setattr(train.network_pickle, 'open_network_pkl', lambda path, **kwargs: seen.append(kwargs))
    monkeypatch.setattr(train.sections, 'describe_resume_differences', lambda c, resumed: [])
    c, _ = parse_config(tiny_args(tmp_path, data128, f'--resume={pkl}', '--trust-embedded-code'))
    assert c.trust_embedded_code is True and list(c)[-1] == 'trust_embedded_code'
    train.check_resume_pickle(c)
    assert seen == [dict(trust_embedded_code=True)]
    c, _ = parse_config(tiny_args(tmp_path, data128, f'--resume={pkl}'))
    assert 'trust_embedded_code' not in c # Default: training_options.json as the original's.
    train.check_resume_pickle(c)
    assert seen[-1] == dict(trust_embedded_code=False)

# The two tests below need ImageFolderDataset's checks at open time and its validate() (datasets branch).

def test_dataset_listing_a_missing_file_fails_at_start(tmp_path):
    data = make_dataset(tmp_path / 'cars_128', num_images=3)
    os.remove(os.path.join(data, 'img0001.png'))
    result = invoke(tiny_args(tmp_path / 'runs', data, '--dry-run'))
    assert result.exit_code == 1
    line = _error_line(result)
    assert line.startswith('Error: --data: ') and 'img0001.png' in line
    assert not (tmp_path / 'runs').exists()

def test_dataset_with_odd_image_fails_at_start(tmp_path):
    data = make_dataset(tmp_path / 'cars_128', num_images=3)
    PIL.Image.new('RGB', (64, 64)).save(os.path.join(data, 'img0002.png'))
    result = invoke(tiny_args(tmp_path / 'runs', data))
    assert result.exit_code == 1
    line = _error_line(result)
    assert line.startswith('Error: --data: ') and 'img0002.png' in line
    assert not (tmp_path / 'runs').exists()

#----------------------------------------------------------------------------

#----------------------------------------------------------------------------
# Opt-in speed modes.

def test_speed_modes_enter_the_config_only_when_asked(data128, tmp_path):
    c, _desc = parse_config(tiny_args(tmp_path / 'runs', data128))
    assert 'fast_modes' not in c and 'foreach' not in c.G_opt_kwargs and 'fused' not in c.D_opt_kwargs
    c, _desc = parse_config(tiny_args(tmp_path / 'runs', data128, '--tf32=True', '--precision=bf16', '--adam=foreach'))
    assert c.fast_modes == dict(tf32=True, compile=False, precision='bf16')
    assert c.G_opt_kwargs.foreach is True and c.D_opt_kwargs.foreach is True
    assert c.G_opt_kwargs.lr == 0.0025 and c.D_opt_kwargs.betas == [0, 0.99]

@pytest.mark.slow
def test_tiny_run_with_speed_modes(data128, tmp_path):
    # Statistics already collected in this process (as by an earlier in-process run) must not stop a new run.
    training_stats.report('EarlierRun/in_this_process', 1.0)
    training_stats.Collector(regex='.*')
    outdir = tmp_path / 'runs'
    result = invoke(tiny_args(outdir, data128, '--precision=bf16', '--adam=foreach', '--kimg=0.002'))
    assert result.exit_code == 0, result.output
    run_dir, = [entry.path for entry in os.scandir(outdir)]
    with open(os.path.join(run_dir, 'training_options.json')) as f:
        options = json.load(f)
    assert options['fast_modes'] == dict(tf32=False, compile=False, precision='bf16')
    assert options['G_opt_kwargs']['foreach'] is True
    G = legacy.load_network_pkl(os.path.join(run_dir, 'network-snapshot-000000.pkl'))['G']
    assert G.decoder._compiled_call_impl is None  # The training G was wrapped; wrappers never travel in snapshots.
