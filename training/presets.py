"""Per-dataset presets shared by training, generation and the benchmarks.

A preset holds the rendering options that the training guide asks for when a new dataset is set up
(depth samples, ray range, box size, background, and the average camera that the scripts orbit), and
the camera sphere of the released datasets.
"""

import copy

# Rendering options of each --cfg, in the key order that training_options.json shows after the common options.
RENDERING_PRESETS = {
    'ffhq': dict(depth_resolution=48, depth_resolution_importance=48, ray_start=2.25, ray_end=3.3, box_warp=1,
                 avg_camera_radius=2.7, avg_camera_pivot=[0, 0, 0.2]),
    'afhq': dict(depth_resolution=48, depth_resolution_importance=48, ray_start=2.25, ray_end=3.3, box_warp=1,
                 avg_camera_radius=2.7, avg_camera_pivot=[0, 0, -0.06]),
    'shapenet': dict(depth_resolution=64, depth_resolution_importance=64, ray_start=0.1, ray_end=2.6, box_warp=1.6,
                     white_back=True, avg_camera_radius=1.7, avg_camera_pivot=[0, 0, 0]),
}

# Super-resolution module by dataset resolution.
SR_MODULES = {
    512: 'training.superresolution.SuperresolutionHybrid8XDC',
    256: 'training.superresolution.SuperresolutionHybrid4X',
    128: 'training.superresolution.SuperresolutionHybrid2X',
}

# The options that place the scene and the cameras (the depth samples may be changed for rendering).
CAMERA_KEYS = ('ray_start', 'ray_end', 'box_warp', 'avg_camera_radius', 'avg_camera_pivot')

# Camera sphere of the generation scripts when a generator's rendering options do not name one.
DEFAULT_CAMERA_RADIUS = 2.7
DEFAULT_CAMERA_PIVOT = (0.0, 0.0, 0.0)

# Neural rendering resolution of a new generator, before any fade.
NEURAL_RENDERING_RESOLUTION = 64


def rendering_preset(cfg: str) -> dict:
    """A private copy of the rendering options of preset `cfg`."""
    if cfg not in RENDERING_PRESETS:
        raise KeyError(f'unknown preset "{cfg}" (known: {", ".join(RENDERING_PRESETS)})')
    return copy.deepcopy(RENDERING_PRESETS[cfg])


def camera_orbit(rendering_kwargs: dict) -> tuple:
    """(pivot as a list of 3 floats, radius) of the camera sphere a generator was trained around."""
    pivot = [float(v) for v in rendering_kwargs.get('avg_camera_pivot', DEFAULT_CAMERA_PIVOT)]
    radius = float(rendering_kwargs.get('avg_camera_radius', DEFAULT_CAMERA_RADIUS))
    return pivot, radius


def family_of(rendering_kwargs: dict):
    """Name of the preset whose scene and camera options a generator has (released pickles), else None."""
    for name, preset in RENDERING_PRESETS.items():
        if all(key in rendering_kwargs and _same(rendering_kwargs[key], preset[key]) for key in CAMERA_KEYS) and \
                bool(rendering_kwargs.get('white_back', False)) == preset.get('white_back', False):
            return name
    return None


def _same(a, b) -> bool:
    if isinstance(b, list):
        return isinstance(a, (list, tuple)) and len(a) == len(b) and all(float(x) == y for x, y in zip(a, b))
    return isinstance(a, (int, float)) and float(a) == b
