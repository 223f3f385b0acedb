"""visualizer.py: command-line errors, and the whole viewer end to end in headless Chromium."""

import base64
import io
import json
import re
import shutil
import subprocess
import urllib.request

import numpy as np
import PIL.Image
import pytest
import torch
from helpers import running_viewer, write_tiny_snapshot

import visualizer

BROWSERS = ('chromium', 'chromium-browser', 'google-chrome')


@pytest.fixture(scope='module')
def snapshot(tmp_path_factory):
    return write_tiny_snapshot(str(tmp_path_factory.mktemp('net') / 'network-snapshot-000000.pkl'))


def test_bad_network_is_one_line(call_main, tmp_path):
    missing = str(tmp_path / 'missing.pkl')
    result = call_main(visualizer.main, f'--network={missing}', '--port=0')
    assert result.returncode == 1
    assert result.stderr.startswith('Error: ') and missing in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_flags(call_main, tmp_path):
    result = call_main(visualizer.main, '--port=70000')
    assert result.returncode == 2 and "Invalid value for '--port'" in result.stderr
    result = call_main(visualizer.main, '--token=short')
    assert result.returncode == 2
    assert "Invalid value for '--token' (env var: 'EG3D_VIEWER_TOKEN'): expected 8 to 256 characters" in result.stderr
    result = call_main(visualizer.main, '--no-token', '--host=0.0.0.0')
    assert result.returncode == 2
    assert 'Invalid value for --host: 0.0.0.0 is not a loopback address; --no-token is allowed only on one' \
        in result.stderr
    result = call_main(visualizer.main, '--no-token', '--token=0123456789')
    assert result.returncode == 2 and '--token and --no-token exclude each other' in result.stderr
    result = call_main(visualizer.main, f'--browse-dir={tmp_path / "nowhere"}')
    assert result.returncode == 2 and 'not a directory' in result.stderr
    if not torch.cuda.is_available():
        result = call_main(visualizer.main, '--device=cuda')
        assert result.returncode == 2 and 'CUDA is not available' in result.stderr


@pytest.fixture(scope='module')
def viewer(snapshot):
    """visualizer.py serving the tiny snapshot; yields the page URL with its token."""
    with running_viewer(f'--network={snapshot}') as (url, _output):
        yield url


def test_printed_url_carries_a_new_token(viewer, snapshot):
    match = re.fullmatch(r'http://localhost:(\d+)/\?token=([\w-]{40,})', viewer)
    assert match, viewer
    with running_viewer(f'--network={snapshot}', '--token=my-fixed-token') as (url, _output):
        assert url.endswith('/?token=my-fixed-token')
    with running_viewer(f'--network={snapshot}', env={visualizer.TOKEN_ENV: 'from-the-environment'}) as (url, _output):
        assert url.endswith('/?token=from-the-environment')
    with running_viewer(f'--network={snapshot}', '--no-token') as (url, output):
        assert re.fullmatch(r'http://localhost:\d+/', url)
        assert 'WARNING: --no-token: every program of every user on this machine can drive this viewer' in output


def _dump_dom(browser, url, profile_dir):
    # --no-sandbox: the sandbox refuses to start as root (CI containers); the page is our own.
    command = [browser, '--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run',
               f'--user-data-dir={profile_dir}', '--virtual-time-budget=60000', '--dump-dom', url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _shown_frame(dom):
    """(body data-* attributes, the frame on screen as an array) of a dumped page."""
    body = dict(re.findall(r'data-([\w-]+)="([^"]*)"', re.search(r'<body[^>]*>', dom).group(0)))
    source = re.search(r'<img id="frame"[^>]*src="data:image/png;base64,([^"]+)"', dom)
    assert source, f'no frame on the page (body state: {body})'
    with PIL.Image.open(io.BytesIO(base64.b64decode(source.group(1)))) as img:
        return body, np.asarray(img.convert('RGB'))


@pytest.mark.slow
def test_page_in_headless_chromium(viewer, tmp_path):
    base, token = viewer.split('?token=')
    request = urllib.request.Request(base + 'api/config', headers={'Authorization': f'Bearer {token}'})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.load(response)['network'].endswith('network-snapshot-000000.pkl')
    browser = next((path for path in map(shutil.which, BROWSERS) if path), None)
    if browser is None:
        pytest.skip('no chromium on this machine (apt-get install chromium), so the page is not tested in a browser')

    frames = {}
    for seed in (1, 2):
        body, frames[seed] = _shown_frame(_dump_dom(browser, f'{viewer}&seed={seed}&yaw=15', tmp_path / 'profile'))
        assert body['state'] == 'ready' and body['quality'] == 'full' and body['seed'] == str(seed), body
        assert frames[seed].shape == (128, 128, 3)
        assert frames[seed].std() > 5  # not blank
    assert np.abs(frames[1].astype(int) - frames[2].astype(int)).mean() > 1  # the seed changes the frame
