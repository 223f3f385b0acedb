"""Shared pieces of the FFHQ scripts: locating the external tools they need, landmarks and face crops.

External requirements (checked up front, with instructions, by the scripts that need them):
- Deep3DFaceRecon_pytorch (https://github.com/sicxu/Deep3DFaceRecon_pytorch, commit 6ba3d22f), cloned
  into dataset_preprocessing/ffhq/Deep3DFaceRecon_pytorch or pointed to by $DEEP3DFACERECON_DIR. The
  crop scripts use its util/preprocess.py (align_img) and BFM/similarity_Lm3D_all.mat; pose estimation
  also needs its BFM model, the `pretrained` checkpoint (epoch 20) and nvdiffrast.
- mtcnn (pip install mtcnn tensorflow) for the face landmarks of new photos.
"""

import importlib
import os
import sys

import numpy as np
import PIL.Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from mirror_dataset import fail  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEEP3D_REPO = 'https://github.com/sicxu/Deep3DFaceRecon_pytorch'
DEEP3D_COMMIT = '6ba3d22f'
IMAGE_EXTS = ('.png', '.jpg', '.jpeg')

#----------------------------------------------------------------------------

def deep3d_dir():
    return os.environ.get('DEEP3DFACERECON_DIR', os.path.join(HERE, 'Deep3DFaceRecon_pytorch'))

def require_deep3d(models=False):
    """Return the Deep3DFaceRecon checkout, or stop with instructions on what is missing."""
    root = deep3d_dir()
    clone = (f'git clone {DEEP3D_REPO} {root} && git -C {root} checkout {DEEP3D_COMMIT} '
             '(or set DEEP3DFACERECON_DIR to an existing checkout)')
    if not os.path.isfile(os.path.join(root, 'util', 'preprocess.py')):
        fail(f'{root}: Deep3DFaceRecon_pytorch not found; run: {clone}')
    needed = [('BFM/similarity_Lm3D_all.mat', 'part of the Deep3DFaceRecon_pytorch repository; re-clone it')]
    if models:
        needed += [
            ('BFM/01_MorphableModel.mat', 'the Basel Face Model 2009: request it from the BFM website, see Deep3DFaceRecon\'s README'),
            ('BFM/Exp_Pca.bin', 'the expression basis linked from Deep3DFaceRecon\'s README'),
            ('checkpoints/pretrained/epoch_20.pth', 'the pretrained model linked from Deep3DFaceRecon\'s README, renamed folder "pretrained"'),
        ]
    for rel, how in needed:
        if not os.path.isfile(os.path.join(root, rel)):
            fail(f'{os.path.join(root, rel)}: missing ({how})')
    if models:
        try:
            importlib.import_module('nvdiffrast.torch')
        except ImportError:
            fail('Deep3DFaceRecon needs nvdiffrast: pip install git+https://github.com/NVlabs/nvdiffrast (CUDA required)')
    return root

def deep3d_function(module, name):
    """Import util.<module>.<name> from the Deep3DFaceRecon checkout."""
    root = require_deep3d()
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        return getattr(importlib.import_module(f'util.{module}'), name)
    except Exception as exc:
        fail(f'cannot import {name} from {os.path.join(root, "util", module + ".py")} ({exc}); install its requirements '
             '(pip install opencv-python scikit-image scipy)')

def require_mtcnn():
    try:
        return importlib.import_module('mtcnn').MTCNN
    except ImportError as exc:
        fail(f'face detection needs MTCNN: pip install mtcnn tensorflow ({exc})')

#----------------------------------------------------------------------------

def list_images(folder):
    if not os.path.isdir(folder):
        fail(f'{folder}: not a folder')
    return sorted(f for f in os.listdir(folder) if os.path.splitext(f)[1].lower() in IMAGE_EXTS
                  and os.path.isfile(os.path.join(folder, f)))

def read_landmarks(path):
    """Five 'x y' lines (left eye, right eye, nose, left and right mouth corner), y measured downward."""
    try:
        lm = np.loadtxt(path, dtype=np.float32)
    except (OSError, ValueError) as exc:
        fail(f'{path}: cannot read landmarks ({exc})')
    if lm.shape != (5, 2):
        fail(f'{path}: expected 5 lines of "x y", got an array of shape {lm.shape}')
    return lm

def crop_face(img, lm, lm3d_std, align_img, rescale_factor, center_crop_size, output_size, target_size=1024):
    """Deep3DFaceRecon alignment into a target_size window, then a centred crop resized to output_size."""
    lm = np.array(lm, dtype=np.float32).reshape(-1, 2)
    lm[:, 1] = img.size[1] - 1 - lm[:, 1]  # align_img expects y pointing up.
    _, aligned, _, _ = align_img(img, lm, lm3d_std, target_size=float(target_size), rescale_factor=rescale_factor)
    left = int(aligned.size[0] / 2 - center_crop_size / 2)
    top = int(aligned.size[1] / 2 - center_crop_size / 2)
    crop = aligned.crop((left, top, left + center_crop_size, top + center_crop_size))
    return crop.resize((output_size, output_size), PIL.Image.LANCZOS)
