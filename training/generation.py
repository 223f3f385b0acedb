"""What the generation tools share: the device, the generator of a snapshot, camera labels and image conversion.

Used by gen_samples.py, gen_videos.py and the benchmarks; calc_metrics.py and the metrics use the loader and the
image conversion too. Command-line parsing and the error boundary live in training/cli_utils.py.
"""

import click
import numpy as np
import PIL.Image
import torch

import dnnlib
from camera_utils import LookAtPoseSampler, focal_to_fov, fov_to_focal
from torch_utils import misc
from training import cli_utils, network_pickle, presets

LABEL_DIM = 25  # cam2world (16, row-major) followed by the normalised intrinsics (9).

# What "degrees" means for every tool's field of view: camera_utils.fov_to_focal()'s convention.
DEGREES_NOTE = "focal = 1 / (1.414 tan(deg / 2)), not the true field of view: docs/cameras.md"

# ----------------------------------------------------------------------------
# Device.


def parse_device(value) -> torch.device:
    """'cpu', 'cuda', 'cuda:1', ...; None or '' picks CUDA when available. ValueError names the problem."""
    if isinstance(value, torch.device):
        return value
    if value is None or str(value).strip() == '':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        device = torch.device(str(value).strip())
    except RuntimeError as err:
        raise ValueError(f'"{value}" is not a torch device ({" ".join(str(err).split())})') from err
    if device.type == 'cuda':
        if not torch.cuda.is_available():
            raise ValueError(f'"{value}": CUDA is not available on this machine')
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f'"{value}": only {torch.cuda.device_count()} CUDA device(s) are visible')
    elif device.type != 'cpu':
        raise ValueError(f'"{value}": only cpu and cuda devices are supported')
    return device


DEVICE = cli_utils.click_type(parse_device, 'device')

# ----------------------------------------------------------------------------
# The generator.


def open_snapshot(network_pkl: str, trust_embedded_code: bool = False, flag: str = '--network') -> dict:
    """network_pickle.open_network_pkl() for a tool: a file that cannot be read ends it with one line naming `flag`."""
    try:
        return network_pickle.open_network_pkl(network_pkl, trust_embedded_code=trust_embedded_code)
    except network_pickle.NetworkPickleError as err:
        raise click.ClickException(f'{flag}: {err}') from err


def check_eg3d_generator(G, network_pkl: str, flag: str = '--network') -> None:
    """One line naming `flag` and the file unless G is a camera-conditioned EG3D generator."""
    if not isinstance(getattr(G, 'rendering_kwargs', None), dict) or getattr(G, 'c_dim', None) != LABEL_DIM:
        raise click.ClickException(f'{flag}: {network_pkl}: G_ema is a {type(G).__name__}, not an EG3D generator '
                                   f'(expected rendering_kwargs and c_dim = {LABEL_DIM})')


def load_generator(network_pkl: str, device, reload_modules: bool = False, trust_embedded_code: bool = False,
                   flag: str = '--network'):
    """G_ema of a snapshot (path or URL) on `device`, in eval mode without gradients.

    reload_modules rebuilds G from its constructor arguments with this repository's code and copies every
    parameter and buffer. A file that cannot be read, or whose G_ema is not a camera-conditioned EG3D generator,
    ends the tool with one line naming `flag` and the file.
    """
    print(f'Loading networks from "{network_pkl}"...')
    G = open_snapshot(network_pkl, trust_embedded_code=trust_embedded_code, flag=flag)['G_ema']
    check_eg3d_generator(G, network_pkl, flag=flag)
    G = G.eval().requires_grad_(False).to(device)
    if reload_modules:
        print('Reloading modules...')
        rebuilt = type(G)(*G.init_args, **G.init_kwargs).eval().requires_grad_(False).to(device)
        misc.copy_params_and_buffers(G, rebuilt, require_all=True)
        rebuilt.neural_rendering_resolution = G.neural_rendering_resolution
        rebuilt.rendering_kwargs = G.rendering_kwargs
        G = rebuilt
    return G

# ----------------------------------------------------------------------------
# Cameras.


def focal_length(cfg: str) -> float:
    """Normalised focal length of a dataset family (FFHQ, AFHQ, Shapenet; any case)."""
    return presets.PRESET_FOCAL[cfg.lower()]


def snapshot_camera(G, cfg: str = None, fov_deg: float = None) -> dnnlib.EasyDict:
    """The camera the tools render a generator with by default: focal, pivot [3], radius, and where the focal came from.

    Pivot and radius are the snapshot's avg_camera_pivot and avg_camera_radius. The focal is, in order: --fov-deg
    or --cfg when given; the avg_camera_focal that this project's training records; for pickles that record
    none (the released ones), the focal of the dataset family whose rendering preset the snapshot matches.
    """
    pivot, radius = presets.camera_orbit(G.rendering_kwargs)
    recorded = G.rendering_kwargs.get('avg_camera_focal')
    family = presets.family_of(G.rendering_kwargs)
    if fov_deg is not None:
        focal, source = fov_to_focal(fov_deg), f'--fov-deg={fov_deg:g}'
    elif cfg is not None:
        focal, source = focal_length(cfg), f'--cfg={cfg}'
    elif recorded is not None:
        focal, source = float(recorded), 'recorded in the snapshot'
    elif family is not None:
        focal, source = presets.PRESET_FOCAL[family], f'{family} preset; the snapshot records no focal'
    else:
        focal, source = presets.FOCAL_FFHQ, 'FFHQ default; the snapshot records no focal and matches no preset'
    return dnnlib.EasyDict(focal=focal, pivot=pivot, radius=radius, source=source)


def describe_camera(camera: dnnlib.EasyDict) -> str:
    """One line for the tools' output: the camera they render with and where its focal comes from."""
    return (f'Camera: focal {camera.focal:.4f} ({focal_to_fov(camera.focal):.3f} degrees, {camera.source}), '
            f'radius {camera.radius:g}, pivot {[round(v, 4) for v in camera.pivot]}')


def intrinsics_matrix(focal: float, device='cpu') -> torch.Tensor:
    """[3, 3] normalised intrinsics with principal point (0.5, 0.5)."""
    return torch.tensor([[focal, 0, 0.5], [0, focal, 0.5], [0, 0, 1]], dtype=torch.float32, device=device)


def camera_sphere(rendering_kwargs: dict, device='cpu') -> tuple:
    """(pivot [3] tensor, radius) of the sphere the scripts' cameras move on, from a generator's rendering options."""
    pivot, radius = presets.camera_orbit(rendering_kwargs)
    return torch.tensor(pivot, dtype=torch.float32, device=device), radius


def camera_label(cam2world: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """cam2world [B, 4, 4] and one intrinsics [3, 3] -> generator labels [B, 25]."""
    cam2world = cam2world.reshape(-1, 16)
    assert intrinsics.numel() == 9, f'intrinsics of shape {tuple(intrinsics.shape)}'
    intrinsics = intrinsics.reshape(1, 9).to(cam2world).expand(len(cam2world), 9)
    return torch.cat([cam2world, intrinsics], dim=1)


def look_at_label(yaw: float, pitch: float, pivot: torch.Tensor, radius: float, intrinsics: torch.Tensor):
    """Label [1, 25] of a camera at (yaw, pitch) on the sphere, looking at the pivot (LookAtPoseSampler angles)."""
    cam2world = LookAtPoseSampler.sample(yaw, pitch, pivot, radius=radius, device=pivot.device)
    return camera_label(cam2world, intrinsics)

# ----------------------------------------------------------------------------
# Images.


def to_uint8(img: torch.Tensor, channels_last: bool = True) -> torch.Tensor:
    """[N, C, H, W] in [-1, 1] -> uint8 [N, H, W, C] (or [N, C, H, W]), truncating x * 127.5 + 128 after a clamp."""
    assert img.ndim == 4, f'expected [N, C, H, W], got {tuple(img.shape)}'
    if channels_last:
        img = img.permute(0, 2, 3, 1)
    return (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def save_png(path: str, array: np.ndarray) -> None:
    """uint8 [H, W, 3] or [H, W] -> PNG at `path`, written under a temporary name and renamed."""
    assert array.dtype == np.uint8 and array.ndim in (2, 3), f'{array.dtype} array of shape {array.shape}'
    with dnnlib.util.atomic_output(path) as tmp_path:
        PIL.Image.fromarray(array).save(tmp_path, format='png')


# The video trajectory uses 3.14 for pi (so does the keyframe camera): released videos were rendered this way.
HALF_TURN = 3.14


def orbit_camera(frame_idx, num_frames, pivot, radius, device):
    """The video trajectory: a yaw swing of +-0.35 and a pitch swing of +-0.25 over one loop."""
    phase = 2 * HALF_TURN * frame_idx / num_frames
    yaw = HALF_TURN / 2 + 0.35 * np.sin(phase)
    pitch = HALF_TURN / 2 - 0.05 + 0.25 * np.cos(phase)
    return LookAtPoseSampler.sample(yaw, pitch, pivot, radius=radius, device=device)
