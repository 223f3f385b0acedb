"""Camera-label validation: conventions, findings on bad labels, summaries, whole-dataset checks."""

import io
import json
import os
import zipfile

import numpy as np
import PIL.Image
import pytest

from training import presets
from training.camera_validation import (
    DatasetError,
    check_camera_labels,
    check_dataset,
    check_rendering_fit,
    read_image_header,
    text_histogram,
    yaw_pitch_degrees,
)
from training.cameras import FOCAL_SHAPENET, lookat_cam2world, make_label

#----------------------------------------------------------------------------

def sampler_position(yaw, pitch, radius):
    # Camera position of LookAtPoseSampler (data.md 3): yaw = pitch = pi/2 is the frontal camera on +z.
    theta = np.arccos(1 - 2 * pitch / np.pi)
    return radius * np.array([np.sin(theta) * np.cos(np.pi - yaw), np.cos(theta), np.sin(theta) * np.sin(np.pi - yaw)])

def ffhq_like_labels(n=12, seed=0, target=(0, 0, 0.2)):
    rnd = np.random.RandomState(seed)
    labels = []
    for i in range(n):
        pos = sampler_position(np.pi / 2 + rnd.uniform(-0.6, 0.6), np.pi / 2 + rnd.uniform(-0.3, 0.3), 2.7)
        labels.append([f'{i:05d}.png', make_label(lookat_cam2world(pos, target))])
    return labels

def shapenet_like_labels(n=24, seed=0, radius=1.3):
    """SRN-car-like cameras: all around the origin, above the ground, looking at it, focal 1.7074."""
    rnd = np.random.RandomState(seed)
    labels = []
    for i in range(n):
        yaw, elevation = rnd.uniform(-np.pi, np.pi), rnd.uniform(0.05, 1.2)
        pos = radius * np.array([np.cos(elevation) * np.sin(yaw), np.sin(elevation), np.cos(elevation) * np.cos(yaw)])
        labels.append([f'{i:05d}.png', make_label(lookat_cam2world(pos), focal=FOCAL_SHAPENET)])
    return labels

def names_of(labels):
    return [name for name, _label in labels]

#----------------------------------------------------------------------------

def test_lookat_matches_spec_example():
    # data.md 3: yaw pi/2+0.4, pitch pi/2-0.2, radius 2.7, looking at (0, 0, 0.2).
    ref = np.array([
        [0.90846, 0.05705, -0.41407, 1.04287],
        [0.00000, -0.99064, -0.13649, 0.34377],
        [-0.41798, 0.12400, -0.89995, 2.46662],
        [0, 0, 0, 1],
    ])
    pose = lookat_cam2world(sampler_position(np.pi / 2 + 0.4, np.pi / 2 - 0.2, 2.7), (0, 0, 0.2))
    np.testing.assert_allclose(pose, ref, atol=1e-5)
    frontal = lookat_cam2world(sampler_position(np.pi / 2, np.pi / 2, 2.7))
    np.testing.assert_allclose(frontal, [[1, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 2.7], [0, 0, 0, 1]], atol=1e-12)

def test_valid_ffhq_like_cameras():
    labels = ffhq_like_labels()
    report = check_camera_labels(labels, names_of(labels))
    assert report.ok and report.errors == [] and report.warnings == []
    s = report.stats
    assert s['num_cameras'] == 12
    assert s['distance']['min'] == pytest.approx(2.7) and s['distance']['max'] == pytest.approx(2.7)
    assert s['frac_toward_origin'] == 1.0
    np.testing.assert_allclose(s['focus'], [0, 0, 0.2], atol=1e-9)
    assert s['axis_miss']['max'] < 0.2
    assert s['fx']['median'] == pytest.approx(4.2647)
    assert s['mean_up'][1] > 0.9  # Image-up is world +y.
    text = report.format()
    assert 'distance to origin' in text and '(0.000, 0.000, 0.200)' in text

def test_structural_errors_name_the_files():
    good = ffhq_like_labels(4)
    bad = [
        ['short.png', good[0][1][:16]],
        ['nan.png', good[0][1][:3] + [float('nan')] + good[0][1][4:]],
        ['class.png', 3],
    ]
    report = check_camera_labels(good + bad, names_of(good + bad), where='x/dataset.json')
    assert not report.ok
    text = '\n'.join(report.errors)
    assert 'x/dataset.json: 1 label(s) do not have 25 numbers (e.g. short.png has 16)' in text
    assert 'NaN or infinity: nan.png' in text
    assert 'not lists of numbers (class indices?): class.png' in text
    assert report.stats['num_cameras'] == 4  # The valid labels are still summarised.

def test_geometry_errors():
    base = lookat_cam2world(sampler_position(np.pi / 2 + 0.3, np.pi / 2, 2.7))
    scaled = base.copy()
    scaled[:3, :3] *= 1.1
    reflected = base @ np.diag([-1.0, 1, 1, 1])
    bottom = base.copy()
    bottom[3, 2] = 0.5
    labels = [
        ['ok.png', make_label(base)],
        ['scaled.png', make_label(scaled)],
        ['reflected.png', make_label(reflected)],
        ['bottom.png', make_label(bottom)],
        ['negfocal.png', make_label(base, focal=-4.0)],
        ['pixels.png', make_label(base, focal=2985.29, cx=512, cy=512)],
    ]
    report = check_camera_labels(labels)
    text = '\n'.join(report.errors)
    assert 'not orthonormal' in text and 'scaled.png' in text
    assert 'determinant -1' in text and 'reflected.png' in text
    assert 'bottom row other than 0 0 0 1: bottom.png' in text
    assert 'focal length <= 0: negfocal.png' in text
    assert 'intrinsics in pixels' in text and 'pixels.png' in text
    assert 'ok.png' not in text

def test_warnings_coverage_duplicates_principal_point():
    labels = ffhq_like_labels(10)
    off = [['off.png', make_label(lookat_cam2world([0, 0, 2.7]), cx=0.6)]]
    dup = [labels[0], labels[1]]
    images = names_of(labels)[2:] + [f'extra{i}.png' for i in range(7)] + ['off.png']
    report = check_camera_labels(labels + off + dup, images, max_listed=3)
    assert report.ok
    text = '\n'.join(report.warnings)
    assert '2 file name(s) listed more than once (the last label wins): 00000.png, 00001.png' in text
    assert '7 of 16 image(s) have no label: extra0.png, extra1.png, extra2.png, ... (4 more)' in text
    assert '2 label(s) name no existing image: 00000.png, 00001.png' in text
    assert 'principal point more than 0.05 from (0.5, 0.5)' in text and 'off.png' in text

def test_convention_hints():
    labels = ffhq_like_labels(8, target=(0, 0, 0))
    opengl = [[n, make_label(np.array(l[:16]).reshape(4, 4) @ np.diag([1.0, -1, -1, 1]))] for n, l in labels]
    report = check_camera_labels(opengl)
    assert report.ok and report.stats['frac_toward_origin'] == 0.0
    assert any('look away from the origin' in w and 'diag(1, -1, -1)' in w for w in report.warnings)

    world2cam = [[n, make_label(np.linalg.inv(np.array(l[:16]).reshape(4, 4)))] for n, l in labels]
    report = check_camera_labels(world2cam)
    assert any('world-to-camera' in w for w in report.warnings)
    assert not any('world-to-camera' in w for w in check_camera_labels(labels).warnings)

def test_null_labels():
    report = check_camera_labels(None, where='d/dataset.json')
    assert not report.ok and report.errors[0].startswith('d/dataset.json: "labels" is null')

#----------------------------------------------------------------------------

def write_dataset(root, labels, sizes=None, as_zip=False):
    files = {}
    for i, name in enumerate(names_of(labels)):
        size = (sizes or {}).get(name, 8)
        buf = PIL.Image.fromarray(np.full((size, size, 3), i, dtype=np.uint8))
        files[name] = buf
    meta = json.dumps({'labels': labels})
    if as_zip:
        path = os.path.join(root, 'data.zip')
        with zipfile.ZipFile(path, 'w') as zf:
            for name, img in files.items():
                with zf.open(name, 'w') as f:
                    img.save(f, format='png')
            zf.writestr('dataset.json', meta)
        return path
    for name, img in files.items():
        img.save(os.path.join(root, name))
    with open(os.path.join(root, 'dataset.json'), 'w') as f:
        f.write(meta)
    return root

@pytest.mark.parametrize('as_zip', [False, True])
def test_check_dataset(tmp_path, as_zip):
    labels = ffhq_like_labels(5)
    path = write_dataset(str(tmp_path), labels, as_zip=as_zip)
    report = check_dataset(path)
    assert report.ok, report.format()
    assert report.summary[0] == 'Images: 5 (8x8 RGB for 5 of them)'

def test_check_dataset_mixed_sizes_and_missing_json(tmp_path):
    labels = ffhq_like_labels(4)
    write_dataset(str(tmp_path), labels, sizes={'00002.png': 16})
    report = check_dataset(str(tmp_path))
    assert any('1 image(s) differ in size or mode from the first one (8x8 RGB): 00002.png' in e for e in report.errors)
    os.remove(os.path.join(tmp_path, 'dataset.json'))
    with pytest.raises(DatasetError, match='dataset.json: missing; EG3D needs camera labels'):
        check_dataset(str(tmp_path))
    with pytest.raises(DatasetError, match='no such file or directory'):
        check_dataset(str(tmp_path / 'nope'))

#----------------------------------------------------------------------------

@pytest.mark.parametrize('mode,options', [('L', {}), ('RGB', {}), ('RGBA', {}), ('LA', {}), ('P', {}), ('I;16', {}),
                                          ('1', {}), ('RGB', {'transparency': (0, 0, 0)}), ('RGB', {'format': 'JPEG'}),
                                          ('P', {'bits': 4})])
def test_read_image_header_agrees_with_pillow(mode, options):
    buf = io.BytesIO()
    PIL.Image.new(mode, (7, 5)).save(buf, **{'format': 'PNG', **options})
    with PIL.Image.open(io.BytesIO(buf.getvalue())) as img:
        expect = (img.size[0], img.size[1], img.mode)
    assert read_image_header(io.BytesIO(buf.getvalue())) == expect

    class Unseekable(io.BytesIO):
        def seekable(self):
            return False
    assert read_image_header(Unseekable(buf.getvalue())) == expect

#----------------------------------------------------------------------------
# Rendering options against the cameras (dataset_tool.py --check-only --cfg, train.py).

def fit(labels, cfg, **changes):
    options = dict(presets.rendering_preset(cfg), **changes)
    return check_rendering_fit(check_camera_labels(labels, where='d.json'), options, preset=cfg)

def test_released_presets_fit_their_fixtures():
    assert fit(ffhq_like_labels(), 'ffhq') == []    # ray_start 2.25 cuts 0.05 off the box's ball: within RAY_TOL.
    # The shapenet preset orbits its videos at 1.7, farther out than the SRN cameras; everything else fits.
    assert fit(shapenet_like_labels(), 'shapenet') == [
        "d.json: avg_camera_radius 1.7 differs from the cameras' distance to the origin (median 1.300): "
        "avg_camera_radius=1.3 would fit"]

def test_each_mismatch_gets_one_line_with_the_value_that_fits():
    assert fit(ffhq_like_labels(), 'afhq') == [
        'd.json: avg_camera_pivot (0.000, 0.000, -0.060) is 0.260 away from the point the cameras look at '
        '(0.000, 0.000, 0.200): avg_camera_pivot=[0, 0, 0.2] would fit']
    lines = fit(ffhq_like_labels(), 'shapenet')
    assert len(lines) == 4
    assert lines[0].startswith('d.json: avg_camera_radius 1.7 differs') and lines[0].endswith('avg_camera_radius=2.7 would fit')
    assert lines[1].endswith('avg_camera_pivot=[0, 0, 0.2] would fit')
    assert lines[2] == ('d.json: ray_end 2.6 stops short of the back of the box for 12 of 12 cameras (farthest 3.500 '
                        'away): ray_end=3.5 would fit (or ray_start and ray_end "auto")')
    assert lines[3] == ("d.json: focal length 4.2647 (median) differs from the shapenet preset's 1.7074, which its "
                        'released networks were trained with: a config based on ffhq or afhq would fit')
    assert fit(ffhq_like_labels(), 'ffhq', ray_start=2.5) == [
        'd.json: ray_start 2.5 starts past the front of the box for 12 of 12 cameras (nearest 2.200 away): '
        'ray_start=2.2 would fit (or ray_start and ray_end "auto")']
    focal = check_rendering_fit(check_camera_labels(ffhq_like_labels()), presets.rendering_preset('ffhq'), preset='shapenet')
    assert len(focal) == 1 and 'a config based on ffhq or afhq would fit' in focal[0]
    assert check_rendering_fit(check_camera_labels(ffhq_like_labels()), presets.rendering_preset('ffhq'), preset=None) == []
    wide = [[name, label[:16] + make_label(np.eye(4), focal=2.5)[16:]] for name, label in ffhq_like_labels()]
    assert fit(wide, 'ffhq')[-1].endswith("differs from the ffhq preset's 4.2647, which its released networks were "
                                          'trained with: focal 2.5000 would fit')

def test_shapenet_options_beyond_radius_2_8_miss_the_object():
    # Users' report: the shapenet options render pure white from cameras 2.8 away (the car lies past ray_end 2.6).
    labels = shapenet_like_labels(radius=2.8)
    lines = fit(labels, 'shapenet', avg_camera_radius=2.8)
    assert lines == ['d.json: ray_end 2.6 stops short of the back of the box for 24 of 24 cameras (farthest 3.600 away): '
                     'ray_end=3.6 would fit (or ray_start and ray_end "auto")']
    assert fit(labels, 'shapenet', avg_camera_radius=2.8, ray_start='auto', ray_end='auto') == []
    assert fit(labels, 'shapenet', avg_camera_radius=2.8, ray_end=3.6) == []

def test_partly_clipped_cameras_are_counted():
    labels = shapenet_like_labels(n=6) + [[f'far{i}.png', label] for i, (_, label) in enumerate(shapenet_like_labels(n=2, radius=2.4))]
    lines = fit(labels, 'shapenet', avg_camera_radius=1.3)
    assert lines == ['d.json: ray_end 2.6 stops short of the back of the box for 2 of 8 cameras (farthest 3.200 away): '
                     'ray_end=3.2 would fit (or ray_start and ray_end "auto")']

def test_no_fit_lines_without_usable_cameras():
    assert fit([['a.png', [0] * 16]], 'ffhq') == []

def test_yaw_pitch_and_histogram():
    centers = np.array([[0, 0, 2.7], [2.7, 0, 0], [0, 0, -2.7], [0, 2.7 * np.sin(0.3), 2.7 * np.cos(0.3)]])
    yaw, pitch = yaw_pitch_degrees(centers)
    np.testing.assert_allclose(yaw, [0, 90, 180, 0], atol=1e-12)
    np.testing.assert_allclose(pitch, [0, 0, 0, np.degrees(0.3)], atol=1e-12)
    # The summary's yaw matches LookAtPoseSampler's: horizontal = pi/2 + yaw.
    pose = lookat_cam2world(sampler_position(np.pi / 2 + 0.4, np.pi / 2, 2.7))
    assert yaw_pitch_degrees(pose[None, :3, 3])[0][0] == pytest.approx(np.degrees(0.4))

    lines = text_histogram(np.array([-44.0, -3, 1, 2, 29.5]), 'yaw')
    assert lines == ['  yaw:',     # The smallest round bin width that needs at most 12 bins.
                     '      -50 to  -40  ###############                1',
                     '      -40 to  -30                                 0',
                     '      -30 to  -20                                 0',
                     '      -20 to  -10                                 0',
                     '      -10 to    0  ###############                1',
                     '        0 to   10  ############################## 2',
                     '       10 to   20                                 0',
                     '       20 to   30  ###############                1']
    assert len(text_histogram(np.linspace(-180, 180, 50), 'yaw')) == 1 + 12    # 180 joins the last bin.
    assert text_histogram(np.array([-90.0, 0.0]), 'yaw')[-1] == '        0 to   10  ############################## 1'
    assert text_histogram(np.array([5.0, 5.0]), 'pitch')[1:] == ['        5 to    6  ############################## 2']
    summary = '\n'.join(check_camera_labels(ffhq_like_labels()).summary)
    assert 'yaw (degrees; 0 = camera on the +z axis, + = toward +x):' in summary and 'pitch (degrees of elevation' in summary
