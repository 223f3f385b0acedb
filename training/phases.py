"""The steps of a training iteration: phases with lazy regularization, generator inputs, gradient reduction,
the G_ema update and the ADA adjustment."""

import dataclasses
import time
from typing import Optional

import numpy as np
import torch

import dnnlib
from torch_utils import misc


@dataclasses.dataclass(eq=False)
class Phase:
    """One step of an iteration: the loss phase `name` updates `module` with `opt` every `interval` iterations.

    run_phases() writes the timing fields; the loop reads them through elapsed_ms().
    """
    name: str                       # The loss's phase name: Gmain, Greg, Gboth, Dmain, Dreg or Dboth.
    module: torch.nn.Module
    opt: torch.optim.Optimizer
    interval: int
    start_event: Optional[torch.cuda.Event] = None  # CUDA timing of the last run (setup_phases(cuda_timing=True)).
    end_event: Optional[torch.cuda.Event] = None
    wall_ms: Optional[float] = None # Wall time of the last run; None until the phase has run in this process.

    def elapsed_ms(self):
        """Duration of the last run (CUDA events when timed, else wall time), or [] if the phase has not run."""
        if self.wall_ms is None:
            return []
        if self.start_event is None:
            return self.wall_ms
        self.end_event.synchronize()
        return self.start_event.elapsed_time(self.end_event)



def reduce_gradients(module, loss_nonfinite, num_gpus):
    """Average the gradients over ranks in one flat all_reduce and replace non-finite entries.

    The loss's non-finite count travels in the same vector. Returns a 0-dim float tensor: 1 if a loss term or
    gradient entry was non-finite on any rank (the same on every rank), else 0.
    """
    params = [param for param in module.parameters() if param.numel() > 0 and param.grad is not None]
    flat = torch.cat([param.grad.reshape(-1) for param in params] + [loss_nonfinite.reshape(1).float()])
    if num_gpus > 1:
        torch.distributed.all_reduce(flat)
        flat /= num_gpus
    grads = flat[:-1]
    flag = (flat[-1] > 0) | ~torch.isfinite(grads).all()
    misc.nan_to_num(flat, nan=0, posinf=1e5, neginf=-1e5, out=flat)
    for param, grad in zip(params, grads.split([param.numel() for param in params])):
        param.grad = grad.reshape(param.shape)
    return flag.float()

def setup_phases(G, D, G_opt_kwargs, D_opt_kwargs, G_reg_interval, D_reg_interval, cuda_timing=False):
    """Training phases in execution order and one optimizer per network: ([Phase, ...], {'G': opt, 'D': opt}).

    cuda_timing: time each phase with CUDA events (else wall time, which excludes queued GPU work)."""
    phases, optimizers = [], dict()
    for prefix, module, opt_kwargs, interval in [('G', G, G_opt_kwargs, G_reg_interval),
                                                 ('D', D, D_opt_kwargs, D_reg_interval)]:
        opt_kwargs = dnnlib.EasyDict(opt_kwargs)
        if 'betas' in opt_kwargs:
            opt_kwargs.betas = [float(beta) for beta in opt_kwargs.betas] # Recent Adam rejects the int 0.
        if interval is None:
            optimizers[prefix] = dnnlib.util.construct_class_by_name(params=module.parameters(), **opt_kwargs)
            schedule = [('both', 1)]
        else:
            # Lazy regularization: the main steps plus one regularization step every `interval` iterations
            # should move like one step per iteration, so lr and betas shrink by interval / (interval + 1).
            ratio = interval / (interval + 1)
            opt_kwargs.lr = opt_kwargs.lr * ratio
            opt_kwargs.betas = [beta ** ratio for beta in opt_kwargs.betas]
            optimizers[prefix] = dnnlib.util.construct_class_by_name(module.parameters(), **opt_kwargs)
            schedule = [('main', 1), ('reg', interval)]
        phases += [Phase(name=prefix + suffix, module=module, opt=optimizers[prefix], interval=every)
                   for suffix, every in schedule]
    if cuda_timing:
        for phase in phases:
            phase.start_event = torch.cuda.Event(enable_timing=True)
            phase.end_event = torch.cuda.Event(enable_timing=True)
    return phases, optimizers

def draw_generator_inputs(training_set, num_phases, batch_size, batch_gpu, z_dim, device):
    """Latents (torch stream) and cameras (NumPy stream, uniform over the dataset's labels) of every phase, in
    chunks of batch_gpu: ([[z chunk, ...] per phase], [[c chunk, ...] per phase])."""
    z = torch.randn([num_phases * batch_size, z_dim], device=device)
    c = np.stack([training_set.get_label(np.random.randint(len(training_set)))
                  for _ in range(num_phases * batch_size)])
    c = torch.from_numpy(c)
    c = (c.pin_memory() if device.type == 'cuda' else c).to(device)
    def per_phase(values):
        return [chunk.split(batch_gpu) for chunk in values.split(batch_size)]
    return per_phase(z), per_phase(c)

def run_phases(phases, loss, phase_real_img, phase_real_c, all_gen_z, all_gen_c, batch_idx, cur_nimg, num_gpus,
               device):
    """Run the phases due at batch_idx: sum the chunks' gradients, average over ranks, step. Chunks beyond the
    real ones are drawn but unused (multi-GPU). Returns a 0-dim tensor, 1 if anything was non-finite."""
    any_nonfinite = torch.zeros([], device=device)
    for phase, gen_z_chunks, gen_c_chunks in zip(phases, all_gen_z, all_gen_c):
        if batch_idx % phase.interval != 0:
            continue
        if phase.start_event is not None:
            phase.start_event.record(torch.cuda.current_stream(device))
        started = time.perf_counter()
        phase.opt.zero_grad(set_to_none=True)
        phase.module.requires_grad_(True)
        loss.nonfinite.zero_()
        for real_img, real_c, gen_z, gen_c in zip(phase_real_img, phase_real_c, gen_z_chunks, gen_c_chunks):
            loss.accumulate_gradients(phase=phase.name, real_img=real_img, real_c=real_c, gen_z=gen_z, gen_c=gen_c,
                                      gain=phase.interval, cur_nimg=cur_nimg)
        phase.module.requires_grad_(False)
        with torch.autograd.profiler.record_function(phase.name + '_opt'):
            any_nonfinite += reduce_gradients(phase.module, loss.nonfinite, num_gpus)
            phase.opt.step()
        if phase.end_event is not None:
            phase.end_event.record(torch.cuda.current_stream(device))
        phase.wall_ms = (time.perf_counter() - started) * 1e3
    return any_nonfinite

@torch.no_grad()
def update_ema(G_ema, G, cur_nimg, batch_size, ema_kimg, ema_rampup):
    """Move G_ema towards G with a half-life of ema_kimg (ramped up early on); copy buffers and render settings."""
    half_life = ema_kimg * 1000 if ema_rampup is None else min(ema_kimg * 1000, cur_nimg * ema_rampup)
    beta = 0.5 ** (batch_size / max(half_life, 1e-8))
    for param_ema, param in zip(G_ema.parameters(), G.parameters()):
        param_ema.copy_(param.lerp(param_ema, beta))
    for buffer_ema, buffer in zip(G_ema.buffers(), G.buffers()):
        buffer_ema.copy_(buffer)
    G_ema.neural_rendering_resolution = G.neural_rendering_resolution
    G_ema.rendering_kwargs = G.rendering_kwargs.copy()
    return beta

def ada_adjustment(sign_mean, ada_target, batch_size, ada_interval, ada_kimg):
    """Change of the augmentation probability: one step towards making E[sign(D(real))] equal the target."""
    return np.sign(sign_mean - ada_target) * (batch_size * ada_interval) / (ada_kimg * 1000)
