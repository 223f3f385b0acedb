"""dataset_preprocessing/convert_cameras.py: cameras made with camera_utils, written as COLMAP, Blender/NeRF and
look-at files, must come back as the same labels, project points to the same pixels, cast the same rays and
pass the dataset checker."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner
from helpers import REPO_ROOT
from scipy.spatial.transform import Rotation

from camera_utils import FOV_to_intrinsics, LookAtPoseSampler
from training import presets
from training.camera_validation import check_dataset, check_rendering_fit
from training.volumetric_rendering.ray_sampler import RaySampler

SCRIPT = os.path.join(REPO_ROOT, 'dataset_preprocessing', 'convert_cameras.py')
_spec = importlib.util.spec_from_file_location('convert_cameras', SCRIPT)
convert_cameras = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(convert_cameras)

SIZE = 64                       # Image side in pixels.
PIVOT = (0.0, 0.0, 0.2)
VIEWS = [(0.0, 0.0), (0.5, -0.2), (-0.7, 0.25), (1.2, 0.1), (-0.3, -0.35), (2.5, 0.4)]  # (yaw, pitch) offsets.

#----------------------------------------------------------------------------
# Cameras and the files each source format stores them in.

@pytest.fixture(scope='module')
def cameras():
    """(names, cam2world [N, 4, 4], normalised intrinsics [N, 3, 3]) of FFHQ-like cameras from camera_utils."""
    poses = torch.cat([LookAtPoseSampler.sample(np.pi / 2 + yaw, np.pi / 2 + pitch, torch.tensor(PIVOT), radius=2.7)
                       for yaw, pitch in VIEWS]).double().numpy()
    u, _s, vt = np.linalg.svd(poses[:, :3, :3])
    poses[:, :3, :3] = u @ vt      # The nearest exact rotations (camera_utils computes in float32).
    intrinsics = np.repeat(FOV_to_intrinsics(18.837).double().numpy()[None], len(VIEWS), axis=0)
    intrinsics[1, 0, 2], intrinsics[1, 1, 2] = 0.48, 0.53      # One camera with an off-centre principal point.
    intrinsics[2, 1, 1] *= 1.01                                 # ... and one with non-square pixels.
    return [f'img{i:02d}.png' for i in range(len(VIEWS))], poses, intrinsics

def write_images(folder, names):
    os.makedirs(folder, exist_ok=True)
    for name in names:
        PIL.Image.new('RGB', (SIZE, SIZE), (128, 64, 32)).save(os.path.join(folder, name))

def pixels(intrinsics):
    """(fx, fy, cx, cy) in pixels."""
    return intrinsics[0, 0] * SIZE, intrinsics[1, 1] * SIZE, intrinsics[0, 2] * SIZE, intrinsics[1, 2] * SIZE

def write_colmap(folder, names, poses, intrinsics):
    """A COLMAP text model: world-to-camera quaternions (QW first) in images.txt, one PINHOLE camera per image."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, 'cameras.txt'), 'w') as f:
        f.write('# Camera list with one line of data per camera:\n')
        for idx, intr in enumerate(intrinsics):
            f.write(f'{idx + 1} PINHOLE {SIZE} {SIZE} ' + ' '.join(f'{v:.17g}' for v in pixels(intr)) + '\n')
    with open(os.path.join(folder, 'images.txt'), 'w') as f:
        f.write('# Image list with two lines of data per image:\n#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n')
        for idx, (name, pose) in enumerate(zip(names, poses)):
            rotation = pose[:3, :3].T
            qx, qy, qz, qw = Rotation.from_matrix(rotation).as_quat()
            t = -rotation @ pose[:3, 3]
            f.write(' '.join(f'{v:.17g}' for v in [idx + 1, qw, qx, qy, qz, *t, idx + 1]) + f' {name}\n')
            f.write('10.5 20.5 -1\n' if idx % 2 else '\n')     # 2D points, empty for some images.

def write_blender(path, names, poses, intrinsics, per_frame_pixels):
    """transforms.json with OpenGL cam2world; intrinsics as fl_x/fl_y/cx/cy per frame, or camera_angle_x."""
    frames = []
    for name, pose, intr in zip(names, poses, intrinsics):
        frame = dict(file_path='./' + os.path.splitext(name)[0], transform_matrix=(pose @ np.diag([1, -1, -1, 1])).tolist())
        if per_frame_pixels:
            frame.update(zip(['fl_x', 'fl_y', 'cx', 'cy'], pixels(intr)))
        frames.append(frame)
    meta = dict(frames=frames)
    if per_frame_pixels:
        meta.update(w=SIZE, h=SIZE)
    else:
        meta.update(camera_angle_x=2 * np.arctan(0.5 / intrinsics[0, 0, 0]))
    with open(path, 'w') as f:
        json.dump(meta, f)

def write_lookat(path, names, poses, target=PIVOT):
    with open(path, 'w') as f:
        f.write('# name eye target\n')
        for name, pose in zip(names, poses):
            f.write(f'{name} ' + ' '.join(f'{v:.17g}' for v in [*pose[:3, 3], *target]) + '\n')

def convert(*args):
    result = CliRunner().invoke(convert_cameras.main, [str(a) for a in args])
    return result

def read_labels(path):
    with open(path) as f:
        labels = json.load(f)['labels']
    return [name for name, _ in labels], np.array([label for _, label in labels])

#----------------------------------------------------------------------------
# Round trips.

def check_round_trip(folder, names, poses, intrinsics, atol=1e-9):
    """The converted dataset.json holds the original labels, under the image names, and the checker accepts it."""
    got_names, labels = read_labels(os.path.join(folder, 'dataset.json'))
    assert got_names == names
    np.testing.assert_allclose(labels[:, :16].reshape(-1, 4, 4), poses, atol=atol)
    np.testing.assert_allclose(labels[:, 16:].reshape(-1, 3, 3), intrinsics, atol=atol)
    report = check_dataset(str(folder))
    assert report.ok, report.format()
    assert [w for w in report.warnings if 'principal point' not in w] == []
    assert check_rendering_fit(report, presets.rendering_preset('ffhq'), 'ffhq') == []
    return labels

def test_colmap_round_trip(tmp_path, cameras):
    names, poses, intrinsics = cameras
    write_images(tmp_path / 'images', names)
    write_colmap(tmp_path / 'sparse', names, poses, intrinsics)
    result = convert('--format=colmap', f'--source={tmp_path / "sparse"}', f'--dest={tmp_path / "images" / "dataset.json"}')
    assert result.exit_code == 0, result.output
    assert f'{len(names)} camera label(s) written' in result.output
    check_round_trip(tmp_path / 'images', names, poses, intrinsics)

@pytest.mark.parametrize('per_frame_pixels', [True, False])
def test_blender_round_trip(tmp_path, cameras, per_frame_pixels):
    names, poses, intrinsics = cameras
    if not per_frame_pixels:   # camera_angle_x holds one focal length for all frames and a centred principal point.
        intrinsics = np.repeat(intrinsics[:1], len(names), axis=0)
    write_images(tmp_path, names)
    write_blender(tmp_path / 'transforms.json', names, poses, intrinsics, per_frame_pixels)
    result = convert('--format=blender', f'--source={tmp_path / "transforms.json"}', f'--dest={tmp_path / "dataset.json"}')
    assert result.exit_code == 0, result.output
    check_round_trip(tmp_path, names, poses, intrinsics)

def test_lookat_round_trip(tmp_path, cameras):
    names, poses, intrinsics = cameras
    intrinsics = np.repeat(intrinsics[:1], len(names), axis=0)
    write_images(tmp_path, names)
    write_lookat(tmp_path / 'cams.txt', names, poses)
    result = convert('--format=lookat', f'--source={tmp_path / "cams.txt"}', f'--focal={float(intrinsics[0, 0, 0])!r}',
                     f'--dest={tmp_path / "dataset.json"}')
    assert result.exit_code == 0, result.output
    check_round_trip(tmp_path, names, poses, intrinsics, atol=1e-6)   # The eyes are float32 numbers.

#----------------------------------------------------------------------------
# Projections and rays: the source camera and the converted label see the world identically.

def test_points_project_to_the_same_pixels(tmp_path, cameras):
    names, poses, intrinsics = cameras
    write_images(tmp_path, names)
    write_colmap(tmp_path / 'colmap', names, poses, intrinsics)
    write_blender(tmp_path / 'transforms.json', names, poses, intrinsics, per_frame_pixels=True)
    assert convert('--format=colmap', f'--source={tmp_path / "colmap"}', f'--dest={tmp_path / "a.json"}').exit_code == 0
    assert convert('--format=blender', f'--source={tmp_path / "transforms.json"}', f'--dest={tmp_path / "b.json"}').exit_code == 0
    points = np.random.RandomState(0).uniform(-0.4, 0.4, size=(20, 3))
    for dest in ('a.json', 'b.json'):
        _names, labels = read_labels(tmp_path / dest)
        for idx, label in enumerate(labels):
            # EG3D: world -> camera with the inverse cam2world, then the normalised intrinsics times the image size.
            cam = (np.linalg.inv(label[:16].reshape(4, 4)) @ np.c_[points, np.ones(len(points))].T)[:3]
            uv = (label[16:].reshape(3, 3) @ cam)
            ours = (uv[:2] / uv[2]).T * SIZE
            fx, fy, cx, cy = pixels(intrinsics[idx])
            if dest == 'a.json':    # COLMAP: x_cam = R x + t, pixel = K x_cam.
                qx, qy, qz, qw = Rotation.from_matrix(poses[idx][:3, :3].T).as_quat()
                rotation = Rotation.from_quat([qx, qy, qz, qw]).as_matrix()
                x = points @ rotation.T - rotation @ poses[idx][:3, 3]
                theirs = np.stack([fx * x[:, 0] / x[:, 2] + cx, fy * x[:, 1] / x[:, 2] + cy], axis=1)
            else:                   # OpenGL: the camera looks down -z with y up, image rows grow downward.
                gl = poses[idx] @ np.diag([1, -1, -1, 1])
                x = (np.linalg.inv(gl) @ np.c_[points, np.ones(len(points))].T)[:3].T
                theirs = np.stack([cx + fx * x[:, 0] / -x[:, 2], cy - fy * x[:, 1] / -x[:, 2]], axis=1)
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)

def test_converted_labels_cast_the_same_rays(tmp_path, cameras):
    names, poses, intrinsics = cameras
    write_images(tmp_path, names)
    write_colmap(tmp_path / 'colmap', names, poses, intrinsics)
    assert convert('--format=colmap', f'--source={tmp_path / "colmap"}', f'--dest={tmp_path / "dataset.json"}').exit_code == 0
    _names, labels = read_labels(tmp_path / 'dataset.json')
    sampler = RaySampler()
    ours = sampler(torch.tensor(labels[:, :16].reshape(-1, 4, 4)), torch.tensor(labels[:, 16:].reshape(-1, 3, 3)), 16)
    ref = sampler(torch.tensor(poses), torch.tensor(intrinsics), 16)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)

#----------------------------------------------------------------------------
# World frames other than EG3D's.

def test_blender_z_up_world(tmp_path, cameras):
    names, poses, intrinsics = cameras
    to_blender = np.eye(4)
    to_blender[:3, :3] = convert_cameras.WORLD_UP['+z'].T      # EG3D's y-up world as Blender's z-up world.
    np.testing.assert_allclose(to_blender[:3, :3] @ [0, 1, 0], [0, 0, 1])   # Up is +z ...
    np.testing.assert_allclose(to_blender[:3, :3] @ [0, 0, 1], [0, -1, 0])  # ... and the front camera sits on -y.
    write_images(tmp_path, names)
    write_blender(tmp_path / 'transforms.json', names, to_blender @ poses, intrinsics, per_frame_pixels=True)
    result = convert('--format=blender', f'--source={tmp_path / "transforms.json"}', f'--dest={tmp_path / "dataset.json"}', '--up=+z')
    assert result.exit_code == 0, result.output
    check_round_trip(tmp_path, names, poses, intrinsics)

def test_colmap_world_normalised(tmp_path, cameras):
    """An arbitrary similarity transform (as COLMAP leaves it) is undone up to a rotation about +y."""
    names, poses, intrinsics = cameras
    world = np.eye(4)
    world[:3, :3] = Rotation.from_euler('xyz', [40, -25, 110], degrees=True).as_matrix() * 0.3
    world[:3, 3] = [5, -2, 7]
    moved = world @ poses
    moved[:, :3, :3] /= 0.3     # Rotations stay rotations; positions carry the scale.
    write_images(tmp_path, names)
    write_colmap(tmp_path / 'colmap', names, moved, intrinsics)
    result = convert('--format=colmap', f'--source={tmp_path / "colmap"}', f'--dest={tmp_path / "dataset.json"}',
                     '--up=auto', '--recenter', '--radius=2.7')
    assert result.exit_code == 0, result.output
    _names, labels = read_labels(tmp_path / 'dataset.json')
    report = check_dataset(str(tmp_path))
    assert report.ok
    np.testing.assert_allclose(report.stats['focus'], [0, 0, 0], atol=1e-9)
    assert np.median(np.linalg.norm(labels[:, [3, 7, 11]], axis=1)) == pytest.approx(2.7)
    up = -labels[:, [1, 5, 9]].mean(axis=0)
    np.testing.assert_allclose(up / np.linalg.norm(up), [0, 1, 0], atol=1e-9)
    # The relative geometry is unchanged: distances between the camera centres scale uniformly.
    centers = labels[:, [3, 7, 11]]
    ref = poses[:, :3, 3] - np.array(PIVOT)
    scale = 2.7 / np.median(np.linalg.norm(ref, axis=1))
    np.testing.assert_allclose(np.linalg.norm(centers[1:] - centers[0], axis=1),
                               scale * np.linalg.norm(ref[1:] - ref[0], axis=1), rtol=1e-6)   # Float32 look-at.

#----------------------------------------------------------------------------
# Bad input: one line, exit code 1, nothing written.

def one_line_error(result, message):
    assert result.exit_code == 1, result.output
    assert message in result.output, result.output
    assert result.output.count('\n') == 1, result.output

def test_bad_colmap_input(tmp_path, cameras):
    names, poses, intrinsics = cameras
    sparse, dest = tmp_path / 'sparse', tmp_path / 'dataset.json'
    os.makedirs(sparse)
    (sparse / 'images.bin').write_bytes(b'')
    one_line_error(convert('--format=colmap', f'--source={sparse}', f'--dest={dest}'), 'colmap model_converter')
    write_colmap(sparse, names, poses, intrinsics)
    cameras_txt = (sparse / 'cameras.txt').read_text()
    (sparse / 'cameras.txt').write_text(cameras_txt.replace('1 PINHOLE', '1 OPENCV_FISHEYE'))
    one_line_error(convert('--format=colmap', f'--source={sparse}', f'--dest={dest}'),
                   'cameras.txt:2: camera model OPENCV_FISHEYE is not supported')
    (sparse / 'cameras.txt').write_text(cameras_txt.replace('1 PINHOLE', '1 SIMPLE_PINHOLE'))
    one_line_error(convert('--format=colmap', f'--source={sparse}', f'--dest={dest}'),
                   'cameras.txt:2: a SIMPLE_PINHOLE camera has 3 parameters (f cx cy), got 4')
    (sparse / 'cameras.txt').write_text(cameras_txt)
    images_txt = (sparse / 'images.txt').read_text().splitlines()
    (sparse / 'images.txt').write_text('\n'.join(images_txt[:2] + ['1 0.5 x 0 0 1 2 3 1 img00.png']) + '\n')
    one_line_error(convert('--format=colmap', f'--source={sparse}', f'--dest={dest}'),
                   'images.txt:3: QW QX QY QZ TX TY TZ must be numbers')
    (sparse / 'images.txt').write_text('\n'.join(images_txt[:2] + ['1 0.5 0 0 0 1 2 3 99 img00.png']) + '\n')
    one_line_error(convert('--format=colmap', f'--source={sparse}', f'--dest={dest}'), 'camera 99 is not in')
    assert not dest.exists()

def test_colmap_distortion_is_reported(tmp_path, cameras):
    names, poses, intrinsics = cameras
    write_images(tmp_path, names)
    write_colmap(tmp_path / 'sparse', names, poses, intrinsics)
    lines = (tmp_path / 'sparse' / 'cameras.txt').read_text().splitlines()
    fields = lines[1].split()
    lines[1] = ' '.join([fields[0], 'SIMPLE_RADIAL'] + fields[2:5] + [fields[6], fields[7], '0.01'])
    (tmp_path / 'sparse' / 'cameras.txt').write_text('\n'.join(lines) + '\n')
    result = CliRunner().invoke(convert_cameras.main, ['--format=colmap', f'--source={tmp_path / "sparse"}',
                                                      f'--dest={tmp_path / "dataset.json"}'])
    assert result.exit_code == 0, result.output
    assert 'cameras.txt:2: camera 1 has lens distortion (k=0.01)' in result.stderr
    _names, labels = read_labels(tmp_path / 'dataset.json')
    np.testing.assert_allclose(labels[0, 16:].reshape(3, 3)[0, 0], intrinsics[0, 0, 0])

def test_bad_blender_and_lookat_input(tmp_path, cameras):
    names, poses, intrinsics = cameras
    dest = tmp_path / 'dataset.json'
    (tmp_path / 't.json').write_text('{"frames": []}')
    one_line_error(convert('--format=blender', f'--source={tmp_path / "t.json"}', f'--dest={dest}'), 'non-empty "frames" list')
    write_blender(tmp_path / 't.json', names, poses, intrinsics, per_frame_pixels=False)
    one_line_error(convert('--format=blender', f'--source={tmp_path / "t.json"}', f'--dest={dest}'),
                   "frames[0]: image './img00' not found")
    write_images(tmp_path, names)
    meta = json.loads((tmp_path / 't.json').read_text())
    meta['frames'][1]['transform_matrix'][0][0] = 2.0
    (tmp_path / 't.json').write_text(json.dumps(meta))
    one_line_error(convert('--format=blender', f'--source={tmp_path / "t.json"}', f'--dest={dest}'), 'not orthonormal')
    write_lookat(tmp_path / 'cams.txt', names, poses)
    one_line_error(convert('--format=lookat', f'--source={tmp_path / "cams.txt"}', f'--dest={dest}'), '--focal: required')
    (tmp_path / 'cams.txt').write_text('a.png 0 0 2.7 0 0 2.7\n')
    one_line_error(convert('--format=lookat', f'--source={tmp_path / "cams.txt"}', '--focal=4', f'--dest={dest}'),
                   'cams.txt:1: the eye equals the target')
    (tmp_path / 'cams.txt').write_text('a.png 0 0 0 0 0 1\n')
    one_line_error(convert('--format=lookat', f'--source={tmp_path / "cams.txt"}', '--focal=4', f'--dest={dest}',
                           '--radius=2'), '--radius: the cameras sit at the origin')
    (tmp_path / 'cams.txt').write_text('../a.png 0 0 2.7 0 0 0\n')
    one_line_error(convert('--format=lookat', f'--source={tmp_path / "cams.txt"}', '--focal=4', f'--dest={dest}'),
                   'the image is outside')
    assert not dest.exists()

def test_colmap_images_folder_below_dest(tmp_path, cameras):
    names, poses, intrinsics = cameras
    write_images(tmp_path / 'data' / 'images', names)
    write_colmap(tmp_path / 'sparse', names, poses, intrinsics)
    result = convert('--format=colmap', f'--source={tmp_path / "sparse"}', f'--images={tmp_path / "data" / "images"}',
                     f'--dest={tmp_path / "data" / "dataset.json"}')
    assert result.exit_code == 0, result.output
    assert read_labels(tmp_path / 'data' / 'dataset.json')[0] == [f'images/{name}' for name in names]
    assert check_dataset(str(tmp_path / 'data')).ok

def test_rotation_to_y():
    for a in ([0, 1, 0], [0, -1, 0], [1, 0, 0], [0.3, -0.9, 0.1], [0, 0, -1]):
        a = np.array(a, dtype=np.float64) / np.linalg.norm(a)
        rotation = convert_cameras.rotation_to_y(a)
        np.testing.assert_allclose(rotation @ a, [0, 1, 0], atol=1e-12)
        np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-12)
        assert np.linalg.det(rotation) == pytest.approx(1)

@pytest.mark.parametrize('args, message', [
    (['--format=blender', '--images=x'], '--images: only used with --format=colmap'),
    (['--format=colmap', '--focal=2'], '--focal: only used with --format=lookat'),
    (['--format=lookat', '--dest=missing/dataset.json'], 'missing is not a folder'),
])
def test_option_misuse(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    dest = [] if any(a.startswith('--dest') for a in args) else ['--dest=dataset.json']
    one_line_error(convert('--source=whatever', *args, *dest), message)

def test_inputs_are_never_overwritten(tmp_path, cameras):
    names, poses, _intrinsics = cameras
    write_lookat(tmp_path / 'cams.txt', names, poses)
    before = (tmp_path / 'cams.txt').read_bytes()
    one_line_error(convert('--format=lookat', f'--source={tmp_path / "cams.txt"}', '--focal=4',
                           f'--dest={tmp_path / "cams.txt"}'), 'already exists')
    assert (tmp_path / 'cams.txt').read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ['cams.txt']     # No temporary file left behind.

#----------------------------------------------------------------------------
# The worked examples of docs/cameras.md, run as the docs show them.

FRONTAL = [1, 0, 0, 0, 0, -1, 0, 0, 0, 0, -1, 2.7, 0, 0, 0, 1]

def doc_label(label, digits=4):
    return ' '.join(f'{round(v, digits) + 0.0:g}' for v in label)

def test_docs_worked_examples(tmp_path):
    doc = open(os.path.join(REPO_ROOT, 'docs', 'cameras.md')).read()
    scene = tmp_path / 'scene'
    write_images(scene / 'images', ['front.png', 'side.png'])
    os.makedirs(scene / 'sparse' / '0')
    (scene / 'sparse' / '0' / 'cameras.txt').write_text('1 SIMPLE_PINHOLE 512 512 2183.53 256 256\n')
    (scene / 'sparse' / '0' / 'images.txt').write_text('1 0 1 0 0 0 0 2.7 1 front.png\n\n'
                                                       '2 0 0.70710678 0 0.70710678 0 0 2.7 1 side.png\n\n')
    write_images(tmp_path / 'lego', ['r_0.png'])
    (tmp_path / 'lego' / 'transforms.json').write_text(
        '{"camera_angle_x": 0.233422,\n "frames": [{"file_path": "./r_0", "transform_matrix": '
        '[[1, 0, 0, 0], [0, 0, -1, -2.7], [0, 1, 0, 0], [0, 0, 0, 1]]}]}')
    write_images(tmp_path / 'renders', ['front.png', 'right.png'])
    (tmp_path / 'renders' / 'cams.txt').write_text('# renders/cams.txt: name  eye (x y z)  target (x y z)\n'
                                                   'front.png  0 0 2.7  0 0 0.2\nright.png  2.7 0 0  0 0 0.2\n')
    for name in ('images.txt', 'cameras.txt', 'transforms.json', 'cams.txt'):
        text = next(tmp_path.rglob(name)).read_text()
        assert all(line in doc for line in text.splitlines() if line and not line.startswith('# ')), name
    commands = [
        '--format=colmap --source=scene/sparse/0 --dest=scene/images/dataset.json',
        '--format=blender --source=lego/transforms.json --dest=lego/dataset.json --up=+z',
        '--format=lookat --source=renders/cams.txt --focal=4.2647 --dest=renders/dataset.json',
    ]
    for idx, args in enumerate(commands):
        if idx == 0:    # One through the script's entry point, the others in this process.
            result = subprocess.run([sys.executable, SCRIPT, *args.split()], cwd=tmp_path, capture_output=True, text=True)
            assert result.returncode == 0, result.stderr
        else:
            cwd = os.getcwd()
            os.chdir(tmp_path)
            try:
                assert convert(*args.split()).exit_code == 0
            finally:
                os.chdir(cwd)
    labels = {folder: dict(json.load(open(tmp_path / folder / 'dataset.json'))['labels'])
              for folder in ('scene/images', 'lego', 'renders')}
    frontal_ffhq = FRONTAL + [4.2647, 0, 0.5, 0, 4.2647, 0.5, 0, 0, 1]
    np.testing.assert_allclose(labels['scene/images']['front.png'], frontal_ffhq, atol=1e-5)
    np.testing.assert_allclose(labels['renders']['front.png'], frontal_ffhq, atol=1e-12)
    np.testing.assert_allclose(labels['lego']['r_0.png'], frontal_ffhq, atol=1e-4)
    flat_doc = ' '.join(doc.split())
    for label in (labels['scene/images']['side.png'][:16], labels['renders']['right.png'][:16]):
        assert doc_label(label) in flat_doc, doc_label(label)
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, 'dataset_tool.py'), '--source=renders', '--check-only',
                             '--cfg=ffhq'], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0 and 'Warning' not in result.stdout + result.stderr, result.stdout + result.stderr

#----------------------------------------------------------------------------
