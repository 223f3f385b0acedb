"""Build cars_128.zip (EG3D's ShapeNet cars dataset) from the SRN cars_train renderings.

    python run_me.py [--source=cars_train.zip|cars_train/] [--dest=cars_128.zip]

Without --source, cars_train.zip is downloaded from Google Drive (needs `pip install gdown`).
Every step must succeed before the next one runs.
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from mirror_dataset import expand_path, extract_zip, fail, gdown_download, run_step  # noqa: E402

CARS_TRAIN_GDRIVE_ID = '1bThUNtIHx4xEQyffVBSf82ABDDh2HlFn'
HERE = os.path.dirname(os.path.abspath(__file__))
DATASET_TOOL = os.path.join(HERE, '..', '..', 'dataset_tool.py')

def find_cars_train(root):
    """The folder that holds the <scene>/rgb folders (the zip has a cars_train/ top folder)."""
    for candidate in (os.path.join(root, 'cars_train'), root):
        if os.path.isdir(candidate) and any(os.path.isdir(os.path.join(candidate, s, 'rgb')) for s in os.listdir(candidate)):
            return candidate
    fail(f'{root}: no cars_train/<scene>/rgb folders found')

def main(argv=None):
    parser = argparse.ArgumentParser(description='Build cars_128.zip from the SRN ShapeNet cars renderings.')
    parser.add_argument('--source', type=expand_path, default=None, help='cars_train.zip or an unpacked cars_train folder (default: download)')
    parser.add_argument('--dest', type=expand_path, default='cars_128.zip', help='output zip (default: cars_128.zip)')
    args = parser.parse_args(argv)
    if os.path.exists(args.dest):
        fail(f'{args.dest}: destination already exists')
    with tempfile.TemporaryDirectory() as workdir:
        source = args.source
        if source is None:
            source = os.path.join(workdir, 'cars_train.zip')
            gdown_download(CARS_TRAIN_GDRIVE_ID, source, what='cars_train.zip', manual_option='--source=PATH')
        if os.path.isfile(source):
            print(f'Unpacking {source}...')
            extract_zip(source, workdir)
            source = find_cars_train(workdir)
        elif os.path.isdir(source):
            source = find_cars_train(source)
        else:
            fail(f'{source}: no such file or directory')
        run_step([sys.executable, os.path.join(HERE, 'preprocess_shapenet_cameras.py'), f'--source={source}'])
        run_step([sys.executable, DATASET_TOOL, f'--source={source}', f'--dest={args.dest}', '--resolution=128x128'])

if __name__ == '__main__':
    main()
