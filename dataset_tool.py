"""Convert an image folder or archive into a dataset for train.py, or check an existing one.

Examples:

\b
  # FFHQ-style crops with camera labels in final_crops/dataset.json:
  python dataset_tool.py --source=final_crops --dest=FFHQ_512.zip --resolution=512x512
\b
  # Only check a dataset's camera labels (folder or zip) without converting it:
  python dataset_tool.py --source=FFHQ_512.zip --check-only
\b
  # ... and whether a rendering preset or config file (train.py --cfg) fits its cameras:
  python dataset_tool.py --source=mycars_128.zip --check-only --cfg=myconfig.json

The output holds PNG images named <idx8[:5]>/img<idx8>.png (idx = position in the input) and a
dataset.json whose labels are carried over from the source's dataset.json under the new names.
Labels must be EG3D cameras (25 finite numbers) unless --any-labels is given. The destination, the
options, the labels and every image header are checked before anything is written; the output is
written under a temporary name and renamed into place once complete.
"""

import contextlib
import dataclasses
import gzip
import io
import json
import math
import os
import pickle
import shutil
import tarfile
import zipfile
from pathlib import Path

import click
import numpy as np
import PIL.Image
import PIL.ImageMode
from tqdm import tqdm

import cli
import dnnlib
from cli import one_line_errors, train_options
from training import rendering_config
from training.camera_validation import (
    DatasetError,
    check_camera_labels,
    check_dataset,
    check_rendering_fit,
    is_number_list,
    parse_dataset_json,
    read_image_header,
)
from training.cameras import LABEL_DIM
from training.dataset_transform import make_transform

#----------------------------------------------------------------------------

def error(msg):
    raise click.ClickException(msg)

def has_image_ext(path):
    # The extension is the text after the last '.' of the whole path, so a file named '.png' counts.
    PIL.Image.init()
    return '.' + str(path).split('.')[-1].lower() in PIL.Image.EXTENSION

def is_zip_name(path):
    return str(path).split('.')[-1] == 'zip'  # Case-sensitive: --dest=OUT.ZIP is a folder.

#----------------------------------------------------------------------------
# Sources.

@dataclasses.dataclass
class Source:
    count: int              # Images to read (after --max-images).
    labels: list            # dataset.json pairs [[name, label], ...], or None.
    names: list             # The input's image names (relative, '/'-separated), or None.
    items: object           # Iterator of dict(img=HW or HWC uint8 array, label=JSON value or None, name=for messages).
    headers: object = None  # Iterator of (name for messages, (width, height, mode)) without decoding, or None.

def decode_image(data, where):
    try:
        with PIL.Image.open(io.BytesIO(data)) as img:
            if img.mode == 'P':
                img = img.convert('RGB')  # Colours, not palette indices.
            arr = np.array(img)
    except Exception as exc:
        error(f'{where}: cannot read image ({exc})')
    if arr.dtype != np.uint8:
        error(f'{where}: {arr.dtype} pixels; 8-bit images are required')
    return arr

def read_labels(data, where):
    if data is None:
        return None
    try:
        return parse_dataset_json(data, where)
    except DatasetError as exc:
        error(str(exc))

def iterate_headers(names, opener, describe):
    for name in names:
        try:
            with opener(name) as f:
                header = read_image_header(f)
        except Exception as exc:
            error(f'{describe(name)}: cannot read image ({exc})')
        yield describe(name), header

def open_image_folder(source_dir, max_images):
    paths = [p for p in sorted(Path(source_dir).rglob('*')) if has_image_ext(p) and p.is_file()]
    names = [p.relative_to(source_dir).as_posix() for p in paths]
    meta_path = os.path.join(source_dir, 'dataset.json')
    labels = read_labels(Path(meta_path).read_bytes() if os.path.isfile(meta_path) else None, meta_path)
    label_of = dict(labels) if labels is not None else {}
    count = len(paths) if max_images is None else min(len(paths), max_images)

    def iterate():
        for path, name in zip(paths[:count], names):
            yield dict(img=decode_image(path.read_bytes(), str(path)), label=label_of.get(name), name=str(path))
    headers = iterate_headers(paths[:count], lambda path: open(path, 'rb'), str)
    return Source(count=count, labels=labels, names=names, items=iterate(), headers=headers)

def open_image_zip(source, max_images):
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        error(f'{source}: cannot read zip file ({exc})')
    members = zf.namelist()
    names = [m for m in sorted(members) if has_image_ext(m)]
    where = f'{source}/dataset.json'
    labels = read_labels(zf.read('dataset.json') if 'dataset.json' in members else None, where)
    label_of = dict(labels) if labels is not None else {}
    count = len(names) if max_images is None else min(len(names), max_images)

    def iterate():
        with zf:
            for name in names[:count]:
                yield dict(img=decode_image(zf.read(name), f'{source}/{name}'), label=label_of.get(name),
                           name=f'{source}/{name}')
    headers = iterate_headers(names[:count], zf.open, lambda name: f'{source}/{name}')
    return Source(count=count, labels=labels, names=names, items=iterate(), headers=headers)

def open_lmdb(lmdb_dir, max_images):
    try:
        import lmdb
    except ImportError:
        error(f'{lmdb_dir}: reading LSUN LMDB folders needs the lmdb package (pip install lmdb)')
    try:
        import cv2
    except ImportError:
        cv2 = None
    env = lmdb.open(lmdb_dir, readonly=True, lock=False)
    count = env.stat()['entries'] if max_images is None else min(env.stat()['entries'], max_images)

    def iterate():
        with env.begin(write=False) as txn:
            for idx, (key, value) in enumerate(txn.cursor()):
                if idx >= count:
                    break
                where = f'{lmdb_dir}[{key.decode(errors="replace")}]'
                img = None
                if cv2 is not None:
                    img = cv2.imdecode(np.frombuffer(value, dtype=np.uint8), cv2.IMREAD_COLOR)
                    if img is not None:
                        img = img[:, :, ::-1]  # BGR => RGB
                if img is None:
                    try:
                        with PIL.Image.open(io.BytesIO(value)) as pil_img:
                            img = np.array(pil_img)
                    except Exception as exc:
                        # LSUN holds a few broken entries; skipping them keeps the usual LSUN counts.
                        click.echo(f'Warning: {where}: cannot decode image ({exc}); skipped', err=True)
                        continue
                yield dict(img=img, label=None, name=where)
    return Source(count=count, labels=None, names=None, items=iterate())

def open_cifar10(tarball, max_images):
    images, classes = [], []
    with tarfile.open(tarball, 'r:gz') as tar:
        for batch in range(1, 6):
            member = tar.getmember(f'cifar-10-batches-py/data_batch_{batch}')
            with tar.extractfile(member) as f:
                data = pickle.load(f, encoding='latin1')
            images.append(np.asarray(data['data'], dtype=np.uint8).reshape(-1, 3, 32, 32))
            classes.append(np.asarray(data['labels'], dtype=np.int64))
    images = np.concatenate(images).transpose(0, 2, 3, 1)  # NCHW => NHWC
    classes = np.concatenate(classes)
    count = len(images) if max_images is None else min(len(images), max_images)
    items = (dict(img=images[i], label=int(classes[i]), name=f'{tarball}[{i}]') for i in range(count))
    return Source(count=count, labels=None, names=None, items=items)

def open_mnist(images_gz, max_images):
    labels_gz = images_gz.replace('-images-idx3-ubyte.gz', '-labels-idx1-ubyte.gz')
    with gzip.open(images_gz, 'rb') as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(labels_gz, 'rb') as f:
        classes = np.frombuffer(f.read(), np.uint8, offset=8)
    if len(images) != len(classes):
        error(f'{labels_gz}: {len(classes)} labels for {len(images)} images')
    images = np.pad(images, [(0, 0), (2, 2), (2, 2)], 'constant', constant_values=0)  # 28x28 => 32x32
    count = len(images) if max_images is None else min(len(images), max_images)
    items = (dict(img=images[i], label=int(classes[i]), name=f'{images_gz}[{i}]') for i in range(count))
    return Source(count=count, labels=None, names=None, items=items)

def open_source(source, max_images):
    if os.path.isdir(source):
        if source.rstrip('/').endswith('_lmdb'):
            return open_lmdb(source, max_images)
        return open_image_folder(source, max_images)
    if os.path.isfile(source):
        if os.path.basename(source) == 'cifar-10-python.tar.gz':
            return open_cifar10(source, max_images)
        if os.path.basename(source) == 'train-images-idx3-ubyte.gz':
            return open_mnist(source, max_images)
        if source.lower().endswith('.zip'):
            return open_image_zip(source, max_images)
        error(f'{source}: unknown input type (expected an image folder, a .zip, an _lmdb folder, '
              'cifar-10-python.tar.gz or train-images-idx3-ubyte.gz)')
    error(f'{source}: no such file or directory')

#----------------------------------------------------------------------------

def check_resolution(transform, width, height):
    """Checks on --resolution/--transform that need no image."""
    if transform is not None and width is None:
        error(f'--transform={transform} needs --resolution=WxH')
    if width is None:
        return
    if transform == 'center-crop-wide':
        if height > width:  # The WxH band is letterboxed into a WxW square.
            error(f'--resolution={width}x{height}: with --transform=center-crop-wide the height must not exceed the width')
    elif width != height:
        error(f'--resolution={width}x{height}: images must be square')
    if width & (width - 1):
        error(f'--resolution={width}x{height}: {width} is not a power of two')

def converted_shape(header, where, transform, width, height):
    """(width, height, channels) that an image with this header converts to, or None if the transform drops it."""
    w, h, mode = header
    if PIL.ImageMode.getmode(mode).typestr != '|u1':
        error(f'{where}: mode {mode} is not 8 bits per channel; 8-bit images are required')
    channels = 3 if mode == 'P' else PIL.Image.getmodebands(mode)
    if width is None:
        return w, h, channels
    if transform == 'center-crop-wide':
        if w < width or int(np.round(width * h / w)) < height:
            return None
        return width, width, channels
    return width, height, channels

#----------------------------------------------------------------------------

def check_dest(dest):
    """Refuse a destination that would be overwritten or cannot be created."""
    if is_zip_name(dest):
        if os.path.exists(dest):
            error(f'{dest}: destination already exists; remove it or choose another name')
    elif os.path.exists(dest) and not os.path.isdir(dest):
        error(f'{dest}: destination exists and is not a folder')
    elif os.path.isdir(dest) and os.listdir(dest):
        error(f'{dest}: destination folder must be empty')
    parent = os.path.dirname(os.path.abspath(dest))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        error(f'{dest}: cannot create it ({parent} is not a writable folder)')

@contextlib.contextmanager
def parent_folders(path):
    """Create the missing parent folders of `path`; remove them again if the block fails."""
    created, parent = [], os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(parent):
        created.append(parent)
        parent = os.path.dirname(parent)
    for folder in reversed(created):
        os.mkdir(folder)
    try:
        yield
    except BaseException:
        for folder in created:
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise

@contextlib.contextmanager
def open_dest(dest):
    """Yields write(name, bytes). Output goes to a temporary name, renamed to dest only on success."""
    with parent_folders(dest):
        if is_zip_name(dest):
            with dnnlib.util.atomic_output(dest) as tmp:
                with zipfile.ZipFile(tmp, mode='w', compression=zipfile.ZIP_STORED) as zf:
                    yield zf.writestr
            return

        base = os.path.basename(os.path.abspath(dest))
        tmp = os.path.join(os.path.dirname(os.path.abspath(dest)), f'{dnnlib.util.TEMP_PREFIX}{os.getpid()}-{base}')

        def write(name, data):
            path = os.path.join(tmp, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'wb') as f:
                f.write(data)
        os.makedirs(tmp)
        try:
            yield write
            if os.path.isdir(dest):
                os.rmdir(dest)
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

#----------------------------------------------------------------------------

def has_non_finite(value):
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (list, dict)):
        return any(has_non_finite(v) for v in (value.values() if isinstance(value, dict) else value))
    return False

def check_label_kinds(labels, names, where, any_labels):
    """Refuse non-finite labels, and (unless any_labels) labels that are not 25 numbers, of the source's images.

    Returns True when every such label is a 25-number list (an EG3D camera label)."""
    label_of = dict(labels)
    present = [name for name in names if name in label_of]
    for name in present:
        if has_non_finite(label_of[name]):
            error(f'{where}: label of {name} contains NaN or infinity')
    cameras = True
    for name in present:
        value = label_of[name]
        if is_number_list(value) and len(value) == LABEL_DIM:
            continue
        cameras = False
        if not any_labels:
            kind = f'has {len(value)} numbers' if is_number_list(value) else f'is {json.dumps(value)[:40]}'
            error(f'{where}: label of {name} {kind}; EG3D camera labels are lists of {LABEL_DIM} numbers '
                  '(pass --any-labels to copy other labels unchanged)')
    return cameras

def load_rendering_config(cfg):
    """(options, preset) of --cfg, or None without it."""
    if cfg is None:
        return None
    try:
        return rendering_config.resolve_rendering_options(cfg, {}), rendering_config.base_preset(cfg)
    except rendering_config.RenderingConfigError as exc:
        error(f'--cfg: {exc}')

def add_rendering_fit(report, config):
    """Add a warning for each rendering option of config = (options, preset) that does not fit the cameras."""
    if config is not None:
        report.warnings.extend(check_rendering_fit(report, *config))

def validate_cameras(labels, names, where, strict, config):
    """Print camera problems and the camera summary; with `strict`, stop at the first problem."""
    report = check_camera_labels(labels, names, where=where)
    add_rendering_fit(report, config)
    if strict and not report.ok:
        more = f' (and {len(report.errors) - 1} more; see --check-only)' if len(report.errors) > 1 else ''
        error(f'{report.errors[0]}{more}')
    for line in report.errors + report.warnings:
        click.echo(f'Warning: {line}', err=True)
    for line in report.summary:
        click.echo(line)

def describe(shape):
    width, height, channels = shape
    return f'{width}x{height} with {channels} channel(s)'

def check_image(shape, first, where, resized):
    """Check (width, height, channels) of an image against the first kept one, given as (shape, where) or None.

    Returns (shape, where) of the first image."""
    width, height, channels = shape
    if first is None:
        if width != height:
            error(f'{where}: image is {width}x{height}; images must be square (use --transform=center-crop or --resolution=NxN)')
        if channels not in (1, 3, 4):
            error(f'{where}: {channels} channels; RGB or grayscale images are required')
        if width & (width - 1):
            error(f'{where}: size {width}x{height} is not a power of two (use --resolution=NxN with N a power of two)')
        return shape, where
    if shape != first[0]:
        verb = 'converts to' if resized else 'is'
        error(f'{where}: image {verb} {describe(shape)}, but {first[1]} {verb} {describe(first[0])}; '
              'all images must match')
    return first

def array_shape(img):
    return img.shape[1], img.shape[0], img.shape[2] if img.ndim == 3 else 1

def encode_png(img):
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]  # RGBA => RGB
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    buf = io.BytesIO()
    PIL.Image.fromarray(img, 'L' if img.ndim == 2 else 'RGB').save(buf, format='png', compress_level=0, optimize=False)
    return buf.getvalue()

def convert(src, dest, transform_image, resized):
    """Write the source's images and labels to dest; returns the number of images written."""
    out_labels, unlabeled, first = [], 0, None
    with open_dest(dest) as write:
        for idx, item in enumerate(tqdm(src.items, total=src.count, desc='Converting', unit='img')):
            img = transform_image(item['img'])
            if img is None:
                continue  # Dropped by center-crop-wide.
            idx_str = f'{idx:08d}'
            archive_name = f'{idx_str[:5]}/img{idx_str}.png'
            first = check_image(array_shape(img), first, item['name'], resized)
            write(archive_name, encode_png(img))
            if item['label'] is None:
                unlabeled += 1
            out_labels.append([archive_name, item['label']])
        if first is None:
            error('no images to convert')
        if unlabeled and src.labels is not None:
            click.echo(f'Warning: {unlabeled} image(s) have no label in the source, so the output has no labels '
                       '(dataset.json "labels": null)', err=True)
        write('dataset.json', json.dumps({'labels': None if unlabeled else out_labels}).encode())
    return len(out_labels)

#----------------------------------------------------------------------------

@click.command(help=__doc__)
@click.pass_context
@click.option('--source', help='Input folder, zip, LSUN _lmdb folder, CIFAR-10 or MNIST archive', metavar='PATH', type=cli.PATH, required=True)
@click.option('--dest', help='Output folder or uncompressed .zip', metavar='PATH', type=cli.PATH)
@click.option('--max-images', help='Stop after this many input images', type=int)
@click.option('--transform', help='Crop mode (needs --resolution)', type=click.Choice(['center-crop', 'center-crop-wide']))
@click.option('--resolution', help='Output size, e.g. 512x512', metavar='WxH', type=cli.POSITIVE_PAIR)
@click.option('--check-only', help='Only check the source\'s camera labels and images; write nothing', is_flag=True)
@click.option('--check-cameras', help='Refuse camera labels with geometry problems (reported as warnings otherwise)',
              metavar='BOOL', type=bool, default=False, show_default=True)
@click.option('--any-labels', help='Copy labels that are not EG3D cameras (e.g. class indices) unchanged', is_flag=True)
@click.option('--cfg', help='Also check that this rendering preset or config file (as train.py --cfg) fits the cameras',
              metavar='[ffhq|afhq|shapenet|FILE.json]', type=train_options.ConfigArg())
@one_line_errors
def convert_dataset(ctx, source, dest, max_images, transform, resolution, check_only, check_cameras, any_labels, cfg):
    config = load_rendering_config(cfg)
    if check_only:
        try:
            report = check_dataset(source)
        except DatasetError as exc:
            error(str(exc))
        add_rendering_fit(report, config)
        click.echo(report.format())
        if not report.ok:
            ctx.exit(1)
        return

    # Everything that can be checked without writing, cheapest first.
    if dest is None:
        ctx.fail("Missing option '--dest'.")
    if dest == '':
        ctx.fail('--dest must not be an empty string')
    if max_images is not None and max_images < 1:
        error(f'--max-images={max_images}: must be at least 1')
    check_dest(dest)
    width, height = resolution if resolution is not None else (None, None)
    check_resolution(transform, width, height)
    src = open_source(source, max_images)
    if src.labels is not None:
        where = source.rstrip('/') + '/dataset.json'
        if check_label_kinds(src.labels, src.names, where, any_labels):
            validate_cameras(src.labels, src.names, where, strict=check_cameras, config=config)
    if src.headers is not None:
        first = None
        for where, header in src.headers:
            shape = converted_shape(header, where, transform, width, height)
            if shape is not None:
                first = check_image(shape, first, where, resized=width is not None)
        if first is None:
            error(f'{source}: no images to convert')

    count = convert(src, dest, make_transform(transform, width, height), resized=width is not None)
    click.echo(f'{count} image(s) written to {dest}')

#----------------------------------------------------------------------------

if __name__ == '__main__':
    convert_dataset()

#----------------------------------------------------------------------------
