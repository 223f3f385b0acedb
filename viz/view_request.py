"""What the page asks the renderer for: a JSON object checked field by field into a ViewRequest.

Every problem is reported as a RequestError whose one-line message names the field, so the page can show it as is.
"""

import dataclasses
import math
from typing import Optional

OUTPUTS = ('image', 'image_raw', 'depth')
CONDITIONING = ('frontal', 'camera')
QUALITIES = ('preview', 'full')
MESH_FORMATS = ('.ply', '.obj')

# Bounds on the work one request can ask for. The largest: 256^2 rays of 128 + 128 samples (about 4x the
# heaviest released config, ShapeNet's 64^2 rays of 64 + 64), and gen_samples.py's default 512^3 mesh grid.
MAX_RESOLUTION = 256
MAX_DEPTH_SAMPLES = 128
MAX_SHAPE_RES = 512


class RequestError(ValueError):
    """A view request the renderer cannot serve; the message is one line and names the field."""


@dataclasses.dataclass(frozen=True)
class ViewRequest:
    network: str
    seed: int = 0
    seed2: Optional[int] = None             # Second seed of a latent interpolation (None: no interpolation).
    mix: float = 0.0                        # Interpolation weight of seed2's latent, in [0, 1].
    psi: float = 1.0                        # Truncation psi.
    cutoff: Optional[int] = 14              # Truncation cutoff (None: truncate every layer).
    yaw: float = 0.0                        # Degrees around the vertical axis; 0 faces the generator's front.
    pitch: float = 0.0                      # Degrees above the equator of the camera orbit.
    distance: float = 1.0                   # Camera distance as a multiple of avg_camera_radius (zoom).
    fov: Optional[float] = None             # Vertical field of view in degrees (None: the network's default).
    conditioning: str = 'frontal'           # Pose the generator is conditioned on: fixed frontal or the camera.
    output: str = 'image'
    neural_rendering_resolution: Optional[int] = None   # None: the network's own.
    depth_resolution: Optional[int] = None
    depth_resolution_importance: Optional[int] = None
    quality: str = 'full'                   # 'preview' renders at reduced resolution and depth samples.
    seq: int = 0                            # Echoed back, so the page can match answers to requests.


def _integer(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise RequestError(f'"{name}": expected an integer, got {value!r}')
    try:
        number = int(value) if not isinstance(value, float) or value.is_integer() else None
    except ValueError:
        number = None
    if number is None:
        raise RequestError(f'"{name}": expected an integer, got {value!r}')
    if not lo <= number <= hi:
        raise RequestError(f'"{name}": {number} is outside [{lo}, {hi}]')
    return number


def _real(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise RequestError(f'"{name}": expected a number, got {value!r}')
    try:
        number = float(value)
    except ValueError:
        raise RequestError(f'"{name}": expected a number, got {value!r}') from None
    if not math.isfinite(number) or not lo <= number <= hi:
        raise RequestError(f'"{name}": {value!r} is outside [{lo:g}, {hi:g}]')
    return number


def _choice(name, value, choices):
    if value not in choices:
        raise RequestError(f'"{name}": {value!r} is not one of {", ".join(choices)}')
    return value


def _optional(parse):
    return lambda name, value, *args: None if value is None or value == '' else parse(name, value, *args)


# Field name -> (parser, extra arguments).
_FIELDS = {
    'seed': (_integer, 0, 2**32 - 1),
    'seed2': (_optional(_integer), 0, 2**32 - 1),
    'mix': (_real, 0, 1),
    'psi': (_real, -10, 10),
    'cutoff': (_optional(_integer), 0, 1024),
    'yaw': (_real, -360, 360),
    'pitch': (_real, -89, 89),
    'distance': (_real, 0.05, 20),
    'fov': (_optional(_real), 1, 120),
    'conditioning': (_choice, CONDITIONING),
    'output': (_choice, OUTPUTS),
    'neural_rendering_resolution': (_optional(_integer), 8, MAX_RESOLUTION),
    'depth_resolution': (_optional(_integer), 2, MAX_DEPTH_SAMPLES),
    'depth_resolution_importance': (_optional(_integer), 0, MAX_DEPTH_SAMPLES),
    'quality': (_choice, QUALITIES),
    'seq': (_integer, 0, 2**53),
}


def parse_view_request(data, default_network: Optional[str] = None) -> ViewRequest:
    """Check a decoded JSON object and fill in defaults; raise RequestError on the first problem."""
    if not isinstance(data, dict):
        raise RequestError(f'a view request is a JSON object, got {type(data).__name__}')
    unknown = sorted(set(data) - set(_FIELDS) - {'network'})
    if unknown:
        raise RequestError(f'unknown field{"s" if len(unknown) > 1 else ""} {", ".join(map(repr, unknown))}')
    network = data.get('network') or default_network
    if not isinstance(network, str) or not network.strip():
        raise RequestError('"network": no network given (a pickle path or URL)')
    values = dict(network=network.strip())
    for name, (parse, *args) in _FIELDS.items():
        if name in data:
            values[name] = parse(name, data[name], *args)
    return ViewRequest(**values)


_MESH_FIELDS = {
    'shape_res': (_integer, 8, MAX_SHAPE_RES),
    'format': (_choice, MESH_FORMATS),
    'level': (_real, -1e6, 1e6),
}
MESH_DEFAULTS = dict(shape_res=128, format='.ply', level=10.0)


def parse_mesh_options(data: dict) -> dict:
    """Check the mesh fields of a request (others are ignored) -> dict(shape_res, mesh_format, level)."""
    values = {name: parse(name, data.get(name, MESH_DEFAULTS[name]), *args) for name, (parse, *args) in
              _MESH_FIELDS.items()}
    return dict(shape_res=values['shape_res'], mesh_format=values['format'], level=values['level'])


def split_mesh_request(data, default_network: Optional[str] = None) -> tuple:
    """A mesh request -> (ViewRequest of its view fields, parse_mesh_options() of the rest)."""
    if not isinstance(data, dict):
        raise RequestError(f'a mesh request is a JSON object, got {type(data).__name__}')
    view = {name: value for name, value in data.items() if name not in _MESH_FIELDS}
    return parse_view_request(view, default_network=default_network), parse_mesh_options(data)
