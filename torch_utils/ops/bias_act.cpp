// Python binding and argument checks of the bias_act CUDA kernel.

#include <torch/extension.h>
#include <c10/cuda/CUDAGuard.h>

#include "bias_act.h"

// Same shape and the same memory layout (strides of size-1 dims do not matter).
static bool same_layout(const torch::Tensor& a, const torch::Tensor& b)
{
    if (a.sizes() != b.sizes())
        return false;
    for (int64_t d = 0; d < a.dim(); d++)
        if (a.size(d) > 1 && a.stride(d) != b.stride(d))
            return false;
    return true;
}

// x: input (mode 0) or incoming gradient (modes 1, 2). b: 1-D bias or empty. ref: saved x or y of
// the forward pass (modes 1, 2) or empty. x and ref must be dense with identical strides; the
// output gets the same strides.
static torch::Tensor bias_act(torch::Tensor x, torch::Tensor b, torch::Tensor ref,
    int64_t mode, int64_t dim, int64_t act, bool ref_is_y, double alpha, double gain, double clamp)
{
    TORCH_CHECK(x.is_cuda(), "bias_act: x must be a CUDA tensor");
    TORCH_CHECK(x.is_non_overlapping_and_dense(), "bias_act: x must be dense");
    TORCH_CHECK(x.numel() < ((int64_t)1 << 62), "bias_act: x is too large");
    TORCH_CHECK(mode == kForward || mode == kGrad1 || mode == kGrad2, "bias_act: invalid mode");
    TORCH_CHECK(act >= kLinear && act <= kSwish, "bias_act: invalid activation id");
    TORCH_CHECK(b.numel() == 0 || (dim >= 0 && dim < x.dim()), "bias_act: dim out of range");
    TORCH_CHECK(b.numel() == 0 || (b.dim() == 1 && b.numel() == x.size(dim)), "bias_act: b must have shape [x.shape[dim]]");
    TORCH_CHECK(b.numel() == 0 || (b.device() == x.device() && b.scalar_type() == x.scalar_type() && b.is_contiguous()),
        "bias_act: b must be a contiguous tensor on x's device with x's dtype");
    TORCH_CHECK(mode == kForward || same_layout(ref, x),
        "bias_act: ref must have the shape and strides of x");
    TORCH_CHECK(ref.numel() == 0 || (ref.device() == x.device() && ref.scalar_type() == x.scalar_type()),
        "bias_act: ref must live on x's device with x's dtype");
    TORCH_CHECK(!ref_is_y || mode == kGrad1, "bias_act: only the first derivative can be taken from y");

    const at::cuda::OptionalCUDAGuard device_guard(device_of(x));
    BiasActParams p;
    p.numel = x.numel();
    p.bias_stride = (b.numel() && x.stride(dim) > 0) ? x.stride(dim) : 1;  // A size-1 dim may have stride 0.
    p.bias_size = b.numel();
    p.act = (int)act;
    p.mode = (int)mode;
    p.ref_is_y = ref_is_y ? 1 : 0;
    p.alpha = alpha;
    p.gain = gain;
    p.clamp = clamp;
    torch::Tensor y = torch::empty_like(x);  // Keeps the layout of a dense x.
    bias_act_launch(x, b, ref, y, p);
    return y;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.def("bias_act", &bias_act, "Fused bias, activation, gain and clamp (CUDA)");
}
