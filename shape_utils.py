"""Convert density volumes (.mrc, as written by gen_samples.py --shapes) to iso-surface meshes.

\b
python shape_utils.py out/seed0000.mrc               # -> out/seed0000.ply
python shape_utils.py out/ --level=10 --format=.obj  # every out/*.mrc -> .obj

An .mrc file converts with --level; a directory converts every *.mrc in it (docs/compat.md).
"""

import glob
import os
import sys

import click
import numpy as np
from tqdm import tqdm

import cli
from inference import shape_extraction


def convert_sdf_samples_to_ply(numpy_3d_sdf_tensor, voxel_grid_origin, voxel_size, ply_filename_out, offset=None,
                               scale=None, level=0.0):
    """Marching cubes on a volume (as given, no transpose) -> binary .ply with vertices origin + index * voxel_size,
    then optionally divided by `scale` and shifted by -`offset` (kept for scripts that call it)."""
    import skimage.measure
    volume = np.asarray(numpy_3d_sdf_tensor)
    verts, faces, _normals, _values = skimage.measure.marching_cubes(volume, level=level, spacing=[voxel_size] * 3)
    # Per-axis arithmetic in the vertices' own float32 (no float64 detour), so existing meshes are reproduced.
    points = np.stack([verts[:, axis] + voxel_grid_origin[axis] for axis in range(3)], axis=1).astype(verts.dtype)
    if scale is not None:
        points = points / scale
    if offset is not None:
        points = points - offset
    shape_extraction.write_ply(ply_filename_out, points.astype(np.float32), faces.astype(np.int32))


def convert_mrc(input_filename, output_filename, isosurface_threshold=10):
    """.mrc volume -> mesh in gen_samples' convention (transposed volume, voxel-index coordinates)."""
    volume = shape_extraction.read_mrc(input_filename)
    verts, faces = shape_extraction.extract_mesh(volume, level=isosurface_threshold)
    shape_extraction.write_mesh(output_filename, verts, faces)


@click.command()
@click.argument('input_mrc_path', metavar='INPUT', type=cli.PATH)
@click.option('--level', type=float, default=10, show_default=True, help='The iso-surface threshold')
@click.option('--format', 'mesh_format', type=click.Choice(['.ply', '.obj']), default='.ply', show_default=True,
              help='Mesh file format')
def main(input_mrc_path, level, mesh_format):
    """Convert INPUT (an .mrc file, or a directory of them) to meshes written next to each volume."""
    if os.path.isdir(input_mrc_path):
        inputs = sorted(glob.glob(os.path.join(input_mrc_path, '*.mrc')))
        if not inputs:
            raise click.ClickException(f'{input_mrc_path}: no .mrc files in this directory')
    elif input_mrc_path.lower().endswith('.mrc'):
        if not os.path.isfile(input_mrc_path):
            raise click.ClickException(f'{input_mrc_path}: no such file')
        inputs = [input_mrc_path]
    else:
        raise click.ClickException(f'{input_mrc_path}: expected an .mrc file or a directory of .mrc files')

    for path in tqdm(inputs, disable=len(inputs) == 1, file=sys.stdout):
        output = os.path.splitext(path)[0] + mesh_format
        try:
            convert_mrc(path, output, isosurface_threshold=level)
        except ValueError as err:
            raise click.ClickException(f'{path}: {err}' if not str(err).startswith(path) else str(err))
        print(f'{path} -> {output}')


if __name__ == '__main__':
    main()
