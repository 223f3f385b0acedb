"""torch_utils.ops: golden numbers, higher-order gradients, CUDA plugin fallback and the CUDA kernels.

The CUDA kernels are checked on a GPU against the golden numbers (skipped without CUDA) and, on the CPU,
by compiling their per-element math (bias_act.h, upfirdn2d.h) into a small shared library with the host
C++ compiler and driving the ops' CUDA code path with it (skipped without a compiler). The fallback to
the reference path after a failed build needs neither.
"""

import ctypes
import json
import os
import shutil
import subprocess
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import GOLDEN_DIR

from torch_utils import custom_ops
from torch_utils.ops import (
    bias_act,
    conv2d_gradfix,
    conv2d_resample,
    filtered_lrelu,
    fma,
    grid_sample_gradfix,
    upfirdn2d,
)

OPS_DIR = os.path.dirname(bias_act.__file__)
with open(os.path.join(GOLDEN_DIR, 'ops.json'), 'r', encoding='utf-8') as _f:
    CASES = json.load(_f)['cases']
CASE_IDS = [case['id'] for case in CASES]
_golden = None


def golden_arrays():
    global _golden
    if _golden is None:
        with np.load(os.path.join(GOLDEN_DIR, 'ops.npz')) as data:
            _golden = {key: data[key] for key in data.files}
    return _golden


def case_by_id(case_id):
    return CASES[CASE_IDS.index(case_id)]


def tolerance(ref, dtype):
    return (1e-5 if dtype == 'float32' else 1e-10) * max(1.0, float(np.abs(ref).max()))


def run_case(case, device='cpu', impl='cuda'):
    """Run one ops.json case; returns ({name: output or gradient}, filter)."""
    arrays = golden_arrays()
    load = lambda name: torch.from_numpy(arrays[f'{case["id"]}.{name}']).to(device)
    x = load('x').requires_grad_()
    inputs = {'dx': x}
    f = None
    if case.get('filter') is not None:
        spec = case['filter']
        f = upfirdn2d.setup_filter(spec['taps'], device=device, normalize=spec['normalize'],
            flip_filter=spec['flip_filter'], gain=spec['gain'], separable=spec['separable'])
    if case['op'] == 'bias_act':
        b = load('b').requires_grad_() if 'b' in case['arrays'] else None
        if b is not None:
            inputs['db'] = b
        y = bias_act.bias_act(x, b, impl=impl, **case['kwargs'])
    elif case['op'] == 'conv2d_resample':
        w = load('w').requires_grad_()
        inputs['dw'] = w
        y = conv2d_resample.conv2d_resample(x, w, f=f, **case['kwargs'])
    else:
        y = getattr(upfirdn2d, case['op'])(x, f, impl=impl, **case['kwargs'])
    grads = torch.autograd.grad((y * load('dy')).sum(), list(inputs.values()))
    results = {'y': y.detach()}
    results.update({name: g for name, g in zip(inputs, grads)})
    return results, f


def assert_matches_golden(case, results):
    arrays = golden_arrays()
    expected = [name for name in ['y', 'dx', 'db', 'dw'] if name in case['arrays']]
    assert sorted(results) == sorted(expected)
    for name in expected:
        ref = arrays[f'{case["id"]}.{name}']
        ours = results[name].detach().cpu().numpy()
        assert ours.shape == ref.shape, f'{case["id"]}.{name}: shape {ours.shape} != {ref.shape}'
        assert ours.dtype == ref.dtype
        err = float(np.abs(ours - ref).max())
        assert err <= tolerance(ref, case['dtype']), f'{case["id"]}.{name}: max error {err:.3g}'


def _randn(*shape, requires_grad=True):
    return torch.randn(shape, dtype=torch.float64, requires_grad=requires_grad)


def check_second_order(fn, inputs):
    # Thousands of tiny ops: one thread avoids thread-pool overhead, which dominates on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert torch.autograd.gradcheck(fn, inputs)
        assert torch.autograd.gradgradcheck(fn, inputs)
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------
# Golden numbers of the reference implementations.


@pytest.mark.parametrize('case_id', CASE_IDS)
def test_golden(case_id):
    case = case_by_id(case_id)
    results, f = run_case(case)
    if 'f' in case['arrays']:
        assert torch.equal(f, torch.from_numpy(golden_arrays()[f'{case_id}.f']))
    assert_matches_golden(case, results)


@pytest.mark.parametrize('case_id', [c for c in CASE_IDS if c.startswith('conv2d_resample')])
def test_golden_conv2d_gradfix_enabled(case_id, monkeypatch):
    monkeypatch.setattr(conv2d_gradfix, 'enabled', True)
    case = case_by_id(case_id)
    assert_matches_golden(case, run_case(case)[0])


def test_setup_filter():
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and f.dtype == torch.float32
    assert torch.allclose(f, torch.outer(torch.tensor([1., 3, 3, 1]), torch.tensor([1., 3, 3, 1])) / 64)
    sep = upfirdn2d.setup_filter(np.arange(1, 13, dtype=np.float64))
    assert sep.shape == (12,) and abs(float(sep.sum()) - 1) < 1e-6
    assert upfirdn2d.setup_filter(2.0).shape == (1, 1)
    assert torch.allclose(upfirdn2d.setup_filter([1, 2], gain=4, normalize=False), torch.tensor([[4., 8], [8, 16]]))


def test_upfirdn2d_errors():
    x = torch.zeros([1, 1, 4, 4])
    with pytest.raises(ValueError, match='smaller than the filter'):
        upfirdn2d.upfirdn2d(x, torch.ones([6, 6]))
    with pytest.raises(TypeError, match='padding'):
        upfirdn2d.upfirdn2d(x, None, padding=1.5)
    with pytest.raises(ValueError, match='unknown activation'):
        bias_act.bias_act(x, act='gelu')


def test_bias_act_defaults():
    funcs = bias_act.activation_funcs
    assert sorted(funcs) == ['elu', 'linear', 'lrelu', 'relu', 'selu', 'sigmoid', 'softplus', 'swish', 'tanh']
    # Layers store def_gain as an attribute; official pickles hold np.float64 there.
    assert isinstance(funcs['lrelu'].def_gain, np.float64) and funcs['lrelu'].def_gain == np.sqrt(2)
    assert funcs['swish'].def_gain == funcs['relu'].def_gain == np.sqrt(2) and funcs['linear'].def_gain == 1
    assert funcs['lrelu'].def_alpha == 0.2
    x = torch.linspace(-2, 2, 9)
    assert torch.equal(bias_act.bias_act(x, act='lrelu', dim=0), F.leaky_relu(x, 0.2) * float(np.sqrt(2)))


def test_fma_broadcasting():
    torch.manual_seed(12)
    a, b, c = _randn(3, 1, 4), _randn(1, 2, 4), _randn(4)
    assert torch.allclose(fma.fma(a, b, c), a * b + c)
    check_second_order(fma.fma, (a, b, c))


def test_filtered_lrelu():
    torch.manual_seed(0)
    x = torch.randn([2, 3, 6, 6])
    b = torch.randn([3])
    # Without filters and resampling it is bias + leaky ReLU * gain + clamp.
    y = filtered_lrelu.filtered_lrelu(x, b=b, clamp=1.0)
    assert torch.equal(y, (F.leaky_relu(x + b[None, :, None, None], 0.2) * float(np.sqrt(2))).clamp(-1, 1))
    # With filters: bias, upsample, activation, downsample, in that order.
    fu = upfirdn2d.setup_filter([1, 3, 3, 1])
    fd = upfirdn2d.setup_filter([1, 2, 3, 4, 4, 3, 2, 1])
    y = filtered_lrelu.filtered_lrelu(x, fu=fu, fd=fd, b=b, up=2, down=2, padding=[5, 4, 5, 4], slope=0.1, gain=1.5)
    t = upfirdn2d.upfirdn2d(x + b[None, :, None, None], fu, up=2, padding=[5, 4, 5, 4], gain=4)
    t = upfirdn2d.upfirdn2d(F.leaky_relu(t, 0.1) * 1.5, fd, down=2)
    assert y.shape == (2, 3, 6, 6)
    assert torch.allclose(y, t, atol=1e-6)
    with pytest.raises(ValueError, match='empty output'):
        filtered_lrelu.filtered_lrelu(x, fu=fu, fd=fd, up=2, down=2, padding=-4)


# ----------------------------------------------------------------------------
# Higher-order gradients (float64, tiny inputs).


@pytest.mark.parametrize('act', sorted(bias_act.activation_funcs))
def test_bias_act_gradgrad(act):
    torch.manual_seed(1)
    x, b = _randn(2, 3, 3), _randn(3)
    check_second_order(lambda x, b: bias_act.bias_act(x, b, act=act, gain=1.3, clamp=1.1), (x, b))


@pytest.mark.parametrize('kwargs', [
    dict(f=[1, 3, 3, 1], up=2, padding=[2, 1, 1, -1]),
    dict(f=list(range(1, 9)), down=[2, 1], padding=[3, 2, 2, 1], flip_filter=True, gain=2.0),
])
def test_upfirdn2d_gradgrad(kwargs):
    torch.manual_seed(2)
    kwargs = dict(kwargs)
    f = upfirdn2d.setup_filter(kwargs.pop('f'))
    check_second_order(lambda x: upfirdn2d.upfirdn2d(x, f, **kwargs), (_randn(1, 2, 5, 5),))


@pytest.mark.parametrize('gradfix', [False, True])
@pytest.mark.parametrize('kwargs', [dict(up=2, padding=1, flip_weight=False), dict(down=2, padding=1), dict(padding=[1, 0, 0, 1])])
def test_conv2d_resample_gradgrad(kwargs, gradfix, monkeypatch):
    monkeypatch.setattr(conv2d_gradfix, 'enabled', gradfix)
    torch.manual_seed(3)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    check_second_order(lambda x, w: conv2d_resample.conv2d_resample(x, w, f=f, **kwargs), (_randn(1, 2, 4, 4), _randn(2, 2, 3, 3)))


@pytest.mark.parametrize('transpose', [False, True])
def test_conv2d_gradfix_gradgrad(transpose, monkeypatch):
    monkeypatch.setattr(conv2d_gradfix, 'enabled', True)
    torch.manual_seed(4)
    x, b = _randn(1, 4, 4, 3), _randn(6)
    if transpose:
        w = _randn(4, 3, 3, 2)
        fn = lambda x, w, b: conv2d_gradfix.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1, groups=2)
    else:
        w = _randn(6, 2, 3, 2)
        fn = lambda x, w, b: conv2d_gradfix.conv2d(x, w, b, stride=2, padding=[1, 0], groups=2)
    check_second_order(fn, (x, w, b))
    y = fn(x, w, b)
    monkeypatch.setattr(conv2d_gradfix, 'enabled', False)
    assert torch.allclose(y, fn(x, w, b), rtol=1e-12, atol=1e-12)


def _r1_weight_grads(net, x, disable=True):
    x = x.detach().requires_grad_()
    with conv2d_gradfix.no_weight_gradients(disable):
        grad_x, = torch.autograd.grad(net(x).sum(), [x], create_graph=True)
    penalty = grad_x.square().sum()
    return torch.autograd.grad(penalty, list(net.parameters()))


def test_conv2d_gradfix_r1(monkeypatch):
    """R1 through the custom op: the inner gradient skips weight grads, the outer one still reaches them."""
    torch.manual_seed(5)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w1 = torch.nn.Parameter(torch.randn([4, 3, 3, 3], dtype=torch.float64))
            self.w2 = torch.nn.Parameter(torch.randn([1, 4, 3, 3], dtype=torch.float64))

        def forward(self, x):
            x = torch.nn.functional.softplus(conv2d_gradfix.conv2d(x, self.w1, padding=1))
            return conv2d_gradfix.conv2d(x, self.w2, stride=2)

    net, x = Net(), torch.randn([2, 3, 6, 6], dtype=torch.float64)
    expected = _r1_weight_grads(net, x)
    monkeypatch.setattr(conv2d_gradfix, 'enabled', True)
    calls = []
    real_weight_grad = conv2d_gradfix._weight_grad
    monkeypatch.setattr(conv2d_gradfix, '_weight_grad', lambda *args: calls.append(1) or real_weight_grad(*args))
    x = x.requires_grad_()
    with conv2d_gradfix.no_weight_gradients():
        torch.autograd.grad(net(x).sum(), [x], create_graph=True)
    assert calls == []
    torch.autograd.grad(net(x).sum(), [x], create_graph=True)
    assert len(calls) == 2  # Without the context the custom op computes both (unneeded) weight gradients.
    for e, o in zip(expected, _r1_weight_grads(net, x)):
        assert torch.allclose(e, o, rtol=1e-10, atol=1e-12)
    assert not conv2d_gradfix.weight_gradients_disabled


def test_no_weight_gradients_context():
    assert not conv2d_gradfix.weight_gradients_disabled
    with conv2d_gradfix.no_weight_gradients():
        assert conv2d_gradfix.weight_gradients_disabled
        with conv2d_gradfix.no_weight_gradients(disable=False):
            assert conv2d_gradfix.weight_gradients_disabled
    assert not conv2d_gradfix.weight_gradients_disabled


def _sample_grid(shape, dtype):
    # Points beyond [-1, 1] exercise the zero padding.
    return (torch.rand(shape, dtype=dtype) * 2.4 - 1.2)


def test_grid_sample_matches_pytorch(monkeypatch):
    torch.manual_seed(6)
    for dtype, tol in [(torch.float32, 1e-6), (torch.float64, 1e-12)]:
        x = torch.randn([2, 3, 5, 7], dtype=dtype)
        grid = _sample_grid([2, 4, 6, 2], dtype)
        expected = F.grid_sample(x, grid, mode='bilinear', padding_mode='zeros', align_corners=False)
        monkeypatch.setattr(grid_sample_gradfix, 'enabled', False)
        assert torch.equal(grid_sample_gradfix.grid_sample(x, grid), expected)
        monkeypatch.setattr(grid_sample_gradfix, 'enabled', True)
        assert (grid_sample_gradfix.grid_sample(x, grid) - expected).abs().max() <= tol


def test_grid_sample_gradgrad(monkeypatch):
    monkeypatch.setattr(grid_sample_gradfix, 'enabled', True)
    torch.manual_seed(7)
    x = _randn(1, 2, 4, 5)
    grid = _sample_grid([1, 3, 3, 2], torch.float64).requires_grad_()
    check_second_order(grid_sample_gradfix.grid_sample, (x, grid))


# ----------------------------------------------------------------------------
# CUDA plugin selection and fallback (no GPU needed).


@pytest.fixture
def fresh_plugins(monkeypatch):
    """Give both ops a not-yet-built plugin handle, restored afterwards."""
    for module in [bias_act, upfirdn2d]:
        monkeypatch.setattr(module, '_plugin', custom_ops.OptionalPlugin(**module._plugin._args))
    monkeypatch.delenv(custom_ops.DISABLE_ENV_VAR, raising=False)


def _failing_get_plugin(calls):
    def get_plugin(module_name, **_kwargs):
        calls.append(module_name)
        raise custom_ops.PluginBuildError(f'Could not build PyTorch plugin "{module_name}": nvcc: not found')
    return get_plugin


def test_failed_build_warns_once(fresh_plugins, monkeypatch):
    calls = []
    monkeypatch.setattr(custom_ops, 'get_plugin', _failing_get_plugin(calls))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        for _ in range(3):
            assert bias_act._plugin.get() is None
    assert calls == ['eg3d_bias_act_plugin']
    assert len(caught) == 1
    assert 'nvcc: not found' in str(caught[0].message) and 'reference implementation' in str(caught[0].message)
    # The op still returns the reference numbers.
    case = case_by_id('bias_act_11')
    assert_matches_golden(case, run_case(case, impl='cuda')[0])


def test_env_var_forces_reference(fresh_plugins, monkeypatch):
    calls = []
    monkeypatch.setattr(custom_ops, 'get_plugin', _failing_get_plugin(calls))
    monkeypatch.setenv(custom_ops.DISABLE_ENV_VAR, '1')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert bias_act._plugin.get() is None and upfirdn2d._plugin.get() is None
    assert calls == []
    monkeypatch.setenv(custom_ops.DISABLE_ENV_VAR, '0')
    assert not custom_ops.cuda_ops_disabled()


def test_cpu_tensors_never_build(fresh_plugins, monkeypatch):
    calls = []
    monkeypatch.setattr(custom_ops, 'get_plugin', _failing_get_plugin(calls))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        bias_act.bias_act(torch.ones([2, 2]), act='relu', impl='cuda')
        upfirdn2d.upsample2d(torch.ones([1, 1, 2, 2]), upfirdn2d.setup_filter([1, 3, 3, 1]), impl='cuda')
    assert calls == []


# ----------------------------------------------------------------------------
# CPU emulation of the CUDA kernels: the headers' per-element math, compiled by the host compiler and
# called through ctypes in place of the plugin, drives the ops' CUDA code path on CPU tensors.

_HARNESS_SRC = r'''
#define EG3D_NO_TORCH
#include "bias_act.h"
#include "upfirdn2d.h"

template <typename T> static void bias_act_loop(const T* x, const T* b, const T* ref, T* y, const BiasActParams* p) {
    for (int64_t i = 0; i < p->numel; i++) {
        T bv = p->bias_size ? b[(i / p->bias_stride) % p->bias_size] : T(0);
        y[i] = bias_act_element<T>(x[i], bv, ref ? ref[i] : T(0), *p);
    }
}

template <typename T> static void upfirdn2d_loop(const T* x, const T* w, T* y, const Upfirdn2dParams* p) {
    for (int64_t n = 0; n < p->batch; n++)
        for (int64_t c = 0; c < p->channels; c++)
            for (int oy = 0; oy < p->out_h; oy++)
                for (int ox = 0; ox < p->out_w; ox++)
                    y[n * p->out_stride[0] + c * p->out_stride[1] + oy * p->out_stride[2] + ox * p->out_stride[3]] =
                        upfirdn2d_element<T>(x, w, n, c, oy, ox, *p);
}

extern "C" {
void bias_act_f32(const float* x, const float* b, const float* r, float* y, const BiasActParams* p) { bias_act_loop(x, b, r, y, p); }
void bias_act_f64(const double* x, const double* b, const double* r, double* y, const BiasActParams* p) { bias_act_loop(x, b, r, y, p); }
void upfirdn2d_f32(const float* x, const float* w, float* y, const Upfirdn2dParams* p) { upfirdn2d_loop(x, w, y, p); }
void upfirdn2d_f64(const double* x, const double* w, double* y, const Upfirdn2dParams* p) { upfirdn2d_loop(x, w, y, p); }
}
'''


class _BiasActParams(ctypes.Structure):
    _fields_ = [('numel', ctypes.c_int64), ('bias_stride', ctypes.c_int64), ('bias_size', ctypes.c_int64),
        ('act', ctypes.c_int), ('mode', ctypes.c_int), ('ref_is_y', ctypes.c_int),
        ('alpha', ctypes.c_double), ('gain', ctypes.c_double), ('clamp', ctypes.c_double)]


class _Upfirdn2dParams(ctypes.Structure):
    _fields_ = [('numel', ctypes.c_int64), ('batch', ctypes.c_int64), ('channels', ctypes.c_int64)] + \
        [(name, ctypes.c_int) for name in 'in_h in_w out_h out_w up_x up_y down_x down_y pad_x0 pad_y0 filter_h filter_w'.split()] + \
        [('in_stride', ctypes.c_int64 * 4), ('out_stride', ctypes.c_int64 * 4), ('channels_last', ctypes.c_int)]


def _ptr(t):
    return ctypes.c_void_p(t.data_ptr()) if t.numel() else None


class _EmulatedPlugin:
    """Stands in for both compiled plugins; mirrors the argument handling of bias_act.cpp / upfirdn2d.cpp."""

    def __init__(self, lib):
        self.lib = lib

    def get(self):
        return self

    def for_tensor(self, x, impl):
        return self if impl == 'cuda' else None

    def bias_act(self, x, b, ref, mode, dim, act, ref_is_y, alpha, gain, clamp):
        layout = torch.channels_last if x.ndim == 4 and not x.is_contiguous() else torch.contiguous_format
        assert x.is_contiguous(memory_format=layout)
        assert mode == 0 or all(ref.stride(d) == x.stride(d) for d in range(x.ndim) if x.shape[d] > 1)
        bias_stride = x.stride(dim) if b.numel() and x.stride(dim) > 0 else 1
        p = _BiasActParams(x.numel(), bias_stride, b.numel(), act, mode, int(ref_is_y), alpha, gain, clamp)
        y = torch.empty_like(x)
        fn = self.lib.bias_act_f64 if x.dtype == torch.float64 else self.lib.bias_act_f32
        fn(_ptr(x), _ptr(b), _ptr(ref), _ptr(y), ctypes.byref(p))
        return y

    def upfirdn2d(self, x, w, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1):
        assert w.dtype == (torch.float64 if x.dtype == torch.float64 else torch.float32) and w.is_contiguous()
        out_h = (x.shape[2] * up_y + pad_y0 + pad_y1 - w.shape[0]) // down_y + 1
        out_w = (x.shape[3] * up_x + pad_x0 + pad_x1 - w.shape[1]) // down_x + 1
        layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() else torch.contiguous_format
        y = torch.empty([x.shape[0], x.shape[1], out_h, out_w], dtype=x.dtype).contiguous(memory_format=layout)
        p = _Upfirdn2dParams(y.numel(), x.shape[0], x.shape[1], x.shape[2], x.shape[3], out_h, out_w, up_x, up_y,
            down_x, down_y, pad_x0, pad_y0, w.shape[0], w.shape[1], (ctypes.c_int64 * 4)(*x.stride()),
            (ctypes.c_int64 * 4)(*y.stride()), int(layout == torch.channels_last))
        fn = self.lib.upfirdn2d_f64 if x.dtype == torch.float64 else self.lib.upfirdn2d_f32
        fn(_ptr(x), _ptr(w), _ptr(y), ctypes.byref(p))
        return y


@pytest.fixture(scope='module')
def emulated_kernels(tmp_path_factory):
    compiler = shutil.which('c++') or shutil.which('g++') or shutil.which('clang++')
    if compiler is None:
        pytest.skip('no host C++ compiler')
    tmp = tmp_path_factory.mktemp('kernel_harness')
    (tmp / 'harness.cpp').write_text(_HARNESS_SRC)
    lib_path = tmp / 'harness.so'
    subprocess.run([compiler, '-O1', '-std=c++14', '-shared', '-fPIC', '-Wall', '-Werror', f'-I{OPS_DIR}',
        str(tmp / 'harness.cpp'), '-o', str(lib_path)], check=True, capture_output=True)
    return _EmulatedPlugin(ctypes.CDLL(str(lib_path)))


@pytest.fixture
def cuda_path_on_cpu(emulated_kernels, monkeypatch):
    for module in [bias_act, upfirdn2d]:
        monkeypatch.setattr(module, '_plugin', emulated_kernels)


@pytest.mark.parametrize('case_id', CASE_IDS)
def test_emulated_kernels_golden(case_id, cuda_path_on_cpu):
    case = case_by_id(case_id)
    assert_matches_golden(case, run_case(case, impl='cuda')[0])


@pytest.mark.parametrize('act', sorted(bias_act.activation_funcs))
def test_emulated_bias_act_gradgrad(act, cuda_path_on_cpu):
    torch.manual_seed(8)
    x = _randn(2, 3, 3, 2, requires_grad=False).contiguous(memory_format=torch.channels_last).requires_grad_()
    b = _randn(3)
    fn = lambda x, b: bias_act.bias_act(x, b, act=act, alpha=0.3, gain=1.3, clamp=1.1)
    check_second_order(fn, (x, b))
    assert torch.allclose(fn(x, b), bias_act.bias_act(x, b, act=act, alpha=0.3, gain=1.3, clamp=1.1, impl='ref'))


@pytest.mark.parametrize('taps', [[1, 3, 3, 1], list(range(1, 9))])
def test_emulated_upfirdn2d_gradgrad(taps, cuda_path_on_cpu):
    torch.manual_seed(9)
    f = upfirdn2d.setup_filter(taps)
    x = _randn(1, 2, 5, 4, requires_grad=False).contiguous(memory_format=torch.channels_last).requires_grad_()
    fn = lambda x: upfirdn2d.upfirdn2d(x, f, up=[3, 1], down=[1, 2], padding=[3, -1, 2, 4], flip_filter=True, gain=2.0)
    check_second_order(fn, (x,))
    assert torch.allclose(fn(x), upfirdn2d.upfirdn2d(x, f, up=[3, 1], down=[1, 2], padding=[3, -1, 2, 4], flip_filter=True, gain=2.0, impl='ref'))


# ----------------------------------------------------------------------------
# The real CUDA kernels (needs a GPU and a CUDA toolkit; compiles on first use).

cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')


@pytest.fixture
def no_tf32(monkeypatch):
    # Convolutions on the GPU must not use TF32, or they drift by ~1e-3 from the golden numbers.
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)
    monkeypatch.setattr(torch.backends.cuda.matmul, 'allow_tf32', False)


@pytest.fixture
def cuda_plugins(no_tf32, monkeypatch):
    monkeypatch.delenv(custom_ops.DISABLE_ENV_VAR, raising=False)
    for module in [bias_act, upfirdn2d]:
        plugin = module._plugin.get()
        assert plugin is not None, f'building the {module.__name__} plugin failed: {module._plugin._error}'


@cuda_only
@pytest.mark.cuda
@pytest.mark.parametrize('case_id', CASE_IDS)
def test_cuda_golden(case_id, cuda_plugins):
    case = case_by_id(case_id)
    assert_matches_golden(case, run_case(case, device='cuda', impl='cuda')[0])


@cuda_only
@pytest.mark.cuda
def test_cuda_gradgrad_and_layouts(cuda_plugins):
    torch.manual_seed(10)
    x = torch.randn([2, 3, 5, 4], dtype=torch.float64, device='cuda').contiguous(memory_format=torch.channels_last).requires_grad_()
    b = torch.randn([3], dtype=torch.float64, device='cuda', requires_grad=True)
    for act in bias_act.activation_funcs:
        check_second_order(lambda x, b: bias_act.bias_act(x, b, act=act, gain=1.3, clamp=1.1), (x, b))
    f = upfirdn2d.setup_filter([1, 2, 3, 4, 4, 3, 2, 1], device='cuda')
    check_second_order(lambda x: upfirdn2d.upfirdn2d(x, f, up=2, down=[1, 3], padding=[3, 4, -1, 2]), (x,))
    # Half precision and channels-last layouts against the float32 reference.
    xh = torch.randn([2, 8, 16, 16], device='cuda').contiguous(memory_format=torch.channels_last)
    f2 = upfirdn2d.setup_filter([1, 3, 3, 1], device='cuda')
    y = upfirdn2d.upsample2d(xh.half(), f2)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert (y.float() - upfirdn2d.upsample2d(xh, f2, impl='ref')).abs().max() < 1e-2
    y = bias_act.bias_act(xh.half(), torch.randn([8], device='cuda').half(), act='lrelu', clamp=256)
    assert y.is_contiguous(memory_format=torch.channels_last) and y.dtype == torch.float16


@cuda_only
@pytest.mark.cuda
def test_cuda_failed_build_falls_back(fresh_plugins, no_tf32, monkeypatch):
    calls = []
    monkeypatch.setattr(custom_ops, 'get_plugin', _failing_get_plugin(calls))
    case = case_by_id('upfirdn2d_11')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        for _ in range(2):
            results = run_case(case, device='cuda', impl='cuda')[0]
    assert len(caught) == 1 and 'nvcc: not found' in str(caught[0].message)
    assert calls == ['eg3d_upfirdn2d_plugin']
    assert_matches_golden(case, results)
