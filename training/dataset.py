"""Image datasets stored as a folder or an uncompressed zip, with optional labels in dataset.json.

An EG3D label is 25 floats: the 4x4 cam2world matrix (OpenCV axes) followed by the 3x3 intrinsics
normalised by the image size, both row-major. Item order, max_size subsetting and x-flip doubling
follow the official loader so that metric caches and training runs line up; with mirror_cameras, an x-flipped
copy also carries the mirrored camera (training.cameras.mirror_label).
"""

import collections
import io
import os
import zipfile

import numpy as np
import PIL.Image
import torch

import dnnlib
from training import cameras
from training.camera_validation import (  # noqa: F401 (re-exported)
    DatasetError,
    file_ext,
    is_image_name,
    is_number_list,
    listing,
    parse_dataset_json,
    read_image_header,
)

try:
    import pyspng
except ImportError:
    pyspng = None

MAX_LISTED = 3  # File names quoted in one error line.

#----------------------------------------------------------------------------

def select_items(num_images, max_size, xflip, random_seed):
    """Raw image index and mirror flag of every dataset item, as two equally long arrays.

    A max_size subset is a seeded shuffle of all raw indices cut to max_size and put back in ascending
    order; x-flip doubling appends a mirrored copy of the whole list.
    """
    chosen = np.arange(num_images, dtype=np.int64)
    if max_size is not None and num_images > max_size:
        np.random.RandomState(random_seed).shuffle(chosen)
        chosen = np.sort(chosen[:max_size])
    mirrored = np.zeros(len(chosen), dtype=np.uint8)
    if not xflip:
        return chosen, mirrored
    return np.concatenate([chosen, chosen]), np.concatenate([mirrored, mirrored + 1])

def labels_to_array(names, label_of, where):
    """Labels of `names` (looked up in the dict `label_of`) as one array: lists of numbers give
    float32 [N, D], plain integers give int64 class indices [N]."""
    unlabelled = [name for name in names if name not in label_of]
    if unlabelled:
        raise DatasetError(f'{where}: no label for {len(unlabelled)} image(s): {listing(unlabelled, MAX_LISTED)}')
    values = [label_of[name] for name in names]
    if all(type(value) is int for value in values):
        classes = np.array(values, dtype=np.int64)
        negative = np.flatnonzero(classes < 0)
        if negative.size:
            raise DatasetError(f'{where}: negative class label for {names[negative[0]]}')
        return classes
    width = len(values[0]) if is_number_list(values[0]) else None
    for name, value in zip(names, values):
        if not is_number_list(value):
            raise DatasetError(f'{where}: label of {name} is neither a list of numbers nor a class index')
        if len(value) != width:
            raise DatasetError(f'{where}: label of {name} has {len(value)} numbers, the first label has {width}')
    array = np.array(values, dtype=np.float64).astype(np.float32).reshape(len(values), width)
    bad_rows = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if bad_rows.size:
        raise DatasetError(f'{where}: label of {names[bad_rows[0]]} contains NaN or infinity')
    return array

def describe_header(header):
    width, height, mode = header
    return f'{width}x{height} {mode}'

#----------------------------------------------------------------------------

class Dataset(torch.utils.data.Dataset):
    """Items, labels, max_size subsetting and x-flip doubling on top of a subclass's raw image and label access."""

    def __init__(self, name, raw_shape, max_size=None, use_labels=False, xflip=False, random_seed=0,
                 mirror_cameras=False):
        """raw_shape: [num_images, channels, height, width]. max_size keeps a random subset of at most that many
        raw images (seeded by random_seed); use_labels=False gives zero-width labels; xflip appends a mirrored
        copy of every image, whose label is the mirrored camera with mirror_cameras (25-number labels only),
        else the unchanged label (the official loader's behaviour, and the default for datasets configured
        before the option existed)."""
        self._items, self._mirrored = select_items(raw_shape[0], max_size, xflip, random_seed)
        self._raw_shape = list(raw_shape)
        self._name = name
        self._use_labels = use_labels
        self._mirror_cameras = bool(mirror_cameras)
        self._forget_labels()

    # Subclass hooks: a uint8 CHW array for a raw index; float32 [N, D] or int64 [N] labels, or None.
    def _load_raw_image(self, raw_idx):
        raise NotImplementedError

    def _load_raw_labels(self):
        raise NotImplementedError

    def close(self):
        pass

    def _forget_labels(self):
        self._raw_labels = None
        self._label_info = None  # (label_shape, per-dimension std over all raw images)

    def _labels(self):
        if self._raw_labels is None:
            loaded = self._load_raw_labels() if self._use_labels else None
            if loaded is None:
                loaded = np.zeros([self._raw_shape[0], 0], dtype=np.float32)
            assert isinstance(loaded, np.ndarray) and len(loaded) == self._raw_shape[0]
            if loaded.dtype == np.int64:
                assert loaded.ndim == 1 and (loaded >= 0).all()
                shape = [int(loaded.max()) + 1]
            else:
                assert loaded.dtype == np.float32
                shape = list(loaded.shape[1:])
            if self._mirror_cameras and self._mirrored.any() and shape not in ([0], [25]):
                raise DatasetError(f'{self._name}: mirror_cameras needs 25-number camera labels, the labels have '
                                   f'shape {shape}')
            self._raw_labels = loaded
            self._label_info = (shape, loaded.std(0))
        return self._raw_labels

    def __getstate__(self):
        # Labels are reloaded on demand in the receiving process; subclasses also drop file handles.
        return dict(self.__dict__, _raw_labels=None, _label_info=None)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __len__(self):
        return len(self._items)

    def __getitem__(self, idx):
        pixels = self._load_raw_image(self._items[idx])
        assert isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8
        assert list(pixels.shape) == self.image_shape, (pixels.shape, self.image_shape)
        if self._mirrored[idx]:
            pixels = pixels[:, :, ::-1]
        return pixels.copy(), self.get_label(idx)

    def get_label(self, idx):
        """The label item idx carries: for a mirrored copy with mirror_cameras, the mirrored camera."""
        value = self._labels()[self._items[idx]]
        if value.dtype != np.int64:
            if self._mirror_cameras and self._mirrored[idx] and value.size:
                return cameras.mirror_label(value).astype(np.float32)
            return value.copy()
        onehot = np.zeros(self.label_shape, dtype=np.float32)
        onehot[value] = 1
        return onehot

    def get_details(self, idx):
        """raw_idx, xflip, raw_label (as in dataset.json) and label (what get_label returns)."""
        raw_idx = int(self._items[idx])
        return dnnlib.EasyDict(raw_idx=raw_idx, xflip=bool(self._mirrored[idx]), raw_label=self._labels()[raw_idx].copy(),
                               label=self.get_label(idx))

    def get_label_std(self):
        # Over the labels of all raw images, not only the max_size subset.
        self._labels()
        return self._label_info[1]

    @property
    def name(self):
        return self._name

    @property
    def label_shape(self):
        self._labels()
        return list(self._label_info[0])

    @property
    def label_dim(self):
        shape = self.label_shape
        assert len(shape) == 1
        return shape[0]

    @property
    def has_labels(self):
        return any(dim != 0 for dim in self.label_shape)

    @property
    def has_onehot_labels(self):
        return self._labels().dtype == np.int64

    @property
    def image_shape(self):
        return self._raw_shape[1:]

    @property
    def num_channels(self):
        shape = self.image_shape
        assert len(shape) == 3  # CHW
        return shape[0]

    @property
    def resolution(self):
        _channels, height, width = self.image_shape
        if height != width:
            raise DatasetError(f'{self._name}: images are {width}x{height}, not square')
        return height

#----------------------------------------------------------------------------

class ImageFolderDataset(Dataset):
    """Images in a folder (searched recursively) or a zip, sorted by relative path; labels from dataset.json.

    With use_labels, dataset.json is read when the dataset is opened: it must label every image, and name
    only images that are present (a partly copied dataset would otherwise train on fewer images unnoticed).
    """

    def __init__(self, path, resolution=None, **super_kwargs):
        """path: a folder or .zip file; resolution: the expected square size (None: whatever the images are);
        the other keyword arguments go to Dataset."""
        self._zipfile = self._zipfile_pid = None
        self._path = path
        self._is_zip = self._check_container()
        self._all_fnames = set(self._list_files())
        self._image_fnames = sorted(filter(is_image_name, self._all_fnames))
        if not self._image_fnames:
            raise DatasetError(f'{self._path}: no image files found')

        self._raw_shape = None  # Unknown until the first image is decoded.
        first = self._load_raw_image(0)
        if resolution is not None and first.shape[1:] != (resolution, resolution):
            raise DatasetError(f'{self._path}: images are {first.shape[2]}x{first.shape[1]} '
                               f'({self._image_fnames[0]}), requested resolution is {resolution}x{resolution}')
        name = os.path.splitext(os.path.basename(self._path))[0]
        super().__init__(name=name, raw_shape=[len(self._image_fnames), *first.shape], **super_kwargs)
        self._labels()  # Label problems surface now rather than mid-training.

    def _check_container(self):
        """True for a zip, False for a folder; anything else is a DatasetError."""
        if os.path.isdir(self._path):
            return False
        if file_ext(self._path) == '.zip':
            self._get_zipfile()
            return True
        if os.path.exists(self._path):
            raise DatasetError(f'{self._path}: path must point to a directory or a zip file')
        raise DatasetError(f'{self._path}: no such file or directory')

    def _list_files(self):
        if self._is_zip:
            return self._get_zipfile().namelist()
        return [os.path.relpath(os.path.join(folder, fname), self._path)
                for folder, _subdirs, fnames in os.walk(self._path) for fname in fnames]

    def _get_zipfile(self):
        # A handle inherited through fork shares its file offset with the parent, so each process opens its own.
        if self._zipfile is not None and self._zipfile_pid == os.getpid():
            return self._zipfile
        try:
            self._zipfile = zipfile.ZipFile(self._path)
        except FileNotFoundError:
            raise DatasetError(f'{self._path}: no such file or directory') from None
        except (zipfile.BadZipFile, OSError) as exc:
            raise DatasetError(f'{self._path}: cannot read zip file ({exc})') from None
        self._zipfile_pid = os.getpid()
        return self._zipfile

    def _open_file(self, fname):
        if self._is_zip:
            return self._get_zipfile().open(fname, 'r')
        return open(os.path.join(self._path, fname), 'rb')

    def _read_file(self, fname):
        try:
            with self._open_file(fname) as f:
                return f.read()
        except (OSError, zipfile.BadZipFile) as exc:
            raise DatasetError(f'{self._describe(fname)}: cannot read file ({exc})') from None

    def _describe(self, fname):
        return os.path.join(self._path, fname)

    def close(self):
        handle, owner = self._zipfile, self._zipfile_pid
        self._zipfile = self._zipfile_pid = None
        if handle is not None and owner == os.getpid():
            handle.close()

    def __getstate__(self):
        return dict(super().__getstate__(), _zipfile=None, _zipfile_pid=None)

    def _decode(self, fname, data):
        if pyspng is not None and file_ext(fname) == '.png':
            return pyspng.load(data)
        with PIL.Image.open(io.BytesIO(data)) as img:
            return np.array(img)

    def _load_raw_image(self, raw_idx):
        fname = self._image_fnames[raw_idx]
        try:
            pixels = self._decode(fname, self._read_file(fname))
        except DatasetError:
            raise
        except Exception as exc:
            raise DatasetError(f'{self._describe(fname)}: cannot decode image ({exc})') from None
        if pixels.dtype != np.uint8:
            raise DatasetError(f'{self._describe(fname)}: {pixels.dtype} pixels; 8-bit images are required')
        chw = np.moveaxis(pixels.reshape(*pixels.shape[:2], -1), 2, 0)
        if self._raw_shape is not None and list(chw.shape) != self._raw_shape[1:]:
            raise DatasetError(f'{self._describe(fname)}: image shape {list(chw.shape)} (CHW) differs from '
                               f'the dataset\'s {self._raw_shape[1:]} ({self._image_fnames[0]})')
        return chw

    def _load_raw_labels(self):
        if 'dataset.json' not in self._all_fnames:
            return None
        where = self._describe('dataset.json')
        pairs = parse_dataset_json(self._read_file('dataset.json'), where)
        if pairs is None:
            return None
        label_of = dict(pairs)  # A name listed twice keeps its last label.
        names = [fname.replace('\\', '/') for fname in self._image_fnames]
        present = set(names)
        absent = [name for name in label_of if name not in present]
        if absent:
            raise DatasetError(f'{self._path}: dataset.json lists {len(absent)} image(s) that are not in the dataset: '
                               f'{listing(absent, MAX_LISTED)}')
        return labels_to_array(names, label_of, where)

    def validate(self):
        """Check that every image has the first image's size and mode, reading file headers only (no decoding).

        Raises DatasetError naming the first odd image and both sizes, e.g.
        `data.zip: img00017.png is 64x48 RGB, the other images are 128x128 RGB`.
        """
        headers = {}
        for fname in self._image_fnames:
            try:
                with self._open_file(fname) as f:
                    headers[fname] = read_image_header(f)
            except Exception as exc:
                raise DatasetError(f'{self._path}: {fname}: cannot read the image header ({exc})') from None
        counts = collections.Counter(headers.values())
        if len(counts) == 1:
            return
        usual = counts.most_common(1)[0][0]
        odd = [fname for fname in self._image_fnames if headers[fname] != usual]
        more = f' ({len(odd)} images differ: {listing(odd, MAX_LISTED)})' if len(odd) > 1 else ''
        raise DatasetError(f'{self._path}: {odd[0]} is {describe_header(headers[odd[0]])}, the other images are '
                           f'{describe_header(usual)}{more}')

#----------------------------------------------------------------------------
