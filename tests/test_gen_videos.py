"""gen_videos.py end to end with the tiny snapshot of test_gen_samples, plus its interpolation helpers."""

import os
import pickle

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import assert_refused, build_tiny_generator, make_workdir, write_tiny_snapshot

import gen_videos
from training import cameras


@pytest.fixture(scope='module')
def snapshot(tmp_path_factory):
    return write_tiny_snapshot(str(tmp_path_factory.mktemp('net') / 'network-snapshot-000000.pkl'))


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    return make_workdir(tmp_path, monkeypatch)


def run(args):
    return CliRunner().invoke(gen_videos.generate_videos, args)


def read_video(path):
    reader = imageio.get_reader(path)
    try:
        return np.stack([frame for frame in reader]), reader.get_meta_data()  # len() is inf for mp4
    finally:
        reader.close()

# ----------------------------------------------------------------------------


def test_grid_video_of_depth(snapshot, tmp_path):
    # 2 seeds on a 2x1 grid: 1 keyframe per cell, 2 frames between keyframes -> 2 frames of 16 x 32 pixels.
    out = str(tmp_path / 'out')
    result = run(['--network', snapshot, '--seeds=0-1', '--grid=2x1', '--w-frames=2', '--outdir', out,
                  '--image_mode=image_depth', '--nrr=16', '--sample_mult=1', '--trunc=0.7', '--cfg=AFHQ'])
    assert result.exit_code == 0, result.output
    assert os.listdir(out) == ['interpolation.mp4']
    frames, meta = read_video(os.path.join(out, 'interpolation.mp4'))
    assert frames.shape == (2, 16, 32, 3)
    assert meta['fps'] == 60 and meta['codec'] == 'h264'
    # Min-max normalised depth per cell: each cell spans (nearly) the full grey range.
    for cell in (frames[0, :, :16], frames[0, :, 16:]):
        assert cell.min() < 40 and cell.max() > 215


@pytest.mark.parametrize('extra, focal', [([], 2.0), (['--cfg=Shapenet'], 1.7074), (['--fov-deg=18'], 4.465175)])
def test_cameras_use_the_snapshots_focal_unless_told(tmp_path, monkeypatch, extra, focal):
    # A snapshot of this project's training records its dataset's focal; --cfg and --fov-deg apply only when given.
    network = write_tiny_snapshot(str(tmp_path / 'network-snapshot-000000.pkl'))
    data = pickle.load(open(network, 'rb'))
    data['G_ema'].rendering_kwargs['avg_camera_focal'] = 2.0
    pickle.dump(data, open(network, 'wb'))
    focals = []
    camera_label = cameras.camera_label
    def recording_label(cam2world, intrinsics):
        focals.append(intrinsics.reshape(9)[[0, 4]].tolist())
        return camera_label(cam2world, intrinsics)
    monkeypatch.setattr(cameras, 'camera_label', recording_label)
    result = run(['--network', network, '--seeds=0', '--w-frames=2', '--outdir', str(tmp_path / 'out'), '--nrr=16',
                  '--sample_mult=1', '--image_mode=image_raw'] + extra)
    assert result.exit_code == 0, result.output
    assert len(focals) == 3  # The frontal conditioning camera and two frames.
    assert all(f == pytest.approx([focal, focal], abs=1e-6) for f in focals)


def test_video_per_seed_and_shapes(snapshot, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # shapes go to the working directory
    result = run(['--network', snapshot, '--seeds=4,7', '--w-frames=1', '--outdir=videos', '--interpolate=false',
                  '--image_mode=image_raw', '--nrr=16', '--sample_mult=1.5'])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir('videos')) == ['4.mp4', '7.mp4']
    frames, _ = read_video(os.path.join('videos', '7.mp4'))
    assert frames.shape == (1, 16, 16, 3)

    result = run(['--network', snapshot, '--seeds=5', '--w-frames=2', '--outdir=shapes', '--image_mode=image_raw',
                  '--nrr=16', '--sample_mult=1', '--shapes=true', '--shape-res=16'])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir('interpolation_5_5')) == ['0000_shape.ply', '0001_shape.ply']
    with open(os.path.join('interpolation_5_5', '0001_shape.ply'), 'rb') as f:
        assert f.readline() == b'ply\n'
    trajectory = np.load(os.path.join('shapes', 'interpolation_trajectory.npy'))
    assert trajectory.shape == (2, 4, 4)
    assert np.allclose(trajectory[:, 3], [0, 0, 0, 1])
    assert np.allclose(np.linalg.norm(trajectory[:, :3, 3], axis=1), 2.7, atol=1e-5)  # orbit around the origin
    to_pivot = [0, 0, 0.2] - trajectory[:, :3, 3]
    assert np.allclose(trajectory[:, :3, 2], to_pivot / np.linalg.norm(to_pivot, axis=1, keepdims=True), atol=1e-5)


def test_frames_render_float64_latents(tmp_path):
    # The spline output is float64 and goes to G.synthesis as is (no cast to float32).
    G = build_tiny_generator()
    G.rendering_kwargs.update(depth_resolution=4, depth_resolution_importance=4)
    seen = []
    synthesis = G.synthesis
    def recording_synthesis(ws, c, **kwargs):
        seen.append((ws.dtype, c.dtype, kwargs.get('noise_mode')))
        return synthesis(ws, c, **kwargs)
    G.synthesis = recording_synthesis
    gen_videos.gen_interp_video(G, str(tmp_path / 'v.mp4'), seeds=[1, 2], w_frames=1, device=torch.device('cpu'),
                                bitrate='10M')
    assert seen == [(torch.float64, torch.float32, 'const')] * 2


# ----------------------------------------------------------------------------
# Helpers.


def test_keyframe_seeds_repeat_and_shuffle():
    seeds, k = gen_videos.keyframe_seeds([3, 4, 5], num_keyframes=2, grid_w=2, grid_h=1)
    assert k == 2 and seeds.tolist() == [3, 4, 5, 3]
    shuffled, _ = gen_videos.keyframe_seeds([3, 4, 5], num_keyframes=2, grid_w=2, grid_h=1, shuffle_seed=1)
    expected = np.array([3, 4, 5, 3])
    np.random.RandomState(1).shuffle(expected)
    assert shuffled.tolist() == expected.tolist()
    with pytest.raises(ValueError, match='divisible'):
        gen_videos.keyframe_seeds([1, 2, 3], num_keyframes=None, grid_w=2, grid_h=1)


def test_interpolation_passes_keyframes_and_loops():
    ws = np.random.RandomState(0).randn(1, 1, 3, 2, 4).astype(np.float32)  # one cell, 3 keyframes
    interp = gen_videos.make_interpolators(ws)[0][0]
    for k in range(3):
        assert np.allclose(interp(k), ws[0, 0, k], atol=1e-6)
    # Periodic: the spline just before t = 3 approaches keyframe 0 smoothly.
    assert np.allclose(interp(2.999), ws[0, 0, 0], atol=0.05)
    assert np.allclose(interp(0.0) - interp(-0.001), interp(3.0) - interp(2.999), atol=1e-4)


def test_layout_grid_and_orbit():
    cells = torch.stack([torch.full([3, 2, 2], v) for v in (-1.0, 0.0, 1.0, 0.5)])
    grid = gen_videos.layout_grid(cells, grid_w=2, grid_h=2)
    assert grid.shape == (4, 4, 3) and grid.dtype == np.uint8
    assert grid[0, 0, 0] == 0 and grid[0, 3, 0] == 128 and grid[3, 0, 0] == 255 and grid[3, 3, 0] == 191

    pivot = torch.tensor([0.0, 0.0, 0.0])
    start = cameras.orbit_camera(0, 100, pivot, 2.7, 'cpu')[0]
    quarter = cameras.orbit_camera(25, 100, pivot, 2.7, 'cpu')[0]
    assert start[0, 3].abs() < 0.01 and start[1, 3] < -0.3  # frame 0: centred, below (pitch 1.57 - 0.05 + 0.25)
    assert quarter[0, 3] > 0.5                               # a quarter loop later: swung toward +x


# ----------------------------------------------------------------------------
# Bad input: one line naming the flag or file, non-zero exit, nothing created or overwritten.


@pytest.mark.parametrize('args, exit_code, message', [
    (['--seeds=5-2'], 2, '"5-2" is an empty range (A-B needs A <= B)'),
    (['--grid=0x1'], 2, '"0x1": both numbers must be at least 1'),
    (['--num-keyframes=0'], 2, "'--num-keyframes': 0 is not in the range x>=1"),
    (['--w-frames=0'], 2, "'--w-frames': 0 is not in the range x>=1"),
    (['--trunc=inf'], 2, "'--trunc': 'inf' is not a finite number"),
    (['--trunc-cutoff=-2'], 2, "'--trunc-cutoff': -2 is not in the range x>=0"),
    (['--sample_mult=nan'], 2, "'--sample_mult': 'nan' is not a finite number"),
    (['--sample_mult=0'], 2, "'--sample_mult': 0.0 is not in the range x>0"),
    (['--sample_mult=0.01'], 2, '--sample_mult: 0.01 x 6 depth samples leaves no sample per ray'),
    (['--shuffle-seed=-1'], 2, "'--shuffle-seed': -1 is not in the range 0<=x<=4294967295"),
    (['--nrr=0'], 2, "'--nrr': 0 is not in the range x>=1"),
    (['--shape-res=8'], 2, "'--shape-res': 8 is not in the range x>=9"),
    (['--outdir=a_file'], 1, 'Error: --outdir=a_file: exists and is not a folder'),
    (['--outdir=a_file/videos'], 1, 'is not a folder, so no folder can be made below it'),
    (['--seeds=0-2', '--grid=2x2'], 1, 'Error: --seeds: the number of seeds (3) is not divisible by the number of '
                                       'grid cells (2x2); give a multiple of 4 seeds or --num-keyframes'),
    (['--seeds=3,4', '--grid=2x1', '--interpolate=false'], 1, '(out/3.mp4)'),
    (['--seeds=7', '--shapes=true'], 1, 'Error: --shapes (mesh folder)=interpolation_7_7: exists and is not a folder'),
    (['--network=missing.pkl'], 1, 'Error: --network: missing.pkl'),
])
def test_bad_input_is_refused_before_writing(snapshot, workdir, args, exit_code, message):
    (workdir / 'interpolation_7_7').write_bytes(b'in the way of the mesh folder')
    defaults = dict(network=snapshot, seeds='1', outdir='out', device='cpu', nrr=16)
    for arg in args:
        defaults.pop(arg.split('=')[0][2:], None)
    argv = [f'--{key}={value}' for key, value in defaults.items()] + args
    assert_refused(gen_videos.generate_videos, argv, exit_code, message, workdir)


def test_deep_errors_end_in_one_line(snapshot, workdir, monkeypatch):
    class BrokenGenerator:
        rendering_kwargs = dict(depth_resolution=4, depth_resolution_importance=4)
        z_dim = 4
        def mapping(self, *args, **kwargs):
            raise RuntimeError('mapping exploded')
    monkeypatch.setattr(gen_videos.generation, 'load_generator', lambda *args, **kwargs: BrokenGenerator())
    assert_refused(gen_videos.generate_videos, ['--network', snapshot, '--seeds=1', '--outdir=out', '--device=cpu'], 1,
                   'Error: mapping exploded (RuntimeError; set EG3D_DEBUG=1 for the traceback)', workdir)
