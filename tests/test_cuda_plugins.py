"""The compiled CUDA plugins (bias_act, upfirdn2d): they load without a GPU and validate their arguments.

Needs a CUDA build of PyTorch and nvcc, or plugins prebuilt into TORCH_EXTENSIONS_DIR; no GPU. .ci/run builds
them with the pip CUDA toolchain and runs this file with EG3D_REQUIRE_CUDA_PLUGINS=1, where a skip is a failure.
Elsewhere (the CPU build of PyTorch) every test skips with its reason.
"""

import os

import pytest
import torch

from torch_utils import custom_ops
from torch_utils.ops import bias_act, upfirdn2d

pytestmark = pytest.mark.slow  # A first use compiles for several architectures (minutes).


def _unavailable(reason):
    if os.environ.get('EG3D_REQUIRE_CUDA_PLUGINS') == '1':
        pytest.fail(f'EG3D_REQUIRE_CUDA_PLUGINS=1 but {reason}')
    pytest.skip(reason)


def _load(ops_module):
    if torch.version.cuda is None:
        _unavailable(f'no CUDA toolchain: torch {torch.__version__} is a CPU build')
    if custom_ops.cuda_ops_disabled():
        _unavailable(f'{custom_ops.DISABLE_ENV_VAR} is set')
    try:
        return custom_ops.get_plugin(**ops_module._plugin._args)
    except custom_ops.PluginBuildError as err:
        _unavailable(str(err))


def _arity(function):
    """Number of arguments of a pybind11 function, from the signature line of its docstring."""
    signature = function.__doc__.splitlines()[0]
    return len([arg for arg in signature[signature.index('(') + 1:signature.index(')')].split(',') if arg.strip()])


def test_bias_act_plugin():
    plugin = _load(bias_act)
    # bias_act._run_kernel passes x, b, ref, mode, dim, act, ref_is_y, alpha, gain, clamp.
    assert _arity(plugin.bias_act) == 10
    x = torch.zeros([2, 3])
    empty = torch.empty([0])
    with pytest.raises(RuntimeError, match='bias_act: x must be a CUDA tensor'):
        plugin.bias_act(x, empty, empty, 0, 1, 0, False, 0.0, 1.0, -1.0)
    with pytest.raises(TypeError, match='incompatible function arguments'):
        plugin.bias_act(x, empty, empty, 0, 1)


def test_upfirdn2d_plugin():
    plugin = _load(upfirdn2d)
    # _Upfirdn2dCuda passes x, w and cfg = (upx, upy, downx, downy, px0, px1, py0, py1).
    assert _arity(plugin.upfirdn2d) == 10
    x = torch.zeros([1, 1, 4, 4])
    w = torch.ones([1, 3])
    with pytest.raises(RuntimeError, match='upfirdn2d: x must be a CUDA tensor'):
        plugin.upfirdn2d(x, w, 1, 1, 1, 1, 1, 1, 0, 0)
    with pytest.raises(TypeError, match='incompatible function arguments'):
        plugin.upfirdn2d(x, w, 1, 1)
