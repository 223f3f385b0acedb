// CUDA kernel of upfirdn2d: one thread per output element, grid-stride loop.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>

#include "upfirdn2d.h"

template <typename scalar_t>
__global__ void upfirdn2d_kernel(const scalar_t* __restrict__ x, const at::opmath_type<scalar_t>* __restrict__ w,
    scalar_t* __restrict__ y, Upfirdn2dParams p)
{
    using acc_t = at::opmath_type<scalar_t>;
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < p.numel; idx += step) {
        int64_t t = idx, n, c;
        int ox, oy;
        if (p.channels_last) {
            c = t % p.channels; t /= p.channels;
            ox = (int)(t % p.out_w); t /= p.out_w;
            oy = (int)(t % p.out_h); n = t / p.out_h;
        } else {
            ox = (int)(t % p.out_w); t /= p.out_w;
            oy = (int)(t % p.out_h); t /= p.out_h;
            c = t % p.channels; n = t / p.channels;
        }
        acc_t v = upfirdn2d_element<acc_t>(x, w, n, c, oy, ox, p);
        y[n * p.out_stride[0] + c * p.out_stride[1] + (int64_t)oy * p.out_stride[2] + (int64_t)ox * p.out_stride[3]] = (scalar_t)v;
    }
}

void upfirdn2d_launch(const at::Tensor& x, const at::Tensor& w, at::Tensor& y, const Upfirdn2dParams& p)
{
    if (p.numel == 0)
        return;
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "upfirdn2d_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        upfirdn2d_kernel<scalar_t><<<eg3d_num_blocks(p.numel), EG3D_THREADS, 0, stream>>>(
            x.data_ptr<scalar_t>(), w.data_ptr<acc_t>(), y.data_ptr<scalar_t>(), p);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
}
