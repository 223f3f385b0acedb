"""Image datasets stored as a folder or an uncompressed zip, with optional labels in dataset.json.

An EG3D label is 25 floats: the 4x4 cam2world matrix (OpenCV axes) followed by the 3x3 intrinsics
normalised by the image size, both row-major. Item order, max_size subsetting and x-flip doubling
reproduce the official loader so that metric caches and training runs line up.
"""

import io
import os
import zipfile

import numpy as np
import PIL.Image
import torch

import dnnlib
from training.camera_validation import DatasetError, file_ext, is_image_name, is_number_list, parse_dataset_json  # noqa: F401 (re-exported)

try:
    import pyspng
except ImportError:
    pyspng = None

#----------------------------------------------------------------------------

def labels_to_array(names, label_of, where):
    """Stack the labels of `names` (looked up in dict `label_of`) the way the official loader does:
    lists of numbers -> float32 [N, D]; single integers -> int64 class indices [N]."""
    missing = [name for name in names if name not in label_of]
    if missing:
        raise DatasetError(f'{where}: no label for {len(missing)} image(s), e.g. {missing[0]}')
    values = [label_of[name] for name in names]
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        labels = np.array(values, dtype=np.int64)
        if labels.size and labels.min() < 0:
            bad = names[int(np.argmin(labels))]
            raise DatasetError(f'{where}: negative class label for {bad}')
        return labels
    width = None
    for name, v in zip(names, values):
        if not is_number_list(v):
            raise DatasetError(f'{where}: label of {name} is neither a list of numbers nor a class index')
        if width is None:
            width = len(v)
        elif len(v) != width:
            raise DatasetError(f'{where}: label of {name} has {len(v)} numbers, the first label has {width}')
    labels = np.array(values, dtype=np.float64).astype(np.float32).reshape(len(values), width or 0)
    finite = np.isfinite(labels).all(axis=1)
    if not finite.all():
        raise DatasetError(f'{where}: label of {names[int(np.argmin(finite))]} contains NaN or infinity')
    return labels

#----------------------------------------------------------------------------

class Dataset(torch.utils.data.Dataset):
    """Indexing, labels, max_size subsetting and x-flip doubling on top of raw image/label access."""

    def __init__(self,
        name,                   # Dataset name.
        raw_shape,              # [num_images, channels, height, width].
        max_size    = None,     # Keep at most this many raw images (random subset, see random_seed).
        use_labels  = False,    # False: zero-width labels.
        xflip       = False,    # Append a mirrored copy of every image (labels unchanged).
        random_seed = 0,        # Seed of the max_size subset.
    ):
        self._name = name
        self._raw_shape = list(raw_shape)
        self._use_labels = use_labels
        self._raw_labels = None
        self._raw_labels_std = None
        self._label_shape = None

        # The subset is a seeded shuffle of all raw indices, first max_size kept, back in ascending order.
        self._raw_idx = np.arange(self._raw_shape[0], dtype=np.int64)
        if (max_size is not None) and (self._raw_idx.size > max_size):
            np.random.RandomState(random_seed).shuffle(self._raw_idx)
            self._raw_idx = np.sort(self._raw_idx[:max_size])

        # Mirrored copies form the second half of the index list.
        self._xflip = np.zeros(self._raw_idx.size, dtype=np.uint8)
        if xflip:
            self._raw_idx = np.tile(self._raw_idx, 2)
            self._xflip = np.concatenate([self._xflip, np.ones_like(self._xflip)])

    def _get_raw_labels(self):
        if self._raw_labels is None:
            labels = self._load_raw_labels() if self._use_labels else None
            if labels is None:
                labels = np.zeros([self._raw_shape[0], 0], dtype=np.float32)
            assert isinstance(labels, np.ndarray) and labels.shape[0] == self._raw_shape[0]
            assert labels.dtype in (np.float32, np.int64)
            if labels.dtype == np.int64:
                assert labels.ndim == 1 and np.all(labels >= 0)
            self._raw_labels = labels
            self._raw_labels_std = labels.std(0)
        return self._raw_labels

    def close(self):
        pass

    def _load_raw_image(self, raw_idx):
        raise NotImplementedError

    def _load_raw_labels(self):
        raise NotImplementedError

    def __getstate__(self):
        # Labels are reloaded on demand; subclasses also drop open file handles.
        return dict(self.__dict__, _raw_labels=None)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __len__(self):
        return self._raw_idx.size

    def __getitem__(self, idx):
        image = self._load_raw_image(self._raw_idx[idx])
        assert isinstance(image, np.ndarray) and image.dtype == np.uint8
        assert list(image.shape) == self.image_shape
        if self._xflip[idx]:
            assert image.ndim == 3
            image = image[:, :, ::-1]
        return image.copy(), self.get_label(idx)

    def get_label(self, idx):
        label = self._get_raw_labels()[self._raw_idx[idx]]
        if label.dtype == np.int64:
            onehot = np.zeros(self.label_shape, dtype=np.float32)
            onehot[label] = 1
            label = onehot
        return label.copy()

    def get_details(self, idx):
        return dnnlib.EasyDict(
            raw_idx = int(self._raw_idx[idx]),
            xflip   = (int(self._xflip[idx]) != 0),
            raw_label = self._get_raw_labels()[self._raw_idx[idx]].copy(),
        )

    def get_label_std(self):
        # Standard deviation of the labels of all raw images (not only the max_size subset).
        self._get_raw_labels()
        return self._raw_labels_std

    @property
    def name(self):
        return self._name

    @property
    def image_shape(self):
        return list(self._raw_shape[1:])

    @property
    def num_channels(self):
        assert len(self.image_shape) == 3  # CHW
        return self.image_shape[0]

    @property
    def resolution(self):
        assert len(self.image_shape) == 3  # CHW
        if self.image_shape[1] != self.image_shape[2]:
            raise DatasetError(f'{self._name}: images are {self.image_shape[2]}x{self.image_shape[1]}, not square')
        return self.image_shape[1]

    @property
    def label_shape(self):
        if self._label_shape is None:
            raw_labels = self._get_raw_labels()
            if raw_labels.dtype == np.int64:
                self._label_shape = [int(np.max(raw_labels)) + 1]
            else:
                self._label_shape = list(raw_labels.shape[1:])
        return list(self._label_shape)

    @property
    def label_dim(self):
        assert len(self.label_shape) == 1
        return self.label_shape[0]

    @property
    def has_labels(self):
        return any(x != 0 for x in self.label_shape)

    @property
    def has_onehot_labels(self):
        return self._get_raw_labels().dtype == np.int64

#----------------------------------------------------------------------------

class ImageFolderDataset(Dataset):
    """Images in a folder (searched recursively) or a zip, sorted by relative path; labels from dataset.json."""

    def __init__(self,
        path,                   # Folder or .zip file.
        resolution  = None,     # Expected square resolution; None = whatever the images are.
        **super_kwargs,         # Passed on to Dataset.
    ):
        self._path = path
        self._zipfile = None
        self._zipfile_pid = None
        self._raw_shape = None  # Unknown until the first image is decoded.

        if os.path.isdir(self._path):
            self._type = 'dir'
            self._all_fnames = {
                os.path.relpath(os.path.join(root, fname), start=self._path)
                for root, _dirs, files in os.walk(self._path) for fname in files
            }
        elif file_ext(self._path) == '.zip':
            self._type = 'zip'
            self._all_fnames = set(self._get_zipfile().namelist())
        elif not os.path.exists(self._path):
            raise DatasetError(f'{self._path}: no such file or directory')
        else:
            raise DatasetError(f'{self._path}: path must point to a directory or a zip file')

        self._image_fnames = sorted(fname for fname in self._all_fnames if is_image_name(fname))
        if len(self._image_fnames) == 0:
            raise DatasetError(f'{self._path}: no image files found')

        name = os.path.splitext(os.path.basename(self._path))[0]
        first = self._load_raw_image(0)
        raw_shape = [len(self._image_fnames)] + list(first.shape)
        if resolution is not None and (raw_shape[2] != resolution or raw_shape[3] != resolution):
            raise DatasetError(f'{self._path}: images are {raw_shape[3]}x{raw_shape[2]} '
                               f'({self._image_fnames[0]}), requested resolution is {resolution}x{resolution}')
        super().__init__(name=name, raw_shape=raw_shape, **super_kwargs)

    def _get_zipfile(self):
        assert self._type == 'zip'
        # A handle inherited through fork shares its file offset with the parent: reopen per process.
        if self._zipfile is None or self._zipfile_pid != os.getpid():
            try:
                self._zipfile = zipfile.ZipFile(self._path)
            except FileNotFoundError:
                raise DatasetError(f'{self._path}: no such file or directory') from None
            except (zipfile.BadZipFile, OSError) as exc:
                raise DatasetError(f'{self._path}: cannot read zip file ({exc})') from None
            self._zipfile_pid = os.getpid()
        return self._zipfile

    def _open_file(self, fname):
        if self._type == 'dir':
            return open(os.path.join(self._path, fname), 'rb')
        return self._get_zipfile().open(fname, 'r')

    def _read_file(self, fname):
        try:
            with self._open_file(fname) as f:
                return f.read()
        except (OSError, zipfile.BadZipFile) as exc:
            raise DatasetError(f'{self._describe(fname)}: cannot read file ({exc})') from None

    def _describe(self, fname):
        return os.path.join(self._path, fname)

    def close(self):
        try:
            if self._zipfile is not None and self._zipfile_pid == os.getpid():
                self._zipfile.close()
        finally:
            self._zipfile = None
            self._zipfile_pid = None

    def __getstate__(self):
        return dict(super().__getstate__(), _zipfile=None, _zipfile_pid=None)

    def _load_raw_image(self, raw_idx):
        fname = self._image_fnames[raw_idx]
        data = self._read_file(fname)
        try:
            if pyspng is not None and file_ext(fname) == '.png':
                image = pyspng.load(data)
            else:
                with PIL.Image.open(io.BytesIO(data)) as img:
                    image = np.array(img)
        except Exception as exc:
            raise DatasetError(f'{self._describe(fname)}: cannot decode image ({exc})') from None
        if image.dtype != np.uint8:
            raise DatasetError(f'{self._describe(fname)}: {image.dtype} pixels; 8-bit images are required')
        if image.ndim == 2:
            image = image[:, :, np.newaxis]  # HW => HWC
        image = image.transpose(2, 0, 1)  # HWC => CHW
        if self._raw_shape is not None and list(image.shape) != self._raw_shape[1:]:
            raise DatasetError(f'{self._describe(fname)}: image shape {list(image.shape)} (CHW) differs from '
                               f'the dataset\'s {self._raw_shape[1:]} ({self._image_fnames[0]})')
        return image

    def _load_raw_labels(self):
        if 'dataset.json' not in self._all_fnames:
            return None
        where = self._describe('dataset.json')
        labels = parse_dataset_json(self._read_file('dataset.json'), where)
        if labels is None:
            return None
        label_of = dict(labels)  # The last of duplicate entries wins.
        return labels_to_array([fname.replace('\\', '/') for fname in self._image_fnames], label_of, where)

#----------------------------------------------------------------------------
