"""Download the FFHQ metadata and images (MD5-checked, resumable), print statistics, and optionally re-align.

    python download_ffhq.py --wilds [--align] [--max_images=N] [--metadata=PATH] [--num_threads=32] ...

Tasks (any combination): -j/--json the metadata ffhq-dataset-v2.json only (always fetched first);
-s/--stats statistics from the metadata; -i/--images the 1024x1024 crops (images1024x1024/, 89 GB);
-t/--thumbs the 128x128 thumbnails (thumbnails128x128/); -w/--wilds the in-the-wild photos EG3D starts
from (in-the-wild-images/, about 1 TB); -a/--align re-align the in-the-wild photos into realign1500/
(align_ffhq.py). -r/--tfrecords is accepted but stops with a message: the TFRecords are not listed in
the metadata, and EG3D does not use them.

Works in the current folder. Every file is checked against the size and MD5 the metadata gives: valid
files are skipped, missing or corrupt ones are (re-)fetched into a temporary name and renamed into place
once they check out. Google Drive files need `pip install gdown`; Drive limits downloads per file and
day, so a run may have to be repeated later to pick up the files it could not get.
"""

import argparse
import collections
import hashlib
import os
import shutil
import sys
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed

from tqdm import tqdm

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, '..'))
from align_ffhq import METADATA_FILE, align_dataset, select_entries  # noqa: E402
from mirror_dataset import expand_path, fail, gdown_download, read_json  # noqa: E402

# The FFHQ metadata as published by NVlabs/ffhq-dataset (version 2).
METADATA = dict(file_url='https://drive.google.com/uc?id=16N0RV4fHI6joBuKbQAoG34V_cQk7vxSA',
                file_path=METADATA_FILE, file_size=267793842, file_md5='425ae20f06a4da1d4dc0f46d40ba5fd6')
SPEC_KEYS = ('file_url', 'file_path', 'file_size', 'file_md5')
FILE_KINDS = dict(images='image', thumbs='thumbnail', wilds='in_the_wild')  # Task flag -> metadata entry member.
RETRY_DELAY = 2.0  # Seconds before the second attempt at a file; grows linearly with the attempt number.

#----------------------------------------------------------------------------

def drive_file_id(url):
    """The Google Drive file id of a drive.google.com URL (uc?id=... or /file/d/<id>/...), else None."""
    parts = urllib.parse.urlparse(url)
    if parts.netloc not in ('drive.google.com', 'docs.google.com'):
        return None
    ids = urllib.parse.parse_qs(parts.query).get('id')
    if ids:
        return ids[0]
    segments = parts.path.split('/')
    return segments[segments.index('d') + 1] if 'd' in segments[:-1] else None

def file_problem(path, spec, chunk_size=1 << 20):
    """None if the file at `path` has the size and MD5 of `spec`, else what is wrong with it."""
    size = os.path.getsize(path)
    if size != spec['file_size']:
        return f'size {size} bytes, expected {spec["file_size"]}'
    md5 = hashlib.md5()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(chunk_size), b''):
            md5.update(chunk)
    if md5.hexdigest() != spec['file_md5']:
        return f'MD5 {md5.hexdigest()}, expected {spec["file_md5"]}'
    return None

def fetch(url, path, chunk_size):
    """Write the contents of `url` to `path`; raises on failure."""
    file_id = drive_file_id(url)
    if file_id is not None:
        import gdown
        if gdown.download(id=file_id, output=path, quiet=True) is None:
            raise OSError('Google Drive refused the download (daily quota of this file exceeded?)')
        return
    with urllib.request.urlopen(url, timeout=60) as response, open(path, 'wb') as f:
        shutil.copyfileobj(response, f, chunk_size)

def download_file(spec, num_attempts, chunk_size):
    """Make spec['file_path'] a valid copy; returns 'skipped', 'fetched' or a one-line error."""
    path = spec['file_path']
    if os.path.isfile(path) and file_problem(path, spec) is None:
        return 'skipped'
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    tmp = f'{path}.incomplete-{os.getpid()}'
    problem = None
    for attempt in range(num_attempts):
        if attempt > 0:
            time.sleep(RETRY_DELAY * attempt)
        try:
            fetch(spec['file_url'], tmp, chunk_size)
            problem = file_problem(tmp, spec)
            if problem is None:
                os.replace(tmp, path)
                return 'fetched'
            problem = f'downloaded file has {problem}'
        except Exception as exc:  # Any network or Drive failure is worth another attempt.
            problem = f'download failed ({type(exc).__name__}: {exc})'.replace('\n', ' ')
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return f'{path}: {problem} after {num_attempts} attempt(s); run again to retry'

def download_files(specs, num_threads=32, num_attempts=10, chunk_size=128 << 10, desc='Downloading',
                   status_delay=0.2, timing_window=50):
    """Fetch the files in parallel; returns the one-line errors.

    The progress line is redrawn at most every status_delay seconds; its speed is a moving average whose
    weight matches a window of the last timing_window files."""
    if any(drive_file_id(spec['file_url']) for spec in specs):
        try:
            import gdown  # noqa: F401
        except ImportError:
            fail('the FFHQ files are hosted on Google Drive; downloading them needs gdown: pip install gdown')
    errors = []
    counts = dict(skipped=0, fetched=0)
    total = sum(spec['file_size'] for spec in specs)
    with tqdm(total=total, desc=desc, unit='B', unit_scale=True, unit_divisor=1024, mininterval=status_delay,
              smoothing=2 / (timing_window + 1)) as bar:
        with ThreadPoolExecutor(max_workers=max(num_threads, 1)) as pool:
            futures = {pool.submit(download_file, spec, num_attempts, chunk_size): spec for spec in specs}
            for future in as_completed(futures):
                result = future.result()
                if result in counts:
                    counts[result] += 1
                else:
                    errors.append(result)
                bar.update(futures[future]['file_size'])
                bar.set_postfix(failed=len(errors), refresh=False)
    print(f'{counts["fetched"]} file(s) downloaded, {counts["skipped"]} already valid, {len(errors)} failed')
    return errors

#----------------------------------------------------------------------------

def ensure_metadata(path):
    """Validate (or download) the FFHQ metadata JSON and return it parsed."""
    if path is None:
        path = METADATA['file_path']
        if not (os.path.isfile(path) and file_problem(path, METADATA) is None):
            tmp = f'{path}.incomplete-{os.getpid()}'
            try:
                gdown_download(drive_file_id(METADATA['file_url']), tmp, what=f'the FFHQ metadata ({path})',
                               manual_option='--metadata=PATH')
                problem = file_problem(tmp, METADATA)
                if problem is not None:
                    fail(f'{path}: downloaded file has {problem}; download it by hand and pass --metadata=PATH')
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
    elif not os.path.isfile(path):
        fail(f'{path}: no such file')
    else:
        problem = file_problem(path, METADATA)
        if problem is not None:
            fail(f'{path}: not the FFHQ v2 metadata ({problem})')
    return read_json(path)

def file_specs(metadata, metadata_path, kind, start_index=0, max_images=None):
    """The `kind` file specs ('image', 'thumbnail', 'in_the_wild') of the selected entries, in index order."""
    return [spec for _, spec in select_entries(metadata, metadata_path, SPEC_KEYS, start_index, max_images, kind=kind)]

def human_size(num_bytes):
    for unit in ('B', 'KB', 'MB', 'GB'):
        if num_bytes < 1000:
            return f'{num_bytes:.2f} {unit}'
        num_bytes /= 1000
    return f'{num_bytes:.2f} TB'

def print_stats(metadata, metadata_path):
    """What the metadata lists: entries per category, files and bytes per kind, and the photo licenses."""
    entries = [entry for entry in metadata.values() if isinstance(entry, dict)] if isinstance(metadata, dict) else []
    categories = collections.Counter(str(entry.get('category', 'uncategorised')) for entry in entries)
    print(f'{metadata_path}: {len(entries)} entries ({", ".join(f"{n} {c}" for c, n in sorted(categories.items()))})')
    for kind in FILE_KINDS.values():
        sizes = [entry[kind].get('file_size', 0) for entry in entries if isinstance(entry.get(kind), dict)]
        print(f'  {kind:<12} {len(sizes):>6} file(s) {human_size(sum(sizes)):>12}')
    licenses = collections.Counter(entry['metadata'].get('license') for entry in entries
                                   if isinstance(entry.get('metadata'), dict) and entry['metadata'].get('license'))
    for license_name, count in licenses.most_common():
        print(f'  license: {license_name}: {count}')

def parse_args(argv):
    parser = argparse.ArgumentParser(description='Download (and re-align) the FFHQ images for EG3D.')
    parser.add_argument('-j', '--json', action='store_true', help=f'download {METADATA_FILE} only')
    parser.add_argument('-s', '--stats', action='store_true', help='print statistics about the dataset (from the metadata)')
    parser.add_argument('-i', '--images', action='store_true', help='download the 1024x1024 images (images1024x1024/)')
    parser.add_argument('-t', '--thumbs', action='store_true', help='download the 128x128 thumbnails (thumbnails128x128/)')
    parser.add_argument('-w', '--wilds', action='store_true', help='download the in-the-wild images')
    parser.add_argument('-r', '--tfrecords', action='store_true', help='not available here (the TFRecords are not in the metadata)')
    parser.add_argument('-a', '--align', action='store_true', help='re-align them into realign1500/ (align_ffhq.py)')
    parser.add_argument('--metadata', type=expand_path, default=None, help=f'use this copy of {METADATA_FILE} (MD5-checked)')
    parser.add_argument('--num_threads', type=int, default=32, help='parallel downloads (alignment: processes)')
    parser.add_argument('--status_delay', type=float, default=0.2, help='seconds between progress updates')
    parser.add_argument('--timing_window', type=int, default=50, help='files the download speed estimate averages over')
    parser.add_argument('--chunk_size', type=int, default=128, help='download chunk size in KB')
    parser.add_argument('--num_attempts', type=int, default=10, help='attempts per file')
    parser.add_argument('--start_index', type=int, default=0, help='first metadata entry to process')
    parser.add_argument('--max_images', '--max-images', type=int, default=None, help='process at most N entries')
    args = parser.parse_args(argv)
    tasks = ('json', 'stats', 'images', 'thumbs', 'wilds', 'tfrecords', 'align')
    if not any(getattr(args, task) for task in tasks):
        parser.print_usage(sys.stderr)
        fail('nothing to do: pass --json, --stats, --images, --thumbs, --wilds and/or --align')
    for flag, value, least in [('num_threads', args.num_threads, 1), ('timing_window', args.timing_window, 1),
                               ('chunk_size', args.chunk_size, 1), ('num_attempts', args.num_attempts, 1),
                               ('start_index', args.start_index, 0), ('max_images', args.max_images, 1)]:
        if value is not None and value < least:
            fail(f'--{flag}={value}: must be at least {least}')
    if not args.status_delay >= 0:
        fail(f'--status_delay={args.status_delay}: must be a number of seconds >= 0')
    if args.tfrecords:
        fail('--tfrecords: the FFHQ TFRecords are not listed in ffhq-dataset-v2.json, so this script cannot fetch or '
             'check them (EG3D does not use them); download them with NVlabs/ffhq-dataset\'s download_ffhq.py -r')
    return args

def main(argv=None):
    args = parse_args(argv)
    metadata_path = METADATA['file_path'] if args.metadata is None else args.metadata
    metadata = ensure_metadata(args.metadata)
    if args.stats:
        print_stats(metadata, metadata_path)
    for task, kind in FILE_KINDS.items():
        if not getattr(args, task):
            continue
        specs = file_specs(metadata, metadata_path, kind, args.start_index, args.max_images)
        errors = download_files(specs, num_threads=args.num_threads, num_attempts=args.num_attempts,
                                chunk_size=args.chunk_size << 10, desc=kind, status_delay=args.status_delay,
                                timing_window=args.timing_window)
        for error in errors:
            print(f'Error: {error}', file=sys.stderr)
        if errors:
            fail(f'{len(errors)} of {len(specs)} file(s) are missing or corrupt; run the same command again to resume')
    if args.align:
        align_dataset(metadata, metadata_path, source='.', dest='realign1500',
                      threads=min(args.num_threads, os.cpu_count() or 1), start_index=args.start_index,
                      max_images=args.max_images)

if __name__ == '__main__':
    main()
