"""dataset_tool.py: conversion (sources, transforms, naming, labels), camera checks and bad input."""

import gzip
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

import dataset_tool
import dnnlib
from training.cameras import lookat_cam2world, make_label

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#----------------------------------------------------------------------------

def pixels(i, size=8, channels=3):
    shape = (size, size) if channels == 1 else (size, size, channels)
    return np.random.RandomState(i).randint(0, 256, size=shape, dtype=np.uint8)

def camera(i):
    return make_label(lookat_cam2world([0.2 * i - 0.5, 0.1, 2.6], (0, 0, 0.2)))

def make_source(root, names, images=None, labels='cameras'):
    """Image folder with dataset.json; labels: 'cameras', None (no dataset.json) or an explicit list."""
    os.makedirs(root, exist_ok=True)
    for i, name in enumerate(names):
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        PIL.Image.fromarray(pixels(i) if images is None else images[i]).save(path)
    if labels == 'cameras':
        labels = [[name, camera(i)] for i, name in enumerate(names)]
    if labels is not None:
        with open(os.path.join(root, 'dataset.json'), 'w') as f:
            json.dump({'labels': labels}, f)
    return root

def run_tool(*args):
    return CliRunner().invoke(dataset_tool.convert_dataset, list(args))

def read_zip(path):
    with zipfile.ZipFile(path) as zf:
        assert all(info.compress_type == zipfile.ZIP_STORED for info in zf.infolist())
        meta = zf.read('dataset.json').decode()
        images = {n: np.array(PIL.Image.open(io.BytesIO(zf.read(n)))) for n in zf.namelist() if n.endswith('.png')}
    return images, meta

def assert_no_output(tmp_path, dest):
    assert not os.path.exists(dest)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(dnnlib.util.TEMP_PREFIX)]

#----------------------------------------------------------------------------

def test_folder_to_zip(tmp_path):
    # Path-component order: 'a/b.png' comes before 'a-c.png' (unlike plain string order).
    names = ['b.png', 'a-c.png', 'a/b.png', 'A.png']
    src = make_source(str(tmp_path / 'src'), names)
    dest = str(tmp_path / 'out' / 'ds.zip')
    result = run_tool('--source', src, '--dest', dest)
    assert result.exit_code == 0, result.output
    assert 'Cameras: 4 valid label(s)' in result.output
    images, meta = read_zip(dest)
    order = ['A.png', 'a/b.png', 'a-c.png', 'b.png']
    out_names = [f'00000/img{i:08d}.png' for i in range(4)]
    assert sorted(images) == out_names
    for out, name in zip(out_names, order):
        np.testing.assert_array_equal(images[out], pixels(names.index(name)))
    assert meta == json.dumps({'labels': [[out, camera(names.index(name))] for out, name in zip(out_names, order)]})

def test_zip_to_folder_and_round_trip(tmp_path):
    src = make_source(str(tmp_path / 'src'), [f'{i}.png' for i in range(3)])
    assert run_tool('--source', src, '--dest', str(tmp_path / 'a.zip')).exit_code == 0
    (tmp_path / 'b').mkdir()  # An existing empty folder is fine.
    result = run_tool('--source', str(tmp_path / 'a.zip'), '--dest', str(tmp_path / 'b'))
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / 'b' / 'dataset.json').read_text())
    assert [name for name, _ in meta['labels']] == [f'00000/img{i:08d}.png' for i in range(3)]
    np.testing.assert_array_equal(np.array(PIL.Image.open(tmp_path / 'b' / '00000' / 'img00000002.png')), pixels(2))
    assert meta['labels'][1][1] == camera(1)

def test_max_images_resize_and_unlabelled(tmp_path):
    src = make_source(str(tmp_path / 'src'), [f'{i}.png' for i in range(5)], labels=None)
    result = run_tool('--source', src, '--dest', str(tmp_path / 'o.zip'), '--max-images', '3', '--resolution=4x4')
    assert result.exit_code == 0, result.output
    images, meta = read_zip(tmp_path / 'o.zip')
    assert len(images) == 3 and images['00000/img00000000.png'].shape == (4, 4, 3)
    expect = np.array(PIL.Image.fromarray(pixels(0)).resize((4, 4), PIL.Image.LANCZOS))
    np.testing.assert_array_equal(images['00000/img00000000.png'], expect)
    assert meta == '{"labels": null}'

def test_partial_labels_give_null_with_warning(tmp_path):
    src = make_source(str(tmp_path / 'src'), ['0.png', '1.png'], labels=[['0.png', camera(0)]])
    result = run_tool('--source', src, '--dest', str(tmp_path / 'o.zip'))
    assert result.exit_code == 0
    assert '1 of 2 image(s) have no label: 1.png' in result.output
    assert 'the output has no labels' in result.output
    assert read_zip(tmp_path / 'o.zip')[1] == '{"labels": null}'

def test_center_crop_modes(tmp_path):
    wide = pixels(0, size=32)[:16]                              # 32 wide, 16 high.
    src = make_source(str(tmp_path / 'src'), ['a.png', 'b.png'], images=[pixels(1, size=16)[:, :6], wide], labels=None)
    assert run_tool('--source', src, '--dest', str(tmp_path / 'c.zip'), '--transform=center-crop', '--resolution=8x8').exit_code == 0
    images, _ = read_zip(tmp_path / 'c.zip')
    expect = np.array(PIL.Image.fromarray(wide[:, 8:24]).resize((8, 8), PIL.Image.LANCZOS))
    np.testing.assert_array_equal(images['00000/img00000001.png'], expect)

    # center-crop-wide: the centred round(16 * 16/32) = 8-row band, resized to 16x8 and letterboxed into 16x16;
    # the 6-pixel-wide image is dropped, leaving a gap in the numbering.
    result = run_tool('--source', src, '--dest', str(tmp_path / 'w.zip'), '--transform=center-crop-wide', '--resolution=16,8')
    assert result.exit_code == 0, result.output
    images, meta = read_zip(tmp_path / 'w.zip')
    assert list(images) == ['00000/img00000001.png']
    out = images['00000/img00000001.png']
    band = np.array(PIL.Image.fromarray(wide[4:12]).resize((16, 8), PIL.Image.LANCZOS))
    np.testing.assert_array_equal(out[4:12], band)
    assert out.shape == (16, 16, 3) and not out[:4].any() and not out[12:].any()

def test_channel_conversions(tmp_path):
    palette = PIL.Image.fromarray(pixels(0)).convert('P')
    src = str(tmp_path / 'src')
    os.makedirs(src)
    palette.save(os.path.join(src, 'p.png'))
    assert run_tool('--source', src, '--dest', str(tmp_path / 'p.zip')).exit_code == 0
    np.testing.assert_array_equal(read_zip(tmp_path / 'p.zip')[0]['00000/img00000000.png'], np.array(palette.convert('RGB')))

    rgba = make_source(str(tmp_path / 'rgba'), ['a.png'], images=[pixels(1, channels=4)], labels=None)
    assert run_tool('--source', rgba, '--dest', str(tmp_path / 'r.zip')).exit_code == 0
    np.testing.assert_array_equal(read_zip(tmp_path / 'r.zip')[0]['00000/img00000000.png'], pixels(1, channels=4)[:, :, :3])

    gray = make_source(str(tmp_path / 'gray'), ['a.png'], images=[pixels(2, channels=1)], labels=None)
    assert run_tool('--source', gray, '--dest', str(tmp_path / 'g.zip')).exit_code == 0
    np.testing.assert_array_equal(read_zip(tmp_path / 'g.zip')[0]['00000/img00000000.png'], pixels(2, channels=1))

def test_mnist_and_cifar_sources(tmp_path):
    images = np.random.RandomState(0).randint(0, 256, size=(3, 28, 28), dtype=np.uint8)
    mnist = tmp_path / 'train-images-idx3-ubyte.gz'
    with gzip.open(mnist, 'wb') as f:
        f.write(b'\0' * 16 + images.tobytes())
    with gzip.open(tmp_path / 'train-labels-idx1-ubyte.gz', 'wb') as f:
        f.write(b'\0' * 8 + bytes([7, 1, 4]))
    assert run_tool('--source', str(mnist), '--dest', str(tmp_path / 'm.zip')).exit_code == 0
    out, meta = read_zip(tmp_path / 'm.zip')
    np.testing.assert_array_equal(out['00000/img00000001.png'][2:30, 2:30], images[1])
    assert json.loads(meta)['labels'][2] == ['00000/img00000002.png', 4]

    cifar = tmp_path / 'cifar-10-python.tar.gz'
    with tarfile.open(cifar, 'w:gz') as tar:
        for batch in range(1, 6):
            data = pickle.dumps({'data': np.full((2, 3072), batch, dtype=np.uint8), 'labels': [batch, batch + 1]})
            info = tarfile.TarInfo(f'cifar-10-batches-py/data_batch_{batch}')
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert run_tool('--source', str(cifar), '--dest', str(tmp_path / 'c.zip'), '--max-images=4').exit_code == 0
    out, meta = read_zip(tmp_path / 'c.zip')
    assert len(out) == 4 and out['00000/img00000003.png'].shape == (32, 32, 3) and out['00000/img00000003.png'].max() == 2
    assert [label for _, label in json.loads(meta)['labels']] == [1, 2, 2, 3]

def test_check_only(tmp_path):
    src = make_source(str(tmp_path / 'src'), ['a.png', 'b.png'])
    result = run_tool('--source', src, '--check-only')
    assert result.exit_code == 0 and 'Images: 2 (8x8 RGB for 2 of them)' in result.output
    assert 'distance to origin' in result.output
    bad = make_source(str(tmp_path / 'bad'), ['a.png'], labels=[['a.png', camera(0)[:24]]])
    result = run_tool('--source', bad, '--check-only')
    assert result.exit_code == 1 and 'do not have 25 numbers' in result.output
    result = run_tool('--source', make_source(str(tmp_path / 'nolabels'), ['a.png'], labels=None), '--check-only')
    assert result.exit_code == 1 and 'dataset.json: missing; EG3D needs camera labels' in result.output

def test_check_only_with_a_rendering_config(tmp_path):
    positions = [[0.5, 0.1, 2.6], [-0.3, -0.2, 2.6]]
    labels = [[name, make_label(lookat_cam2world(2.7 * np.array(pos) / np.linalg.norm(pos), (0, 0, 0.2)))]
              for name, pos in zip(['a.png', 'b.png'], positions)]     # FFHQ's cameras: 2.7 away, looking at (0, 0, 0.2).
    src = make_source(str(tmp_path / 'src'), ['a.png', 'b.png'], labels=labels)
    result = run_tool('--source', src, '--check-only', '--cfg=ffhq')
    assert result.exit_code == 0 and 'Warning' not in result.output
    assert 'yaw (degrees; 0 = camera on the +z axis, + = toward +x):' in result.output
    config = tmp_path / 'mine.json'
    config.write_text('{"base": "ffhq", "avg_camera_pivot": [0, 0, 0]}')
    result = run_tool('--source', src, '--check-only', f'--cfg={config}')
    assert result.exit_code == 0
    warnings = [line for line in result.output.splitlines() if line.startswith('Warning')]
    assert warnings == [f'Warning: {src}/dataset.json: avg_camera_pivot (0.000, 0.000, 0.000) is 0.200 away from the '
                        'point the cameras look at (0.000, 0.000, 0.200): avg_camera_pivot=[0, 0, 0.2] would fit']
    result = run_tool('--source', src, '--check-only', '--cfg=shapenet')
    assert result.exit_code == 0
    assert [line.split(': ')[2].split()[0] for line in result.output.splitlines() if line.startswith('Warning')] == \
        ['avg_camera_radius', 'avg_camera_pivot', 'ray_end', 'focal']
    # A conversion prints the same warnings.
    result = run_tool('--source', src, '--dest', str(tmp_path / 'out.zip'), '--cfg=shapenet')
    assert result.exit_code == 0 and 'Warning: ' in result.output and 'ray_end=3.5 would fit' in result.output

def test_bad_rendering_config(tmp_path):
    src = make_source(str(tmp_path / 'src'), ['a.png'])
    config = tmp_path / 'mine.json'
    config.write_text('{"base": "ffhq", "ray_stat": 1}')
    result = run_tool('--source', src, '--check-only', f'--cfg={config}')
    assert result.exit_code == 1
    assert result.output == f'Error: --cfg: {config}: ray_stat: unknown key (known: base, depth_resolution, ' \
        'depth_resolution_importance, ray_start, ray_end, box_warp, white_back, avg_camera_radius, avg_camera_pivot, ' \
        'plane_layout)\n'
    result = run_tool('--source', src, '--check-only', '--cfg=ffqh')
    assert result.exit_code == 2 and "'ffqh' is neither a preset" in result.output
    assert_no_output(tmp_path, tmp_path / 'out.zip')

def test_subprocess_entry_point(tmp_path):
    src = make_source(str(tmp_path / 'src'), ['a.png'])
    out = subprocess.run([sys.executable, os.path.join(REPO, 'dataset_tool.py'), f'--source={src}', '--check-only'],
                         capture_output=True, text=True, cwd=str(tmp_path))
    assert out.returncode == 0 and 'Cameras: 1 valid label(s)' in out.stdout

#----------------------------------------------------------------------------
# Bad input: one line naming the file and the problem, non-zero exit, nothing written.

def bad_source(root, kind):
    names = ['a.png', 'b.png']
    if kind == 'malformed-json':
        make_source(root, names, labels=None)
        with open(os.path.join(root, 'dataset.json'), 'w') as f:
            f.write('{"labels": [["a.png", [1, 2')
    elif kind == 'wrong-length':
        make_source(root, names, labels=[['a.png', camera(0)], ['b.png', camera(1)[:16]]])
    elif kind == 'non-finite':
        make_source(root, names, labels=[['a.png', camera(0)], ['b.png', [float('inf')] + camera(1)[1:]]])
    elif kind == 'truncated':
        make_source(root, names)
        with open(os.path.join(root, 'b.png'), 'r+b') as f:
            f.truncate(50)
    elif kind == 'not-an-image':
        make_source(root, names)
        with open(os.path.join(root, 'b.png'), 'wb') as f:
            f.write(b'hello')
    elif kind == 'mixed-sizes':
        make_source(root, names, images=[pixels(0), pixels(1, size=16)])
    elif kind == 'mixed-channels':
        make_source(root, names, images=[pixels(0), pixels(1, channels=1)])
    elif kind == 'non-square':
        make_source(root, names, images=[pixels(0)[:4], pixels(1)[:4]])
    elif kind == 'non-power-of-two':
        make_source(root, names, images=[pixels(0, size=6), pixels(1, size=6)])
    elif kind == 'class-index':
        make_source(root, names, labels=[['a.png', camera(0)], ['b.png', 3]])
    elif kind == '16-bit':
        make_source(root, names)
        PIL.Image.fromarray(np.full((8, 8), 1000, dtype=np.uint16)).save(os.path.join(root, 'b.png'))
    elif kind == 'two-channels':
        make_source(root, ['a.png'], images=[np.dstack([pixels(0, channels=1)] * 2)], labels=None)
    return root

@pytest.mark.parametrize('kind,message', [
    ('malformed-json', 'src/dataset.json: malformed JSON'),
    ('wrong-length', 'src/dataset.json: label of b.png has 16 numbers; EG3D camera labels are lists of 25 numbers '
                     '(pass --any-labels to copy other labels unchanged)'),
    ('class-index', 'src/dataset.json: label of b.png is 3; EG3D camera labels are lists of 25 numbers'),
    ('non-finite', 'src/dataset.json: label of b.png contains NaN or infinity'),
    ('truncated', 'src/b.png: cannot read image'),
    ('not-an-image', 'src/b.png: cannot read image'),
    ('16-bit', 'src/b.png: mode I;16 is not 8 bits per channel; 8-bit images are required'),
    ('mixed-sizes', 'src/b.png: image is 16x16 with 3 channel(s), but {src}/a.png is 8x8 with 3 channel(s); '
                    'all images must match'),
    ('mixed-channels', 'src/b.png: image is 8x8 with 1 channel(s), but {src}/a.png is 8x8 with 3 channel(s)'),
    ('non-square', 'src/a.png: image is 8x4; images must be square'),
    ('non-power-of-two', 'src/a.png: size 6x6 is not a power of two'),
    ('two-channels', 'src/a.png: 2 channels; RGB or grayscale images are required'),
])
@pytest.mark.parametrize('dest_name', ['out.zip', 'outdir'])
def test_bad_input(tmp_path, monkeypatch, kind, message, dest_name):
    src = bad_source(str(tmp_path / 'src'), kind)
    dest = str(tmp_path / dest_name)
    if kind != 'truncated':  # Only undecodable pixel data is found while converting (and the output discarded).
        monkeypatch.setattr(dataset_tool, 'open_dest', lambda dest: pytest.fail('checks must come before the output'))
    result = run_tool('--source', src, '--dest', dest)
    assert result.exit_code == 1
    error_lines = [line for line in result.output.splitlines() if line.startswith('Error: ')]
    assert len(error_lines) == 1 and message.format(src=src) in error_lines[0], result.output
    assert_no_output(tmp_path, dest)

def test_bad_images_in_a_zip_source(tmp_path, monkeypatch):
    src = bad_source(str(tmp_path / 'src'), 'mixed-channels')
    assert run_tool('--source', src, '--dest', str(tmp_path / 'src.zip'), '--any-labels').exit_code == 1
    with zipfile.ZipFile(tmp_path / 'src.zip', 'w') as zf:
        for name in ['a.png', 'b.png', 'dataset.json']:
            zf.write(os.path.join(src, name), name)
    monkeypatch.setattr(dataset_tool, 'open_dest', lambda dest: pytest.fail('checks must come before the output'))
    result = run_tool('--source', str(tmp_path / 'src.zip'), '--dest', str(tmp_path / 'out.zip'), '--resolution=4x4')
    assert result.exit_code == 1
    assert (f'Error: {tmp_path}/src.zip/b.png: image converts to 4x4 with 1 channel(s), but {tmp_path}/src.zip/a.png '
            'converts to 4x4 with 3 channel(s); all images must match') in result.output.splitlines()
    assert_no_output(tmp_path, str(tmp_path / 'out.zip'))

@pytest.mark.parametrize('args,message', [
    (['--resolution=6x6'], '--resolution=6x6: 6 is not a power of two'),
    (['--resolution=8x4'], '--resolution=8x4: images must be square'),
    (['--resolution=8x16', '--transform=center-crop-wide'], '--resolution=8x16: with --transform=center-crop-wide the '
                                                            'height must not exceed the width'),
    (['--transform=center-crop'], '--transform=center-crop needs --resolution=WxH'),
    (['--max-images=0'], '--max-images=0: must be at least 1'),
])
def test_bad_options(tmp_path, monkeypatch, args, message):
    src = make_source(str(tmp_path / 'src'), ['a.png'])
    monkeypatch.setattr(dataset_tool, 'open_source', lambda *a: pytest.fail('options must be checked first'))
    result = run_tool('--source', src, '--dest', str(tmp_path / 'o.zip'), *args)
    assert result.exit_code == 1 and result.output == f'Error: {message}\n'
    assert_no_output(tmp_path, str(tmp_path / 'o.zip'))

def test_bad_destinations_are_not_overwritten(tmp_path):
    src = make_source(str(tmp_path / 'src'), ['a.png'])
    (tmp_path / 'full').mkdir()
    (tmp_path / 'full' / 'keep.txt').write_text('keep')
    result = run_tool('--source', src, '--dest', str(tmp_path / 'full'))
    assert result.exit_code == 1 and 'full: destination folder must be empty' in result.output
    assert os.listdir(tmp_path / 'full') == ['keep.txt']

    (tmp_path / 'old.zip').write_bytes(b'old')
    result = run_tool('--source', src, '--dest', str(tmp_path / 'old.zip'))
    assert result.exit_code == 1 and 'old.zip: destination already exists' in result.output
    assert (tmp_path / 'old.zip').read_bytes() == b'old'

    (tmp_path / 'file').write_text('keep')
    result = run_tool('--source', src, '--dest', str(tmp_path / 'file'))
    assert result.output == f'Error: {tmp_path}/file: destination exists and is not a folder\n'
    result = run_tool('--source', src, '--dest', str(tmp_path / 'file' / 'sub' / 'o.zip'))
    assert result.output == f'Error: {tmp_path}/file/sub/o.zip: cannot create it ({tmp_path}/file is not a writable folder)\n'
    assert result.exit_code == 1 and (tmp_path / 'file').read_text() == 'keep'

def test_failed_conversion_removes_the_folders_it_made(tmp_path):
    src = bad_source(str(tmp_path / 'src'), 'truncated')  # Found only while converting.
    (tmp_path / 'out').mkdir()
    for dest in [tmp_path / 'out' / 'a' / 'b' / 'o.zip', tmp_path / 'out' / 'a' / 'b' / 'dir']:
        result = run_tool('--source', src, '--dest', str(dest))
        assert result.exit_code == 1 and 'src/b.png: cannot read image' in result.output
        assert os.listdir(tmp_path / 'out') == []

def test_destination_is_checked_before_the_source(tmp_path):
    (tmp_path / 'old.zip').write_bytes(b'old')
    result = run_tool('--source', str(tmp_path / 'missing'), '--dest', str(tmp_path / 'old.zip'))
    assert result.exit_code == 1 and result.output == f'Error: {tmp_path}/old.zip: destination already exists; ' \
        'remove it or choose another name\n'

def test_usage_errors(tmp_path):
    src = make_source(str(tmp_path / 'src'), ['a.png'])
    assert run_tool('--source', src, '--dest', '').exit_code == 2
    assert run_tool('--source', src).exit_code == 2
    result = run_tool('--source', src, '--dest', str(tmp_path / 'o.zip'), '--resolution=8by8')
    assert result.exit_code == 2 and '"8by8" is not a pair' in result.output
    result = run_tool('--source', src, '--dest', str(tmp_path / 'o.zip'), '--transform=center-crop')
    assert result.exit_code == 1 and '--transform=center-crop needs --resolution=WxH' in result.output
    result = run_tool('--source', str(tmp_path / 'missing'), '--dest', str(tmp_path / 'o.zip'))
    assert result.exit_code == 1 and 'missing: no such file or directory' in result.output
    (tmp_path / 'data.tar').write_bytes(b'x')
    result = run_tool('--source', str(tmp_path / 'data.tar'), '--dest', str(tmp_path / 'o.zip'))
    assert result.exit_code == 1 and 'data.tar: unknown input type' in result.output
    assert_no_output(tmp_path, str(tmp_path / 'o.zip'))

def test_any_labels_copies_other_labels_unchanged(tmp_path):
    labels = [['a.png', [2.0, 3.0]], ['b.png', 7], ['c.png', {'class': 'cat'}]]
    src = make_source(str(tmp_path / 'src'), ['a.png', 'b.png', 'c.png'], labels=labels)
    result = run_tool('--source', src, '--dest', str(tmp_path / 'x.zip'))
    assert result.exit_code == 1 and 'label of a.png has 2 numbers' in result.output
    assert_no_output(tmp_path, str(tmp_path / 'x.zip'))
    result = run_tool('--source', src, '--dest', str(tmp_path / 'y.zip'), '--any-labels')
    assert result.exit_code == 0, result.output
    assert 'Cameras:' not in result.output
    out_names = [f'00000/img{i:08d}.png' for i in range(3)]
    assert read_zip(tmp_path / 'y.zip')[1] == json.dumps({'labels': [[n, v] for n, (_, v) in zip(out_names, labels)]})

def test_any_labels_still_refuses_non_finite(tmp_path):
    src = make_source(str(tmp_path / 'src'), ['a.png'], labels=[['a.png', {'pose': [1.0, float('nan')]}]])
    result = run_tool('--source', src, '--dest', str(tmp_path / 'y.zip'), '--any-labels')
    assert result.exit_code == 1 and result.output.splitlines()[-1].endswith('dataset.json: label of a.png contains NaN or infinity')
    assert_no_output(tmp_path, str(tmp_path / 'y.zip'))

def test_camera_geometry_warns_unless_check_cameras(tmp_path):
    random_label = np.random.RandomState(0).randn(25).tolist()  # 25 numbers, but not a camera.
    src = make_source(str(tmp_path / 'src'), ['a.png', 'b.png'], labels=[['a.png', random_label], ['b.png', camera(1)]])
    result = run_tool('--source', src, '--dest', str(tmp_path / 'y.zip'))
    assert result.exit_code == 0, result.output
    assert 'Warning: ' in result.output and 'have a rotation that is not orthonormal' in result.output
    assert json.loads(read_zip(tmp_path / 'y.zip')[1])['labels'][0][1] == random_label
    result = run_tool('--source', src, '--dest', str(tmp_path / 'x.zip'), '--check-cameras=1')
    assert result.exit_code == 1
    error_lines = [line for line in result.output.splitlines() if line.startswith('Error: ')]
    assert len(error_lines) == 1 and 'dataset.json: 1 label(s) have a cam2world bottom row other than 0 0 0 1: a.png' \
        in error_lines[0] and error_lines[0].endswith('more; see --check-only)')
    assert_no_output(tmp_path, str(tmp_path / 'x.zip'))

def test_unexpected_errors_are_one_line(tmp_path, monkeypatch):
    src = make_source(str(tmp_path / 'src'), ['a.png'])
    monkeypatch.setattr(dataset_tool, 'encode_png', lambda img: 1 / 0)
    result = run_tool('--source', src, '--dest', str(tmp_path / 'o.zip'))
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == 'Error: division by zero (ZeroDivisionError; set EG3D_DEBUG=1 for the traceback)'
    assert_no_output(tmp_path, str(tmp_path / 'o.zip'))

def test_extension_rules_for_images_and_zip_destinations(tmp_path):
    # Image files: the text after the last '.' of the path ('.png' is an image, 'png' is not); a dest is a zip only
    # when it ends in lower-case '.zip'.
    src = str(tmp_path / 'src')
    os.makedirs(src)
    for i, name in enumerate(['.png', 'b.png', 'png']):
        PIL.Image.fromarray(pixels(i)).save(os.path.join(src, name), format='png')
    result = run_tool('--source', src, '--dest', str(tmp_path / 'OUT.ZIP'))
    assert result.exit_code == 0, result.output
    assert os.path.isdir(tmp_path / 'OUT.ZIP')
    assert sorted(os.listdir(tmp_path / 'OUT.ZIP' / '00000')) == ['img00000000.png', 'img00000001.png']
    np.testing.assert_array_equal(np.array(PIL.Image.open(tmp_path / 'OUT.ZIP' / '00000' / 'img00000001.png')), pixels(1))

#----------------------------------------------------------------------------
