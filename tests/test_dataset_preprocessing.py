"""dataset_preprocessing/: mirrored cameras, ShapeNet/AFHQ/FFHQ label builders, rebalancing, up-front checks."""

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import PIL.Image
import pytest
import scipy.io

from training.camera_validation import check_camera_labels
from training.cameras import lookat_cam2world, make_label

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRE = os.path.join(REPO, 'dataset_preprocessing')

def load(rel):
    """Import a preprocessing script (they are not a package; some names start with a digit)."""
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(rel))[0], os.path.join(PRE, rel))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

def run(rel, *args, env=None):
    """Run a script in a fresh process (for orchestration scripts and ones that change cwd or sys.path)."""
    return subprocess.run([sys.executable, os.path.join(PRE, rel), *args], capture_output=True, text=True,
                          env=None if env is None else dict(os.environ, **env))

@pytest.fixture
def call(call_main):
    """Run a script's main() in this process; same result fields as run()."""
    return lambda rel, *args: call_main(load(rel).main, *args)

def pixels(i, size=8):
    return np.random.RandomState(i).randint(0, 256, size=(size, size, 3), dtype=np.uint8)

def save(path, img):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    PIL.Image.fromarray(img).save(path)

def read_labels(path):
    with open(path) as f:
        return json.load(f)['labels']

mirror = load('mirror_dataset.py')

#----------------------------------------------------------------------------

def test_mirror_label_geometry():
    pose = lookat_cam2world([1.0, 0.3, 2.4], (0.1, 0, 0.2))
    label = make_label(pose, cx=0.52)
    mirrored = mirror.mirror_label(label)
    np.testing.assert_allclose(mirror.mirror_label(mirrored), label, atol=1e-15)
    expect = lookat_cam2world([-1.0, 0.3, 2.4], (-0.1, 0, 0.2))  # The reflected scene, seen by the reflected camera.
    np.testing.assert_allclose(np.array(mirrored[:16]).reshape(4, 4), expect, atol=1e-12)
    assert mirrored[16 + 2] == pytest.approx(0.48) and mirrored[16:18] == label[16:18]
    assert check_camera_labels([['a.png', mirrored]]).ok
    assert mirror.mirror_name('00000/img00000001.png') == '00000/img00000001_mirror.png'
    assert mirror.mirror_name('v1.2/a.b.png') == 'v1.2/a.b_mirror.png'

@pytest.mark.parametrize('use_dest', [False, True])
def test_mirror_dataset_with_labels(tmp_path, use_dest, call):
    src = str(tmp_path / 'src')
    names = ['a.png', 'sub/b.png', 'c.png']
    for i, name in enumerate(names):
        save(os.path.join(src, name), pixels(i))
    labels = [[name, make_label(lookat_cam2world([0.3 * i, 0.1, 2.6]))] for i, name in enumerate(names)]
    labels.append(['old_mirror.png', labels[0][1]])  # Existing mirrors are not mirrored again.
    with open(os.path.join(src, 'dataset.json'), 'w') as f:
        json.dump({'labels': labels}, f)
    dest = str(tmp_path / 'dest') if use_dest else src
    out = call('mirror_dataset.py', f'--source={src}', *([f'--dest={dest}'] if use_dest else []), '--max_images=2')
    assert out.returncode == 0, out.stderr
    new = read_labels(os.path.join(dest, 'dataset.json'))
    assert [n for n, _ in new] == names + ['old_mirror.png', 'a_mirror.png', 'sub/b_mirror.png']
    assert new[5][1] == mirror.mirror_label(labels[1][1])
    np.testing.assert_array_equal(np.array(PIL.Image.open(os.path.join(dest, 'sub/b_mirror.png'))), pixels(1)[:, ::-1])
    np.testing.assert_array_equal(np.array(PIL.Image.open(os.path.join(dest, 'sub/b.png'))), pixels(1))
    assert not os.path.exists(os.path.join(dest, 'c_mirror.png'))  # Beyond --max_images.

def test_mirror_dataset_without_labels(tmp_path, call):
    for i, name in enumerate(['a.png', 'B.JPG', 'x_mirror.png']):
        save(str(tmp_path / name), pixels(i))
    out = call('mirror_dataset.py', f'--source={tmp_path}')
    assert out.returncode == 0, out.stderr
    assert sorted(os.listdir(tmp_path)) == ['B.JPG', 'B_mirror.JPG', 'a.png', 'a_mirror.png', 'x_mirror.png']
    np.testing.assert_array_equal(np.array(PIL.Image.open(tmp_path / 'a_mirror.png')), pixels(0)[:, ::-1])

def test_mirror_dataset_bad_input(tmp_path, call):
    (tmp_path / 'dataset.json').write_text('{"labels": [["a.png", [1, 2]]]}')
    out = call('mirror_dataset.py', f'--source={tmp_path}')
    assert out.returncode == 1 and 'label of a.png: expected a 25-number camera label' in out.stderr
    (tmp_path / 'dataset.json').write_text('{"labels": [["a.png", ' + json.dumps(make_label(np.eye(4))) + ']]}')
    out = call('mirror_dataset.py', f'--source={tmp_path}')
    assert out.returncode == 1 and 'a.png: no such file' in out.stderr

#----------------------------------------------------------------------------

def make_srn(root, scenes=('car1', 'car2'), frames=2):
    """SRN layout; returns {name: (pose, (f, cx, cy))}."""
    expect = {}
    for s, scene in enumerate(scenes):
        f, cx, cy = 875.0 + s, 256.0, 250.0
        os.makedirs(os.path.join(root, scene, 'pose'))
        with open(os.path.join(root, scene, 'intrinsics.txt'), 'w') as fh:
            fh.write(f'{f} {cx} {cy} 0.\n0. 0. 0.\n1.\n512 512\n')
        for k in range(frames):
            pose = lookat_cam2world([1.3 * np.cos(k + s), 0.5, 1.3 * np.sin(k + s)])
            save(os.path.join(root, scene, 'rgb', f'{k:06d}.png'), pixels(10 * s + k, size=16))
            with open(os.path.join(root, scene, 'pose', f'{k:06d}.txt'), 'w') as fh:
                fh.write(' '.join(repr(float(x)) for x in pose.flatten()))
            expect[f'{scene}/rgb/{k:06d}.png'] = (pose, (f, cx, cy))
    return expect

def test_shapenet_cameras(tmp_path, call):
    root = str(tmp_path / 'rgb_png' / 'cars_train')  # A root whose name contains 'rgb' and 'png'.
    expect = make_srn(root)
    out = call('shapenet_cars/preprocess_shapenet_cameras.py', f'--source={root}')
    assert out.returncode == 0, out.stderr
    labels = read_labels(os.path.join(root, 'dataset.json'))
    assert [n for n, _ in labels] == list(expect)
    for name, label in labels:
        pose, (f, cx, cy) = expect[name]
        np.testing.assert_allclose(label[:16], pose.flatten(), rtol=0, atol=0)
        assert label[16:] == [f / 512, 0, cx / 512, 0, f / 512, cy / 512, 0, 0, 1]
    cameras = json.load(open(os.path.join(root, 'cameras.json')))
    assert cameras['car2/rgb/000001.png']['scene-name'] == 'car2'
    assert check_camera_labels(labels).ok

    out = call('shapenet_cars/preprocess_shapenet_cameras.py', f'--source={root}', '--max_images=3')
    assert len(read_labels(os.path.join(root, 'dataset.json'))) == 3
    os.remove(os.path.join(root, 'car2', 'pose', '000001.txt'))
    out = call('shapenet_cars/preprocess_shapenet_cameras.py', f'--source={root}')
    assert out.returncode == 1 and 'car2/pose/000001.txt: no such file' in out.stderr

def test_shapenet_run_me(tmp_path):
    src = str(tmp_path / 'cars_train')
    expect = make_srn(src, scenes=('car1',), frames=2)
    with zipfile.ZipFile(tmp_path / 'cars_train.zip', 'w') as zf:
        for folder, _dirs, files in os.walk(src):
            for fname in files:
                zf.write(os.path.join(folder, fname), os.path.relpath(os.path.join(folder, fname), tmp_path))
    out = run('shapenet_cars/run_me.py', f'--source={tmp_path / "cars_train.zip"}', f'--dest={tmp_path / "cars_128.zip"}')
    assert out.returncode == 0, out.stderr
    with zipfile.ZipFile(tmp_path / 'cars_128.zip') as zf:
        labels = json.loads(zf.read('dataset.json'))['labels']
        assert PIL.Image.open(zf.open('00000/img00000001.png')).size == (128, 128)
    assert [label[:16] for _, label in labels] == [list(p.flatten()) for p, _ in expect.values()]

#----------------------------------------------------------------------------

def test_afhq_cameras(tmp_path, call):
    src = str(tmp_path / 'src')
    save(os.path.join(src, 'cat1.png'), pixels(0))
    save(os.path.join(src, 'cat2.png'), pixels(1))
    rot2 = lookat_cam2world([2.0, 0.5, 1.7])[:3, :3]
    with open(os.path.join(src, 'cameras.json'), 'w') as f:
        json.dump({'cat1': np.diag([1, -1, -1]).tolist(), 'cat2': rot2.tolist()}, f)
    dest = str(tmp_path / 'dest')
    out = call('afhq/preprocess_afhq_cameras.py', f'--source={src}', f'--dest={dest}')
    assert out.returncode == 0, out.stderr
    labels = dict(read_labels(os.path.join(dest, 'dataset.json')))
    assert list(labels) == ['cat1.png', 'cat1_mirror.png', 'cat2.png', 'cat2_mirror.png']
    assert labels['cat1.png'] == [1, 0, 0, 0, 0, -1, 0, 0, 0, 0, -1, 2.7, 0, 0, 0, 1, 4.2647, 0, 0.5, 0, 4.2647, 0.5, 0, 0, 1]
    report = check_camera_labels(list(labels.items()))
    assert report.ok and report.stats['axis_miss']['max'] < 1e-12  # Every camera looks through the origin.
    assert sorted(os.listdir(dest)) == ['cat1.png', 'cat1_mirror.png', 'cat2.png', 'cat2_mirror.png', 'dataset.json']

def test_afhq_runme(tmp_path):
    with zipfile.ZipFile(tmp_path / 'afhq.zip', 'w') as zf:
        for i, name in enumerate(['train/cat/c1.png', 'train/cat/c2.png', 'train/dog/d1.png']):
            save(str(tmp_path / 'raw' / name), pixels(i, size=16))
            zf.write(tmp_path / 'raw' / name, name)
    labels = [[f'c{i}.png', make_label(lookat_cam2world([0.4 * i, 0, 2.65]))] for i in (1, 2)]
    (tmp_path / 'labels.json').write_text(json.dumps({'labels': labels}))
    out = run('afhq/runme.py', str(tmp_path / 'afhq.zip'), str(tmp_path / 'out.zip'), f'--labels={tmp_path / "labels.json"}')
    assert out.returncode == 0, out.stderr
    with zipfile.ZipFile(tmp_path / 'out.zip') as zf:
        names = [n for n, _ in json.loads(zf.read('dataset.json'))['labels']]
        assert PIL.Image.open(zf.open(names[0])).size == (512, 512)
    assert len(names) == 4  # c1, c1_mirror, c2, c2_mirror.
    assert run('afhq/runme.py', str(tmp_path / 'missing.zip')).returncode == 1

#----------------------------------------------------------------------------

face_cameras = load('ffhq/preprocess_face_cameras.py')
idr = load('ffhq/3dface2idr_mat.py')

def test_face_camera_modes():
    pose = np.eye(4)
    pose[:3, 3] = [0.3, 0.1, 2.9]
    np.testing.assert_allclose(face_cameras.fix_pose(pose, 'orig')[:3, 3], [0.277664, 0.092555, 2.684089], atol=1e-6)
    np.testing.assert_allclose(face_cameras.fix_pose(pose, 'cor')[:3, 3], [0.295266, 0.098422, 2.857001], atol=1e-6)

def test_3dface2idr_mat(tmp_path, call):
    pose, intrinsics = idr.camera_from_coeffs(np.zeros(3), np.zeros(3))
    np.testing.assert_allclose(pose, [[1, 0, 0, 0], [0, -1, 0, 0.006], [0, 0, -1, 2.861], [0, 0, 0, 1]], atol=1e-12)
    assert intrinsics.tolist() == [[2985.29, 0, 512], [0, 2985.29, 512], [0, 0, 1]]
    # A face turned by yaw y: the camera moves around the head the other way and keeps looking at it.
    pose, _ = idr.camera_from_coeffs([0, 0.3, 0], [0, 0, 0])
    center = (pose[:3, 3] - idr.OFFSET) / idr.SCALE
    np.testing.assert_allclose(center, [-10 * np.sin(0.3), 0, 10 * np.cos(0.3)], atol=1e-12)
    np.testing.assert_allclose(pose[:3, 2], -center / 10, atol=1e-12)

    scipy.io.savemat(str(tmp_path / 'face1.mat'), {'angle': np.array([[0.1, -0.2, 0.05]]), 'trans': np.array([[0.1, 0.2, 0.3]])})
    out = call('ffhq/3dface2idr_mat.py', f'--in_root={tmp_path}', f'--out_path={tmp_path / "crop" / "cameras.json"}')
    assert out.returncode == 0, out.stderr
    cameras = json.load(open(tmp_path / 'crop' / 'cameras.json'))
    expect_pose, _ = idr.camera_from_coeffs([0.1, -0.2, 0.05], [0.1, 0.2, 0.3])
    np.testing.assert_allclose(cameras['face1.png']['pose'], expect_pose, atol=1e-12)

def test_preprocess_face_cameras(tmp_path, call):
    src = str(tmp_path / 'crop')
    save(os.path.join(src, 'face1.png'), pixels(0))
    pose = lookat_cam2world([0.5, 0.2, 9.0])
    K = [[2985.29, 0, 512], [0, 2985.29, 512], [0, 0, 1]]
    with open(os.path.join(src, 'cameras.json'), 'w') as f:
        json.dump({'face1.png': {'intrinsics': K, 'pose': pose.tolist()}}, f)
    out = call('ffhq/preprocess_face_cameras.py', f'--source={src}', f'--dest={tmp_path / "out"}')
    assert out.returncode == 0, out.stderr
    labels = dict(read_labels(tmp_path / 'out' / 'dataset.json'))
    assert list(labels) == ['face1.png', 'face1_mirror.png']
    assert labels['face1.png'][16:] == [2985.29 / 700, 0, 0.5, 0, 2985.29 / 700, 0.5, 0, 0, 1]
    assert np.linalg.norm(np.array(labels['face1.png'][:16]).reshape(4, 4)[:3, 3]) == pytest.approx(2.7)
    assert labels['face1_mirror.png'] == mirror.mirror_label(labels['face1.png'])
    np.testing.assert_array_equal(np.array(PIL.Image.open(tmp_path / 'out' / 'face1_mirror.png')), pixels(0)[:, ::-1])

    K[0][1] = 1.0
    with open(os.path.join(src, 'cameras.json'), 'w') as f:
        json.dump({'face1.png': {'intrinsics': K, 'pose': pose.tolist()}}, f)
    out = call('ffhq/preprocess_face_cameras.py', f'--source={src}', f'--dest={tmp_path / "out2"}')
    assert out.returncode == 1 and 'face1.png: intrinsics must have zero skew' in out.stderr

STUB_PREPROCESS = '''
import numpy as np
def align_img(img, lm, lm3D, mask=None, target_size=224., rescale_factor=102.):
    np.save(__import__('os').environ['STUB_LOG'], np.concatenate([lm.flatten(), [target_size, rescale_factor]]))
    return None, img.resize((int(target_size), int(target_size))), lm, None
'''

def test_crop_images_with_stub_deep3d(tmp_path):
    deep3d = tmp_path / 'Deep3DFaceRecon_pytorch'
    (deep3d / 'util').mkdir(parents=True)
    (deep3d / 'BFM').mkdir()
    (deep3d / 'BFM' / 'similarity_Lm3D_all.mat').write_bytes(b'')
    (deep3d / 'util' / 'preprocess.py').write_text(STUB_PREPROCESS)
    indir = tmp_path / 'realign1500'
    save(str(indir / '00000.png'), pixels(0, size=30))
    lm = [10, 12, 20, 12, 15, 18, 11, 24, 19, 24]
    params = {'00000.png': {'lm': lm, 'lm3d_std': np.zeros((5, 3)).tolist(), 'rescale_factor': 250.0,
                            'center_crop_size': 700, 'output_size': 16}}
    (indir / 'cropping_params.json').write_text(json.dumps(params))
    env = {'DEEP3DFACERECON_DIR': str(deep3d), 'STUB_LOG': str(tmp_path / 'log.npy')}
    out = run('ffhq/crop_images.py', f'--indir={indir}', f'--outdir={tmp_path / "final_crops"}', env=env)
    assert out.returncode == 0, out.stderr
    log = np.load(tmp_path / 'log.npy')
    lm_up = np.array(lm, dtype=np.float32).reshape(5, 2)
    lm_up[:, 1] = 30 - 1 - lm_up[:, 1]  # y measured upward.
    np.testing.assert_array_equal(log[:10], lm_up.flatten())
    assert log[10:].tolist() == [1024.0, 250.0]
    aligned = PIL.Image.fromarray(pixels(0, size=30)).resize((1024, 1024))
    expect = np.array(aligned.crop((162, 162, 862, 862)).resize((16, 16), PIL.Image.LANCZOS))
    np.testing.assert_array_equal(np.array(PIL.Image.open(tmp_path / 'final_crops' / '00000.png')), expect)

def test_missing_external_tools_are_reported(tmp_path):
    env = {'DEEP3DFACERECON_DIR': str(tmp_path / 'nowhere')}
    (tmp_path / 'cropping_params.json').write_text('{}')
    out = run('ffhq/crop_images.py', f'--indir={tmp_path}', f'--outdir={tmp_path / "o"}', env=env)
    assert out.returncode == 1 and 'Deep3DFaceRecon_pytorch not found; run: git clone' in out.stderr
    save(str(tmp_path / 'photos' / 'me.jpg'), pixels(0))
    out = run('ffhq/preprocess_in_the_wild.py', f'--indir={tmp_path / "photos"}', env=env)
    assert out.returncode == 1 and ('pip install mtcnn' in out.stderr or 'Deep3DFaceRecon_pytorch not found' in out.stderr)
    out = run('ffhq/runme.py', env=env)
    assert out.returncode == 1 and 'Deep3DFaceRecon_pytorch not found' in out.stderr

def test_outputs_never_replace_the_inputs(tmp_path, call, monkeypatch):
    # Run from the photos' parent, the original wrote the crops to ./<name of --indir>: the photos themselves.
    photos = tmp_path / 'photos'
    save(str(photos / 'me.png'), pixels(0))
    before = (photos / 'me.png').read_bytes()
    monkeypatch.chdir(tmp_path)
    for args in [['--indir=photos'], ['--indir=photos', f'--outdir={photos}'],
                 ['--indir=photos', f'--outdir={photos / "crop"}']]:
        out = call('ffhq/preprocess_in_the_wild.py', *args)
        assert out.returncode == 1 and out.stderr.count('\n') == 1, out.stderr
        assert 'writing there would replace its images (give another --outdir)' in out.stderr
    assert out.stderr.startswith(f'Error: --outdir={photos / "crop"}: that is the input folder {photos / "crop"};')
    (photos / 'cameras.json').write_text('{}')
    out = call('ffhq/preprocess_face_cameras.py', f'--source={photos}', f'--dest={photos}/.')
    assert out.returncode == 1 and f'--dest={photos}/.: that is the input folder {photos};' in out.stderr
    out = call('ffhq/crop_images.py', f'--indir={photos}', f'--outdir={photos}')
    assert out.returncode == 1 and '--outdir' in out.stderr
    assert sorted(os.listdir(photos)) == ['cameras.json', 'me.png'] and (photos / 'me.png').read_bytes() == before


def test_pick_face():
    batch = load('ffhq/batch_mtcnn.py')
    faces = [{'box': [0, 0, 50, 50], 'confidence': 0.99}, {'box': [0, 0, 80, 90], 'confidence': 0.95},
             {'box': [0, 0, 200, 200], 'confidence': 0.5}]
    assert batch.pick_face(faces) is faces[1]
    assert batch.pick_face(faces[2:]) is None

#----------------------------------------------------------------------------

def test_rebalance(tmp_path, call):
    names = ['00000/img00000000.png', '00000/img00000001.png', '00000/img00000002.png']
    with zipfile.ZipFile(tmp_path / 'in.zip', 'w') as zf:
        for i, name in enumerate(names):
            zf.writestr(name, f'image{i}'.encode())
        zf.writestr('dataset.json', json.dumps({'labels': [[n, [i]] for i, n in enumerate(names)]}))
    (tmp_path / 'replicas.json').write_text(json.dumps({'0': 1, '1': 2, '2': 4}))
    out = call('rebalance_ffhq/rebalance_ffhq_dataset.py', str(tmp_path / 'in.zip'), str(tmp_path / 'out.zip'),
              f'--replicas={tmp_path / "replicas.json"}')
    assert out.returncode == 0, out.stderr
    with zipfile.ZipFile(tmp_path / 'out.zip') as zf:
        meta = zf.read('dataset.json')
        labels = json.loads(meta)['labels']
        assert zf.read('00000/img00000002_03.png') == b'image2'
        assert all(info.compress_type == zipfile.ZIP_STORED for info in zf.infolist())
    assert [n for n, _ in labels] == ['00000/img00000000_00.png', '00000/img00000001_00.png', '00000/img00000001_01.png'] + \
        [f'00000/img00000002_{r:02d}.png' for r in range(4)]
    assert [label for _, label in labels] == [[0], [1], [1], [2], [2], [2], [2]]
    assert hashlib.md5(meta).hexdigest() in out.stdout and 'Warning: md5' in out.stderr

    (tmp_path / 'bad.json').write_text(json.dumps({'7': 1}))
    out = call('rebalance_ffhq/rebalance_ffhq_dataset.py', str(tmp_path / 'in.zip'), str(tmp_path / 'o2.zip'), f'--replicas={tmp_path / "bad.json"}')
    assert out.returncode == 1 and "entry '7'" in out.stderr and not os.path.exists(tmp_path / 'o2.zip')
    out = call('rebalance_ffhq/rebalance_ffhq_dataset.py', str(tmp_path / 'in.zip'), str(tmp_path / 'o3.zip'), f'--replicas={tmp_path / "none.json"}')
    assert out.returncode == 1 and 'none.json: no such file' in out.stderr

#----------------------------------------------------------------------------
