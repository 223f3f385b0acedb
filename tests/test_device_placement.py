"""Multi-GPU hygiene of the training path, by a static scan of its modules.

On an 8-GPU node every rank that touches a bare 'cuda' device (or loads a file without map_location, which
restores tensors onto the GPU they were saved from) allocates on GPU 0 and runs it out of memory. Each rank must
name its own device (torch.device('cuda', local_rank), or a `device` passed in), and every torch.load must map
to the rank's device or the CPU.
"""

import ast
import os

import pytest
from helpers import REPO_ROOT

TRAINING_PATH = ['train.py', 'calc_metrics.py', 'legacy.py', 'camera_utils.py', 'training', 'inference', 'cli', 'torch_utils',
                 'metrics', 'dnnlib']


def _modules():
    for entry in TRAINING_PATH:
        path = os.path.join(REPO_ROOT, entry)
        if os.path.isfile(path):
            yield entry
            continue
        for folder, _dirs, files in os.walk(path):
            for name in sorted(files):
                if name.endswith('.py'):
                    yield os.path.relpath(os.path.join(folder, name), REPO_ROOT)


def _is_bare_cuda(node) -> bool:
    """A literal device string that names no rank's own GPU: 'cuda', or a fixed index like 'cuda:0'."""
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.split(':')[0] == 'cuda'


def _dotted(node) -> str:
    if isinstance(node, ast.Attribute):
        return f'{_dotted(node.value)}.{node.attr}'
    return node.id if isinstance(node, ast.Name) else ''


def device_problems(source: str, filename: str = '<source>') -> list:
    """'file:line: what' for each bare-'cuda' allocation or torch.load without map_location in `source`."""
    problems = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        where = f'{filename}:{node.lineno}'
        keywords = {kw.arg: kw.value for kw in node.keywords}
        if name == 'torch.load' and 'map_location' not in keywords:
            problems.append(f'{where}: torch.load without map_location')
        if name == 'torch.device' and node.args and _is_bare_cuda(node.args[0]) and len(node.args) == 1 and 'index' not in keywords:
            problems.append(f'{where}: torch.device({node.args[0].value!r}) without the rank\'s index')
        if 'device' in keywords and _is_bare_cuda(keywords['device']):
            problems.append(f'{where}: device={keywords["device"].value!r}')
        if isinstance(node.func, ast.Attribute) and node.func.attr == 'to' and any(_is_bare_cuda(arg) for arg in node.args):
            problems.append(f'{where}: .to() a bare CUDA device')
        if isinstance(node.func, ast.Attribute) and node.func.attr == 'cuda' and not node.args and 'device' not in keywords:
            problems.append(f'{where}: .cuda() without a device')
    return problems


@pytest.mark.parametrize('source, expected', [
    ("x = torch.zeros([2], device='cuda')", ["<source>:1: device='cuda'"]),
    ("x = torch.zeros([2], device='cuda:0')", ["<source>:1: device='cuda:0'"]),
    ("d = torch.device('cuda')", ["<source>:1: torch.device('cuda') without the rank's index"]),
    ("m = m.to('cuda')", ['<source>:1: .to() a bare CUDA device']),
    ("m = m.cuda()", ['<source>:1: .cuda() without a device']),
    ("s = torch.load(f, weights_only=True)", ['<source>:1: torch.load without map_location']),
    ("d = torch.device('cuda', local_rank)", []),
    ("d = torch.device('cuda', index=rank)", []),
    ("s = torch.load(f, map_location=device, weights_only=True)", []),
    ("m = m.to(device); m = m.cuda(device)", []),
    ("ok = x.device.type == 'cuda'", []),
    ("y = bias_act(x, impl='cuda')", []),
])
def test_scanner(source, expected):
    assert device_problems(source) == expected


def test_training_path_names_its_devices():
    problems = []
    for relpath in _modules():
        with open(os.path.join(REPO_ROOT, relpath), encoding='utf-8') as f:
            problems += device_problems(f.read(), relpath)
    assert problems == []
