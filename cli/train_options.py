"""The sections of training_options.json, each built from train.py's options in the key order the file shows.

Every function takes the parsed command-line options (an EasyDict keyed like train.py's flags) and returns one
section; train.py assembles them and runs the checks.
"""

import dnnlib
from training import rendering_config

G_LR = 0.0025   # Every EG3D preset trains G at this rate.
AUGMENT_STRENGTHS = dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1,
                         contrast=1, lumaflip=1, hue=1, saturation=1)


def rendering_kwargs_for(opts, resolution, sr_module):
    rendering_kwargs = dict(
        image_resolution=resolution, disparity_space_sampling=False, clamp_mode='softplus',
        superresolution_module=sr_module, c_gen_conditioning_zero=not opts.gen_pose_cond,
        gpc_reg_prob=opts.gpc_reg_prob if opts.gen_pose_cond else None, c_scale=opts.c_scale,
        superresolution_noise_mode=opts.sr_noise_mode, density_reg=opts.density_reg,
        density_reg_p_dist=opts.density_reg_p_dist, reg_type=opts.reg_type, decoder_lr_mul=opts.decoder_lr_mul,
        sr_antialias=True,
    )
    # The preset or config file, then the override flags; raises rendering_config.RenderingConfigError.
    rendering_kwargs.update(rendering_config.resolve_rendering_options(
        opts.cfg, overrides=rendering_config.overrides_from_opts(opts)))
    return rendering_kwargs


def _conv_clamp(num_fp16_res):
    return 256 if num_fp16_res > 0 else None # Clamp the activations of fp16 layers only.


def generator_kwargs(opts, rendering_kwargs):
    # Modulated convolutions stay unfused while training ('inference_only').
    return dnnlib.EasyDict(
        class_name='training.triplane.TriPlaneGenerator', z_dim=512, w_dim=512,
        mapping_kwargs=dnnlib.EasyDict(num_layers=opts.map_depth), channel_base=opts.cbase, channel_max=opts.cmax,
        fused_modconv_default='inference_only', rendering_kwargs=rendering_kwargs, num_fp16_res=opts.g_num_fp16_res,
        sr_num_fp16_res=opts.sr_num_fp16_res,
        sr_kwargs=dnnlib.EasyDict(channel_base=opts.cbase, channel_max=opts.cmax, fused_modconv_default='inference_only'),
        conv_clamp=_conv_clamp(opts.g_num_fp16_res))


def discriminator_kwargs(opts):
    return dnnlib.EasyDict(
        class_name='training.dual_discriminator.DualDiscriminator',
        block_kwargs=dnnlib.EasyDict(freeze_layers=opts.freezed), mapping_kwargs=dnnlib.EasyDict(),
        epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=opts.mbstd_group), channel_base=opts.cbase,
        channel_max=opts.cmax, disc_c_noise=opts.disc_c_noise, num_fp16_res=opts.d_num_fp16_res,
        conv_clamp=_conv_clamp(opts.d_num_fp16_res))


def adam_kwargs(lr):
    return dnnlib.EasyDict(class_name='torch.optim.Adam', betas=[0, 0.99], eps=1e-8, lr=lr)


def loss_kwargs_for(opts):
    return dnnlib.EasyDict(
        class_name='training.loss.StyleGAN2Loss', r1_gamma=opts.gamma, filter_mode='antialiased', blur_init_sigma=10,
        blur_fade_kimg=opts.batch * opts.blur_fade_kimg / 32,
        gpc_reg_prob=opts.gpc_reg_prob if opts.gen_pose_cond else None, gpc_reg_fade_kimg=opts.gpc_reg_fade_kimg,
        dual_discrimination=True, neural_rendering_resolution_initial=opts.neural_rendering_resolution_initial,
        neural_rendering_resolution_final=opts.neural_rendering_resolution_final,
        neural_rendering_resolution_fade_kimg=opts.neural_rendering_resolution_fade_kimg,
        style_mixing_prob=opts.style_mixing_prob)


def augment_options(aug, target, p):
    if aug == 'noaug':
        return dict()
    options = dict(augment_kwargs=dnnlib.EasyDict(class_name='training.augment.AugmentPipe', **AUGMENT_STRENGTHS))
    if aug == 'ada':
        options['ada_target'] = target
    else:
        options['augment_p'] = p
    return options


def run_description(opts, dataset_name):
    desc = f'{rendering_config.config_name(opts.cfg)}-{dataset_name}-gpus{opts.gpus}-batch{opts.batch}-gamma{opts.gamma:g}'
    return desc if opts.desc is None else f'{desc}-{opts.desc}'
