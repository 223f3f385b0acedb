"""gen_samples.py end to end with a tiny randomly initialised generator saved as a snapshot pickle."""

import os
import pickle

import click
import mrcfile
import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner
from helpers import assert_refused, make_workdir, orbit_label, read_ply, write_tiny_snapshot

import gen_samples
import gen_videos
from inference import generation

# ----------------------------------------------------------------------------
# A tiny generator (shared with test_gen_videos.py).


@pytest.fixture(scope='module')
def snapshot(tmp_path_factory):
    return write_tiny_snapshot(str(tmp_path_factory.mktemp('net') / 'network-snapshot-000000.pkl'))


def run(args):
    result = CliRunner().invoke(gen_samples.generate_images, args)
    return result

# ----------------------------------------------------------------------------


def test_images_and_volumes(snapshot, tmp_path):
    N = 32
    out = str(tmp_path)
    result = run(['--network', snapshot, '--seeds=0,3', '--outdir', out, '--device=cpu', '--shapes=true',
                  f'--shape-res={N}'])
    assert result.exit_code == 0, result.output
    assert 'Generating image for seed 3 (1/2) ...' in result.output
    assert 'Camera: focal 4.2647 (18.831 degrees, ffhq preset; the snapshot records no focal), radius 2.7' in \
        result.output
    assert sorted(os.listdir(out)) == ['seed0000.mrc', 'seed0000.png', 'seed0003.mrc', 'seed0003.png']
    with PIL.Image.open(os.path.join(out, 'seed0003.png')) as img:
        assert img.mode == 'RGB' and img.size == (3 * 128, 128)
        assert np.asarray(img).std() > 0

    with mrcfile.open(os.path.join(out, 'seed0003.mrc')) as mrc:
        assert mrc.header.mode == 2
        volume = np.array(mrc.data)
    assert volume.shape == (N, N, N) and volume.dtype == np.float32

    # The released extraction grid, written out independently: float32 true division on the slow axes.
    G = _load_G(snapshot)
    index = torch.arange(N ** 3)
    grid = torch.stack([((index.float() / N) / N) % N, (index.float() / N) % N, (index % N).float()], dim=1)
    points = (grid * (1 / (N - 1)) - 0.5).unsqueeze(0)
    directions = torch.zeros_like(points)
    directions[..., 2] = -1
    z = torch.from_numpy(np.random.RandomState(3).randn(1, 512))
    sigma = G.sample(points, directions, z, orbit_label(np.pi / 2, np.pi / 2), noise_mode='const')['sigma']
    expected = np.flip(sigma.reshape(N, N, N).numpy(), 0).copy()
    pad = int(30 * N / 256)
    assert pad == 3
    inner = (slice(pad, -pad),) * 3
    assert np.allclose(volume[inner], expected[inner], atol=1e-5, rtol=0)
    for face in [volume[:pad], volume[-pad:], volume[:, :pad], volume[:, -pad:], volume[:, :, :pad],
                 volume[:, :, -pad:]]:
        assert np.all(face == -1000)


def _load_G(snapshot):
    with open(snapshot, 'rb') as f:
        return pickle.load(f)['G_ema']


def test_image_matches_direct_rendering(snapshot, tmp_path):
    """Three views (yaw +0.4, 0, -0.4, pitch -0.2), frontal conditioning, truncation, seeded noise."""
    result = run(['--network', snapshot, '--seeds=5', '--outdir', str(tmp_path), '--trunc=0.7',
                  '--trunc-cutoff=7', '--fov-deg=18.837', '--reload_modules=true'])
    assert result.exit_code == 0, result.output
    G = _load_G(snapshot)
    conditioning = orbit_label(np.pi / 2, np.pi / 2, fov=18.837)
    cameras = [orbit_label(np.pi / 2 + yaw, np.pi / 2 - 0.2, fov=18.837) for yaw in (0.4, 0, -0.4)]
    z = torch.from_numpy(np.random.RandomState(5).randn(1, 512))
    torch.manual_seed(5)  # --seed-noise: backbone noise and ray jitter are seeded per seed
    ws = G.mapping(z, conditioning, truncation_psi=0.7, truncation_cutoff=7)
    views = [G.synthesis(ws, camera)['image'] for camera in cameras]
    expected = (torch.cat(views, dim=3)[0].permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()
    with PIL.Image.open(os.path.join(str(tmp_path), 'seed0005.png')) as img:
        assert np.array_equal(np.asarray(img), expected)


def test_meshes_with_vertex_colours(snapshot, tmp_path):
    N = 24
    out = str(tmp_path)
    result = run(['--network', snapshot, '--seeds=2', '--outdir', out, '--shapes=true', f'--shape-res={N}',
                  '--shape-format=.ply'])
    assert result.exit_code == 0, result.output

    # By default plyfile's layout: float32 x, y, z and int32 triangles only.
    header, plain_verts, plain_faces = read_ply(os.path.join(out, 'seed0002.ply'))  # Also checks the body size.
    assert header == ['ply', 'format binary_little_endian 1.0', f'element vertex {len(plain_verts)}',
                      'property float x', 'property float y', 'property float z', f'element face {len(plain_faces)}',
                      'property list uchar int vertex_indices', 'end_header']
    assert plain_verts.dtype.itemsize == 12

    # Same seed through the shape helper directly (no images), with colours: same mesh, colours added.
    G = _load_G(snapshot)
    z = torch.from_numpy(np.random.RandomState(2).randn(1, 512))
    ws = G.mapping(z, orbit_label(np.pi / 2, np.pi / 2))
    coloured = os.path.join(out, 'coloured')
    os.makedirs(coloured)
    path = gen_samples.generate_shape(G, ws, 2, coloured, N, '.ply', level=10, mesh_colors=True, device='cpu')
    header, verts, faces = read_ply(path)
    props = [line.split()[-1] for line in header if line.startswith('property')]
    assert props == ['x', 'y', 'z', 'red', 'green', 'blue', 'vertex_indices']
    V, F = len(verts), len(faces)
    assert V > 100 and F > 100
    assert verts.dtype.itemsize == 12 + 3
    assert np.array_equal(verts['xyz'], plain_verts['xyz']) and np.array_equal(faces, plain_faces)
    assert verts['xyz'].min() >= 0 and verts['xyz'].max() <= N - 1
    assert verts['rgb'].std() > 0

    # .obj holds the same mesh and colours.
    path = gen_samples.generate_shape(G, ws, 2, out, N, '.obj', level=10, mesh_colors=True, device='cpu')
    assert path == os.path.join(out, 'seed0002.obj')
    with open(path) as f:
        lines = f.read().splitlines()
    obj_verts = np.array([[float(v) for v in line.split()[1:]] for line in lines if line.startswith('v ')])
    obj_faces = np.array([[int(v) for v in line.split()[1:]] for line in lines if line.startswith('f ')])
    assert obj_verts.shape == (V, 6) and obj_faces.shape == (F, 3)
    assert obj_faces.min() == 1 and obj_faces.max() == V
    assert np.allclose(obj_verts[:, :3], verts['xyz'], atol=1e-5)
    assert np.allclose(obj_verts[:, 3:] * 255, verts['rgb'], atol=0.02)

    with pytest.raises(click.ClickException, match='seed0002.ply.*--level'):
        gen_samples.generate_shape(G, ws, 2, out, N, '.ply', level=1e6, mesh_colors=True, device='cpu')


# ----------------------------------------------------------------------------
# Bad input: one line naming the flag or file, non-zero exit, nothing created or overwritten.


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    return make_workdir(tmp_path, monkeypatch)


@pytest.mark.parametrize('args, exit_code, message', [
    (['--seeds=5-2'], 2, '"5-2" is an empty range (A-B needs A <= B)'),
    (['--seeds=4294967296'], 2, 'seed 4294967296 is larger than 4294967295'),
    (['--trunc=nan'], 2, "'--trunc': 'nan' is not a finite number"),
    (['--trunc=-inf'], 2, "'--trunc': '-inf' is not a finite number"),
    (['--trunc-cutoff=-1'], 2, "'--trunc-cutoff': -1 is not in the range x>=0"),
    (['--fov-deg=0'], 2, "'--fov-deg': 0.0 is not in the range 0<x<180"),
    (['--fov-deg=inf'], 2, "'--fov-deg': 'inf' is not a finite number"),
    (['--level=nan'], 2, "'--level': 'nan' is not a finite number"),
    (['--shape-res=1'], 2, "'--shape-res': 1 is not in the range x>=2"),
    (['--shapes=true', '--shape-format=.ply', '--shape-res=8'], 2,
     '--shape-res: 8: meshes need at least 9 voxels per side'),
    (['--device=tpu'], 2, "'--device': \"tpu\""),
    (['--outdir=a_file'], 1, 'Error: --outdir=a_file: exists and is not a folder'),
    (['--outdir=a_file/sub'], 1, 'is not a folder, so no folder can be made below it'),
    (['--outdir='], 1, 'Error: --outdir: empty path'),
    (['--seeds=1-2'], 1, 'Error: --outdir=out: out/seed0002.png is a folder; the output file seed0002.png cannot '
                         'replace it'),
    (['--network=missing.pkl'], 1, 'Error: --network: missing.pkl'),
    (['--network=a_file'], 1, 'Error: --network: a_file: cannot read the network pickle'),
])
def test_bad_input_is_refused_before_writing(snapshot, workdir, args, exit_code, message):
    defaults = dict(network=snapshot, seeds='1', outdir='out', device='cpu')
    for arg in args:
        defaults.pop(arg.split('=')[0][2:], None)
    argv = [f'--{key}={value}' for key, value in defaults.items()] + args
    assert_refused(gen_samples.generate_images, argv, exit_code, message, workdir)


def test_cuda_device_on_a_cpu_machine(snapshot, workdir):
    if torch.cuda.is_available():
        pytest.skip('this machine has CUDA')
    assert_refused(gen_samples.generate_images, ['--network', snapshot, '--seeds=1', '--outdir=new', '--device=cuda'],
                   2, 'CUDA is not available on this machine', workdir)


def test_deep_errors_end_in_one_line(snapshot, workdir, monkeypatch):
    class BrokenGenerator:
        rendering_kwargs, z_dim = {}, 4
        def mapping(self, *args, **kwargs):
            raise RuntimeError('mapping exploded\nin two lines')
    monkeypatch.setattr(gen_samples.generation, 'load_generator', lambda *args, **kwargs: BrokenGenerator())
    argv = ['--network', snapshot, '--seeds=1', '--outdir=out', '--device=cpu']
    assert_refused(gen_samples.generate_images, argv, 1,
                   'Error: mapping exploded in two lines (RuntimeError; set EG3D_DEBUG=1 for the traceback)', workdir)
    monkeypatch.setenv('EG3D_DEBUG', '1')
    result = CliRunner().invoke(gen_samples.generate_images, argv)
    assert result.exit_code == 1 and isinstance(result.exception, RuntimeError)


@pytest.mark.parametrize('tool', ['gen_samples', 'gen_videos'])
@pytest.mark.parametrize('flag, expected', [([], False), (['--trust-embedded-code'], True)])
def test_trust_embedded_code_reaches_the_loader(workdir, monkeypatch, tool, flag, expected):
    command = dict(gen_samples=gen_samples.generate_images, gen_videos=gen_videos.generate_videos)[tool]
    seen = []
    def recording_loader(network_pkl, **kwargs):
        seen.append((network_pkl, kwargs))
        raise generation.network_pickle.NetworkPickleError(f'{network_pkl}: stop here')
    monkeypatch.setattr(generation.network_pickle, 'open_network_pkl', recording_loader)
    assert_refused(command, ['--network=net.pkl', '--seeds=1', '--outdir=new', '--device=cpu'] + flag,
                   1, 'Error: --network: net.pkl: stop here', workdir)
    assert seen == [('net.pkl', dict(trust_embedded_code=expected))]
