"""The EG3D training loop: phases with lazy regularization, G_ema, ADA, ticks, snapshots, metrics and logs.

Beyond the original: the full training state (optimizers, counters, ADA state, RNG streams, data position)
is saved next to every network snapshot and can be restored (`resume_state`), every file is written
atomically, and runs that keep producing non-finite losses or gradients stop (`nan_limit`).
"""

import copy
import itertools
import json
import os
import re
import time

import numpy as np
import PIL.Image
import psutil
import torch

import dnnlib
from metrics import metric_main
from torch_utils import misc, training_stats
from torch_utils.ops import conv2d_gradfix, grid_sample_gradfix
from training import network_pickle, snapshot

# Buffers that legitimately differ between ranks (the mapping's running w average): excluded from the
# consistency check, and saved per rank in the training state.
_RANK_LOCAL_REGEX = r'.*\.[^.]+_(avg|ema)'

class TrainingDiverged(RuntimeError):
    """Too many consecutive iterations with non-finite losses or gradients."""

#----------------------------------------------------------------------------
# Image grids.

def setup_snapshot_image_grid(training_set, random_seed=0, grid_size=None):
    """Pick the dataset items shown in the snapshot grids; returns ((gw, gh), images, labels)."""
    rnd = np.random.RandomState(random_seed)
    if grid_size is None:
        gw = int(np.clip(7680 // training_set.image_shape[2], 7, 32))
        gh = int(np.clip(4320 // training_set.image_shape[1], 4, 32))
    else:
        gw, gh = grid_size

    if not training_set.has_labels:
        all_indices = list(range(len(training_set)))
        rnd.shuffle(all_indices)
        grid_indices = [all_indices[i % len(all_indices)] for i in range(gw * gh)]
    else:
        # Rows cycle through groups of items with identical labels (continuous cameras: mostly singletons).
        label_groups = dict()
        for idx in range(len(training_set)):
            key = tuple(training_set.get_label(idx).flat[::-1])
            label_groups.setdefault(key, []).append(idx)
        label_order = list(label_groups.keys())
        rnd.shuffle(label_order)
        for key in label_order:
            rnd.shuffle(label_groups[key])
        grid_indices = []
        for y in range(gh):
            key = label_order[y % len(label_order)]
            indices = label_groups[key]
            grid_indices += [indices[x % len(indices)] for x in range(gw)]
            label_groups[key] = [indices[(i + gw) % len(indices)] for i in range(len(indices))]

    images, labels = zip(*[training_set[i] for i in grid_indices])
    return (gw, gh), np.stack(images), np.stack(labels)

def save_image_grid(img, fname, drange, grid_size):
    """Tile [N, C, H, W] images (values in drange) row-major into a gw x gh grid PNG (C = 1 or 3)."""
    lo, hi = drange
    scale = 255 / (hi - lo) if hi != lo else 0
    img = np.asarray(img, dtype=np.float32)
    img = np.rint((img - lo) * scale).clip(0, 255).astype(np.uint8)
    gw, gh = grid_size
    _N, C, H, W = img.shape
    assert C in (1, 3) and _N == gw * gh
    img = img.reshape([gh, gw, C, H, W]).transpose(0, 3, 1, 4, 2).reshape([gh * H, gw * W, C])
    image = PIL.Image.fromarray(img[:, :, 0], 'L') if C == 1 else PIL.Image.fromarray(img, 'RGB')
    snapshot.save_png(fname, image)

@torch.no_grad()
def _export_fakes(G_ema, grid_z, grid_c, grid_size, run_dir, cur_nimg):
    out = [G_ema(z=z, c=c, noise_mode='const') for z, c in zip(grid_z, grid_c)]
    images = torch.cat([o['image'].cpu() for o in out]).numpy()
    images_raw = torch.cat([o['image_raw'].cpu() for o in out]).numpy()
    images_depth = -torch.cat([o['image_depth'].cpu() for o in out]).numpy() # Near = bright.
    prefix = os.path.join(run_dir, f'fakes{cur_nimg // 1000:06d}')
    save_image_grid(images, prefix + '.png', drange=[-1, 1], grid_size=grid_size)
    save_image_grid(images_raw, prefix + '_raw.png', drange=[-1, 1], grid_size=grid_size)
    save_image_grid(images_depth, prefix + '_depth.png', drange=[images_depth.min(), images_depth.max()],
                    grid_size=grid_size)

#----------------------------------------------------------------------------
# Helpers.

class _SkippingSampler(torch.utils.data.Sampler):
    """Continues a deterministic sampler stream after the first `skip` indices (exact data order on resume)."""

    def __init__(self, sampler, skip):
        super().__init__()
        self.sampler = sampler
        self.skip = skip

    def __iter__(self):
        return itertools.islice(iter(self.sampler), self.skip, None)

class _NonFiniteGuard:
    """Counts iterations with non-finite losses/gradients. Flags are 0-dim device tensors that are read one
    iteration late, so checking them never stalls the GPU queue."""

    def __init__(self, limit):
        self.limit = limit
        self.pending = None
        self.consecutive = 0
        self.in_tick = 0

    def push(self, flag):
        previous, self.pending = self.pending, flag
        if previous is not None:
            self._count(previous)

    def flush(self):
        if self.pending is not None:
            self._count(self.pending)
            self.pending = None

    def _count(self, flag):
        if float(flag) > 0:
            self.consecutive += 1
            self.in_tick += 1
        else:
            self.consecutive = 0

    def exceeded(self):
        return self.limit > 0 and self.consecutive >= self.limit

def _data_loader_kwargs(data_loader_kwargs, device):
    kwargs = dict(data_loader_kwargs)
    if device.type != 'cuda':
        kwargs['pin_memory'] = False # Nothing to pin for.
    if kwargs.get('num_workers', 0) == 0:
        kwargs.pop('prefetch_factor', None) # Only valid with worker processes.
    return kwargs

def _reduce_gradients(module, loss_nonfinite, num_gpus):
    """Average the gradients over ranks in one flat all_reduce and sanitize them as the original does.

    The loss's non-finite count rides along in the same vector. Returns a 0-dim tensor, 1 if any loss term or
    gradient entry was non-finite on any rank (identical on every rank), else 0.
    """
    params = [param for param in module.parameters() if param.numel() > 0 and param.grad is not None]
    flat = torch.cat([param.grad.flatten() for param in params] + [loss_nonfinite.reshape(1).to(torch.float32)])
    if num_gpus > 1:
        torch.distributed.all_reduce(flat)
        flat /= num_gpus
    nonfinite = (flat[-1] > 0) | ~torch.isfinite(flat[:-1]).all()
    misc.nan_to_num(flat, nan=0, posinf=1e5, neginf=-1e5, out=flat)
    for param, grad in zip(params, flat[:-1].split([param.numel() for param in params])):
        param.grad = grad.reshape(param.shape)
    return nonfinite.to(torch.float32)

def setup_phases(G, D, G_opt_kwargs, D_opt_kwargs, G_reg_interval, D_reg_interval):
    """Training phases in execution order and one optimizer per network; returns (phases, {'G': opt, 'D': opt})."""
    phases = []
    optimizers = dict()
    for name, module, opt_kwargs, reg_interval in [('G', G, G_opt_kwargs, G_reg_interval),
                                                   ('D', D, D_opt_kwargs, D_reg_interval)]:
        opt_kwargs = dnnlib.EasyDict(opt_kwargs)
        if 'betas' in opt_kwargs:
            opt_kwargs.betas = [float(beta) for beta in opt_kwargs.betas] # Recent Adam rejects the int 0 of [0, 0.99].
        if reg_interval is None:
            opt = dnnlib.util.construct_class_by_name(params=module.parameters(), **opt_kwargs)
            phases += [dnnlib.EasyDict(name=name + 'both', module=module, opt=opt, interval=1)]
        else:
            # Lazy regularization: scale lr and betas so that the main steps plus the occasional regularization
            # step behave like one step per iteration.
            mb_ratio = reg_interval / (reg_interval + 1)
            opt_kwargs.lr = opt_kwargs.lr * mb_ratio
            opt_kwargs.betas = [beta ** mb_ratio for beta in opt_kwargs.betas]
            opt = dnnlib.util.construct_class_by_name(module.parameters(), **opt_kwargs)
            phases += [dnnlib.EasyDict(name=name + 'main', module=module, opt=opt, interval=1)]
            phases += [dnnlib.EasyDict(name=name + 'reg', module=module, opt=opt, interval=reg_interval)]
        optimizers[name] = opt
    return phases, optimizers

def draw_generator_inputs(training_set, num_phases, batch_size, batch_gpu, z_dim, device):
    """Latents (torch RNG) and generation cameras (NumPy RNG, uniform over the dataset labels) for every phase,
    N_b per phase, split into chunks of batch_gpu: ([[z chunk, ...] per phase], [[c chunk, ...] per phase])."""
    all_gen_z = torch.randn([num_phases * batch_size, z_dim], device=device)
    all_gen_z = [phase_gen_z.split(batch_gpu) for phase_gen_z in all_gen_z.split(batch_size)]
    all_gen_c = [training_set.get_label(np.random.randint(len(training_set))) for _ in range(num_phases * batch_size)]
    all_gen_c = torch.from_numpy(np.stack(all_gen_c))
    all_gen_c = (all_gen_c.pin_memory() if device.type == 'cuda' else all_gen_c).to(device)
    all_gen_c = [phase_gen_c.split(batch_gpu) for phase_gen_c in all_gen_c.split(batch_size)]
    return all_gen_z, all_gen_c

def run_phases(phases, loss, phase_real_img, phase_real_c, all_gen_z, all_gen_c, batch_idx, cur_nimg, num_gpus,
               device):
    """Run the phases due at batch_idx: accumulate each chunk's gradients (summed, as in the original), average
    over ranks, step. Chunks beyond the real ones are drawn but unused (multi-GPU). Returns a 0-dim tensor, 1 if
    any loss term or gradient was non-finite on any rank."""
    iteration_nonfinite = torch.zeros([], device=device)
    for phase, phase_gen_z, phase_gen_c in zip(phases, all_gen_z, all_gen_c):
        if batch_idx % phase.interval != 0:
            continue
        if phase.get('start_event') is not None:
            phase.start_event.record(torch.cuda.current_stream(device))
        phase_start = time.perf_counter()

        # Accumulate gradients.
        phase.opt.zero_grad(set_to_none=True)
        phase.module.requires_grad_(True)
        loss.nonfinite.zero_()
        for real_img, real_c, gen_z, gen_c in zip(phase_real_img, phase_real_c, phase_gen_z, phase_gen_c):
            loss.accumulate_gradients(phase=phase.name, real_img=real_img, real_c=real_c, gen_z=gen_z, gen_c=gen_c,
                                      gain=phase.interval, cur_nimg=cur_nimg)
        phase.module.requires_grad_(False)

        # Update weights.
        with torch.autograd.profiler.record_function(phase.name + '_opt'):
            iteration_nonfinite += _reduce_gradients(phase.module, loss.nonfinite, num_gpus)
            phase.opt.step()

        if phase.get('end_event') is not None:
            phase.end_event.record(torch.cuda.current_stream(device))
        phase.elapsed_ms = (time.perf_counter() - phase_start) * 1e3
    return iteration_nonfinite

@torch.no_grad()
def update_ema(G_ema, G, cur_nimg, batch_size, ema_kimg, ema_rampup):
    """Move G_ema towards G with a half-life of ema_kimg (ramped up early on); copy buffers and render settings."""
    ema_nimg = ema_kimg * 1000
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    ema_beta = 0.5 ** (batch_size / max(ema_nimg, 1e-8))
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.copy_(p.lerp(p_ema, ema_beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)
    G_ema.neural_rendering_resolution = G.neural_rendering_resolution
    G_ema.rendering_kwargs = G.rendering_kwargs.copy()
    return ema_beta

def ada_adjustment(sign_mean, ada_target, batch_size, ada_interval, ada_kimg):
    """Change of the augmentation probability: one step towards making E[sign(D(real))] equal the target."""
    return np.sign(sign_mean - ada_target) * (batch_size * ada_interval) / (ada_kimg * 1000)

def _snapshot_copy(module):
    module = copy.deepcopy(module).eval().requires_grad_(False).cpu()
    # Fix: .cpu() skips plain tensor attributes (the renderer's plane_axes), which would tie the pickle to a GPU.
    for submodule in module.modules():
        for name, value in list(vars(submodule).items()):
            if isinstance(value, torch.Tensor) and value.device.type != 'cpu':
                setattr(submodule, name, value.cpu())
    return module

def _rank_local_buffers(modules):
    return {f'{name}.{buf_name}': buf for name, module in modules.items()
            for buf_name, buf in module.named_buffers() if re.fullmatch(_RANK_LOCAL_REGEX, f'{name}.{buf_name}')}

def _ada_pending(ada_stats):
    # Moments of 'Loss/signs/real' reported since the last ADA adjustment (reads training_stats internals;
    # valid right after a full collector update, when every counter has been folded into the totals).
    name = 'Loss/signs/real'
    total = training_stats._cumulative.get(name, torch.zeros([3], dtype=torch.float64))
    seen = ada_stats._cumulative.get(name, torch.zeros([3], dtype=torch.float64))
    return (total - seen).tolist()

def _ada_restore_pending(ada_stats, pending):
    # The next update() computes (new totals) - (-pending): the interrupted interval's values are included.
    ada_stats._cumulative['Loss/signs/real'] = -torch.tensor(pending, dtype=torch.float64)

def _broadcast_object(obj, rank, num_gpus):
    if num_gpus == 1:
        return obj
    payload = [obj if rank == 0 else None]
    torch.distributed.broadcast_object_list(payload, src=0)
    return payload[0]

def _gather_object(obj, num_gpus):
    if num_gpus == 1:
        return [obj]
    gathered = [None] * num_gpus
    torch.distributed.all_gather_object(gathered, obj)
    return gathered

#----------------------------------------------------------------------------

# Loop arguments recorded in the training state (what train.py compares before restoring it).
_STATE_OPTION_KEYS = ('training_set_kwargs', 'data_loader_kwargs', 'G_kwargs', 'D_kwargs', 'G_opt_kwargs',
                      'D_opt_kwargs', 'augment_kwargs', 'loss_kwargs', 'metrics', 'random_seed', 'num_gpus',
                      'batch_size', 'batch_gpu', 'ema_kimg', 'ema_rampup', 'G_reg_interval', 'D_reg_interval',
                      'augment_p', 'ada_target', 'ada_interval', 'ada_kimg', 'total_kimg', 'kimg_per_tick',
                      'image_snapshot_ticks', 'network_snapshot_ticks', 'resume_kimg', 'cudnn_benchmark',
                      'nan_limit', 'image_grid_size')

def training_loop(
    run_dir                 = '.',      # Output directory.
    training_set_kwargs     = {},       # Options for the training set.
    data_loader_kwargs      = {},       # Options for torch.utils.data.DataLoader.
    G_kwargs                = {},       # Options for the generator.
    D_kwargs                = {},       # Options for the discriminator.
    G_opt_kwargs            = {},       # Options for the generator optimizer.
    D_opt_kwargs            = {},       # Options for the discriminator optimizer.
    augment_kwargs          = None,     # Options for the augmentation pipeline (None: no augmentation).
    loss_kwargs             = {},       # Options for the loss.
    metrics                 = [],       # Metrics evaluated at each network snapshot.
    random_seed             = 0,        # Global random seed.
    num_gpus                = 1,        # Number of processes.
    rank                    = 0,        # Rank of this process in [0, num_gpus).
    batch_size              = 4,        # Total batch size over all processes.
    batch_gpu               = 4,        # Samples per forward pass per process.
    ema_kimg                = 10,       # Half-life of the G_ema average (kimg).
    ema_rampup              = 0.05,     # G_ema half-life ramp-up ratio (None: no ramp-up).
    G_reg_interval          = None,     # Lazy interval of G regularization (None: single 'Gboth' phase).
    D_reg_interval          = 16,       # Lazy interval of D regularization (None: single 'Dboth' phase).
    augment_p               = 0,        # Initial augmentation probability.
    ada_target              = None,     # ADA target sign mean (None: fixed p).
    ada_interval            = 4,        # Iterations between ADA adjustments.
    ada_kimg                = 500,      # ADA adjustment speed: kimg for p to move by 1.
    total_kimg              = 25000,    # Training length (kimg).
    kimg_per_tick           = 4,        # Progress tick length (kimg).
    image_snapshot_ticks    = 50,       # Ticks between image grids (None: never).
    network_snapshot_ticks  = 50,       # Ticks between network snapshots (None: never).
    resume_pkl              = None,     # Network pickle to copy G, D, G_ema from.
    resume_kimg             = 0,        # Starting kimg when resume_state is None.
    cudnn_benchmark         = True,     # cuDNN benchmark mode.
    abort_fn                = None,     # Callback: stop training when it returns True.
    progress_fn             = None,     # Callback: progress_fn(cur_kimg, total_kimg).
    # Additions of this project.
    resume_state            = None,     # training-state-*.pt saved next to resume_pkl: continue exactly.
    nan_limit               = 50,       # Stop after this many consecutive non-finite iterations (0: never).
    image_grid_size         = None,     # (gw, gh) of the snapshot grids (None: from the resolution).
    device                  = None,     # Torch device (None: cuda:rank if available, else CPU).
):
    # Initialize.
    state_options = json.loads(json.dumps({key: value for key, value in locals().items() if key in _STATE_OPTION_KEYS}))
    start_time = time.time()
    if device is None:
        device = torch.device('cuda', rank) if torch.cuda.is_available() else torch.device('cpu')
    device = torch.device(device)
    np.random.seed(random_seed * num_gpus + rank)
    torch.manual_seed(random_seed * num_gpus + rank)
    torch.backends.cudnn.benchmark = cudnn_benchmark
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
    conv2d_gradfix.enabled = True
    grid_sample_gradfix.enabled = False

    # Training state of the run being continued (rank 0 reads it; the others need not see the file).
    state = None
    if resume_state is not None:
        if resume_pkl is None:
            raise ValueError('resume_state needs resume_pkl: the networks come from the snapshot next to it')
        if rank == 0:
            print(f'Loading training state from "{resume_state}"')
            state = snapshot.load_training_state(resume_state)
        state = _broadcast_object(state, rank, num_gpus)

    # Load training set.
    if rank == 0:
        print('Loading training set...')
    training_set = dnnlib.util.construct_class_by_name(**training_set_kwargs)
    training_set_sampler = misc.InfiniteSampler(dataset=training_set, rank=rank, num_replicas=num_gpus, seed=random_seed)
    sampler_nimg = state['sampler_nimg'] if state is not None else 0 # Real images drawn from the sampler stream.
    if sampler_nimg > 0:
        training_set_sampler = _SkippingSampler(training_set_sampler, skip=sampler_nimg // num_gpus)
    training_set_iterator = iter(torch.utils.data.DataLoader(dataset=training_set, sampler=training_set_sampler,
                                                             batch_size=batch_size // num_gpus,
                                                             **_data_loader_kwargs(data_loader_kwargs, device)))
    if rank == 0:
        print()
        print('Num images: ', len(training_set))
        print('Image shape:', training_set.image_shape)
        print('Label shape:', training_set.label_shape)
        print()

    # Construct networks.
    if rank == 0:
        print('Constructing networks...')
    common_kwargs = dict(c_dim=training_set.label_dim, img_resolution=training_set.resolution,
                         img_channels=training_set.num_channels)
    G = dnnlib.util.construct_class_by_name(**G_kwargs, **common_kwargs).train().requires_grad_(False).to(device)
    G.register_buffer('dataset_label_std', torch.tensor(training_set.get_label_std()).to(device))
    D = dnnlib.util.construct_class_by_name(**D_kwargs, **common_kwargs).train().requires_grad_(False).to(device)
    G_ema = copy.deepcopy(G).eval()

    # Resume from existing pickle.
    if (resume_pkl is not None) and (rank == 0):
        print(f'Resuming from "{resume_pkl}"')
        with dnnlib.util.open_url(resume_pkl) as f:
            resume_data = network_pickle.load_network_pkl(f)
        for name, module in [('G', G), ('D', D), ('G_ema', G_ema)]:
            misc.copy_params_and_buffers(resume_data[name], module, require_all=False)
        del resume_data

    # Print network summary tables (a real camera: an uninitialised one would make the renderer produce NaNs).
    if rank == 0:
        z = torch.zeros([batch_gpu, G.z_dim], device=device)
        c = torch.from_numpy(training_set.get_label(0)).to(device).unsqueeze(0).repeat(batch_gpu, 1)
        img = misc.print_module_summary(G, [z, c])
        misc.print_module_summary(D, [img, c])

    # Setup augmentation.
    if rank == 0:
        print('Setting up augmentation...')
    augment_pipe = None
    ada_stats = None
    if (augment_kwargs is not None) and (augment_p > 0 or ada_target is not None):
        augment_pipe = dnnlib.util.construct_class_by_name(**augment_kwargs).train().requires_grad_(False).to(device)
        augment_pipe.p.copy_(torch.as_tensor(augment_p))
        if ada_target is not None:
            ada_stats = training_stats.Collector(regex='Loss/signs/real')

    # Distribute across GPUs.
    if rank == 0:
        print(f'Distributing across {num_gpus} GPUs...')
    for module in [G, D, G_ema, augment_pipe]:
        if module is not None and num_gpus > 1:
            for param in misc.params_and_buffers(module):
                if param.numel() > 0:
                    torch.distributed.broadcast(param, src=0)

    # Setup training phases.
    if rank == 0:
        print('Setting up training phases...')
    loss = dnnlib.util.construct_class_by_name(device=device, G=G, D=D, augment_pipe=augment_pipe, **loss_kwargs)
    phases, optimizers = setup_phases(G=G, D=D, G_opt_kwargs=G_opt_kwargs, D_opt_kwargs=D_opt_kwargs,
                                      G_reg_interval=G_reg_interval, D_reg_interval=D_reg_interval)
    for phase in phases:
        phase.start_event = phase.end_event = None # CUDA timing events (rank 0).
        phase.elapsed_ms = None                    # Also tells whether the phase has run in this process.
        if rank == 0 and device.type == 'cuda':
            phase.start_event = torch.cuda.Event(enable_timing=True)
            phase.end_event = torch.cuda.Event(enable_timing=True)

    # Restore what the pickle does not hold.
    if state is not None:
        if state['num_gpus'] == num_gpus:
            local = state['per_rank'][rank]['buffers']
            for name, buf in _rank_local_buffers(dict(G=G, D=D, G_ema=G_ema)).items():
                if name in local:
                    buf.copy_(local[name])
        for name, opt in optimizers.items():
            try:
                opt.load_state_dict(state['optimizers'][name])
            except (ValueError, KeyError) as err:
                raise ValueError(f'{resume_state}: the {name} optimizer state does not match the network '
                                 f'({err})') from None
        if augment_pipe is not None and state['augment_p'] is not None:
            augment_pipe.p.copy_(torch.as_tensor(state['augment_p']))
        if ada_stats is not None and state['ada_pending'] is not None:
            _ada_restore_pending(ada_stats, state['ada_pending'])

    # Export sample images.
    grid_size = None
    grid_z = None
    grid_c = None
    if rank == 0:
        print('Exporting sample images...')
        grid_size, images, labels = setup_snapshot_image_grid(training_set=training_set, grid_size=image_grid_size)
        save_image_grid(images, os.path.join(run_dir, 'reals.png'), drange=[0, 255], grid_size=grid_size)
        grid_z = torch.randn([labels.shape[0], G.z_dim], device=device).split(batch_gpu)
        grid_c = torch.from_numpy(labels).to(device).split(batch_gpu)

    # Initialize logs.
    if rank == 0:
        print('Initializing logs...')
    stats_collector = training_stats.Collector(regex='.*')
    stats_metrics = dict()
    stats_jsonl = None
    stats_tfevents = None
    if rank == 0:
        stats_jsonl = open(os.path.join(run_dir, 'stats.jsonl'), 'wt')
        try:
            import torch.utils.tensorboard as tensorboard
            stats_tfevents = tensorboard.SummaryWriter(run_dir)
        except ImportError as err:
            print('Skipping tfevents export:', err)

    # Train.
    if rank == 0:
        print(f'Training for {total_kimg} kimg...')
        print()
    cur_nimg = resume_kimg * 1000
    cur_tick = 0
    batch_idx = 0
    if state is not None:
        cur_nimg, cur_tick, batch_idx = state['cur_nimg'], state['cur_tick'], state['batch_idx']
        if state['num_gpus'] == num_gpus:
            snapshot.restore_rng_state(state['per_rank'][rank]['rng'], device)
        elif rank == 0:
            print(f'Note: the training state was written by {state["num_gpus"]} processes; random streams restart.')
        del state
    tick_start_nimg = cur_nimg
    tick_start_time = time.time()
    maintenance_time = tick_start_time - start_time
    if progress_fn is not None:
        progress_fn(cur_nimg // 1000, total_kimg)
    guard = _NonFiniteGuard(nan_limit)
    last_snapshot_pkl = resume_pkl

    try:
        while True:

            # Fetch training data.
            with torch.autograd.profiler.record_function('data_fetch'):
                phase_real_img, phase_real_c = next(training_set_iterator)
                phase_real_img = (phase_real_img.to(device).to(torch.float32) / 127.5 - 1).split(batch_gpu)
                phase_real_c = phase_real_c.to(device).split(batch_gpu)
                all_gen_z, all_gen_c = draw_generator_inputs(training_set, num_phases=len(phases), batch_size=batch_size,
                                                             batch_gpu=batch_gpu, z_dim=G.z_dim, device=device)

            # Execute training phases.
            iteration_nonfinite = run_phases(phases, loss, phase_real_img, phase_real_c, all_gen_z, all_gen_c,
                                             batch_idx=batch_idx, cur_nimg=cur_nimg, num_gpus=num_gpus, device=device)

            # Update G_ema.
            with torch.autograd.profiler.record_function('Gema'):
                update_ema(G_ema, G, cur_nimg=cur_nimg, batch_size=batch_size, ema_kimg=ema_kimg, ema_rampup=ema_rampup)

            # Update state.
            cur_nimg += batch_size
            sampler_nimg += batch_size
            batch_idx += 1
            guard.push(iteration_nonfinite)
            if guard.exceeded():
                raise TrainingDiverged(_diverged_message(guard, cur_nimg, last_snapshot_pkl))

            # Execute ADA heuristic.
            if (ada_stats is not None) and (batch_idx % ada_interval == 0):
                ada_stats.update()
                adjust = ada_adjustment(ada_stats['Loss/signs/real'], ada_target=ada_target, batch_size=batch_size,
                                        ada_interval=ada_interval, ada_kimg=ada_kimg)
                augment_pipe.p.copy_((augment_pipe.p + adjust).max(misc.constant(0, device=device)))

            # Perform maintenance tasks once per tick.
            done = (cur_nimg >= total_kimg * 1000)
            if (not done) and (cur_tick != 0) and (cur_nimg < tick_start_nimg + kimg_per_tick * 1000):
                continue
            guard.flush()
            if guard.exceeded():
                raise TrainingDiverged(_diverged_message(guard, cur_nimg, last_snapshot_pkl))

            # Print status line, accumulating the same information in training_stats.
            tick_end_time = time.time()
            on_cuda = device.type == 'cuda'
            fields = []
            fields += [f"tick {training_stats.report0('Progress/tick', cur_tick):<5d}"]
            fields += [f"kimg {training_stats.report0('Progress/kimg', cur_nimg / 1e3):<8.1f}"]
            fields += [f"time {dnnlib.util.format_time(training_stats.report0('Timing/total_sec', tick_end_time - start_time)):<12s}"]
            fields += [f"sec/tick {training_stats.report0('Timing/sec_per_tick', tick_end_time - tick_start_time):<7.1f}"]
            fields += [f"sec/kimg {training_stats.report0('Timing/sec_per_kimg', (tick_end_time - tick_start_time) / (cur_nimg - tick_start_nimg) * 1e3):<7.2f}"]
            fields += [f"maintenance {training_stats.report0('Timing/maintenance_sec', maintenance_time):<6.1f}"]
            fields += [f"cpumem {training_stats.report0('Resources/cpu_mem_gb', psutil.Process(os.getpid()).memory_info().rss / 2**30):<6.2f}"]
            fields += [f"gpumem {training_stats.report0('Resources/peak_gpu_mem_gb', torch.cuda.max_memory_allocated(device) / 2**30 if on_cuda else 0):<6.2f}"]
            fields += [f"reserved {training_stats.report0('Resources/peak_gpu_mem_reserved_gb', torch.cuda.max_memory_reserved(device) / 2**30 if on_cuda else 0):<6.2f}"]
            if on_cuda:
                torch.cuda.reset_peak_memory_stats(device)
            fields += [f"augment {training_stats.report0('Progress/augment', float(augment_pipe.p.cpu()) if augment_pipe is not None else 0):.3f}"]
            training_stats.report0('Timing/total_hours', (tick_end_time - start_time) / (60 * 60))
            training_stats.report0('Timing/total_days', (tick_end_time - start_time) / (24 * 60 * 60))
            if rank == 0:
                print(' '.join(fields))
                if guard.in_tick > 0:
                    print(f'Warning: {guard.in_tick} iteration(s) of this tick had non-finite losses or gradients '
                          f'(replaced by finite values; stopping after {nan_limit} in a row).')
            guard.in_tick = 0

            # Check for abort.
            if (not done) and (abort_fn is not None) and abort_fn():
                done = True
                if rank == 0:
                    print()
                    print('Aborting...')

            # Save image snapshot.
            if (rank == 0) and (image_snapshot_ticks is not None) and (done or cur_tick % image_snapshot_ticks == 0):
                _export_fakes(G_ema, grid_z, grid_c, grid_size, run_dir, cur_nimg)

            # Save network snapshot.
            snapshot_pkl = None
            snapshot_data = None
            if (network_snapshot_ticks is not None) and (done or cur_tick % network_snapshot_ticks == 0):
                snapshot_data = dict(training_set_kwargs=dict(training_set_kwargs))
                for name, module in [('G', G), ('D', D), ('G_ema', G_ema), ('augment_pipe', augment_pipe)]:
                    if module is not None:
                        if num_gpus > 1:
                            misc.check_ddp_consistency(module, ignore_regex=_RANK_LOCAL_REGEX)
                        module = _snapshot_copy(module)
                    snapshot_data[name] = module
                    del module
                snapshot_pkl = os.path.join(run_dir, snapshot.snapshot_name(cur_nimg))
                if rank == 0:
                    snapshot.save_pickle(snapshot_pkl, snapshot_data)

            # Evaluate metrics.
            if (snapshot_data is not None) and (len(metrics) > 0):
                if rank == 0:
                    print(run_dir)
                    print('Evaluating metrics...')
                for metric in metrics:
                    result_dict = metric_main.calc_metric(metric=metric, G=snapshot_data['G_ema'],
                                                          dataset_kwargs=training_set_kwargs, num_gpus=num_gpus,
                                                          rank=rank, device=device)
                    if rank == 0:
                        metric_main.report_metric(result_dict, run_dir=run_dir, snapshot_pkl=snapshot_pkl)
                    stats_metrics.update(result_dict.results)
            del snapshot_data

            # Collect statistics.
            for phase in phases:
                value = [] # Nothing for a phase that has not run yet in this process.
                if phase.elapsed_ms is not None:
                    value = phase.elapsed_ms
                    if phase.start_event is not None:
                        phase.end_event.synchronize()
                        value = phase.start_event.elapsed_time(phase.end_event)
                training_stats.report0('Timing/' + phase.name, value)
            stats_collector.update()
            stats_dict = stats_collector.as_dict()

            # Update logs.
            timestamp = time.time()
            if stats_jsonl is not None:
                fields = dict(stats_dict, timestamp=timestamp)
                stats_jsonl.write(json.dumps(fields) + '\n')
                stats_jsonl.flush()
            if stats_tfevents is not None:
                global_step = int(cur_nimg / 1e3)
                walltime = timestamp - start_time
                for name, value in stats_dict.items():
                    stats_tfevents.add_scalar(name, value.mean, global_step=global_step, walltime=walltime)
                for name, value in stats_metrics.items():
                    stats_tfevents.add_scalar(f'Metrics/{name}', value, global_step=global_step, walltime=walltime)
                stats_tfevents.flush()
            if progress_fn is not None:
                progress_fn(cur_nimg // 1000, total_kimg)

            # Update state.
            cur_tick += 1
            tick_start_nimg = cur_nimg

            # The full training state goes next to the pickle, captured here so that a resumed run continues
            # exactly where this one goes on.
            if snapshot_pkl is not None:
                _save_training_state(
                    path=snapshot.state_path_for(snapshot_pkl), rank=rank, num_gpus=num_gpus, device=device,
                    options=state_options, optimizers=optimizers, augment_pipe=augment_pipe,
                    ada_stats=ada_stats, local_buffers=_rank_local_buffers(dict(G=G, D=D, G_ema=G_ema)),
                    counters=dict(cur_nimg=cur_nimg, cur_tick=cur_tick, batch_idx=batch_idx,
                                  sampler_nimg=sampler_nimg))
                last_snapshot_pkl = snapshot_pkl

            tick_start_time = time.time()
            maintenance_time = tick_start_time - tick_end_time
            if done:
                break
    finally:
        if stats_jsonl is not None:
            stats_jsonl.close()
        if stats_tfevents is not None:
            stats_tfevents.close()

    # Done.
    if rank == 0:
        print()
        print('Exiting...')

#----------------------------------------------------------------------------

def _save_training_state(path, rank, num_gpus, device, options, optimizers, augment_pipe, ada_stats, local_buffers,
                         counters):
    per_rank = _gather_object(dict(rng=snapshot.capture_rng_state(device),
                                   buffers={name: buf.detach().cpu().clone() for name, buf in local_buffers.items()}),
                              num_gpus)
    if rank != 0:
        return
    snapshot.save_training_state(path, dict(
        options     = options,
        num_gpus    = num_gpus,
        optimizers  = {name: opt.state_dict() for name, opt in optimizers.items()},
        augment_p   = float(augment_pipe.p.cpu()) if augment_pipe is not None else None,
        ada_pending = _ada_pending(ada_stats) if ada_stats is not None else None,
        per_rank    = per_rank,
        **counters,
    ))

def _diverged_message(guard, cur_nimg, last_snapshot_pkl):
    return (f'{guard.consecutive} consecutive iterations with non-finite losses or gradients (limit {guard.limit}) '
            f'at kimg {cur_nimg / 1e3:.3f}; stopping. Last good snapshot: {last_snapshot_pkl or "none"}')

#----------------------------------------------------------------------------
