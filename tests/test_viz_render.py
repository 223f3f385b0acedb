"""viz.render driven directly: view requests -> images, cached tri-planes, output kinds, previews, meshes."""

import pickle

import numpy as np
import pytest
import torch
from helpers import FORK_CLASSES, read_ply, write_tiny_snapshot

from camera_utils import FOV_to_intrinsics, LookAtPoseSampler
from torch_utils import persistence
from training import cameras, network_pickle, presets
from training.triplane import TriPlaneGenerator
from viz import render
from viz.view_request import RequestError

FFHQ_FOV = cameras.focal_to_fov(cameras.FOCAL_FFHQ)  # The tiny snapshot has FFHQ's rendering preset.


@pytest.fixture(scope='module')
def snapshot(tmp_path_factory):
    return write_tiny_snapshot(str(tmp_path_factory.mktemp('net') / 'network-snapshot-000000.pkl'))


@pytest.fixture
def renderer():
    return render.Renderer(device='cpu')


def test_image_of_the_generator_size(renderer, snapshot):
    result = renderer.render(dict(network=snapshot, seed=1, seq=7))
    image = result['image']
    assert image.dtype == np.uint8 and image.shape == (128, 128, 3)
    assert (result['width'], result['height'], result['seq']) == (128, 128, 7)
    assert image.std() > 0
    assert result['network']['neural_rendering_resolution'] == 16
    assert result['settings'] == dict(fov=FFHQ_FOV, neural_rendering_resolution=16, depth_resolution=6,
                                      depth_resolution_importance=6, super_resolution=True)
    assert set(result['timing']) == {'load_ms', 'planes_ms', 'render_ms', 'total_ms'}
    assert all(t >= 0 for t in result['timing'].values())


def test_matches_the_generator_forward_pass(renderer, snapshot):
    # Frontal conditioning and the default camera are gen_samples' front view: the same image as G(z, c).
    result = renderer.render(dict(network=snapshot, seed=3, psi=0.7, cutoff=14))
    G, _info = renderer.network(snapshot)
    pivot = torch.tensor([0, 0, 0.2])
    cam2world = LookAtPoseSampler.sample(np.pi / 2, np.pi / 2, pivot, radius=2.7)
    c = torch.cat([cam2world.reshape(1, 16), cameras.intrinsics_matrix(cameras.FOCAL_FFHQ).reshape(1, 9)], dim=1)
    z = torch.from_numpy(np.random.RandomState(3).randn(1, 512))
    with torch.no_grad():
        ws = G.mapping(z, c, truncation_psi=0.7, truncation_cutoff=14)
        torch.manual_seed(0)  # the renderer's fixed jitter of the ray samples
        image = G.synthesis(ws, c, noise_mode='const')['image']
    expected = (image.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].numpy()
    assert np.array_equal(result['image'], expected)  # same ops on the same inputs


def test_camera_change_reuses_planes(renderer, snapshot):
    base = dict(network=snapshot, seed=2, psi=0.8, output='image_raw')  # the planes do not depend on the output
    first = renderer.render(base)
    assert not first['planes_reused'] and renderer.stats['planes_computed'] == 1
    moved = renderer.render(dict(base, yaw=30, pitch=10, distance=1.2, fov=25, output='image',
                                 neural_rendering_resolution=24, depth_resolution=4, quality='preview'))
    assert moved['planes_reused'] and renderer.stats['planes_computed'] == 1
    assert renderer.stats['planes_reused'] == 1
    again = renderer.render(base)
    assert np.array_equal(again['image'], first['image'])
    assert not np.array_equal(renderer.render(dict(base, yaw=30))['image'], first['image'])

    # Anything that changes the latent or the conditioning pose computes new planes.
    for change in (dict(seed=3), dict(psi=0.5), dict(cutoff=2), dict(seed2=5, mix=0.5), dict(conditioning='camera')):
        assert not renderer.render(dict(base, **change))['planes_reused'], change
    assert renderer.stats['planes_computed'] == 6
    # With conditioning on the camera, the pose is part of the latent.
    assert not renderer.render(dict(base, conditioning='camera', yaw=20))['planes_reused']
    assert renderer.stats['networks_loaded'] == 1


def test_output_kinds_and_sizes(renderer, snapshot):
    base = dict(network=snapshot, seed=4, neural_rendering_resolution=20)
    assert renderer.render(base)['image'].shape == (128, 128, 3)
    raw = renderer.render(dict(base, output='image_raw'))['image']
    depth = renderer.render(dict(base, output='depth'))['image']
    assert raw.shape == depth.shape == (20, 20, 3)
    assert raw.std() > 0 and depth.std() > 0
    assert not np.array_equal(raw, depth)


def test_preview_renders_fewer_rays_and_samples(renderer, snapshot):
    request = dict(network=snapshot, seed=1, neural_rendering_resolution=64, depth_resolution=12,
                   depth_resolution_importance=12, quality='preview')
    result = renderer.render(dict(request, output='image_raw'))
    assert result['image'].shape == (32, 32, 3)
    assert result['settings'] == dict(fov=FFHQ_FOV, neural_rendering_resolution=32, depth_resolution=6,
                                      depth_resolution_importance=6, super_resolution=False)
    # A preview of the final image is the neural rendering, without super-resolution.
    preview = renderer.render(request)
    assert preview['image'].shape == (32, 32, 3) and not preview['settings']['super_resolution']
    assert np.array_equal(preview['image'], result['image'])
    # The network keeps its own settings.
    G, _info = renderer.network(snapshot)
    assert G.neural_rendering_resolution == 16
    assert (G.rendering_kwargs['depth_resolution'], G.rendering_kwargs['depth_resolution_importance']) == (6, 6)
    assert render.preview_settings(16, 6, 6) == (16, 4, 3)
    assert render.preview_settings(128, 48, 48) == (64, 24, 24)
    assert render.preview_settings(8, 2, 0) == (8, 2, 0)


def test_latent_interpolation(renderer, snapshot):
    base = dict(network=snapshot, seed=1, seed2=2, output='image_raw')
    assert np.array_equal(renderer.render(dict(base, mix=0))['image'], renderer.render(dict(base, seed2=None))['image'])
    end = renderer.render(dict(base, mix=1))['image']
    assert np.array_equal(end, renderer.render(dict(base, seed=2, seed2=None))['image'])
    halfway = renderer.render(dict(base, mix=0.5))['image']
    assert not np.array_equal(halfway, end)


def test_default_fov_is_the_snapshots_focal(renderer, snapshot):
    # The FOV field's degrees are FOV_to_intrinsics' own: the default one renders with the snapshot's focal.
    G, info = renderer.network(snapshot)
    assert FOV_to_intrinsics(info['fov'])[0, 0].item() == pytest.approx(cameras.FOCAL_FFHQ, abs=1e-6)
    G.rendering_kwargs['avg_camera_focal'] = 2.5  # Recorded by this project's training.
    assert render.Renderer._describe(G)['fov'] == pytest.approx(cameras.focal_to_fov(2.5))
    shapenet = type('G', (), dict(rendering_kwargs=presets.rendering_preset('shapenet')))
    assert cameras.focal_to_fov(cameras.snapshot_camera(shapenet).focal) == pytest.approx(45.0, abs=1e-3)


@pytest.mark.parametrize('request_, message', [
    (dict(seed='x'), '"seed": expected an integer'),
    (dict(seed=-1), '"seed": -1 is outside'),
    (dict(output='normals'), '"output": \'normals\' is not one of image, image_raw, depth'),
    (dict(pitch=90), '"pitch": 90 is outside [-89, 89]'),
    (dict(zoom=2), "unknown field 'zoom'"),
    (dict(network='/nonexistent/net.pkl'), '"network": '),
    (dict(network=''), '"network": no network given'),
])
def test_bad_requests(renderer, snapshot, request_, message):
    with pytest.raises(RequestError) as info:
        renderer.render(dict(dict(network=snapshot), **request_))
    assert message in str(info.value)
    assert '\n' not in str(info.value)


def test_mesh_export(renderer, snapshot, tmp_path):
    name, data = renderer.export_mesh(dict(network=snapshot, seed=3), shape_res=32, capture_dir=str(tmp_path))
    assert name == 'seed0003.ply'
    assert (tmp_path / name).read_bytes() == data
    header, verts, faces = read_ply(str(tmp_path / name))
    assert len(verts) > 0 and len(faces) > 0
    assert 'property uchar red' in header and 'rgb' in verts.dtype.names  # coloured by the generator
    with pytest.raises(RequestError, match='"format"'):
        renderer.export_mesh(dict(network=snapshot), mesh_format='.stl')
    with pytest.raises(RequestError, match=r'^mesh of seed 3: iso-level 1e\+06 lies outside the density range .*iso-level$'):
        renderer.export_mesh(dict(network=snapshot, seed=3), shape_res=16, level=1e6)


def test_trusted_snapshot_without_render_planes(snapshot, tmp_path):
    # A trusted fork's snapshot runs the triplane.py embedded in it; one forked before render_planes() existed
    # is rebuilt with this repository's classes and renders as the same networks loaded without trust.
    with open(snapshot, 'rb') as f:
        data = pickle.load(f)
    old_source = TriPlaneGenerator._orig_module_src.replace('render_planes', 'rendered_from_planes') + FORK_CLASSES
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TriPlaneGenerator, '_orig_module_src', old_source)
        (tmp_path / 'old.pkl').write_bytes(pickle.dumps(data))
    assert not hasattr(network_pickle.open_network_pkl(str(tmp_path / 'old.pkl'), trust_embedded_code=True)['G_ema'],
                       'render_planes')
    trusting = render.Renderer(device='cpu', trusted_networks=[str(tmp_path / 'old.pkl')])
    G, _info = trusting.network(str(tmp_path / 'old.pkl'))
    assert type(G) is TriPlaneGenerator and persistence.is_persistent(G)
    request = dict(seed=5, output='image_raw')
    assert np.array_equal(trusting.render(dict(request, network=str(tmp_path / 'old.pkl')))['image'],
                          render.Renderer(device='cpu').render(dict(request, network=snapshot))['image'])
