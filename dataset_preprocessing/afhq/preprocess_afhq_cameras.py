"""Build EG3D labels for AFHQ-style images from per-image camera rotations.

    python preprocess_afhq_cameras.py --source=DIR [--dest=DIR] [--max_images=N]

<source>/cameras.json maps an image stem to its 3x3 camera rotation (OpenCV axes). The camera sits
2.7 units behind its viewing direction, looking through the origin: cam2world = [R | -2.7 R[:, 2]].
Intrinsics: focal 4.2647, principal point (0.5, 0.5). Writes <stem>_mirror.png (mirrored camera) for
every image and a dataset.json listing originals and mirrors into --dest (default: --source).
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from mirror_dataset import copy_with_mirror, expand_path, fail, mirror_label, mirror_name, read_json, write_json  # noqa: E402

CAMERA_DISTANCE = 2.7
FOCAL = 4.2647  # 2985.29 / 700: the FFHQ focal length in units of the 700-pixel crop.

def afhq_label(rotation):
    rotation = np.asarray(rotation, dtype=np.float64)
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = -CAMERA_DISTANCE * rotation[:, 2]
    intrinsics = np.array([[FOCAL, 0, 0.5], [0, FOCAL, 0.5], [0, 0, 1]])
    return pose.flatten().tolist() + intrinsics.flatten().tolist()

def main(argv=None):
    parser = argparse.ArgumentParser(description='Build dataset.json for AFHQ images from cameras.json rotations.')
    parser.add_argument('--source', type=expand_path, required=True, help='folder with <stem>.png images and cameras.json')
    parser.add_argument('--dest', type=expand_path, default=None, help='output folder (default: --source)')
    parser.add_argument('--max_images', type=int, default=None, help='only the first N cameras')
    args = parser.parse_args(argv)
    dest = args.source if args.dest is None else args.dest
    cameras_path = os.path.join(args.source, 'cameras.json')
    cameras = read_json(cameras_path)
    if not isinstance(cameras, dict):
        fail(f'{cameras_path}: expected {{"<stem>": 3x3 rotation, ...}}')
    os.makedirs(dest, exist_ok=True)

    labels = []
    for i, (stem, rotation) in enumerate(cameras.items()):
        if args.max_images is not None and i >= args.max_images:
            break
        rot = np.array(rotation, dtype=object)
        if rot.shape != (3, 3) or not all(isinstance(x, (int, float)) for x in rot.flat):
            fail(f'{cameras_path}: camera of {stem} is not a 3x3 matrix of numbers')
        name = f'{stem}.png'
        label = afhq_label(rotation)
        copy_with_mirror(args.source, dest, name)  # Originals too, so that --dest is a complete dataset.
        labels += [[name, label], [mirror_name(name), mirror_label(label)]]
    write_json({'labels': labels}, os.path.join(dest, 'dataset.json'))
    print(f'Wrote {len(labels)} label(s) to {os.path.join(dest, "dataset.json")}')

if __name__ == '__main__':
    main()
