import copy
import io
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import fork_pickle, render_two_images, tiny_training_snapshot

import dnnlib
import legacy
from torch_utils import persistence

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POISON = "raise RuntimeError('embedded source was executed')\n"


@pytest.fixture(scope='module')
def snapshot():
    return tiny_training_snapshot()


@pytest.fixture(scope='module')
def expected_image(snapshot):
    return render_two_images(snapshot['G_ema'])


@pytest.fixture
def official_bytes(snapshot, monkeypatch):
    """The snapshot pickled the way the official training loop does, but with embedded sources that explode
    if executed: a loader that runs them fails loudly."""
    for cls in list(persistence._decorators):
        monkeypatch.setattr(cls, '_orig_module_src', POISON + cls._orig_module_src)
    return pickle.dumps(snapshot)


def test_official_format_loads_into_our_classes(snapshot, official_bytes, expected_image):
    assert official_bytes.count(POISON.encode()) >= 4  # triplane, networks_stylegan2, superresolution, ...
    data = legacy.load_network_pkl(io.BytesIO(official_bytes))
    assert list(data.keys())[:5] == ['training_set_kwargs', 'G', 'D', 'G_ema', 'augment_pipe']
    G = data['G_ema']
    from training.triplane import TriPlaneGenerator
    assert isinstance(G, TriPlaneGenerator) and not G.training
    assert G.neural_rendering_resolution == 16
    assert G.rendering_kwargs == snapshot['G_ema'].rendering_kwargs
    assert torch.equal(G.dataset_label_std, snapshot['G_ema'].dataset_label_std)
    for name, tensor in snapshot['D'].state_dict().items():
        assert torch.equal(data['D'].state_dict()[name], tensor), name
    assert float(data['augment_pipe'].p) == pytest.approx(0.3)
    assert data['training_set_kwargs'] == snapshot['training_set_kwargs']
    assert torch.allclose(render_two_images(G), expected_image, atol=1e-6)


def test_plain_pickle_load_works_without_executing_sources(official_bytes, expected_image):
    data = pickle.loads(official_bytes)
    assert torch.allclose(render_two_images(data['G_ema']), expected_image, atol=1e-6)


def test_force_fp16_rebuilds_and_keeps_rendering_resolution(official_bytes):
    data = legacy.load_network_pkl(io.BytesIO(official_bytes), force_fp16=True)
    assert data['G_ema'].init_kwargs['num_fp16_res'] == 4 and data['G_ema'].init_kwargs['conv_clamp'] == 256
    assert data['D'].init_kwargs['num_fp16_res'] == 4
    assert data['G_ema'].neural_rendering_resolution == 16  # kept, not reset to 64 (docs/compat.md)


@pytest.mark.slow
def test_own_snapshot_round_trips_in_fresh_process(snapshot, expected_image, tmp_path):
    path = tmp_path / 'network-snapshot-000000.pkl'
    legacy.save_network_pkl(snapshot, str(path))
    expected = expected_image.sum().item()
    script = textwrap.dedent(f'''
        import sys
        sys.path.insert(0, {os.path.join(REPO_ROOT, 'tests')!r})
        import helpers
        import legacy
        data = legacy.load_network_pkl({str(path)!r})
        print(repr(helpers.render_two_images(data['G_ema']).sum().item()))
    ''')
    out = subprocess.run([sys.executable, '-c', script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.strip()) == pytest.approx(expected, rel=1e-6, abs=1e-5)


def test_cuda_storage_location_loads_on_cpu(snapshot, expected_image):
    # Snapshots written after GPU training hold the renderer's plane_axes as a CUDA tensor (compat.md §6).
    G = copy.deepcopy(snapshot['G_ema'])
    G.renderer.plane_axes = torch.full([3, 3, 3], 7.0)
    patched = _pickle_with_storage_location(dict(G=G, D=snapshot['D'], G_ema=G), 'cuda:0')
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError):
            pickle.loads(patched)  # what plain unpickling does on a machine without CUDA
    loaded = legacy.load_network_pkl(io.BytesIO(patched))
    assert loaded['G_ema'].renderer.plane_axes.device.type == 'cpu'
    assert torch.allclose(render_two_images(loaded['G_ema']), expected_image, atol=1e-6)


def _pickle_with_storage_location(obj, location):
    """pickle.dumps(obj), with every storage blob labelled as saved from `location` (e.g. a GPU)."""
    cpu_tag = b'X\x03\x00\x00\x00cpu'
    new_tag = b'X' + len(location).to_bytes(4, 'little') + location.encode()

    class Pickler(pickle.Pickler):
        def reducer_override(self, value):
            if isinstance(value, torch.storage.TypedStorage):
                fn, (blob,) = value.__reduce__()
                assert blob.count(cpu_tag) == 1
                return fn, (blob.replace(cpu_tag, new_tag),)
            return NotImplemented
    buffer = io.BytesIO()
    Pickler(buffer).dump(obj)
    return buffer.getvalue()


class _Evil:
    def __reduce__(self):
        return (os.system, ('echo should-not-run',))


@pytest.mark.parametrize('payload, message', [
    (pickle.dumps(dict(G=_Evil(), D=None, G_ema=None)), 'refusing to load global "posix.system"'),
    (pickle.dumps([1, 2, 3]), 'not a network snapshot (the pickle holds a list'),
    (pickle.dumps(dict(G=None, D=None)), 'missing key G_ema'),
    (b'this is not a pickle at all', 'cannot read the network pickle'),
])
def test_bad_pickles_give_one_line_errors(payload, message):
    with pytest.raises(legacy.NetworkPickleError) as info:
        legacy.load_network_pkl(io.BytesIO(payload))
    assert message in str(info.value) and '\n' not in str(info.value)


def test_truncated_pickle(official_bytes, tmp_path):
    path = tmp_path / 'cut.pkl'
    path.write_bytes(official_bytes[:len(official_bytes) // 2])
    with pytest.raises(legacy.NetworkPickleError, match=r'cut\.pkl: cannot read the network pickle \(truncated'):
        legacy.load_network_pkl(str(path))


def test_unknown_class_is_refused_unless_trusted(tmp_path):
    src = 'import torch\nclass Foreign(torch.nn.Module):\n    pass\n'
    meta = dict(type='class', version=6, module_src=src, class_name='Foreign', state=dict(training=False))

    class Record:
        def __reduce__(self):
            return (persistence._reconstruct_persistent_obj, (meta,))
    payload = pickle.dumps(dict(G=Record(), D=Record(), G_ema=Record()))
    with pytest.raises(legacy.NetworkPickleError, match='class "Foreign" in embedded source .* trust_embedded_code'):
        legacy.load_network_pkl(io.BytesIO(payload))
    data = legacy.load_network_pkl(io.BytesIO(payload), trust_embedded_code=True)
    assert type(data['G']).__name__ == 'Foreign'


def test_cli_converts_and_reports_errors(official_bytes, tmp_path, monkeypatch):
    src = tmp_path / 'official.pkl'
    src.write_bytes(official_bytes)
    dest = tmp_path / 'converted.pkl'
    result = CliRunner().invoke(legacy.convert_network_pickle, ['--source', str(src), '--dest', str(dest)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [f'Loading "{src}"...', f'Saving "{dest}"...', 'Done.']
    assert legacy.load_network_pkl(str(dest))['G_ema'].neural_rendering_resolution == 16

    result = CliRunner().invoke(legacy.convert_network_pickle, ['--source', str(tmp_path / 'nope.pkl'), '--dest', str(dest)])
    assert result.exit_code != 0 and 'nope.pkl' in result.output

    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))

    def offline(*args, **kwargs):
        raise dnnlib.util.urllib.error.URLError(OSError('offline'))
    monkeypatch.setattr(dnnlib.util.urllib.request, 'urlopen', offline)
    url = 'https://example.com/networks/ffhq512-128.pkl'
    result = CliRunner().invoke(legacy.convert_network_pickle, ['--source', url, '--dest', str(dest)])
    assert result.exit_code != 0
    assert url in result.output and dnnlib.util.url_cache_path(url) in result.output


# ----------------------------------------------------------------------------
# Converting a fork's pickle (--trust-embedded-code) into one that loads without trust.

@pytest.fixture
def fork_marker(tmp_path):
    return tmp_path / 'FORK_CODE_RAN'


def _convert(source, dest, *flags):
    return CliRunner().invoke(legacy.convert_network_pickle, ['--source', str(source), '--dest', str(dest), *flags])


def test_fork_pickle_converts_to_one_that_loads_without_trust(snapshot, expected_image, fork_marker, tmp_path):
    source, dest = tmp_path / 'fork.pkl', tmp_path / 'converted.pkl'
    source.write_bytes(fork_pickle(snapshot, fork_marker))
    with pytest.raises(legacy.NetworkPickleError, match='matches none of this repository\'s modules'):
        legacy.load_network_pkl(str(source))
    assert not fork_marker.exists()

    result = _convert(source, dest, '--trust-embedded-code')
    assert result.exit_code == 0, result.output
    assert fork_marker.exists()  # the fork's code did run, after the warning
    assert f'WARNING: {source}: TRUSTING EMBEDDED CODE' in result.stderr
    fork_marker.unlink()

    assert b'ForkOnly' not in dest.read_bytes()
    data = legacy.load_network_pkl(str(dest))
    assert not fork_marker.exists()
    from training.triplane import TriPlaneGenerator
    assert type(data['G_ema']) is TriPlaneGenerator and data['G_ema'].neural_rendering_resolution == 16
    assert torch.allclose(render_two_images(data['G_ema']), expected_image, atol=1e-6)
    assert float(data['augment_pipe'].p) == pytest.approx(0.3)
    assert data['training_set_kwargs'] == snapshot['training_set_kwargs']


def _foreign_record(class_name):
    src = f'import torch\nclass {class_name}(torch.nn.Module):\n    pass\n'
    meta = dict(type='class', version=6, module_src=src, class_name=class_name, state=dict(training=False))

    class Record:
        def __reduce__(self):
            return (persistence._reconstruct_persistent_obj, (meta,))
    return Record()


def _with_extra_parameter(G):
    G = copy.deepcopy(G)
    G.backbone.fork_gain = torch.nn.Parameter(torch.ones([]))
    return G


@pytest.mark.parametrize('change, reason', [
    (lambda s: dict(s, G=_foreign_record('ForkGenerator')), 'G: class "ForkGenerator" has no counterpart in this '
                                                            'repository'),
    (lambda s: dict(s, G_ema=_with_extra_parameter(s['G_ema'])), 'G_ema: TriPlaneGenerator: parameters/buffers do not '
                                                                 'match this repository\'s class (missing: [], '
                                                                 'unexpected: [\'backbone.fork_gain\'])'),
    (lambda s: dict(s, training_set_kwargs=dict(s['training_set_kwargs'], class_name='fork.data.Loader')),
     'training_set_kwargs.class_name: "fork.data.Loader" is not a class of this repository'),
])
def test_fork_pickle_without_counterpart_is_refused(snapshot, fork_marker, tmp_path, change, reason):
    source, dest = tmp_path / 'fork.pkl', tmp_path / 'converted.pkl'
    source.write_bytes(fork_pickle(change(snapshot), fork_marker))
    result = _convert(source, dest, '--trust-embedded-code')
    assert result.exit_code == 1 and result.stdout == f'Loading "{source}"...\n'
    assert result.stderr.splitlines()[-1].startswith(f'Error: {source}: {reason}'), result.stderr
    assert len(result.stderr.splitlines()) == 2  # the trust warning and the error
    assert not dest.exists()


# ----------------------------------------------------------------------------
# Snapshots of the three-distinct-planes layout.

def _render_facing_the_box(G):
    from camera_utils import LookAtPoseSampler
    cam2world = LookAtPoseSampler.sample(1.3, 1.2, torch.zeros(3), radius=1.7)
    c = torch.cat([cam2world.reshape(1, 16), torch.tensor([[1.7074, 0, 0.5, 0, 1.7074, 0.5, 0, 0, 1]])], dim=1)
    torch.manual_seed(3)
    return G(torch.from_numpy(np.random.RandomState(1).randn(1, G.z_dim)).float(), c, noise_mode='const')['image']


def test_new_plane_layout_travels_in_snapshots_and_is_not_converted(snapshot, tmp_path):
    from inference import generation
    data = copy.deepcopy(snapshot)
    for key in ('G', 'G_ema'):
        data[key].rendering_kwargs['plane_layout'] = 'xy_xz_zy'
    trained = _render_facing_the_box(data['G_ema'])
    original = _render_facing_the_box(snapshot['G_ema'])
    assert (trained - original).abs().max() > 1e-2  # Same weights, other planes: another image.
    path = tmp_path / 'network-snapshot-000000.pkl'
    legacy.save_network_pkl(data, str(path))
    loaded = generation.open_snapshot(str(path))['G_ema']  # What gen_samples, gen_videos, calc_metrics, the viewer and the projector load.
    assert loaded.rendering_kwargs['plane_layout'] == 'xy_xz_zy'
    assert torch.allclose(_render_facing_the_box(loaded), trained, atol=1e-6)

    dest = tmp_path / 'converted.pkl'
    result = CliRunner().invoke(legacy.convert_network_pickle, ['--source', str(path), '--dest', str(dest)])
    assert result.exit_code == 1 and not dest.exists()
    assert sorted(result.output.splitlines()) == [
        f'Error: {path}: G was trained with plane_layout "xy_xz_zy", which the original EG3D renders wrongly (as '
        f'"xy_xz_zx"); not converted (this repository\'s tools load the file as it is)', f'Loading "{path}"...']
