"""Compatibility contract with official EG3D snapshots: state_dict names/shapes/dtypes (exact order) of G and
D for every train.py config, constructor argument conventions (init_args / init_kwargs) and the instance
attributes that pickles carry (spec: compat.md §5, networks.md §9)."""

import copy
import csv
import json
import os
import pickle

import numpy as np
import pytest
import torch
from helpers import STATE_DICTS_DIR, build_golden_discriminator, build_golden_generator, load_golden_config

import dnnlib
from torch_utils import persistence

CLASS_NAMES = {'G': 'training.triplane.TriPlaneGenerator', 'D': 'training.dual_discriminator.DualDiscriminator'}
EASYDICT_KWARGS = {'G': ('mapping_kwargs', 'sr_kwargs'), 'D': ('block_kwargs', 'mapping_kwargs', 'epilogue_kwargs')}


def _load_kwargs(cfg, net):
    with open(os.path.join(STATE_DICTS_DIR, f'{cfg}_{net}_kwargs.json')) as f:
        kwargs = json.load(f)
    for key in EASYDICT_KWARGS[net]:
        kwargs[key] = dnnlib.EasyDict(kwargs[key])
    return kwargs


def _read_table(cfg, net):
    with open(os.path.join(STATE_DICTS_DIR, f'{cfg}_{net}.tsv'), newline='') as f:
        rows = list(csv.DictReader(f, delimiter='\t'))
    return [(r['name'], r['kind'], r['shape'], r['dtype'], int(r['numel'])) for r in rows]


def _describe(module):
    rows = []
    for name, value in module.state_dict(keep_vars=True).items():
        kind = 'param' if isinstance(value, torch.nn.Parameter) else 'buffer'
        shape = '[' + ', '.join(str(size) for size in value.shape) + ']'
        rows.append((name, kind, shape, str(value.dtype).removeprefix('torch.'), value.numel()))
    return rows


@pytest.mark.parametrize('cfg', ['ffhq', 'afhq', 'shapenet'])
@pytest.mark.parametrize('net', ['G', 'D'])
def test_state_dict_matches_official(cfg, net):
    kwargs = _load_kwargs(cfg, net)
    module = dnnlib.util.construct_class_by_name(class_name=CLASS_NAMES[net], **copy.deepcopy(kwargs))
    if net == 'G': # Added by the training loop after construction.
        module.register_buffer('dataset_label_std', torch.zeros(kwargs['c_dim']))
    actual, expected = _describe(module), _read_table(cfg, net)
    for idx, (a, e) in enumerate(zip(actual, expected)):
        assert a == e, f'{cfg}_{net}.tsv row {idx}: got {a}, expected {e}'
    assert len(actual) == len(expected)

    assert module.init_args == ()
    assert module.init_kwargs == kwargs
    for key in EASYDICT_KWARGS[net]:
        assert type(module.init_kwargs[key]) is dnnlib.EasyDict
    if net == 'G':
        assert type(module.init_kwargs.rendering_kwargs) is dict
        assert module.neural_rendering_resolution == 64 and module._last_planes is None

#----------------------------------------------------------------------------

@pytest.fixture(scope='module')
def networks():
    return build_golden_generator(), build_golden_discriminator()


def test_rendering_kwargs_kept_by_reference():
    cfg = load_golden_config()
    rendering_kwargs = cfg['G_kwargs'].pop('rendering_kwargs')
    G = dnnlib.util.construct_class_by_name(**cfg['G_kwargs'], **cfg['common_kwargs'],
        rendering_kwargs=rendering_kwargs)
    assert G.rendering_kwargs is rendering_kwargs


# Positional constructor arguments that parents pass (networks.md §9); everything else is keyword-only.
NUM_INIT_ARGS = {'Generator': 3, 'SynthesisBlock': 2, 'SynthesisBlockNoUp': 2, 'SynthesisLayer': 2, 'ToRGBLayer': 2,
    'FullyConnectedLayer': 2, 'Conv2dLayer': 2, 'DiscriminatorBlock': 3, 'DiscriminatorEpilogue': 1}


def test_init_args_conventions(networks):
    for net in networks:
        for name, module in net.named_modules():
            if persistence.is_persistent(module):
                expected = NUM_INIT_ARGS.get(type(module).__name__, 0)
                assert len(module.init_args) == expected, f'{name}: init_args {module.init_args}'


def test_init_kwargs_examples(networks):
    G, D = networks
    b = G.backbone
    assert b.init_args == (512, 25, 512)
    assert b.init_kwargs == dict(img_resolution=256, img_channels=96, mapping_kwargs={'num_layers': 2},
        channel_base=4096, channel_max=64, fused_modconv_default='inference_only', num_fp16_res=0, conv_clamp=None)
    assert type(b.init_kwargs.mapping_kwargs) is dnnlib.EasyDict
    assert b.mapping.fc0.init_args == (1024, 512)
    assert b.mapping.fc0.init_kwargs == dict(activation='lrelu', lr_multiplier=0.01)
    assert b.synthesis.b8.conv1.affine.init_kwargs == dict(bias_init=1)
    assert b.synthesis.b256.init_args == (32, 16)
    assert b.synthesis.b256.init_kwargs == dict(w_dim=512, resolution=256, img_channels=96, is_last=True,
        use_fp16=False, fused_modconv_default='inference_only', conv_clamp=None)
    assert b.synthesis.b8.conv0.init_kwargs == dict(w_dim=512, resolution=8, up=2, resample_filter=[1, 3, 3, 1],
        conv_clamp=None, channels_last=False)
    assert b.synthesis.b8.torgb.init_args == (64, 96)

    sr = G.superresolution
    assert sr.init_kwargs == dict(channels=32, img_resolution=128, sr_num_fp16_res=4, sr_antialias=True,
        channel_base=4096, channel_max=64, fused_modconv_default='inference_only')
    assert sr.block0.init_args == (32, 128)
    assert sr.block0.init_kwargs == dict(w_dim=512, resolution=64, img_channels=3, is_last=False, use_fp16=True,
        conv_clamp=256, fused_modconv_default='inference_only')
    assert sr.block1.init_args == (128, 64)
    assert G.decoder.net[0].init_args == (32, 64) and G.decoder.net[0].init_kwargs == dict(lr_multiplier=1.0)

    assert D.b128.init_args == (0, 32, 64)
    assert D.b128.init_kwargs == dict(resolution=128, first_layer_idx=0, use_fp16=True, freeze_layers=0,
        img_channels=6, architecture='resnet', conv_clamp=256)
    assert D.b64.init_kwargs.first_layer_idx == 4 and D.b32.init_kwargs.first_layer_idx == 7
    assert D.b4.init_args == (64,) and D.b4.fc.init_kwargs == dict(activation='lrelu')
    assert D.mapping.init_kwargs == dict(z_dim=0, c_dim=25, w_dim=64, num_ws=None, w_avg_beta=None)

#----------------------------------------------------------------------------

BLOCK_ATTRS = {'in_channels', 'w_dim', 'resolution', 'img_channels', 'is_last', 'architecture', 'use_fp16',
    'channels_last', 'fused_modconv_default', 'num_conv', 'num_torgb'}
# Non-Module instance attributes in pickled states (compat.md §4-5), by class.
PICKLED_ATTRIBUTES = {
    'TriPlaneGenerator': {'z_dim', 'c_dim', 'w_dim', 'img_resolution', 'img_channels', 'neural_rendering_resolution',
        'rendering_kwargs', '_last_planes'},
    'Generator': {'z_dim', 'c_dim', 'w_dim', 'img_resolution', 'img_channels', 'num_ws'},
    'MappingNetwork': {'z_dim', 'c_dim', 'w_dim', 'num_ws', 'num_layers', 'w_avg_beta'},
    'SynthesisNetwork': {'w_dim', 'img_resolution', 'img_resolution_log2', 'img_channels', 'num_fp16_res',
        'block_resolutions', 'num_ws'},
    'SynthesisBlock': BLOCK_ATTRS,
    'SynthesisBlockNoUp': BLOCK_ATTRS,
    'SynthesisLayer': {'in_channels', 'out_channels', 'w_dim', 'resolution', 'up', 'use_noise', 'activation',
        'conv_clamp', 'padding', 'act_gain'},
    'ToRGBLayer': {'in_channels', 'out_channels', 'w_dim', 'conv_clamp', 'weight_gain'},
    'FullyConnectedLayer': {'in_features', 'out_features', 'activation', 'weight_gain', 'bias_gain'},
    'Conv2dLayer': {'in_channels', 'out_channels', 'activation', 'up', 'down', 'conv_clamp', 'padding', 'weight_gain',
        'act_gain'},
    'SuperresolutionHybrid2X': {'input_resolution', 'sr_antialias'},
    'OSGDecoder': {'hidden_dim'},
    'DualDiscriminator': {'c_dim', 'img_resolution', 'img_resolution_log2', 'img_channels', 'block_resolutions',
        'disc_c_noise'},
    'DiscriminatorBlock': {'in_channels', 'resolution', 'img_channels', 'first_layer_idx', 'architecture', 'use_fp16',
        'channels_last', 'num_layers'},
    'DiscriminatorEpilogue': {'in_channels', 'cmap_dim', 'resolution', 'img_channels', 'architecture'},
    'MinibatchStdLayer': {'group_size', 'num_channels'},
}
FLOAT64_GAINS = {'FullyConnectedLayer': ['weight_gain'], 'ToRGBLayer': ['weight_gain'], 'SynthesisLayer': ['act_gain'],
    'Conv2dLayer': ['weight_gain']}


def test_pickled_instance_attributes(networks):
    module_internals = set(torch.nn.Module().__dict__) | {'_init_args', '_init_kwargs'}
    seen = set()
    for net in networks:
        for name, module in net.named_modules():
            cls = type(module).__name__
            if cls not in PICKLED_ATTRIBUTES:
                continue
            seen.add(cls)
            attrs = {key for key, value in module.__dict__.items() if key not in module_internals
                and not (key == 'bias' and value is None)} # A bias-free layer's `bias = None` slot.
            assert attrs == PICKLED_ATTRIBUTES[cls], f'{name} ({cls})'
            for attr in FLOAT64_GAINS.get(cls, []):
                assert type(getattr(module, attr)) is np.float64, f'{name}.{attr}'
    assert seen == set(PICKLED_ATTRIBUTES)

#----------------------------------------------------------------------------

def test_pickle_round_trip(networks):
    for net in networks:
        clone = pickle.loads(pickle.dumps(net))
        assert type(clone) is type(net) and clone.init_kwargs == net.init_kwargs
        assert [type(m) for m in clone.modules()] == [type(m) for m in net.modules()]
        ours, theirs = net.state_dict(), clone.state_dict()
        assert list(ours) == list(theirs)
        assert all(torch.equal(ours[name], theirs[name]) for name in ours)
    G = pickle.loads(pickle.dumps(networks[0]))
    assert G.superresolution.block0.conv0.up == 1 # SynthesisBlockNoUp keeps the resolution.
    assert G.rendering_kwargs == networks[0].rendering_kwargs and G.neural_rendering_resolution == 64

#----------------------------------------------------------------------------
