"""train.py's command line: the rendering-config flags and their types, the help epilog, and the sections of
training_options.json, each built from the parsed options in the key order the file shows.

The section functions take the parsed command-line options (an EasyDict keyed like train.py's flags) and return
one section; train.py assembles them and runs the checks.
"""

import json
import os
import re

import click

import dnnlib
from cli import expand_path
from training import presets, rendering_config
from training.cameras import LABEL_DIM
from training.volumetric_rendering.renderer import PLANE_LAYOUTS

#----------------------------------------------------------------------------
# Rendering-config flags.

class ConfigArg(click.ParamType):
    """--cfg: a preset name, or the path of a JSON config file (read later, with one-line errors)."""
    name = 'cfg'

    def convert(self, value, param, ctx):
        value = expand_path(value)
        if rendering_config.is_config_file(value) and not value.lower().endswith('.json') and not os.path.isfile(value):
            self.fail(f'{value!r} is neither a preset ({", ".join(presets.RENDERING_PRESETS)}) nor a JSON config '
                      f'file', param, ctx)
        return value

class RayBound(click.ParamType):
    """A distance or 'auto' (range checks come with the other options)."""
    name = 'ray bound'

    def convert(self, value, param, ctx):
        if value == 'auto' or isinstance(value, (int, float)):
            return value
        try:
            return float(value)
        except ValueError:
            self.fail(f'{value!r} is neither a number nor "auto"', param, ctx)

class Pivot(click.ParamType):
    """Three comma-separated numbers."""
    name = 'pivot'

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            return list(value)
        try:
            pivot = [float(v) for v in str(value).split(',')]
        except ValueError:
            pivot = []
        if len(pivot) != 3:
            self.fail(f'{value!r} is not three comma-separated numbers', param, ctx)
        return pivot

# Appended to `train.py --help`: the workflow for a new dataset.
TRAIN_HELP_EPILOG = """\b
Your own dataset (docs/training.md, "Your own dataset: rendering config files"):
  1. Images with camera labels in dataset.json (docs/cameras.md), converted and checked:
       python dataset_tool.py --source=mycars/ --dest=mycars_128.zip --resolution=128x128
  2. A rendering config, e.g. myconfig.json (keys not given come from the base preset):
       {"base": "shapenet", "ray_start": "auto", "ray_end": "auto",
        "avg_camera_radius": 1.2, "avg_camera_pivot": [0, 0, 0]}
     Keys: base (ffhq|afhq|shapenet, optional), depth_resolution, depth_resolution_importance,
     ray_start and ray_end (distances, or both "auto" to clip each ray to the box), box_warp,
     white_back, avg_camera_radius, avg_camera_pivot, plane_layout ("xy_xz_zx", the original's
     planes, or "xy_xz_zy", three distinct planes for new runs). Without a base, all but
     white_back and plane_layout are required. The matching flags (--ray-start, --box-warp,
     --plane-layout, ...) override the file.
  3. Fine-tune a released network of the same resolution (ShapeNet cars for 360-degree data,
     FFHQ or AFHQ at 512 px for front-facing data):
       python train.py --outdir=runs --cfg=myconfig.json --data=mycars_128.zip --gpus=8 \\
         --batch=32 --gamma=0.3 --resume=shapenetcars128-64.pkl
     Only parameters and buffers come from the pickle: the rendering options of --cfg and the
     flags apply, and each one that differs from the pickle's is reported as a warning.
  4. Render with the options the snapshot carries (camera radius, pivot, ray bounds):
       python gen_samples.py --outdir=out --seeds=0-3 \\
         --network=runs/00000-myconfig-mycars_128-gpus8-batch32-gamma0.3/network-snapshot-000000.pkl
"""

def override_options(fn):
    """Adds the override flags of the options that --depth-resolution(-importance) do not already cover."""
    flags = [
        click.option('--ray-start', help='Near bound of every ray, or "auto" (with --ray-end=auto: clip each ray '
                     'to the box)  [default: from --cfg]', metavar='FLOAT|auto', type=RayBound()),
        click.option('--ray-end', help='Far bound of every ray, or "auto"  [default: from --cfg]',
                     metavar='FLOAT|auto', type=RayBound()),
        click.option('--box-warp', help='Side of the cube the tri-planes span  [default: from --cfg]',
                     metavar='FLOAT', type=float),
        click.option('--white-back', help='White background behind the volume  [default: from --cfg]',
                     metavar='BOOL', type=bool),
        click.option('--avg-camera-radius', help='Camera distance the scripts orbit at  [default: from --cfg]',
                     metavar='FLOAT', type=float),
        click.option('--avg-camera-pivot', help='Point the scripts\' cameras look at  [default: from --cfg]',
                     metavar='X,Y,Z', type=Pivot()),
        click.option('--plane-layout', help='Tri-plane axes: xy_xz_zx (the original\'s, whose third plane repeats '
                     'an axis) or xy_xz_zy (three distinct planes)  [default: from --cfg, else xy_xz_zx]',
                     type=click.Choice(PLANE_LAYOUTS)),
    ]
    for flag in reversed(flags):
        fn = flag(fn)
    return fn

def overrides_from_opts(opts: dict) -> dict:
    """The override flag values of parsed train.py options, keyed by option."""
    return {key: opts.get(key) for key in rendering_config.OPTION_KEYS}

#----------------------------------------------------------------------------
# Sections of training_options.json.

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
        opts.cfg, overrides=overrides_from_opts(opts)))
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


# Flag of each rendering option that rendering_kwargs_for() takes from the command line (the others come from
# --cfg and rendering_config's override flags).
_RENDERING_FLAGS = dict(rendering_config.OVERRIDE_FLAGS, gpc_reg_prob='--gpc_reg_prob', c_scale='--c-scale',
                        superresolution_noise_mode='--sr_noise_mode', density_reg='--density_reg',
                        density_reg_p_dist='--density_reg_p_dist', reg_type='--reg_type',
                        decoder_lr_mul='--decoder_lr_mul')

# What the renderer assumes for a rendering option that a network does not record.
_RENDERING_DEFAULTS = dict(rendering_config.IMPLICIT_VALUES, white_back=False)

# Rendering options a network records but no flag sets: the dataset decides them.
_DATASET_KEYS = ('image_resolution', 'avg_camera_focal')


def _plain(value):
    return json.loads(json.dumps(value))


def _flag_value(value):
    if isinstance(value, list):
        return ','.join(f'{v:g}' for v in value)
    return f'{value:g}' if isinstance(value, float) else str(value)


def describe_resume_differences(c, resumed: dict) -> list:
    """One line per construction option in which the G and D of config `c` differ from the resumed pickle's.

    A resume copies parameters and buffers by name, so such a difference is silently trained with the new value;
    each line names the flag that would match the pickle.
    """
    G, D = resumed['G_ema'], resumed['D']
    g_init, d_init = dict(getattr(G, 'init_kwargs', {})), dict(getattr(D, 'init_kwargs', {}))
    ours_rk, theirs_rk = c.G_kwargs.rendering_kwargs, dict(getattr(G, 'rendering_kwargs', {}))
    pose_cond = (not ours_rk['c_gen_conditioning_zero'], not theirs_rk.get('c_gen_conditioning_zero', True))
    checks = [
        ('pose conditioning of G', *pose_cond, '--gen_pose_cond'),
        ('neural rendering resolution', c.loss_kwargs.neural_rendering_resolution_initial,
         getattr(G, 'neural_rendering_resolution', None), '--neural_rendering_resolution_initial'),
        ('super-resolution module', ours_rk['superresolution_module'], theirs_rk.get('superresolution_module'),
         '--sr-module'),
        ('camera label size c_dim', LABEL_DIM, getattr(G, 'c_dim', None), None),
        ('G mapping layers', c.G_kwargs.mapping_kwargs.num_layers, g_init.get('mapping_kwargs', {}).get('num_layers'),
         '--map-depth'),
        ('G channel_base', c.G_kwargs.channel_base, g_init.get('channel_base'), '--cbase'),
        ('G channel_max', c.G_kwargs.channel_max, g_init.get('channel_max'), '--cmax'),
        ('D channel_base', c.D_kwargs.channel_base, d_init.get('channel_base'), '--cbase'),
        ('D channel_max', c.D_kwargs.channel_max, d_init.get('channel_max'), '--cmax'),
    ]
    skipped = {'c_gen_conditioning_zero', 'superresolution_module', *_DATASET_KEYS}
    if pose_cond[0] != pose_cond[1]:
        skipped.add('gpc_reg_prob')  # Follows --gen_pose_cond.
    for key in list(ours_rk) + [key for key in theirs_rk if key not in ours_rk]:
        if key not in skipped:
            default = _RENDERING_DEFAULTS.get(key)
            checks.append((f'rendering option {key}', ours_rk.get(key, default), theirs_rk.get(key, default),
                           _RENDERING_FLAGS.get(key, '--cfg')))
    lines = []
    for what, ours, theirs, flag in checks:
        ours, theirs = _plain(ours), _plain(theirs)
        if ours == theirs:
            continue
        if flag is None:
            match = 'no flag changes it: it follows the dataset labels'
        elif theirs is None:
            match = f'a --cfg file without "{what.split()[-1]}" matches it'
        elif flag == '--cfg':
            match = f'set "{what.split()[-1]}": {json.dumps(theirs)} in a --cfg file'
        else:
            match = f'{flag}={_flag_value(theirs)} matches it'
        shown = ['(not set)' if value is None else json.dumps(value) for value in (ours, theirs)]
        lines.append(f'{what}: this run uses {shown[0]}, the pickle has {shown[1]} ({match})')
    return lines


def run_description(opts, dataset_name, gpus=None, batch=None):
    """<cfg>-<dataset>-gpus<N>-batch<B>-gamma<G>[-<desc>]; gpus and batch may be replaced (run_family())."""
    gpus = opts.gpus if gpus is None else gpus
    batch = opts.batch if batch is None else batch
    desc = f'{rendering_config.config_name(opts.cfg)}-{dataset_name}-gpus{gpus}-batch{batch}-gamma{opts.gamma:g}'
    return desc if opts.desc is None else f'{desc}-{opts.desc}'


def run_family(opts, dataset_name):
    """Regex of the run descriptions that --resume=latest continues: this configuration and dataset with any
    --gpus and --batch (groups 'gpus' and 'batch')."""
    marker = '\0'  # No dataset name or --desc holds it.
    prefix, middle, suffix = map(re.escape, run_description(opts, dataset_name, gpus=marker, batch=marker).split(marker))
    return re.compile(f'{prefix}(?P<gpus>\\d+){middle}(?P<batch>\\d+){suffix}')
