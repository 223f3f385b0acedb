"""Interactive viewer for trained EG3D networks, served to a web browser from this machine.

Examples:

\b
# Open http://localhost:8000/ in a browser on this machine.
python visualizer.py --network=ffhq512-128.pkl

\b
# On a remote GPU machine; then on your laptop: ssh -N -L 8000:localhost:8000 user@gpu-host
python visualizer.py --network=network-snapshot-000400.pkl --device=cuda

\b
# Several networks to choose from in the page (the first is shown first).
python visualizer.py run1.pkl run2.pkl https://example.com/network.pkl
"""

import glob
import os

import click
import torch

from training import network_pickle
from training.cli_utils import one_line_errors, trust_embedded_code_option
from viz.render import Renderer
from viz.server import ViewerServer


def _browse(browse_dir):
    if browse_dir is None:
        return []
    if not os.path.isdir(browse_dir):
        raise click.BadParameter(f'{browse_dir}: not a directory', param_hint='--browse-dir')
    return sorted(glob.glob(os.path.join(browse_dir, '**', '*.pkl'), recursive=True))


@click.command()
@click.argument('pkls', metavar='[PKL]...', nargs=-1)
@click.option('--network', 'network_pkl', help='Network pickle path or URL to show first', metavar='PKL_OR_URL')
@click.option('--host', help='Address to listen on (127.0.0.1: this machine only; reach it from elsewhere through '
              'an SSH tunnel)', default='127.0.0.1', show_default=True)
@click.option('--port', help='Port to listen on (0: any free port)', type=click.IntRange(0, 65535), default=8000,
              show_default=True)
@click.option('--device', help='Torch device (default: cuda if available, else cpu)',
              type=click.Choice(['cuda', 'cpu']))
@click.option('--browse-dir', help='Also offer every *.pkl under this directory', metavar='DIR')
@click.option('--capture-dir', help='Keep a copy of every exported mesh here', metavar='DIR')
@click.option('--verbose', help='Log every HTTP request', is_flag=True)
@trust_embedded_code_option
@one_line_errors
def main(pkls, network_pkl, host, port, device, browse_dir, capture_dir, verbose, trust_embedded_code):
    """Serve a page that renders a network interactively: seed, truncation, camera, outputs, PNG and mesh export.

    The camera starts at the network's own (its average pivot, radius and focal); the page's FOV field is in
    camera_utils.FOV_to_intrinsics' degrees (focal = 1 / (1.414 tan(deg / 2)), not the true field of view).
    """
    if device is None:
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if device == 'cuda' and not torch.cuda.is_available():
        raise click.BadParameter('CUDA is not available on this machine', param_hint='--device')
    networks = list(dict.fromkeys(([network_pkl] if network_pkl else []) + list(pkls) + _browse(browse_dir)))
    if capture_dir is not None:
        os.makedirs(capture_dir, exist_ok=True)

    renderer = Renderer(device=device, trust_embedded_code=trust_embedded_code)
    if networks:
        print(f'Loading networks from "{networks[0]}"...')
        try:
            renderer.load(networks[0])
        except network_pickle.NetworkPickleError as err:
            raise click.ClickException(str(err))
    try:
        server = ViewerServer(renderer, host=host, port=port, networks=networks, capture_dir=capture_dir,
                              verbose=verbose)
    except OSError as err:
        raise click.ClickException(f'--host={host} --port={port}: cannot listen there ({err.strerror or err})')
    print(f'EG3D viewer on {device}: open {server.url} in a browser (Ctrl-C stops it)', flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == '__main__':
    main()
