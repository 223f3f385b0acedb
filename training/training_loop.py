"""The EG3D training loop: phases with lazy regularization, G_ema, ADA, ticks, snapshots, metrics and logs.

In addition, the full training state (optimizers, counters, ADA state, random streams, data position)
is saved next to every network snapshot and can be restored (`resume_state`), every file is written
atomically, and runs that keep producing non-finite losses or gradients stop (`nan_limit`).
"""

import copy
import dataclasses
import itertools
import json
import os
import re
import time
from typing import Iterator, List, Optional

import numpy as np
import psutil
import torch

import dnnlib
from metrics import metric_main
from torch_utils import distributed, fast_modes, misc, training_stats
from torch_utils.ops import conv2d_gradfix, grid_sample_gradfix
from training import network_pickle, snapshot
from training.image_grid import export_fakes, save_image_grid, setup_snapshot_image_grid
from training.phases import Phase, ada_adjustment, draw_generator_inputs, run_phases, setup_phases, update_ema

# Options of training_loop() and their defaults (train.py leaves a key out of training_options.json when
# the default applies).
DEFAULTS = dnnlib.EasyDict(
    run_dir='.',                    # Output directory.
    training_set_kwargs={},         # Dataset class and arguments.
    data_loader_kwargs={},          # torch.utils.data.DataLoader arguments.
    G_kwargs={},                    # Generator class and arguments.
    D_kwargs={},                    # Discriminator class and arguments.
    G_opt_kwargs={},                # Generator optimizer.
    D_opt_kwargs={},                # Discriminator optimizer.
    augment_kwargs=None,            # Augmentation pipeline (None: none).
    loss_kwargs={},                 # Loss class and arguments.
    metrics=[],                     # Metrics evaluated at each network snapshot.
    metrics_seed=None,              # Fixed random streams for the metrics (None: the training's global streams).
    random_seed=0,                  # Global seed; rank r seeds its streams with seed * num_gpus + r.
    num_gpus=1,                     # Number of processes.
    batch_size=4,                   # Images per iteration over all processes.
    batch_gpu=4,                    # Images per forward pass and process.
    ema_kimg=10,                    # Half-life of G_ema (kimg).
    ema_rampup=0.05,                # Half-life ramp-up as a fraction of the images seen (None: none).
    G_reg_interval=None,            # Lazy G regularization interval (None: one 'Gboth' phase).
    D_reg_interval=16,              # Lazy D regularization interval (None: one 'Dboth' phase).
    augment_p=0,                    # Initial augmentation probability.
    ada_target=None,                # ADA target of E[sign(D(real))] (None: p stays fixed).
    ada_interval=4,                 # Iterations between ADA adjustments.
    ada_kimg=500,                   # Images (kimg) over which ADA can move p by 1.
    total_kimg=25000,               # Training length.
    kimg_per_tick=4,                # Progress tick length.
    image_snapshot_ticks=50,        # Ticks between image grids (None: never).
    network_snapshot_ticks=50,      # Ticks between network snapshots (None: never).
    resume_pkl=None,                # Network pickle whose G, D, G_ema initialise the run.
    resume_kimg=0,                  # Image count to start at when no training state is restored.
    cudnn_benchmark=True,
    resume_state=None,              # Training state beside resume_pkl: continue exactly.
    trust_embedded_code=False,      # Let resume_pkl's embedded source run (network_pickle).
    nan_limit=50,                   # Stop after this many non-finite iterations in a row (0: never).
    image_grid_size=None,           # (gw, gh) of the snapshot grids (None: from the resolution).
    fast_modes=None,                # dict(tf32, compile, precision) of torch_utils.fast_modes (None: exact).
    deterministic=False,            # misc.make_deterministic(): cuDNN benchmark off, deterministic algorithms.
)

# The fast_modes setting that reproduces the exact numbers.
EXACT_SPEED_MODES = dict(tf32=False, compile=False, precision='fp32')

# Options saved in the training state (train.py compares them before restoring a state).
RECORDED_KEYS = ('training_set_kwargs', 'data_loader_kwargs', 'G_kwargs', 'D_kwargs', 'G_opt_kwargs', 'D_opt_kwargs',
                 'augment_kwargs', 'loss_kwargs', 'metrics', 'random_seed', 'num_gpus', 'batch_size', 'batch_gpu',
                 'ema_kimg', 'ema_rampup', 'G_reg_interval', 'D_reg_interval', 'augment_p', 'ada_target',
                 'ada_interval', 'ada_kimg', 'total_kimg', 'kimg_per_tick', 'image_snapshot_ticks',
                 'network_snapshot_ticks', 'resume_kimg', 'cudnn_benchmark', 'nan_limit', 'image_grid_size')

# Buffers that differ between ranks by design (the mapping's running w average): left out of the consistency
# check and saved per rank.
_RANK_LOCAL_REGEX = r'.*\.[^.]+_(avg|ema)'
_ADA_STAT = 'Loss/signs/real'

class TrainingDiverged(RuntimeError):
    """Too many consecutive iterations with non-finite losses or gradients."""

def recorded_options(options: dict) -> dict:
    """The RECORDED_KEYS of `options` with defaults filled in, as plain JSON values."""
    complete = dict(DEFAULTS, **options)
    return json.loads(json.dumps({key: complete[key] for key in RECORDED_KEYS}))

#----------------------------------------------------------------------------
# Building blocks of an iteration.

class _SkippingSampler(torch.utils.data.Sampler):
    """A deterministic sampler's stream without its first `skip` indices (exact data order on resume)."""

    def __init__(self, sampler, skip):
        super().__init__()
        self.sampler = sampler
        self.skip = skip

    def __iter__(self):
        return itertools.islice(iter(self.sampler), self.skip, None)

class _NonFiniteGuard:
    """Counts iterations with non-finite losses/gradients. Flags are 0-dim device tensors read one iteration
    late, so the check never stalls the GPU queue."""

    def __init__(self, limit):
        self.limit = limit
        self.unread = None
        self.in_a_row = 0
        self.in_tick = 0

    def push(self, flag):
        flag, self.unread = self.unread, flag
        if flag is not None:
            self._count(flag)

    def flush(self):
        if self.unread is not None:
            self._count(self.unread)
            self.unread = None

    def _count(self, flag):
        bad = float(flag) > 0
        self.in_a_row = self.in_a_row + 1 if bad else 0
        self.in_tick += int(bad)

    def check(self, cur_nimg, last_snapshot_pkl):
        if self.limit > 0 and self.in_a_row >= self.limit:
            raise TrainingDiverged(f'{self.in_a_row} consecutive iterations with non-finite losses or gradients '
                                   f'(limit {self.limit}) at kimg {cur_nimg / 1e3:.3f}; stopping. '
                                   f'Last good snapshot: {last_snapshot_pkl or "none"}')

def _snapshot_copy(module):
    module = copy.deepcopy(module).eval().requires_grad_(False).cpu()
    # .cpu() moves parameters and buffers only; plain tensor attributes (the renderer's plane axes) would
    # otherwise tie the pickle to a GPU.
    for submodule in module.modules():
        for name, value in list(vars(submodule).items()):
            if isinstance(value, torch.Tensor) and value.device.type != 'cpu':
                setattr(submodule, name, value.cpu())
    return module

def _rank_local_buffers(modules):
    return {f'{prefix}.{name}': buffer for prefix, module in modules.items()
            for name, buffer in module.named_buffers() if re.fullmatch(_RANK_LOCAL_REGEX, f'{prefix}.{name}')}

def _broadcast_object(obj, num_gpus):
    if num_gpus == 1:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]

def _gather_object(obj, num_gpus):
    if num_gpus == 1:
        return [obj]
    gathered = [None] * num_gpus
    torch.distributed.all_gather_object(gathered, obj)
    return gathered

#----------------------------------------------------------------------------
# Setup.

def _configure_torch(o, rank, device):
    seed = o.random_seed * o.num_gpus + rank
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = o.cudnn_benchmark
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
    if o.fast_modes is not None:
        fast_modes.configure(tf32=o.fast_modes['tf32'])
    if o.deterministic:
        misc.make_deterministic()
    conv2d_gradfix.enabled = True
    grid_sample_gradfix.enabled = False

def _read_resume_state(o, rank, log):
    # Rank 0 reads the file; the other ranks need not see it.
    if o.resume_state is None:
        return None
    if o.resume_pkl is None:
        raise ValueError('resume_state needs resume_pkl: the networks come from the snapshot next to it')
    state = None
    if rank == 0:
        log(f'Loading training state from "{o.resume_state}"')
        state = snapshot.load_training_state(o.resume_state)
    return _broadcast_object(state, o.num_gpus)

def _open_training_data(o, rank, device, state, log):
    log('Loading training set...')
    training_set = dnnlib.util.construct_class_by_name(**o.training_set_kwargs)
    sampler = misc.InfiniteSampler(dataset=training_set, rank=rank, num_replicas=o.num_gpus, seed=o.random_seed)
    sampler_nimg = state['sampler_nimg'] if state is not None else 0 # Real images drawn from the stream so far.
    if sampler_nimg > 0:
        sampler = _SkippingSampler(sampler, skip=sampler_nimg // o.num_gpus)
    loader_kwargs = dict(o.data_loader_kwargs)
    if device.type != 'cuda':
        loader_kwargs['pin_memory'] = False
    if loader_kwargs.get('num_workers', 0) == 0:
        loader_kwargs.pop('prefetch_factor', None) # Only valid with worker processes.
    loader = torch.utils.data.DataLoader(dataset=training_set, sampler=sampler, batch_size=o.batch_size // o.num_gpus,
                                         **loader_kwargs)
    batches = iter(loader)
    log('', f'Num images:  {len(training_set)}', f'Image shape: {training_set.image_shape}',
        f'Label shape: {training_set.label_shape}', '')
    return training_set, batches, sampler_nimg

def dataset_focal(training_set) -> float:
    """Median normalised focal length (fx) of the camera labels."""
    return float(np.median([training_set.get_label(i)[16] for i in range(len(training_set))]))

def _build_networks(o, rank, device, training_set, log):
    log('Constructing networks...')
    dims = dict(c_dim=training_set.label_dim, img_resolution=training_set.resolution,
                img_channels=training_set.num_channels)
    G = dnnlib.util.construct_class_by_name(**o.G_kwargs, **dims).train().requires_grad_(False).to(device)
    # The snapshots record the dataset's focal beside the average camera, so the tools render with it; a copy,
    # so that the options (training_options.json, the training state) stay as given.
    G.rendering_kwargs = dict(G.rendering_kwargs, avg_camera_focal=dataset_focal(training_set))
    G.register_buffer('dataset_label_std', torch.tensor(training_set.get_label_std()).to(device))
    D = dnnlib.util.construct_class_by_name(**o.D_kwargs, **dims).train().requires_grad_(False).to(device)
    G_ema = copy.deepcopy(G).eval()
    if o.fast_modes is not None:
        fast_modes.wrap_generator_for_speed(G, compile=o.fast_modes['compile'], precision=o.fast_modes['precision'])
    if o.resume_pkl is not None and rank == 0:
        log(f'Resuming from "{o.resume_pkl}"')
        resumed = network_pickle.open_network_pkl(o.resume_pkl, trust_embedded_code=o.trust_embedded_code)
        for key, module in dict(G=G, D=D, G_ema=G_ema).items():
            misc.copy_params_and_buffers(resumed[key], module, require_all=False)
        del resumed
    if rank == 0:
        # A real camera: an arbitrary one would make the renderer produce NaNs.
        z = torch.zeros([o.batch_gpu, G.z_dim], device=device)
        c = torch.from_numpy(training_set.get_label(0)).to(device).unsqueeze(0).repeat(o.batch_gpu, 1)
        misc.print_module_summary(D, [misc.print_module_summary(G, [z, c]), c])
    return G, D, G_ema

def _setup_augmentation(o, device, log):
    log('Setting up augmentation...')
    if o.augment_kwargs is None or (o.augment_p <= 0 and o.ada_target is None):
        return None, None
    pipe = dnnlib.util.construct_class_by_name(**o.augment_kwargs).train().requires_grad_(False).to(device)
    pipe.p.copy_(torch.as_tensor(o.augment_p))
    ada_stats = training_stats.Collector(regex=re.escape(_ADA_STAT)) if o.ada_target is not None else None
    return pipe, ada_stats

def _broadcast_modules(modules, num_gpus):
    if num_gpus == 1:
        return
    for module in modules:
        if module is not None:
            for tensor in misc.params_and_buffers(module):
                if tensor.numel() > 0:
                    torch.distributed.broadcast(tensor, src=0)

def _setup_training(o, rank, device, G, D, augment_pipe, log):
    """(loss, phases, optimizers)."""
    log('Setting up training phases...')
    loss = dnnlib.util.construct_class_by_name(device=device, G=G, D=D, augment_pipe=augment_pipe, **o.loss_kwargs)
    phases, optimizers = setup_phases(G=G, D=D, G_opt_kwargs=o.G_opt_kwargs, D_opt_kwargs=o.D_opt_kwargs,
                                      G_reg_interval=o.G_reg_interval, D_reg_interval=o.D_reg_interval,
                                      cuda_timing=rank == 0 and device.type == 'cuda')
    return loss, phases, optimizers

def _restore_state(o, state, rank, networks, optimizers, augment_pipe, ada_stats):
    """What the pickle does not hold: optimizers, per-rank buffers, augmentation p and the pending ADA signs."""
    if state['num_gpus'] == o.num_gpus:
        saved = state['per_rank'][rank]['buffers']
        for name, buffer in _rank_local_buffers(networks).items():
            if name in saved:
                buffer.copy_(saved[name])
    for name, opt in optimizers.items():
        try:
            opt.load_state_dict(state['optimizers'][name])
        except (ValueError, KeyError) as err:
            raise ValueError(f'{o.resume_state}: the {name} optimizer state does not match the network '
                             f'({err})') from None
    if augment_pipe is not None and state['augment_p'] is not None:
        augment_pipe.p.copy_(torch.as_tensor(state['augment_p']))
    if ada_stats is not None and state['ada_pending'] is not None:
        ada_stats.carry_over(_ADA_STAT, state['ada_pending'])

def _export_reals(o, rank, device, training_set, z_dim, log):
    if rank != 0:
        return None
    log('Exporting sample images...')
    size, images, labels = setup_snapshot_image_grid(training_set=training_set, grid_size=o.image_grid_size)
    save_image_grid(images, os.path.join(o.run_dir, 'reals.png'), drange=[0, 255], grid_size=size)
    z = torch.randn([labels.shape[0], z_dim], device=device).split(o.batch_gpu)
    return dnnlib.EasyDict(size=size, z=z, c=torch.from_numpy(labels).to(device).split(o.batch_gpu))

class _Logs:
    """stats.jsonl and TensorBoard events of rank 0."""

    def __init__(self, run_dir, rank, start_time):
        self.start_time = start_time
        self.jsonl = None
        self.tfevents = None
        if rank != 0:
            return
        self.jsonl = open(os.path.join(run_dir, 'stats.jsonl'), 'wt')
        try:
            import torch.utils.tensorboard as tensorboard
            self.tfevents = tensorboard.SummaryWriter(run_dir)
        except ImportError as err:
            print('Skipping tfevents export:', err)

    def write(self, stats, metric_results, cur_nimg):
        timestamp = time.time()
        if self.jsonl is not None:
            self.jsonl.write(json.dumps(dict(stats, timestamp=timestamp)) + '\n')
            self.jsonl.flush()
        if self.tfevents is not None:
            step, walltime = int(cur_nimg / 1e3), timestamp - self.start_time
            for name, value in stats.items():
                self.tfevents.add_scalar(name, value.mean, global_step=step, walltime=walltime)
            for name, value in metric_results.items():
                self.tfevents.add_scalar(f'Metrics/{name}', value, global_step=step, walltime=walltime)
            self.tfevents.flush()

    def close(self):
        for stream in (self.jsonl, self.tfevents):
            if stream is not None:
                stream.close()

@dataclasses.dataclass
class _Progress:
    """Where the run stands; advanced by _train_iteration() only."""
    cur_nimg: int           # Images shown to D so far (all processes), starting at resume_kimg.
    batch_idx: int          # Iterations so far.
    sampler_nimg: int       # Real images drawn from the data stream (differs from cur_nimg after resume_kimg).

@dataclasses.dataclass
class _Ticks:
    """Tick and snapshot bookkeeping; changed by _end_tick() only."""
    cur_tick: int
    start_nimg: int                     # cur_nimg at the start of the tick.
    start_time: float
    maintenance_time: float             # Seconds between the previous tick's end and this tick's start.
    last_snapshot_pkl: Optional[str]    # Newest network pickle whose training state is saved (or resume_pkl).
    previous_snapshot_nimg: Optional[int] = None  # cur_nimg of the newest network pickle (for its name).
    metric_results: dict = dataclasses.field(default_factory=dict)  # Newest value of each metric.

@dataclasses.dataclass(eq=False)
class _Run:
    """Everything a training process holds. The fields before `progress` are set up once by _setup() and then only
    used; `progress` and `ticks` have one owner each, and `guard` counts the non-finite iterations."""
    o: dnnlib.EasyDict                  # The options (DEFAULTS with the caller's values).
    rank: int
    device: torch.device
    start_time: float
    training_set: torch.utils.data.Dataset
    batches: Iterator                   # (images, labels) of this rank, batch_size // num_gpus at a time.
    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: torch.nn.Module
    augment_pipe: Optional[torch.nn.Module]
    ada_stats: Optional[training_stats.Collector]
    loss: object                        # loss_kwargs' class: accumulate_gradients(phase=..., ...).
    phases: List[Phase]
    optimizers: dict                    # {'G': optimizer, 'D': optimizer}
    grid: Optional[dnnlib.EasyDict]     # Snapshot grid (size, z, c) on rank 0, else None.
    stats: training_stats.Collector
    logs: _Logs
    progress: _Progress
    ticks: _Ticks
    guard: _NonFiniteGuard

def _setup(o, rank, device, log):
    """Everything the loop needs, in the order that fixes the random streams of a run."""
    start_time = time.time()
    _configure_torch(o, rank, device)
    if rank == 0:
        dnnlib.util.remove_stale_temp_files(o.run_dir)
    state = _read_resume_state(o, rank, log)
    training_set, batches, sampler_nimg = _open_training_data(o, rank, device, state, log)
    G, D, G_ema = _build_networks(o, rank, device, training_set, log)
    augment_pipe, ada_stats = _setup_augmentation(o, device, log)
    log(f'Distributing across {o.num_gpus} GPUs...')
    _broadcast_modules([G, D, G_ema, augment_pipe], o.num_gpus)
    loss, phases, optimizers = _setup_training(o, rank, device, G, D, augment_pipe, log)
    if state is not None:
        _restore_state(o, state, rank, dict(G=G, D=D, G_ema=G_ema), optimizers, augment_pipe, ada_stats)
    grid = _export_reals(o, rank, device, training_set, G.z_dim, log)
    log('Initializing logs...')
    stats = training_stats.Collector(regex='.*')
    logs = _Logs(o.run_dir, rank, start_time)
    log(f'Training for {o.total_kimg} kimg...', '')
    progress = _Progress(cur_nimg=o.resume_kimg * 1000, batch_idx=0, sampler_nimg=sampler_nimg)
    cur_tick = 0
    if state is not None:
        progress.cur_nimg, progress.batch_idx, cur_tick = state['cur_nimg'], state['batch_idx'], state['cur_tick']
        if state['num_gpus'] == o.num_gpus:
            snapshot.restore_rng_state(state['per_rank'][rank]['rng'], device)
        else:
            log(f'Note: the training state was written by {state["num_gpus"]} processes; random streams restart.')
    tick_start_time = time.time()
    ticks = _Ticks(cur_tick=cur_tick, start_nimg=progress.cur_nimg, start_time=tick_start_time,
                   maintenance_time=tick_start_time - start_time, last_snapshot_pkl=o.resume_pkl)
    return _Run(o=o, rank=rank, device=device, start_time=start_time, training_set=training_set, batches=batches,
                G=G, D=D, G_ema=G_ema, augment_pipe=augment_pipe, ada_stats=ada_stats, loss=loss, phases=phases,
                optimizers=optimizers, grid=grid, stats=stats, logs=logs, progress=progress, ticks=ticks,
                guard=_NonFiniteGuard(o.nan_limit))

#----------------------------------------------------------------------------
# One iteration and the end of a tick.

def _train_iteration(run):
    o, device = run.o, run.device
    with torch.autograd.profiler.record_function('data_fetch'):
        real_img, real_c = next(run.batches)
        real_img = (real_img.to(device).to(torch.float32) / 127.5 - 1).split(o.batch_gpu)
        real_c = real_c.to(device).split(o.batch_gpu)
        gen_z, gen_c = draw_generator_inputs(run.training_set, num_phases=len(run.phases), batch_size=o.batch_size,
                                             batch_gpu=o.batch_gpu, z_dim=run.G.z_dim, device=device)
    progress = run.progress
    nonfinite = run_phases(run.phases, run.loss, real_img, real_c, gen_z, gen_c, batch_idx=progress.batch_idx,
                           cur_nimg=progress.cur_nimg, num_gpus=o.num_gpus, device=device)
    with torch.autograd.profiler.record_function('Gema'):
        update_ema(run.G_ema, run.G, cur_nimg=progress.cur_nimg, batch_size=o.batch_size, ema_kimg=o.ema_kimg,
                   ema_rampup=o.ema_rampup)
    progress.cur_nimg += o.batch_size
    progress.sampler_nimg += o.batch_size
    progress.batch_idx += 1
    run.guard.push(nonfinite)
    run.guard.check(progress.cur_nimg, run.ticks.last_snapshot_pkl)
    if run.ada_stats is not None and progress.batch_idx % o.ada_interval == 0:
        run.ada_stats.update()
        step = ada_adjustment(run.ada_stats[_ADA_STAT], ada_target=o.ada_target, batch_size=o.batch_size,
                              ada_interval=o.ada_interval, ada_kimg=o.ada_kimg)
        run.augment_pipe.p.copy_((run.augment_pipe.p + step).max(misc.constant(0, device=device)))

def _report_tick(run, tick_end_time):
    """Print the status line; its values also go to training_stats (so to stats.jsonl)."""
    device, on_cuda = run.device, run.device.type == 'cuda'
    cur_nimg, ticks = run.progress.cur_nimg, run.ticks
    tick_sec = tick_end_time - ticks.start_time
    total_sec = tick_end_time - run.start_time

    def gpu_gb(query):
        return query(device) / 2**30 if on_cuda else 0
    columns = [
        ('tick', 'Progress/tick', ticks.cur_tick, '<5d'),
        ('kimg', 'Progress/kimg', cur_nimg / 1e3, '<8.1f'),
        ('time', 'Timing/total_sec', total_sec, 'time'),
        ('sec/tick', 'Timing/sec_per_tick', tick_sec, '<7.1f'),
        ('sec/kimg', 'Timing/sec_per_kimg', tick_sec / (cur_nimg - ticks.start_nimg) * 1e3, '<7.2f'),
        ('maintenance', 'Timing/maintenance_sec', ticks.maintenance_time, '<6.1f'),
        ('cpumem', 'Resources/cpu_mem_gb', psutil.Process(os.getpid()).memory_info().rss / 2**30, '<6.2f'),
        ('gpumem', 'Resources/peak_gpu_mem_gb', gpu_gb(torch.cuda.max_memory_allocated), '<6.2f'),
        ('reserved', 'Resources/peak_gpu_mem_reserved_gb', gpu_gb(torch.cuda.max_memory_reserved), '<6.2f'),
        ('augment', 'Progress/augment', float(run.augment_pipe.p.cpu()) if run.augment_pipe is not None else 0, '.3f'),
    ]
    if on_cuda:
        torch.cuda.reset_peak_memory_stats(device)
    fields = []
    for label, stat, value, spec in columns:
        training_stats.report0(stat, value)
        text = f'{dnnlib.util.format_time(value):<12s}' if spec == 'time' else format(value, spec)
        fields.append(f'{label} {text}')
    training_stats.report0('Timing/total_hours', total_sec / (60 * 60))
    training_stats.report0('Timing/total_days', total_sec / (24 * 60 * 60))
    if run.rank == 0:
        print(' '.join(fields))
        if run.guard.in_tick > 0:
            print(f'Warning: {run.guard.in_tick} iteration(s) of this tick had non-finite losses or gradients '
                  f'(replaced by finite values; stopping after {run.guard.limit} in a row).')
    run.guard.in_tick = 0

def _save_network_snapshot(run):
    """Pickle copies of the networks (rank 0 writes); returns (pkl path, the copies, identity for the state)."""
    o, cur_nimg, cur_tick = run.o, run.progress.cur_nimg, run.ticks.cur_tick
    data = dict(training_set_kwargs=dict(o.training_set_kwargs))
    for key, module in dict(G=run.G, D=run.D, G_ema=run.G_ema, augment_pipe=run.augment_pipe).items():
        if module is not None:
            if o.num_gpus > 1:
                misc.check_ddp_consistency(module, ignore_regex=_RANK_LOCAL_REGEX)
            module = _snapshot_copy(module)
        data[key] = module
    name = snapshot.snapshot_name(cur_nimg, run.ticks.previous_snapshot_nimg)
    identity = None
    if run.rank == 0:
        sha256 = snapshot.save_pickle(os.path.join(o.run_dir, name), data)
        identity = snapshot.pickle_identity(name, sha256, cur_nimg=cur_nimg, cur_tick=cur_tick)
    return os.path.join(o.run_dir, name), data, identity

def _evaluate_metrics(run, G_ema, snapshot_pkl):
    """{name: value} of every metric of the snapshot."""
    o = run.o
    if run.rank == 0:
        print(o.run_dir)
        print('Evaluating metrics...')
    results = dict()
    for metric in o.metrics:
        result = metric_main.calc_metric(metric=metric, G=G_ema, dataset_kwargs=o.training_set_kwargs,
                                         num_gpus=o.num_gpus, rank=run.rank, device=run.device, seed=o.metrics_seed)
        if run.rank == 0:
            metric_main.report_metric(result, run_dir=o.run_dir, snapshot_pkl=snapshot_pkl)
        results.update(result.results)
    return results

def _save_training_state(run, snapshot_pkl, identity):
    """Write the state of the run beside its pickle, as it stands after this tick (all ranks take part).

    The state records the tick after this one (run.ticks.cur_tick + 1), where a resumed run continues."""
    o = run.o
    local_buffers = _rank_local_buffers(dict(G=run.G, D=run.D, G_ema=run.G_ema))
    per_rank = _gather_object(dict(rng=snapshot.capture_rng_state(run.device),
                                   buffers={name: buf.detach().cpu().clone() for name, buf in local_buffers.items()}),
                              o.num_gpus)
    if run.rank == 0:
        snapshot.save_training_state(snapshot.state_path_for(snapshot_pkl), dict(
            options=recorded_options(o),
            snapshot=identity,
            num_gpus=o.num_gpus,
            optimizers={name: opt.state_dict() for name, opt in run.optimizers.items()},
            augment_p=float(run.augment_pipe.p.cpu()) if run.augment_pipe is not None else None,
            ada_pending=run.ada_stats.unread(_ADA_STAT).tolist() if run.ada_stats is not None else None,
            per_rank=per_rank,
            cur_nimg=run.progress.cur_nimg, cur_tick=run.ticks.cur_tick + 1, batch_idx=run.progress.batch_idx,
            sampler_nimg=run.progress.sampler_nimg,
        ))

def _every(ticks, cur_tick, done):
    return ticks is not None and (done or cur_tick % ticks == 0)

def _end_tick(run, done, abort_fn, progress_fn):
    """Status line, snapshots, metrics and logs at the end of a tick; returns whether training is over."""
    o, ticks, cur_nimg = run.o, run.ticks, run.progress.cur_nimg
    tick_end_time = time.time()
    _report_tick(run, tick_end_time)
    if not done and abort_fn is not None and abort_fn():
        done = True
        if run.rank == 0:
            print()
            print('Aborting...')
    if run.rank == 0 and _every(o.image_snapshot_ticks, ticks.cur_tick, done):
        export_fakes(run.G_ema, run.grid, o.run_dir, cur_nimg)
    snapshot_pkl = None
    if _every(o.network_snapshot_ticks, ticks.cur_tick, done):
        snapshot_pkl, networks, identity = _save_network_snapshot(run)
        ticks.previous_snapshot_nimg = cur_nimg
        if o.metrics:
            ticks.metric_results.update(_evaluate_metrics(run, networks['G_ema'], snapshot_pkl))
        del networks
    for phase in run.phases:
        training_stats.report0('Timing/' + phase.name, phase.elapsed_ms())
    run.stats.update()
    run.logs.write(run.stats.as_dict(), ticks.metric_results, cur_nimg)
    if progress_fn is not None:
        progress_fn(cur_nimg // 1000, o.total_kimg)
    if snapshot_pkl is not None:
        _save_training_state(run, snapshot_pkl, identity)
        ticks.last_snapshot_pkl = snapshot_pkl
    ticks.cur_tick += 1
    ticks.start_nimg = cur_nimg
    ticks.start_time = time.time()
    ticks.maintenance_time = ticks.start_time - tick_end_time
    return done

#----------------------------------------------------------------------------

def training_loop(rank=0, device=None, abort_fn=None, progress_fn=None, **options):
    """Train with the options of DEFAULTS (keyword arguments) as process `rank` of options['num_gpus'].

    device: torch device (None: cuda:rank, made current, when CUDA is available, else the CPU); abort_fn() -> True stops
    training at the end of a tick; progress_fn(cur_kimg, total_kimg) is called once per tick.
    """
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise TypeError(f'training_loop() got unknown options: {", ".join(unknown)}')
    o = dnnlib.EasyDict(DEFAULTS, **options)
    if device is None:
        device = distributed.device_for(rank)
    device = torch.device(device)

    def log(*lines):
        if rank == 0:
            for line in lines:
                print(line)

    run = _setup(o, rank, device, log)
    if progress_fn is not None:
        progress_fn(run.progress.cur_nimg // 1000, o.total_kimg)
    try:
        done = False
        while not done:
            _train_iteration(run)
            cur_nimg = run.progress.cur_nimg
            done = cur_nimg >= o.total_kimg * 1000
            if not done and run.ticks.cur_tick != 0 and cur_nimg < run.ticks.start_nimg + o.kimg_per_tick * 1000:
                continue
            run.guard.flush()
            run.guard.check(cur_nimg, run.ticks.last_snapshot_pkl)
            done = _end_tick(run, done, abort_fn, progress_fn)
    finally:
        run.logs.close()
    log('', 'Exiting...')

#----------------------------------------------------------------------------
