"""Interactive viewer for trained EG3D networks, served to a web browser from this machine.

Examples:

\b
# Open the printed URL (http://localhost:8000/?token=...) in a browser on this machine.
python visualizer.py --network=ffhq512-128.pkl

\b
# On a remote GPU machine; then on your laptop: ssh -N -L 8000:localhost:8000 user@gpu-host
python visualizer.py --network=network-snapshot-000400.pkl --device=cuda

\b
# Several networks to choose from in the page (the first is shown first), and every *.pkl of a run.
python visualizer.py run1.pkl run2.pkl https://example.com/network.pkl --browse-dir=training-runs

The page may load only these networks. Each run prints a new secret token in the URL; every request must
present it (see docs/visualizer.md).
"""

import os
import sys

import click
import torch

from cli import PATH, one_line_errors, trust_embedded_code_option
from training import network_pickle
from viz import access
from viz.render import Renderer
from viz.server import ViewerServer

TOKEN_ENV = 'EG3D_VIEWER_TOKEN'  # Unlike a command-line argument, not in the process list other users can read.


def _token(ctx, param, value):
    try:
        return None if value is None else access.check_token(value)
    except ValueError as err:
        raise click.BadParameter(str(err), ctx=ctx, param=param) from None


@click.command()
@click.argument('pkls', metavar='[PKL]...', nargs=-1, type=PATH)
@click.option('--network', 'network_pkl', help='Network pickle path or URL to show first', metavar='PKL_OR_URL', type=PATH)
@click.option('--host', help='Address to listen on (127.0.0.1: this machine only; reach it from elsewhere through '
              'an SSH tunnel)', default='127.0.0.1', show_default=True)
@click.option('--port', help='Port to listen on (0: any free port)', type=click.IntRange(0, 65535), default=8000,
              show_default=True)
@click.option('--token', help='Secret that every request must present  [default: a new random one per run]',
              callback=_token, metavar='TOKEN', envvar=TOKEN_ENV, show_envvar=True)
@click.option('--no-token', help='Serve without a token (only on a loopback --host): any program of any user on '
              'this machine can then drive the viewer', is_flag=True)
@click.option('--device', help='Torch device (default: cuda if available, else cpu)',
              type=click.Choice(['cuda', 'cpu']))
@click.option('--browse-dir', help='Also offer every *.pkl under this directory', metavar='DIR', type=PATH)
@click.option('--allow-any-network', help='Let the page load any pickle path or URL this machine can reach, not '
              'only the offered ones', is_flag=True)
@click.option('--capture-dir', help='Keep a copy of every exported mesh here', metavar='DIR', type=PATH)
@click.option('--verbose', help='Log every HTTP request', is_flag=True)
@trust_embedded_code_option
@one_line_errors
def main(pkls, network_pkl, host, port, token, no_token, device, browse_dir, allow_any_network, capture_dir, verbose,
         trust_embedded_code):
    """Serve a page that renders a network interactively: seed, truncation, camera, outputs, PNG and mesh export.

    --trust-embedded-code applies to the networks named on the command line only, never to one the page names.
    The camera starts at the network's own (its average pivot, radius and focal); the page's FOV field is in
    camera_utils.FOV_to_intrinsics' degrees (focal = 1 / (1.414 tan(deg / 2)), not the true field of view).
    """
    if no_token and token is not None:
        raise click.UsageError('--token and --no-token exclude each other')
    if no_token and not access.is_loopback(host):
        raise click.BadParameter(f'{host} is not a loopback address; --no-token is allowed only on one (such as '
                                 f'127.0.0.1)', param_hint='--host')
    if device is None:
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if device == 'cuda' and not torch.cuda.is_available():
        raise click.BadParameter('CUDA is not available on this machine', param_hint='--device')
    if browse_dir is not None and not os.path.isdir(browse_dir):
        raise click.BadParameter(f'{browse_dir}: not a directory', param_hint='--browse-dir')
    named = list(dict.fromkeys(([network_pkl] if network_pkl else []) + list(pkls)))
    first = next(iter(named + access.browse(browse_dir)), None)
    if capture_dir is not None:
        os.makedirs(capture_dir, exist_ok=True)

    renderer = Renderer(device=device, trusted_networks=named if trust_embedded_code else ())
    if first is not None:
        print(f'Loading networks from "{first}"...')
        try:
            renderer.load(first)
        except network_pickle.NetworkPickleError as err:
            raise click.ClickException(str(err))
    try:
        server = ViewerServer(renderer, token=None if no_token else token or access.new_token(), host=host,
                              port=port, networks=named, browse_dir=browse_dir, allow_any_network=allow_any_network,
                              capture_dir=capture_dir, verbose=verbose)
    except OSError as err:
        raise click.ClickException(f'--host={host} --port={port}: cannot listen there ({err.strerror or err})')
    if no_token:
        print('WARNING: --no-token: every program of every user on this machine can drive this viewer',
              file=sys.stderr, flush=True)
    print(f'EG3D viewer on {device}: open {server.url} in a browser (Ctrl-C stops it)', flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == '__main__':
    main()
