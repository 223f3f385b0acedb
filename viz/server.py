"""The viewer's local web server: a static page plus a small JSON API, on the standard library's http.server.

One render thread serves all frames. Requests go through a single-slot box: a newer request replaces one that has
not started yet (its sender is told it was superseded), so a dragged camera never builds a queue of stale frames.
Every request passes the checks of viz.access (Host, Origin, token, JSON body, allowed networks) before any work.
"""

import base64
import http.server
import io
import json
import os
import threading
import urllib.parse

import PIL.Image

from viz.access import NetworkAccess, Refused, RequestGuard, bearer_token, is_loopback
from viz.view_request import RequestError, parse_view_request, split_mesh_request

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'static')
STATIC_FILES = {'/': 'index.html', '/index.html': 'index.html', '/viewer.js': 'viewer.js', '/viewer.css': 'viewer.css'}
# (method, path) -> what serves it. The page needs the token in its URL; its script and style sheet hold no secret
# (the page loads them without the query); every API call sends the token as "Authorization: Bearer <token>".
ROUTES = {('GET', '/'): 'page', ('GET', '/index.html'): 'page', ('GET', '/viewer.js'): 'asset',
          ('GET', '/viewer.css'): 'asset', ('GET', '/api/config'): 'config', ('POST', '/api/render'): 'render',
          ('POST', '/api/mesh'): 'mesh'}
SECURITY_HEADERS = [('Cache-Control', 'no-store'), ('X-Content-Type-Options', 'nosniff'),
                    ('X-Frame-Options', 'DENY'), ('Referrer-Policy', 'no-referrer')]
CONTENT_TYPES = {'.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
                 '.css': 'text/css; charset=utf-8'}
MAX_BODY = 1 << 16
RENDER_TIMEOUT_S = 600  # A first frame may include loading (and downloading) the network.


class Ticket:
    """One request waiting for the render thread; `wait()` returns ('ok' | 'error' | 'superseded', payload)."""

    def __init__(self, request):
        self.request = request
        self._done = threading.Event()
        self._answer = None

    def resolve(self, status: str, payload=None):
        self._answer = (status, payload)
        self._done.set()

    def wait(self, timeout=None):
        if not self._done.wait(timeout):
            return 'error', 'the renderer did not answer in time'
        return self._answer


class LatestRequestBox:
    """A mailbox holding at most one pending ticket; put() supersedes the one waiting, take() blocks for one."""

    def __init__(self):
        self._cond = threading.Condition()
        self._pending = None
        self._closed = False

    def put(self, request) -> Ticket:
        ticket = Ticket(request)
        with self._cond:
            if self._pending is not None:
                self._pending.resolve('superseded')
            self._pending = ticket
            self._cond.notify()
        return ticket

    def take(self):
        """The newest pending ticket, or None once the box is closed."""
        with self._cond:
            while self._pending is None and not self._closed:
                self._cond.wait()
            ticket, self._pending = self._pending, None
            return ticket

    def close(self):
        with self._cond:
            self._closed = True
            if self._pending is not None:
                self._pending.resolve('superseded')
                self._pending = None
            self._cond.notify_all()


def encode_png(image) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.fromarray(image, 'RGB').save(buffer, format='png', compress_level=1)
    return buffer.getvalue()


def frame_payload(result: dict) -> dict:
    """The JSON answer to a rendered frame: the PNG as a data URL plus everything the page displays."""
    payload = {k: v for k, v in result.items() if k != 'image'}
    payload['image'] = 'data:image/png;base64,' + base64.b64encode(encode_png(result['image'])).decode('ascii')
    return payload


def render_loop(renderer, box: LatestRequestBox):
    """Body of the render thread: render the newest request until the box is closed."""
    while (ticket := box.take()) is not None:
        try:
            with renderer.lock:
                result = renderer.render(ticket.request)
            ticket.resolve('ok', frame_payload(result))
        except RequestError as err:
            ticket.resolve('error', str(err))
        except Exception as err:  # noqa: BLE001 -- the page shows it; the server keeps serving
            ticket.resolve('error', f'{type(err).__name__}: {" ".join(str(err).split())}')


class ViewerHandler(http.server.BaseHTTPRequestHandler):
    server_version = 'EG3DViewer/1.0'

    def log_message(self, format, *args):  # noqa: A002 -- the base class's signature
        if self.server.verbose:
            super().log_message(format, *args)

    def _send(self, code: int, body: bytes, content_type: str, headers=()):
        self.send_response(code)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(body)))
        for name, value in SECURITY_HEADERS + list(headers):
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, code: int, data: dict):
        self._send(code, json.dumps(data).encode('utf-8'), 'application/json')

    def _read_json(self):
        try:
            length = int(self.headers.get('Content-Length') or 0)
        except ValueError:
            raise RequestError('"Content-Length" is not a number') from None
        if not 0 < length <= MAX_BODY:
            raise RequestError(f'a request body of 1 to {MAX_BODY} bytes is expected, got {length}')
        try:
            return json.loads(self.rfile.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            raise RequestError(f'the request body is not JSON ({" ".join(str(err).split())})') from None

    def _checked(self, method: str):
        """Run the access checks of a request; return the name of the handler to serve it, or raise Refused."""
        url = urllib.parse.urlsplit(self.path)
        guard = self.server.guard
        guard.check_host(self.headers.get('Host'))
        guard.check_origin(self.headers.get('Origin'), self.headers.get('Host'))
        route = ROUTES.get((method, url.path))
        if route is None:
            raise Refused(404, f'{method} {url.path}: not found')
        if route == 'page':
            guard.check_token(urllib.parse.parse_qs(url.query).get('token', [None])[0])
        elif route != 'asset':
            guard.check_token(bearer_token(self.headers.get('Authorization')))
        if method == 'POST':
            guard.check_json(self.headers.get('Content-Type'))
        return route, url.path

    def _handle(self, method: str):
        try:
            route, path = self._checked(method)
            if route in ('page', 'asset'):
                name = STATIC_FILES[path]
                with open(os.path.join(STATIC_DIR, name), 'rb') as f:
                    self._send(200, f.read(), CONTENT_TYPES[os.path.splitext(name)[1]])
            elif route == 'config':
                self._send_json(200, self.server.config())
            else:
                getattr(self, f'_{route}')(self._read_json())
        except Refused as err:
            self._send_json(err.status, dict(status='error', message=str(err)))
        except RequestError as err:
            self._send_json(400, dict(status='error', message=str(err)))

    def do_GET(self):  # noqa: N802 -- http.server's naming
        self._handle('GET')

    def do_POST(self):  # noqa: N802
        self._handle('POST')

    def _render(self, data):
        request = parse_view_request(data, default_network=self.server.default_network)
        self.server.access.check(request.network)
        status, payload = self.server.box.put(request).wait(RENDER_TIMEOUT_S)
        if status == 'ok':
            self._send_json(200, dict(payload, status='ok'))
        elif status == 'superseded':
            self._send_json(200, dict(status='superseded', seq=request.seq))
        else:
            self._send_json(400, dict(status='error', message=payload, seq=request.seq))

    def _mesh(self, data):
        request, options = split_mesh_request(data, default_network=self.server.default_network)
        self.server.access.check(request.network)
        with self.server.renderer.lock:
            name, body = self.server.renderer.export_mesh(request, capture_dir=self.server.capture_dir, **options)
        self._send(200, body, 'application/octet-stream', [('Content-Disposition', f'attachment; filename="{name}"')])


class ViewerServer(http.server.ThreadingHTTPServer):
    """HTTP server bound to (host, port) with its render thread; `url` is where the page is (with the token).

    token: the secret every request presents, or None for none (only on a loopback address). networks: the
    command-line networks, the first shown first. browse_dir and allow_any_network widen what a request may
    name (viz.access.NetworkAccess).
    """

    daemon_threads = True

    def __init__(self, renderer, *, token, host='127.0.0.1', port=0, networks=(), browse_dir=None,
                 allow_any_network=False, capture_dir=None, verbose=False):
        if token is None and not is_loopback(host):
            raise ValueError(f'{host} is not a loopback address: a viewer without a token listens on one only')
        super().__init__((host, port), ViewerHandler)
        self.renderer = renderer
        self.guard = RequestGuard(host, self.server_address[1], token)
        self.access = NetworkAccess(networks, browse_dir=browse_dir, allow_any=allow_any_network)
        offered = self.access.offered()
        self.default_network = offered[0] if offered else None
        self.capture_dir = capture_dir
        self.verbose = verbose
        self.box = LatestRequestBox()
        self._render_thread = threading.Thread(target=render_loop, args=(renderer, self.box), daemon=True,
                                               name='viewer-render')
        self._render_thread.start()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = 'localhost' if host in ('127.0.0.1', '0.0.0.0', '::', '::1') else host
        query = '' if self.guard.token is None else f'?token={self.guard.token}'
        return f'http://{shown}:{port}/{query}'

    def config(self) -> dict:
        return dict(networks=self.access.offered(), network=self.default_network, device=str(self.renderer.device),
                    allow_any_network=self.access.allow_any)

    def server_close(self):
        self.box.close()
        super().server_close()
