"""Build the AFHQv2-cats dataset used by EG3D from the StarGAN-v2 AFHQ zip.

    python runme.py afhq.zip [processed_afhq.zip] [--labels=dataset.json]

Steps: unpack train/cat, fetch the published camera labels (dataset.json; downloaded with gdown
unless --labels is given), add mirrored images and cameras (mirror_dataset.py), then dataset_tool.py
at 512x512. Each step must succeed before the next one runs.
"""

import argparse
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from mirror_dataset import expand_path, extract_zip, fail, gdown_download, run_step  # noqa: E402

LABELS_GDRIVE_ID = '1FQXQ26kAgRyN2iOH8CBl3P9CGPIQ5TAQ'
HERE = os.path.dirname(os.path.abspath(__file__))
MIRROR_TOOL = os.path.join(HERE, '..', 'mirror_dataset.py')
DATASET_TOOL = os.path.join(HERE, '..', '..', 'dataset_tool.py')

def find_cat_folder(root):
    for folder, dirs, _files in os.walk(root):
        if os.path.basename(folder) == 'train' and 'cat' in dirs:
            return os.path.join(folder, 'cat')
    fail('the AFHQ zip has no train/cat folder')

def fetch_labels(dest_path, labels):
    if labels is not None:
        if not os.path.isfile(labels):
            fail(f'{labels}: no such file')
        shutil.copyfile(labels, dest_path)
    else:
        gdown_download(LABELS_GDRIVE_ID, dest_path, what='the AFHQ dataset.json', manual_option='--labels=PATH')

def main(argv=None):
    parser = argparse.ArgumentParser(description='Build the EG3D AFHQ cats dataset from the StarGAN-v2 AFHQ zip.')
    parser.add_argument('inzip', type=expand_path, help='StarGAN-v2 afhq.zip')
    parser.add_argument('outzip', type=expand_path, nargs='?', default='processed_afhq.zip', help='output (default: processed_afhq.zip)')
    parser.add_argument('--labels', type=expand_path, default=None, help='local copy of the published dataset.json')
    args = parser.parse_args(argv)
    if not os.path.isfile(args.inzip):
        fail(f'{args.inzip}: no such file')
    if os.path.exists(args.outzip):
        fail(f'{args.outzip}: destination already exists')
    with tempfile.TemporaryDirectory() as workdir:
        print(f'Unpacking {args.inzip}...')
        extract_zip(args.inzip, os.path.join(workdir, 'afhq'))
        cats = find_cat_folder(os.path.join(workdir, 'afhq'))
        fetch_labels(os.path.join(cats, 'dataset.json'), args.labels)
        mirrored = os.path.join(workdir, 'mirrored_images')
        run_step([sys.executable, MIRROR_TOOL, f'--source={cats}', f'--dest={mirrored}'])
        run_step([sys.executable, DATASET_TOOL, f'--source={mirrored}', f'--dest={args.outzip}', '--resolution=512x512'])

if __name__ == '__main__':
    main()
