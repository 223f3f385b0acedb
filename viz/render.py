"""Render one view of an EG3D generator for the viewer: a request in, an image and its timings out.

The tri-planes depend on the latent and on the conditioning pose only, so they are cached by (network, seeds, mix,
psi, cutoff, conditioning pose); a camera-only change reuses them and pays for volume rendering and
super-resolution alone. `stats` counts computed and reused planes for the tests and the page. Previews render fewer
rays and depth samples and skip super-resolution, so they stay interactive on a CPU.
"""

import collections
import contextlib
import math
import os
import tempfile
import threading
import time

import numpy as np
import torch

from inference import shape_extraction
from torch_utils import misc
from training import cameras, network_pickle
from viz.access import canonical_network
from viz.colormap import colorize_depth
from viz.view_request import RequestError, ViewRequest, parse_mesh_options, parse_view_request

PREVIEW_MIN_RESOLUTION = 16     # A preview never renders fewer rays per side than this.
PREVIEW_MIN_DEPTH = 4           # ... nor fewer coarse samples per ray.
MAX_CACHED_PLANES = 4           # Tri-planes of FFHQ are 25 MB each.


def preview_settings(resolution: int, depth: int, importance: int) -> tuple:
    """(resolution, depth, importance) of a preview: half of each, within the minimums."""
    return (max(min(resolution, PREVIEW_MIN_RESOLUTION), resolution // 2),
            max(min(depth, PREVIEW_MIN_DEPTH), depth // 2), importance // 2)


class Renderer:
    """Loads networks on demand and renders ViewRequests; use from one thread at a time (see `lock`).

    Only the networks in `trusted_networks` (paths or URLs) load with their embedded code executed.
    """

    def __init__(self, device='cpu', trusted_networks=(), max_cached_planes=MAX_CACHED_PLANES):
        self.device = torch.device(device)
        self._trusted = {canonical_network(name) for name in trusted_networks}  # May run their embedded code.
        self.max_cached_planes = max_cached_planes
        self.lock = threading.Lock()    # The server's render thread and mesh export share the network.
        self.stats = collections.Counter(planes_computed=0, planes_reused=0, frames=0, networks_loaded=0)
        self._network = None            # (name, G, info) of the network in use; one at a time.
        self._planes = collections.OrderedDict()

    # ------------------------------------------------------------------------
    # Networks.

    def load(self, name: str):
        """(G, info) for a pickle path or URL, loading it unless it is the current one; NetworkPickleError if bad."""
        if self._network is None or self._network[0] != name:
            trusted = canonical_network(name) in self._trusted
            snapshot = network_pickle.open_network_pkl(name, trust_embedded_code=trusted)
            if not hasattr(snapshot['G_ema'], 'render_planes'):
                # A trusted fork's generator that predates TriPlaneGenerator.render_planes(): rebuilt as ours.
                snapshot = network_pickle.rebase_onto_repository(snapshot)
            G = snapshot['G_ema'].to(self.device).eval().requires_grad_(False)
            self._network = (name, G, self._describe(G))
            self._planes.clear()
            self.stats['networks_loaded'] += 1
        return self._network[1], self._network[2]

    def network(self, name: str):
        """load() for a request: a bad network is a RequestError naming the field."""
        try:
            return self.load(name)
        except network_pickle.NetworkPickleError as err:
            raise RequestError(f'"network": {err}') from err

    @staticmethod
    def _describe(G) -> dict:
        camera = cameras.snapshot_camera(G)  # The FOV field uses FOV_to_intrinsics' degrees.
        return dict(img_resolution=int(G.img_resolution), z_dim=int(G.z_dim), num_ws=int(G.backbone.num_ws),
                    neural_rendering_resolution=int(G.neural_rendering_resolution),
                    depth_resolution=int(G.rendering_kwargs['depth_resolution']),
                    depth_resolution_importance=int(G.rendering_kwargs['depth_resolution_importance']),
                    avg_camera_pivot=camera.pivot, avg_camera_radius=camera.radius,
                    fov=cameras.focal_to_fov(camera.focal))

    # ------------------------------------------------------------------------
    # Cameras and latents.

    def _camera(self, info, yaw, pitch, distance, fov):
        pivot = torch.tensor(info['avg_camera_pivot'], dtype=torch.float32, device=self.device)
        intrinsics = cameras.FOV_to_intrinsics(fov, device=self.device)
        return cameras.look_at_label(math.pi / 2 + math.radians(yaw), math.pi / 2 - math.radians(pitch), pivot,
                                     info['avg_camera_radius'] * distance, intrinsics)

    def _conditioning(self, request: ViewRequest, info, camera):
        if request.conditioning == 'camera':
            return camera
        return self._camera(info, yaw=0, pitch=0, distance=1, fov=info['fov'])

    def _ws(self, G, seed, conditioning, request):
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).to(self.device)
        return G.mapping(z, conditioning, truncation_psi=request.psi, truncation_cutoff=request.cutoff)

    def _latent(self, G, request: ViewRequest, conditioning):
        ws = self._ws(G, request.seed, conditioning, request)
        if request.seed2 is not None and request.mix > 0:
            ws = torch.lerp(ws, self._ws(G, request.seed2, conditioning, request), request.mix)
        return ws

    def _planes_for(self, G, request: ViewRequest, conditioning):
        """(ws, planes, reused) with planes from the cache when the latent and the conditioning are unchanged."""
        pose = tuple(round(v, 6) for v in conditioning.flatten().tolist())
        mixed = request.seed2 is not None and request.mix > 0
        key = (request.network, request.seed, request.seed2 if mixed else None, request.mix if mixed else 0.0,
               request.psi, request.cutoff, pose)
        if key in self._planes:
            self._planes.move_to_end(key)
            self.stats['planes_reused'] += 1
            return (*self._planes[key], True)
        ws = self._latent(G, request, conditioning)
        planes = G.backbone.synthesis(ws, noise_mode='const')
        self._planes[key] = (ws, planes)
        while len(self._planes) > self.max_cached_planes:
            self._planes.popitem(last=False)
        self.stats['planes_computed'] += 1
        return ws, planes, False

    # ------------------------------------------------------------------------
    # Rendering.

    def _sync(self):
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def _fixed_jitter(self):
        # The ray samples are jittered with the global RNG; a fixed draw keeps a still camera's frames identical
        # (no flicker when a preview is refined) without disturbing the caller's RNG state.
        with torch.random.fork_rng(devices=[self.device] if self.device.type == 'cuda' else []):
            torch.manual_seed(0)
            yield

    def resolve(self, request: ViewRequest, info: dict) -> dict:
        """The concrete rendering settings of a request: the network's defaults filled in, preview applied."""
        settings = dict(fov=info['fov'] if request.fov is None else request.fov)
        for name in ('neural_rendering_resolution', 'depth_resolution', 'depth_resolution_importance'):
            settings[name] = info[name] if getattr(request, name) is None else getattr(request, name)
        if request.quality == 'preview':
            names = ('neural_rendering_resolution', 'depth_resolution', 'depth_resolution_importance')
            settings.update(zip(names, preview_settings(*(settings[n] for n in names))))
        return settings

    @torch.no_grad()
    def render(self, request) -> dict:
        """Render a ViewRequest (or a request dict) -> dict(image uint8 [H, W, 3], timing in ms, settings, ...)."""
        if not isinstance(request, ViewRequest):
            request = parse_view_request(request)
        start = time.perf_counter()
        G, info = self.network(request.network)
        loaded = time.perf_counter()
        settings = self.resolve(request, info)
        camera = self._camera(info, request.yaw, request.pitch, request.distance, settings['fov'])
        ws, planes, reused = self._planes_for(G, request, self._conditioning(request, info, camera))
        self._sync()
        mapped = time.perf_counter()

        # Previews skip super-resolution: its cost does not shrink with the neural rendering resolution (its input
        # is resized to a fixed size), and on the CPU it is a large part of a frame.
        super_resolve = request.output == 'image' and request.quality == 'full'
        depths = {name: settings[name] for name in ('depth_resolution', 'depth_resolution_importance')}
        with self._fixed_jitter():
            out = G.render_planes(planes, ws, camera,
                                  neural_rendering_resolution=settings['neural_rendering_resolution'],
                                  super_resolution=super_resolve, rendering_overrides=depths)
        image = self._to_rgb(out, request.output)
        settings['super_resolution'] = super_resolve
        self._sync()
        done = time.perf_counter()
        self.stats['frames'] += 1
        return dict(image=image, width=image.shape[1], height=image.shape[0], output=request.output,
                    quality=request.quality, seq=request.seq, planes_reused=reused, settings=settings, network=info,
                    timing=dict(load_ms=1000 * (loaded - start), planes_ms=1000 * (mapped - loaded),
                                render_ms=1000 * (done - mapped), total_ms=1000 * (done - start)))

    @staticmethod
    def _to_rgb(out: dict, output: str) -> np.ndarray:
        if output == 'depth':
            return colorize_depth(out['image_depth'][0, 0].float().cpu().numpy())
        image = out[output] if output in out else out['image_raw']
        assert image.ndim == 4 and image.shape[1] == 3, f'{output}: unexpected shape {tuple(image.shape)}'
        return misc.to_uint8(image)[0].cpu().numpy()

    # ------------------------------------------------------------------------
    # Shapes.

    @torch.no_grad()
    def export_mesh(self, request, shape_res=128, mesh_format='.ply', level=10.0, capture_dir=None) -> tuple:
        """Iso-surface of the current latent through the shape export of gen_samples.py -> (file name, file bytes).

        The file is also kept in `capture_dir` when one is given.
        """
        if not isinstance(request, ViewRequest):
            request = parse_view_request(request)
        options = parse_mesh_options(dict(shape_res=shape_res, format=mesh_format, level=level))
        shape_res, mesh_format, level = options['shape_res'], options['mesh_format'], options['level']
        G, info = self.network(request.network)
        camera = self._camera(info, request.yaw, request.pitch, request.distance, request.fov or info['fov'])
        ws = self._latent(G, request, self._conditioning(request, info, camera))
        with tempfile.TemporaryDirectory() as tmp_dir:
            path = os.path.join(capture_dir or tmp_dir, f'seed{request.seed:04d}{mesh_format}')
            try:
                shape_extraction.save_generator_shape(G, ws, path, shape_res, level, mesh_colors=True, device=self.device)
            except ValueError as err:
                raise RequestError(f'mesh of seed {request.seed}: {err}; choose another iso-level') from err
            with open(path, 'rb') as f:
                return os.path.basename(path), f.read()
