"""ImageFolderDataset: file order, labels, max_size/xflip indexing, pickling, worker processes, bad input."""

import io
import json
import os
import pickle
import sys
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch

from training.dataset import DatasetError, ImageFolderDataset

#----------------------------------------------------------------------------

# Relative paths in an order where string sorting matters: '-' (0x2d) sorts before '/' (0x2f).
NAMES = ['b.png', 'a/z.png', 'a-c.png', 'a/b.jpg', 'c/d/e.png', 'A.png', '0.bmp', 'b2.png']

def pixels(i, size=8):
    rnd = np.random.RandomState(i)
    return rnd.randint(0, 256, size=(size, size, 3), dtype=np.uint8)

def label(i):
    return [float(i)] + [0.5 * i + k for k in range(24)]

def encode(img, name):
    fmt = PIL.Image.registered_extensions()[os.path.splitext(name)[1]]
    buf = io.BytesIO()
    PIL.Image.fromarray(img).save(buf, format=fmt, **({'quality': 100} if fmt == 'JPEG' else {}))
    return buf.getvalue()

def make_dataset(root, names=NAMES, labels=True, as_zip=False, meta=None, images=None):
    """Write images (pixels(i) for names[i]) and dataset.json; returns the dataset path."""
    files = {name: encode(pixels(i) if images is None else images[i], name) for i, name in enumerate(names)}
    if meta is None and labels:
        meta = json.dumps({'labels': [[name, label(i)] for i, name in enumerate(names)]})
    if meta is not None:
        files['dataset.json'] = meta.encode() if isinstance(meta, str) else meta
    files['notes.txt'] = b'not an image'
    if as_zip:
        path = os.path.join(root, 'data.zip')
        with zipfile.ZipFile(path, 'w', compression=zipfile.ZIP_STORED) as zf:
            for name, data in files.items():
                zf.writestr(name, data)
        return path
    path = os.path.join(root, 'data')
    for name, data in files.items():
        os.makedirs(os.path.dirname(os.path.join(path, name)), exist_ok=True)
        with open(os.path.join(path, name), 'wb') as f:
            f.write(data)
    return path

def decoded(name, i):
    """What the dataset should return for names[i]: CHW uint8 (the JPEG decoded by Pillow)."""
    return np.array(PIL.Image.open(io.BytesIO(encode(pixels(i), name)))).transpose(2, 0, 1)

#----------------------------------------------------------------------------

@pytest.mark.parametrize('as_zip', [False, True])
def test_order_images_labels(tmp_path, as_zip):
    path = make_dataset(str(tmp_path), as_zip=as_zip)
    ds = ImageFolderDataset(path=path, use_labels=True)
    order = sorted(range(len(NAMES)), key=lambda i: NAMES[i])
    assert [NAMES[i] for i in order] == ['0.bmp', 'A.png', 'a-c.png', 'a/b.jpg', 'a/z.png', 'b.png', 'b2.png', 'c/d/e.png']
    assert ds.name == 'data' and len(ds) == len(NAMES)
    assert ds._raw_shape == [len(NAMES), 3, 8, 8] and ds.image_shape == [3, 8, 8]
    assert ds.resolution == 8 and ds.num_channels == 3
    assert ds.label_shape == [25] and ds.label_dim == 25 and ds.has_labels and not ds.has_onehot_labels
    for idx, i in enumerate(order):
        image, lab = ds[idx]
        assert image.dtype == np.uint8 and lab.dtype == np.float32
        np.testing.assert_array_equal(image, decoded(NAMES[i], i))
        np.testing.assert_array_equal(lab, np.float32(label(i)))
    all_labels = np.array([label(i) for i in order], dtype=np.float32)
    np.testing.assert_array_equal(ds.get_label_std(), all_labels.std(0))
    assert ds.get_label_std().dtype == np.float32

def test_max_size_and_xflip_indexing(tmp_path):
    path = make_dataset(str(tmp_path), names=[f'{i}.png' for i in range(8)])
    # data.md 2: 8 files, max_size 5, seed 0 -> raw indices [1, 2, 3, 6, 7].
    ds = ImageFolderDataset(path=path, use_labels=True, max_size=5, random_seed=0, xflip=True)
    assert len(ds) == 10
    details = [ds.get_details(i) for i in range(10)]
    assert [d.raw_idx for d in details] == [1, 2, 3, 6, 7, 1, 2, 3, 6, 7]
    assert [d.xflip for d in details] == [False] * 5 + [True] * 5
    for i in (0, 6):
        image, lab = ds[i]
        raw = details[i].raw_idx
        expect = pixels(raw).transpose(2, 0, 1)
        np.testing.assert_array_equal(image, expect[:, :, ::-1] if details[i].xflip else expect)
        np.testing.assert_array_equal(lab, np.float32(label(raw)))  # The mirrored copy keeps its camera.
        np.testing.assert_array_equal(details[i].raw_label, np.float32(label(raw)))
    # The label statistics cover every file, not only the subset.
    np.testing.assert_array_equal(ds.get_label_std(), np.array([label(i) for i in range(8)], dtype=np.float32).std(0))
    assert len(ImageFolderDataset(path=path, max_size=100)) == 8

@pytest.mark.parametrize('meta,use_labels', [(None, True), ('{"labels": null}', True), (None, False)])
def test_no_labels(tmp_path, meta, use_labels):
    path = make_dataset(str(tmp_path), labels=False, meta=meta)
    ds = ImageFolderDataset(path=path, use_labels=use_labels)
    assert ds.label_shape == [0] and not ds.has_labels
    assert ds[0][1].shape == (0,) and ds.get_label_std().shape == (0,)

def test_labels_ignored_without_use_labels(tmp_path):
    ds = ImageFolderDataset(path=make_dataset(str(tmp_path)), use_labels=False)
    assert ds.label_shape == [0]

def test_class_labels_one_hot_and_duplicates(tmp_path):
    names = ['0.png', '1.png', '2.png']
    entries = [['0.png', 2], ['1.png', 0], ['2.png', 1], ['0.png', 3]]
    path = make_dataset(str(tmp_path), names=names, meta=json.dumps({'labels': entries, 'other': 1}))
    ds = ImageFolderDataset(path=path, use_labels=True)
    assert ds.has_onehot_labels and ds.label_shape == [4]  # Last duplicate wins: labels 3, 0, 1.
    np.testing.assert_array_equal(ds.get_label(0), [0, 0, 0, 1])
    np.testing.assert_array_equal(ds.get_label(1), [1, 0, 0, 0])

def test_trailing_slash_name_and_resolution(tmp_path):
    path = make_dataset(str(tmp_path), names=['a.png', 'b.png'])
    assert ImageFolderDataset(path=path + '/').name == ''
    assert ImageFolderDataset(path=path, resolution=8).resolution == 8
    with pytest.raises(DatasetError, match=r'images are 8x8 \(a.png\), requested resolution is 16x16'):
        ImageFolderDataset(path=path, resolution=16)

def test_labels_read_at_open_and_pickle(tmp_path):
    path = make_dataset(str(tmp_path), as_zip=True)
    ds = ImageFolderDataset(path=path, use_labels=True)
    assert ds._raw_labels is not None and ds._zipfile is not None  # Read when opened, to check them.
    state = ds.__getstate__()
    assert state['_zipfile'] is None and state['_raw_labels'] is None  # Workers reload what they need.
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._raw_labels is None
    np.testing.assert_array_equal(clone[3][0], ds[3][0])
    np.testing.assert_array_equal(clone[3][1], ds[3][1])
    ds.close()
    assert ds._zipfile is None
    np.testing.assert_array_equal(ds[3][0], clone[3][0])  # Reopened on demand.

def test_zip_reopened_in_forked_workers(tmp_path):
    names = [f'{i:02d}.png' for i in range(12)]
    ds = ImageFolderDataset(path=make_dataset(str(tmp_path), names=names, as_zip=True), use_labels=True)
    ds[0]  # The parent holds an open handle before the workers fork.
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, multiprocessing_context='fork')
    images = torch.cat([batch[0] for batch in loader]).numpy()
    np.testing.assert_array_equal(images, np.stack([pixels(i).transpose(2, 0, 1) for i in range(12)]))

def test_grayscale_and_rgba_channels(tmp_path):
    gray = make_dataset(str(tmp_path / 'g'), names=['a.png'], images=[pixels(0)[:, :, 0]], labels=False)
    assert ImageFolderDataset(path=gray)[0][0].shape == (1, 8, 8)
    rgba = make_dataset(str(tmp_path / 'r'), names=['a.png'], images=[np.dstack([pixels(0), pixels(1)[:, :, :1]])], labels=False)
    assert ImageFolderDataset(path=rgba).num_channels == 4

#----------------------------------------------------------------------------
# Bad input: DatasetError naming the file and the problem.

def test_bad_paths(tmp_path):
    with pytest.raises(DatasetError, match='nope.zip: no such file or directory'):
        ImageFolderDataset(path=str(tmp_path / 'nope.zip'))
    with pytest.raises(DatasetError, match='nope: no such file or directory'):
        ImageFolderDataset(path=str(tmp_path / 'nope'))
    (tmp_path / 'file.txt').write_text('x')
    with pytest.raises(DatasetError, match='file.txt: path must point to a directory or a zip file'):
        ImageFolderDataset(path=str(tmp_path / 'file.txt'))
    (tmp_path / 'broken.zip').write_bytes(b'PK not really')
    with pytest.raises(DatasetError, match='broken.zip: cannot read zip file'):
        ImageFolderDataset(path=str(tmp_path / 'broken.zip'))
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'readme.txt').write_text('x')
    with pytest.raises(DatasetError, match='empty: no image files found'):
        ImageFolderDataset(path=str(tmp_path / 'empty'))
    assert issubclass(DatasetError, IOError)  # Callers catching IOError keep working.

@pytest.mark.parametrize('meta,message', [
    ('{"labels": [["b.png", [1, 2', 'dataset.json: malformed JSON'),
    ('[1, 2]', 'dataset.json: expected a JSON object with a "labels" member'),
    ('{"labels": {"b.png": 1}}', 'dataset.json: "labels" must be null or a list'),
    ('{"labels": [["b.png"]]}', r'dataset.json: labels\[0\] is not a \[file name, label\] pair'),
    ('{"labels": [["b.png", [1, 2, 3]]]}', 'dataset.json: no label for 1 image\\(s\\): c.png'),
    ('{"labels": [["b.png", [1, 2, 3]], ["c.png", [1, 2]]]}', 'dataset.json: label of c.png has 2 numbers, the first label has 3'),
    ('{"labels": [["b.png", [1, 2, 3]], ["c.png", [1, NaN, 2]]]}', 'dataset.json: label of c.png contains NaN or infinity'),
    ('{"labels": [["b.png", [1, 2, 3]], ["c.png", "x"]]}', 'dataset.json: label of c.png is neither a list of numbers'),
    ('{"labels": [["b.png", 1], ["c.png", -1]]}', 'dataset.json: negative class label for c.png'),
])
@pytest.mark.parametrize('as_zip', [False, True])
def test_bad_labels(tmp_path, meta, message, as_zip):
    path = make_dataset(str(tmp_path), names=['b.png', 'c.png'], meta=meta, as_zip=as_zip)
    with pytest.raises(DatasetError, match=message):
        ImageFolderDataset(path=path, use_labels=True)
    ImageFolderDataset(path=path, use_labels=False)  # dataset.json is not read without use_labels.

@pytest.mark.parametrize('as_zip', [False, True])
def test_labels_of_absent_images(tmp_path, as_zip):
    # A partial copy of a dataset: dataset.json names 6 images, 2 are present (and one non-image file).
    names = [f'{i}.png' for i in range(6)]
    meta = json.dumps({'labels': [[name, label(i)] for i, name in enumerate(names)] + [['notes.txt', label(9)]]})
    path = make_dataset(str(tmp_path), names=names[:2], meta=meta, as_zip=as_zip)
    with pytest.raises(DatasetError) as info:
        ImageFolderDataset(path=path, use_labels=True)
    assert str(info.value) == f'{path}: dataset.json lists 5 image(s) that are not in the dataset: 2.png, 3.png, 4.png, ... (2 more)'
    assert len(ImageFolderDataset(path=path, use_labels=False)) == 2

def test_bad_images(tmp_path):
    path = make_dataset(str(tmp_path), names=['a.png', 'b.png', 'c.png', 'd.png'], labels=False,
                        images=[pixels(0), pixels(1, size=16), pixels(2)[:, :, 0], pixels(3)])
    with open(os.path.join(path, 'd.png'), 'r+b') as f:
        f.truncate(60)
    ds = ImageFolderDataset(path=path)
    assert ds[0][0].shape == (3, 8, 8)
    with pytest.raises(DatasetError, match=r'b.png: image shape \[3, 16, 16\] \(CHW\) differs from the dataset\'s \[3, 8, 8\] \(a.png\)'):
        ds[1]
    with pytest.raises(DatasetError, match=r'c.png: image shape \[1, 8, 8\]'):
        ds[2]
    with pytest.raises(DatasetError, match='d.png: cannot decode image'):
        ds[3]

def test_non_square_resolution(tmp_path):
    path = make_dataset(str(tmp_path), names=['a.png'], images=[pixels(0)[:4]], labels=False)
    ds = ImageFolderDataset(path=path)
    assert ds.image_shape == [3, 4, 8]
    with pytest.raises(DatasetError, match='images are 8x4, not square'):
        ds.resolution

#----------------------------------------------------------------------------
# validate(): image headers only.

@pytest.mark.parametrize('as_zip', [False, True])
def test_validate_accepts_a_uniform_dataset(tmp_path, as_zip):
    dataset = ImageFolderDataset(path=make_dataset(str(tmp_path), as_zip=as_zip))
    assert dataset.validate() is None  # No DatasetError ...
    assert all(list(dataset[i][0].shape) == dataset.image_shape for i in range(len(dataset)))  # ... rightly.

@pytest.mark.parametrize('as_zip', [False, True])
def test_validate_names_the_odd_image(tmp_path, as_zip):
    names = [f'img{i:05d}.png' for i in range(6)]
    images = [pixels(i, size=16) for i in range(6)]
    images[4] = pixels(4, size=16)[:12]  # 16 wide, 12 high.
    path = make_dataset(str(tmp_path), names=names, images=images, labels=False, as_zip=as_zip)
    ds = ImageFolderDataset(path=path)
    with pytest.raises(DatasetError) as info:
        ds.validate()
    assert str(info.value) == f'{path}: img00004.png is 16x12 RGB, the other images are 16x16 RGB'

def test_validate_channels_and_several_odd_images(tmp_path):
    names = [f'{i}.png' for i in range(6)]
    images = [pixels(i) for i in range(6)]
    images[0] = pixels(0)[:, :, 0]                                  # Grayscale, and first: the others set the norm.
    images[3] = np.dstack([pixels(3), pixels(4)[:, :, :1]])         # RGBA.
    path = make_dataset(str(tmp_path), names=names, images=images, labels=False)
    with pytest.raises(DatasetError) as info:
        ImageFolderDataset(path=path).validate()
    assert str(info.value) == f'{path}: 0.png is 8x8 L, the other images are 8x8 RGB (2 images differ: 0.png, 3.png)'

def test_validate_unreadable_header(tmp_path):
    path = make_dataset(str(tmp_path), names=['a.png', 'b.png'], labels=False)
    with open(os.path.join(path, 'b.png'), 'wb') as f:
        f.write(b'not a png')
    ds = ImageFolderDataset(path=path)
    with pytest.raises(DatasetError, match=r'data: b.png: cannot read the image header \(cannot identify image file'):
        ds.validate()

@pytest.mark.slow
def test_validate_speed(tmp_path):
    # Headers only: 3000 PNGs take a fraction of a second (decoding them would take seconds).
    import time
    count = 3000
    png = encode(pixels(0, size=64), 'a.png')
    path = str(tmp_path / 'many.zip')
    with zipfile.ZipFile(path, 'w') as zf:
        for i in range(count):
            zf.writestr(f'{i // 1000:05d}/img{i:08d}.png', png)
    ds = ImageFolderDataset(path=path)
    start = time.perf_counter()
    ds.validate()
    elapsed = time.perf_counter() - start
    print(f'validate(): {count} images in {elapsed:.3f} s')
    assert elapsed < 10

#----------------------------------------------------------------------------

#----------------------------------------------------------------------------
# Mirrored cameras (train.py --mirror=1, on by default for new runs).

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'dataset_preprocessing', 'procedural'))
import make_procedural_dataset as procedural  # noqa: E402


def _reflected_scene(obj, monkeypatch):
    """The procedural object and light reflected in the plane x = 0: what a mirrored photo shows."""
    monkeypatch.setattr(procedural, 'LIGHT_DIR', procedural.LIGHT_DIR * np.array([-1, 1, 1]))
    return dict(obj, ball_center=obj['ball_center'] * np.array([-1, 1, 1]))

def make_rendered_dataset(root, count=4, res=32, seed=3):
    """Renders of one asymmetric procedural object from known cameras: (path, object, labels)."""
    rnd = np.random.RandomState(seed)
    obj = procedural.sample_object(rnd)
    obj['ball_center'][0] = 0.1  # Off-centre, so a mirror image is not the same picture.
    intrinsics = [procedural.FOCAL, 0, 0.5, 0, procedural.FOCAL, 0.5, 0, 0, 1]
    labels = [procedural.sample_camera(rnd).reshape(16).tolist() + intrinsics for _ in range(count)]
    images = [procedural.render(obj, np.array(lab[:16]).reshape(4, 4), res) for lab in labels]
    names = [f'img{i}.png' for i in range(count)]
    meta = json.dumps({'labels': [[name, lab] for name, lab in zip(names, labels)]})
    return make_dataset(root, names=names, meta=meta, images=images), obj, labels

def test_mirrored_item_equals_a_render_from_its_label(tmp_path, monkeypatch):
    path, obj, labels = make_rendered_dataset(str(tmp_path))
    ds = ImageFolderDataset(path=path, use_labels=True, xflip=True, mirror_cameras=True)
    old = ImageFolderDataset(path=path, use_labels=True, xflip=True)  # The original loader's labels.
    res = ds.resolution
    originals = [ds[i] for i in range(4)]
    mirror_world = _reflected_scene(obj, monkeypatch)
    for i in range(4, 8):
        image, lab = ds[i]
        assert lab.dtype == np.float32 and lab.shape == (25,)
        render = procedural.render(mirror_world, lab[:16].astype(np.float64).reshape(4, 4), res).transpose(2, 0, 1)
        np.testing.assert_array_equal(render, image)
        # The unmirrored camera (the original's label) shows another picture: 14-30% of the pixels differ.
        stale = procedural.render(mirror_world, old[i][1][:16].astype(np.float64).reshape(4, 4), res).transpose(2, 0, 1)
        assert (np.abs(stale.astype(int) - image).max(axis=0) > 1).mean() > 0.1
        np.testing.assert_array_equal(image, originals[i - 4][0][:, :, ::-1])
        np.testing.assert_array_equal(old[i][1], np.float32(labels[i - 4]))
        details = ds.get_details(i)
        assert details.xflip and details.raw_idx == i - 4
        np.testing.assert_array_equal(details.raw_label, np.float32(labels[i - 4]))  # As in dataset.json.
        np.testing.assert_array_equal(details.label, lab)
        np.testing.assert_array_equal(ds.get_label(i), lab)
    for i in range(4):  # Originals keep their camera.
        np.testing.assert_array_equal(originals[i][1], np.float32(labels[i]))
        np.testing.assert_array_equal(ds.get_details(i).label, np.float32(labels[i]))
    # The label statistics stay those of dataset.json.
    np.testing.assert_array_equal(ds.get_label_std(), old.get_label_std())
    pickled = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(pickled.get_label(5), ds.get_label(5))

def test_mirror_cameras_needs_camera_labels(tmp_path):
    path = make_dataset(str(tmp_path), names=['a.png', 'b.png'], meta=json.dumps({'labels': [['a.png', [1.0, 2.0]], ['b.png', [3.0, 4.0]]]}))
    with pytest.raises(DatasetError, match='mirror_cameras needs 25-number camera labels, the labels have shape'):
        ImageFolderDataset(path=path, use_labels=True, xflip=True, mirror_cameras=True)
    assert len(ImageFolderDataset(path=path, use_labels=True, xflip=False, mirror_cameras=True)) == 2  # Nothing mirrored.
    unlabelled = ImageFolderDataset(path=path, use_labels=False, xflip=True, mirror_cameras=True)
    assert unlabelled.get_label(3).shape == (0,)
