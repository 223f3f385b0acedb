"""One-call GPU check: the CUDA kernels against the reference ops, G and D with and without them, one training
tick per speed mode, G inference and the viewer's frame time; writes gpu_check.md and gpu_check.json.

Sections (ffhq-512 networks with the released models' constructor arguments, random init):
  ops       every bias_act / upfirdn2d call G and D make (shape, dtype, up/down, padding, activation), recorded
            from one forward+backward, rerun with impl='cuda' and impl='ref': values and input gradients.
  networks  G and D forward+backward with the CUDA kernels vs EG3D_DISABLE_CUDA_OPS=1: max abs difference of
            the outputs and of every parameter gradient.
  tick      train.py at batch 4 from random init on a synthetic dataset, one process per mode: s/kimg and images/s
            of a tick of 16 iterations, peak memory, and whether every reported loss stayed finite.
  inference G forward images/s and the viewer's frame time (viz.render.Renderer) at neural rendering 64 and 128.
  ddp       with 2 or more GPUs: the same tick with train.py --gpus=N (DDP over NCCL), batch 4 per GPU.

Examples:

\b
# On one GPU (sized for under 8 minutes on a data-center GPU; --modes=... runs fewer training modes):
python benchmarks/gpu_check.py --outdir=gpu_check_out

\b
# Tiny configuration on the CPU (what CI runs, so the script cannot rot):
python benchmarks/gpu_check.py --device=cpu --outdir=/tmp/gpu_check
"""

import contextlib
import copy
import json
import math
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time

import click
import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from bench_generator import frontal_cameras  # noqa: E402
from bench_ops import _impl as ops_impl  # noqa: E402

import dnnlib  # noqa: E402
from torch_utils import custom_ops  # noqa: E402
from torch_utils.ops import bias_act, upfirdn2d  # noqa: E402

KWARGS_DIR = os.path.join(REPO_ROOT, 'tests', 'data', 'state_dicts')

# Full size (one GPU) and the tiny CPU configuration (shapenet-128 with few channels and samples, so that a test
# runs it in about a minute). Channel overrides of None keep the released sizes.
SIZES = dict(
    full=dict(cfg='ffhq', resolution=512, cbase=None, cmax=None, samples=(48, 48), nrr=64, batch=4, tick_iters=16,
              infer_batch=4, infer_iters=10, frames=20, infer_res=(64, 128), modes=('exact', 'no-cuda-ops', 'tf32', 'bf16', 'compile', 'fused-adam')),
    tiny=dict(cfg='shapenet', resolution=128, cbase=1024, cmax=32, samples=(4, 4), nrr=16, batch=2, tick_iters=1,
              infer_batch=1, infer_iters=1, frames=2, infer_res=(16, 32), modes=('exact',)),
)

# Training modes: extra train.py options and environment of the tick.
MODES = {
    'exact':       ([], {}),
    'no-cuda-ops': ([], {custom_ops.DISABLE_ENV_VAR: '1'}),
    'tf32':        (['--tf32=True'], {}),
    'bf16':        (['--precision=bf16'], {}),
    'compile':     (['--compile=True'], {}),
    'fused-adam':  (['--adam=fused'], {}),
}

# Kernel vs reference tolerance, relative to max(1, max |reference|): the kernels accumulate in fp32, so fp16
# outputs may differ by a few units in the last place.
TOLERANCE = {torch.float16: 1e-2, torch.float32: 1e-5, torch.float64: 1e-10}

#----------------------------------------------------------------------------
# Networks.

def network_kwargs(size):
    """(G_kwargs, D_kwargs) of the released models of the size's cfg, with its channel and sample overrides."""
    kwargs = []
    for net in 'GD':
        with open(os.path.join(KWARGS_DIR, f'{size["cfg"]}_{net}_kwargs.json')) as f:
            kwargs.append(dnnlib.EasyDict(json.load(f)))
    G_kwargs, D_kwargs = kwargs
    G_kwargs.mapping_kwargs = dnnlib.EasyDict(G_kwargs.mapping_kwargs)
    G_kwargs.sr_kwargs = dnnlib.EasyDict(G_kwargs.sr_kwargs)
    for target in (G_kwargs, G_kwargs.sr_kwargs, D_kwargs):
        for key, value in (('channel_base', size['cbase']), ('channel_max', size['cmax'])):
            if value is not None:
                target[key] = value
    G_kwargs.rendering_kwargs.update(depth_resolution=size['samples'][0], depth_resolution_importance=size['samples'][1])
    return G_kwargs, D_kwargs


def build_networks(size, device, seed=0):
    G_kwargs, D_kwargs = network_kwargs(size)
    torch.manual_seed(seed)
    G = dnnlib.util.construct_class_by_name(class_name='training.triplane.TriPlaneGenerator', **G_kwargs)
    D = dnnlib.util.construct_class_by_name(class_name='training.dual_discriminator.DualDiscriminator', **D_kwargs)
    return G.train().to(device), D.train().to(device)


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def forward_backward(G, D, size, device, seed=0):
    """G and D forward and backward, as in a G step: (outputs, {parameter name: gradient})."""
    G.zero_grad(set_to_none=True)
    D.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    z = torch.randn([2, G.z_dim], device=device)
    c = frontal_cameras(size['cfg'], 2, device)
    img = G(z, c, neural_rendering_resolution=size['nrr'], noise_mode='const')
    logits = D(img, c)
    (img['image'].square().mean() + logits.sum()).backward()
    grads = {f'G.{n}': p.grad for n, p in G.named_parameters() if p.grad is not None}
    grads.update({f'D.{n}': p.grad for n, p in D.named_parameters() if p.grad is not None})
    outputs = dict(image=img['image'], image_raw=img['image_raw'], image_depth=img['image_depth'], logits=logits)
    return {k: v.detach() for k, v in outputs.items()}, {k: v.detach() for k, v in grads.items()}


#----------------------------------------------------------------------------
# Kernels vs reference, on the calls the networks make.

@contextlib.contextmanager
def recorded_op_calls():
    """Collects {key: call} for each distinct bias_act / upfirdn2d call (the networks look them up per call)."""
    calls = {}
    real_bias_act, real_upfirdn2d = bias_act.bias_act, upfirdn2d.upfirdn2d
    layout = lambda x: 'channels_last' if x.ndim == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last) else 'contiguous'

    def record_bias_act(x, b=None, dim=1, act='linear', alpha=None, gain=None, clamp=None, impl='cuda'):
        args = dict(dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)
        key = ('bias_act', tuple(x.shape), str(x.dtype), layout(x), b is not None, tuple(sorted(args.items())))
        calls.setdefault(key, dict(op='bias_act', shape=list(x.shape), dtype=x.dtype, layout=layout(x), bias=b is not None, args=args))
        return real_bias_act(x, b, impl=impl, **args)

    def record_upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1, impl='cuda'):
        args = dict(up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)
        key = ('upfirdn2d', tuple(x.shape), str(x.dtype), layout(x), None if f is None else tuple(f.shape), repr(sorted(args.items())))
        calls.setdefault(key, dict(op='upfirdn2d', shape=list(x.shape), dtype=x.dtype, layout=layout(x),
                                   f=None if f is None else f.detach().clone(), args=args))
        return real_upfirdn2d(x, f, impl=impl, **args)

    bias_act.bias_act, upfirdn2d.upfirdn2d = record_bias_act, record_upfirdn2d
    try:
        yield calls
    finally:
        bias_act.bias_act, upfirdn2d.upfirdn2d = real_bias_act, real_upfirdn2d


def _run_op(call, x, b, impl):
    if call['op'] == 'bias_act':
        return bias_act.bias_act(x, b, impl=impl, **call['args'])
    return upfirdn2d.upfirdn2d(x, call['f'], impl=impl, **call['args'])


def compare_op(call, device, seed=0):
    """Max error (relative to max(1, |ref|)) of the kernel's output and input gradients against the reference."""
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(call['shape'], device=device, generator=gen).to(call['dtype'])
    if call['layout'] == 'channels_last':
        x = x.to(memory_format=torch.channels_last)
    b = None
    if call.get('bias'):
        b = torch.randn([call['shape'][call['args']['dim']]], device=device, generator=gen).to(call['dtype'])
    results = {}
    for impl in ('cuda', 'ref'):
        xi = x.clone().requires_grad_()
        bi = None if b is None else b.clone().requires_grad_()
        y = _run_op(call, xi, bi, impl)
        dy = torch.randn(y.shape, device=device, generator=torch.Generator(device=device).manual_seed(seed + 1)).to(y.dtype)
        grads = torch.autograd.grad(y, [t for t in (xi, bi) if t is not None], dy)
        results[impl] = dict(y=y.detach(), dx=grads[0], **({} if bi is None else dict(db=grads[1])))
    errors = {}
    for name, ref in results['ref'].items():
        scale = max(1.0, float(ref.abs().max()))
        errors[name] = float((results['cuda'][name].float() - ref.float()).abs().max()) / scale
    tol = TOLERANCE[call['dtype']]
    return dict(errors=errors, tolerance=tol, ok=all(err <= tol for err in errors.values()))


def check_ops(size, device):
    G, D = build_networks(size, device)
    with recorded_op_calls() as calls:
        forward_backward(G, D, size, device)
    rows = []
    for call in calls.values():
        result = compare_op(call, device)
        args = ', '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in call['args'].items() if v is not None)
        if call['op'] == 'upfirdn2d':
            args += f', f={None if call["f"] is None else list(call["f"].shape)}'
        else:
            args += f', bias={call["bias"]}'
        rows.append(dict(op=call['op'], shape=call['shape'], dtype=str(call['dtype']).replace('torch.', ''), layout=call['layout'],
                         args=args, **result))
    return rows

#----------------------------------------------------------------------------
# G and D with vs without the kernels.

def check_networks(size, device):
    G, D = build_networks(size, device)
    with ops_impl('cuda'):
        out_k, grad_k = forward_backward(G, D, size, device)
    with ops_impl('ref'):
        out_r, grad_r = forward_backward(G, D, size, device)
    diff = lambda a, b: float((a.float() - b.float()).abs().max())
    result = {f'{name}': diff(out_k[name], out_r[name]) for name in out_k}
    for net in 'GD':
        names = [n for n in grad_r if n.startswith(f'{net}.')]
        result[f'{net} parameter gradients'] = max(diff(grad_k[n], grad_r[n]) for n in names)
    finite = all(torch.isfinite(t).all() for t in [*out_k.values(), *grad_k.values()])
    return dict(max_abs_diff=result, finite=bool(finite))

#----------------------------------------------------------------------------
# Training ticks: train.py itself, one process per mode, so every option takes effect exactly as in training
# (and torch.compile, the environment and peak memory stay per mode). Tick 0 is the first iteration (start-up,
# compilation); tick 1 runs `tick_iters` more, with the lazy regularization phases in proportion at 16.

def _stat(entry):
    return entry['mean'] if isinstance(entry, dict) else entry


def run_training(size, device, mode, gpus, data, tmp):
    """Train for 1 + tick_iters iterations; dict of tick 1's s/kimg, images/s, peak memory, finiteness."""
    batch = size['batch'] * gpus
    tick_kimg = size['tick_iters'] * batch / 1000
    outdir = os.path.join(tmp, f'runs-{mode}-{gpus}')
    args = [f'--outdir={outdir}', f'--cfg={size["cfg"]}', f'--data={data}', f'--gpus={gpus}', f'--batch={batch}',
            '--gamma=1', f'--kimg={batch / 1000 + tick_kimg:g}', f'--tick={tick_kimg:g}', '--snap=1000', '--metrics=none',
            '--grid=1x1', '--workers=1', f'--neural_rendering_resolution_initial={size["nrr"]}',
            f'--depth-resolution={size["samples"][0]}', f'--depth-resolution-importance={size["samples"][1]}']
    if size['cbase'] is not None:
        args += [f'--cbase={size["cbase"]}', f'--cmax={size["cmax"]}', f'--mbstd-group={min(4, size["batch"])}']
    env = dict(os.environ, **MODES[mode][1])
    if device.type == 'cpu':
        env['CUDA_VISIBLE_DEVICES'] = ''  # train.py trains on the GPU whenever it sees one.
    start = time.time()
    proc = subprocess.run([sys.executable, os.path.join(REPO_ROOT, 'train.py'), *args, *MODES[mode][0]], env=env,
                          capture_output=True, text=True)
    result = dict(mode=mode, gpus=gpus, batch=batch, wall_s=time.time() - start)
    if proc.returncode != 0:
        lines = (proc.stderr.strip() or proc.stdout.strip() or '(no output)').splitlines()
        return dict(result, ok=False, error=lines[-1][:300])
    (run_dir,) = [os.path.join(outdir, name) for name in os.listdir(outdir)]
    with open(os.path.join(run_dir, 'stats.jsonl')) as f:
        ticks = [json.loads(line) for line in f if line.strip()]
    tick = ticks[-1]
    losses = {name: _stat(entry) for tick_stats in ticks for name, entry in tick_stats.items() if name.startswith('Loss/')}
    nonfinite = sorted(name for name, value in losses.items() if not math.isfinite(value))
    if 'non-finite losses' in proc.stdout:
        nonfinite.append('guard: non-finite losses or gradients replaced')
    sec_per_kimg = _stat(tick['Timing/sec_per_kimg'])
    peak = _stat(tick['Resources/peak_gpu_mem_gb']) if device.type == 'cuda' else _stat(tick['Resources/cpu_mem_gb'])
    return dict(result, ok=not nonfinite, sec_per_kimg=sec_per_kimg, img_per_sec=1000 / sec_per_kimg, peak_mem_gb=peak,
                nonfinite_losses=nonfinite)


def synthetic_dataset(size, tmp):
    import bench_training
    data = os.path.join(tmp, 'data')
    os.makedirs(data, exist_ok=True)
    bench_training.make_synthetic_dataset(data, size['cfg'], size['resolution'])
    return data

#----------------------------------------------------------------------------
# Inference and the viewer.

def check_inference(size, device, tmp):
    from viz.render import Renderer
    G, D = build_networks(size, device)
    G.eval().requires_grad_(False)
    pkl = os.path.join(tmp, 'network-snapshot.pkl')  # What the viewer opens: a snapshot of these networks.
    with open(pkl, 'wb') as f:
        pickle.dump(dict(G=copy.deepcopy(G).cpu(), D=D.cpu(), G_ema=copy.deepcopy(G).cpu()), f)
    renderer = Renderer(device=device)
    rows = []
    for res in size['infer_res']:
        batch = size['infer_batch']
        z = torch.randn([batch, G.z_dim], device=device)
        c = frontal_cameras(size['cfg'], batch, device)
        with torch.no_grad():
            G(z, c, neural_rendering_resolution=res, noise_mode='const')
            _sync(device)
            start = time.perf_counter()
            for _ in range(size['infer_iters']):
                G(z, c, neural_rendering_resolution=res, noise_mode='const')
            _sync(device)
        img_per_sec = size['infer_iters'] * batch / (time.perf_counter() - start)
        # The viewer orbiting one seed: the tri-planes are reused and each frame renders a new yaw.
        request = dict(network=pkl, neural_rendering_resolution=res)
        renderer.render(dict(request, yaw=0.0))
        frames = [renderer.render(dict(request, yaw=float(i + 1)))['timing']['total_ms'] for i in range(size['frames'])]
        rows.append(dict(neural_rendering_resolution=res, batch=batch, img_per_sec=img_per_sec,
                         viewer_frame_ms=statistics.median(frames)))
    return rows

#----------------------------------------------------------------------------
# Report.

def _fmt(value, spec='.3g'):
    return '-' if value is None else format(value, spec)


def markdown(report):
    env = report['environment']
    size = report['size']
    lines = [f'## GPU check: {env["device_name"]}', '',
             f'torch {env["torch"]}, CUDA {env["cuda"]}, {size["cfg"]}-{size["resolution"]} ({env["size"]} size), '
             f'{report["total_s"]:.0f} s in all.', '',
             '### CUDA kernels vs reference ops (every call G and D make)', '',
             '| op | shape | dtype | layout | arguments | max error (y, dx, db) | tolerance | ok |', '|---|---|---|---|---|---|---|---|']
    for row in report['ops']:
        errors = ', '.join(f'{k} {v:.2g}' for k, v in row['errors'].items())
        lines.append(f'| {row["op"]} | {row["shape"]} | {row["dtype"]} | {row["layout"]} | {row["args"]} | {errors} | {row["tolerance"]:g} | '
                     f'{"yes" if row["ok"] else "**NO**"} |')
    nets = report['networks']
    lines += ['', '### G and D forward+backward, CUDA kernels vs reference ops', '', '| quantity | max abs diff |', '|---|---|']
    lines += [f'| {k} | {v:.3g} |' for k, v in nets['max_abs_diff'].items()]
    lines += [f'| all finite | {"yes" if nets["finite"] else "**NO**"} |']
    memory = 'peak GPU memory (GB)' if env['gpus'] else 'process memory (GB)'
    lines += ['', f'### Training tick ({size["cfg"]}, batch {size["batch"]}, one process, random init)', '',
              f'| mode | s/kimg | images/s | {memory} | losses finite |', '|---|---|---|---|---|']
    for row in report['ticks']:
        if 'error' in row:
            lines.append(f'| {row["mode"]} | failed: {row["error"]} | | | |')
        else:
            lines.append(f'| {row["mode"]} | {row["sec_per_kimg"]:.1f} | {row["img_per_sec"]:.2f} | {_fmt(row["peak_mem_gb"], ".2f")} | '
                         f'{"yes" if row["ok"] else "**NO**: " + ", ".join(row["nonfinite_losses"])} |')
    lines += ['', '### G inference', '', '| neural rendering | batch | images/s | viewer frame (ms) |', '|---|---|---|---|']
    lines += [f'| {r["neural_rendering_resolution"]} | {r["batch"]} | {r["img_per_sec"]:.2f} | {r["viewer_frame_ms"]:.1f} |'
              for r in report['inference']]
    ddp = report.get('ddp')
    lines += ['', '### DDP (NCCL), exact mode', '']
    if ddp is None:
        lines.append('Not run: fewer than 2 GPUs.')
    elif 'error' in ddp:
        lines.append(f'{ddp["gpus"]} GPUs: failed: {ddp["error"]}')
    else:
        lines.append(f'{ddp["gpus"]} GPUs, batch {ddp["batch"]}: {ddp["sec_per_kimg"]:.1f} s/kimg, {ddp["img_per_sec"]:.2f} images/s, '
                     f'peak {_fmt(ddp["peak_mem_gb"], ".2f")} GB per GPU, losses finite: {"yes" if ddp["ok"] else "**NO**"}.')
    return '\n'.join(lines) + '\n'


def all_ok(report):
    return (all(row['ok'] for row in report['ops']) and report['networks']['finite'] and all(row['ok'] for row in report['ticks'])
            and (report.get('ddp') is None or report['ddp']['ok']))


def run_check(device, size_name, outdir, modes=None):
    size = dict(SIZES[size_name])
    start = time.time()
    report = dict(size=size, environment=dict(
        device_name=torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU', torch=torch.__version__,
        cuda=torch.version.cuda, size=size_name, gpus=torch.cuda.device_count() if device.type == 'cuda' else 0))
    with tempfile.TemporaryDirectory() as tmp:
        print('ops...', flush=True)
        report['ops'] = check_ops(size, device)
        print('networks...', flush=True)
        report['networks'] = check_networks(size, device)
        if device.type == 'cuda':
            torch.cuda.empty_cache()  # The training processes get the memory the checks above cached.
        data = synthetic_dataset(size, tmp)
        report['ticks'] = []
        for mode in modes or size['modes']:
            print(f'tick: {mode}...', flush=True)
            report['ticks'].append(run_training(size, device, mode, 1, data, tmp))
        print('inference...', flush=True)
        report['inference'] = check_inference(size, device, tmp)
        if report['environment']['gpus'] >= 2:
            print('ddp...', flush=True)
            report['ddp'] = run_training(size, device, 'exact', report['environment']['gpus'], data, tmp)
    report['total_s'] = time.time() - start
    report['ok'] = all_ok(report)
    os.makedirs(outdir, exist_ok=True)
    md_text = markdown(report)
    for name, text in (('gpu_check.md', md_text), ('gpu_check.json', json.dumps(report, indent=2, default=str))):
        dnnlib.util.write_atomic(os.path.join(outdir, name), lambda f, text=text: f.write(text), binary=False)
    return report, md_text

#----------------------------------------------------------------------------

@click.command()
@click.option('--device', help='cuda (one GPU, full ffhq-512 check) or cpu (tiny configuration)', type=click.Choice(['cuda', 'cpu']), default='cuda', show_default=True)
@click.option('--outdir', help='Where gpu_check.md and gpu_check.json go', type=str, default='gpu_check_out', show_default=True)
@click.option('--modes', help='Training modes to tick, comma-separated  [default: all of the size]', type=str)
def main(device, outdir, modes):
    """Verify and time the CUDA kernels, G, D, training and inference in one call; see the module docstring."""
    if device == 'cuda' and not torch.cuda.is_available():
        raise click.ClickException('--device=cuda: no CUDA GPU is visible (use --device=cpu for the tiny check)')
    selected = None
    if modes is not None:
        selected = [m.strip() for m in modes.split(',') if m.strip()]
        unknown = [m for m in selected if m not in MODES]
        if unknown:
            raise click.ClickException(f'--modes: unknown mode {unknown[0]} (valid: {", ".join(MODES)})')
    report, md_text = run_check(torch.device(device), 'full' if device == 'cuda' else 'tiny', outdir, selected)
    print(md_text)
    print(f'Wrote {os.path.join(outdir, "gpu_check.md")} and gpu_check.json')
    if not report['ok']:
        raise click.ClickException('some checks failed (marked NO above)')

if __name__ == '__main__':
    main()
