"""Machinery shared by the metrics: options, feature detectors, feature statistics (cached on disk for
real images), progress reporting, and the loops that feed real and generated images to a detector."""

import contextlib
import copy
import functools
import hashlib
import io
import os
import pickle
import time
import uuid
import warnings

import numpy as np
import torch

import dnnlib
from torch_utils import distributed, misc

# A folder holding detector files named like the last URL component (e.g. inception-2015-12-05.pkl).
# When set, detectors are read from there instead of the download cache (offline machines).
DETECTOR_DIR_ENV = 'EG3D_DETECTOR_DIR'

#----------------------------------------------------------------------------

class MetricOptions:
    """What a metric runs on: the generator, the dataset it is compared against, and the process layout."""

    def __init__(self, G=None, G_kwargs={}, dataset_kwargs={}, num_gpus=1, rank=0, device=None, progress=None, cache=True,
                 seed=None):
        """seed: None draws latents, cameras and rendering noise from the process's global random streams, as the
        original does (so a result depends on what ran before); an integer fixes them (see seeded_random_streams)."""
        if not 0 <= rank < num_gpus:
            raise ValueError(f'rank {rank} is outside 0..{num_gpus - 1}')
        self.G = G
        self.G_kwargs = dnnlib.EasyDict(G_kwargs)
        self.dataset_kwargs = dnnlib.EasyDict(dataset_kwargs)
        self.num_gpus = num_gpus
        self.rank = rank
        if device is None:
            device = distributed.device_for(rank, select=False)
        self.device = torch.device(device)
        # Only rank 0 prints progress; the other ranks get a silent monitor.
        self.progress = progress.sub() if (progress is not None and rank == 0) else ProgressMonitor()
        self.cache = cache
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f'metric seed must be a non-negative integer or None, got {seed!r}')
        self.seed = seed
        # Provenance reported next to the numbers; filled in by the feature loops below and by record_dataset().
        self.details = dnnlib.EasyDict(num_real=None, num_fake=None, camera_source=None, dataset_name=None, dataset_hash=None,
                                       dataset=None, mirror=None, mirror_cameras=None, seed=seed)

    def record_dataset(self):
        """Note the dataset options a metric ran with (after its own max_size/xflip changes)."""
        mirror = bool(self.dataset_kwargs.get('xflip', False))
        self.details.update(dataset=self.dataset_kwargs.get('path'), mirror=mirror,
                            mirror_cameras=mirror and bool(self.dataset_kwargs.get('mirror_cameras', False)))

@contextlib.contextmanager
def seeded_random_streams(opts):
    """With opts.seed, run the block on torch (CPU and opts.device) and NumPy global streams seeded from the seed and
    the rank, and restore the streams afterwards, so training continues exactly as if no metric had run. The result
    then depends only on the network, the dataset options, the metric, num_gpus and the seed. Without a seed,
    nothing changes."""
    if opts.seed is None:
        yield
        return
    numpy_state = np.random.get_state()
    devices = [opts.device] if opts.device.type == 'cuda' else []
    try:
        with torch.random.fork_rng(devices=devices):
            stream_seed = (opts.seed * opts.num_gpus + opts.rank) % 2**32
            torch.manual_seed(stream_seed)
            np.random.seed(stream_seed)
            yield
    finally:
        np.random.set_state(numpy_state)

#----------------------------------------------------------------------------
# Feature detectors.

class FeatureDetectorError(IOError):
    """A feature detector cannot be obtained; the message names the file and what to do about it."""

def get_feature_detector_name(url):
    return os.path.splitext(url.split('/')[-1])[0]

def _one_line(err):
    return ' '.join(str(err).split())

def _detector_file(url, verbose):
    fname = url.split('/')[-1]
    local_dir = os.environ.get(DETECTOR_DIR_ENV)
    if local_dir:
        path = os.path.join(local_dir, fname)
        if not os.path.isfile(path):
            raise FeatureDetectorError(f'{path}: no such file (${DETECTOR_DIR_ENV} is set: place {fname} from {url} there)')
        return path
    try:
        return dnnlib.util.open_url(url, verbose=verbose, return_filename=True)
    except OSError as err:
        raise FeatureDetectorError(f'feature detector {fname}: {_one_line(err)}; '
                                   f'or put {fname} in a folder and point ${DETECTOR_DIR_ENV} to it') from err

class _CPUUnpickler(pickle.Unpickler):
    """Unpickles a detector with its tensors on the CPU, whatever device they were saved from (else every rank
    would restore them onto that GPU, typically GPU 0, before moving them to its own)."""

    def find_class(self, module, name):
        if (module, name) in (('torch.jit._serialization', 'load'), ('torch.jit', 'load')):
            return functools.partial(torch.jit.load, map_location='cpu')
        if (module, name) == ('torch.storage', '_load_from_bytes'):
            return lambda data: torch.load(io.BytesIO(data), map_location='cpu', weights_only=False)
        return super().find_class(module, name)

def _load_detector(path):
    # The official files are pickles; a bare TorchScript archive (torch.jit.save) is accepted as well.
    try:
        with open(path, 'rb') as f:
            is_archive = (f.read(4) == b'PK\x03\x04')
            f.seek(0)
            detector = torch.jit.load(f, map_location='cpu') if is_archive else _CPUUnpickler(f).load()
    except Exception as err:
        raise FeatureDetectorError(f'{path}: not a readable feature detector ({type(err).__name__}: {_one_line(err)}); '
                                   f'delete it and fetch it again') from err
    if not isinstance(detector, torch.nn.Module):
        raise FeatureDetectorError(f'{path}: holds a {type(detector).__name__}, not a feature detector network')
    return detector

_detector_cache = dict() # (url, override dir, device) => network

def get_feature_detector(url, device=torch.device('cpu'), num_gpus=1, rank=0, verbose=False):
    """The detector network behind `url` on `device`, loaded once per process."""
    device = torch.device(device)
    key = (url, os.environ.get(DETECTOR_DIR_ENV), device)
    if key not in _detector_cache:
        leader = (rank == 0)
        # Rank 0 downloads; the others wait for it and then read its cached copy.
        if num_gpus > 1 and not leader:
            torch.distributed.barrier()
        detector = _load_detector(_detector_file(url, verbose=(verbose and leader))).to(device)
        if num_gpus > 1 and leader:
            torch.distributed.barrier()
        _detector_cache[key] = detector
    return _detector_cache[key]

#----------------------------------------------------------------------------

def iterate_random_labels(opts, batch_size):
    """Endless batches of generator labels: dataset labels drawn uniformly with replacement (NumPy global RNG)."""
    if opts.G.c_dim == 0:
        opts.details.camera_source = 'none'
        c = torch.zeros([batch_size, 0], device=opts.device)
        while True:
            yield c
    dataset = dnnlib.util.construct_class_by_name(**opts.dataset_kwargs)
    if dataset.label_dim != opts.G.c_dim:
        raise ValueError(f'{opts.dataset_kwargs.get("path")}: dataset labels have {dataset.label_dim} numbers, '
                         f'the generator expects c_dim = {opts.G.c_dim} (labels come from dataset.json)')
    opts.details.update(camera_source='dataset_labels', dataset_name=dataset.name)
    while True:
        c = np.stack([dataset.get_label(np.random.randint(len(dataset))) for _ in range(batch_size)])
        yield torch.from_numpy(c).to(opts.device)

#----------------------------------------------------------------------------

class FeatureStats:
    """Detector features of a set of images: every row (capture_all) and/or float64 sums for mean and covariance.

    The attribute names and their order are the pickle format of the statistics cache.
    """

    def __init__(self, capture_all=False, capture_mean_cov=False, max_items=None):
        self.__dict__.update(capture_all=capture_all, capture_mean_cov=capture_mean_cov, max_items=max_items,
                             num_items=0, num_features=None, all_features=None, raw_mean=None, raw_cov=None)

    def set_num_features(self, num_features):
        """Fix the feature width at the first batch; later batches must match it."""
        if self.num_features is None:
            self.num_features, self.all_features = num_features, []
            self.raw_mean, self.raw_cov = np.zeros(num_features), np.zeros((num_features, num_features))
        assert num_features == self.num_features, f'feature width changed from {self.num_features} to {num_features}'

    def is_full(self):
        return self.max_items is not None and self.num_items >= self.max_items

    def append(self, x):
        """Add rows of float features [N, num_features], dropping whatever exceeds max_items."""
        rows = np.asarray(x, dtype=np.float32)
        assert rows.ndim == 2, f'expected [N, num_features], got shape {rows.shape}'
        room = len(rows) if self.max_items is None else max(self.max_items - self.num_items, 0)
        rows = rows[:room]
        self.set_num_features(rows.shape[1])
        if len(rows) == 0:
            return
        self.num_items += len(rows)
        if self.capture_all:
            self.all_features.append(rows)
        if self.capture_mean_cov:
            wide = rows.astype(np.float64)
            self.raw_mean += wide.sum(axis=0)
            self.raw_cov += wide.T @ wide

    def append_torch(self, x, num_gpus=1, rank=0):
        """append() for a tensor; with several ranks, every rank's rows are gathered and interleaved."""
        assert isinstance(x, torch.Tensor) and x.ndim == 2
        assert 0 <= rank < num_gpus
        if num_gpus > 1:
            # Rank 0's first row, rank 1's first row, ...: the order the items were dealt out in.
            parts = [torch.empty_like(x) for _ in range(num_gpus)]
            torch.distributed.all_gather(parts, x.contiguous())
            x = torch.stack(parts, dim=1).flatten(0, 1)
        self.append(x.detach().cpu().numpy())

    def get_all(self):
        assert self.capture_all, 'rows were not kept (capture_all=False)'
        return np.concatenate(self.all_features)

    def get_all_torch(self):
        return torch.from_numpy(self.get_all())

    def get_mean_cov(self):
        """Mean and biased (1/n) covariance of the rows."""
        assert self.capture_mean_cov, 'moments were not accumulated (capture_mean_cov=False)'
        mean = self.raw_mean / self.num_items
        return mean, self.raw_cov / self.num_items - mean[:, None] * mean[None, :]

    def save(self, pkl_file):
        # Written under a temporary name and renamed, so a concurrent reader never sees half a file.
        os.makedirs(os.path.dirname(pkl_file) or '.', exist_ok=True)
        tmp_file = f'{pkl_file}.{uuid.uuid4().hex}.tmp'
        with open(tmp_file, 'wb') as f:
            pickle.dump(self.__dict__, f)
        os.replace(tmp_file, pkl_file)

    @staticmethod
    def load(pkl_file):
        try:
            with open(pkl_file, 'rb') as f:
                state = pickle.load(f)
            missing = set(FeatureStats().__dict__) - set(state)
            if missing:
                raise KeyError(f'missing {", ".join(sorted(missing))}')
        except Exception as err:
            raise IOError(f'{pkl_file}: unreadable statistics file ({type(err).__name__}: {_one_line(err)}); '
                          f'delete it to recompute') from err
        stats = FeatureStats()
        stats.__dict__.update(state)
        return stats

#----------------------------------------------------------------------------

class ProgressMonitor:
    """Prints '<tag> items N time T ms/item X' lines and maps item counts onto an outer progress callback.

    progress_fn(value, total) receives positions in [pfn_lo, pfn_hi] out of pfn_total.
    """

    def __init__(self, tag=None, num_items=None, flush_interval=1000, verbose=False, progress_fn=None, pfn_lo=0, pfn_hi=1000, pfn_total=1000):
        self.tag = tag
        self.num_items = num_items
        self.flush_interval = flush_interval
        self.verbose = verbose
        self.progress_fn = progress_fn
        self.pfn_lo = pfn_lo
        self.pfn_hi = pfn_hi
        self.pfn_total = pfn_total
        self.start_time = time.time()
        self._last_time = self.start_time
        self._last_items = 0
        if self.progress_fn is not None:
            self.progress_fn(self.pfn_lo, self.pfn_total)

    def update(self, cur_items):
        assert (self.num_items is None) or (cur_items <= self.num_items)
        finished = (self.num_items is not None) and (cur_items >= self.num_items)
        if not finished and cur_items < self._last_items + self.flush_interval:
            return
        now = time.time()
        ms_per_item = (now - self._last_time) / max(cur_items - self._last_items, 1) * 1e3
        if self.verbose and self.tag is not None:
            elapsed = dnnlib.util.format_time(now - self.start_time)
            print(f'{self.tag:<19s} items {cur_items:<7d} time {elapsed:<12s} ms/item {ms_per_item:.2f}')
        self._last_time = now
        self._last_items = cur_items
        if self.progress_fn is not None and self.num_items is not None:
            self.progress_fn(self.pfn_lo + (self.pfn_hi - self.pfn_lo) * (cur_items / self.num_items), self.pfn_total)

    def sub(self, tag=None, num_items=None, flush_interval=1000, rel_lo=0, rel_hi=1):
        """A monitor for one stage, owning the fraction [rel_lo, rel_hi] of this monitor's range."""
        span = self.pfn_hi - self.pfn_lo
        return ProgressMonitor(tag=tag, num_items=num_items, flush_interval=flush_interval, verbose=self.verbose,
            progress_fn=self.progress_fn, pfn_lo=self.pfn_lo + span * rel_lo, pfn_hi=self.pfn_lo + span * rel_hi, pfn_total=self.pfn_total)

#----------------------------------------------------------------------------
# Statistics of real and generated images.

def stats_cache_md5(dataset_kwargs, detector_url, detector_kwargs, stats_kwargs):
    """The md5 in a statistics file name; the established key, so existing cache files are found.

    The dict reprs follow insertion order, so the key order of dataset_kwargs matters. `mirror_cameras` changes
    only labels, never the images, so it is left out: mirrored runs share the cache files of the original's.
    """
    images_kwargs = {key: value for key, value in dataset_kwargs.items() if key != 'mirror_cameras'}
    key = dict(dataset_kwargs=images_kwargs, detector_url=detector_url, detector_kwargs=dict(detector_kwargs), stats_kwargs=dict(stats_kwargs))
    return hashlib.md5(repr(sorted(key.items())).encode('utf-8')).hexdigest()

def _broadcast_flag(flag, opts):
    if opts.num_gpus == 1:
        return flag
    value = torch.as_tensor(float(flag), dtype=torch.float32, device=opts.device)
    torch.distributed.broadcast(tensor=value, src=0)
    return bool(value.item() != 0)

def compute_feature_stats_for_dataset(opts, detector_url, detector_kwargs, rel_lo=0, rel_hi=1, batch_size=64, data_loader_kwargs=None, max_items=None, **stats_kwargs):
    """Features of the first max_items dataset items (all if None), from the statistics cache when possible."""
    dataset = dnnlib.util.construct_class_by_name(**opts.dataset_kwargs)
    num_items = len(dataset) if max_items is None else min(len(dataset), max_items)
    md5 = stats_cache_md5(opts.dataset_kwargs, detector_url, detector_kwargs, stats_kwargs)
    opts.details.update(num_real=num_items, dataset_name=dataset.name, dataset_hash=md5)

    cache_file = None
    if opts.cache:
        cache_file = dnnlib.make_cache_dir_path('gan-metrics', f'{dataset.name}-{get_feature_detector_name(detector_url)}-{md5}.pkl')
        if _broadcast_flag(os.path.isfile(cache_file) if opts.rank == 0 else False, opts):
            stats = FeatureStats.load(cache_file)
            if stats.num_items == num_items:
                return stats
            # The key leaves out max_items (docs/compat.md), so a file made for another image count is not used;
            # the statistics are recomputed in memory and the file is left alone.
            if opts.rank == 0:
                warnings.warn(f'{cache_file}: holds {stats.num_items} images, this metric uses {num_items}; recomputing without caching')
            cache_file = None

    stats = FeatureStats(max_items=num_items, **stats_kwargs)
    progress = opts.progress.sub(tag='dataset features', num_items=num_items, rel_lo=rel_lo, rel_hi=rel_hi)
    detector = get_feature_detector(url=detector_url, device=opts.device, num_gpus=opts.num_gpus, rank=opts.rank, verbose=progress.verbose)
    if data_loader_kwargs is None:
        data_loader_kwargs = dict(pin_memory=(opts.device.type == 'cuda'), num_workers=3, prefetch_factor=2)
    if opts.seed is not None:
        # A loader draws its workers' base seed from the global stream unless given its own generator; with a seed,
        # the draws after this must not depend on whether the statistics came from the cache.
        data_loader_kwargs = dict(data_loader_kwargs, generator=torch.Generator())
    loader = torch.utils.data.DataLoader(dataset=dataset, sampler=_items_of_rank(num_items, opts), batch_size=batch_size, **data_loader_kwargs)
    with torch.no_grad():
        for images, _labels in loader:
            _add_features(stats, detector, images.to(opts.device), detector_kwargs, opts, progress)

    if cache_file is not None and opts.rank == 0:
        stats.save(cache_file)
    return stats

def _items_of_rank(num_items, opts):
    # Rank r takes items r, r + W, r + 2W, ... (wrapping around), so all ranks run the same number of batches;
    # FeatureStats drops the wrapped-around surplus.
    per_rank = -(-num_items // opts.num_gpus)
    return [(opts.rank + step * opts.num_gpus) % num_items for step in range(per_rank)]

def _add_features(stats, detector, images, detector_kwargs, opts, progress):
    """Detector features of uint8 images [N, C, H, W] (grey repeated to RGB) into stats, gathered over ranks."""
    if images.shape[1] == 1:
        images = images.repeat([1, 3, 1, 1])
    stats.append_torch(detector(images, **detector_kwargs), num_gpus=opts.num_gpus, rank=opts.rank)
    progress.update(stats.num_items)

def _generated_images(G, labels, opts, batch_size, batch_gen):
    """uint8 [batch_size, C, H, W] from batch_size / batch_gen generator calls; each call draws z, then labels."""
    images = []
    for _ in range(batch_size // batch_gen):
        z = torch.randn([batch_gen, G.z_dim], device=opts.device)
        images.append(misc.to_uint8(G(z=z, c=next(labels), **opts.G_kwargs)['image'], channels_last=False))
    return torch.cat(images)

def compute_feature_stats_for_generator(opts, detector_url, detector_kwargs, rel_lo=0, rel_hi=1, batch_size=64, batch_gen=None, **stats_kwargs):
    """Features of stats_kwargs['max_items'] generated images; labels drawn from the dataset (never cached)."""
    batch_gen = min(batch_size, 4) if batch_gen is None else batch_gen
    assert batch_size % batch_gen == 0, f'batch_size {batch_size} is not a multiple of batch_gen {batch_gen}'
    stats = FeatureStats(**stats_kwargs)
    assert stats.max_items is not None, 'the number of generated images (max_items) must be given'

    G = copy.deepcopy(opts.G).eval().requires_grad_(False).to(opts.device)
    labels = iterate_random_labels(opts=opts, batch_size=batch_gen)
    progress = opts.progress.sub(tag='generator features', num_items=stats.max_items, rel_lo=rel_lo, rel_hi=rel_hi)
    detector = get_feature_detector(url=detector_url, device=opts.device, num_gpus=opts.num_gpus, rank=opts.rank, verbose=progress.verbose)
    with torch.no_grad():
        while not stats.is_full():
            _add_features(stats, detector, _generated_images(G, labels, opts, batch_size, batch_gen), detector_kwargs, opts, progress)
    opts.details.num_fake = stats.num_items
    return stats

#----------------------------------------------------------------------------
