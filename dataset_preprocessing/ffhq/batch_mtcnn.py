"""Detect five facial landmarks in every photo of a folder with MTCNN.

    python batch_mtcnn.py --in_root=DIR

For each image the largest face (box width + height) detected with confidence > 0.9 is kept and its
landmarks are written to DIR/detections/<stem>.txt as five 'x y' lines: left eye, right eye, nose,
left and right mouth corner. Images without a confident face get no file. Needs `pip install mtcnn tensorflow`.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from face_tools import list_images, require_mtcnn  # noqa: E402
from mirror_dataset import expand_path, open_image  # noqa: E402

MIN_CONFIDENCE = 0.9
KEYPOINTS = ('left_eye', 'right_eye', 'nose', 'mouth_left', 'mouth_right')

def pick_face(faces):
    """The largest confident face (by box width + height), or None."""
    faces = [f for f in faces if f['confidence'] > MIN_CONFIDENCE]
    if not faces:
        return None
    return max(faces, key=lambda f: f['box'][2] + f['box'][3])

def main(argv=None):
    parser = argparse.ArgumentParser(description='Write MTCNN facial landmarks for every photo in a folder.')
    parser.add_argument('--in_root', type=expand_path, default='', help='folder with the photos')
    args = parser.parse_args(argv)
    root = args.in_root or '.'
    names = list_images(root)
    detector = require_mtcnn()()
    out_dir = os.path.join(root, 'detections')
    os.makedirs(out_dir, exist_ok=True)
    found = 0
    for fname in names:
        img = np.array(open_image(os.path.join(root, fname)).convert('RGB'))
        face = pick_face(detector.detect_faces(img))
        if face is None:
            print(f'No confident face in {fname}')
            continue
        lines = [f'{face["keypoints"][k][0]} {face["keypoints"][k][1]}' for k in KEYPOINTS]
        with open(os.path.join(out_dir, os.path.splitext(fname)[0] + '.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
        found += 1
    print(f'Landmarks for {found} of {len(names)} image(s) in {out_dir}')

if __name__ == '__main__':
    main()
