"""training/rendering_config.py: config files, overrides, one-line errors, and a custom config from train.py
through a snapshot to gen_samples.py."""

import json
import os
import pickle

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import invoke, make_dataset, parse_config, released_networks, tiny_args, write_tiny_snapshot

import gen_samples
import gen_videos
import legacy
import train
from camera_utils import LookAtPoseSampler
from cli.train_options import describe_resume_differences
from training import presets, rendering_config
from training.rendering_config import RenderingConfigError, load_config_file, resolve_rendering_options
from viz.render import Renderer

#----------------------------------------------------------------------------

def write_config(path, data):
    with open(path, 'w') as f:
        f.write(data if isinstance(data, str) else json.dumps(data))
    return str(path)

@pytest.fixture(scope='module')
def data128(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp('data') / 'cars_128')

FULL = dict(depth_resolution=32, depth_resolution_importance=16, ray_start=0.5, ray_end=2.5, box_warp=2,
            avg_camera_radius=1.5, avg_camera_pivot=[0, 0.1, 0])

def test_file_without_base(tmp_path):
    options = load_config_file(write_config(tmp_path / 'mine.json', dict(reversed(list(FULL.items())))))
    assert json.dumps(options) == json.dumps(FULL) # Values as written, keys in the preset order.
    options = load_config_file(write_config(tmp_path / 'white.json', dict(FULL, white_back=False)))
    assert list(options) == list(rendering_config.OPTION_KEYS)[:-1]  # All but plane_layout and options['white_back'] is False

def test_file_with_base(tmp_path):
    path = write_config(tmp_path / 'cars.json', {'base': 'shapenet', 'ray_start': 'auto', 'ray_end': 'auto',
                                                 'avg_camera_radius': 1.2})
    assert load_config_file(path) == dict(presets.RENDERING_PRESETS['shapenet'], ray_start='auto', ray_end='auto',
                                          avg_camera_radius=1.2)
    # white_back joins a base without one at its place in the order.
    options = load_config_file(write_config(tmp_path / 'f.json', {'white_back': True, 'base': 'ffhq'}))
    assert list(options) == list(rendering_config.OPTION_KEYS)[:-1]  # All but plane_layout
    for name in presets.RENDERING_PRESETS:
        assert load_config_file(write_config(tmp_path / 'p.json', {'base': name})) == presets.RENDERING_PRESETS[name]

def test_presets_and_overrides():
    assert resolve_rendering_options('ffhq', {}) == presets.RENDERING_PRESETS['ffhq']
    options = resolve_rendering_options('shapenet', dict(ray_start='auto', ray_end='auto', box_warp=None,
                                                         avg_camera_pivot=[0.0, 0.0, 0.1], white_back=False))
    assert options == dict(presets.RENDERING_PRESETS['shapenet'], ray_start='auto', ray_end='auto',
                           avg_camera_pivot=[0.0, 0.0, 0.1], white_back=False)
    assert list(options) == list(presets.RENDERING_PRESETS['shapenet'])

def test_example_configs():
    configs = os.path.join(os.path.dirname(__file__), '..', 'docs', 'configs')
    objects = load_config_file(os.path.join(configs, 'objects360.json'))
    assert objects == dict(presets.RENDERING_PRESETS['shapenet'], ray_start='auto', ray_end='auto',
                           avg_camera_radius=1.2)
    frontal = load_config_file(os.path.join(configs, 'frontal_full.json'))
    assert frontal == dict(presets.RENDERING_PRESETS['ffhq'], white_back=False)

def test_config_name():
    assert rendering_config.config_name('afhq') == 'afhq'
    assert rendering_config.config_name(os.path.join('configs', 'my.cars.json')) == 'my.cars'
    assert not rendering_config.is_config_file('shapenet') and rendering_config.is_config_file('shapenet.json')

def test_base_preset(tmp_path):
    assert rendering_config.base_preset('afhq') == 'afhq'
    assert rendering_config.base_preset(write_config(tmp_path / 'a.json', {'base': 'shapenet', 'box_warp': 2})) == 'shapenet'
    assert rendering_config.base_preset(write_config(tmp_path / 'b.json', FULL)) is None

#----------------------------------------------------------------------------
# Bad configs: one line naming the file (or flag) and the key; nothing created.

BAD_FILES = [
    ({'base': 'ffhq', 'ray_begin': 2}, 'ray_begin: unknown key (known: base, depth_resolution,'),
    ({'base': 'cars'}, 'base: must be one of ffhq, afhq, shapenet, got "cars"'),
    ({'base': 'ffhq', 'depth_resolution': '48'}, 'depth_resolution: must be an integer >= 2, got "48"'),
    ({'base': 'ffhq', 'depth_resolution': 48.0}, 'depth_resolution: must be an integer >= 2, got 48.0'),
    ({'base': 'ffhq', 'depth_resolution_importance': -1}, 'depth_resolution_importance: must be an integer >= 0'),
    ({'base': 'ffhq', 'ray_start': 'near'}, 'ray_start: must be a number or "auto", got "near"'),
    ({'base': 'ffhq', 'ray_start': 'auto'}, 'ray_start: ray_start and ray_end must both be "auto" or both numbers, '
                                            'got "auto" and 3.3'),
    ({'base': 'shapenet', 'ray_start': -0.5}, 'ray_start: must be >= 0 (a distance from the camera) or "auto"'),
    ({'base': 'ffhq', 'ray_start': 3.3, 'ray_end': 2.25}, 'ray_end: must be greater than ray_start (2.25 <= 3.3)'),
    ({'base': 'ffhq', 'ray_end': 'NaN'}, 'ray_end: must be a number or "auto", got "NaN"'),
    ('{"base": "ffhq", "box_warp": NaN}', 'box_warp: must be a positive number, got NaN'),
    ({'base': 'ffhq', 'box_warp': 0}, 'box_warp: must be a positive number, got 0'),
    ({'base': 'ffhq', 'white_back': 1}, 'white_back: must be true or false, got 1'),
    ({'base': 'ffhq', 'avg_camera_radius': -1}, 'avg_camera_radius: must be a positive number, got -1'),
    ({'base': 'ffhq', 'avg_camera_pivot': [0, 0]}, 'avg_camera_pivot: must be a list of 3 numbers [x, y, z], '
                                                   'got [0, 0]'),
    ({'base': 'ffhq', 'avg_camera_pivot': [0, 0, 'up']}, 'avg_camera_pivot: must be a list of 3 numbers'),
    ({'ray_start': 1, 'ray_end': 2}, 'missing depth_resolution, depth_resolution_importance, box_warp, '
                                     'avg_camera_radius, avg_camera_pivot (set them, or name a "base" preset'),
    ([1, 2], 'must hold a JSON object'),
    ('{"base": "ffhq",}', 'not valid JSON (Expecting property name enclosed in double quotes: line 1 column 17'),
]

@pytest.mark.parametrize('data, message', BAD_FILES)
def test_bad_config_files(data128, tmp_path, data, message):
    path = write_config(tmp_path / 'bad.json', data)
    result = invoke(tiny_args(tmp_path / 'runs', data128, f'--cfg={path}'))
    assert result.exit_code == 1
    assert result.output == f'Error: {path}: {message}' + result.output[len(f'Error: {path}: {message}'):]
    assert result.output.count('\n') == 1 # One line.
    assert not (tmp_path / 'runs').exists()

@pytest.mark.parametrize('extra, message', [
    (['--cfg=missing.json'], 'missing.json: cannot read the rendering config (No such file or directory)'),
    (['--ray-start=auto'], '--ray-start: ray_start and ray_end must both be "auto" or both numbers, got "auto" '
                           'and 2.6'),
    (['--ray-start=3'], '--ray-start: must be less than ray_end (3.0 >= 2.6)'),
    (['--ray-end=0.05'], '--ray-end: must be greater than ray_start (0.05 <= 0.1)'),
    (['--ray-start=-1'], '--ray-start: must be >= 0'),
    (['--avg-camera-radius=0'], '--avg-camera-radius: must be a positive number, got 0.0'),
    (['--box-warp=-1.6'], '--box-warp: must be a positive number, got -1.6'),
])
def test_bad_overrides(data128, tmp_path, extra, message):
    result = invoke(tiny_args(tmp_path / 'runs', data128, *extra))
    assert result.exit_code == 1
    assert result.output.startswith(f'Error: {message}') and result.output.count('\n') == 1, result.output
    assert not (tmp_path / 'runs').exists()

@pytest.mark.parametrize('extra', [['--cfg=cars'], ['--ray-end=far'], ['--avg-camera-pivot=0,1'],
                                   ['--white-back=maybe'], ['--depth-resolution=1']])
def test_override_usage_errors(data128, tmp_path, extra):
    result = invoke(tiny_args(tmp_path / 'runs', data128, *extra))
    assert result.exit_code == 2, result.output
    assert not (tmp_path / 'runs').exists()

def test_ray_range_error_names_its_source(tmp_path):
    path = write_config(tmp_path / 'near.json', {'base': 'ffhq', 'ray_start': 3})
    with pytest.raises(RenderingConfigError, match=r'^--ray-end: must be greater than ray_start \(2.5 <= 3\)$'):
        resolve_rendering_options(path, dict(ray_end=2.5))
    with pytest.raises(RenderingConfigError, match=r'^--ray-start: must be less than ray_end \(3.5 >= 3.3\)$'):
        resolve_rendering_options('ffhq', dict(ray_start=3.5))
    path = write_config(tmp_path / 'far.json', {'base': 'ffhq', 'ray_start': 3.5})
    with pytest.raises(RenderingConfigError, match=r'far.json: ray_start: must be less than ray_end \(3.5 >= 3.3\)$'):
        resolve_rendering_options(path, {})

#----------------------------------------------------------------------------
# train.py with a config file.

def test_guide_command_dry_run(tmp_path):
    data = make_dataset(tmp_path / 'mycars_128', num_images=1, resolution=128)
    config = write_config(tmp_path / 'myconfig.json', {'base': 'shapenet', 'ray_start': 'auto', 'ray_end': 'auto',
                                                       'avg_camera_radius': 1.2, 'avg_camera_pivot': [0, 0, 0]})
    resume = tmp_path / 'shapenetcars128-64.pkl'
    resume.write_bytes(b'')
    outdir = tmp_path / 'runs'
    result = invoke([f'--outdir={outdir}', f'--cfg={config}', f'--data={data}', '--gpus=8', '--batch=32',
                     '--gamma=0.3', f'--resume={resume}', '--dry-run'])
    assert result.exit_code == 0, result.output
    assert f'Output directory:    {outdir / "00000-myconfig-mycars_128-gpus8-batch32-gamma0.3"}' in result.output
    assert not outdir.exists()
    options = json.loads(result.output[result.output.index('{'):result.output.index('\nOutput directory:')])
    rendering = options['G_kwargs']['rendering_kwargs']
    assert list(rendering)[-8:] == list(rendering_config.OPTION_KEYS)[:-1]  # All but plane_layout
    assert (rendering['ray_start'], rendering['ray_end'], rendering['avg_camera_radius']) == ('auto', 'auto', 1.2)
    assert rendering['superresolution_module'] == 'training.superresolution.SuperresolutionHybrid2X'
    assert options['resume_pkl'] == str(resume)

def test_config_file_equal_to_preset_gives_the_same_options(data128, tmp_path):
    config = write_config(tmp_path / 'cars.json', presets.RENDERING_PRESETS['shapenet'])
    c_file, desc_file = parse_config(tiny_args(tmp_path, data128, f'--cfg={config}'))
    c_preset, desc_preset = parse_config(tiny_args(tmp_path, data128))
    assert json.dumps(c_file) == json.dumps(c_preset)
    assert desc_file == 'cars-cars_128-gpus1-batch2-gamma0.3'
    assert desc_preset == 'shapenet-cars_128-gpus1-batch2-gamma0.3'

def test_help_walks_through_the_workflow():
    result = CliRunner().invoke(train.main, ['--help'])
    assert result.exit_code == 0
    for text in ['--cfg [ffhq|afhq|shapenet|FILE.json]', '--ray-start FLOAT|auto', '--avg-camera-pivot X,Y,Z',
                 'python dataset_tool.py', '"base": "shapenet"', '--cfg=myconfig.json',
                 '--resume=shapenetcars128-64.pkl', 'python gen_samples.py']:
        assert text in result.output, text

@pytest.mark.slow
def test_custom_config_trains_and_renders_with_its_options(data128, tmp_path, monkeypatch):
    config = write_config(tmp_path / 'mycars.json', {
        'depth_resolution': 4, 'depth_resolution_importance': 4, 'ray_start': 'auto', 'ray_end': 'auto',
        'box_warp': 1.6, 'white_back': True, 'avg_camera_radius': 1.9, 'avg_camera_pivot': [0, 0.05, 0]})
    outdir = tmp_path / 'runs'
    args = [arg for arg in tiny_args(outdir, data128, '--kimg=0.002') if not arg.startswith('--depth-resolution')]
    result = invoke(args + [f'--cfg={config}', '--avg-camera-radius=1.8'])
    assert result.exit_code == 0, result.output
    run_dir = outdir / '00000-mycars-cars_128-gpus1-batch2-gamma0.3'
    expected = dict(depth_resolution=4, depth_resolution_importance=4, ray_start='auto', ray_end='auto', box_warp=1.6,
                    white_back=True, avg_camera_radius=1.8, avg_camera_pivot=[0, 0.05, 0])
    options = json.load(open(run_dir / 'training_options.json'))
    assert {key: options['G_kwargs']['rendering_kwargs'][key] for key in expected} == expected
    G = legacy.load_network_pkl(str(run_dir / 'network-snapshot-000000.pkl'))['G_ema']
    assert {key: G.rendering_kwargs[key] for key in expected} == expected
    assert G.rendering_kwargs['avg_camera_focal'] == pytest.approx(1.7074, abs=1e-6) # The dataset's, recorded.
    assert 'avg_camera_focal' not in options['G_kwargs']['rendering_kwargs']

    # The viewer and gen_samples.py orbit the file's camera.
    info = Renderer._describe(G)
    assert (info['avg_camera_pivot'], info['avg_camera_radius'], info['depth_resolution']) == ([0.0, 0.05, 0.0], 1.8, 4)
    cameras = []
    sample = LookAtPoseSampler.sample
    def recording_sample(horizontal_mean, vertical_mean, lookat_position, radius, **kwargs):
        cameras.append((lookat_position.tolist(), radius))
        return sample(horizontal_mean, vertical_mean, lookat_position, radius=radius, **kwargs)
    monkeypatch.setattr(LookAtPoseSampler, 'sample', recording_sample)
    network = str(run_dir / 'network-snapshot-000000.pkl')
    result = CliRunner().invoke(gen_samples.generate_images, ['--network', network, '--seeds=0',
                                                              f'--outdir={tmp_path / "out"}', '--device=cpu'])
    assert result.exit_code == 0, result.output
    assert 'Camera: focal 1.7074 (44.999 degrees, recorded in the snapshot), radius 1.8' in result.output
    assert os.path.isfile(tmp_path / 'out' / 'seed0000.png')
    assert len(cameras) == 4 and all(camera == ([0.0, pytest.approx(0.05), 0.0], 1.8) for camera in cameras)

    # Fine-tuning that snapshot with the shapenet preset: the preset's options apply, and each one that differs
    # from the pickle's is reported when the networks are resumed.
    result = invoke(tiny_args(tmp_path / 'finetune', data128, '--kimg=0.002', f'--resume={network}'))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    prefix = f'Warning: --resume={network}: rendering option '
    assert [line[len(prefix):] for line in lines if line.startswith(f'Warning: --resume={network}: ')] == [
        'ray_start: this run uses 0.1, the pickle has "auto" (--ray-start=auto matches it)',
        'ray_end: this run uses 2.6, the pickle has "auto" (--ray-end=auto matches it)',
        'avg_camera_radius: this run uses 1.7, the pickle has 1.8 (--avg-camera-radius=1.8 matches it)',
        'avg_camera_pivot: this run uses [0, 0, 0], the pickle has [0, 0.05, 0] '
        '(--avg-camera-pivot=0,0.05,0 matches it)']
    last_warning = max(i for i, line in enumerate(lines) if line.startswith(prefix))
    assert last_warning < lines.index('Creating output directory...') # Before the run folder exists.

@pytest.mark.slow
def test_gen_videos_and_shapes_with_auto_bounds(tmp_path, monkeypatch):
    network = write_tiny_snapshot(str(tmp_path / 'network-snapshot-000000.pkl'))
    with open(network, 'rb') as f:
        data = pickle.load(f)
    data['G_ema'].rendering_kwargs.update(ray_start='auto', ray_end='auto', avg_camera_radius=1.9,
                                          avg_camera_pivot=[0, 0.05, 0])
    with open(network, 'wb') as f:
        pickle.dump(data, f)
    monkeypatch.chdir(tmp_path) # gen_videos.py writes shapes to the working directory.
    result = CliRunner().invoke(gen_videos.generate_videos, [
        '--network', network, '--seeds=5', '--w-frames=2', '--outdir=videos', '--image_mode=image_depth',
        '--nrr=16', '--sample_mult=1.5', '--shapes=true', '--shape-res=16'])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir('interpolation_5_5')) == ['0000_shape.ply', '0001_shape.ply']
    trajectory = np.load(os.path.join('videos', 'interpolation_trajectory.npy'))
    assert np.allclose(np.linalg.norm(trajectory[:, :3, 3], axis=1), 1.9, atol=1e-5) # Sphere around the origin,
    to_pivot = [0, 0.05, 0] - trajectory[:, :3, 3] # looking at the pivot.
    assert np.allclose(trajectory[:, :3, 2], to_pivot / np.linalg.norm(to_pivot, axis=1, keepdims=True), atol=1e-5)
#----------------------------------------------------------------------------
# Tri-plane layout (opt-in; the default stays the original's).

def test_plane_layout_key_and_flag(data128, tmp_path):
    path = write_config(tmp_path / 'three.json', {'base': 'shapenet', 'plane_layout': 'xy_xz_zy'})
    assert load_config_file(path) == dict(presets.RENDERING_PRESETS['shapenet'], plane_layout='xy_xz_zy')
    assert 'plane_layout' not in load_config_file(write_config(tmp_path / 'f.json', FULL))  # Not required.
    c, _ = parse_config(tiny_args(tmp_path, data128, f'--cfg={path}'))
    assert list(c.G_kwargs.rendering_kwargs)[-1] == 'plane_layout' and c.G_kwargs.rendering_kwargs['plane_layout'] == 'xy_xz_zy'
    c, _ = parse_config(tiny_args(tmp_path, data128, '--plane-layout=xy_xz_zy'))
    assert c.G_kwargs.rendering_kwargs['plane_layout'] == 'xy_xz_zy'
    c, _ = parse_config(tiny_args(tmp_path, data128, f'--cfg={path}', '--plane-layout=xy_xz_zx'))
    assert c.G_kwargs.rendering_kwargs['plane_layout'] == 'xy_xz_zx'
    c, _ = parse_config(tiny_args(tmp_path, data128))
    assert 'plane_layout' not in c.G_kwargs.rendering_kwargs  # The original's rendering_kwargs.

    bad = write_config(tmp_path / 'bad.json', {'base': 'ffhq', 'plane_layout': 'xy_yz_zx'})
    result = invoke(tiny_args(tmp_path / 'runs', data128, f'--cfg={bad}'))
    assert result.exit_code == 1 and result.output == (f'Error: {bad}: plane_layout: must be one of "xy_xz_zx", '
                                                       f'"xy_xz_zy", got "xy_yz_zx"\n')
    result = invoke(tiny_args(tmp_path / 'runs', data128, '--plane-layout=zy'))
    assert result.exit_code == 2 and not (tmp_path / 'runs').exists()

def test_resuming_into_another_plane_layout_warns(data128, tmp_path):
    # A released network records no plane_layout: it has the original layout.
    released_cars = released_networks('shapenet', 64)
    def differences(*flags):
        c, _ = parse_config([f'--outdir={tmp_path}', '--cfg=shapenet', f'--data={data128}', '--gpus=1', '--batch=4',
                             '--gamma=0.3', *flags])
        return describe_resume_differences(c, released_cars)
    assert differences('--plane-layout=xy_xz_zy') == [
        'rendering option plane_layout: this run uses "xy_xz_zy", the pickle has "xy_xz_zx" '
        '(--plane-layout=xy_xz_zx matches it)']
    assert differences('--plane-layout=xy_xz_zx') == differences() == []
