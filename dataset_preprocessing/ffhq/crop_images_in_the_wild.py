"""Crop new face photos the way EG3D's FFHQ crops were made (fixed parameters).

    python crop_images_in_the_wild.py --indir=DIR

Uses the landmarks of batch_mtcnn.py (DIR/detections/<stem>.txt) and writes DIR/crop/<stem>.png:
alignment into a 1024 window with rescale factor 300, centre crop 700, resized to 512.
Needs Deep3DFaceRecon_pytorch (util/preprocess.py, util/load_mats.py; see face_tools.py).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from face_tools import crop_face, deep3d_dir, deep3d_function, list_images, read_landmarks  # noqa: E402
from mirror_dataset import open_image, save_image  # noqa: E402

TARGET_SIZE = 1024
RESCALE_FACTOR = 300
CENTER_CROP_SIZE = 700
OUTPUT_SIZE = 512

def main(argv=None):
    parser = argparse.ArgumentParser(description='Crop face photos for EG3D using MTCNN landmarks.')
    parser.add_argument('--indir', type=str, required=True, help='folder with the photos and detections/')
    args = parser.parse_args(argv)
    align_img = deep3d_function('preprocess', 'align_img')
    load_lm3d = deep3d_function('load_mats', 'load_lm3d')
    lm3d_std = load_lm3d(os.path.join(deep3d_dir(), 'BFM'))
    count = 0
    for fname in list_images(args.indir):
        stem = os.path.splitext(fname)[0]
        lm_path = os.path.join(args.indir, 'detections', f'{stem}.txt')
        if not os.path.isfile(lm_path):
            print(f'Skipping {fname}: no face detected ({lm_path} missing)')
            continue
        img = open_image(os.path.join(args.indir, fname)).convert('RGB')
        crop = crop_face(img, read_landmarks(lm_path), lm3d_std, align_img, rescale_factor=RESCALE_FACTOR,
                         center_crop_size=CENTER_CROP_SIZE, output_size=OUTPUT_SIZE, target_size=TARGET_SIZE)
        save_image(crop, os.path.join(args.indir, 'crop', f'{stem}.png'))
        count += 1
    print(f'Cropped {count} image(s) into {os.path.join(args.indir, "crop")}')

if __name__ == '__main__':
    main()
