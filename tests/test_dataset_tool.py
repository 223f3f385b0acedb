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
from training.camera_validation import lookat_cam2world, make_label

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
    assert not [p for p in os.listdir(tmp_path) if 'incomplete' in p]

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
    elif kind == 'two-channels':
        make_source(root, ['a.png'], images=[np.dstack([pixels(0, channels=1)] * 2)], labels=None)
    return root

@pytest.mark.parametrize('kind,message', [
    ('malformed-json', 'src/dataset.json: malformed JSON'),
    ('wrong-length', 'src/dataset.json: 1 label(s) do not have 25 numbers (e.g. b.png has 16)'),
    ('non-finite', 'src/dataset.json: 1 label(s) contain NaN or infinity: b.png'),
    ('truncated', 'src/b.png: cannot read image'),
    ('not-an-image', 'src/b.png: cannot read image'),
    ('mixed-sizes', 'src/b.png: image is 16x16 with 3 channel(s), the dataset\'s first image is 8x8 with 3 channel(s)'),
    ('mixed-channels', 'src/b.png: image is 8x8 with 1 channel(s)'),
    ('non-square', 'src/a.png: image is 8x4; images must be square'),
    ('non-power-of-two', 'src/a.png: size 6x6 is not a power of two'),
    ('two-channels', 'src/a.png: 2 channels; RGB or grayscale images are required'),
])
@pytest.mark.parametrize('dest_name', ['out.zip', 'outdir'])
def test_bad_input(tmp_path, kind, message, dest_name):
    src = bad_source(str(tmp_path / 'src'), kind)
    dest = str(tmp_path / dest_name)
    strict = ['--check-cameras=1'] if kind in ('wrong-length', 'non-finite') else []  # Camera errors stop only on request.
    result = run_tool('--source', src, '--dest', dest, *strict)
    assert result.exit_code == 1
    error_lines = [line for line in result.output.splitlines() if line.startswith('Error: ')]
    assert len(error_lines) == 1 and message in error_lines[0], result.output
    if kind == 'mixed-sizes':  # As in the original: the output name, then one line per attribute (dataset/current).
        assert '(output 00000/img00000001.png)' in error_lines[0]
        assert '  dataset width/cur image width: 8/16\n  dataset height/cur image height: 8/16\n' in result.output
    assert_no_output(tmp_path, dest)

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

def test_usage_errors(tmp_path):
    src = make_source(str(tmp_path / 'src'), ['a.png'])
    assert run_tool('--source', src, '--dest', '').exit_code == 2
    assert run_tool('--source', src).exit_code == 2
    result = run_tool('--source', src, '--dest', str(tmp_path / 'o.zip'), '--resolution=8by8')
    assert result.exit_code == 2 and 'expected WxH' in result.output
    result = run_tool('--source', src, '--dest', str(tmp_path / 'o.zip'), '--transform=center-crop')
    assert result.exit_code == 1 and '--transform=center-crop needs --resolution=WxH' in result.output
    result = run_tool('--source', str(tmp_path / 'missing'), '--dest', str(tmp_path / 'o.zip'))
    assert result.exit_code == 1 and 'missing: no such file or directory' in result.output
    (tmp_path / 'data.tar').write_bytes(b'x')
    result = run_tool('--source', str(tmp_path / 'data.tar'), '--dest', str(tmp_path / 'o.zip'))
    assert result.exit_code == 1 and 'data.tar: unknown input type' in result.output
    assert_no_output(tmp_path, str(tmp_path / 'o.zip'))

def test_other_labels_are_copied_unless_check_cameras(tmp_path):
    # The original copies any JSON label unchanged; ours reports what is wrong and refuses only with --check-cameras=1.
    random_label = np.random.RandomState(0).randn(25).tolist()
    src = make_source(str(tmp_path / 'src'), ['a.png', 'b.png'], labels=[['a.png', random_label], ['b.png', [2.0, 3.0]]])
    result = run_tool('--source', src, '--dest', str(tmp_path / 'y.zip'))
    assert result.exit_code == 0, result.output
    assert 'Warning: ' in result.output and 'do not have 25 numbers' in result.output
    assert read_zip(tmp_path / 'y.zip')[1] == json.dumps({'labels': [['00000/img00000000.png', random_label],
                                                                      ['00000/img00000001.png', [2.0, 3.0]]]})
    result = run_tool('--source', src, '--dest', str(tmp_path / 'x.zip'), '--check-cameras=1')
    assert result.exit_code == 1 and 'do not have 25 numbers' in result.output
    assert_no_output(tmp_path, str(tmp_path / 'x.zip'))

def test_names_follow_the_original_extension_rules(tmp_path):
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
