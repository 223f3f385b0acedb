"""Turn SRN ShapeNet renderings into EG3D camera labels.

    python preprocess_shapenet_cameras.py --source=cars_train [--max_images=N]

Input layout: <source>/<scene>/rgb/<frame>.png, <scene>/pose/<frame>.txt (16 numbers: the 4x4
cam2world, row-major, OpenCV axes, used as is) and <scene>/intrinsics.txt (first line: f cx cy ...,
in pixels of the 512x512 renders). Writes <source>/cameras.json and <source>/dataset.json with labels
keyed '<scene>/rgb/<frame>.png' (cam2world followed by the intrinsics divided by 512).
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from mirror_dataset import expand_path, fail, write_json  # noqa: E402

SRN_RENDER_SIZE = 512  # SRN focal lengths and principal points refer to 512x512 renders.

#----------------------------------------------------------------------------

def read_numbers(path, count, first_line_only=False):
    try:
        with open(path) as f:
            text = f.readline() if first_line_only else f.read()
    except FileNotFoundError:
        fail(f'{path}: no such file')
    try:
        values = [float(x) for x in text.split()]
    except ValueError:
        fail(f'{path}: expected numbers, got {text.strip()[:60]!r}')
    if len(values) < count or (not first_line_only and len(values) != count):
        fail(f'{path}: expected {count} numbers, found {len(values)}')
    if not np.all(np.isfinite(values)):
        fail(f'{path}: contains NaN or infinity')
    return values[:count]

def scene_intrinsics(scene_dir):
    f, cx, cy = read_numbers(os.path.join(scene_dir, 'intrinsics.txt'), 3, first_line_only=True)
    f, cx, cy = f / SRN_RENDER_SIZE, cx / SRN_RENDER_SIZE, cy / SRN_RENDER_SIZE
    return np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]])

def collect_cameras(source, max_images=None):
    """Returns {'<scene>/rgb/<frame>.png': dict(pose=4x4, intrinsics=3x3, scene-name=scene)} in scene/frame order."""
    cameras = {}
    scenes = sorted(s for s in os.listdir(source) if os.path.isdir(os.path.join(source, s, 'rgb')))
    if not scenes:
        fail(f'{source}: no <scene>/rgb/ folders found (expected the SRN cars_train layout)')
    for scene in scenes:
        scene_dir = os.path.join(source, scene)
        intrinsics = scene_intrinsics(scene_dir)
        for frame in sorted(f for f in os.listdir(os.path.join(scene_dir, 'rgb')) if f.lower().endswith('.png')):
            if max_images is not None and len(cameras) >= max_images:
                return cameras
            # Built from the folder layout, so roots whose names contain 'rgb' or 'png' work too.
            pose_path = os.path.join(scene_dir, 'pose', os.path.splitext(frame)[0] + '.txt')
            pose = np.array(read_numbers(pose_path, 16)).reshape(4, 4)
            cameras[f'{scene}/rgb/{frame}'] = {'pose': pose.tolist(), 'intrinsics': intrinsics.tolist(), 'scene-name': scene}
    return cameras

def main(argv=None):
    parser = argparse.ArgumentParser(description='Build dataset.json camera labels for SRN ShapeNet renderings.')
    parser.add_argument('--source', type=expand_path, required=True, help='cars_train folder')
    parser.add_argument('--max_images', type=int, default=None, help='only the first N images')
    args = parser.parse_args(argv)
    if not os.path.isdir(args.source):
        fail(f'{args.source}: not a folder')
    cameras = collect_cameras(args.source, args.max_images)
    labels = [[name, np.array(cam['pose']).flatten().tolist() + np.array(cam['intrinsics']).flatten().tolist()]
              for name, cam in cameras.items()]
    write_json(cameras, os.path.join(args.source, 'cameras.json'), indent=4)
    write_json({'labels': labels}, os.path.join(args.source, 'dataset.json'), indent=4)
    print(f'Wrote labels for {len(labels)} image(s) to {os.path.join(args.source, "dataset.json")}')

if __name__ == '__main__':
    main()
