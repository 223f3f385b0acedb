"""Check downloaded FFHQ files against the sizes and MD5s listed in the FFHQ metadata.

    python validate_ffhq.py [--dataset_json=ffhq-dataset-v2.json] [--mode=file|pixel] [--kind=in_the_wild]

File paths in the metadata are taken relative to the folder holding it. --mode=file compares each
file's size and MD5 with file_size / file_md5; --mode=pixel decodes each image and compares its size
and the MD5 of its RGB pixel bytes with pixel_size / pixel_md5 (useful for files re-encoded losslessly).
Prints one line per problem (missing, wrong size, wrong MD5, unreadable) and a summary; the exit status
is 1 if any file failed. Nothing is deleted: download_ffhq.py re-fetches the files that fail.
"""

import argparse
import collections
import hashlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import PIL.Image
from tqdm import tqdm

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, '..'))
from align_ffhq import METADATA_FILE, select_entries  # noqa: E402
from download_ffhq import file_problem  # noqa: E402
from mirror_dataset import expand_path, fail, read_json  # noqa: E402

MODE_KEYS = dict(file=('file_path', 'file_size', 'file_md5'), pixel=('file_path', 'pixel_size', 'pixel_md5'))

#----------------------------------------------------------------------------

def pixel_problem(path, spec):
    """None if the decoded image has the spec's pixel_size and pixel_md5, else what is wrong with it."""
    with PIL.Image.open(path) as img:
        pixels = np.asarray(img.convert('RGB'))
    size = [pixels.shape[1], pixels.shape[0]]
    if size != list(spec['pixel_size']):
        return 'wrong size', f'{size[0]}x{size[1]} pixels, expected {spec["pixel_size"][0]}x{spec["pixel_size"][1]}'
    digest = hashlib.md5(pixels.tobytes()).hexdigest()
    if digest != spec['pixel_md5']:
        return 'wrong MD5', f'pixel MD5 {digest}, expected {spec["pixel_md5"]}'
    return None

def check_file(path, spec, mode):
    """None, or (kind of problem, one-line description) for one file."""
    if not os.path.isfile(path):
        return 'missing', 'missing'
    if mode == 'pixel':
        try:
            return pixel_problem(path, spec)
        except (OSError, ValueError, PIL.Image.DecompressionBombError) as exc:
            return 'unreadable', f'cannot read image ({exc})'
    problem = file_problem(path, spec)
    if problem is None:
        return None
    return ('wrong size' if problem.startswith('size') else 'wrong MD5'), problem

def validate(specs, root, mode, num_threads=8):
    """Check every spec's file under root; prints one line per problem. Returns a Counter of problem kinds."""
    paths = [os.path.join(root, spec['file_path']) for spec in specs]
    counts = collections.Counter()
    with ThreadPoolExecutor(max_workers=max(num_threads, 1)) as pool:
        results = pool.map(lambda item: check_file(*item, mode), zip(paths, specs))
        for path, result in zip(paths, tqdm(results, total=len(specs), desc='Validating', unit='file')):
            if result is None:
                counts['valid'] += 1
                continue
            kind, message = result
            counts[kind] += 1
            tqdm.write(f'Error: {path}: {message}', file=sys.stderr)  # Keeps the progress bar intact.
    return counts

def main(argv=None):
    parser = argparse.ArgumentParser(description='Check downloaded FFHQ files against the metadata sizes and MD5s.')
    parser.add_argument('--dataset_json', type=expand_path, default=METADATA_FILE, help='the FFHQ metadata')
    parser.add_argument('--mode', choices=['file', 'pixel'], default='file', help='compare file bytes or decoded pixels')
    parser.add_argument('--kind', choices=['in_the_wild', 'image', 'thumbnail'], default='in_the_wild',
                        help='which files of each entry to check')
    parser.add_argument('--start_index', type=int, default=0, help='first metadata entry to check')
    parser.add_argument('--max_images', '--max-images', type=int, default=None, help='check at most N entries')
    parser.add_argument('--num_threads', type=int, default=8, help='files checked in parallel')
    args = parser.parse_args(argv)
    for flag, value, least in [('start_index', args.start_index, 0), ('max_images', args.max_images, 1),
                               ('num_threads', args.num_threads, 1)]:
        if value is not None and value < least:
            fail(f'--{flag}={value}: must be at least {least}')

    metadata = read_json(args.dataset_json)
    specs = [spec for _, spec in select_entries(metadata, args.dataset_json, MODE_KEYS[args.mode], args.start_index,
                                                args.max_images, kind=args.kind)]
    root = os.path.dirname(os.path.abspath(args.dataset_json))
    counts = validate(specs, root, args.mode, args.num_threads)
    problems = ', '.join(f'{counts[kind]} {kind}' for kind in ('missing', 'wrong size', 'wrong MD5', 'unreadable')
                         if counts[kind])
    print(f'Checked {len(specs)} file(s) ({args.kind}, mode {args.mode}): {counts["valid"]} valid'
          + (f', {problems}' if problems else ''))
    if counts['valid'] != len(specs):
        fail(f'{len(specs) - counts["valid"]} of {len(specs)} file(s) failed; download_ffhq.py fetches them again')

if __name__ == '__main__':
    main()
