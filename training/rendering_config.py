"""Rendering configs: a preset name or a small JSON file, validated, plus command-line overrides.

A config file holds the rendering options of the training guide and may inherit the rest from a preset:

    {"base": "shapenet", "ray_start": "auto", "ray_end": "auto", "avg_camera_radius": 1.2}

The resolved options become part of G's rendering_kwargs, which training_options.json and every network
snapshot record, so the generation scripts and the viewer render with the same camera and ray settings.
"""

import json
import math
import os

from training import presets
from training.volumetric_rendering.renderer import DEFAULT_PLANE_LAYOUT, PLANE_LAYOUTS

# The options a config sets, in the key order of training_options.json.
OPTION_KEYS = ('depth_resolution', 'depth_resolution_importance', 'ray_start', 'ray_end', 'box_warp', 'white_back',
               'avg_camera_radius', 'avg_camera_pivot', 'plane_layout')

# Options a file without a base must set (white_back defaults to a black background, plane_layout to the
# original layout).
REQUIRED_KEYS = tuple(key for key in OPTION_KEYS if key not in ('white_back', 'plane_layout'))

# What the renderer uses for an option that rendering_kwargs leave out (every released network leaves it out).
IMPLICIT_VALUES = dict(plane_layout=DEFAULT_PLANE_LAYOUT)

# Command-line flag of each option.
OVERRIDE_FLAGS = {key: '--' + key.replace('_', '-') for key in OPTION_KEYS}


class RenderingConfigError(ValueError):
    """A bad config file or override; the message is one line naming the file or flag and the key."""

#----------------------------------------------------------------------------
# Value checks: each returns the value as it should be stored or raises ValueError with the problem.

def _number(value, what='a number'):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f'must be {what}, got {json.dumps(value)}')
    return value

def _positive(value):
    if _number(value, 'a positive number') <= 0:
        raise ValueError(f'must be a positive number, got {json.dumps(value)}')
    return value

def _integer(minimum):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f'must be an integer >= {minimum}, got {json.dumps(value)}')
        return value
    return check

def _ray_bound(value):
    if value == 'auto':
        return value
    if _number(value, 'a number or "auto"') < 0:
        raise ValueError(f'must be >= 0 (a distance from the camera) or "auto", got {json.dumps(value)}')
    return value

def _boolean(value):
    if not isinstance(value, bool):
        raise ValueError(f'must be true or false, got {json.dumps(value)}')
    return value

def _plane_layout(value):
    if value not in PLANE_LAYOUTS:
        raise ValueError(f'must be one of {", ".join(json.dumps(v) for v in PLANE_LAYOUTS)}, got {json.dumps(value)}')
    return value

def _pivot(value):
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise ValueError(f'must be a list of 3 numbers [x, y, z], got {json.dumps(value)}')
    return [_number(v, 'a list of 3 numbers [x, y, z]') for v in value]

# Coarse sampling divides each ray range into depth_resolution - 1 intervals, hence at least 2.
_CHECKS = dict(depth_resolution=_integer(2), depth_resolution_importance=_integer(0), ray_start=_ray_bound,
               ray_end=_ray_bound, box_warp=_positive, white_back=_boolean, avg_camera_radius=_positive,
               avg_camera_pivot=_pivot, plane_layout=_plane_layout)
assert tuple(_CHECKS) == OPTION_KEYS

def _where(source, key):
    """Error prefix of an option: its flag, or the file (or preset) and the key."""
    return source if source.startswith('--') else f'{source}: {key}'

def _check_ray_range(options, sources, explicit):
    """ray_start/ray_end: both 'auto' (per-ray box intersection) or numbers with start < end.

    sources maps each option to where it was set (file, preset or flag); an empty range is blamed on ray_start
    only when it is in `explicit` (set by the user at this level: a file key, a flag) and ray_end is not.
    """
    start, end = options['ray_start'], options['ray_end']
    if (start == 'auto') != (end == 'auto'):
        key = 'ray_start' if start == 'auto' else 'ray_end'
        problem = (f'ray_start and ray_end must both be "auto" or both numbers, got {json.dumps(start)} and '
                   f'{json.dumps(end)}')
    elif start != 'auto' and end <= start:
        key = 'ray_start' if 'ray_start' in explicit and 'ray_end' not in explicit else 'ray_end'
        problem = (f'must be less than ray_end ({start} >= {end})' if key == 'ray_start' else
                   f'must be greater than ray_start ({end} <= {start})')
    else:
        return
    raise RenderingConfigError(f'{_where(sources[key], key)}: {problem}')

#----------------------------------------------------------------------------

def _read_json(path):
    try:
        with open(path, 'r', encoding='utf-8') as f:
            return json.load(f)
    except OSError as err:
        raise RenderingConfigError(f'{path}: cannot read the rendering config ({err.strerror or err})')
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RenderingConfigError(f'{path}: not valid JSON ({err})')

def load_config_file(path: str) -> dict:
    """Options of a config file with its base preset applied, validated; raises RenderingConfigError."""
    data = _read_json(path)
    if not isinstance(data, dict):
        raise RenderingConfigError(f'{path}: must hold a JSON object {{"key": value, ...}}')
    unknown = [key for key in data if key != 'base' and key not in OPTION_KEYS]
    if unknown:
        raise RenderingConfigError(f'{path}: {unknown[0]}: unknown key (known: base, {", ".join(OPTION_KEYS)})')

    options = {}
    if 'base' in data:
        base = data['base']
        if base not in presets.RENDERING_PRESETS:
            raise RenderingConfigError(f'{path}: base: must be one of {", ".join(presets.RENDERING_PRESETS)}, '
                                       f'got {json.dumps(base)}')
        options = presets.rendering_preset(base)
    else:
        missing = [key for key in REQUIRED_KEYS if key not in data]
        if missing:
            raise RenderingConfigError(f'{path}: missing {", ".join(missing)} (set them, or name a "base" preset '
                                       f'to inherit from)')
    for key in OPTION_KEYS:
        if key in data:
            try:
                options[key] = _CHECKS[key](data[key])
            except ValueError as err:
                raise RenderingConfigError(f'{path}: {key}: {err}')
    _check_ray_range(options, sources={key: path for key in options}, explicit=set(data))
    return _ordered(options)

def _ordered(options):
    return {key: options[key] for key in OPTION_KEYS if key in options}

def is_config_file(cfg: str) -> bool:
    return cfg not in presets.RENDERING_PRESETS

def config_name(cfg: str) -> str:
    """Name of a config in run directory names: the preset, or the file name without its extension."""
    if not is_config_file(cfg):
        return cfg
    return os.path.splitext(os.path.basename(os.path.normpath(cfg)))[0]

def base_preset(cfg: str):
    """The preset a config builds on: cfg itself, a config file's "base", or None (call after validating it)."""
    if not is_config_file(cfg):
        return cfg
    return _read_json(cfg).get('base')

def resolve_rendering_options(cfg: str, overrides: dict) -> dict:
    """Rendering options of --cfg (preset name or config file path) with the non-None `overrides` applied.

    overrides maps option keys to flag values; the result is validated as a whole (a flag that makes the ray
    range invalid is reported under its flag) and keeps the key order of OPTION_KEYS.
    """
    if is_config_file(cfg):
        options = load_config_file(cfg)
    else:
        options = presets.rendering_preset(cfg)
    source = {key: cfg for key in options}
    explicit = set()
    for key, value in overrides.items():
        if value is None:
            continue
        assert key in OPTION_KEYS, key
        try:
            options[key] = _CHECKS[key](value)
        except ValueError as err:
            raise RenderingConfigError(f'{OVERRIDE_FLAGS[key]}: {err}')
        source[key] = OVERRIDE_FLAGS[key]
        explicit.add(key)
    _check_ray_range(options, sources=source, explicit=explicit)
    return _ordered(options)

#----------------------------------------------------------------------------
