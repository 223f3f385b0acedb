"""Convert network pickles to this repository's snapshot format; also the import path the original README uses.

`import legacy; legacy.load_network_pkl(f)` keeps working: the loader lives in training/network_pickle.py.
"""

import click

from training.network_pickle import (  # noqa: F401
    SNAPSHOT_KEYS,
    NetworkPickleError,
    load_network_pkl,
    open_network_pkl,
    save_network_pkl,
)

# ----------------------------------------------------------------------------


@click.command()
@click.option('--source', help='Input pickle (path or URL)', required=True, metavar='PATH')
@click.option('--dest', help='Output pickle', required=True, metavar='PATH')
@click.option('--force-fp16', help='Rebuild the networks with num_fp16_res=4 and conv_clamp=256', type=bool,
              default=False, show_default=True, metavar='BOOL')
@click.option('--trust-embedded-code', help='Execute the source code embedded in the pickle (foreign forks only)',
              is_flag=True)
def convert_network_pickle(source, dest, force_fp16, trust_embedded_code):
    """Re-save a network pickle in this repository's snapshot format.

    \b
    python legacy.py --source=ffhq512-128.pkl --dest=ffhq512-128-fp16.pkl --force-fp16=True
    """
    print(f'Loading "{source}"...')
    try:
        data = open_network_pkl(source, force_fp16=force_fp16, trust_embedded_code=trust_embedded_code)
    except NetworkPickleError as err:
        raise click.ClickException(str(err))
    print(f'Saving "{dest}"...')
    save_network_pkl({key: data[key] for key in SNAPSHOT_KEYS}, dest)
    print('Done.')


if __name__ == '__main__':
    convert_network_pickle()
