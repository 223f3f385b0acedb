"""visualizer.py: command-line errors, and the whole viewer end to end in headless Chromium."""

import base64
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import REPO_ROOT
from test_gen_samples import write_tiny_snapshot

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
    result = call_main(visualizer.main, f'--browse-dir={tmp_path / "nowhere"}')
    assert result.returncode == 2 and 'not a directory' in result.stderr
    if not torch.cuda.is_available():
        result = call_main(visualizer.main, '--device=cuda')
        assert result.returncode == 2 and 'CUDA is not available' in result.stderr


@contextlib.contextmanager
def serving(args, env=None, cwd=REPO_ROOT):
    """Run `python visualizer.py ARGS` (with --port=0 among them) until its URL is printed; yields the URL."""
    env = dict(env or os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    process = subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, 'visualizer.py'), *args], cwd=cwd, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            match = re.search(r'open (http://\S+) in a browser', line)
            if match:
                break
        assert match, ''.join(lines)
        yield match.group(1)
    finally:
        process.terminate()
        process.wait(30)


@pytest.fixture(scope='module')
def viewer(snapshot):
    """visualizer.py serving the tiny snapshot on a free local port; yields the page URL."""
    with serving([f'--network={snapshot}', '--port=0', '--device=cpu']) as url:
        yield url


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
    with urllib.request.urlopen(viewer + 'api/config', timeout=30) as response:
        assert json.load(response)['network'].endswith('network-snapshot-000000.pkl')
    browser = next((path for path in map(shutil.which, BROWSERS) if path), None)
    if browser is None:
        pytest.skip('no chromium on this machine (apt-get install chromium), so the page is not tested in a browser')

    frames = {}
    for seed in (1, 2):
        body, frames[seed] = _shown_frame(_dump_dom(browser, f'{viewer}?seed={seed}&yaw=15', tmp_path / 'profile'))
        assert body['state'] == 'ready' and body['quality'] == 'full' and body['seed'] == str(seed), body
        assert frames[seed].shape == (128, 128, 3)
        assert frames[seed].std() > 5  # not blank
    assert np.abs(frames[1].astype(int) - frames[2].astype(int)).mean() > 1  # the seed changes the frame
