"""The README's main command at its smallest size, and the procedural dataset it starts from."""

import json
import os
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
from helpers import REPO_ROOT

sys.path.insert(0, os.path.join(REPO_ROOT, 'dataset_preprocessing', 'procedural'))
import make_procedural_dataset as procedural  # noqa: E402


def _project(label, point):
    """Pixel (u, v) in [0, 1]^2 where a world point appears, using only the dataset label."""
    cam2world = np.array(label[:16]).reshape(4, 4)
    intrinsics = np.array(label[16:]).reshape(3, 3)
    p_cam = np.linalg.inv(cam2world) @ np.append(point, 1.0)
    uvw = intrinsics @ p_cam[:3]
    return uvw[:2] / uvw[2]


def test_procedural_labels_are_exact_cameras(tmp_path):
    procedural.make_dataset(str(tmp_path), count=6, res=64, views_per_object=3, seed=5)
    labels = dict(json.load(open(tmp_path / 'dataset.json'))['labels'])
    assert sorted(labels) == [f'img{i:05d}.png' for i in range(6)]
    rnd = np.random.RandomState(5)
    for idx in range(6):
        if idx % 3 == 0:
            obj = procedural.sample_object(rnd)
        procedural.sample_camera(rnd)
        label = labels[f'img{idx:05d}.png']
        assert len(label) == 25
        rotation = np.array(label[:16]).reshape(4, 4)[:3, :3]
        assert np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-6) and np.linalg.det(rotation) > 0
        assert np.linalg.norm(np.array(label[:16]).reshape(4, 4)[:3, 3]) == pytest.approx(procedural.CAMERA_RADIUS)
        # The ball's centre, projected with the label alone, lands on a ball-coloured pixel.
        u, v = _project(label, obj['ball_center'])
        image = np.asarray(PIL.Image.open(tmp_path / f'img{idx:05d}.png')).astype(np.float64) / 255
        pixel = image[int(v * 64), int(u * 64)]
        ratio = pixel / obj['ball_color']
        assert np.allclose(ratio, ratio.mean(), atol=0.05), (pixel, obj['ball_color'])


def test_procedural_refuses_non_empty_outdir(tmp_path):
    (tmp_path / 'keep.txt').write_text('x')
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, 'dataset_preprocessing', 'procedural',
                                                          'make_procedural_dataset.py'), f'--outdir={tmp_path}'],
                            capture_output=True, text=True)
    assert result.returncode != 0 and 'not empty' in result.stderr
    assert os.listdir(tmp_path) == ['keep.txt']


@pytest.mark.slow
def test_demo_smoke_runs_whole_pipeline(tmp_path):
    outdir = tmp_path / 'demo'
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, 'scripts', 'demo.py'), '--size=smoke',
                             f'--outdir={outdir}'], capture_output=True, text=True, timeout=900, cwd=str(tmp_path))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert 'Demo finished' in result.stdout
    # gen_samples and gen_videos render with the focal the training recorded from the dataset (no --cfg).
    assert result.stdout.count('Camera: focal 1.7074 (44.999 degrees, recorded in the snapshot)') == 2
    run_dirs = list((outdir / 'training-runs').iterdir())
    assert len(run_dirs) == 1
    run_dir = run_dirs[0]
    for name in ['training_options.json', 'log.txt', 'stats.jsonl', 'reals.png', 'fakes000000.png']:
        assert (run_dir / name).is_file(), name
    assert list(run_dir.glob('network-snapshot-*.pkl')) and list(run_dir.glob('events.out.tfevents.*'))
    sample = PIL.Image.open(outdir / 'samples' / 'seed0000.png')
    assert sample.size == (3 * 128, 128)
    assert (outdir / 'samples' / 'seed0000.mrc').stat().st_size > 32 ** 3 * 4
    assert (outdir / 'video' / 'interpolation.mp4').stat().st_size > 0
