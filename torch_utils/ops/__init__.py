"""Low-level ops of the networks: bias_act, upfirdn2d, conv2d_resample, fma, filtered_lrelu, and the
gradient-fixed conv2d / grid_sample. bias_act and upfirdn2d have CUDA kernels that are compiled on first
use (see torch_utils.custom_ops); every op also has a pure-PyTorch reference path, which is what runs on
the CPU, when a build fails, or when EG3D_DISABLE_CUDA_OPS=1 is set.
"""
