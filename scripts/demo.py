"""The whole pipeline on a built-in toy problem: dataset -> training -> samples, shape, video.

Runs the repository's own command-line tools one after another, as a user would:
make_procedural_dataset.py -> dataset_tool.py -> train.py -> gen_samples.py -> gen_videos.py.

    python scripts/demo.py                  # a few minutes on a laptop CPU, faster on a GPU
    python scripts/demo.py --size=smoke     # the smallest run, for CI
"""

import glob
import os
import shutil
import subprocess
import sys
import time

import click

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import cli  # noqa: E402

# Everything that makes the run small lives here; the tools themselves run with their usual flags.
SIZES = {
    'default': dict(images=512, kimg=0.4, tick=0.04, snap=5, batch=4, cbase=4096, cmax=32, nrr=32, depth=12,
                    samples=3, shape_res=128, video_seeds=2, w_frames=24),
    'smoke': dict(images=32, kimg=0.02, tick=0.01, snap=1, batch=4, cbase=1024, cmax=8, nrr=16, depth=6,
                  samples=1, shape_res=32, video_seeds=2, w_frames=2),
}
RESOLUTION = 128  # smallest resolution with a super-resolution module of the original (SuperresolutionHybrid2X)


def run(step: str, args: list) -> None:
    print(f'\n=== {step}\n$ {" ".join(args)}', flush=True)
    start = time.time()
    result = subprocess.run([sys.executable] + args, cwd=ROOT)
    if result.returncode != 0:
        raise click.ClickException(f'{step} failed (exit code {result.returncode}); see the output above')
    print(f'--- {step}: done in {time.time() - start:.0f} s', flush=True)


@click.command()
@click.option('--outdir', help='Where everything is written', type=cli.PATH, default=os.path.join(ROOT, 'demo_out'),
              show_default=True, metavar='DIR')
@click.option('--size', help='How much work to do', type=click.Choice(sorted(SIZES)), default='default',
              show_default=True)
@click.option('--fresh/--keep', help='Delete the output folder of an earlier demo first', default=True,
              show_default=True)
def main(outdir, size, fresh):
    """Make a toy 3D dataset, train a tiny EG3D on it, and render samples, a shape and a video."""
    cfg = SIZES[size]
    outdir = os.path.abspath(outdir)
    if fresh and os.path.isdir(outdir):
        shutil.rmtree(outdir)
    os.makedirs(outdir, exist_ok=True)
    images_dir = os.path.join(outdir, 'toys')
    dataset_zip = os.path.join(outdir, f'toys_{RESOLUTION}.zip')
    runs_dir = os.path.join(outdir, 'training-runs')
    samples_dir = os.path.join(outdir, 'samples')
    video_dir = os.path.join(outdir, 'video')

    run('Render a procedural multi-view dataset', [
        'dataset_preprocessing/procedural/make_procedural_dataset.py', f'--outdir={images_dir}',
        f'--count={cfg["images"]}', f'--res={RESOLUTION}'])
    run('Pack it with dataset_tool.py (and check the camera labels)', [
        'dataset_tool.py', f'--source={images_dir}', f'--dest={dataset_zip}'])
    run('Train a tiny EG3D (shapenet preset)', [
        'train.py', f'--outdir={runs_dir}', '--cfg=shapenet', f'--data={dataset_zip}', '--gpus=1',
        f'--batch={cfg["batch"]}', '--gamma=0.3', f'--cbase={cfg["cbase"]}', f'--cmax={cfg["cmax"]}',
        f'--neural_rendering_resolution_initial={cfg["nrr"]}', f'--depth-resolution={cfg["depth"]}',
        f'--depth-resolution-importance={cfg["depth"]}', f'--kimg={cfg["kimg"]}', f'--tick={cfg["tick"]}',
        f'--snap={cfg["snap"]}', '--metrics=none', '--workers=1', '--blur_fade_kimg=1', '--grid=4x2'])

    snapshots = sorted(glob.glob(os.path.join(runs_dir, '*', 'network-snapshot-*.pkl')))
    if not snapshots:
        raise click.ClickException(f'training wrote no snapshot under {runs_dir}')
    network = snapshots[-1]

    run('Render samples and a shape with gen_samples.py', [
        'gen_samples.py', f'--network={network}', f'--seeds=0-{cfg["samples"] - 1}', f'--outdir={samples_dir}',
        '--shapes=True', f'--shape-res={cfg["shape_res"]}'])
    run('Render an orbit video with gen_videos.py', [
        'gen_videos.py', f'--network={network}', f'--seeds=0-{cfg["video_seeds"] - 1}', f'--outdir={video_dir}',
        f'--w-frames={cfg["w_frames"]}', '--sample_mult=1'])

    print('\nDemo finished. A few CPU minutes show the whole pipeline working, not image quality: for that,')
    print('train longer (raise --kimg in SIZES or run train.py yourself, ideally on a GPU). Results:')
    print(f'  dataset       {dataset_zip}')
    print(f'  training run  {os.path.dirname(network)}  (log.txt, stats.jsonl, image grids, TensorBoard events)')
    print(f'  snapshot      {network}')
    print(f'  samples       {samples_dir}  (seedNNNN.png: three views each; seedNNNN.mrc: density volume, view it in ChimeraX or convert it with shape_utils.py)')
    print(f'  video         {os.path.join(video_dir, "interpolation.mp4")}')


if __name__ == '__main__':
    main()
