// Python binding and argument checks of the upfirdn2d CUDA kernel.

#include <torch/extension.h>
#include <c10/cuda/CUDAGuard.h>

#include "upfirdn2d.h"

// x: [N, C, H, W], any strides. w: 2-D filter applied by correlation, float32 (float64 for float64 x),
// already flipped and scaled by the caller. Returns [N, C, out_h, out_w] in x's memory format.
static torch::Tensor upfirdn2d(torch::Tensor x, torch::Tensor w, int64_t up_x, int64_t up_y,
    int64_t down_x, int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0, int64_t pad_y1)
{
    TORCH_CHECK(x.is_cuda(), "upfirdn2d: x must be a CUDA tensor");
    TORCH_CHECK(x.dim() == 4, "upfirdn2d: x must be 4-D [N, C, H, W]");
    auto w_dtype = x.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
    TORCH_CHECK(w.dim() == 2 && w.numel() > 0 && w.is_contiguous() && w.device() == x.device() && w.scalar_type() == w_dtype,
        "upfirdn2d: w must be a non-empty contiguous 2-D filter on x's device (float64 for float64 x, else float32)");
    TORCH_CHECK(up_x >= 1 && up_y >= 1 && down_x >= 1 && down_y >= 1, "upfirdn2d: up and down must be >= 1");
    const int64_t limit = (int64_t)1 << 28;  // Keeps every intermediate coordinate well within int32.
    TORCH_CHECK(x.size(2) * up_y < limit && x.size(3) * up_x < limit && w.size(0) < limit && w.size(1) < limit &&
        std::abs(pad_x0) < limit && std::abs(pad_x1) < limit && std::abs(pad_y0) < limit && std::abs(pad_y1) < limit,
        "upfirdn2d: sizes out of range");
    int64_t span_w = x.size(3) * up_x + pad_x0 + pad_x1 - w.size(1);
    int64_t span_h = x.size(2) * up_y + pad_y0 + pad_y1 - w.size(0);
    TORCH_CHECK(span_w >= 0 && span_h >= 0, "upfirdn2d: padded input is smaller than the filter");

    const at::cuda::OptionalCUDAGuard device_guard(device_of(x));
    Upfirdn2dParams p;
    p.batch = x.size(0);
    p.channels = x.size(1);
    p.in_h = (int)x.size(2);
    p.in_w = (int)x.size(3);
    p.out_h = (int)(span_h / down_y + 1);
    p.out_w = (int)(span_w / down_x + 1);
    p.up_x = (int)up_x;
    p.up_y = (int)up_y;
    p.down_x = (int)down_x;
    p.down_y = (int)down_y;
    p.pad_x0 = (int)pad_x0;
    p.pad_y0 = (int)pad_y0;
    p.filter_h = (int)w.size(0);
    p.filter_w = (int)w.size(1);
    auto memory_format = x.suggest_memory_format();
    torch::Tensor y = torch::empty({p.batch, p.channels, p.out_h, p.out_w}, x.options().memory_format(memory_format));
    for (int d = 0; d < 4; d++) {
        p.in_stride[d] = x.stride(d);
        p.out_stride[d] = y.stride(d);
    }
    p.channels_last = memory_format == at::MemoryFormat::ChannelsLast ? 1 : 0;
    p.numel = y.numel();
    upfirdn2d_launch(x, w, y, p);
    return y;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.def("upfirdn2d", &upfirdn2d, "Upsample, pad, FIR filter and downsample (CUDA)");
}
