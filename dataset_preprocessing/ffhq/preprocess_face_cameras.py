"""Turn cameras.json from 3dface2idr_mat.py into an EG3D dataset folder with mirrored images.

    python preprocess_face_cameras.py --source=DIR/crop --dest=OUT [--max_images=N] [--mode=orig|cor]

Camera centres are put at distance 2.7: mode orig scales t to length 2.7 around the origin (used for
EG3D's FFHQ labels), mode cor around (0, 0, 0.175). Intrinsics become focal 2985.29/700 = 4.2647
(the 700-pixel centre crop) and principal point (0.5, 0.5). Writes each image, its mirror
(<stem>_mirror<ext>) and dataset.json listing both to --dest.
"""

import argparse
import os
import sys

import numpy as np
import PIL.Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from mirror_dataset import (  # noqa: E402
    expand_path,
    fail,
    mirror_label,
    mirror_name,
    open_image,
    read_json,
    refuse_input_folder,
    save_image,
    write_json,
)

CAMERA_DISTANCE = 2.7
COR_CENTER = np.array([0, 0, 0.175])
FOCAL = 2985.29 / 700

def fix_pose(pose, mode):
    pose = np.array(pose, dtype=np.float64).reshape(4, 4)
    t = pose[:3, 3]
    if mode == 'orig':
        pose[:3, 3] = CAMERA_DISTANCE * t / np.linalg.norm(t)
    else:
        pose[:3, 3] = COR_CENTER + CAMERA_DISTANCE * (t - COR_CENTER) / np.linalg.norm(t - COR_CENTER)
    return pose

def face_label(camera, mode, where):
    if not isinstance(camera, dict):
        fail(f'{where}: expected {{"intrinsics": 3x3, "pose": 4x4}}')
    intrinsics = np.asarray(camera.get('intrinsics'), dtype=np.float64)
    pose = np.asarray(camera.get('pose'), dtype=np.float64)
    if intrinsics.shape != (3, 3) or pose.shape != (4, 4):
        fail(f'{where}: expected a 3x3 "intrinsics" and a 4x4 "pose"')
    if intrinsics[0, 1] != 0 or not np.array_equal(intrinsics[2], [0, 0, 1]):
        fail(f'{where}: intrinsics must have zero skew and a last row of 0 0 1')
    normalised = np.array([[FOCAL, 0, 0.5], [0, FOCAL, 0.5], [0, 0, 1]])
    return fix_pose(pose, mode).flatten().tolist() + normalised.flatten().tolist()

def main(argv=None):
    parser = argparse.ArgumentParser(description='cameras.json -> EG3D dataset folder with mirrored images.')
    parser.add_argument('--source', type=expand_path, required=True, help='folder with the crops and cameras.json')
    parser.add_argument('--dest', type=expand_path, required=True, help='output folder')
    parser.add_argument('--max_images', type=int, default=None, help='only the first N cameras')
    parser.add_argument('--mode', type=str, default='orig', choices=['orig', 'cor'], help='how to place cameras at distance 2.7')
    args = parser.parse_args(argv)
    refuse_input_folder(args.dest, [args.source], '--dest')
    cameras_path = os.path.join(args.source, 'cameras.json')
    cameras = read_json(cameras_path)
    if not isinstance(cameras, dict):
        fail(f'{cameras_path}: expected {{"<image name>": {{"intrinsics": ..., "pose": ...}}, ...}}')
    os.makedirs(args.dest, exist_ok=True)
    labels = []
    for i, (name, camera) in enumerate(cameras.items()):
        if args.max_images is not None and i >= args.max_images:
            break
        label = face_label(camera, args.mode, f'{cameras_path}: {name}')
        img = open_image(os.path.join(args.source, name))
        save_image(img, os.path.join(args.dest, name))
        save_image(img.transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT), os.path.join(args.dest, mirror_name(name)))
        labels += [[name, label], [mirror_name(name), mirror_label(label)]]
    write_json({'labels': labels}, os.path.join(args.dest, 'dataset.json'))
    print(f'Wrote {len(labels)} label(s) to {os.path.join(args.dest, "dataset.json")}')

if __name__ == '__main__':
    main()
