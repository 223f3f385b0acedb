"""What several test modules share: paths, tiny datasets, networks and snapshots, stand-in detectors, and the
assertions of the command-line tools' refusals. Test modules import these; no test module imports another."""

import contextlib
import copy
import importlib.util
import io
import json
import os
import pickle
import re
import subprocess
import sys
import types

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import dnnlib
import train
from inference import perceptual
from metrics import frechet_inception_distance
from torch_utils import persistence
from training import cameras, snapshot

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = os.path.join(REPO_ROOT, 'tests', 'data')
GOLDEN_DIR = os.path.join(DATA_DIR, 'golden')
STATE_DICTS_DIR = os.path.join(DATA_DIR, 'state_dicts')

# ----------------------------------------------------------------------------
# train.py on a tiny dataset.

def make_dataset(path, num_images=8, resolution=128, seed=0, labels=True, label_dim=25):
    """A folder of random RGB PNGs with look-at cameras (radius 1.7, FOV ~33 deg) in dataset.json."""
    rnd = np.random.RandomState(seed)
    os.makedirs(path, exist_ok=True)
    entries = []
    for idx in range(num_images):
        name = f'img{idx:04d}.png'
        image = (rnd.rand(resolution, resolution, 3) * 255).astype(np.uint8)
        PIL.Image.fromarray(image, 'RGB').save(os.path.join(path, name))
        yaw = rnd.uniform(-0.6, 0.6)
        origin = np.array([1.7 * np.sin(yaw), 0.3, 1.7 * np.cos(yaw)])
        forward = -origin / np.linalg.norm(origin)
        right = -np.cross([0, 1, 0], forward)
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        cam2world = np.eye(4)
        cam2world[:3, 0], cam2world[:3, 1], cam2world[:3, 2], cam2world[:3, 3] = right, down, forward, origin
        label = cam2world.flatten().tolist() + [1.7074, 0, 0.5, 0, 1.7074, 0.5, 0, 0, 1]
        entries.append([name, label[:label_dim]])
    with open(os.path.join(path, 'dataset.json'), 'w') as f:
        json.dump({'labels': entries if labels else None}, f)
    return str(path)


def tiny_args(outdir, data, *extra):
    """Command line of a tiny CPU configuration (128 px shapenet, small channels, few ray samples)."""
    return [f'--outdir={outdir}', '--cfg=shapenet', f'--data={data}', '--gpus=1', '--batch=2', '--gamma=0.3',
            '--cbase=1024', '--cmax=32', '--mbstd-group=2', '--neural_rendering_resolution_initial=16',
            '--depth-resolution=4', '--depth-resolution-importance=4', '--kimg=0.004', '--tick=0.002', '--snap=1',
            '--metrics=none', '--workers=1', '--grid=2x2', *extra]


def parse_config(args):
    """(c, desc) that train.py derives from a command line, without launching anything."""
    return train.config_from_args(args)


def invoke(args):
    return CliRunner().invoke(train.main, list(args), catch_exceptions=False)


def released_networks(family, neural_rendering_resolution):
    """Stand-ins for the G_ema and D of a released pickle: their recorded constructor arguments."""
    def load(name):
        with open(os.path.join(STATE_DICTS_DIR, f'{family}_{name}_kwargs.json')) as f:
            return json.load(f)
    G_kwargs = load('G')
    G = types.SimpleNamespace(init_kwargs=G_kwargs, rendering_kwargs=G_kwargs['rendering_kwargs'],
                              neural_rendering_resolution=neural_rendering_resolution, c_dim=G_kwargs['c_dim'])
    return dict(G_ema=G, D=types.SimpleNamespace(init_kwargs=load('D')))


# ----------------------------------------------------------------------------
# Golden networks.

def load_golden_config():
    with open(os.path.join(GOLDEN_DIR, 'shapenet_config.json')) as f:
        return json.load(f)


def build_golden_generator():
    """The reduced shapenet G of the golden files, loaded strictly, in eval mode."""
    cfg = load_golden_config()
    kwargs = copy.deepcopy(cfg['G_kwargs'])
    for key in ('mapping_kwargs', 'sr_kwargs'): # train.py passes these as EasyDicts.
        kwargs[key] = dnnlib.EasyDict(kwargs[key])
    G = dnnlib.util.construct_class_by_name(**kwargs, **cfg['common_kwargs'])
    G.register_buffer('dataset_label_std', torch.zeros(cfg['common_kwargs']['c_dim']))
    state = np.load(os.path.join(GOLDEN_DIR, 'shapenet_G_state.npz'))
    G.load_state_dict({name: torch.from_numpy(state[name]) for name in state.files}, strict=True)
    return G.eval().requires_grad_(False)


def build_golden_discriminator():
    """The reduced shapenet D of the golden files, loaded strictly, in eval mode."""
    cfg = load_golden_config()
    kwargs = copy.deepcopy(cfg['D_kwargs'])
    for key in ('block_kwargs', 'mapping_kwargs', 'epilogue_kwargs'): # train.py passes these as EasyDicts.
        kwargs[key] = dnnlib.EasyDict(kwargs[key])
    D = dnnlib.util.construct_class_by_name(**kwargs, **cfg['common_kwargs'])
    state = np.load(os.path.join(GOLDEN_DIR, 'shapenet_D_state.npz'))
    D.load_state_dict({name: torch.from_numpy(state[name]) for name in state.files}, strict=True)
    return D.eval().requires_grad_(False)


# ----------------------------------------------------------------------------
# A tiny generator and the generation scripts.

TINY_RENDERING_KWARGS = dict(
    image_resolution=128, disparity_space_sampling=False, clamp_mode='softplus',
    superresolution_module='training.superresolution.SuperresolutionHybrid2X', c_gen_conditioning_zero=False,
    gpc_reg_prob=0.5, c_scale=1.0, superresolution_noise_mode='none', density_reg=0.25, density_reg_p_dist=0.004,
    reg_type='l1', decoder_lr_mul=1.0, sr_antialias=True, depth_resolution=6, depth_resolution_importance=6,
    ray_start=2.25, ray_end=3.3, box_warp=1, avg_camera_radius=2.7, avg_camera_pivot=[0, 0, 0.2])


def build_tiny_generator():
    """Small channel counts, 2x super-resolution to 128 px, 16 px neural rendering, few depth samples.

    The density bias is shifted so the raw density crosses the scripts' iso-level 10 inside the box.
    """
    torch.manual_seed(123)
    G = dnnlib.util.construct_class_by_name(
        class_name='training.triplane.TriPlaneGenerator', z_dim=512, w_dim=512, c_dim=25, img_resolution=128,
        img_channels=3, mapping_kwargs=dnnlib.EasyDict(num_layers=2), channel_base=1024, channel_max=16,
        fused_modconv_default='inference_only', rendering_kwargs=copy.deepcopy(TINY_RENDERING_KWARGS),
        num_fp16_res=0, sr_num_fp16_res=0, conv_clamp=None,
        sr_kwargs=dnnlib.EasyDict(channel_base=1024, channel_max=16, fused_modconv_default='inference_only'))
    G.register_buffer('dataset_label_std', torch.zeros(25))  # added by the training loop
    G.neural_rendering_resolution = 16
    G = G.eval().requires_grad_(False)

    z = torch.from_numpy(np.random.RandomState(0).randn(1, 512))
    points = torch.rand([1, 4096, 3]) - 0.5
    sigma = G.sample(points, torch.zeros_like(points), z, torch.zeros([1, 25]), noise_mode='const')['sigma']
    G.decoder.net[2].bias[0] += 10 - sigma.median()
    return G


def write_tiny_snapshot(path):
    G = build_tiny_generator()
    D = dnnlib.util.construct_class_by_name(class_name='training.dual_discriminator.DualDiscriminator', c_dim=25,
                                            img_resolution=128, img_channels=3, channel_base=256, channel_max=8)
    with open(path, 'wb') as f:
        pickle.dump(dict(training_set_kwargs=None, G=G, D=D.eval().requires_grad_(False), G_ema=copy.deepcopy(G),
                         augment_pipe=None), f)
    return path


# The default camera of the tiny snapshot (FFHQ's rendering preset, no recorded focal): FFHQ's focal.
FFHQ_FOV = cameras.focal_to_fov(cameras.FOCAL_FFHQ)


def orbit_label(yaw, pitch, fov=FFHQ_FOV):
    """Label [1, 25] of an FFHQ-like camera (radius 2.7 around (0, 0, 0.2)) with the given vertical FOV."""
    return cameras.look_at_label(yaw, pitch, torch.tensor([0, 0, 0.2]), 2.7, cameras.FOV_to_intrinsics(fov))


def file_tree(root):
    """{relative path: bytes (files) or None (folders)} below root."""
    tree = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            tree[os.path.relpath(os.path.join(folder, name), root)] = None
        for name in files:
            path = os.path.join(folder, name)
            with open(path, 'rb') as f:
                tree[os.path.relpath(path, root)] = f.read()
    return tree


def make_workdir(tmp_path, monkeypatch):
    """Enter tmp_path holding out/seed0001.png (to be left alone), a plain file and a folder named like an output
    file (shared with test_gen_videos.py)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv('EG3D_DEBUG', raising=False)
    os.makedirs('out/seed0002.png')
    (tmp_path / 'out' / 'seed0001.png').write_bytes(b'old image')
    (tmp_path / 'a_file').write_bytes(b'not a folder')
    return tmp_path


def assert_refused(command, args, exit_code, message, root):
    """Run the command; it must fail with `exit_code`, one error line containing `message`, and no file changes."""
    before = file_tree(root)
    result = CliRunner().invoke(command, args)
    assert result.exit_code == exit_code, result.output
    errors = [line for line in result.output.splitlines() if line.startswith('Error:')]
    assert len(errors) == 1 and message in errors[0], result.output
    assert 'Traceback' not in result.output
    assert file_tree(root) == before


@contextlib.contextmanager
def running_viewer(*args, env=None, cwd=REPO_ROOT):
    """visualizer.py with these arguments (a free local port and the CPU unless they say otherwise) until its URL
    is printed; yields (page URL as printed, output so far)."""
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1', **(env or {})}
    process = subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, 'visualizer.py'), '--port=0', '--device=cpu',
                                *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            match = re.search(r'open (http://\S+) in a browser', line)
            if match:
                break
        assert match, ''.join(lines)
        yield match.group(1), ''.join(lines)
    finally:
        process.terminate()
        process.wait(30)


# ----------------------------------------------------------------------------
# Projection.

TARGET_SEED = 7


def build_projection_generator():
    """build_tiny_generator() with w_avg set to the mean of 1000 mapped latents, as training would track it."""
    G = build_tiny_generator()
    z = torch.from_numpy(np.random.RandomState(5).randn(1000, G.z_dim)).to(torch.float32)
    with torch.no_grad():
        G.backbone.mapping.w_avg.copy_(G.mapping(z, frontal_camera().expand(1000, -1))[:, 0].mean(dim=0))
    return G


def frontal_camera():
    return orbit_label(np.pi / 2, np.pi / 2)


def target_latent(G, c):
    z = torch.from_numpy(np.random.RandomState(TARGET_SEED).randn(1, G.z_dim)).to(torch.float32)
    with torch.no_grad():
        return G.mapping(z, c)


def render(G, ws, c, seed=0):
    """The image; the renderer's depth jitter is drawn from torch's global generator, seeded here."""
    torch.manual_seed(seed)
    with torch.no_grad():
        return G.synthesis(ws, c, noise_mode='const')['image']


class StandInLPIPS(torch.nn.Module):
    """Called like the real file: (images in [0, 255], resize_images, return_lpips) -> [N, F] features."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(7)
        self.conv = torch.nn.Conv2d(3, 4, kernel_size=3, stride=2)

    def forward(self, img: torch.Tensor, resize_images: bool = True, return_lpips: bool = False) -> torch.Tensor:
        torch._assert(img.shape[2] <= 256, 'images reach the detector at 256 px at most')
        features = torch.nn.functional.adaptive_avg_pool2d(torch.tanh(self.conv(img / 255 - 0.5)), 4).flatten(1)
        if return_lpips:
            features = features / features.square().sum(dim=1, keepdim=True).sqrt()
        return features


def write_stand_in_detector(folder):
    """vgg16.pt (the stand-in, TorchScript) in `folder`; returns its path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, os.path.basename(perceptual.VGG16_URL))
    torch.jit.save(torch.jit.script(StandInLPIPS()), path)
    return path


# ----------------------------------------------------------------------------
# A tiny training snapshot (G, D, G_ema, augment_pipe).

def tiny_rendering_kwargs():
    return dict(image_resolution=128, disparity_space_sampling=False, clamp_mode='softplus',
                superresolution_module='training.superresolution.SuperresolutionHybrid2X',
                c_gen_conditioning_zero=True, gpc_reg_prob=None, c_scale=1.0, superresolution_noise_mode='none',
                density_reg=0.25, density_reg_p_dist=0.004, reg_type='l1', decoder_lr_mul=1.0, sr_antialias=True,
                depth_resolution=6, depth_resolution_importance=6, ray_start=0.1, ray_end=2.6, box_warp=1.6,
                white_back=True, avg_camera_radius=1.7, avg_camera_pivot=[0, 0, 0])


def tiny_training_snapshot(seed=0):
    torch.manual_seed(seed)
    common = dict(c_dim=25, img_resolution=128, img_channels=3)
    G = dnnlib.util.construct_class_by_name(
        class_name='training.triplane.TriPlaneGenerator', z_dim=512, w_dim=512,  # SR blocks assume w_dim 512
        mapping_kwargs=dnnlib.EasyDict(num_layers=1), channel_base=256, channel_max=8,
        fused_modconv_default='inference_only', rendering_kwargs=tiny_rendering_kwargs(), num_fp16_res=0,
        sr_num_fp16_res=4, sr_kwargs=dnnlib.EasyDict(channel_base=256, channel_max=8, fused_modconv_default='inference_only'),
        conv_clamp=None, **common)
    G.register_buffer('dataset_label_std', torch.rand(25))
    G.neural_rendering_resolution = 16
    D = dnnlib.util.construct_class_by_name(
        class_name='training.dual_discriminator.DualDiscriminator', block_kwargs=dnnlib.EasyDict(freeze_layers=0),
        mapping_kwargs=dnnlib.EasyDict(), epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=2), channel_base=256,
        channel_max=8, disc_c_noise=0.0, num_fp16_res=4, conv_clamp=256, **common)
    augment_pipe = dnnlib.util.construct_class_by_name(class_name='training.augment.AugmentPipe', xflip=1, rotate90=1,
                                                       xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1,
                                                       contrast=1, lumaflip=1, hue=1, saturation=1)
    augment_pipe.p.copy_(torch.as_tensor(0.3))
    with torch.no_grad():
        for param in list(G.parameters()) + list(D.parameters()):
            param.add_(torch.randn_like(param) * 0.05)
    G_ema = copy.deepcopy(G)
    snapshot = dict(training_set_kwargs=dict(class_name='training.dataset.ImageFolderDataset', path='data.zip',
                                             use_labels=True, max_size=10, xflip=False, resolution=64, random_seed=0))
    for name, module in [('G', G), ('D', D), ('G_ema', G_ema), ('augment_pipe', augment_pipe)]:
        snapshot[name] = copy.deepcopy(module).eval().requires_grad_(False).cpu()
    return snapshot


def render_two_images(G, seed=1):
    """G's images [2, 3, H, W] of two seeded latents, from one camera 1.7 in front of the origin."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(2, G.z_dim)).float()
    c = torch.zeros(2, 25)
    c[:, :16] = torch.eye(4).flatten()
    c[:, 11] = 1.7
    c[:, 16:] = torch.tensor([1.7074, 0, 0.5, 0, 1.7074, 0.5, 0, 0, 1])
    torch.manual_seed(3)
    return G(z, c, noise_mode='const')['image']


# ----------------------------------------------------------------------------
# Pickles of a fork whose classes this repository does not have.

FORK_CLASSES = ''.join(f'\n\nclass ForkOnly{index}:\n    pass\n' for index in range(40))


def fork_pickle(obj, marker) -> bytes:
    """pickle.dumps(obj) as a fork would write it: every embedded module defines many classes we lack (so it
    matches none of ours) and leaves a marker file when executed."""
    with pytest.MonkeyPatch.context() as patch:
        for cls in list(persistence._decorators):
            patch.setattr(cls, '_orig_module_src', f'{cls._orig_module_src}{FORK_CLASSES}\n'
                                                   f'open({str(marker)!r}, "a").close()\n')
        return pickle.dumps(obj)


# ----------------------------------------------------------------------------
# Snapshot pairs.

def write_pair(run_dir, cur_nimg, previous_nimg=None, payload=b''):
    """Write a pair the way the training loop does (pickle first, then the state); returns the pickle path."""
    os.makedirs(run_dir, exist_ok=True)
    name = snapshot.snapshot_name(cur_nimg, previous_nimg)
    pkl = os.path.join(run_dir, name)
    sha256 = snapshot.save_pickle(pkl, dict(nimg=cur_nimg, payload=payload))
    identity = snapshot.pickle_identity(name, sha256, cur_nimg=cur_nimg, cur_tick=cur_nimg // 10)
    snapshot.save_training_state(snapshot.state_path_for(pkl), dict(options={}, snapshot=identity, cur_nimg=cur_nimg))
    return pkl


# ----------------------------------------------------------------------------
# Meshes.

def read_ply(path):
    """Binary little-endian PLY (shared with test_gen_samples.py) -> (header lines, vertices, [F, 3] faces)."""
    with open(path, 'rb') as f:
        header = []
        while not header or header[-1] != 'end_header':
            header.append(f.readline().decode('ascii').strip())
        body = f.read()
    counts = {line.split()[1]: int(line.split()[2]) for line in header if line.startswith('element')}
    colored = any(line.endswith(' red') for line in header)
    vertex_dtype = [('xyz', '<f4', (3,))] + ([('rgb', 'u1', (3,))] if colored else [])
    verts = np.frombuffer(body, dtype=vertex_dtype, count=counts['vertex'])
    faces = np.frombuffer(body, dtype=[('n', 'u1'), ('idx', '<i4', (3,))], count=counts['face'],
                          offset=verts.nbytes)
    assert np.all(faces['n'] == 3)
    assert len(body) == verts.nbytes + faces.nbytes  # Nothing after the faces.
    return header, verts, faces['idx']


# ----------------------------------------------------------------------------
# Metrics with tiny detectors.

class TinyDetector(torch.nn.Module):
    """Takes uint8 NCHW at any resolution. return_features: 9-d features; otherwise a 10-way softmax
    (no_output_bias=True leaves out the output bias, as the Inception detector does for IS)."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(1)
        self.conv = torch.nn.Conv2d(3, 6, 3)
        self.fc = torch.nn.Linear(9, 10)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))
        self.requires_grad_(False)

    def forward(self, img: torch.Tensor, return_features: bool = False, no_output_bias: bool = False) -> torch.Tensor:
        assert img.dtype == torch.uint8
        x = img.to(torch.float32) / 255
        h = torch.tanh(self.conv(x)).mean(dim=[2, 3])
        features = torch.cat([h, x.mean(dim=[2, 3])], dim=1)
        if return_features:
            return features
        logits = features @ self.fc.weight.t() * 3
        if not no_output_bias:
            logits = logits + self.fc.bias
        return torch.softmax(logits, dim=1)


class _ScriptModulePickler(pickle.Pickler):
    # A pickle whose loading calls torch.jit.load on embedded TorchScript bytes (a plain pickle.load works).
    def reducer_override(self, obj):
        if isinstance(obj, torch.jit.ScriptModule):
            buf = io.BytesIO()
            torch.jit.save(obj, buf)
            return torch.jit.load, (io.BytesIO(buf.getvalue()),)
        return NotImplemented


_scripted_detector = []


def write_detectors(folder):
    """inception-2015-12-05.pkl and vgg16.pkl (both the tiny detector) in `folder`; returns the module."""
    if not _scripted_detector:
        _scripted_detector.append(torch.jit.script(TinyDetector()))
    detector = _scripted_detector[0]
    os.makedirs(folder, exist_ok=True)
    for name in ('inception-2015-12-05.pkl', 'vgg16.pkl'):
        with open(os.path.join(folder, name), 'wb') as f:
            _ScriptModulePickler(f).dump(detector)
    return detector


def make_metric_dataset(path, num_images=12, resolution=8, labels=True, seed=0):
    """A folder dataset; returns the images (uint8 NCHW, in item order) and labels (float32 [N, 25])."""
    rng = np.random.RandomState(seed)
    os.makedirs(path)
    images = rng.randint(0, 256, size=[num_images, resolution, resolution, 3]).astype(np.uint8)
    cams = rng.randn(num_images, 25).astype(np.float32)
    names = [f'img{i:04d}.png' for i in range(num_images)]
    for name, img in zip(names, images):
        PIL.Image.fromarray(img).save(os.path.join(path, name))
    with open(os.path.join(path, 'dataset.json'), 'w') as f:
        json.dump(dict(labels=[[n, c.tolist()] for n, c in zip(names, cams)] if labels else None), f)
    return images.transpose(0, 3, 1, 2), cams


def dataset_kwargs(path, resolution=8):
    return dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=str(path), use_labels=True,
                           max_size=None, xflip=False, resolution=resolution, random_seed=0)


class ReplayGenerator(torch.nn.Module):
    """Emits the given uint8 images in order (cycling), as floats that convert back to exactly the same bytes."""

    def __init__(self, images, c_dim=25):
        super().__init__()
        self.z_dim, self.c_dim, self.img_resolution, self.img_channels = 4, c_dim, images.shape[2], images.shape[1]
        self.register_buffer('images', torch.from_numpy(np.ascontiguousarray(images)))
        self.next = 0

    def forward(self, z, c, **kwargs):
        idx = (self.next + torch.arange(z.shape[0])) % self.images.shape[0]
        self.next += z.shape[0]
        return dict(image=(self.images[idx].to(torch.float32) - 127.5) / 127.5)


def small_fid_metric(opts):
    """fid50k_full with 120 generated images, registered temporarily by the tests that run a whole metric."""
    opts.dataset_kwargs.update(max_size=None, xflip=False)
    return dict(fid120_full=frechet_inception_distance.compute_fid(opts, max_real=None, num_gen=120))


small_fid_metric.__name__ = 'fid120_full'


# ----------------------------------------------------------------------------
# The dataset_preprocessing/ffhq scripts.

FFHQ = os.path.join(REPO_ROOT, 'dataset_preprocessing', 'ffhq')


def load_ffhq_module(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(FFHQ, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
