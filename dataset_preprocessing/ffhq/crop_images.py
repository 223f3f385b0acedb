"""Crop the realigned FFHQ images with the published cropping parameters.

    python crop_images.py --indir=realign1500 --outdir=final_crops [--compress_level=0]

<indir>/cropping_params.json maps each image file name to lm (5 landmarks, flattened x, y with y
measured downward), lm3d_std (5x3 template), rescale_factor, center_crop_size and output_size.
Needs Deep3DFaceRecon_pytorch's util/preprocess.py (see face_tools.py).
"""

import argparse
import os
import sys

import numpy as np
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from face_tools import crop_face, deep3d_function  # noqa: E402
from mirror_dataset import expand_path, fail, open_image, read_json, refuse_input_folder, save_image  # noqa: E402

PARAM_KEYS = ('lm', 'lm3d_std', 'rescale_factor', 'center_crop_size', 'output_size')

def main(argv=None):
    parser = argparse.ArgumentParser(description='Crop realigned FFHQ images with cropping_params.json.')
    parser.add_argument('--indir', type=expand_path, required=True, help='folder with the images and cropping_params.json')
    parser.add_argument('--outdir', type=expand_path, required=True, help='output folder')
    parser.add_argument('--compress_level', type=int, default=0, help='PNG compression level')
    args = parser.parse_args(argv)
    refuse_input_folder(args.outdir, [args.indir], '--outdir')
    params_path = os.path.join(args.indir, 'cropping_params.json')
    params = read_json(params_path)
    align_img = deep3d_function('preprocess', 'align_img')
    os.makedirs(args.outdir, exist_ok=True)
    for name, p in tqdm(params.items(), desc='Cropping', unit='img'):
        if not all(k in p for k in PARAM_KEYS):
            fail(f'{params_path}: entry {name} lacks one of {", ".join(PARAM_KEYS)}')
        img = open_image(os.path.join(args.indir, name))
        crop = crop_face(img, np.array(p['lm']), np.array(p['lm3d_std'], dtype=np.float32), align_img,
                         rescale_factor=p['rescale_factor'], center_crop_size=int(p['center_crop_size']),
                         output_size=int(p['output_size']))
        save_image(crop, os.path.join(args.outdir, name), compress_level=args.compress_level)

if __name__ == '__main__':
    main()
