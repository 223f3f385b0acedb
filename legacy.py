"""Convert network pickles to this repository's snapshot format; also the import path the README documents.

`import legacy; legacy.load_network_pkl(f)` keeps working: the loader lives in training/network_pickle.py.
"""

import click

import cli
import dnnlib
from training.network_pickle import (  # noqa: F401
    SNAPSHOT_KEYS,
    NetworkPickleError,
    load_network_pkl,
    open_network_pkl,
    portable_snapshot_bytes,
    rebase_onto_repository,
    save_network_pkl,
)
from training.volumetric_rendering.renderer import DEFAULT_PLANE_LAYOUT

# ----------------------------------------------------------------------------


def check_original_plane_layout(data, source):
    """Refuse networks trained with another tri-plane layout: the original EG3D ignores the option and would
    sample the planes as xy, xz, zx, rendering wrong images without an error."""
    for key in ('G', 'G_ema'):
        rendering_kwargs = getattr(data.get(key), 'rendering_kwargs', None) or {}
        layout = rendering_kwargs.get('plane_layout', DEFAULT_PLANE_LAYOUT)
        if layout != DEFAULT_PLANE_LAYOUT:
            raise click.ClickException(f'{source}: {key} was trained with plane_layout "{layout}", which the original '
                                       f'EG3D renders wrongly (as "{DEFAULT_PLANE_LAYOUT}"); not converted (this '
                                       f'repository\'s tools load the file as it is)')


@click.command()
@click.option('--source', help='Input pickle (path or URL)', required=True, metavar='PATH', type=cli.PATH)
@click.option('--dest', help='Output pickle', required=True, metavar='PATH', type=cli.PATH)
@click.option('--force-fp16', help='Rebuild the networks with num_fp16_res=4 and conv_clamp=256', type=bool,
              default=False, show_default=True, metavar='BOOL')
@click.option('--trust-embedded-code', is_flag=True,
              help='Execute the code embedded in the pickle (a fork\'s pickle you trust), then rewrite its networks '
                   'with this repository\'s classes')
def convert_network_pickle(source, dest, force_fp16, trust_embedded_code):
    """Re-save a network pickle in this repository's snapshot format.

    The result always loads without --trust-embedded-code: with the flag, each network of a fork's pickle is
    rebuilt as this repository's class of the same name; a network without one is refused and nothing is written.

    \b
    python legacy.py --source=ffhq512-128.pkl --dest=ffhq512-128-fp16.pkl --force-fp16=True
    """
    print(f'Loading "{source}"...')
    try:
        data = open_network_pkl(source, force_fp16=force_fp16 and not trust_embedded_code,
                                trust_embedded_code=trust_embedded_code)
        check_original_plane_layout(data, source)
        if trust_embedded_code:
            data = rebase_onto_repository(data, force_fp16=force_fp16)
        blob = portable_snapshot_bytes(data)
    except NetworkPickleError as err:
        message = str(err)
        raise click.ClickException(message if message.startswith(source) else f'{source}: {message}')
    print(f'Saving "{dest}"...')
    dnnlib.util.write_atomic(dest, lambda f: f.write(blob))
    print('Done.')


if __name__ == '__main__':
    convert_network_pickle()
