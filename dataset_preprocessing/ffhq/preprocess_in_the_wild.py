"""Crop new face photos and estimate EG3D camera labels for them (e.g. for inversion).

    python preprocess_in_the_wild.py --indir=/abs/path/to/photos --outdir=/abs/path/to/crops

Steps: MTCNN landmarks (batch_mtcnn.py) -> Deep3DFaceRecon pose estimation (its test.py, pretrained
epoch 20, GPU) -> crops (crop_images_in_the_wild.py) -> cameras.json (3dface2idr_mat.py) ->
--outdir with crops, mirrors and dataset.json (preprocess_face_cameras.py --mode=orig); the intermediate files
go to <indir>/detections and <indir>/crop. An --outdir that is the photo folder (or its crop/) is refused, so
the photos are never replaced. All external requirements are checked before anything runs, and a failing step
stops the pipeline.
"""

import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from face_tools import list_images, require_deep3d, require_mtcnn  # noqa: E402
from mirror_dataset import fail, refuse_input_folder  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

def run(cmd, cwd=None):
    print('Running:', ' '.join(cmd))
    if subprocess.run(cmd, cwd=cwd).returncode != 0:
        fail(f'step failed: {" ".join(cmd)}')

def main(argv=None):
    parser = argparse.ArgumentParser(description='Crop face photos and estimate EG3D camera labels.')
    parser.add_argument('--indir', type=str, required=True, help='folder with the photos')
    parser.add_argument('--outdir', type=str, default=None,
                        help='output folder (default, as the original: ./<name of --indir> in the working folder)')
    args = parser.parse_args(argv)
    indir = os.path.abspath(args.indir)  # Deep3DFaceRecon runs in its own folder.
    name = os.path.basename(indir.rstrip('/'))
    outdir = os.path.abspath(args.outdir if args.outdir is not None else name)
    refuse_input_folder(outdir, [indir, os.path.join(indir, 'crop')], '--outdir')
    if not list_images(indir):
        fail(f'{indir}: no .png/.jpg/.jpeg images found')
    require_mtcnn()
    deep3d = require_deep3d(models=True)
    py = sys.executable
    run([py, os.path.join(HERE, 'batch_mtcnn.py'), f'--in_root={indir}'])
    run([py, 'test.py', f'--img_folder={indir}', '--gpu_ids=0', '--name=pretrained', '--epoch=20'], cwd=deep3d)
    run([py, os.path.join(HERE, 'crop_images_in_the_wild.py'), f'--indir={indir}'])
    results = os.path.join(deep3d, 'checkpoints', 'pretrained', 'results', name, 'epoch_20_000000')
    run([py, os.path.join(HERE, '3dface2idr_mat.py'), f'--in_root={results}', f'--out_path={os.path.join(indir, "crop", "cameras.json")}'])
    run([py, os.path.join(HERE, 'preprocess_face_cameras.py'), f'--source={os.path.join(indir, "crop")}',
         f'--dest={outdir}', '--mode=orig'])

if __name__ == '__main__':
    main()
