"""viz.server: the request box, the render thread, the HTTP API with a stand-in renderer, and the access checks
against requests from anyone but the printed page (token, Host, Origin, Content-Type, networks, bounds)."""

import base64
import contextlib
import io
import json
import pickle
import socket
import threading
import urllib.error
import urllib.request

import numpy as np
import PIL.Image
import pytest
from helpers import fork_pickle, write_tiny_snapshot

from viz import access
from viz import render as viz_render
from viz import server as viz_server
from viz.view_request import RequestError


class FakeRenderer:
    """Renders a flat image whose red value is the seed; can hold a render until released."""

    def __init__(self):
        self.lock = threading.Lock()
        self.device = 'cpu'
        self.rendered = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def render(self, request):
        self.started.set()
        self.release.wait(10)
        if request.network == 'broken.pkl':
            raise RequestError('"network": broken.pkl: cannot read the network pickle')
        self.rendered.append(request.seed)
        image = np.zeros([4, 6, 3], dtype=np.uint8)
        image[..., 0] = request.seed
        return dict(image=image, width=6, height=4, seq=request.seq, quality=request.quality)

    def export_mesh(self, request, shape_res, mesh_format, level, capture_dir):
        return f'seed{request.seed:04d}{mesh_format}', f'mesh {shape_res} {level:g}'.encode()


@pytest.fixture
def fake():
    return FakeRenderer()


TOKEN = 'test-token-0123456789'
BASE = 'http://127.0.0.1:{port}/'


@contextlib.contextmanager
def serving(renderer, **kwargs):
    srv = viz_server.ViewerServer(renderer, **dict(dict(token=TOKEN, port=0), **kwargs))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def server(fake):
    with serving(fake, networks=['a.pkl', 'b.pkl', 'broken.pkl']) as srv:
        yield srv


def send(srv, path, data=None, headers=None, token=TOKEN):
    """(status, headers, body) of a request as the page sends it (POST with a body); `headers` replace its own."""
    sent = {'Content-Type': 'application/json'} if data is not None else {}
    if token is not None:
        sent['Authorization'] = f'Bearer {token}'
    sent.update(headers or {})
    body = data if isinstance(data, bytes) or data is None else json.dumps(data).encode()
    request = urllib.request.Request(BASE.format(port=srv.server_address[1]) + path, data=body,
                                     method='GET' if data is None else 'POST')
    for name, value in sent.items():
        if value is not None:
            request.add_header(name, value)  # urllib sends Host itself unless one is given here
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def post(srv, path, data, **kwargs):
    return send(srv, path, data, **kwargs)


def refused(answer):
    """(status, message) of a refused request."""
    status, headers, body = answer
    assert headers['Content-Type'] == 'application/json'
    message = json.loads(body)['message']
    assert '\n' not in message
    return status, message


def test_box_keeps_only_the_newest_request():
    box = viz_server.LatestRequestBox()
    first, second = box.put('a'), box.put('b')
    assert first.wait(1) == ('superseded', None)
    assert box.take() is second
    third = box.put('c')
    box.close()
    assert third.wait(1) == ('superseded', None)
    assert box.take() is None


def test_render_api(server):
    assert server.url == f'http://localhost:{server.server_address[1]}/?token={TOKEN}'
    status, headers, body = post(server, 'api/render', dict(seed=7, seq=3))
    answer = json.loads(body)
    assert status == 200 and answer['status'] == 'ok' and answer['seq'] == 3
    assert answer['image'].startswith('data:image/png;base64,')
    with PIL.Image.open(io.BytesIO(base64.b64decode(answer['image'].split(',', 1)[1]))) as img:
        pixels = np.asarray(img)
    assert pixels.shape == (4, 6, 3) and np.all(pixels[..., 0] == 7)


def test_stale_requests_are_never_rendered(server, fake, monkeypatch):
    fake.release.clear()
    answers = {}

    def send(seed):
        answers[seed] = json.loads(post(server, 'api/render', dict(seed=seed, seq=seed))[2])

    first = threading.Thread(target=send, args=(1,))
    first.start()
    assert fake.started.wait(10)  # the render thread is busy with seed 1
    queued = threading.Event()
    put = server.box.put

    def put_and_signal(request):
        ticket = put(request)
        queued.set()
        return ticket
    monkeypatch.setattr(server.box, 'put', put_and_signal)
    later = [threading.Thread(target=send, args=(seed,)) for seed in (2, 3)]
    later[0].start()
    assert queued.wait(10)  # seed 2 waits in the box
    later[1].start()
    later[0].join(10)
    assert answers[2] == dict(status='superseded', seq=2)
    fake.release.set()
    for thread in [first, later[1]]:
        thread.join(10)
    assert answers[1]['status'] == answers[3]['status'] == 'ok'
    assert fake.rendered == [1, 3]


@pytest.mark.parametrize('body, message', [
    (b'{not json', 'the request body is not JSON'),
    (json.dumps(dict(seed=-2)).encode(), '"seed": -2 is outside'),
    (json.dumps([1, 2]).encode(), 'a view request is a JSON object'),
    (json.dumps(dict(network='broken.pkl')).encode(), 'broken.pkl: cannot read the network pickle'),
])
def test_bad_requests_get_one_line_errors(server, body, message):
    status, _headers, answer = post(server, 'api/render', body)
    assert status == 400
    assert message in json.loads(answer)['message']


def test_static_page_and_config(server):
    with urllib.request.urlopen(server.url, timeout=10) as response:  # the printed URL, token in the query
        assert response.headers['Content-Type'].startswith('text/html')
        assert response.headers['X-Frame-Options'] == 'DENY' and response.headers['Referrer-Policy'] == 'no-referrer'
        page = response.read().decode()
    assert '<script src="viewer.js">' in page
    for name in ('viewer.js', 'viewer.css'):  # no secret in them: the page loads them without the token
        status, _headers, body = send(server, name, token=None)
        assert status == 200 and len(body) > 100
    status, _headers, body = send(server, 'api/config')
    assert status == 200 and json.loads(body) == dict(networks=['a.pkl', 'b.pkl', 'broken.pkl'], network='a.pkl',
                                                      device='cpu', allow_any_network=False)
    for path in ('../secret', 'api/other', 'index.htm'):
        assert refused(send(server, path))[0] == 404
    assert refused(send(server, 'api/config', data={}))[0] == 404  # POST where only GET is served


def test_mesh_download(server):
    status, headers, body = post(server, 'api/mesh', dict(seed=5, shape_res=64, format='.obj', level=2.5))
    assert status == 200 and body == b'mesh 64 2.5'
    assert headers['Content-Disposition'] == 'attachment; filename="seed0005.obj"'
    status, _headers, body = post(server, 'api/mesh', dict(seed=5, shape_res='big'))
    assert status == 400 and '"shape_res": expected an integer' in json.loads(body)['message']

# ----------------------------------------------------------------------------
# Requests from anyone but the page the viewer printed (issue: a web page or a rebound host name drove it).

ISSUE_HEADERS = {'Content-Type': 'text/plain', 'Origin': 'http://evil.example', 'Host': 'attacker.example:8765',
                 'Authorization': None}


@pytest.mark.parametrize('token', [TOKEN, None])
@pytest.mark.parametrize('body', [dict(network='/etc/passwd', seed=1), dict(network='http://127.0.0.1:9/x.pkl', seed=1),
                                  dict(seed=1)])
def test_the_issues_requests_are_refused(fake, token, body):
    # The three requests of the issue, as a cross-site page sends them after rebinding its host name to
    # 127.0.0.1; also to a viewer started with --no-token.
    with serving(fake, token=token, networks=['a.pkl']) as srv:
        status, message = refused(post(srv, 'api/render', body, headers=ISSUE_HEADERS))
    assert (status, message) == (403, 'refused: Host "attacker.example:8765" is not an address of this viewer')
    assert fake.rendered == [] and not fake.started.is_set()


@pytest.mark.parametrize('headers, expected', [
    ({'Origin': 'http://evil.example'}, (403, 'refused: Origin "http://evil.example" is not this viewer\'s page')),
    ({'Origin': 'null'}, (403, 'refused: Origin "null" is not this viewer\'s page')),
    ({'Host': 'attacker.example:{port}'}, (403, 'refused: Host "attacker.example:{port}" is not an address of this '
                                                'viewer')),
    ({'Content-Type': 'text/plain'}, (415, 'refused: Content-Type "text/plain" is not application/json')),
    ({'Content-Type': None}, (415, 'refused: Content-Type "application/x-www-form-urlencoded" is not '  # urllib's
                                   'application/json')),
    ({'Authorization': None}, (403, 'refused: missing or wrong token (open the URL with ?token= that visualizer.py '
                                    'printed; scripts send "Authorization: Bearer <token>")')),
    ({'Authorization': 'Bearer test-token-0123456780'}, (403, 'refused: missing or wrong token (open the URL with '
                                                              '?token= that visualizer.py printed; scripts send '
                                                              '"Authorization: Bearer <token>")')),
    ({'Authorization': TOKEN}, (403, 'refused: missing or wrong token (open the URL with ?token= that visualizer.py '
                                     'printed; scripts send "Authorization: Bearer <token>")')),
])
@pytest.mark.parametrize('path', ['api/render', 'api/mesh'])
def test_each_check_refuses_on_its_own(server, fake, headers, expected, path):
    port = server.server_address[1]
    headers = {name: value.format(port=port) if value else value for name, value in headers.items()}
    answer = refused(post(server, path, dict(seed=1), headers=headers))
    assert answer == (expected[0], expected[1].format(port=port))
    assert fake.rendered == []
    assert post(server, path, dict(seed=1))[0] == 200  # the same request from the page


def test_token_for_the_page_and_the_config(server):
    port = server.server_address[1]
    assert send(server, f'?token={TOKEN}', token=None)[0] == 200
    assert send(server, f'index.html?seed=3&token={TOKEN}', token=None)[0] == 200
    for path in ('', '?token=wrong-token-000', 'index.html', f'?token={TOKEN[:-1]}'):
        assert refused(send(server, path, token=None))[0] == 403, path
    assert refused(send(server, 'api/config', token=None))[0] == 403
    assert refused(send(server, f'api/config?token={TOKEN}', token=None))[0] == 403  # API calls: the header only
    assert refused(send(server, f'?token={TOKEN}', token=None, headers={'Host': f'rebound.example:{port}'}))[0] == 403
    assert refused(send(server, 'api/config', headers={'Origin': 'http://evil.example'}))[0] == 403
    assert send(server, 'api/config', headers={'Origin': f'http://127.0.0.1:{port}'})[0] == 200


def test_without_token_only_on_loopback(fake):
    with serving(fake, token=None) as srv:
        assert srv.url == f'http://localhost:{srv.server_address[1]}/'
        assert post(srv, 'api/render', dict(network='a.pkl'), token=None)[0] == 403  # not offered
        with pytest.raises(ValueError, match='0.0.0.0 is not a loopback address'):
            viz_server.ViewerServer(fake, token=None, host='0.0.0.0', port=0)


def test_networks_outside_the_offered_ones(server, fake, tmp_path):
    existing = tmp_path / 'exists.pkl'
    existing.write_bytes(b'not a pickle')
    answers = {refused(post(server, 'api/render', dict(network=name)))
               for name in ('/etc/passwd', str(existing), str(tmp_path / 'missing.pkl'), 'http://127.0.0.1:9/x.pkl',
                            'https://example.com/network.pkl', '../a.pkl')}
    assert answers == {(403, access.NOT_OFFERED)}  # one answer whether the file exists or not
    assert refused(post(server, 'api/mesh', dict(network='/etc/passwd'))) == (403, access.NOT_OFFERED)
    assert fake.rendered == []
    assert post(server, 'api/render', dict(network='b.pkl', seed=4))[0] == 200
    assert fake.rendered == [4]


def test_allow_any_network(fake):
    with serving(fake, networks=['a.pkl'], allow_any_network=True) as srv:
        for seed, name in enumerate(['/etc/passwd', 'http://127.0.0.1:9/x.pkl']):
            assert post(srv, 'api/render', dict(network=name, seed=seed))[0] == 200
        assert json.loads(send(srv, 'api/config')[2])['allow_any_network'] is True
    assert fake.rendered == [0, 1]


def test_browse_dir(fake, tmp_path):
    (tmp_path / 'runs').mkdir()
    (tmp_path / 'runs' / 'one.pkl').write_bytes(b'x')
    (tmp_path / 'outside.pkl').write_bytes(b'x')
    with serving(fake, browse_dir=str(tmp_path / 'runs')) as srv:
        assert json.loads(send(srv, 'api/config')[2])['network'] == str(tmp_path / 'runs' / 'one.pkl')
        (tmp_path / 'runs' / 'two.pkl').write_bytes(b'x')  # written while the viewer runs
        assert post(srv, 'api/render', dict(network=str(tmp_path / 'runs' / 'two.pkl'), seed=2))[0] == 200
        assert post(srv, 'api/render', dict(seed=1))[0] == 200  # the default: the first offered
        for name in ('outside.pkl', 'runs/../outside.pkl', 'runs/three.pkl'):
            assert refused(post(srv, 'api/render', dict(network=str(tmp_path / name)))) == (403, access.NOT_OFFERED)
    assert fake.rendered == [2, 1]


@pytest.mark.parametrize('body, message', [
    (dict(neural_rendering_resolution=257), '"neural_rendering_resolution": 257 is outside [8, 256]'),
    (dict(depth_resolution=129), '"depth_resolution": 129 is outside [2, 128]'),
    (dict(depth_resolution_importance=10**6), '"depth_resolution_importance": 1000000 is outside [0, 128]'),
    (dict(seed=2**32), '"seed": 4294967296 is outside [0, 4294967295]'),
    (b'[' * 60000 + b']' * 60000, 'a request body of 1 to 65536 bytes is expected, got 120000'),
    (b'[' * 30000 + b']' * 30000, 'the request body is not JSON (maximum recursion depth exceeded'),
    (b' ' * 65537, 'a request body of 1 to 65536 bytes is expected, got 65537'),
    (b'', 'a request body of 1 to 65536 bytes is expected, got 0'),
])
def test_bounded_work(server, fake, body, message):
    status, answer = refused(post(server, 'api/render', body))
    assert status == 400 and answer.startswith(message)
    assert fake.rendered == []


@pytest.mark.parametrize('body, message', [
    (dict(shape_res=513), '"shape_res": 513 is outside [8, 512]'),
    (dict(shape_res=4), '"shape_res": 4 is outside [8, 512]'),
    (dict(level=1e7), '"level": 10000000.0 is outside [-1e+06, 1e+06]'),
    (dict(level='nan'), '"level": \'nan\' is outside [-1e+06, 1e+06]'),
    (dict(format='.stl'), '"format": \'.stl\' is not one of .ply, .obj'),
])
def test_bounded_mesh_requests(server, body, message):
    assert refused(post(server, 'api/mesh', dict(seed=1, **body))) == (400, message)


def test_content_length_must_be_a_number(server):
    port = server.server_address[1]
    with socket.create_connection(('127.0.0.1', port), timeout=30) as sock:
        sock.sendall(f'POST /api/render HTTP/1.1\r\nHost: localhost:{port}\r\nAuthorization: Bearer {TOKEN}\r\n'
                     f'Content-Type: application/json\r\nContent-Length: 12abc\r\n\r\n{{}}'.encode())
        answer = sock.makefile('rb').read().decode()
    assert answer.startswith('HTTP/1.0 400 ') and '"Content-Length\\" is not a number' in answer


def test_embedded_code_is_trusted_only_for_command_line_networks(tmp_path):
    # A request names a pickle whose embedded code would run if trusted: it is loaded without trust, refused,
    # and its code never runs, although the viewer trusts the same bytes named on its command line.
    snapshot = write_tiny_snapshot(str(tmp_path / 'plain.pkl'))
    with open(snapshot, 'rb') as f:
        data = pickle.load(f)
    marker = tmp_path / 'FORK_CODE_RAN'
    blob = fork_pickle(data, marker)
    (tmp_path / 'trusted.pkl').write_bytes(blob)
    (tmp_path / 'runs').mkdir()
    (tmp_path / 'runs' / 'named.pkl').write_bytes(blob)
    renderer = viz_render.Renderer(device='cpu', trusted_networks=[str(tmp_path / 'trusted.pkl')])
    for options in (dict(browse_dir=str(tmp_path / 'runs')), dict(allow_any_network=True)):
        with serving(renderer, networks=[str(tmp_path / 'trusted.pkl')], **options) as srv:
            status, message = refused(post(srv, 'api/render', dict(network=str(tmp_path / 'runs' / 'named.pkl'))))
        assert status == 400 and message.startswith(f'"network": {tmp_path / "runs" / "named.pkl"}: ')
        assert 'matches none of this repository\'s modules' in message
        assert not marker.exists()
    with serving(renderer, networks=[str(tmp_path / 'trusted.pkl')]) as srv:
        assert post(srv, 'api/render', dict(output='image_raw', quality='preview'))[0] == 200
    assert marker.exists()  # the command line's copy did load with its code
