"""Loads a snapshot the way the original EG3D does, against an import surface as narrow as the original's.

The original unpickles a snapshot by executing each embedded module source with its own `training`,
`torch_utils` and `dnnlib` packages importable. Those packages share with ours only the names listed in
ALLOWED_NAMES (docs/compat.md, "Embedded sources"). write_environment() generates stand-in packages that
re-export exactly those names from our modules, plus a torch_utils.persistence that executes embedded
sources. Run as a script, this file loads a snapshot in that environment (in a fresh interpreter, so our
own `training` package cannot leak in) and saves the outputs of run_networks() for comparison.

    python tests/original_env.py --env DIR --snapshot PKL --out OUT.pt

Nothing here imports this repository at module level: the script imports it itself, under aliases,
before it hides it.
"""

import argparse
import importlib
import os
import pickle
import sys

import numpy as np
import torch

# Module -> names embedded sources may import from it (or pickles reference by name).
ALLOWED_NAMES = {
    'dnnlib.util': ['EasyDict', 'construct_class_by_name'],
    'torch_utils.misc': ['assert_shape', 'constant', 'profiled_function', 'suppress_tracer_warnings'],
    'torch_utils.ops.bias_act': ['activation_funcs', 'bias_act'],
    'torch_utils.ops.conv2d_gradfix': ['conv2d'],
    'torch_utils.ops.conv2d_resample': ['conv2d_resample'],
    'torch_utils.ops.fma': ['fma'],
    'torch_utils.ops.grid_sample_gradfix': ['grid_sample'],
    'torch_utils.ops.upfirdn2d': ['downsample2d', 'setup_filter', 'upsample2d'],
    'training.networks_stylegan2': ['Conv2dLayer', 'DiscriminatorBlock', 'DiscriminatorEpilogue', 'FullyConnectedLayer',
                                    'Generator', 'MappingNetwork', 'SynthesisBlock', 'SynthesisLayer', 'ToRGBLayer'],
    'training.networks_stylegan3': ['SynthesisLayer'],
    'training.triplane': ['OSGDecoder'],
    'training.volumetric_rendering.ray_marcher': ['MipRayMarcher2'],
    'training.volumetric_rendering.ray_sampler': ['RaySampler'],
    'training.volumetric_rendering.renderer': ['ImportanceRenderer'],
}
PACKAGES = ['dnnlib', 'torch_utils', 'torch_utils.ops', 'training', 'training.volumetric_rendering']
HIDDEN_ROOTS = ('dnnlib', 'torch_utils', 'training')

# Written from the format description (compat.md §2 of the spec): a record's source becomes a fresh module
# named _imported_module_<hex> (one per distinct source text), the class is made persistent, and the object
# is created without __init__ and given the pickled state.
PERSISTENCE_SRC = '''"""Stand-in for the original torch_utils.persistence (loading side only)."""
import copy
import sys
import types
import uuid

import dnnlib

_made_persistent = set()
_source_of_module = {}
_module_of_source = {}


def persistent_class(orig_class):
    if orig_class in _made_persistent:
        return orig_class

    def __init__(self, *args, **kwargs):
        orig_class.__init__(self, *args, **kwargs)
        self._init_args, self._init_kwargs = copy.deepcopy((args, kwargs))

    members = dict(__init__=__init__, _orig_class_name=orig_class.__name__,
        _orig_module_src=_source_of_module[sys.modules[orig_class.__module__]],
        init_args=property(lambda self: copy.deepcopy(self._init_args)),
        init_kwargs=property(lambda self: dnnlib.EasyDict(copy.deepcopy(self._init_kwargs))))
    wrapped = type(orig_class.__name__, (orig_class,), members)
    _made_persistent.add(wrapped)
    return wrapped


def _module_for(src):
    if src not in _module_of_source:
        module = types.ModuleType('_imported_module_' + uuid.uuid4().hex)
        sys.modules[module.__name__] = module
        _source_of_module[module] = src
        _module_of_source[src] = module
        exec(src, module.__dict__)
    return _module_of_source[src]


def _reconstruct_persistent_obj(meta):
    meta = dnnlib.EasyDict(meta)
    meta.state = dnnlib.EasyDict(meta.state)
    assert meta.version == 6 and meta.type == 'class'
    cls = persistent_class(_module_for(meta.module_src).__dict__[meta.class_name])
    obj = cls.__new__(cls)
    if callable(getattr(obj, '__setstate__', None)):
        obj.__setstate__(meta.state)
    else:
        obj.__dict__.update(meta.state)
    return obj
'''


def _alias(module_name):
    return '_ours__' + module_name.replace('.', '__')


def write_environment(root):
    """Generate the stand-in packages under `root` (a directory to put first on sys.path)."""
    files = {name.replace('.', os.sep) + os.sep + '__init__.py': '' for name in PACKAGES}
    files[os.path.join('dnnlib', '__init__.py')] = 'from . import util\nfrom .util import EasyDict\n'
    files[os.path.join('torch_utils', 'persistence.py')] = PERSISTENCE_SRC
    for module_name, names in ALLOWED_NAMES.items():
        files[module_name.replace('.', os.sep) + '.py'] = f'from {_alias(module_name)} import {", ".join(names)}\n'
    for rel_path, text in files.items():
        path = os.path.join(root, rel_path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(text)

#----------------------------------------------------------------------------

def _camera_labels():
    """Two cameras on the -z side of the box looking along +z (OpenCV axes), normalized intrinsics."""
    c = torch.zeros(2, 25)
    cam2world = torch.eye(4).repeat(2, 1, 1)
    cam2world[:, :3, 3] = torch.tensor([[0.0, 0.0, -1.7], [0.15, -0.1, -1.6]])
    c[:, :16] = cam2world.reshape(2, 16)
    c[:, 16:] = torch.tensor([1.7074, 0, 0.5, 0, 1.7074, 0.5, 0, 0, 1])
    return c


@torch.no_grad()
def run_networks(data):
    """Outputs of G, G_ema, D and the augment pipe of a loaded snapshot on fixed inputs (dict of tensors)."""
    rng = np.random.RandomState(123)
    G = data['G']
    z = torch.from_numpy(rng.randn(2, G.z_dim)).float()
    c = _camera_labels()
    points = torch.from_numpy(rng.uniform(-0.8, 0.8, size=(2, 64, 3))).float()
    images = {'image': torch.from_numpy(rng.randn(2, 3, 128, 128)).float(),
              'image_raw': torch.from_numpy(rng.randn(2, 3, 64, 64)).float()}
    out = {}
    # G renders at its stored 64 (the SR's in-place path), G_ema at 32 (the SR's resize path).
    for key, resolution in (('G', None), ('G_ema', 32)):
        net = data[key]
        ws = net.mapping(z, c, truncation_psi=0.7)
        torch.manual_seed(1)
        result = net.synthesis(ws, c, neural_rendering_resolution=resolution, noise_mode='const')
        out.update({f'{key}.{name}': value for name, value in result.items()})
        out[f'{key}.ws'] = ws
        out[f'{key}.sigma'] = net.sample_mixed(points, torch.zeros_like(points), ws, noise_mode='const')['sigma']
    out['D.logits'] = data['D'](images, c)
    torch.manual_seed(2)
    out['augment'] = data['augment_pipe'](torch.cat([images['image'], images['image']], dim=1))
    return out

#----------------------------------------------------------------------------

def _hide_repository(env_dir):
    """Import our modules under aliases, then make `training`, `torch_utils`, `dnnlib` resolve to env_dir."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, repo)
    for module_name in ALLOWED_NAMES:
        sys.modules[_alias(module_name)] = importlib.import_module(module_name)
    sys.path[:] = [p for p in sys.path
                   if not any(os.path.isdir(os.path.join(p or '.', root)) for root in HIDDEN_ROOTS)]
    for name in list(sys.modules):
        if name.split('.')[0] in HIDDEN_ROOTS:
            del sys.modules[name]
    sys.path.insert(0, env_dir)
    importlib.invalidate_caches()


def _describe(data):
    """Which module each network's classes come from, and the public names of the stand-in modules."""
    info = {}
    for key in ('G', 'D', 'G_ema', 'augment_pipe'):
        # Skip the persistence wrapper subclass to reach the class the module source defined.
        classes = [next(k for k in type(m).__mro__ if k.__module__ != 'torch_utils.persistence')
                   for m in data[key].modules()]
        info[key] = sorted({k.__module__ + '.' + k.__name__ for k in classes})
    for module_name in list(ALLOWED_NAMES) + ['torch_utils.persistence']:
        module = importlib.import_module(module_name)
        info[module_name] = [os.path.abspath(module.__file__), sorted(n for n in vars(module) if not n.startswith('_'))]
    return info


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--env', required=True, help='directory made by write_environment()')
    parser.add_argument('--snapshot', required=True)
    parser.add_argument('--out', required=True)
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _hide_repository(os.path.abspath(args.env))
    with open(args.snapshot, 'rb') as f:
        data = pickle.load(f)
    torch.save({'outputs': run_networks(data), 'info': _describe(data)}, args.out)


if __name__ == '__main__':
    main()
