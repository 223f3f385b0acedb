"""Convert an image folder or archive into a dataset for train.py, or check an existing one.

Examples:

\b
  # FFHQ-style crops with camera labels in final_crops/dataset.json:
  python dataset_tool.py --source=final_crops --dest=FFHQ_512.zip --resolution=512x512
\b
  # Only check a dataset's camera labels (folder or zip) without converting it:
  python dataset_tool.py --source=FFHQ_512.zip --check-only

The output holds PNG images named <idx8[:5]>/img<idx8>.png (idx = position in the input) and a
dataset.json whose labels are carried over from the source's dataset.json under the new names.
"""

import contextlib
import gzip
import io
import json
import os
import pickle
import re
import shutil
import tarfile
import zipfile
from pathlib import Path

import click
import numpy as np
import PIL.Image
from tqdm import tqdm

from training.camera_validation import DatasetError, check_camera_labels, check_dataset, parse_dataset_json

#----------------------------------------------------------------------------

def error(msg):
    raise click.ClickException(msg)

def has_image_ext(path):
    # The original takes the text after the last '.' of the whole path (so a file named '.png' counts).
    PIL.Image.init()
    return '.' + str(path).split('.')[-1].lower() in PIL.Image.EXTENSION

def is_zip_name(path):
    return str(path).split('.')[-1] == 'zip'  # Case-sensitive, as in the original.

def parse_pair(ctx, param, value):
    if value is None:
        return None
    match = re.fullmatch(r'(\d+)[x,](\d+)', value)
    if match is None or int(match.group(1)) == 0 or int(match.group(2)) == 0:
        raise click.BadParameter(f'expected WxH with positive integers, got {value!r}', ctx=ctx, param=param)
    return int(match.group(1)), int(match.group(2))

#----------------------------------------------------------------------------
# Sources. Each returns (number of images, labels as [[name, label], ...] or None, the input's image names
# or None, an iterator of dict(img=HW or HWC uint8 array, label=JSON value or None, name=for messages)).

def decode_image(data, where):
    try:
        with PIL.Image.open(io.BytesIO(data)) as img:
            if img.mode == 'P':
                img = img.convert('RGB')  # Fix: keep colours rather than palette indices.
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
    return count, labels, names, iterate()

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
    return count, labels, names, iterate()

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
                        # LSUN holds a few broken entries; the original skips them too.
                        click.echo(f'Warning: {where}: cannot decode image ({exc}); skipped', err=True)
                        continue
                yield dict(img=img, label=None, name=where)
    return count, None, None, iterate()

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
    return count, None, None, items

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
    return count, None, None, items

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
        if source.lower().endswith('.zip'):  # The original only knew lower-case '.zip' (others crashed).
            return open_image_zip(source, max_images)
        error(f'{source}: unknown input type (expected an image folder, a .zip, an _lmdb folder, '
              'cifar-10-python.tar.gz or train-images-idx3-ubyte.gz)')
    error(f'{source}: no such file or directory')

#----------------------------------------------------------------------------

def resize(img, width, height):
    if img.shape[1] == width and img.shape[0] == height:
        return img
    return np.array(PIL.Image.fromarray(img).resize((width, height), PIL.Image.LANCZOS))

def make_transform(transform, width, height):
    """Returns img -> img (or None to drop the image)."""
    if transform is None:
        if width is None:
            return lambda img: img
        return lambda img: resize(img, width, height)
    if width is None:
        error(f'--transform={transform} needs --resolution=WxH')

    def center_crop(img):
        crop = min(img.shape[0], img.shape[1])
        top, left = (img.shape[0] - crop) // 2, (img.shape[1] - crop) // 2
        return resize(img[top:top + crop, left:left + crop], width, height)

    def center_crop_wide(img):
        # A centred band with the output's aspect ratio, letterboxed into a square black canvas.
        band = int(np.round(width * img.shape[0] / img.shape[1]))
        if img.shape[1] < width or band < height:
            return None
        top = (img.shape[0] - band) // 2
        img = resize(img[top:top + band], width, height)
        canvas = np.zeros([width, width] + list(img.shape[2:]), dtype=np.uint8)
        canvas[(width - height) // 2:(width + height) // 2] = img
        return canvas

    return {'center-crop': center_crop, 'center-crop-wide': center_crop_wide}[transform]

#----------------------------------------------------------------------------

@contextlib.contextmanager
def open_dest(dest):
    """Yields write(name, bytes). Output goes to a temporary name, renamed to dest only on success."""
    tmp = f'{dest.rstrip("/")}.incomplete-{os.getpid()}'
    if is_zip_name(dest):
        if os.path.exists(dest):
            error(f'{dest}: destination already exists; remove it or choose another name')
        if os.path.dirname(dest):
            os.makedirs(os.path.dirname(dest), exist_ok=True)
        zf = zipfile.ZipFile(tmp, mode='w', compression=zipfile.ZIP_STORED)
        try:
            yield zf.writestr
            zf.close()
            os.replace(tmp, dest)
        except BaseException:
            zf.close()
            os.remove(tmp)
            raise
        return

    if os.path.exists(dest) and not os.path.isdir(dest):
        error(f'{dest}: destination exists and is not a folder')
    if os.path.isdir(dest) and os.listdir(dest):
        error(f'{dest}: destination folder must be empty')

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

def validate_cameras(labels, names, where, strict):
    """Check source labels before converting: print problems and the camera summary; with `strict`, stop on errors.

    Not strict (the default), labels are carried over unchanged whatever they hold, as in the original.
    """
    if all(isinstance(label, int) for _name, label in labels):
        return  # Class indices (StyleGAN-style datasets): nothing to check.
    report = check_camera_labels(labels, names, where=where)
    if strict and not report.ok:
        error('\n'.join(report.errors + ['(without --check-cameras=1, such labels are converted unchanged)']))
    for line in report.errors + report.warnings:
        click.echo(f'Warning: {line}', err=True)
    for line in report.summary:
        click.echo(line)

def describe(attrs):
    return f'{attrs["width"]}x{attrs["height"]} with {attrs["channels"]} channel(s)'

def check_image(img, attrs, where, archive_name):
    """Checks against the first kept image; returns the attributes of the first image."""
    cur = dict(width=img.shape[1], height=img.shape[0], channels=img.shape[2] if img.ndim == 3 else 1)
    if attrs is None:
        w, h = cur['width'], cur['height']
        if w != h:
            error(f'{where}: image is {w}x{h}; images must be square (use --transform=center-crop or --resolution=NxN)')
        if cur['channels'] not in (1, 3, 4):
            error(f'{where}: {cur["channels"]} channels; RGB or grayscale images are required')
        if w & (w - 1):
            error(f'{where}: size {w}x{h} is not a power of two (use --resolution=NxN with N a power of two)')
        return cur
    if cur != attrs:
        details = [f'  dataset {key}/cur image {key}: {attrs[key]}/{cur[key]}' for key in attrs]
        error('\n'.join([f'{where}: image is {describe(cur)}, the dataset\'s first image is {describe(attrs)}; '
                          f'all images must match (output {archive_name})'] + details))
    return attrs

def encode_png(img):
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]  # RGBA => RGB
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    buf = io.BytesIO()
    PIL.Image.fromarray(img, 'L' if img.ndim == 2 else 'RGB').save(buf, format='png', compress_level=0, optimize=False)
    return buf.getvalue()

#----------------------------------------------------------------------------

@click.command(help=__doc__)
@click.pass_context
@click.option('--source', help='Input folder, zip, LSUN _lmdb folder, CIFAR-10 or MNIST archive', metavar='PATH', required=True)
@click.option('--dest', help='Output folder or uncompressed .zip', metavar='PATH')
@click.option('--max-images', help='Stop after this many input images', type=int)
@click.option('--transform', help='Crop mode (needs --resolution)', type=click.Choice(['center-crop', 'center-crop-wide']))
@click.option('--resolution', help='Output size, e.g. 512x512', metavar='WxH', type=str, callback=parse_pair)
@click.option('--check-only', help='Only check the source\'s camera labels and images; write nothing', is_flag=True)
@click.option('--check-cameras', help='Refuse to convert labels that are not valid EG3D cameras (problems are reported '
              'either way)', metavar='BOOL', type=bool, default=False, show_default=True)
def convert_dataset(ctx, source, dest, max_images, transform, resolution, check_only, check_cameras):
    if check_only:
        try:
            report = check_dataset(source)
        except DatasetError as exc:
            error(str(exc))
        click.echo(report.format())
        if not report.ok:
            ctx.exit(1)
        return

    if dest is None:
        ctx.fail("Missing option '--dest'.")
    if dest == '':
        ctx.fail('--dest must not be an empty string')
    width, height = resolution if resolution is not None else (None, None)
    transform_image = make_transform(transform, width, height)
    num_files, labels, names, images = open_source(source, max_images)
    if labels is not None:
        where = source.rstrip('/') + '/dataset.json'
        validate_cameras(labels, names, where, strict=check_cameras)

    out_labels, unlabeled, attrs = [], 0, None
    with open_dest(dest) as write:
        for idx, item in enumerate(tqdm(images, total=num_files, desc='Converting', unit='img')):
            img = transform_image(item['img'])
            if img is None:
                continue  # Dropped by center-crop-wide.
            idx_str = f'{idx:08d}'
            archive_name = f'{idx_str[:5]}/img{idx_str}.png'
            attrs = check_image(img, attrs, item['name'], archive_name)
            write(archive_name, encode_png(img))
            if item['label'] is None:
                unlabeled += 1
            out_labels.append([archive_name, item['label']])
        if attrs is None:
            error(f'{source}: no images to convert')
        if unlabeled and labels is not None:
            click.echo(f'Warning: {unlabeled} image(s) have no label in the source, so the output has no labels '
                       '(dataset.json "labels": null)', err=True)
        write('dataset.json', json.dumps({'labels': None if unlabeled else out_labels}).encode())

#----------------------------------------------------------------------------

if __name__ == '__main__':
    convert_dataset()

#----------------------------------------------------------------------------
