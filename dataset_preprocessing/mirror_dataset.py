"""Add a left-right mirrored copy of every image of a dataset folder, with the matching mirrored camera.

    python mirror_dataset.py --source=final_crops [--dest=DIR] [--max_images=N]

With <source>/dataset.json, each labelled image <stem><ext> gets <stem>_mirror<ext> and a label whose
camera is mirrored by cameras.mirror_label (the reflection train.py --mirror=1 applies to its x-flipped
copies); the new dataset.json lists the originals and the mirrors. Without dataset.json every top-level
.png/.jpg/.jpeg file is mirrored and no labels are written. The released EG3D runs train with --mirror=0 on
such datasets (their loader's x-flip kept the unmirrored camera).
"""

import argparse
import json
import os
import subprocess
import sys
import zipfile

import PIL.Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cli import expand_path  # noqa: E402  (also used by the other preprocessing scripts)
from training import cameras  # noqa: E402

IMAGE_EXTS = ('.png', '.jpg', '.jpeg')

#----------------------------------------------------------------------------
# Helpers shared by the preprocessing scripts (they import this file).

def fail(msg):
    print(f'Error: {msg}', file=sys.stderr)
    sys.exit(1)

def refuse_input_folder(dest, inputs, flag):
    """Stop with one line when the output folder `dest` is one of the input folders: its images would be replaced."""
    for folder in inputs:
        if os.path.realpath(dest) == os.path.realpath(folder):
            fail(f'{flag}={dest}: that is the input folder {folder}; writing there would replace its images '
                 f'(give another {flag})')

def mirror_label(label):
    """25-number EG3D label of the mirrored image, as a JSON list."""
    if not (isinstance(label, list) and len(label) == 25):
        raise ValueError('expected a 25-number camera label')
    return cameras.mirror_label(label).tolist()

def mirror_name(name):
    """'a/b.png' -> 'a/b_mirror.png'; only the last '.' starts the extension ('a.v2/b.c.png' -> 'a.v2/b.c_mirror.png')."""
    stem, ext = os.path.splitext(name)
    return f'{stem}_mirror{ext}'

def save_image(img, path, compress_level=0):
    """Save a PIL image under a temporary name, then rename it into place."""
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    fmt = PIL.Image.registered_extensions().get(os.path.splitext(path)[1].lower())
    tmp = f'{path}.incomplete-{os.getpid()}'
    try:
        if fmt == 'PNG':
            img.save(tmp, format=fmt, compress_level=compress_level)
        else:
            img.save(tmp, format=fmt)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)

def write_json(obj, path, **dump_kwargs):
    """Write JSON under a temporary name, then rename it into place."""
    tmp = f'{path}.incomplete-{os.getpid()}'
    with open(tmp, 'w') as f:
        json.dump(obj, f, **dump_kwargs)
    os.replace(tmp, path)

def same_folder(a, b):
    return os.path.realpath(a) == os.path.realpath(b)

def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        fail(f'{path}: no such file')
    except ValueError as exc:
        fail(f'{path}: malformed JSON ({exc})')

def open_image(path):
    try:
        img = PIL.Image.open(path)
        img.load()
        return img
    except FileNotFoundError:
        fail(f'{path}: no such file')
    except Exception as exc:
        fail(f'{path}: cannot read image ({exc})')

def copy_with_mirror(source, dest, name):
    """Write <dest>/<name> (unless dest is source) and its left-right mirror <dest>/<stem>_mirror<ext>."""
    img = open_image(os.path.join(source, name))
    if not same_folder(source, dest):
        save_image(img, os.path.join(dest, name))
    save_image(img.transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT), os.path.join(dest, mirror_name(name)))

def run_step(cmd):
    """Run one pipeline step in a subprocess; stop the pipeline if it fails."""
    print('Running:', ' '.join(cmd))
    if subprocess.run(cmd).returncode != 0:
        fail(f'step failed: {" ".join(cmd)}')

def extract_zip(path, dest):
    try:
        with zipfile.ZipFile(path) as zf:
            zf.extractall(dest)
    except zipfile.BadZipFile as exc:
        fail(f'{path}: cannot read zip file ({exc})')

def gdown_download(file_id, path, what, manual_option):
    """Fetch a Google Drive file; `manual_option` tells the user how to pass a copy downloaded by hand."""
    try:
        import gdown
    except ImportError:
        fail(f'downloading {what} needs gdown: pip install gdown (or pass {manual_option})')
    if gdown.download(id=file_id, output=path, quiet=False) is None:
        fail(f'download of {what} failed; download it manually and pass {manual_option}')

#----------------------------------------------------------------------------

def mirror_labelled(source, dest, max_images):
    meta_path = os.path.join(source, 'dataset.json')
    meta = read_json(meta_path)
    labels = meta.get('labels') if isinstance(meta, dict) else None
    if not isinstance(labels, list):
        fail(f'{meta_path}: expected {{"labels": [[file name, label], ...]}}')
    known = {entry[0] for entry in labels}
    added = []
    for i, entry in enumerate(labels):
        if max_images is not None and i >= max_images:
            break
        name, label = entry
        if '_mirror' in name:
            continue
        try:
            new_label = mirror_label(label)
        except ValueError as exc:
            fail(f'{meta_path}: label of {name}: {exc}')
        copy_with_mirror(source, dest, name)
        if mirror_name(name) not in known:
            added.append([mirror_name(name), new_label])
    write_json({'labels': labels + added}, os.path.join(dest, 'dataset.json'))
    return len(added)

def mirror_unlabelled(source, dest, max_images):
    names = sorted(f for f in os.listdir(source) if os.path.splitext(f)[1].lower() in IMAGE_EXTS and
                   os.path.isfile(os.path.join(source, f)) and not os.path.splitext(f)[0].endswith('_mirror'))
    names = names if max_images is None else names[:max_images]
    for name in names:
        copy_with_mirror(source, dest, name)
    return len(names)

def main(argv=None):
    parser = argparse.ArgumentParser(description='Add left-right mirrored images (and cameras) to a dataset folder.')
    parser.add_argument('--source', type=expand_path, required=True, help='folder with images and optional dataset.json')
    parser.add_argument('--dest', type=expand_path, default=None, help='output folder (default: add the mirrors to --source)')
    parser.add_argument('--max_images', type=int, default=None, help='only the first N label entries / images')
    args = parser.parse_args(argv)
    if not os.path.isdir(args.source):
        fail(f'{args.source}: not a folder')
    dest = args.source if args.dest is None else args.dest
    os.makedirs(dest, exist_ok=True)
    if os.path.isfile(os.path.join(args.source, 'dataset.json')):
        count = mirror_labelled(args.source, dest, args.max_images)
    else:
        count = mirror_unlabelled(args.source, dest, args.max_images)
    print(f'Mirrored {count} image(s) into {dest}')

if __name__ == '__main__':
    main()
