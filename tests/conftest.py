"""Fixtures of the whole suite; shared helper functions and paths are in tests/helpers.py."""

import os
import types

import pytest


@pytest.fixture(autouse=True, scope='session')
def _torch_threads():
    # One thread per test process unless OMP_NUM_THREADS says otherwise: pytest-xdist runs one process per
    # core, and oversubscribed cores slow the suite several-fold.
    import torch
    torch.set_num_threads(max(1, int(os.environ.get('OMP_NUM_THREADS') or 1)))
    yield


@pytest.fixture
def call_main(capsys):
    """Run a script's main(argv) in this process (faster than a subprocess): exit code and captured output."""
    def call(main, *args):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code
        captured = capsys.readouterr()
        return types.SimpleNamespace(returncode=code, stdout=captured.out, stderr=captured.err)
    return call


@pytest.fixture
def restore_determinism(monkeypatch):
    """Undo the process-wide switches of torch_utils.misc.make_deterministic() (--deterministic) after a test."""
    import torch
    monkeypatch.delenv('CUBLAS_WORKSPACE_CONFIG', raising=False)
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[2:]
