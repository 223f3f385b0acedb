"""Shape extraction helpers (inference/shape_extraction.py) and the shape_utils.py converter, on analytic densities."""

import os

import mrcfile
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import read_ply

import shape_utils
from inference import shape_extraction

CENTER = np.array([0.1, -0.05, 0.08])
RADIUS = 0.3


def sphere_sample_fn(coordinates, directions):
    """Density 10 on a sphere, higher inside; colour features = position + 0.5 (so colours encode positions)."""
    assert coordinates.shape == directions.shape and torch.all(directions[..., 2] == -1)
    offset = coordinates - torch.as_tensor(CENTER, dtype=torch.float32)
    sigma = 10 + 100 * (RADIUS - offset.norm(dim=-1, keepdim=True))
    rgb = torch.cat([coordinates + 0.5, torch.zeros([*coordinates.shape[:2], 29])], dim=-1)
    return dict(sigma=sigma, rgb=rgb)


def sphere_volume(N, cube_length=1.0, chunk_size=5000):
    sigmas = shape_extraction.sample_density_grid(sphere_sample_fn, N, cube_length, chunk_size=chunk_size,
                                                  progress=False)
    return shape_extraction.finish_volume(sigmas, pad=int(30 * N / 256), pad_value=-1000)


# ----------------------------------------------------------------------------


def test_grid_coordinates_follow_the_released_layout():
    # N = 4, n = 5 -> k = 1, j = 5/4 mod 4 = 1.25, i = 5/16 mod 4 = 0.3125 (true division quirk).
    voxel = 2.0 / 3
    coords = shape_extraction.grid_coordinates(5, 6, 4, 2.0)
    assert coords.shape == (1, 1, 3)
    assert torch.allclose(coords[0, 0], torch.tensor([0.3125, 1.25, 1.0]) * voxel - 1, atol=1e-6)
    # N = 512: the flat index 2^24 + 1 is itself rounded to 2^24 in float32 on the slow axes.
    coords = shape_extraction.grid_coordinates(2 ** 24 + 1, 2 ** 24 + 2, 512, 1.0)
    assert torch.allclose(coords[0, 0], torch.tensor([64.0, 0.0, 1.0]) / 511 - 0.5, atol=1e-6)
    # Chunked evaluation gives the same points as one pass.
    whole = shape_extraction.grid_coordinates(0, 6 ** 3, 6, 1.6)
    parts = torch.cat([shape_extraction.grid_coordinates(a, min(a + 50, 216), 6, 1.6) for a in range(0, 216, 50)], 1)
    assert torch.equal(whole, parts)


def test_finish_volume_flips_and_pads():
    sigmas = np.arange(8 ** 3, dtype=np.float32).reshape(8, 8, 8)
    volume = shape_extraction.finish_volume(sigmas, pad=1, pad_value=-5, pad_top=2)
    assert np.array_equal(volume[1:-1, 1:-2, 1:-1], sigmas[::-1][1:-1, 1:-2, 1:-1])
    for border in [volume[0], volume[-1], volume[:, 0], volume[:, -2:], volume[:, :, 0], volume[:, :, -1]]:
        assert np.all(border == -5)
    assert volume[1, 1, 1] == sigmas[6, 1, 1] and volume[1, 5, 1] == sigmas[6, 5, 1]


def test_zero_width_border_covers_everything():
    # Released behaviour: for grids under 9 voxels int(30 N / 256) = 0 and the slice [-0:] is the whole axis.
    sigmas = np.arange(8 ** 3, dtype=np.float32).reshape(8, 8, 8)
    assert np.all(shape_extraction.finish_volume(sigmas, pad=int(30 * 8 / 256), pad_value=-1000) == -1000)
    # gen_videos: only the top width is 0 for N = 6 (pad 0 too), N = 9 keeps a 1-voxel border and top width 1.
    assert np.all(shape_extraction.finish_volume(sigmas[:6, :6, :6], pad=0, pad_value=0, pad_top=0) == 0)
    sigmas = np.ones([9, 9, 9], dtype=np.float32)
    volume = shape_extraction.finish_volume(sigmas, pad=int(30 * 9 / 256), pad_value=0, pad_top=int(38 * 9 / 256))
    assert volume.sum() == 7 ** 3


def test_sphere_mesh_has_the_right_radius_centre_and_colours(tmp_path):
    N, cube_length = 48, 1.0
    volume = sphere_volume(N, cube_length)
    verts, faces = shape_extraction.extract_mesh(volume, level=10)
    assert verts.dtype == np.float32 and faces.dtype == np.int32 and faces.max() < len(verts)
    world = shape_extraction.voxel_to_world(verts, N, cube_length)
    voxel = cube_length / (N - 1)

    # The grid quirk displaces samples by up to one voxel on the two slow axes; the surface follows.
    radii = np.linalg.norm(world - CENTER, axis=1)
    assert abs(radii.mean() - RADIUS) < 0.5 * voxel
    assert np.abs(radii - RADIUS).max() < 1.5 * voxel
    assert np.abs(world.mean(axis=0) - CENTER).max() < voxel

    colors = shape_extraction.vertex_colors(sphere_sample_fn, verts, N, cube_length, chunk_size=1000)
    assert colors.shape == (len(verts), 3) and colors.dtype == np.uint8
    assert np.abs(colors / 255 - (world + 0.5)).max() < 1 / 255 + 1e-6

    # Writers: the binary PLY and the OBJ hold the same mesh.
    shape_extraction.write_mesh(str(tmp_path / 'sphere.ply'), verts, faces, colors)
    shape_extraction.write_mesh(str(tmp_path / 'sphere.obj'), verts, faces, colors)
    header, ply_verts, ply_faces = read_ply(str(tmp_path / 'sphere.ply'))
    assert header[:3] == ['ply', 'format binary_little_endian 1.0', f'element vertex {len(verts)}']
    assert np.array_equal(ply_verts['xyz'], verts) and np.array_equal(ply_verts['rgb'], colors)
    assert np.array_equal(ply_faces, faces)
    with open(tmp_path / 'sphere.obj') as f:
        lines = f.read().splitlines()
    assert sum(line.startswith('v ') for line in lines) == len(verts)
    assert lines[len(verts)] == 'f %d %d %d' % tuple(faces[0] + 1)
    assert sorted(os.listdir(tmp_path)) == ['sphere.obj', 'sphere.ply']  # no temporaries left behind

    with pytest.raises(ValueError, match='outside the density range'):
        shape_extraction.extract_mesh(volume, level=1e9)
    with pytest.raises(ValueError, match='unsupported mesh format'):
        shape_extraction.write_mesh(str(tmp_path / 'sphere.stl'), verts, faces)


def test_mrc_round_trip_and_converter(tmp_path):
    N = 32
    volume = sphere_volume(N)
    shape_extraction.write_mrc(str(tmp_path / 'a.mrc'), volume)
    with mrcfile.open(str(tmp_path / 'a.mrc')) as mrc:
        assert mrc.header.mode == 2 and np.array_equal(mrc.data, volume)
    shape_extraction.write_mrc(str(tmp_path / 'b.mrc'), volume)

    # Single-file mode keyed on .mrc and honouring --level.
    runner = CliRunner()
    result = runner.invoke(shape_utils.main, [str(tmp_path / 'a.mrc'), '--level=25'])
    assert result.exit_code == 0, result.output
    _, verts, _ = read_ply(str(tmp_path / 'a.ply'))
    world = shape_extraction.voxel_to_world(verts['xyz'], N, 1.0)
    expected_radius = RADIUS - (25 - 10) / 100  # density rises by 100 per unit inward
    assert abs(np.linalg.norm(world - CENTER, axis=1).mean() - expected_radius) < 0.5 / (N - 1)

    # Directory mode converts every .mrc, here to .obj.
    result = runner.invoke(shape_utils.main, [str(tmp_path), '--format=.obj'])
    assert result.exit_code == 0, result.output
    assert {'a.obj', 'b.obj'} <= set(os.listdir(tmp_path))

    # Errors name the input.
    (tmp_path / 'notes.txt').write_text('x')
    result = runner.invoke(shape_utils.main, [str(tmp_path / 'notes.txt')])
    assert result.exit_code == 1 and 'notes.txt' in result.output
    (tmp_path / 'bad.mrc').write_bytes(b'not an mrc file')
    result = runner.invoke(shape_utils.main, [str(tmp_path / 'bad.mrc')])
    assert result.exit_code == 1 and 'bad.mrc' in result.output


def test_convert_sdf_samples_to_ply_applies_origin_and_spacing(tmp_path):
    volume = sphere_volume(24)
    shape_utils.convert_sdf_samples_to_ply(volume, [1.0, 2.0, 3.0], 0.5, str(tmp_path / 'm.ply'), level=10)
    _, verts, _ = read_ply(str(tmp_path / 'm.ply'))
    reference, _ = shape_extraction.extract_mesh(np.transpose(volume, (2, 1, 0)), level=10)  # untransposed volume
    assert np.allclose(verts['xyz'], reference * 0.5 + [1.0, 2.0, 3.0], atol=1e-5)

    # The released arithmetic: per axis in float32 (a float64 origin rounds once), then / scale, - offset.
    origin = np.array([0.1, 0.2, 0.3])
    shape_utils.convert_sdf_samples_to_ply(volume, origin, 1, str(tmp_path / 's.ply'), offset=0.01, scale=3.0, level=10)
    _, verts, _ = read_ply(str(tmp_path / 's.ply'))
    import skimage.measure
    raw = skimage.measure.marching_cubes(volume, level=10, spacing=[1] * 3)[0]
    expected = np.stack([raw[:, i] + origin[i] for i in range(3)], axis=1).astype(np.float32) / 3.0 - 0.01
    assert expected.dtype == np.float32 and np.array_equal(verts['xyz'], expected)
