"""Convert Deep3DFaceRecon coefficients (.mat files) into cameras.json (cam2world in pixels of a 1024 crop).

    python 3dface2idr_mat.py --in_root=RESULTS_DIR --out_path=DIR/crop/cameras.json

Per <stem>.mat (keys angle = 3 Euler angles in radians, trans = 3 numbers): R = (Rz Ry Rx)^T, the
face rotation of Deep3DFaceRecon; t = trans with 10 subtracted from z (its camera sits at z = 10).
Camera centre c = -R t, scaled by 0.27 and shifted by (0, 0.006, 0.161) into EG3D's head frame;
rotation R diag(1, -1, -1) (OpenGL -> OpenCV axes); intrinsics focal 2985.29, principal point (512, 512).
"""

import argparse
import os
import sys

import numpy as np
import scipy.io

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from mirror_dataset import expand_path, fail, write_json  # noqa: E402

CAMERA_DISTANCE = 10.0              # Deep3DFaceRecon's camera position on the z axis.
SCALE = 0.27                        # Deep3DFaceRecon units -> EG3D units.
OFFSET = np.array([0, 0.006, 0.161])
FOCAL_PX = 2985.29                  # For a 1024-pixel crop.
CENTER_PX = 512.0

def euler_rotation(angle):
    """(Rz Ry Rx)^T for angles (x, y, z): the matrix Deep3DFaceRecon applies to the face as row vectors."""
    x, y, z = angle
    rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    return (rz @ ry @ rx).T

def camera_from_coeffs(angle, trans):
    rot = euler_rotation(np.asarray(angle, dtype=np.float64).reshape(3))
    t = np.asarray(trans, dtype=np.float64).reshape(3).copy()
    t[2] -= CAMERA_DISTANCE
    center = -rot @ t * SCALE + OFFSET
    pose = np.eye(4)
    pose[:3, :3] = rot @ np.diag([1.0, -1.0, -1.0])
    pose[:3, 3] = center
    intrinsics = np.array([[FOCAL_PX, 0, CENTER_PX], [0, FOCAL_PX, CENTER_PX], [0, 0, 1]])
    return pose, intrinsics

def main(argv=None):
    parser = argparse.ArgumentParser(description='Deep3DFaceRecon .mat coefficients -> cameras.json')
    parser.add_argument('--in_root', type=expand_path, default='', help='folder with the .mat files')
    parser.add_argument('--out_path', type=expand_path, default='cameras.json', help='output cameras.json')
    args = parser.parse_args(argv)
    root = args.in_root or '.'
    if not os.path.isdir(root):
        fail(f'{root}: not a folder (expected Deep3DFaceRecon results)')
    cameras = {}
    for fname in sorted(f for f in os.listdir(root) if f.endswith('.mat')):
        path = os.path.join(root, fname)
        try:
            coeffs = scipy.io.loadmat(path)
        except Exception as exc:
            fail(f'{path}: cannot read ({exc})')
        if 'angle' not in coeffs or 'trans' not in coeffs:
            fail(f'{path}: no "angle"/"trans" coefficients')
        pose, intrinsics = camera_from_coeffs(coeffs['angle'], coeffs['trans'])
        cameras[os.path.splitext(fname)[0] + '.png'] = {'intrinsics': intrinsics.tolist(), 'pose': pose.tolist()}
    if not cameras:
        fail(f'{root}: no .mat files found')
    os.makedirs(os.path.dirname(args.out_path) or '.', exist_ok=True)
    write_json(cameras, args.out_path, indent=4)
    print(f'Wrote {len(cameras)} camera(s) to {args.out_path}')

if __name__ == '__main__':
    main()
