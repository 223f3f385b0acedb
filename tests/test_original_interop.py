"""Our snapshots load and run where the original EG3D loads them: with the embedded sources executed
against an import surface that offers only the names the original's modules share with ours
(tests/original_env.py builds it and loads the snapshot in a subprocess)."""

import copy
import os
import subprocess
import sys

import original_env
import pytest
import torch

import dnnlib
from training.network_pickle import load_network_pkl, save_network_pkl

HELPER = os.path.abspath(original_env.__file__)

# Both sides run the same source text through the same kernels on the same inputs, with the same thread
# count; the only freedom left is oneDNN/MKL choosing a different blocking for differently aligned buffers,
# which reorders float32 sums. A few ulp per layer over ~30 layers stays far below 1e-6 relative.
RTOL = ATOL = 1e-6  # Measured: bit-identical (max abs difference 0) with 2 threads on CPU.

pytestmark = pytest.mark.slow  # One subprocess that imports torch and renders twice (~1 min on a loaded machine).


def _rendering_kwargs():
    return dict(image_resolution=128, disparity_space_sampling=False, clamp_mode='softplus',
        superresolution_module='training.superresolution.SuperresolutionHybrid2X', c_gen_conditioning_zero=False,
        gpc_reg_prob=0.5, c_scale=1.0, superresolution_noise_mode='none', density_reg=0.25,
        density_reg_p_dist=0.004, reg_type='l1', decoder_lr_mul=1.0, sr_antialias=True, depth_resolution=6,
        depth_resolution_importance=6, ray_start=0.1, ray_end=2.6, box_warp=1.6, white_back=False,
        avg_camera_radius=1.7, avg_camera_pivot=[0, 0, 0])


def _snapshot():
    """A tiny fp32 snapshot (128-px SR module) with perturbed weights, laid out as the training loop writes it."""
    torch.manual_seed(0)
    common = dict(c_dim=25, img_resolution=128, img_channels=3)
    G = dnnlib.util.construct_class_by_name(class_name='training.triplane.TriPlaneGenerator', z_dim=512, w_dim=512,
        mapping_kwargs=dnnlib.EasyDict(num_layers=1), channel_base=256, channel_max=8, num_fp16_res=0,
        fused_modconv_default='inference_only', rendering_kwargs=_rendering_kwargs(), sr_num_fp16_res=0,
        sr_kwargs=dnnlib.EasyDict(channel_base=256, channel_max=8, fused_modconv_default='inference_only'),
        conv_clamp=None, **common)
    G.register_buffer('dataset_label_std', torch.rand(25))
    G.rendering_kwargs = dict(G.rendering_kwargs, avg_camera_focal=1.7074)  # As the training loop records it.
    D = dnnlib.util.construct_class_by_name(class_name='training.dual_discriminator.DualDiscriminator',
        block_kwargs=dnnlib.EasyDict(freeze_layers=0), mapping_kwargs=dnnlib.EasyDict(),
        epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=2), channel_base=256, channel_max=8, disc_c_noise=0.0,
        num_fp16_res=0, conv_clamp=None, **common)
    augment_pipe = dnnlib.util.construct_class_by_name(class_name='training.augment.AugmentPipe', xflip=1,
        rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1, lumaflip=1, hue=1,
        saturation=1, imgfilter=1, noise=1, cutout=1)
    with torch.no_grad():
        augment_pipe.p.fill_(0.6)
        for param in list(G.parameters()) + list(D.parameters()):
            param.add_(torch.randn_like(param) * 0.05)
        G.backbone.mapping.w_avg.copy_(torch.randn_like(G.backbone.mapping.w_avg))
    G_ema = copy.deepcopy(G)
    with torch.no_grad():
        for param in G_ema.parameters():
            param.mul_(0.9)
    snapshot = dict(training_set_kwargs=dict(class_name='training.dataset.ImageFolderDataset', path='data.zip',
        use_labels=True, max_size=10, xflip=False, resolution=128, random_seed=0))
    for name, module in [('G', G), ('D', D), ('G_ema', G_ema), ('augment_pipe', augment_pipe)]:
        snapshot[name] = copy.deepcopy(module).eval().requires_grad_(False).cpu()
    return snapshot


@pytest.fixture(scope='module')
def original_load(tmp_path_factory):
    """(outputs, info) from the subprocess, and the snapshot path."""
    tmp = tmp_path_factory.mktemp('interop')
    snapshot_path = str(tmp / 'network-snapshot-000000.pkl')
    save_network_pkl(_snapshot(), snapshot_path)
    env_dir, out_path = str(tmp / 'env'), str(tmp / 'outputs.pt')
    original_env.write_environment(env_dir)
    proc = subprocess.run([sys.executable, HELPER, '--env', env_dir, '--snapshot', snapshot_path, '--out', out_path,
        '--threads', str(torch.get_num_threads())], cwd=str(tmp), capture_output=True, text=True, timeout=600,
        env=dict(os.environ, PYTHONPATH=''))
    assert proc.returncode == 0, f'loading in the original environment failed:\n{proc.stderr[-4000:]}'
    result = torch.load(out_path, weights_only=True)
    return result['outputs'], result['info'], snapshot_path

#----------------------------------------------------------------------------

def test_environment_offers_only_the_allowed_names(original_load):
    _, info, _ = original_load
    for module_name, names in original_env.ALLOWED_NAMES.items():
        path, public = info[module_name]
        assert 'env' in path.split(os.sep) and public == sorted(names), module_name


def test_embedded_sources_were_executed(original_load):
    _, info, _ = original_load
    executed = lambda key: {name for name in info[key] if name.startswith('_imported_module_')}
    assert {name.rsplit('.', 1)[1] for name in executed('G')} >= {'TriPlaneGenerator', 'Generator', 'SynthesisBlock',
        'SuperresolutionHybrid2X', 'SynthesisBlockNoUp', 'FullyConnectedLayer'}
    assert {name.rsplit('.', 1)[1] for name in executed('D')} >= {'DualDiscriminator', 'DiscriminatorBlock',
        'MappingNetwork', 'DiscriminatorEpilogue', 'MinibatchStdLayer'}
    assert [name.rsplit('.', 1)[1] for name in executed('augment_pipe')] == ['AugmentPipe']
    # Pickled by reference, hence the environment's classes.
    assert {'training.volumetric_rendering.renderer.ImportanceRenderer', 'training.triplane.OSGDecoder',
        'training.volumetric_rendering.ray_sampler.RaySampler'} <= set(info['G_ema'])


def test_outputs_match_our_classes(original_load):
    theirs, _, snapshot_path = original_load
    ours = original_env.run_networks(load_network_pkl(snapshot_path))
    assert sorted(ours) == sorted(theirs)
    assert ours['G.image_raw'].shape == (2, 3, 64, 64) and ours['G_ema.image_raw'].shape == (2, 3, 32, 32)
    for name, value in ours.items():
        torch.testing.assert_close(theirs[name], value, rtol=RTOL, atol=ATOL, msg=lambda m, name=name: f'{name}: {m}')
