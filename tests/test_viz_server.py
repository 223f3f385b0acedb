"""viz.server: the single-slot request box, the render thread and the HTTP API, with a stand-in renderer."""

import base64
import io
import json
import threading
import urllib.error
import urllib.request

import numpy as np
import PIL.Image
import pytest

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


@pytest.fixture
def server(fake):
    srv = viz_server.ViewerServer(fake, port=0, networks=['a.pkl', 'b.pkl'])
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def post(srv, path, data):
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    request = urllib.request.Request(srv.url + path, data=body, method='POST')
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


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
    assert server.url.startswith('http://localhost:')
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
    with urllib.request.urlopen(server.url, timeout=10) as response:
        assert response.headers['Content-Type'].startswith('text/html')
        page = response.read().decode()
    assert '<script src="viewer.js">' in page
    for name in ('viewer.js', 'viewer.css'):
        with urllib.request.urlopen(server.url + name, timeout=10) as response:
            assert response.status == 200 and len(response.read()) > 100
    with urllib.request.urlopen(server.url + 'api/config', timeout=10) as response:
        assert json.load(response) == dict(networks=['a.pkl', 'b.pkl'], network='a.pkl', device='cpu')
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(server.url + '../secret', timeout=10)
    assert info.value.code == 404


def test_mesh_download(server):
    status, headers, body = post(server, 'api/mesh', dict(seed=5, shape_res=64, format='.obj', level=2.5))
    assert status == 200 and body == b'mesh 64 2.5'
    assert headers['Content-Disposition'] == 'attachment; filename="seed0005.obj"'
    status, _headers, body = post(server, 'api/mesh', dict(seed=5, shape_res='big'))
    assert status == 400 and '"shape_res": expected a number' in json.loads(body)['message']
