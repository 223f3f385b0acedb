"""calc_metrics.py end to end (in-process) with the stand-ins of test_metrics.py: tiny TorchScript
detector, tiny labelled dataset and a generator replaying dataset images; the network loader is
replaced so that the stand-in generator can be served from a pickle path."""

import json
import os

import pytest
from click.testing import CliRunner
from helpers import ReplayGenerator, dataset_kwargs, make_metric_dataset, small_fid_metric, tiny_args, write_detectors
from helpers import invoke as invoke_train
from helpers import make_dataset as make_training_dataset

import calc_metrics
from metrics import frechet_inception_distance, metric_main, metric_utils
from training import network_pickle

pytestmark = [pytest.mark.filterwarnings('ignore:This DataLoader will create'), pytest.mark.filterwarnings('ignore:`torch.jit')]

#----------------------------------------------------------------------------

@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv(metric_utils.DETECTOR_DIR_ENV, str(tmp_path / 'detectors'))
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    write_detectors(tmp_path / 'detectors')
    images, _cams = make_metric_dataset(tmp_path / 'data')
    make_metric_dataset(tmp_path / 'unlabelled', labels=False)

    # A training run dir holding a snapshot whose stored dataset options are in training order.
    run_dir = tmp_path / 'runs' / '00000-ffhq-data-gpus1'
    run_dir.mkdir(parents=True)
    (run_dir / 'training_options.json').write_text('{}')
    snapshot = run_dir / 'network-snapshot-000000.pkl'
    snapshot.write_bytes(b'stand-in')
    training_set_kwargs = dict(dataset_kwargs(tmp_path / 'data'), max_size=12)
    loaded = dict(G_ema=ReplayGenerator(images), training_set_kwargs=training_set_kwargs)
    loader_kwargs = [] # What calc_metrics passes to the loader.

    def open_network_pkl(network_pkl, **kwargs):
        loader_kwargs.append(kwargs)
        if os.path.basename(network_pkl) == 'broken.pkl':
            return real_open_network_pkl(network_pkl, **kwargs)
        return dict(loaded)
    real_open_network_pkl = network_pickle.open_network_pkl
    monkeypatch.setattr(network_pickle, 'open_network_pkl', open_network_pkl)
    # fid50k_full's settings with 120 generated images (test_metrics checks the registered metrics' settings).
    monkeypatch.setitem(metric_main._metric_dict, 'fid120_full', small_fid_metric)
    loaded['loader_kwargs'] = loader_kwargs
    return tmp_path, run_dir, snapshot, loaded

def run(*args):
    return CliRunner().invoke(calc_metrics.calc_metrics, [str(a) for a in args])

def error_line(result):
    lines = result.output.strip().splitlines()
    return lines[-1]

#----------------------------------------------------------------------------

def test_snapshot_in_run_dir(setup):
    tmp_path, run_dir, snapshot, _loaded = setup
    result = run(f'--network={snapshot}', '--metrics', 'fid120_full')
    assert result.exit_code == 0, result.output
    for text in ['Loading network from', 'Dataset options:', 'Calculating fid120_full...', 'generator features  items 120',
                 'dataset features    items 12', 'Exiting...']:
        assert text in result.output

    with open(run_dir / 'metric-fid120_full.jsonl') as f:
        lines = f.read().splitlines()
    assert len(lines) == 1 and lines[0] in result.output
    record = json.loads(lines[0])
    assert record['snapshot_pkl'] == 'network-snapshot-000000.pkl'
    assert abs(record['results']['fid120_full']) < 1e-6 and record['num_real'] == 12 and record['num_fake'] == 120

    # Dataset options: the pickle's (training key order), resolution/use_labels re-set, max_size cleared by the metric.
    expected = dataset_kwargs(tmp_path / 'data')
    md5 = metric_utils.stats_cache_md5(expected, frechet_inception_distance.INCEPTION_URL, dict(return_features=True), dict(capture_mean_cov=True))
    assert record['dataset_hash'] == md5
    assert os.listdir(tmp_path / 'cache' / 'gan-metrics') == [f'data-inception-2015-12-05-{md5}.pkl']

def test_data_and_mirror_flags(setup):
    tmp_path, _run_dir, _snapshot, _loaded = setup
    network = tmp_path / 'elsewhere.pkl'
    network.write_bytes(b'stand-in')
    result = run(f'--network={network}', f'--data={tmp_path / "data"}', '--mirror=1', '--metrics=none')
    assert result.exit_code == 0, result.output
    options = json.loads(result.output[result.output.index('{'):result.output.index('}') + 1])
    assert list(options.items()) == [('class_name', 'training.dataset.ImageFolderDataset'), ('path', str(tmp_path / 'data')),
                                     ('resolution', 8), ('use_labels', True), ('xflip', True)]
    assert 'Calculating' not in result.output and not os.path.exists(tmp_path / 'cache')
    result = run(f'--network={network}', f'--data={tmp_path / "data"}', '--mirror=1', '--mirror-cameras=1', '--metrics=none')
    options = json.loads(result.output[result.output.index('{'):result.output.index('}') + 1])
    assert list(options)[-2:] == ['xflip', 'mirror_cameras'] and options['mirror_cameras'] is True

@pytest.mark.parametrize('flags, message', [
    (['--metrics=fid1k'], 'Error: --metrics: unknown metric fid1k (valid: ' + ', '.join(metric_main.list_valid_metrics())),
    (['--metrics=fid50k_full,ppl2_wend'], 'Error: --metrics: ppl2_wend: perceptual path length is not supported for EG3D generators'),
    (['--metrics=eqr50k'], 'Error: --metrics: eqr50k: equivariance metrics are not supported for EG3D generators'),
    (['--gpus=0'], 'Error: --gpus must be at least 1'),
])
def test_usage_errors(setup, flags, message):
    _tmp_path, _run_dir, snapshot, _loaded = setup
    result = run(f'--network={snapshot}', *flags)
    assert result.exit_code == 2 and message in result.output

def test_missing_network_and_dataset_options(setup):
    tmp_path, _run_dir, snapshot, loaded = setup
    result = run(f'--network={tmp_path / "missing.pkl"}')
    assert result.exit_code == 2 and error_line(result) == f'Error: --network must point to a file or URL: {tmp_path / "missing.pkl"}'
    loaded['training_set_kwargs'] = None
    result = run(f'--network={snapshot}')
    assert result.exit_code == 2 and error_line(result) == 'Error: Could not look up dataset options; please specify --data'

def test_runtime_errors_are_one_line(setup):
    tmp_path, _run_dir, snapshot, loaded = setup
    broken = tmp_path / 'broken.pkl'
    broken.write_bytes(b'\x80\x04garbage')
    result = run(f'--network={broken}', '--verbose=false')
    assert result.exit_code == 1 and error_line(result).startswith(f'Error: --network: {broken}: cannot read the network pickle')

    result = run(f'--network={snapshot}', f'--data={tmp_path / "nowhere"}', '--verbose=false')
    assert result.exit_code == 1 and error_line(result) == f'Error: --data: {tmp_path / "nowhere"}: no such file or directory'

    result = run(f'--network={snapshot}', f'--data={tmp_path / "unlabelled"}', '--verbose=false')
    assert result.exit_code == 1
    assert error_line(result) == (f'Error: --data: {tmp_path / "unlabelled"}: dataset labels have 0 numbers, '
                                  f'the network expects c_dim = 25 (labels come from dataset.json)')

    loaded['training_set_kwargs'] = dict(loaded['training_set_kwargs'], path='datasets/moved.zip')
    result = run(f'--network={snapshot}', '--verbose=false')
    assert result.exit_code == 1 and error_line(result) == ("Error: dataset of the pickle's training_set_kwargs (--data overrides it): "
                                                            "datasets/moved.zip: no such file or directory")

    os.remove(tmp_path / 'detectors' / 'inception-2015-12-05.pkl')
    result = run(f'--network={snapshot}', f'--data={tmp_path / "data"}', '--verbose=false')
    assert result.exit_code == 1
    assert error_line(result).startswith(f'Error: {tmp_path / "detectors" / "inception-2015-12-05.pkl"}: no such file')

#----------------------------------------------------------------------------

def test_trust_embedded_code_reaches_the_loader(setup):
    _tmp_path, _run_dir, snapshot, loaded = setup
    assert run(f'--network={snapshot}', '--metrics=none').exit_code == 0
    assert run(f'--network={snapshot}', '--metrics=none', '--trust-embedded-code').exit_code == 0
    assert loaded['loader_kwargs'] == [dict(trust_embedded_code=False), dict(trust_embedded_code=True)]

#----------------------------------------------------------------------------
# Training-time metrics equal calc_metrics.py on the same snapshot.

def fid_as_configured(opts):
    """fid50k's settings (the dataset as configured, x-flips included) with 12 generated images, in batches of 4."""
    opts.dataset_kwargs.update(max_size=None)
    url, detector_kwargs = frechet_inception_distance.INCEPTION_URL, dict(return_features=True)
    real = metric_utils.compute_feature_stats_for_dataset(opts, url, detector_kwargs, capture_mean_cov=True)
    fake = metric_utils.compute_feature_stats_for_generator(opts, url, detector_kwargs, batch_size=4, capture_mean_cov=True,
                                                           max_items=12)
    return dict(fid12=frechet_inception_distance.fid_from_stats(*real.get_mean_cov(), *fake.get_mean_cov()))
fid_as_configured.__name__ = 'fid12'

@pytest.mark.slow
def test_training_metric_equals_calc_metrics_on_the_snapshot(tmp_path, monkeypatch):
    monkeypatch.setenv(metric_utils.DETECTOR_DIR_ENV, str(tmp_path / 'detectors'))
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    write_detectors(tmp_path / 'detectors')
    monkeypatch.setitem(metric_main._metric_dict, 'fid12', fid_as_configured)
    data = make_training_dataset(tmp_path / 'cars_128', num_images=4)
    # A real training run (tiny CPU configuration) with mirrored items and cameras, evaluating its snapshot.
    result = invoke_train(tiny_args(tmp_path / 'runs', data, '--kimg=0.002', '--mirror=1', '--metrics=fid12',
                                    '--metrics-seed=7'))
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / 'runs' / '00000-shapenet-cars_128-gpus1-batch2-gamma0.3'
    snapshot = run_dir / 'network-snapshot-000000.pkl'
    assert json.load(open(run_dir / 'training_options.json'))['training_set_kwargs']['mirror_cameras'] is True

    # The same options: the pickle's dataset (so its --mirror handling), G_ema, metric, number of images and seed.
    assert run(f'--network={snapshot}', '--metrics=fid12', '--seed=7', '--verbose=false').exit_code == 0
    assert run(f'--network={snapshot}', '--metrics=fid12', '--seed=8', '--verbose=false').exit_code == 0
    assert run(f'--network={snapshot}', '--metrics=fid12', '--verbose=false').exit_code == 0
    training, again, other_seed, unseeded = [json.loads(line) for line in open(run_dir / 'metric-fid12.jsonl')]
    assert training['results'] == again['results'] and training['results']['fid12'] > 0
    reproducible = ('snapshot_pkl', 'dataset', 'mirror', 'mirror_cameras', 'num_gpus', 'seed', 'num_real', 'num_fake',
                    'dataset_hash')
    assert {key: training[key] for key in reproducible} == {key: again[key] for key in reproducible} == dict(
        snapshot_pkl='network-snapshot-000000.pkl', dataset=data, mirror=True, mirror_cameras=True, num_gpus=1, seed=7,
        num_real=8, num_fake=12, dataset_hash=training['dataset_hash'])
    # Other latents give another number: without a seed, the training's global random streams decide them.
    assert other_seed['results'] != training['results'] and other_seed['seed'] == 8
    assert unseeded['seed'] is None
