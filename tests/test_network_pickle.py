"""Safe loading of network pickles: class names inside the data, malformed files."""

import copy
import io
import pickle
import random
import sys
import textwrap

import numpy as np
import pytest
import torch
from helpers import tiny_training_snapshot

import dnnlib
from torch_utils import persistence
from training import network_pickle
from training.network_pickle import NetworkPickleError, load_network_pkl

HUBCONF = textwrap.dedent('''
    import pathlib
    import torch

    def evil(**kwargs):
        pathlib.Path(__file__).with_name('MARKER').write_text('hubconf.py ran')
        return torch.nn.Identity()
''')


@pytest.fixture(scope='module')
def snapshot():
    return tiny_training_snapshot()


@pytest.fixture
def hub_dir(tmp_path):
    """A local torch.hub repository whose entry point leaves a marker file behind when it runs."""
    (tmp_path / 'hubconf.py').write_text(HUBCONF)
    return tmp_path


@pytest.fixture
def canary_module(tmp_path, monkeypatch):
    """An importable module that leaves a marker file behind when it is imported."""
    (tmp_path / 'pickle_canary.py').write_text(
        f'open({str(tmp_path / "MARKER")!r}, "w").close()\nclass Thing:\n    pass\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop('pickle_canary', None)


def _tampered(snapshot, key, path, value) -> bytes:
    """The snapshot pickled with `value` written at `path` below snapshot[key]: keys, attributes, and 'init_kwargs'
    for a network's recorded constructor arguments."""
    data = dict(G=None, D=None, G_ema=None)  # Refusal comes before any network is built.
    data[key] = target = copy.deepcopy(snapshot[key])
    for name in path[:-1]:
        if isinstance(target, dict):
            target = target[name]
        else:
            target = target._init_kwargs if name == 'init_kwargs' else getattr(target, name)
    target[path[-1]] = value
    return pickle.dumps(data)


def _hub_attack(snapshot, hub_dir, key='G') -> bytes:
    G = copy.deepcopy(snapshot[key])
    G._init_kwargs['rendering_kwargs']['superresolution_module'] = 'torch.hub.load'
    G._init_kwargs['sr_kwargs'] = dnnlib.EasyDict(repo_or_dir=str(hub_dir), model='evil', source='local')
    return pickle.dumps({**snapshot, key: G})


def _assert_refused(payload, path, value, **load_kwargs):
    with pytest.raises(NetworkPickleError) as info:
        load_network_pkl(io.BytesIO(payload), **load_kwargs)
    message = str(info.value)
    assert '\n' not in message
    assert message.startswith(f'<network pickle>: {path}: "{value}" is not a class of this repository'), message


def test_torch_hub_attack_is_refused(snapshot, hub_dir):
    payload = _hub_attack(snapshot, hub_dir)
    for force_fp16 in (False, True):
        _assert_refused(payload, 'G.init_kwargs.rendering_kwargs.superresolution_module', 'torch.hub.load',
                        force_fp16=force_fp16)
    assert not (hub_dir / 'MARKER').exists()


def test_torch_hub_attack_is_real_with_trust(snapshot, hub_dir, capsys):
    # Rebuilding with the pickle's kwargs (force_fp16) constructs the generator, which is where the name resolves.
    with pytest.raises(NetworkPickleError, match='G: .*superresolution'):
        load_network_pkl(io.BytesIO(_hub_attack(snapshot, hub_dir)), force_fp16=True, trust_embedded_code=True)
    assert (hub_dir / 'MARKER').read_text() == 'hubconf.py ran'
    warning = capsys.readouterr().err.strip()
    assert warning.startswith('WARNING: <network pickle>: TRUSTING EMBEDDED CODE') and '\n' not in warning


@pytest.mark.parametrize('key, path, shown', [
    ('G', ['init_kwargs', 'class_name'], 'G.init_kwargs.class_name'),
    ('D', ['init_kwargs', 'class_name'], 'D.init_kwargs.class_name'),
    ('G_ema', ['init_kwargs', 'class_name'], 'G_ema.init_kwargs.class_name'),
    ('augment_pipe', ['init_kwargs', 'class_name'], 'augment_pipe.init_kwargs.class_name'),
    ('G', ['init_kwargs', 'mapping_kwargs', 'class_name'], 'G.init_kwargs.mapping_kwargs.class_name'),
    ('G', ['init_kwargs', 'sr_kwargs', 'class_name'], 'G.init_kwargs.sr_kwargs.class_name'),
    ('G_ema', ['init_kwargs', 'rendering_kwargs', 'superresolution_module'],
     'G_ema.init_kwargs.rendering_kwargs.superresolution_module'),
    ('D', ['init_kwargs', 'block_kwargs', 'class_name'], 'D.init_kwargs.block_kwargs.class_name'),
    ('D', ['init_kwargs', 'epilogue_kwargs', 'class_name'], 'D.init_kwargs.epilogue_kwargs.class_name'),
    ('D', ['init_kwargs', 'mapping_kwargs', 'func_name'], 'D.init_kwargs.mapping_kwargs.func_name'),
    ('G', ['rendering_kwargs', 'superresolution_module'], 'G.rendering_kwargs.superresolution_module'),
    ('G', ['superresolution', 'init_kwargs', 'class_name'], 'G.superresolution.init_kwargs.class_name'),
    ('G', ['init_kwargs', 'extra'], None),
    ('training_set_kwargs', ['class_name'], 'training_set_kwargs.class_name'),
])
def test_class_names_anywhere_are_refused(snapshot, key, path, shown):
    if shown is None:  # a list inside the kwargs, holding a dict with the name
        payload = _tampered(snapshot, key, path, [7, {'class_name': 'torch.hub.load'}])
        shown = 'G.init_kwargs.extra[1].class_name'
    else:
        payload = _tampered(snapshot, key, path, 'torch.hub.load')
    _assert_refused(payload, shown, 'torch.hub.load')


@pytest.mark.parametrize('value', ['os.system', 'pickle_canary.Thing', 'training.triplane.torch.load',
                                   'training.dataset.os.system', 'training.superresolution._HybridSuperresolution',
                                   'training.triplane.FullyConnectedLayer', 'torch.nn.Linear'])
def test_names_outside_the_repository_are_refused_before_import(snapshot, canary_module, value):
    for key, path, shown in [('training_set_kwargs', ['class_name'], 'training_set_kwargs.class_name'),
                             ('G', ['init_kwargs', 'rendering_kwargs', 'superresolution_module'],
                              'G.init_kwargs.rendering_kwargs.superresolution_module')]:
        _assert_refused(_tampered(snapshot, key, path, value), shown, value)
    assert not (canary_module / 'MARKER').exists()
    assert 'pickle_canary' not in sys.modules


def test_class_object_instead_of_a_name_is_refused(snapshot):
    payload = _tampered(snapshot, 'training_set_kwargs', ['class_name'], torch.nn.Sequential)
    with pytest.raises(NetworkPickleError, match=r"^<network pickle>: training_set_kwargs.class_name: <class 'torch"):
        load_network_pkl(io.BytesIO(payload))


def test_repository_classes_are_accepted(snapshot):
    loaded = load_network_pkl(io.BytesIO(pickle.dumps(snapshot)))
    assert loaded['G'].init_kwargs.rendering_kwargs['superresolution_module'].endswith('.SuperresolutionHybrid2X')
    assert loaded['training_set_kwargs']['class_name'] == 'training.dataset.ImageFolderDataset'
    for name in ['training.triplane.TriPlaneGenerator', 'training.dual_discriminator.DualDiscriminator',
                 'training.augment.AugmentPipe', 'training.dataset.ImageFolderDataset',
                 'training.superresolution.SuperresolutionHybrid8XDC', 'training.networks_stylegan3.Generator']:
        assert network_pickle.repository_class(name) is dnnlib.util.get_obj_by_name(name), name
    for name in ['torch.nn.Linear', 'training.triplane.FullyConnectedLayer', 'training.dataset', 'dnnlib.EasyDict',
                 'training.loss.StyleGAN2Loss', '', 'training.dataset.ImageFolderDataset.__init__', None, 3]:
        assert network_pickle.repository_class(name) is None, name


def test_restrict_names_blocks_resolution_during_rebuild(snapshot, hub_dir, monkeypatch):
    # Second line of defence: even a name the walk missed cannot be imported while networks are rebuilt.
    monkeypatch.setattr(network_pickle, 'check_names', lambda data: None)
    with pytest.raises(NetworkPickleError, match=r'^<network pickle>: G: class name: "torch.hub.load" is not a class'):
        load_network_pkl(io.BytesIO(_hub_attack(snapshot, hub_dir)))
    assert not (hub_dir / 'MARKER').exists()


# ----------------------------------------------------------------------------
# Malformed files: NetworkPickleError and nothing else.


class _Record:
    def __init__(self, meta):
        self.meta = meta

    def __reduce__(self):
        return (persistence._reconstruct_persistent_obj, (self.meta,))


def _augment_meta(**changes):
    meta = pickle.loads(pickle.dumps(_augment_pipe().__reduce__()[1][0]))
    meta.update(changes)
    return meta


def _augment_pipe():
    return dnnlib.util.construct_class_by_name(class_name='training.augment.AugmentPipe', xflip=1)


def _bad_state(**changes):
    meta = _augment_meta()
    meta['state'] = {**meta['state'], **changes}
    return meta


@pytest.mark.parametrize('meta', [
    'not a dict', dict(), _augment_meta(version='6'), _augment_meta(type='function'), _augment_meta(state=None),
    _augment_meta(state=[1, 2]), _augment_meta(class_name=None), _augment_meta(class_name='Missing'),
    _augment_meta(module_src=None), _augment_meta(module_src='class AugmentPipe(:'), _bad_state(_modules=5),
    _bad_state(_parameters=[1]), _bad_state(_init_kwargs='x'), _bad_state(_init_kwargs=dict(xflip='a lot')),
    _bad_state(_init_args=(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
                           26, 27, 28, 29, 30, 31, 32)),
    _bad_state(_buffers=dict(p=torch.zeros(7))), _bad_state(_init_kwargs={3: 4}),
])
def test_malformed_records_give_network_pickle_error(meta):
    payload = pickle.dumps(dict(G=_Record(meta), D=_Record(meta), G_ema=_Record(meta)))
    with pytest.raises(NetworkPickleError) as info:
        load_network_pkl(io.BytesIO(payload))
    assert str(info.value).startswith('<network pickle>: ') and '\n' not in str(info.value)


def test_corrupted_bytes_give_network_pickle_error_or_load():
    pipe = _augment_pipe()
    good = pickle.dumps(dict(training_set_kwargs=dict(class_name='training.dataset.ImageFolderDataset'),
                             G=pipe, D=pipe, G_ema=pipe))
    rng = random.Random(0)
    payloads = [good[:n] for n in sorted(rng.sample(range(len(good)), 40))]
    for _ in range(80):
        corrupt = bytearray(good)
        for position in rng.sample(range(len(good)), 3):
            corrupt[position] = rng.randrange(256)
        payloads.append(bytes(corrupt))
    payloads += [bytes(rng.randrange(256) for _ in range(200)) for _ in range(20)]
    loaded = 0
    for payload in payloads:
        try:
            load_network_pkl(io.BytesIO(payload))
            loaded += 1
        except NetworkPickleError as err:
            assert '\n' not in str(err)
    assert loaded < len(payloads)


def test_missing_file_and_bad_url(tmp_path):
    with pytest.raises(NetworkPickleError, match=r'nope\.pkl: No such file'):
        load_network_pkl(str(tmp_path / 'nope.pkl'))
    with pytest.raises(NetworkPickleError, match='nope.pkl'):
        network_pickle.open_network_pkl(str(tmp_path / 'nope.pkl'))
    with pytest.raises(NetworkPickleError, match='http://nodots'):
        network_pickle.open_network_pkl('http://nodots/x.pkl')


class _ObjectScalar:
    """numpy's scalar reconstructor asked for an object scalar: reading it would turn bytes into a pointer."""

    def __reduce__(self):
        multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
        return (multiarray.scalar, (np.dtype(object), b'\x01' * 8))


def test_object_scalar_is_refused():
    with pytest.raises(NetworkPickleError, match=r'cannot read the network pickle \(ValueError: .*OBJECT'):
        load_network_pkl(io.BytesIO(pickle.dumps(dict(G=_ObjectScalar(), D=None, G_ema=None))))
