"""Process launching shared by the tools that run on several GPUs (train.py, calc_metrics.py).

Two ways in: `launch_local()` runs one process per GPU on this machine (in-process for one GPU, else
torch.multiprocessing.spawn with a rendezvous file in a temporary folder), and `torchrun_world()` detects
a process that torchrun (or another env:// launcher) started, for multi-node jobs.
"""

import os
import tempfile

import torch

import dnnlib

TORCHRUN_VARIABLES = ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')
_RENDEZVOUS_FILE = '.torch_distributed_init'


def torchrun_world():
    """EasyDict(rank, world_size, local_rank, local_world_size) of an env:// launched process, else None."""
    if any(key not in os.environ for key in TORCHRUN_VARIABLES):
        return None
    world_size = int(os.environ['WORLD_SIZE'])
    return dnnlib.EasyDict(rank=int(os.environ['RANK']), world_size=world_size,
                           local_rank=int(os.environ['LOCAL_RANK']),
                           local_world_size=int(os.environ.get('LOCAL_WORLD_SIZE', world_size)))


def device_for(local_rank: int, select: bool = True) -> torch.device:
    """The CUDA device of a local rank (made current when `select`), or the CPU when there is no GPU."""
    if not torch.cuda.is_available():
        return torch.device('cpu')
    if select:
        torch.cuda.set_device(local_rank)
    return torch.device('cuda', local_rank)


def backend() -> str:
    # NCCL needs CUDA and does not exist on Windows.
    return 'nccl' if torch.cuda.is_available() and os.name != 'nt' else 'gloo'


def file_init_method(path: str) -> str:
    """init_method URL of a rendezvous file; on Windows the drive letter goes after three slashes."""
    if os.name == 'nt':
        return 'file:///' + path.replace('\\', '/')
    return 'file://' + path


def share_cpu_cores(device: torch.device, processes_per_node: int) -> None:
    """Give each CPU process its share of the cores, so that N processes do not oversubscribe them."""
    if device.type == 'cpu' and processes_per_node > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // processes_per_node))


def init_env_process_group() -> None:
    """Join the process group of a torchrun job (rendezvous through its environment variables)."""
    torch.distributed.init_process_group(backend=backend(), init_method='env://')


def close_process_group() -> None:
    # Exiting with live gloo threads can abort the interpreter.
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _local_process(rank: int, fn, num_processes: int, rendezvous_dir: str, args: tuple) -> None:
    # The rank's GPU becomes current before NCCL or anything else can touch GPU 0.
    device_for(rank)
    if num_processes > 1:
        path = os.path.abspath(os.path.join(rendezvous_dir, _RENDEZVOUS_FILE))
        torch.distributed.init_process_group(backend=backend(), init_method=file_init_method(path), rank=rank,
                                             world_size=num_processes)
    try:
        fn(rank, *args)
    finally:
        close_process_group()


def launch_local(fn, num_processes: int, args: tuple = ()) -> None:
    """Call fn(rank, *args) in `num_processes` processes of one machine, joined in a process group.

    One process runs in the calling process (its exceptions propagate); more are spawned, and a failing one
    raises torch.multiprocessing.ProcessRaisedException or ProcessExitedException here.
    """
    with tempfile.TemporaryDirectory() as rendezvous_dir:
        process_args = (fn, num_processes, rendezvous_dir, tuple(args))
        if num_processes == 1:
            _local_process(0, *process_args)
        else:
            torch.multiprocessing.spawn(fn=_local_process, args=process_args, nprocs=num_processes)
