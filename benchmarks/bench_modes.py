"""Speed modes x configurations: G forward ms/image, training s/kimg, peak memory and speedup, in one table.

Every measurement runs in its own subprocess (so peak RSS belongs to that measurement alone), and the
variants are interleaved round by round; the table reports medians over --repeats rounds, which keeps
A/B comparisons meaningful on a shared, noisy machine. --baseline=PATH adds the exact mode of another
checkout (e.g. a `git worktree add /tmp/main main`), timed by this same script in the same rounds.
Training time comes from benchmarks/bench_training.py's benchmark() of the measured checkout, with the
lazy phases (Greg, Dreg) in proportion when --train-iters is a multiple of 16 (else estimated from the
first iterations, which include one of each).

Modes: exact (default path), bf16 (decoder MLP under bf16 autocast), compile (torch.compile of renderer,
decoder, SR), foreach / fused (Adam implementation; training only), tf32 (CUDA only), fast (all).

Examples:

\b
# CPU table of docs/performance.md (reduced channels, batch 1, 64x64 neural rendering, 48+48 samples):
python benchmarks/bench_modes.py --device=cpu --cfgs=shapenet,ffhq --modes=exact,bf16,foreach \\
    --baseline=/tmp/main --repeats=3

\b
# Profile of G forward and of one training iteration (torch.profiler, grouped by record_function labels):
python benchmarks/bench_modes.py --device=cpu --cfgs=shapenet --profile
"""

import contextlib
import json
import os
import statistics
import subprocess
import sys

import click

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = dict(
    exact=dict(),
    bf16=dict(precision='bf16'),
    compile=dict(compile=True),
    foreach=dict(adam='foreach'),
    fused=dict(adam='fused'),
    tf32=dict(tf32=True),
    fast=dict(precision='bf16', compile=True, adam='fused', tf32=True),
)

#----------------------------------------------------------------------------
# Worker side: one measurement of one checkout, printed as a JSON line.

def _import_root(root):
    sys.path.insert(0, root)
    sys.path.insert(0, os.path.join(root, 'benchmarks'))

def _build_generator(cfg, device, opts):
    from bench_generator import build_generator
    return build_generator(cfg, device, cbase=opts['cbase'], cmax=opts['cmax'], samples=opts['samples'])

def _apply_modes(G, mode):
    spec = MODES[mode]
    if not spec:
        return G
    from torch_utils import fast_modes
    fast_modes.configure(tf32=spec.get('tf32', False))
    return fast_modes.wrap_generator_for_speed(G, compile=spec.get('compile', False), precision=spec.get('precision', 'fp32'))

def _peak_memory_mb(device):
    import resource

    import torch
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10

def _time_forward(G, cfg, device, nrr, iters):
    import time

    import torch
    from bench_generator import frontal_cameras
    z = torch.randn(1, G.z_dim, device=device)
    c = frontal_cameras(cfg, 1, device)
    times = []
    with torch.no_grad():
        for _ in range(iters + 1): # The first call warms up (and compiles).
            start = time.perf_counter()
            G(z, c, neural_rendering_resolution=nrr, noise_mode='const')
            if device.type == 'cuda':
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
    return statistics.median(times[1:]) * 1000

def _training_config(cfg, opts, tmp):
    """The train.py config of a dry run on a synthetic dataset in the folder `tmp`."""
    import bench_training

    import train
    data = os.path.join(tmp, 'data')
    os.makedirs(data)
    resolution = bench_training.RESOLUTIONS[cfg]
    bench_training.make_synthetic_dataset(data, cfg, resolution)
    args = [f'--outdir={tmp}', f'--cfg={cfg}', f'--data={data}', '--gpus=1', f'--batch={opts["batch"]}',
            f'--mbstd-group={opts["batch"]}', f'--cbase={opts["cbase"]}', f'--cmax={opts["cmax"]}',
            f'--neural_rendering_resolution_initial={opts["nrr"]}', f'--depth-resolution={opts["samples"][0]}',
            f'--depth-resolution-importance={opts["samples"][1]}', '--gamma=1', '--dry-run', '--metrics=none']
    c, _desc = train.config_from_args(args)
    return c

def _time_training(cfg, mode, device, opts):
    import tempfile

    import bench_training
    with tempfile.TemporaryDirectory() as tmp:
        c = _training_config(cfg, opts, tmp)
        spec = MODES[mode]
        if spec.get('adam'):
            from torch_utils import fast_modes
            for kwargs in (c.G_opt_kwargs, c.D_opt_kwargs):
                kwargs.update(fast_modes.adam_kwargs(spec['adam']))
        # The generator is built inside benchmark(); the modes wrap it before the phases are set up.
        hooks = dict(prepare=lambda G, D: _apply_modes(G, mode)) if MODES[mode] else dict()
        results = bench_training.benchmark(c, device, iters=opts['train_iters'], warmup=1, **hooks)
    return results['sec_per_kimg']

def run_worker(kind, root, cfg, mode, device_name, opts):
    _import_root(root)
    import torch
    device = torch.device(device_name)
    torch.manual_seed(0)
    if kind == 'forward':
        G = _apply_modes(_build_generator(cfg, device, opts), mode)
        value = _time_forward(G, cfg, device, opts['nrr'], opts['fwd_iters'])
    else:
        value = _time_training(cfg, mode, device, opts)
    return dict(value=value, peak_mb=_peak_memory_mb(device))

#----------------------------------------------------------------------------
# Profiles: torch.profiler over one G forward and one training iteration of each phase.

_G_LABELS = {'backbone.mapping': 'G.mapping', 'backbone.synthesis': 'G.backbone', 'superresolution': 'G.superresolution'}

class _Labelled:
    """Runs a module's call inside a record_function label (installed in the same slot as the fast modes)."""

    def __init__(self, module, label):
        self.inner = module._compiled_call_impl or module._call_impl
        self.label = label

    def __call__(self, *args, **kwargs):
        import torch
        with torch.profiler.record_function(self.label):
            return self.inner(*args, **kwargs)

def _label_modules(G, D=None):
    for name, label in _G_LABELS.items():
        module = G.get_submodule(name)
        module._compiled_call_impl = _Labelled(module, label)
    if D is not None:
        D._compiled_call_impl = _Labelled(D, 'D')

def _print_profile(title, prof, row_limit=18):
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1
    labels = [e for e in events if e.key.startswith(('G.', 'D', 'renderer.', 'Gmain', 'Greg', 'Dmain', 'Dreg', 'Dgen', 'Dreal', 'r1_grads'))
              and not e.key.startswith('aten')]
    print(f'## {title}  (self CPU total {total / 1e6:.2f} s)')
    print('| label | total ms | % of run |')
    print('|---|---:|---:|')
    for e in sorted(labels, key=lambda e: -e.cpu_time_total):
        print(f'| {e.key} | {e.cpu_time_total / 1e3:.0f} | {100 * e.cpu_time_total / total:.1f} |')
    print()
    print(events.table(sort_by='self_cpu_time_total', row_limit=row_limit, max_name_column_width=48))

def profile_config(cfg, device_name, opts):
    _import_root(REPO_ROOT)
    import tempfile

    import bench_training
    import torch
    from bench_generator import frontal_cameras
    from torch.profiler import ProfilerActivity, profile
    device = torch.device(device_name)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == 'cuda' else [])
    torch.manual_seed(0)
    G = _build_generator(cfg, device, opts)
    _label_modules(G)
    _time_forward(G, cfg, device, opts['nrr'], iters=1)
    with torch.no_grad(), profile(activities=activities, profile_memory=True) as prof:
        G(torch.randn(1, G.z_dim, device=device), frontal_cameras(cfg, 1, device), neural_rendering_resolution=opts['nrr'], noise_mode='const')
    _print_profile(f'{cfg}: G forward, batch 1', prof)

    # Training: 16 iterations would be needed for one Dreg; run every phase once instead (intervals forced to 1).
    def label(G, D):
        _label_modules(G, D)
        return G
    profiles = []
    @contextlib.contextmanager
    def profiled(batch_idx):
        if batch_idx == 0: # Warm-up iteration.
            yield
            return
        with profile(activities=activities, profile_memory=True) as prof:
            yield
        profiles.append(prof)
    with tempfile.TemporaryDirectory() as tmp:
        c = _training_config(cfg, opts, tmp)
        bench_training.benchmark(c, device, iters=1, warmup=1, prepare=label, every_phase=True,
                                 around_iteration=profiled)
    prof = profiles[0]
    _print_profile(f'{cfg}: one training iteration (Gmain, Greg, Dmain, Dreg once each), batch {opts["batch"]}', prof)

#----------------------------------------------------------------------------
# Driver side.

def _measure(kind, root, cfg, mode, device, opts):
    cmd = [sys.executable, os.path.abspath(__file__), f'--worker={kind}', f'--root={root}', f'--cfgs={cfg}',
           f'--modes={mode}', f'--device={device}', f'--opts={json.dumps(opts)}']
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith('{')]
    if proc.returncode != 0 or not lines:
        raise click.ClickException(f'{kind} {cfg}/{mode} at {root} failed:\n{proc.stderr[-2000:]}')
    return json.loads(lines[-1])

def run_table(cfgs, modes, baseline, device, repeats, opts):
    variants = ([('main', baseline, 'exact')] if baseline else []) + [('this', REPO_ROOT, m) for m in modes]
    results = {}
    for round_idx in range(repeats):
        for cfg in cfgs:
            for kind in ('forward', 'train'):
                for name, root, mode in variants:
                    if kind == 'forward' and MODES[mode].get('adam'):
                        continue
                    r = _measure(kind, root, cfg, mode, device, opts)
                    results.setdefault((cfg, name, mode, kind), []).append(r)
                    print(f'# round {round_idx + 1}/{repeats} {cfg} {name}:{mode} {kind}: {r}', file=sys.stderr, flush=True)
    return variants, results

def format_table(cfgs, variants, results, device):
    """Medians over rounds; speedups are medians of per-round ratios (robust to load that drifts between rounds)."""
    def median(cfg, name, mode, kind, key):
        runs = results.get((cfg, name, mode, kind))
        return statistics.median(r[key] for r in runs) if runs else None
    def speedup(cfg, name, mode, kind):
        runs, refs = results.get((cfg, name, mode, kind)), results.get((cfg, *reference, kind))
        if not runs or not refs:
            return '-'
        return f'{statistics.median(ref["value"] / run["value"] for ref, run in zip(refs, runs)):.2f}x'
    reference = ('main', 'exact') if variants[0][0] == 'main' else ('this', 'exact')
    mem = 'peak RSS MB' if device == 'cpu' else 'peak CUDA MB'
    rows = [f'| cfg | code:mode | G fwd ms/img | speedup | train s/kimg | speedup | fwd {mem} | train {mem} |',
            '|---|---|---:|---:|---:|---:|---:|---:|']
    fmt = lambda v, spec: '-' if v is None else format(v, spec)
    for cfg in cfgs:
        for name, _root, mode in variants:
            rows.append(f'| {cfg} | {name}:{mode} | {fmt(median(cfg, name, mode, "forward", "value"), ".0f")} | '
                        f'{speedup(cfg, name, mode, "forward")} | {fmt(median(cfg, name, mode, "train", "value"), ".0f")} | '
                        f'{speedup(cfg, name, mode, "train")} | {fmt(median(cfg, name, mode, "forward", "peak_mb"), ".0f")} | '
                        f'{fmt(median(cfg, name, mode, "train", "peak_mb"), ".0f")} |')
    return '\n'.join(rows)

#----------------------------------------------------------------------------

@click.command()
@click.option('--device', type=click.Choice(['cpu', 'cuda']), default='cpu', show_default=True)
@click.option('--cfgs', help='Comma-separated configurations', default='shapenet,ffhq', show_default=True)
@click.option('--modes', help=f'Comma-separated modes of this checkout: {",".join(MODES)}', default='exact,bf16', show_default=True)
@click.option('--baseline', help='Another checkout (e.g. of main) whose exact mode is the speedup reference', type=click.Path(exists=True, file_okay=False))
@click.option('--repeats', help='Interleaved rounds; medians are reported', type=click.IntRange(min=1), default=3, show_default=True)
@click.option('--cbase', type=click.IntRange(min=1), default=4096, show_default=True)
@click.option('--cmax', type=click.IntRange(min=1), default=64, show_default=True)
@click.option('--nrr', help='Neural rendering resolution', type=click.IntRange(min=8), default=64, show_default=True)
@click.option('--samples', help='Coarse,fine samples per ray', default='48,48', show_default=True)
@click.option('--batch', help='Training batch (= minibatch-std group)', type=click.IntRange(min=1), default=1, show_default=True)
@click.option('--fwd-iters', type=click.IntRange(min=1), default=3, show_default=True)
@click.option('--train-iters', help='Timed training iterations per measurement', type=click.IntRange(min=1), default=2, show_default=True)
@click.option('--profile', is_flag=True, help='Print torch.profiler tables instead of the benchmark table')
@click.option('--worker', type=click.Choice(['forward', 'train']), hidden=True)
@click.option('--root', hidden=True, default=REPO_ROOT)
@click.option('--opts', hidden=True)
def main(device, cfgs, modes, baseline, repeats, cbase, cmax, nrr, samples, batch, fwd_iters, train_iters, profile, worker, root, opts):
    """Print one table: mode x config -> forward ms/image, training s/kimg, peak memory, speedup."""
    cfgs = [c for c in cfgs.split(',') if c]
    modes = [m for m in modes.split(',') if m]
    for m in modes:
        if m not in MODES:
            raise click.BadParameter(f'unknown mode {m!r}; expected one of {", ".join(MODES)}', param_hint='--modes')
    if worker is not None:
        print(json.dumps(run_worker(worker, root, cfgs[0], modes[0], device, json.loads(opts))))
        return
    try:
        samples = [int(s) for s in samples.split(',')]
        assert len(samples) == 2
    except (ValueError, AssertionError):
        raise click.BadParameter(f'expected two comma-separated integers, got {samples!r}', param_hint='--samples') from None
    opts = dict(cbase=cbase, cmax=cmax, nrr=nrr, samples=samples, batch=batch, fwd_iters=fwd_iters, train_iters=train_iters)
    if profile:
        for cfg in cfgs:
            profile_config(cfg, device, opts)
        return
    variants, results = run_table(cfgs, modes, baseline and os.path.abspath(baseline), device, repeats, opts)
    print(f'device={device} cbase={cbase} cmax={cmax} nrr={nrr} samples={samples[0]}+{samples[1]} batch={batch} '
          f'repeats={repeats} (medians; speedup = median of per-round ratios)')
    print(format_table(cfgs, variants, results, device))

if __name__ == '__main__':
    main()
