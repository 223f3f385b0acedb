// Upsample (zero insertion), pad/crop, FIR filter, downsample -- in one pass over the output.
//
// The per-element math is a plain host/device function so that it can be checked on the CPU;
// upfirdn2d.cu only adds the kernel launch and upfirdn2d.cpp the Python binding.

#pragma once
#include <cstdint>

#include "eg3d_kernel_common.h"

struct Upfirdn2dParams {
    int64_t numel;          // Output elements.
    int64_t batch, channels;
    int in_h, in_w, out_h, out_w;
    int up_x, up_y, down_x, down_y;
    int pad_x0, pad_y0;     // Leading padding; negative crops.
    int filter_h, filter_w;
    int64_t in_stride[4];   // Element strides of x and y in NCHW order.
    int64_t out_stride[4];
    int channels_last;      // Enumerate outputs in NHWC order so that channels-last writes coalesce.
};

// Taps j (of a filter of length taps) whose window position `origin + j` in the zero-inserted signal
// hits a real input sample: j in [begin, end) stepping by `up`, input index (origin + j) / up.
EG3D_HD int upfirdn2d_first_tap(int origin, int up)
{
    return origin >= 0 ? (up - origin % up) % up : -origin;
}

EG3D_HD int upfirdn2d_end_tap(int origin, int up, int in_size, int taps)
{
    int last = (in_size - 1) * up - origin;  // Largest j that still lands inside the input.
    return last + 1 < taps ? last + 1 : taps;
}

// Output element (n, c, oy, ox) = sum_{i,j} w[i, j] * P[oy * down_y + i, ox * down_x + j], where P is
// the input upsampled by zero insertion (sample k at k * up) and padded by pad_x0/pad_y0 in front.
// The filter `w` is applied as given (correlation): flipping and gain are done by the caller.
template <typename T, typename scalar_t, typename weight_t>
EG3D_HD T upfirdn2d_element(const scalar_t* x, const weight_t* w, int64_t n, int64_t c, int oy, int ox,
    const Upfirdn2dParams& p)
{
    int u = ox * p.down_x - p.pad_x0;  // Window origin in zero-inserted input coordinates.
    int v = oy * p.down_y - p.pad_y0;
    int j0 = upfirdn2d_first_tap(u, p.up_x), j1 = upfirdn2d_end_tap(u, p.up_x, p.in_w, p.filter_w);
    int i0 = upfirdn2d_first_tap(v, p.up_y), i1 = upfirdn2d_end_tap(v, p.up_y, p.in_h, p.filter_h);
    const scalar_t* xc = x + n * p.in_stride[0] + c * p.in_stride[1];
    T acc = T(0);
    for (int i = i0; i < i1; i += p.up_y) {
        const scalar_t* row = xc + (int64_t)((v + i) / p.up_y) * p.in_stride[2];
        const weight_t* wrow = w + (int64_t)i * p.filter_w;
        for (int j = j0; j < j1; j += p.up_x)
            acc += (T)row[(int64_t)((u + j) / p.up_x) * p.in_stride[3]] * (T)wrow[j];
    }
    return acc;
}

#ifndef EG3D_NO_TORCH
namespace at { class Tensor; }
// Fills `y` ([N, C, out_h, out_w]) from x and the filter w ([filter_h, filter_w], opmath dtype of x);
// defined in upfirdn2d.cu.
void upfirdn2d_launch(const at::Tensor& x, const at::Tensor& w, at::Tensor& y, const Upfirdn2dParams& p);
#endif
