"""dataset_preprocessing/ffhq: FFHQ download (MD5 checks, resume, atomic writes) and the 1500x1500 re-alignment."""

import hashlib
import io
import json
import os
import subprocess
import sys
import types

import numpy as np
import PIL.Image
import pytest
from helpers import FFHQ, load_ffhq_module

align = load_ffhq_module('align_ffhq')
download = load_ffhq_module('download_ffhq')

@pytest.fixture
def call(call_main):
    return lambda module, *args: call_main(module.main, *args)

#----------------------------------------------------------------------------
# A synthetic face: red left eye, green right eye and a blue mouth on a grey canvas, rotated by a known angle.

GREY = 90
COLOURS = dict(eye_left=(255, 0, 0), eye_right=(0, 255, 0), mouth=(0, 0, 255))

def synthetic_face(size, centre, eye_dist, mouth_drop, angle_deg, radius=8):
    """Returns (PIL image, 68x2 landmarks, dict of feature centres); y points down, angle turns clockwise."""
    w, h = size
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    local = dict(eye_left=(-eye_dist / 2, 0), eye_right=(eye_dist / 2, 0), mouth=(0, mouth_drop),
                 mouth_left=(-0.35 * eye_dist, mouth_drop), mouth_right=(0.35 * eye_dist, mouth_drop))
    pts = {k: np.array(centre) + rot @ np.array(v) for k, v in local.items()}
    img = np.full((h, w, 3), GREY, dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    for name, colour in COLOURS.items():
        img[(xx - pts[name][0]) ** 2 + (yy - pts[name][1]) ** 2 <= radius ** 2] = colour
    lm = np.zeros((68, 2))
    ring = 5 * np.stack([np.cos(np.arange(6) * np.pi / 3), np.sin(np.arange(6) * np.pi / 3)], axis=1)
    lm[36:42] = pts['eye_left'] + ring   # The eye centres are the means of their six landmarks.
    lm[42:48] = pts['eye_right'] + ring
    lm[48] = pts['mouth_left']
    lm[54] = pts['mouth_right']
    return PIL.Image.fromarray(img), lm, pts

def feature_centre(img, name, min_contrast=0):
    """Centre of a coloured feature in pixel-index coordinates, weighted by how much its colour channel stands
    out (beyond min_contrast) from the other two."""
    arr = np.asarray(img, dtype=np.float64)
    channel = int(np.argmax(COLOURS[name]))
    others = [c for c in range(3) if c != channel]
    weight = np.clip(arr[..., channel] - arr[..., others].max(axis=-1) - min_contrast, 0, None)
    ys, xs = np.mgrid[:arr.shape[0], :arr.shape[1]]
    return np.array([(weight * xs).sum(), (weight * ys).sum()]) / weight.sum()

def expected_layout(eye_dist, mouth_drop, size, q_scale=1.8):
    """Where the eyes land: the quad side is 2 q_scale max(2 eye distance, 1.8 eye-to-mouth distance), its centre
    is 10% of the way from the eyes to the mouth, and it fills the output (pixel centres at index + 0.5)."""
    side = 2 * q_scale * max(2 * eye_dist, 1.8 * mouth_drop)
    scale = size / side
    return size / 2 - 0.5, size / 2 - 0.5 - 0.1 * mouth_drop * scale, eye_dist * scale

def assert_upright(out, eye_dist, mouth_drop, q_scale=1.8, tol=0.6):
    centre_x, eye_y, eye_span = expected_layout(eye_dist, mouth_drop, out.size[0], q_scale)
    left, right, mouth = (feature_centre(out, n) for n in ('eye_left', 'eye_right', 'mouth'))
    assert abs(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0]))) < 0.25  # Eye line horizontal.
    assert (left[0] + right[0]) / 2 == pytest.approx(centre_x, abs=tol)  # Symmetric about the vertical centre line.
    assert right[0] - left[0] == pytest.approx(eye_span, abs=tol)
    assert (left[1] + right[1]) / 2 == pytest.approx(eye_y, abs=tol)
    assert mouth[0] == pytest.approx(centre_x, abs=tol) and mouth[1] > eye_y

#----------------------------------------------------------------------------

def test_align_rotated_face_is_upright():
    img, lm, _ = synthetic_face((800, 700), centre=(400, 330), eye_dist=60, mouth_drop=70, angle_deg=17)
    out = align.align_face(img, lm)
    assert out.size == (1500, 1500) and out.mode == 'RGB'
    assert_upright(out, eye_dist=60, mouth_drop=70)  # Side 2 * 1.8 * 126: the eye-to-mouth term decides.

def test_face_quad_geometry():
    _, lm, pts = synthetic_face((10, 10), centre=(300, 200), eye_dist=80, mouth_drop=50, angle_deg=-30)
    quad, side = align.face_quad(lm, q_scale=1.8)
    assert side == pytest.approx(2 * 1.8 * 2 * 80)  # Here the eye distance decides.
    edges = np.diff(np.concatenate([quad, quad[:1]]), axis=0)
    np.testing.assert_allclose(np.hypot(*edges.T), side, rtol=1e-12)  # A square...
    top = quad[3] - quad[0]
    assert np.degrees(np.arctan2(top[1], top[0])) == pytest.approx(-30)  # ... turned with the face...
    centre = (pts['eye_left'] + pts['eye_right']) / 2 + 0.1 * (pts['mouth'] - (pts['eye_left'] + pts['eye_right']) / 2)
    np.testing.assert_allclose(quad.mean(axis=0), centre, atol=1e-9)  # ... around a point just below the eyes.
    quad1, side1 = align.face_quad(lm, q_scale=1.0)
    assert side / side1 == pytest.approx(1.8)  # q_scale enlarges the quad about the same centre.
    np.testing.assert_allclose(quad - centre, 1.8 * (quad1 - centre), atol=1e-9)
    with pytest.raises(ValueError, match='expected 68'):
        align.face_quad(lm[:5])
    with pytest.raises(ValueError, match='degenerate face landmarks'):
        align.face_quad(np.zeros((68, 2)))

def test_align_pads_faces_at_the_border():
    img, lm, _ = synthetic_face((400, 300), centre=(90, 70), eye_dist=40, mouth_drop=45, angle_deg=-25)
    arr = np.array(img)
    yy, xx = np.mgrid[:300, :400]
    background = np.all(arr == GREY, axis=-1)
    # A textured background whose red channel never exceeds the others by more than 30.
    arr[background] = np.stack([50 + 0.2 * xx, 80 + 0.4 * yy, 140 + 40 * np.sin(xx / 9)], axis=-1)[background]
    out = align.align_face(PIL.Image.fromarray(arr), lm, output_size=256, transform_size=512)
    out_arr = np.asarray(out).astype(int)
    # Half the quad lies outside the photo: reflect padding fills it (unpadded, PIL would leave it black).
    assert out_arr.sum(axis=-1).min() > 100
    eye_mid = (feature_centre(out, 'eye_left', 150) + feature_centre(out, 'eye_right', 150)) / 2
    assert eye_mid[0] == pytest.approx(127.5, abs=0.6)
    # The padding fades into a blur: the reflected copies of the red eye lose their contrast, the real one keeps it.
    red = out_arr[..., 0] - out_arr[..., 1:].max(axis=-1)
    eye = feature_centre(out, 'eye_left', 150)
    near_eye = np.hypot(*(np.mgrid[:256, :256][::-1] - eye[:, np.newaxis, np.newaxis])) < 20
    assert red[near_eye].max() > 200 and red[~near_eye].max() < 60

def test_align_shrinks_large_faces(monkeypatch):
    img, lm, _ = synthetic_face((800, 700), centre=(400, 330), eye_dist=60, mouth_drop=70, angle_deg=10, radius=20)
    sizes = []
    resize = PIL.Image.Image.resize
    def logged_resize(self, size, *args, **kwargs):
        sizes.append(size)
        return resize(self, size, *args, **kwargs)
    monkeypatch.setattr(PIL.Image.Image, 'resize', logged_resize)
    out = align.align_face(img, lm, output_size=64, transform_size=128)
    assert sizes[0] == (267, 233)  # Side 453.6 px is over 6x the output: the photo is first shrunk 3x.
    assert_upright(out, eye_dist=60, mouth_drop=70, tol=0.25)

#----------------------------------------------------------------------------
# Download with a fake network.

def md5(data):
    return hashlib.md5(data).hexdigest()

def png_bytes(img):
    buf = io.BytesIO()
    img.save(buf, format='PNG')
    return buf.getvalue()

@pytest.fixture
def fake_ffhq(tmp_path, monkeypatch):
    """A two-image FFHQ in tmp_path: fake metadata JSON and a fake fetch that serves `server` and logs calls."""
    server, extra, entries = {}, {}, {}
    for i in range(2):
        img, lm, _ = synthetic_face((240, 220), centre=(120, 100), eye_dist=24, mouth_drop=28, angle_deg=12 - 20 * i)
        url = f'https://example.invalid/wild/{i}.png'
        server[url] = png_bytes(img)
        entries[str(i)] = {'in_the_wild': {'file_url': url, 'file_path': f'in-the-wild-images/00000/{i:05d}.png',
                                           'file_size': len(server[url]), 'file_md5': md5(server[url]),
                                           'face_landmarks': lm.tolist()},
                           'category': ['training', 'validation'][i], 'metadata': {'license': 'CC BY 2.0'}}
        for kind, folder, size in [('image', 'images1024x1024', 32), ('thumbnail', 'thumbnails128x128', 8)]:
            url = f'https://example.invalid/{kind}/{i}.png'
            extra[url] = png_bytes(img.resize((size, size)))
            entries[str(i)][kind] = {'file_url': url, 'file_path': f'{folder}/00000/{i:05d}.png',
                                     'file_size': len(extra[url]), 'file_md5': md5(extra[url])}
    meta = json.dumps(entries).encode()
    monkeypatch.setattr(download, 'METADATA', dict(download.METADATA, file_size=len(meta), file_md5=md5(meta)))
    monkeypatch.setattr(download, 'RETRY_DELAY', 0)
    calls = []

    def fake_gdown(file_id, path, what, manual_option):
        calls.append(('gdown', file_id, path))
        with open(path, 'wb') as f:
            f.write(meta)

    def fake_fetch(url, path, chunk_size):
        final, suffix = path.rsplit('.incomplete-', 1)  # Written under a temporary name next to the final one.
        assert suffix == str(os.getpid())
        calls.append(('fetch', url, os.path.exists(final)))
        with open(path, 'wb') as f:
            f.write(server[url] if url in server else extra[url])

    monkeypatch.setattr(download, 'gdown_download', fake_gdown)
    monkeypatch.setattr(download, 'fetch', fake_fetch)
    monkeypatch.chdir(tmp_path)
    return types.SimpleNamespace(server=server, extra=extra, entries=entries, calls=calls, meta=meta)

def wild_path(fake, i):
    return fake.entries[str(i)]['in_the_wild']['file_path']

def test_download_validates_and_resumes(fake_ffhq, call):
    out = call(download, '--wilds', '--num_threads=2')
    assert out.returncode == 0, out.stderr
    assert fake_ffhq.calls[0][0] == 'gdown' and fake_ffhq.calls[0][1] == '16N0RV4fHI6joBuKbQAoG34V_cQk7vxSA'
    assert sorted(c[1] for c in fake_ffhq.calls[1:]) == sorted(fake_ffhq.server)
    for i, url in enumerate(fake_ffhq.server):
        with open(wild_path(fake_ffhq, i), 'rb') as f:
            assert f.read() == fake_ffhq.server[url]
    assert sorted(os.listdir('in-the-wild-images/00000')) == ['00000.png', '00001.png']  # No temporary files left.
    assert open('ffhq-dataset-v2.json', 'rb').read() == fake_ffhq.meta

    # A second run finds every file valid and fetches nothing.
    fake_ffhq.calls.clear()
    out = call(download, '--wilds')
    assert out.returncode == 0 and fake_ffhq.calls == []
    assert '0 file(s) downloaded, 2 already valid, 0 failed' in out.stdout

    # A corrupted file is fetched again; it stays in place until a valid copy replaces it.
    with open(wild_path(fake_ffhq, 1), 'r+b') as f:
        f.seek(40)
        f.write(b'\0\0\0')
    out = call(download, '--wilds')
    assert out.returncode == 0, out.stderr
    assert fake_ffhq.calls == [('fetch', 'https://example.invalid/wild/1.png', True)]
    assert download.file_problem(wild_path(fake_ffhq, 1), fake_ffhq.entries['1']['in_the_wild']) is None

def test_download_reports_corrupt_downloads(fake_ffhq, call):
    fake_ffhq.server['https://example.invalid/wild/1.png'] = b'truncated'
    out = call(download, '--wilds', '--num_attempts=3', '--num_threads=1')
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if line.startswith('Error')]  # tqdm shares stderr.
    expect = f'Error: {wild_path(fake_ffhq, 1)}: downloaded file has size 9 bytes, expected'
    assert errors[0].startswith(expect) and errors[0].endswith('after 3 attempt(s); run again to retry')
    assert errors[1:] == ['Error: 1 of 2 file(s) are missing or corrupt; run the same command again to resume']
    assert len(fake_ffhq.calls) == 1 + 1 + 3
    assert sorted(os.listdir('in-the-wild-images/00000')) == ['00000.png']  # Nothing half-written.

    served = fake_ffhq.entries['0']['in_the_wild']
    spec = dict(served, file_path='other.png', file_md5=md5(b'something else'))  # Right size, wrong MD5.
    error = download.download_file(spec, num_attempts=1, chunk_size=1024)
    assert error.startswith(f'other.png: downloaded file has MD5 {served["file_md5"]}, expected {spec["file_md5"]}')
    assert not os.path.exists('other.png')

def test_download_flags(fake_ffhq, call, tmp_path):
    out = call(download)
    assert out.returncode == 1 and 'Error: nothing to do: pass --json, --stats, --images, --thumbs, --wilds and/or --align' in out.stderr
    out = call(download, '--json')
    assert out.returncode == 0 and [c[0] for c in fake_ffhq.calls] == ['gdown']
    (tmp_path / 'other.json').write_text('{}')
    out = call(download, '--wilds', f'--metadata={tmp_path / "other.json"}')
    assert out.returncode == 1 and 'other.json: not the FFHQ v2 metadata (size 2 bytes, expected' in out.stderr
    assert download.drive_file_id('https://drive.google.com/uc?id=abc_1-2') == 'abc_1-2'
    assert download.drive_file_id('https://drive.google.com/file/d/XYZ/view?usp=sharing') == 'XYZ'
    assert download.drive_file_id('https://example.com/d/XYZ/a.png') is None

def test_download_and_align(fake_ffhq, call):
    out = call(download, '--wilds', '--align', '--max-images=1', '--num_threads=1')
    assert out.returncode == 0, out.stderr
    assert os.listdir('in-the-wild-images/00000') == ['00000.png'] and os.listdir('realign1500') == ['00000.png']
    aligned = PIL.Image.open('realign1500/00000.png')
    assert aligned.size == (1500, 1500)
    assert_upright(aligned, eye_dist=24, mouth_drop=28, tol=1.0)

    # align_ffhq.py: existing outputs are kept, missing photos are reported one per line.
    mtime = os.path.getmtime('realign1500/00000.png')
    out = call(align, '--source=.', '--dest=realign1500', '--threads=1')
    assert out.returncode == 1 and 'Aligning 1 image(s) into realign1500 (1 already there)' in out.stdout
    assert f'Error: ./{wild_path(fake_ffhq, 1)}: no such file (download it with download_ffhq.py --wilds)' in out.stderr
    assert 'Error: 1 of 1 image(s) could not be aligned' in out.stderr
    assert os.path.getmtime('realign1500/00000.png') == mtime and os.listdir('realign1500') == ['00000.png']

#----------------------------------------------------------------------------
# The official script's other flags.

def test_download_stats(fake_ffhq, call):
    out = call(download, '-s')
    assert out.returncode == 0, out.stderr
    sizes = {kind: sum(e[kind]['file_size'] for e in fake_ffhq.entries.values()) for kind in ('image', 'thumbnail', 'in_the_wild')}
    assert out.stdout.splitlines() == [
        'ffhq-dataset-v2.json: 2 entries (1 training, 1 validation)',
        f'  image             2 file(s) {download.human_size(sizes["image"]):>12}',
        f'  thumbnail         2 file(s) {download.human_size(sizes["thumbnail"]):>12}',
        f'  in_the_wild       2 file(s) {download.human_size(sizes["in_the_wild"]):>12}',
        '  license: CC BY 2.0: 2']
    assert [c[0] for c in fake_ffhq.calls] == ['gdown']  # Only the metadata.
    assert download.human_size(999) == '999.00 B' and download.human_size(1_234_567_890_123) == '1.23 TB'

@pytest.mark.parametrize('flags,folder', [(['-i'], 'images1024x1024'), (['--images'], 'images1024x1024'),
                                          (['-t'], 'thumbnails128x128'), (['--thumbs'], 'thumbnails128x128')])
def test_download_images_and_thumbs(fake_ffhq, call, flags, folder):
    out = call(download, *flags, '--status_delay=0.5', '--timing_window=10', '--num_threads=1')
    assert out.returncode == 0, out.stderr
    assert sorted(os.listdir(f'{folder}/00000')) == ['00000.png', '00001.png']
    kind = 'image' if folder.startswith('images') else 'thumbnail'
    for i in range(2):
        spec = fake_ffhq.entries[str(i)][kind]
        assert download.file_problem(spec['file_path'], spec) is None
    assert not os.path.exists('in-the-wild-images')

def test_download_short_flags(fake_ffhq, call):
    out = call(download, '-j', '-w', '--num_threads=1')
    assert out.returncode == 0, out.stderr
    assert sorted(os.listdir('in-the-wild-images/00000')) == ['00000.png', '00001.png']

@pytest.mark.parametrize('args,message', [
    (['-r'], '--tfrecords: the FFHQ TFRecords are not listed in ffhq-dataset-v2.json, so this script cannot fetch or '
             "check them (EG3D does not use them); download them with NVlabs/ffhq-dataset's download_ffhq.py -r"),
    (['--tfrecords', '--wilds'], '--tfrecords: the FFHQ TFRecords are not listed'),
    (['-w', '--timing_window=0'], '--timing_window=0: must be at least 1'),
    (['-w', '--status_delay=-1'], '--status_delay=-1.0: must be a number of seconds >= 0'),
    (['-w', '--num_threads=0'], '--num_threads=0: must be at least 1'),
    (['-w', '--max_images=0'], '--max_images=0: must be at least 1'),
])
def test_download_bad_flags(fake_ffhq, call, tmp_path, args, message):
    out = call(download, *args)
    assert out.returncode == 1
    assert out.stderr.splitlines()[-1].startswith(f'Error: {message}') and len(out.stderr.splitlines()) == 1
    assert fake_ffhq.calls == [] and os.listdir(tmp_path) == []  # Nothing fetched, nothing written.

def test_align_multiprocess_is_align_ffhq(fake_ffhq, call):
    # The name EG3D's recipe runs: `align_multiprocess.py --source=. --dest=realign1500 --threads=16`.
    assert call(download, '--json').returncode == 0
    out = call(load_ffhq_module('align_multiprocess'), '--source=.', '--dest=realign1500', '--threads=16')
    assert out.returncode == 1 and 'Aligning 2 image(s) into realign1500 (0 already there)' in out.stdout
    assert f'Error: ./{wild_path(fake_ffhq, 0)}: no such file (download it with download_ffhq.py --wilds)' in out.stderr
    assert 'Error: 2 of 2 image(s) could not be aligned' in out.stderr
    assert os.listdir('realign1500') == []


def test_runme_checks_tools_before_downloading(tmp_path):
    env = dict(os.environ, DEEP3DFACERECON_DIR=str(tmp_path / 'nowhere'))
    out = subprocess.run([sys.executable, os.path.join(FFHQ, 'runme.py')], capture_output=True, text=True, env=env)
    assert out.returncode == 1 and 'Deep3DFaceRecon_pytorch not found' in out.stderr
    assert 'download_ffhq.py' not in out.stdout
