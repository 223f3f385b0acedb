"""Metrics with stand-ins: a tiny TorchScript detector (uint8 NCHW in, like the official Inception/VGG
files), a tiny labelled dataset in dataset.json format and a fake generator. Every number is checked
against an independent NumPy/SciPy computation on the same features."""

import io
import json
import os
import pickle
import tempfile

import numpy as np
import pytest
import scipy.linalg
import scipy.special
import torch
from helpers import ReplayGenerator, dataset_kwargs, make_metric_dataset, small_fid_metric, write_detectors

import dnnlib
from metrics import (
    frechet_inception_distance,
    inception_score,
    kernel_inception_distance,
    metric_main,
    metric_utils,
    precision_recall,
)
from training import cameras

# The default 3 data-loader workers exceed this machine's suggestion; TorchScript is used on purpose.
pytestmark = [pytest.mark.filterwarnings('ignore:This DataLoader will create'), pytest.mark.filterwarnings('ignore:`torch.jit')]

#----------------------------------------------------------------------------
# Stand-ins (also used by test_calc_metrics.py).


class FakeGenerator(torch.nn.Module):
    """G(z, c)['image'] in roughly [-1.2, 1.2] (exercises the clamp); logs every call in FakeGenerator.calls."""
    calls = []

    def __init__(self, z_dim=16, c_dim=25, img_resolution=8, img_channels=3):
        super().__init__()
        self.z_dim, self.c_dim, self.img_resolution, self.img_channels = z_dim, c_dim, img_resolution, img_channels
        self.proj = torch.nn.Linear(z_dim + c_dim, img_channels * img_resolution * img_resolution)
        torch.nn.init.normal_(self.proj.weight, std=0.2, generator=torch.Generator().manual_seed(2))

    def forward(self, z, c, **kwargs):
        img = torch.tanh(self.proj(torch.cat([z, c], dim=1))) * 1.2
        img = img.reshape(-1, self.img_channels, self.img_resolution, self.img_resolution)
        FakeGenerator.calls.append(dict(z=z.clone(), c=c.clone(), image=img.clone()))
        return dict(image=img)


#----------------------------------------------------------------------------

@pytest.fixture
def env(tmp_path, monkeypatch):
    """Detector files in an override folder, a fresh statistics cache and a 12-image dataset."""
    monkeypatch.setenv(metric_utils.DETECTOR_DIR_ENV, str(tmp_path / 'detectors'))
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    detector = write_detectors(tmp_path / 'detectors')
    images, cams = make_metric_dataset(tmp_path / 'data')
    FakeGenerator.calls.clear()
    return dnnlib.EasyDict(detector=detector, images=images, cams=cams, dataset_kwargs=dataset_kwargs(tmp_path / 'data'), tmp_path=tmp_path)

def make_opts(env, G=None, **kwargs):
    return metric_utils.MetricOptions(G=G if G is not None else FakeGenerator(), dataset_kwargs=env.dataset_kwargs, device='cpu', **kwargs)

def features_of(detector, images, **kwargs):
    return detector(torch.as_tensor(images), **(kwargs or dict(return_features=True))).numpy().astype(np.float64)

def generated_uint8():
    img = torch.cat([call['image'] for call in FakeGenerator.calls])
    return (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)

NO_WORKERS = dict(num_workers=0)

#----------------------------------------------------------------------------

def test_registry_names_and_order():
    assert metric_main.list_valid_metrics() == ['fid50k_full', 'kid50k_full', 'pr50k3_full', 'ppl2_wend', 'eqt50k_int',
                                                'eqt50k_frac', 'eqr50k', 'fid50k', 'kid50k', 'pr50k3', 'is50k']
    assert metric_main.is_valid_metric('eqr50k') and not metric_main.is_valid_metric('fid10k')
    assert metric_main.is_supported_metric('is50k') and not metric_main.is_supported_metric('ppl2_wend')

@pytest.mark.parametrize('metric, module, expected_kwargs, expected_call, result_keys', [
    ('fid50k_full', 'frechet_inception_distance.compute_fid', dict(max_size=None, xflip=False), dict(max_real=None, num_gen=50000), ['fid50k_full']),
    ('kid50k_full', 'kernel_inception_distance.compute_kid', dict(max_size=None, xflip=False),
     dict(max_real=1000000, num_gen=50000, num_subsets=100, max_subset_size=1000), ['kid50k_full']),
    ('pr50k3_full', 'precision_recall.compute_pr', dict(max_size=None, xflip=False),
     dict(max_real=200000, num_gen=50000, nhood_size=3, row_batch_size=10000, col_batch_size=10000), ['pr50k3_full_precision', 'pr50k3_full_recall']),
    ('fid50k', 'frechet_inception_distance.compute_fid', dict(max_size=None, xflip=True), dict(max_real=50000, num_gen=50000), ['fid50k']),
    ('kid50k', 'kernel_inception_distance.compute_kid', dict(max_size=None, xflip=True),
     dict(max_real=50000, num_gen=50000, num_subsets=100, max_subset_size=1000), ['kid50k']),
    ('pr50k3', 'precision_recall.compute_pr', dict(max_size=None, xflip=True),
     dict(max_real=50000, num_gen=50000, nhood_size=3, row_batch_size=10000, col_batch_size=10000), ['pr50k3_precision', 'pr50k3_recall']),
    ('is50k', 'inception_score.compute_is', dict(max_size=None, xflip=False), dict(num_gen=50000, num_splits=10), ['is50k_mean', 'is50k_std']),
])
def test_registered_metric_settings(monkeypatch, metric, module, expected_kwargs, expected_call, result_keys):
    seen = []
    def fake_compute(opts, **kwargs):
        seen.append((dict(opts.dataset_kwargs), kwargs))
        return (0.25, 0.5) if len(result_keys) == 2 else 0.25
    module_name, fn_name = module.split('.')
    monkeypatch.setattr(getattr(metric_main, module_name), fn_name, fake_compute)
    result = metric_main.calc_metric(metric, G=None, dataset_kwargs=dict(path='x.zip', max_size=7, xflip=True), device='cpu')
    assert seen == [(dict(path='x.zip', **expected_kwargs), expected_call)]
    assert list(result.results) == result_keys

@pytest.mark.parametrize('metric, words', [('ppl2_wend', 'camera label'), ('eqt50k_int', 'G.synthesis.input.transform'),
                                           ('eqt50k_frac', 'equivariance'), ('eqr50k', 'EG3D')])
def test_unsupported_metrics_rejected_before_any_work(metric, words):
    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError('the generator must not be used')
    with pytest.raises(ValueError, match=f'^{metric}: .*{words}'):
        metric_main.calc_metric(metric, G=Untouchable(), dataset_kwargs={}, device='cpu')
    with pytest.raises(ValueError, match='fid1k: unknown metric; valid names: fid50k_full, '):
        metric_main.calc_metric('fid1k')

def test_stats_cache_md5_matches_released_cache_names():
    url = frechet_inception_distance.INCEPTION_URL
    training = dict(class_name='training.dataset.ImageFolderDataset', path='datasets/FFHQ_512.zip', use_labels=True,
                    max_size=None, xflip=False, resolution=512, random_seed=0)
    assert metric_utils.stats_cache_md5(training, url, dict(return_features=True), dict(capture_mean_cov=True)) == '097bdc339a22ca83688a47ae17dc723e'
    assert metric_utils.stats_cache_md5(training, url, dict(return_features=True), dict(capture_all=True)) == '10d06fab4b6363f020a69307525cc877'
    calc = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path='datasets/FFHQ_512.zip', resolution=512,
                           use_labels=True, max_size=None, xflip=False)
    assert metric_utils.stats_cache_md5(calc, url, dict(return_features=True), dict(capture_mean_cov=True)) == '3fe9d26200dddadd34042f476e63bbb6'
    # Mirrored cameras change labels, not images: the same statistics file.
    mirrored = dict(training, xflip=True)
    assert metric_utils.stats_cache_md5(dict(mirrored, mirror_cameras=True), url, dict(return_features=True), dict(capture_mean_cov=True)) == \
        metric_utils.stats_cache_md5(mirrored, url, dict(return_features=True), dict(capture_mean_cov=True))

def test_generator_labels_of_mirrored_items_are_mirrored_cameras(env):
    opts = metric_utils.MetricOptions(G=FakeGenerator(), dataset_kwargs=dict(env.dataset_kwargs, xflip=True, mirror_cameras=True), device='cpu')
    labels = metric_utils.iterate_random_labels(opts, batch_size=4)
    np.random.seed(7)
    drawn = np.concatenate([next(labels).numpy() for _ in range(10)])
    np.random.seed(7)
    indices = [np.random.randint(24) for _ in range(40)]  # 12 images and their mirrored copies.
    expected = [env.cams[i] if i < 12 else cameras.mirror_label(env.cams[i - 12]).astype(np.float32) for i in indices]
    assert any(i >= 12 for i in indices)
    np.testing.assert_array_equal(drawn, np.stack(expected))

def test_fid_of_a_set_against_itself_is_zero(env):
    opts = make_opts(env, G=ReplayGenerator(env.images))
    fid = frechet_inception_distance.compute_fid(opts, max_real=None, num_gen=len(env.images))
    assert abs(fid) < 1e-6

def test_fid_matches_independent_computation(env):
    opts = make_opts(env)
    fid = frechet_inception_distance.compute_fid(opts, max_real=None, num_gen=100)
    real = features_of(env.detector, env.images)
    gen = features_of(env.detector, generated_uint8()[:100])
    assert len(FakeGenerator.calls) == 32 # Two detector batches of 16 calls x 4 images; the surplus is dropped.
    mu_r, mu_g = real.mean(0), gen.mean(0)
    cov_r, cov_g = np.cov(real, rowvar=False, bias=True), np.cov(gen, rowvar=False, bias=True)
    expected = np.sum((mu_r - mu_g) ** 2) + np.trace(cov_r) + np.trace(cov_g) - 2 * np.trace(scipy.linalg.sqrtm(cov_g @ cov_r)).real
    assert fid == pytest.approx(expected, rel=1e-5, abs=1e-9)
    assert opts.details == dict(num_real=12, num_fake=100, camera_source='dataset_labels', dataset_name='data',
                                dataset_hash=metric_utils.stats_cache_md5(env.dataset_kwargs, frechet_inception_distance.INCEPTION_URL,
                                                                          dict(return_features=True), dict(capture_mean_cov=True)),
                                dataset=None, mirror=None, mirror_cameras=None, seed=None)  # The last four: calc_metric().

def test_kid_matches_unbiased_mmd(env):
    # With subsets as large as both sets every subset is a permutation, so KID is the plain unbiased MMD^2.
    opts = make_opts(env)
    kid = kernel_inception_distance.compute_kid(opts, max_real=None, num_gen=12, num_subsets=3, max_subset_size=1000)
    x = features_of(env.detector, generated_uint8()[:12])
    y = features_of(env.detector, env.images)
    m, d = 12, x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** 3
    off_diag = lambda a: a.sum() - np.trace(a)
    expected = (off_diag(k(x, x)) + off_diag(k(y, y))) / (m * (m - 1)) - 2 * k(x, y).sum() / m ** 2
    assert kid == pytest.approx(expected, rel=1e-4, abs=1e-9)

def test_kid_subsets_follow_numpy_rng():
    rng = np.random.RandomState(0)
    real, gen = rng.randn(30, 5).astype(np.float32), rng.randn(20, 5).astype(np.float32) + 0.3
    np.random.seed(7)
    kid = kernel_inception_distance.kid_from_features(real, gen, num_subsets=4, max_subset_size=8)
    np.random.seed(7)
    values = []
    for _ in range(4):
        x = gen[np.random.choice(20, 8, replace=False)].astype(np.float64)
        y = real[np.random.choice(30, 8, replace=False)].astype(np.float64)
        kxx, kyy, kxy = [(a @ b.T / 5 + 1) ** 3 for a, b in [(x, x), (y, y), (x, y)]]
        values.append((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / 56 - 2 * kxy.mean())
    assert kid == pytest.approx(np.mean(values), rel=1e-4)

def _coverage_reference(manifold, probes, k):
    dist = lambda a, b: np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)).astype(np.float16)
    radii = np.sort(dist(manifold, manifold).astype(np.float32), axis=1)[:, k].astype(np.float16)
    return float((dist(probes, manifold) <= radii[None, :]).any(axis=1).mean())

def test_precision_recall_match_independent_computation(env):
    opts = make_opts(env)
    torch.manual_seed(0)
    np.random.seed(0)
    precision, recall = precision_recall.compute_pr(opts, max_real=None, num_gen=40, nhood_size=3, row_batch_size=7, col_batch_size=5)
    real = features_of(env.detector, env.images).astype(np.float16).astype(np.float32)
    gen = features_of(env.detector, generated_uint8()[:40]).astype(np.float16).astype(np.float32)
    assert precision == pytest.approx(_coverage_reference(real, gen, k=3), rel=1e-6) # The mean is taken in float32.
    assert recall == pytest.approx(_coverage_reference(gen, real, k=3), rel=1e-6)
    assert 0 < precision < 1 and 0 < recall < 1

def test_inception_score_matches_independent_computation(env):
    opts = make_opts(env)
    mean, std = inception_score.compute_is(opts, num_gen=30, num_splits=3)
    probs = features_of(env.detector, generated_uint8()[:30], no_output_bias=True)
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    scores = [np.exp(scipy.special.rel_entr(p, p.mean(0, keepdims=True)).sum(1).mean()) for p in np.split(probs, 3)]
    assert mean == pytest.approx(np.mean(scores), rel=1e-5)
    assert std == pytest.approx(np.std(scores), rel=1e-4, abs=1e-7)

def test_cameras_and_latents_are_drawn_in_the_released_order(env):
    opts = make_opts(env)
    np.random.seed(123)
    torch.manual_seed(5)
    metric_utils.compute_feature_stats_for_generator(opts, frechet_inception_distance.INCEPTION_URL, dict(return_features=True),
                                                     capture_mean_cov=True, max_items=8)
    assert len(FakeGenerator.calls) == 16 and all(call['z'].shape == (4, 16) for call in FakeGenerator.calls)
    np.random.seed(123)
    torch.manual_seed(5)
    for call in FakeGenerator.calls:
        assert torch.equal(call['z'], torch.randn([4, 16])) # z first ...
        expected_c = np.stack([env.cams[np.random.randint(12)] for _ in range(4)]) # ... then one dataset label per sample.
        assert np.array_equal(call['c'].numpy(), expected_c)

def test_unconditional_generator_gets_empty_labels(env):
    opts = make_opts(env, G=FakeGenerator(c_dim=0))
    stats = metric_utils.compute_feature_stats_for_generator(opts, frechet_inception_distance.INCEPTION_URL, dict(return_features=True),
                                                             capture_all=True, max_items=4)
    assert stats.num_items == 4 and FakeGenerator.calls[0]['c'].shape == (4, 0)
    assert opts.details.camera_source == 'none'

def test_real_images_are_the_first_items(env):
    opts = make_opts(env)
    stats = metric_utils.compute_feature_stats_for_dataset(opts, frechet_inception_distance.INCEPTION_URL, dict(return_features=True),
                                                           batch_size=4, data_loader_kwargs=NO_WORKERS, capture_all=True, max_items=5)
    assert stats.num_items == 5
    assert np.allclose(stats.get_all(), features_of(env.detector, env.images[:5]), atol=1e-6)

def test_statistics_cache_file_and_hit(env, monkeypatch):
    url, det_kwargs = frechet_inception_distance.INCEPTION_URL, dict(return_features=True)
    first = metric_utils.compute_feature_stats_for_dataset(make_opts(env), url, det_kwargs, capture_mean_cov=True)
    md5 = metric_utils.stats_cache_md5(env.dataset_kwargs, url, det_kwargs, dict(capture_mean_cov=True))
    cache_file = env.tmp_path / 'cache' / 'gan-metrics' / f'data-inception-2015-12-05-{md5}.pkl'
    assert sorted(os.listdir(cache_file.parent)) == [cache_file.name]
    with open(cache_file, 'rb') as f:
        content = pickle.load(f)
    assert list(content) == ['capture_all', 'capture_mean_cov', 'max_items', 'num_items', 'num_features', 'all_features', 'raw_mean', 'raw_cov']
    assert content['num_items'] == 12 and content['all_features'] == [] and content['raw_cov'].dtype == np.float64

    def no_loading(*args, **kwargs):
        raise AssertionError('dataset images read despite a cached result')
    with monkeypatch.context() as patch:
        patch.setattr(torch.utils.data, 'DataLoader', no_loading)
        second = metric_utils.compute_feature_stats_for_dataset(make_opts(env), url, det_kwargs, capture_mean_cov=True)
    assert np.array_equal(second.raw_cov, first.raw_cov) and second.num_items == 12

    # The key has no item count: a request for fewer images finds this file, recomputes in memory, keeps the file.
    with pytest.warns(UserWarning, match='holds 12 images, this metric uses 5'):
        fewer = metric_utils.compute_feature_stats_for_dataset(make_opts(env), url, det_kwargs, max_items=5, capture_mean_cov=True)
    assert fewer.num_items == 5
    with open(cache_file, 'rb') as f:
        assert pickle.load(f)['num_items'] == 12


def test_calc_metric_record_and_report(env, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(metric_main._metric_dict, 'fid120_full', small_fid_metric)
    result = metric_main.calc_metric('fid120_full', G=ReplayGenerator(env.images[::-1]), dataset_kwargs=env.dataset_kwargs, device='cpu')
    assert list(result) == ['results', 'metric', 'total_time', 'total_time_str', 'num_gpus',
                            'num_real', 'num_fake', 'camera_source', 'dataset_name', 'dataset_hash',
                            'dataset', 'mirror', 'mirror_cameras', 'seed']
    assert (result.dataset, result.mirror, result.mirror_cameras, result.seed) == (env.dataset_kwargs.path, False, False, None)
    assert list(result.results) == ['fid120_full'] and abs(result.results.fid120_full) < 1e-6 # Copies of the same 12 images.
    assert (result.metric, result.num_gpus, result.num_real, result.num_fake) == ('fid120_full', 1, 12, 120)
    assert result.total_time_str == dnnlib.util.format_time(result.total_time)

    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    metric_main.report_metric(result, run_dir=str(run_dir), snapshot_pkl=str(run_dir / 'network-snapshot-000200.pkl'))
    line = capsys.readouterr().out.strip().splitlines()[-1]
    with open(run_dir / 'metric-fid120_full.jsonl') as f:
        assert f.read() == line + '\n'
    record = json.loads(line)
    assert list(record) == ['results', 'metric', 'total_time', 'total_time_str', 'num_gpus', 'snapshot_pkl', 'timestamp',
                            'num_real', 'num_fake', 'camera_source', 'dataset_name', 'dataset_hash',
                            'dataset', 'mirror', 'mirror_cameras', 'seed']
    assert record['snapshot_pkl'] == 'network-snapshot-000200.pkl' and record['results'] == dict(result.results)
    assert line.startswith('{"results": {"fid120_full": ') and ', "metric": "fid120_full", "total_time": ' in line # Default separators.
    assert isinstance(record['timestamp'], float)

    # No run dir: printed only, the network argument kept as given.
    metric_main.report_metric(result, snapshot_pkl='https://example.com/net.pkl')
    assert json.loads(capsys.readouterr().out)['snapshot_pkl'] == 'https://example.com/net.pkl'

def test_seeded_metric_is_reproducible_and_leaves_the_global_streams_alone(env, monkeypatch):
    monkeypatch.setitem(metric_main._metric_dict, 'fid120_full', small_fid_metric)
    dataset = dict(env.dataset_kwargs, xflip=True, mirror_cameras=True)

    G = FakeGenerator()

    def evaluate(seed):
        torch.manual_seed(np.random.randint(1000))  # Whatever ran before.
        numpy_before, torch_before = np.random.get_state(), torch.get_rng_state()
        result = metric_main.calc_metric('fid120_full', G=G, dataset_kwargs=dataset, device='cpu', seed=seed)
        unchanged = torch.equal(torch.get_rng_state(), torch_before) and np.random.get_state()[2] == numpy_before[2] and \
            np.array_equal(np.random.get_state()[1], numpy_before[1])
        return result, unchanged
    first, unchanged = evaluate(5)  # Computes the real statistics (a DataLoader) ...
    assert unchanged and (first.seed, first.mirror, first.mirror_cameras) == (5, False, False)  # _full: no x-flips.
    second, unchanged = evaluate(5)  # ... which now come from the cache: the generated images must not notice.
    assert unchanged and second.results == first.results
    other, _ = evaluate(6)
    assert other.results != first.results
    unseeded, unchanged = evaluate(None)  # The original: the metric draws from the global streams.
    assert not unchanged and unseeded.seed is None
    with pytest.raises(ValueError, match='metric seed must be a non-negative integer or None'):
        metric_utils.MetricOptions(seed=-1)

#----------------------------------------------------------------------------

def test_broken_detector_file(env):
    path = env.tmp_path / 'detectors' / 'inception-2015-12-05.pkl'
    path.write_bytes(b'\x80\x04this is not a pickle')
    with pytest.raises(metric_utils.FeatureDetectorError, match=f'^{path}: not a readable feature detector .*delete it'):
        metric_utils.get_feature_detector(frechet_inception_distance.INCEPTION_URL)
    path.write_bytes(pickle.dumps(dict(a=1)))
    with pytest.raises(metric_utils.FeatureDetectorError, match='holds a dict, not a feature detector'):
        metric_utils.get_feature_detector(frechet_inception_distance.INCEPTION_URL)

def test_missing_detector_names_the_file(env, monkeypatch):
    os.remove(env.tmp_path / 'detectors' / 'vgg16.pkl')
    with pytest.raises(metric_utils.FeatureDetectorError, match=r'detectors/vgg16.pkl: no such file \(\$EG3D_DETECTOR_DIR is set'):
        metric_utils.get_feature_detector(precision_recall.VGG16_URL)

    # Without the override, an offline download failure says where the file can be put.
    monkeypatch.delenv(metric_utils.DETECTOR_DIR_ENV)
    def offline(url, **kwargs):
        raise dnnlib.util.DownloadError(f'cannot download {url} (no network); place it at {dnnlib.util.url_cache_path(url)}')
    monkeypatch.setattr(dnnlib.util, 'open_url', offline)
    with pytest.raises(metric_utils.FeatureDetectorError, match=r'vgg16.pkl: cannot download .*place it at .*downloads/[0-9a-f]{32}_vgg16.pkl; '
                                                                r'or put vgg16.pkl in a folder and point \$EG3D_DETECTOR_DIR to it'):
        metric_utils.get_feature_detector(precision_recall.VGG16_URL)

def test_plain_torchscript_archive_is_accepted(env):
    path = env.tmp_path / 'detectors' / 'vgg16.pkl'
    torch.jit.save(env.detector, str(path))
    detector = metric_utils.get_feature_detector(precision_recall.VGG16_URL)
    assert torch.equal(detector(torch.as_tensor(env.images[:2]), return_features=True),
                       env.detector(torch.as_tensor(env.images[:2]), return_features=True))

#----------------------------------------------------------------------------
# Two processes (gloo on the CPU) must reproduce the single-process statistics.

def _distributed_worker(rank, init_file, tmp_path, out_file):
    torch.distributed.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    os.environ[metric_utils.DETECTOR_DIR_ENV] = str(tmp_path / 'detectors')
    os.environ['DNNLIB_CACHE_DIR'] = str(tmp_path / 'cache')
    torch.manual_seed(rank)
    opts = metric_utils.MetricOptions(G=FakeGenerator(), dataset_kwargs=dataset_kwargs(tmp_path / 'data'), num_gpus=2, rank=rank, device='cpu')
    url = frechet_inception_distance.INCEPTION_URL
    real = metric_utils.compute_feature_stats_for_dataset(opts, url, dict(return_features=True), batch_size=4,
                                                          data_loader_kwargs=NO_WORKERS, capture_all=True, max_items=11)
    gen = metric_utils.compute_feature_stats_for_generator(opts, url, dict(return_features=True), capture_all=True, max_items=100)
    own = generated_uint8()
    features = torch.as_tensor(np.concatenate([real.get_all(), gen.get_all()]), dtype=torch.float16)
    dist = precision_recall.compute_distances(features[:9], features, num_gpus=2, rank=rank, col_batch_size=10)
    # Prime the statistics cache: data-loader workers forked from these processes are very slow to start.
    metric_utils.compute_feature_stats_for_dataset(opts, url, dict(return_features=True), data_loader_kwargs=NO_WORKERS, capture_mean_cov=True)
    metric_main.register_metric(small_fid_metric) # Registered in this process only.
    result = metric_main.calc_metric('fid120_full', G=FakeGenerator(), dataset_kwargs=dataset_kwargs(tmp_path / 'data'), num_gpus=2, rank=rank, device='cpu')
    torch.save(result.results.fid120_full, f'{out_file}.{rank}')
    if rank == 0:
        torch.save(dict(real=real.get_all(), gen=gen.get_all(), own=own, dist=dist), out_file)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group() # Exiting with live gloo threads can abort the process.

@pytest.mark.slow
def test_two_processes_match_one(env):
    with tempfile.TemporaryDirectory() as temp_dir:
        out_file = os.path.join(temp_dir, 'out.pt')
        torch.multiprocessing.spawn(_distributed_worker, args=(os.path.join(temp_dir, 'init'), env.tmp_path, out_file), nprocs=2)
        out = torch.load(out_file, weights_only=False)
        fids = [torch.load(f'{out_file}.{rank}') for rank in range(2)]
    assert fids[0] > 0 and fids[1] == fids[0] # Rank 0 computes the number, every rank returns it.
    assert np.allclose(out['real'], features_of(env.detector, env.images[:11]), atol=1e-6)
    # Rank 0's rows are every other generated row; its own images are the even-numbered ones.
    assert out['gen'].shape == (100, 9)
    assert np.allclose(out['gen'][0::2], features_of(env.detector, out['own'][:50]), atol=1e-6)
    features = torch.as_tensor(np.concatenate([out['real'], out['gen']]), dtype=torch.float16)
    assert torch.equal(out['dist'], precision_recall.compute_distances(features[:9], features, num_gpus=1, rank=0, col_batch_size=10))

#----------------------------------------------------------------------------

def test_distances_match_float64_within_float16_rounding():
    # More than 25 rows, so torch.cdist takes its matmul route: d^2 = |a|^2 + |b|^2 - 2 a.b with each term rounded
    # to float16 (relative 2^-11), i.e. d^2 off by up to 2^-10 (|a|^2 + |b|^2) + 2^-11 d^2, and d itself rounded once
    # more: |d - exact| <= 2^-11 ((|a|^2 + |b|^2) / d + 2 d) to first order.
    gen = torch.Generator().manual_seed(0)
    rows = (torch.randn(40, 16, generator=gen) * 3).half()
    cols = (torch.randn(30, 16, generator=gen) * 3 + 1).half()
    dist = precision_recall.compute_distances(rows, cols, num_gpus=1, rank=0, col_batch_size=7)
    assert dist.dtype == torch.float16 and dist.shape == (40, 30)
    a, b = rows.double().numpy(), cols.double().numpy()
    exact = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    norms = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :]
    assert np.all(np.abs(dist.double().numpy() - exact) <= 2 ** -11 * (norms / exact + 2 * exact))
    # Column batching (5 zero-padded batches of 7 here) does not change any value.
    assert torch.equal(dist, precision_recall.compute_distances(rows, cols, num_gpus=1, rank=0, col_batch_size=1000))

#----------------------------------------------------------------------------

def test_detector_pickle_loads_onto_the_cpu(tmp_path, monkeypatch):
    """A detector pickle's embedded TorchScript and storages are mapped to the CPU, not to the GPU they came from."""
    write_detectors(str(tmp_path))
    seen = []
    real_load = torch.jit.load
    monkeypatch.setattr(torch.jit, 'load', lambda f, map_location=None, **kw: seen.append(map_location) or real_load(f, map_location, **kw))
    detector = metric_utils._load_detector(str(tmp_path / 'vgg16.pkl'))
    assert seen == ['cpu'] and isinstance(detector, torch.jit.ScriptModule)
    stored = pickle.dumps(dict(w=torch.ones(3)))  # Storages go through torch.storage._load_from_bytes.
    assert torch.equal(metric_utils._CPUUnpickler(io.BytesIO(stored)).load()['w'], torch.ones(3))
