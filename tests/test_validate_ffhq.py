"""dataset_preprocessing/ffhq/validate_ffhq.py: files checked against the metadata's sizes and MD5s."""

import hashlib
import io
import json
import os

import numpy as np
import PIL.Image
import pytest
from helpers import load_ffhq_module

validate_ffhq = load_ffhq_module('validate_ffhq')

@pytest.fixture
def call(call_main):
    return lambda *args: call_main(validate_ffhq.main, *args)

#----------------------------------------------------------------------------

def png(i, compress_level=6):
    pixels = np.random.RandomState(i).randint(0, 256, size=(6, 10, 3), dtype=np.uint8)
    buf = io.BytesIO()
    PIL.Image.fromarray(pixels).save(buf, format='PNG', compress_level=compress_level)
    return buf.getvalue(), pixels

def md5(data):
    return hashlib.md5(data).hexdigest()

@pytest.fixture
def fake_download(tmp_path):
    """Metadata for four photos in tmp_path/ffhq: 0 is good, 1 has the wrong size, 2 the wrong MD5, 3 is missing."""
    root = tmp_path / 'ffhq'
    entries = {}
    for i in range(4):
        data, pixels = png(i)
        rel = f'in-the-wild-images/00000/{i:05d}.png'
        entries[str(i)] = {'in_the_wild': {'file_url': 'https://example.invalid', 'file_path': rel, 'file_size': len(data),
                                           'file_md5': md5(data), 'pixel_size': [10, 6], 'pixel_md5': md5(pixels.tobytes())}}
        if i == 3:
            continue
        if i == 1:
            data = data + b'junk'
        if i == 2:
            data = data[:-5] + bytes(5)
        (root / os.path.dirname(rel)).mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / 'ffhq-dataset-v2.json').write_text(json.dumps(entries))
    return root, entries

def snapshot(root):
    return {p: p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}

def test_file_mode_reports_each_problem(fake_download, call, tmp_path, monkeypatch):
    root, entries = fake_download
    before = snapshot(root)
    monkeypatch.chdir(tmp_path)  # Paths are relative to the metadata's folder, not the working directory.
    out = call(f'--dataset_json={root}/ffhq-dataset-v2.json', '--num_threads=2')
    assert out.returncode == 1
    wild = [entries[str(i)]['in_the_wild'] for i in range(4)]
    errors = [line for line in out.stderr.splitlines() if line.startswith('Error: ')]  # tqdm shares stderr.
    data2 = (root / wild[2]['file_path']).read_bytes()
    assert errors == [
        f'Error: {root}/{wild[1]["file_path"]}: size {wild[1]["file_size"] + 4} bytes, expected {wild[1]["file_size"]}',
        f'Error: {root}/{wild[2]["file_path"]}: MD5 {md5(data2)}, expected {wild[2]["file_md5"]}',
        f'Error: {root}/{wild[3]["file_path"]}: missing',
        'Error: 3 of 4 file(s) failed; download_ffhq.py fetches them again']
    assert out.stdout == 'Checked 4 file(s) (in_the_wild, mode file): 1 valid, 1 missing, 1 wrong size, 1 wrong MD5\n'
    assert snapshot(root) == before  # Nothing deleted or changed.

def test_all_good(fake_download, call):
    root, entries = fake_download
    out = call(f'--dataset_json={root}/ffhq-dataset-v2.json', '--max_images=1')
    assert out.returncode == 0 and out.stdout == 'Checked 1 file(s) (in_the_wild, mode file): 1 valid\n'
    assert 'Error' not in out.stderr

def test_pixel_mode(fake_download, call):
    # Re-encoding changes the file bytes but not the pixels: pixel mode accepts it, file mode does not.
    root, entries = fake_download
    rel = entries['0']['in_the_wild']['file_path']
    (root / rel).write_bytes(png(0, compress_level=0)[0])
    args = [f'--dataset_json={root}/ffhq-dataset-v2.json', '--max_images=1']
    assert call(*args).returncode == 1
    out = call(*args, '--mode=pixel')
    assert out.returncode == 0 and out.stdout == 'Checked 1 file(s) (in_the_wild, mode pixel): 1 valid\n'

    PIL.Image.fromarray(png(0)[1][:, :8]).save(root / rel)
    out = call(*args, '--mode=pixel')
    assert out.returncode == 1 and f'Error: {root}/{rel}: 8x6 pixels, expected 10x6' in out.stderr
    (root / rel).write_bytes(b'not a png')
    out = call(*args, '--mode=pixel')
    assert out.returncode == 1 and f'Error: {root}/{rel}: cannot read image (cannot identify image file' in out.stderr
    assert out.stdout == 'Checked 1 file(s) (in_the_wild, mode pixel): 0 valid, 1 unreadable\n'

def test_bad_arguments(fake_download, call, tmp_path):
    root, entries = fake_download
    out = call(f'--dataset_json={tmp_path}/nope.json')
    assert out.returncode == 1 and out.stderr == f'Error: {tmp_path}/nope.json: no such file\n'
    out = call(f'--dataset_json={root}/ffhq-dataset-v2.json', '--max_images=0')
    assert out.returncode == 1 and out.stderr == 'Error: --max_images=0: must be at least 1\n'
    out = call(f'--dataset_json={root}/ffhq-dataset-v2.json', '--kind=image')
    assert out.returncode == 1 and out.stderr == (f'Error: {root}/ffhq-dataset-v2.json: entry 0 lacks image.file_path / '
                                                  'image.file_size / image.file_md5\n')
    (tmp_path / 'broken.json').write_text('{"0": ')
    out = call(f'--dataset_json={tmp_path}/broken.json')
    assert out.returncode == 1 and out.stderr.startswith(f'Error: {tmp_path}/broken.json: malformed JSON')
