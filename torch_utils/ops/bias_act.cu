// CUDA kernel of bias_act: one thread per element, grid-stride loop.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>

#include "bias_act.h"

template <typename scalar_t>
__global__ void bias_act_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ b,
    const scalar_t* __restrict__ ref, scalar_t* __restrict__ y, BiasActParams p)
{
    using acc_t = at::opmath_type<scalar_t>;
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < p.numel; i += step) {
        acc_t bv = p.bias_size ? (acc_t)b[(i / p.bias_stride) % p.bias_size] : acc_t(0);
        acc_t rv = ref ? (acc_t)ref[i] : acc_t(0);
        y[i] = (scalar_t)bias_act_element<acc_t>((acc_t)x[i], bv, rv, p);
    }
}

void bias_act_launch(const at::Tensor& x, const at::Tensor& b, const at::Tensor& ref, at::Tensor& y, const BiasActParams& p)
{
    if (p.numel == 0)
        return;
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bias_act_cuda", [&] {
        bias_act_kernel<scalar_t><<<eg3d_num_blocks(p.numel), EG3D_THREADS, 0, stream>>>(
            x.data_ptr<scalar_t>(),
            p.bias_size ? b.data_ptr<scalar_t>() : nullptr,
            ref.numel() ? ref.data_ptr<scalar_t>() : nullptr,
            y.data_ptr<scalar_t>(), p);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
}
