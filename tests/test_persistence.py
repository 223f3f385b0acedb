import pathlib
import pickle
import pickletools
import subprocess
import sys
import textwrap

import pytest

from torch_utils import persistence

MODULE_SRC = textwrap.dedent('''
    import torch
    from torch_utils import persistence

    @persistence.persistent_class
    class Block(torch.nn.Module):
        def __init__(self, channels, scale=1.0, extra=None):
            super().__init__()
            self.scale = scale
            self.weight = torch.nn.Parameter(torch.arange(channels, dtype=torch.float32))

        def forward(self, x):
            return x * self.weight * self.scale

    @persistence.persistent_class
    class Net(torch.nn.Module):
        def __init__(self, channels, block_kwargs={}):
            super().__init__()
            self.block = Block(channels, **block_kwargs)

        def forward(self, x):
            return self.block(x) + 1
''')


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / 'my_user_nets.py').write_text(MODULE_SRC)
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_user_nets
    yield my_user_nets
    del sys.modules['my_user_nets']


def test_init_args_and_kwargs_are_recorded(user_module):
    import dnnlib
    net = user_module.Net(3, block_kwargs=dnnlib.EasyDict(scale=2.0))
    assert persistence.is_persistent(net) and persistence.is_persistent(user_module.Net)
    assert net.init_args == (3,)
    assert net.init_kwargs == {'block_kwargs': {'scale': 2.0}}
    assert isinstance(net.init_kwargs, dnnlib.EasyDict)
    assert type(net._init_kwargs) is dict and isinstance(net._init_kwargs['block_kwargs'], dnnlib.EasyDict)
    net.init_kwargs['block_kwargs']['scale'] = 5.0  # a deep copy: the record must not change
    assert net.init_kwargs.block_kwargs.scale == 2.0


def test_reduce_tuple_matches_official_format(user_module):
    net = user_module.Net(3)
    fn, args, state = net.__reduce__()
    assert fn is persistence._reconstruct_persistent_obj and state is None
    meta, = args
    assert list(meta.keys()) == ['type', 'version', 'module_src', 'class_name', 'state']
    assert meta['type'] == 'class' and meta['version'] == 6 and meta['class_name'] == 'Net'
    assert meta['module_src'] == MODULE_SRC
    assert meta['state']['_init_args'] == (3,) and meta['state']['_init_kwargs'] == {}

    data = pickle.dumps(net, protocol=4)
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(data)]
    assert ('SHORT_BINUNICODE', 'torch_utils.persistence') in ops
    assert ('SHORT_BINUNICODE', '_reconstruct_persistent_obj') in ops
    assert 'BUILD' not in [name for name, _ in ops]  # the state travels inside meta
    # Both classes come from one module: its source text is written once and memoized.
    assert data.count(b'class Block(torch.nn.Module)') == 1


@pytest.mark.slow
def test_unpickle_in_fresh_process_without_defining_module(user_module, tmp_path):
    import torch
    net = user_module.Net(4, block_kwargs=dict(scale=3.0))
    (tmp_path / 'net.pkl').write_bytes(pickle.dumps(net))
    expected = net(torch.ones(4)).tolist()
    (tmp_path / 'my_user_nets.py').unlink()  # The fresh process must rebuild the class from the pickle.
    script = textwrap.dedent(f'''
        import pickle, sys, torch
        from torch_utils import persistence
        data = open({str(tmp_path / 'net.pkl')!r}, 'rb').read()
        try:
            pickle.loads(data)
            raise SystemExit('loaded without opt-in')
        except persistence.EmbeddedCodeError as err:
            assert 'trust' in str(err)
        with persistence.allow_embedded_code():
            net = pickle.loads(data)
        assert 'my_user_nets' not in sys.modules
        assert net.init_args == (4,) and net.init_kwargs == dict(block_kwargs=dict(scale=3.0))
        assert persistence.is_persistent(net.block)
        print(net(torch.ones(4)).tolist())
    ''')
    out = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                         cwd=str(pathlib.Path(__file__).parents[1]))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(expected)


def test_import_hook_sees_meta(user_module):
    seen = []

    def hook(meta):
        seen.append(meta.class_name)
        return meta
    persistence.import_hook(hook)
    try:
        with persistence.allow_embedded_code():
            pickle.loads(pickle.dumps(user_module.Net(2)))
    finally:
        persistence._import_hooks.remove(hook)
    assert seen == ['Block', 'Net']


def test_bad_version_is_refused(user_module):
    meta = user_module.Net(2).__reduce__()[1][0]
    meta['version'] = 5
    with pytest.raises(pickle.UnpicklingError, match='version'):
        persistence._reconstruct_persistent_obj(meta)


def test_unpicklable_member_fails_at_construction(user_module):
    with pytest.raises(TypeError, match='unpicklable'):
        user_module.Block(2, extra=lambda x: x)


def _stub_source(*class_names):
    return 'raise RuntimeError("never executed")\n' + ''.join(f'class {name}:\n    pass\n' for name in class_names)


@pytest.mark.parametrize('class_names, class_name, expected', [
    (['FullyConnectedLayer', 'Conv2dLayer', 'MappingNetwork', 'SynthesisLayer', 'ToRGBLayer', 'SynthesisBlock',
      'SynthesisNetwork', 'Generator', 'DiscriminatorBlock', 'MinibatchStdLayer', 'DiscriminatorEpilogue',
      'Discriminator'], 'FullyConnectedLayer', 'training.networks_stylegan2'),
    (['FullyConnectedLayer', 'MappingNetwork', 'SynthesisInput', 'SynthesisLayer', 'SynthesisNetwork', 'Generator'],
     'FullyConnectedLayer', 'training.networks_stylegan3'),
    (['SuperresolutionHybrid2X', 'SuperresolutionHybrid4X', 'SuperresolutionHybrid8X', 'SuperresolutionHybridDeepfp32',
      'SynthesisBlockNoUp', 'SuperresolutionHybrid8XDC'], 'SynthesisBlockNoUp', 'training.superresolution'),
    (['TriPlaneGenerator', 'OSGDecoder'], 'TriPlaneGenerator', 'training.triplane'),
    (['SingleDiscriminator', 'DualDiscriminator', 'DummyDualDiscriminator'], 'DualDiscriminator',
     'training.dual_discriminator'),
    (['AugmentPipe'], 'AugmentPipe', 'training.augment'),
    (['AugmentPipe', 'MyOwnThing', 'Another', 'YetAnother'], 'AugmentPipe', None),  # a fork's module: not ours
])
def test_official_module_sources_map_onto_our_modules(class_names, class_name, expected):
    # The class sets of the official EG3D modules (compat.md §3): records map by the whole set, never by executing it.
    module = persistence.match_known_module(_stub_source(*class_names), class_name)
    assert (module.__name__ if module is not None else None) == expected


@pytest.mark.parametrize('class_names, class_name, expected', [
    (['TriPlaneGenerator', 'OSGDecoder'] + [f'ForkOnly{i}' for i in range(20)], 'TriPlaneGenerator', 'training.triplane'),
    (['FullyConnectedLayer', 'SynthesisInput', 'ForkA', 'ForkB', 'ForkC', 'ForkD', 'ForkE', 'ForkF', 'ForkG', 'ForkH'],
     'FullyConnectedLayer', 'training.networks_stylegan3'),  # the namesakes are told apart by the other classes
    (['ForkGenerator'], 'ForkGenerator', None),
    (['OSGDecoder'], 'OSGDecoder', None),  # ours, but not a persistent class
])
def test_counterpart_class_goes_by_name(class_names, class_name, expected):
    cls = persistence.counterpart_class(_stub_source(*class_names), class_name)
    assert (cls.__module__ if cls is not None else None) == expected
    if cls is not None:
        assert persistence.is_persistent(cls) and cls.__name__ == class_name
