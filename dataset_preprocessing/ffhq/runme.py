"""Build FFHQ_512.zip, EG3D's FFHQ dataset (512x512 crops, originals + mirrors, camera labels).

    python runme.py        (run inside dataset_preprocessing/ffhq)

Steps: realign1500/ -> cropping_params.json -> crop_images.py -> mirror_dataset.py -> published dataset.json
-> dataset_tool.py. realign1500/ holds the FFHQ in-the-wild images re-aligned with the FFHQ landmark
alignment, quad enlarged 1.8x, 1500x1500, named <index:05d>.png (<thousands:05d>/ subfolders are flattened).
When it is missing it is built here: download_ffhq.py --wilds fetches the metadata and the in-the-wild images
(about 1 TB from Google Drive, MD5-checked and resumable), align_ffhq.py re-aligns them. Downloads use
gdown; crops need Deep3DFaceRecon_pytorch's code (face_tools.py). Both are checked before anything starts.
Steps whose output exists are skipped; a failing step stops the script, and running it again resumes.
"""

import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from face_tools import list_images, require_deep3d  # noqa: E402
from mirror_dataset import fail  # noqa: E402
from mirror_dataset import run_step as run

HERE = os.path.dirname(os.path.abspath(__file__))
CROPPING_PARAMS_ID = '1KdVf2lIepGECRaANGhfuR7mDpJ5nfb9K'
LABELS_ID = '14mzYD1DxUjh7BGgeWKgXtLHWwvr-he1Z'

def gdown_fetch(file_id, path):
    if os.path.isfile(path):
        return
    import gdown
    if gdown.download(id=file_id, output=path, quiet=False) is None:
        fail(f'download of {path} failed; fetch Google Drive file {file_id} by hand and put it there')

def flatten(folder):
    """Move <folder>/<5 digits>/<name>.png up into <folder>/."""
    for sub in sorted(os.listdir(folder)):
        path = os.path.join(folder, sub)
        if os.path.isdir(path) and sub.isdigit() and len(sub) == 5:
            for fname in os.listdir(path):
                shutil.move(os.path.join(path, fname), os.path.join(folder, fname))
            os.rmdir(path)

def main():
    os.chdir(HERE)
    if os.path.exists('FFHQ_512.zip'):
        fail(f'{os.path.join(HERE, "FFHQ_512.zip")}: already exists')
    require_deep3d()
    try:
        import gdown  # noqa: F401
    except ImportError:
        fail('the FFHQ images, the cropping parameters and the labels are downloaded with gdown: pip install gdown')

    py = sys.executable
    if not os.path.isdir('realign1500'):
        print('realign1500/ not found: building it from the FFHQ in-the-wild images')
        run([py, 'download_ffhq.py', '--wilds'])
        run([py, 'align_ffhq.py', '--source=.', '--dest=realign1500.incomplete', '--threads=16'])
        os.rename('realign1500.incomplete', 'realign1500')
    flatten('realign1500')
    if not list_images('realign1500'):
        fail('realign1500: no images found')
    gdown_fetch(CROPPING_PARAMS_ID, os.path.join('realign1500', 'cropping_params.json'))
    if not os.path.isdir('final_crops'):
        run([py, 'crop_images.py', '--indir=realign1500', '--outdir=final_crops.incomplete'])
        os.rename('final_crops.incomplete', 'final_crops')
    if not os.path.isfile(os.path.join('final_crops', 'dataset.json')):
        run([py, os.path.join('..', 'mirror_dataset.py'), '--source=final_crops'])
        gdown_fetch(LABELS_ID, os.path.join('final_crops', 'dataset.json'))
    run([py, os.path.join('..', '..', 'dataset_tool.py'), '--source=final_crops', '--dest=FFHQ_512.zip', '--resolution=512x512'])

if __name__ == '__main__':
    main()
