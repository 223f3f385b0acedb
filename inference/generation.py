"""What the generation tools share: the generator of a snapshot, loaded and checked.

Used by gen_samples.py, gen_videos.py, projector.py, calc_metrics.py, the viewer and the benchmarks. Cameras live in
training/cameras.py; command-line parsing, the device choice and the error boundary in cli/.
"""

import dnnlib
from torch_utils import misc
from training import network_pickle
from training.cameras import LABEL_DIM

# ----------------------------------------------------------------------------
# The generator.


class GeneratorError(dnnlib.util.UserError):
    """A snapshot that a tool cannot use: one line naming the flag and the file."""


def open_snapshot(network_pkl: str, trust_embedded_code: bool = False, flag: str = '--network') -> dict:
    """network_pickle.open_network_pkl(); a file that cannot be read raises GeneratorError naming `flag`."""
    try:
        return network_pickle.open_network_pkl(network_pkl, trust_embedded_code=trust_embedded_code)
    except network_pickle.NetworkPickleError as err:
        raise GeneratorError(f'{flag}: {err}') from err


def check_eg3d_generator(G, network_pkl: str, flag: str = '--network') -> None:
    """GeneratorError naming `flag` and the file unless G is a camera-conditioned EG3D generator."""
    if not isinstance(getattr(G, 'rendering_kwargs', None), dict) or getattr(G, 'c_dim', None) != LABEL_DIM:
        raise GeneratorError(f'{flag}: {network_pkl}: G_ema is a {type(G).__name__}, not an EG3D generator '
                             f'(expected rendering_kwargs and c_dim = {LABEL_DIM})')


def load_generator(network_pkl: str, device, reload_modules: bool = False, trust_embedded_code: bool = False,
                   flag: str = '--network'):
    """G_ema of a snapshot (path or URL) on `device`, in eval mode without gradients.

    reload_modules rebuilds G from its constructor arguments with this repository's code and copies every
    parameter and buffer. A file that cannot be read, or whose G_ema is not a camera-conditioned EG3D generator,
    raises GeneratorError naming `flag` and the file.
    """
    print(f'Loading networks from "{network_pkl}"...')
    G = open_snapshot(network_pkl, trust_embedded_code=trust_embedded_code, flag=flag)['G_ema']
    check_eg3d_generator(G, network_pkl, flag=flag)
    G = G.eval().requires_grad_(False).to(device)
    if reload_modules:
        print('Reloading modules...')
        rebuilt = type(G)(*G.init_args, **G.init_kwargs).eval().requires_grad_(False).to(device)
        misc.copy_params_and_buffers(G, rebuilt, require_all=True)
        rebuilt.neural_rendering_resolution = G.neural_rendering_resolution
        rebuilt.rendering_kwargs = G.rendering_kwargs
        G = rebuilt
    return G
