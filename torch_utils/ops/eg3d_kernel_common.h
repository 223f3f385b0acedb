// Definitions shared by the fused ops' headers and kernels.

#pragma once
#include <cstdint>

// Per-element math is written once as host/device functions: the kernels call it on the GPU and the
// tests compile the same headers with the host compiler to check it on the CPU.
#ifdef __CUDACC__
#define EG3D_HD __host__ __device__ __forceinline__
#else
#define EG3D_HD inline
#endif

// Launch shape of the element-wise kernels: 256 threads per block, at most 65536 blocks; the kernels'
// grid-stride loops cover elements beyond that.
constexpr int EG3D_THREADS = 256;

inline unsigned int eg3d_num_blocks(int64_t numel)
{
    int64_t blocks = (numel + EG3D_THREADS - 1) / EG3D_THREADS;
    return (unsigned int)(blocks < 65536 ? blocks : 65536);
}
