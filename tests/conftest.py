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
