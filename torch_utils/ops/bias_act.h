// Fused bias + activation + gain + clamp, and its first and second derivatives.
//
// The per-element math lives here as plain host/device functions so that it can be checked
// on the CPU; bias_act.cu only adds the kernel launch and bias_act.cpp the Python binding.

#pragma once
#include <cstdint>

#include "eg3d_kernel_common.h"
#include <math.h>

// Activation ids; must match `cuda_idx` in bias_act.py.
enum BiasActFunc : int {
    kLinear = 1, kRelu = 2, kLrelu = 3, kTanh = 4, kSigmoid = 5,
    kElu = 6, kSelu = 7, kSoftplus = 8, kSwish = 9,
};

// What the kernel computes (see bias_act_element).
enum BiasActMode : int { kForward = 0, kGrad1 = 1, kGrad2 = 2 };

struct BiasActParams {
    int64_t numel;        // Elements of x (and of ref and the output, which share its strides).
    int64_t bias_stride;  // Memory stride of x along the bias dimension.
    int64_t bias_size;    // Length of the bias; 0 = no bias.
    int act;              // BiasActFunc.
    int mode;             // BiasActMode.
    int ref_is_y;         // kGrad1: ref holds the forward output y instead of the input x.
    double alpha;         // Slope of lrelu.
    double gain;          // Output scale.
    double clamp;         // Output clamp; negative = none.
};

EG3D_HD float  ba_exp(float v)    { return expf(v); }
EG3D_HD double ba_exp(double v)   { return exp(v); }
EG3D_HD float  ba_expm1(float v)  { return expm1f(v); }
EG3D_HD double ba_expm1(double v) { return expm1(v); }
EG3D_HD float  ba_log1p(float v)  { return log1pf(v); }
EG3D_HD double ba_log1p(double v) { return log1p(v); }
EG3D_HD float  ba_tanh(float v)   { return tanhf(v); }
EG3D_HD double ba_tanh(double v)  { return tanh(v); }

template <typename T> EG3D_HD T ba_sigmoid(T s) { return T(1) / (T(1) + ba_exp(-s)); }

// Constants of SELU (Klambauer et al. 2017), identical to torch.nn.functional.selu.
#define EG3D_SELU_SCALE 1.0507009873554804934193349852946
#define EG3D_SELU_ALPHA 1.6732632423543772848170429916717
// torch.nn.functional.softplus switches to the identity above this input.
#define EG3D_SOFTPLUS_THRESHOLD 20

template <typename T> EG3D_HD T ba_act(int act, T s, T alpha)
{
    switch (act) {
        case kRelu:     return s > T(0) ? s : T(0);
        case kLrelu:    return s > T(0) ? s : s * alpha;
        case kTanh:     return ba_tanh(s);
        case kSigmoid:  return ba_sigmoid(s);
        case kElu:      return s > T(0) ? s : ba_expm1(s);
        case kSelu:     return T(EG3D_SELU_SCALE) * (s > T(0) ? s : T(EG3D_SELU_ALPHA) * ba_expm1(s));
        case kSoftplus: return s > T(EG3D_SOFTPLUS_THRESHOLD) ? s : ba_log1p(ba_exp(s));
        case kSwish:    return s * ba_sigmoid(s);
        default:        return s;
    }
}

// First derivative with respect to the pre-activation s.
template <typename T> EG3D_HD T ba_act_d1(int act, T s, T alpha)
{
    switch (act) {
        case kRelu:     return s > T(0) ? T(1) : T(0);
        case kLrelu:    return s > T(0) ? T(1) : alpha;
        case kTanh:     { T t = ba_tanh(s); return T(1) - t * t; }
        case kSigmoid:  { T g = ba_sigmoid(s); return g * (T(1) - g); }
        case kElu:      return s > T(0) ? T(1) : ba_exp(s);
        case kSelu:     return s > T(0) ? T(EG3D_SELU_SCALE) : T(EG3D_SELU_SCALE * EG3D_SELU_ALPHA) * ba_exp(s);
        case kSoftplus: return s > T(EG3D_SOFTPLUS_THRESHOLD) ? T(1) : ba_sigmoid(s);
        case kSwish:    { T g = ba_sigmoid(s); return g * (T(1) + s * (T(1) - g)); }
        default:        return T(1);
    }
}

// Second derivative with respect to s (zero for the piecewise-linear activations).
template <typename T> EG3D_HD T ba_act_d2(int act, T s)
{
    switch (act) {
        case kTanh:     { T t = ba_tanh(s); return T(-2) * t * (T(1) - t * t); }
        case kSigmoid:  { T g = ba_sigmoid(s); return g * (T(1) - g) * (T(1) - T(2) * g); }
        case kElu:      return s > T(0) ? T(0) : ba_exp(s);
        case kSelu:     return s > T(0) ? T(0) : T(EG3D_SELU_SCALE * EG3D_SELU_ALPHA) * ba_exp(s);
        case kSoftplus: { if (s > T(EG3D_SOFTPLUS_THRESHOLD)) return T(0); T g = ba_sigmoid(s); return g * (T(1) - g); }
        case kSwish:    { T g = ba_sigmoid(s); return g * (T(1) - g) * (T(2) + s * (T(1) - T(2) * g)); }
        default:        return T(0);
    }
}

// First derivative of the piecewise-linear activations recovered from y = clamp(gain * act(s)).
// sign(y) = sign(gain * act(s)) and act(s) > 0 exactly when s > 0 (lrelu needs alpha >= 0).
template <typename T> EG3D_HD T ba_act_d1_from_y(int act, T y, T alpha, T gain)
{
    bool positive = y * gain > T(0);
    switch (act) {
        case kRelu:  return positive ? T(1) : T(0);
        case kLrelu: return positive ? T(1) : alpha;
        default:     return T(1);
    }
}

// One output element. `x` is the forward input in kForward and the incoming gradient otherwise;
// `b` the bias of this element (0 without bias); `ref` the saved tensor of the backward modes.
//   kForward: clamp(gain * act(x + b))
//   kGrad1:   x * d/ds [clamp(gain * act(s))],   s = ref + b (or derived from y = ref)
//   kGrad2:   x * gain * act''(s) * [not clamped], s = ref + b
// Clamp gradients follow torch.clamp: they pass where -clamp <= v <= clamp. From y alone an exact
// tie cannot be told from a clamped value, so that path uses the strict |y| < clamp.
template <typename T> EG3D_HD T bias_act_element(T x, T b, T ref, const BiasActParams& p)
{
    T alpha = T(p.alpha), gain = T(p.gain), clamp = T(p.clamp);
    bool has_clamp = p.clamp >= 0;
    if (p.mode == kForward) {
        T v = ba_act(p.act, x + b, alpha);
        if (p.gain != 1)
            v *= gain;
        if (has_clamp)
            v = v < -clamp ? -clamp : (v > clamp ? clamp : v);
        return v;
    }
    if (p.mode == kGrad1 && p.ref_is_y) {
        bool pass = !has_clamp || (ref > -clamp && ref < clamp);
        return pass ? x * gain * ba_act_d1_from_y(p.act, ref, alpha, gain) : T(0);
    }
    T s = ref + b;
    if (has_clamp) {
        T v = ba_act(p.act, s, alpha) * gain;
        if (v < -clamp || v > clamp)
            return T(0);
    }
    T d = (p.mode == kGrad1) ? ba_act_d1(p.act, s, alpha) : ba_act_d2(p.act, s);
    return x * gain * d;
}

#ifndef EG3D_NO_TORCH
namespace at { class Tensor; }
// Fills `y` (same shape and strides as x); defined in bias_act.cu.
void bias_act_launch(const at::Tensor& x, const at::Tensor& b, const at::Tensor& ref, at::Tensor& y, const BiasActParams& p);
#endif
