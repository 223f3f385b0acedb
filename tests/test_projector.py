"""projector.py end to end on a tiny generator snapshot: outputs, the tuned snapshot's round trip through the
generation scripts' loader, and one-line errors that leave nothing behind."""

import copy
import json
import os
import pickle

import imageio
import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner
from helpers import build_projection_generator, frontal_camera, render, target_latent, write_stand_in_detector

import dnnlib
import projector
from inference import generation
from metrics import metric_utils
from torch_utils import misc
from training import network_pickle

pytestmark = pytest.mark.filterwarnings('ignore:`torch.jit')

# ----------------------------------------------------------------------------


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
    """A snapshot, a target photo it rendered, and the photo's dataset.json: dict of paths and the label."""
    folder = tmp_path_factory.mktemp('inputs')
    G = build_projection_generator()
    D = dnnlib.util.construct_class_by_name(class_name='training.dual_discriminator.DualDiscriminator', c_dim=25,
                                            img_resolution=128, img_channels=3, channel_base=256, channel_max=8)
    snapshot = dict(training_set_kwargs=dict(resolution=128), G=G, D=D.eval().requires_grad_(False),
                    G_ema=copy.deepcopy(G), augment_pipe=None)
    network = str(folder / 'network.pkl')
    with open(network, 'wb') as f:
        pickle.dump(snapshot, f)
    no_g_ema = str(folder / 'no_g_ema.pkl')
    with open(no_g_ema, 'wb') as f:
        pickle.dump({key: value for key, value in snapshot.items() if key != 'G_ema'}, f)

    c = frontal_camera()
    photo = str(folder / 'face.png')
    PIL.Image.fromarray(misc.to_uint8(render(G, target_latent(G, c), c))[0].numpy()).save(photo)
    label = c[0].tolist()
    dataset_json = str(folder / 'dataset.json')
    with open(dataset_json, 'w') as f:
        json.dump(dict(labels=[['00000/other.png', [0] * 25], ['00000/face.png', label]]), f)
    return dict(network=network, no_g_ema=no_g_ema, photo=photo, dataset_json=dataset_json, label=label,
                folder=folder)


def run(args):
    return CliRunner().invoke(projector.run_projection, ['--device=cpu'] + args)


def numbers(values):
    return ','.join(repr(v) for v in values)

# ----------------------------------------------------------------------------


@pytest.mark.slow
def test_end_to_end_with_tuning_and_perceptual_loss(inputs, tmp_path, monkeypatch):
    monkeypatch.setenv(metric_utils.DETECTOR_DIR_ENV, os.path.dirname(write_stand_in_detector(str(tmp_path / 'det'))))
    out = str(tmp_path / 'out')
    result = run(['--network', inputs['network'], '--target', inputs['photo'], '--camera', inputs['dataset_json'],
                  '--outdir', out, '--num-steps=2', '--pti-steps=1', '--num-frames=2', '--shapes=true',
                  '--shape-res=32', '--latent-space=w_plus', '--loss=lpips+mse'])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(out)) == ['novel_views.mp4', 'optimization.mp4', 'proj.png', 'projected_w.npz',
                                       'shape.ply', 'tuned.pkl']
    with PIL.Image.open(os.path.join(out, 'proj.png')) as img:
        assert img.size == (3 * 128, 128)
        panels = np.asarray(img).reshape(128, 3, 128, 3)
    with PIL.Image.open(inputs['photo']) as img:
        assert np.array_equal(panels[:, 0], np.asarray(img))
    with np.load(os.path.join(out, 'projected_w.npz')) as npz:
        ws, c = torch.from_numpy(npz['w']), torch.from_numpy(npz['c'])
    assert ws.shape == (1, 14, 512) and torch.equal(c, torch.tensor([inputs['label']], dtype=torch.float32))
    assert imageio.get_reader(os.path.join(out, 'optimization.mp4')).count_frames() == 3  # 2 projection + 1 tuning
    assert imageio.get_reader(os.path.join(out, 'novel_views.mp4')).count_frames() == 2

    # The tuned snapshot loads like any other and reproduces the last panel (up to uint8 rounding).
    with open(os.path.join(out, 'tuned.pkl'), 'rb') as f:
        data = network_pickle.load_network_pkl(f)
    assert data['training_set_kwargs'] == dict(resolution=128)
    G = generation.load_generator(os.path.join(out, 'tuned.pkl'), torch.device('cpu'))
    tuned_panel = misc.to_uint8(render(G, ws, c, seed=0))[0].numpy().astype(int)  # --seed's default
    assert np.abs(tuned_panel - panels[:, 2]).max() <= 1


@pytest.mark.slow
def test_pixel_loss_run_is_deterministic(inputs, tmp_path):
    results = []
    for name in ('a', 'b'):
        out = str(tmp_path / name)
        result = run(['--network', inputs['network'], '--target', inputs['photo'], '--camera',
                      numbers(inputs['label']), '--outdir', out, '--num-steps=2', '--num-frames=1', '--loss=mse',
                      '--seed=3'])
        assert result.exit_code == 0, result.output
        assert 'PSNR of the fit:' in result.output
        assert sorted(os.listdir(out)) == ['novel_views.mp4', 'optimization.mp4', 'proj.png', 'projected_w.npz']
        with np.load(os.path.join(out, 'projected_w.npz')) as npz:
            results.append(npz['w'])
    assert np.array_equal(results[0], results[1])


def test_without_camera_the_snapshots_frontal_camera_is_used(inputs, tmp_path, restore_determinism):
    # The photo was rendered from the snapshot's frontal camera (FFHQ preset: its pivot, radius and focal).
    out = str(tmp_path / 'out')
    result = run(['--network', inputs['network'], '--target', inputs['photo'], '--outdir', out, '--num-steps=1',
                  '--num-frames=1', '--loss=mse', '--deterministic=True'])
    assert result.exit_code == 0, result.output
    assert "No --camera: fitting from the snapshot's frontal camera. Camera: focal 4.2647" in result.output
    with np.load(os.path.join(out, 'projected_w.npz')) as npz:
        assert npz['c'][0] == pytest.approx(inputs['label'], abs=1e-6)
    assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark


def test_non_square_target_is_center_cropped(tmp_path):
    photo = np.zeros([60, 100, 3], dtype=np.uint8)
    photo[:, 20:80] = 255  # The centre square: white, the sides black.
    target = projector.target_tensor(photo, 32, 'cpu')
    assert target.shape == (1, 3, 32, 32) and torch.equal(target, torch.ones_like(target))


def test_camera_label_lookup(inputs, tmp_path):
    assert projector.read_camera(inputs['dataset_json'], '/elsewhere/face.png') == inputs['label']
    assert projector.read_camera(inputs['dataset_json'], 'face.jpg') == inputs['label']  # Same stem.
    assert projector.read_camera(numbers(inputs['label']), 'x.png') == inputs['label']


def _fails_cleanly(args, message, tmp_path):
    out = tmp_path / 'out'
    result = run(args + ['--outdir', str(out)])
    assert result.exit_code != 0
    errors = [line for line in result.output.splitlines() if line.startswith('Error')]
    assert len(errors) == 1 and message in errors[0], result.output
    assert len(result.output.strip().splitlines()) <= 2  # At most "Loading networks from ..." before it.
    assert not out.exists()


def test_bad_inputs_are_one_line_and_write_nothing(inputs, tmp_path, monkeypatch):
    net, photo, meta = inputs['network'], inputs['photo'], inputs['dataset_json']
    broken = tmp_path / 'broken.png'
    broken.write_bytes(b'not an image')
    _fails_cleanly(['--network', net, '--target', str(broken), '--camera', meta],
                   f'--target={broken}: cannot read the image', tmp_path)
    _fails_cleanly(['--network', net, '--target', photo, '--camera', numbers(inputs['label'][:24])],
                   '--camera: a camera label has 25 numbers (cam2world 4x4, intrinsics 3x3), got 24', tmp_path)
    _fails_cleanly(['--network', net, '--target', photo, '--camera', 'one,two'],
                   '--camera: "one,two" is neither a dataset.json file nor a list of 25 numbers', tmp_path)
    unlisted = tmp_path / 'unlisted.png'
    unlisted.write_bytes(open(photo, 'rb').read())
    _fails_cleanly(['--network', net, '--target', str(unlisted), '--camera', meta],
                   f'{meta}: no label for a file named like the target "unlisted.png"', tmp_path)
    reflected = list(inputs['label'])
    reflected[0] = -reflected[0]
    _fails_cleanly(['--network', net, '--target', photo, '--camera', numbers(reflected)],
                   'determinant -1', tmp_path)
    _fails_cleanly(['--network', inputs['no_g_ema'], '--target', photo, '--camera', meta],
                   'not a network snapshot (missing key G_ema)', tmp_path)
    monkeypatch.setenv(metric_utils.DETECTOR_DIR_ENV, str(tmp_path / 'empty'))
    _fails_cleanly(['--network', net, '--target', photo, '--camera', meta],
                   'vgg16.pt: no such file ($EG3D_DETECTOR_DIR is set', tmp_path)
    file_outdir = tmp_path / 'file'
    file_outdir.write_text('x')
    result = run(['--network', net, '--target', photo, '--camera', meta, '--loss=mse', '--outdir', str(file_outdir)])
    assert result.exit_code != 0 and f'--outdir={file_outdir}: exists and is not a directory' in result.output
    assert file_outdir.read_text() == 'x'
