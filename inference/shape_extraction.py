"""Shape extraction shared by gen_samples.py, gen_videos.py and shape_utils.py: density sampling on the
voxel grid of the released shapes, iso-surface meshes, and the .mrc / .ply / .obj writers.

Grid layout (rendering.md 10): flat index n = i*N^2 + j*N + k holds the point (x, y, z) with x from i,
y from j and z from k; the volume written out is that (N, N, N) array flipped along its first axis, and
meshes are extracted from its (2, 1, 0) transpose with vertex coordinates in voxel units.
"""

import os

import numpy as np
import torch
from tqdm import tqdm

import dnnlib

# Smallest grid whose border, int(30 N / 256) voxels, is not zero wide; smaller grids become all border (see
# finish_volume), so no iso-surface can be extracted from them.
MIN_MESH_RESOLUTION = 9

# ----------------------------------------------------------------------------
# Density grid.


def grid_coordinates(start, stop, resolution, cube_length, device='cpu'):
    """World coordinates [1, stop - start, 3] of grid points with flat indices [start, stop).

    Reproduces the grid of the released shapes bit for bit: the two slower axes are computed with true
    division in float32, so they carry a fraction of up to one voxel and, for N^3 > 2^24, the rounding of the
    flat index itself (quirk; trained shapes were always extracted this way).
    """
    N = resolution
    voxel_size = cube_length / (N - 1)
    voxel_origin = -cube_length / 2
    index = torch.arange(start, stop, dtype=torch.int64, device=device)
    k = (index % N).to(torch.float32)
    j = (index.to(torch.float32) / N) % N
    i = ((index.to(torch.float32) / N) / N) % N
    return (torch.stack([i, j, k], dim=-1) * voxel_size + voxel_origin).unsqueeze(0)


def voxel_to_world(points, resolution, cube_length):
    """Map mesh vertices (voxel coordinates of the flipped, transposed volume) [V, 3] to world points [V, 3]."""
    points = np.asarray(points, dtype=np.float64)
    voxel_size = cube_length / (resolution - 1)
    ijk = np.stack([resolution - 1 - points[:, 2], points[:, 1], points[:, 0]], axis=1)  # undo transpose and flip
    return ijk * voxel_size - cube_length / 2


def _view_directions(num_points, device):
    directions = torch.zeros([1, num_points, 3], device=device)
    directions[..., 2] = -1  # the decoder ignores them; -z, like the released scripts
    return directions


@torch.no_grad()
def sample_density_grid(sample_fn, resolution, cube_length, chunk_size=1_000_000, device='cpu', progress=True):
    """Evaluate sample_fn(coordinates [1,M,3], directions [1,M,3]) -> dict(sigma [1,M,1], ...) on the N^3 grid.

    Returns float32 [N, N, N] in flat-index order (not yet flipped). Only one chunk of points lives on the device
    at a time, so a 512^3 grid needs the 512 MiB result array plus one chunk. The global torch RNG is reseeded
    with 0 before each chunk, so chunks match the released scripts (it only matters with rendering_kwargs density_noise).
    """
    N = resolution
    total = N ** 3
    sigmas = np.empty([total], dtype=np.float32)
    with tqdm(total=total, unit='pt', unit_scale=True, disable=not progress, desc='density') as bar:
        for head in range(0, total, chunk_size):
            tail = min(head + chunk_size, total)
            torch.manual_seed(0)
            coordinates = grid_coordinates(head, tail, N, cube_length, device=device)
            sigma = sample_fn(coordinates, _view_directions(tail - head, device))['sigma']
            assert sigma.shape == (1, tail - head, 1), f'sample_fn returned sigma of shape {tuple(sigma.shape)}'
            sigmas[head:tail] = sigma.reshape(-1).float().cpu().numpy()
            bar.update(tail - head)
    return sigmas.reshape(N, N, N)


def finish_volume(sigmas, pad, pad_value, pad_top=None):
    """Flip along the first axis and overwrite a border of `pad` voxels on every face with pad_value.

    `pad_top` (gen_videos) replaces the width at the high end of the second axis. A width of 0 (grids under
    MIN_MESH_RESOLUTION voxels) makes the high-end slice `[-0:]` cover the whole axis, so the entire volume becomes
    pad_value (the released scripts' behaviour, kept so small grids give the same files; docs/compat.md).
    """
    volume = np.ascontiguousarray(np.flip(sigmas, 0))
    pad_top = pad if pad_top is None else pad_top
    volume[:pad] = pad_value
    volume[-pad:] = pad_value
    volume[:, :pad] = pad_value
    volume[:, -pad_top:] = pad_value
    volume[:, :, :pad] = pad_value
    volume[:, :, -pad:] = pad_value
    return volume

# ----------------------------------------------------------------------------
# Meshes.


def extract_mesh(volume, level):
    """Marching cubes on the (2, 1, 0)-transposed volume, unit spacing, zero origin -> (verts [V,3] float32,
    faces [F,3] int32). Raises ValueError if the level is not crossed."""
    import skimage.measure
    data = np.ascontiguousarray(np.transpose(volume, (2, 1, 0)))
    lo, hi = float(data.min()), float(data.max())
    if not lo < level < hi:
        raise ValueError(f'iso-level {level:g} lies outside the density range [{lo:g}, {hi:g}]: empty surface')
    verts, faces, _normals, _values = skimage.measure.marching_cubes(data, level=level, spacing=(1.0, 1.0, 1.0))
    return verts.astype(np.float32), faces.astype(np.int32)


@torch.no_grad()
def vertex_colors(sample_fn, verts, resolution, cube_length, chunk_size=1_000_000, device='cpu'):
    """uint8 [V, 3] colours: the decoder's first three colour features (in [0, 1]) at each vertex."""
    world = torch.as_tensor(voxel_to_world(verts, resolution, cube_length), dtype=torch.float32)
    colors = np.empty([len(world), 3], dtype=np.uint8)
    for head in range(0, len(world), chunk_size):
        points = world[head:head + chunk_size].to(device).unsqueeze(0)
        rgb = sample_fn(points, _view_directions(points.shape[1], device))['rgb'][0, :, :3]
        colors[head:head + len(rgb)] = (rgb * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    return colors


def write_ply(path, verts, faces, colors=None):
    """Binary little-endian PLY with float32 x, y, z (+ uchar red, green, blue) and int32 triangle lists,
    laid out like plyfile's default output."""
    verts = np.asarray(verts)
    faces = np.asarray(faces)
    vertex_fields = [('x', '<f4'), ('y', '<f4'), ('z', '<f4')]
    if colors is not None:
        vertex_fields += [('red', 'u1'), ('green', 'u1'), ('blue', 'u1')]
    vertex_data = np.empty(len(verts), dtype=vertex_fields)
    vertex_data['x'], vertex_data['y'], vertex_data['z'] = verts[:, 0], verts[:, 1], verts[:, 2]
    if colors is not None:
        vertex_data['red'], vertex_data['green'], vertex_data['blue'] = colors[:, 0], colors[:, 1], colors[:, 2]
    face_data = np.empty(len(faces), dtype=[('count', 'u1'), ('vertex_indices', '<i4', (3,))])
    face_data['count'] = 3
    face_data['vertex_indices'] = faces

    header = ['ply', 'format binary_little_endian 1.0', f'element vertex {len(verts)}']
    header += [f'property {"float" if dtype == "<f4" else "uchar"} {name}' for name, dtype in vertex_fields]
    header += [f'element face {len(faces)}', 'property list uchar int vertex_indices', 'end_header']
    with dnnlib.util.atomic_output(path) as tmp_path:
        with open(tmp_path, 'wb') as f:
            f.write(('\n'.join(header) + '\n').encode('ascii'))
            f.write(vertex_data.tobytes())
            f.write(face_data.tobytes())


def write_obj(path, verts, faces, colors=None):
    """Wavefront OBJ; colours, if given, as the common `v x y z r g b` extension with components in [0, 1]."""
    vertex_rows = np.asarray(verts, dtype=np.float64)
    vertex_format = 'v %.6f %.6f %.6f'
    if colors is not None:
        vertex_rows = np.concatenate([vertex_rows, np.asarray(colors, dtype=np.float64) / 255], axis=1)
        vertex_format += ' %.4f %.4f %.4f'
    with dnnlib.util.atomic_output(path) as tmp_path:
        with open(tmp_path, 'w') as f:
            np.savetxt(f, vertex_rows, fmt=vertex_format)
            np.savetxt(f, np.asarray(faces, dtype=np.int64) + 1, fmt='f %d %d %d')  # OBJ indices are 1-based


def write_mesh(path, verts, faces, colors=None):
    """Dispatch on the extension of `path` (.ply or .obj)."""
    ext = os.path.splitext(path)[1].lower()
    if ext == '.ply':
        write_ply(path, verts, faces, colors)
    elif ext == '.obj':
        write_obj(path, verts, faces, colors)
    else:
        raise ValueError(f'{path}: unsupported mesh format "{ext}" (use .ply or .obj)')


def write_mrc(path, volume):
    """Float32 volume (MRC mode 2), stored in the array's own axis order."""
    import mrcfile
    volume = np.asarray(volume, dtype=np.float32)
    with dnnlib.util.atomic_output(path) as tmp_path:
        with mrcfile.new_mmap(tmp_path, shape=volume.shape, mrc_mode=2, overwrite=True) as mrc:
            mrc.data[:] = volume


def read_mrc(path):
    """float32 volume of an .mrc file; a clear error for anything else."""
    import mrcfile
    try:
        with mrcfile.open(path, permissive=False) as mrc:
            data = np.array(mrc.data, dtype=np.float32)
    except (ValueError, OSError) as err:
        raise ValueError(f'{path}: not a readable MRC volume ({" ".join(str(err).split())})') from err
    if data.ndim != 3:
        raise ValueError(f'{path}: expected a 3-D volume, got shape {data.shape}')
    return data


# ----------------------------------------------------------------------------
# Shapes of a generator at given ws, as the generation tools write them.


def _density_of(G, ws, resolution, device):
    sample_fn = lambda coordinates, directions: G.sample_mixed(coordinates, directions, ws, noise_mode='const')
    return sample_fn, sample_density_grid(sample_fn, resolution, G.rendering_kwargs['box_warp'], device=device)


def save_generator_shape(G, ws, path, resolution, level, mesh_colors, device) -> str:
    """gen_samples' shape: an .mrc density volume, or a .ply/.obj mesh at iso-level `level` (by extension).

    Raises ValueError when the level crosses no surface.
    """
    sample_fn, sigmas = _density_of(G, ws, resolution, device)
    volume = finish_volume(sigmas, pad=int(30 * resolution / 256), pad_value=-1000)
    if path.lower().endswith('.mrc'):
        write_mrc(path, volume)
        return path
    verts, faces = extract_mesh(volume, level)
    colors = vertex_colors(sample_fn, verts, resolution, G.rendering_kwargs['box_warp'], device=device) \
        if mesh_colors else None
    write_mesh(path, verts, faces, colors)
    return path


def save_frame_mesh(G, ws, path, resolution, device) -> str:
    """gen_videos' per-frame mesh: zero borders (38/256 on top of the second axis), level 10, .ply."""
    _, sigmas = _density_of(G, ws, resolution, device)
    volume = finish_volume(sigmas, pad=int(30 * resolution / 256), pad_value=0, pad_top=int(38 * resolution / 256))
    verts, faces = extract_mesh(volume, level=10)
    write_ply(path, verts, faces)
    return path

