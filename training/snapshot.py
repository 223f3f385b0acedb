"""Crash-safe run files: atomic writes, the full training state stored next to each network snapshot, and
the lookup behind `train.py --resume=latest`.

A snapshot pair is `network-snapshot-KKKKKK.pkl` (the original format, readable by the original tools) and
`training-state-KKKKKK.pt` (this project's addition, written after the pickle, so a state file implies a
complete pickle). Every file goes to a temporary name in the destination folder first and is renamed into
place, so a crash never leaves a truncated file under a final name.
"""

import json
import os
import pickle
import random
import re

import numpy as np
import torch

import dnnlib

STATE_FORMAT = 'eg3d-training-state'
STATE_VERSION = 1

_SNAPSHOT_RE = re.compile(r'network-snapshot-(\d+)\.pkl')
_RUN_DIR_RE = re.compile(r'(\d+)-(.*)')

#----------------------------------------------------------------------------
# Atomic writes.

def save_pickle(path, obj):
    dnnlib.util.write_atomic(path, lambda f: pickle.dump(obj, f))

def save_json(path, obj, indent=2):
    dnnlib.util.write_atomic(path, lambda f: json.dump(obj, f, indent=indent), binary=False)

def save_png(path, pil_image):
    dnnlib.util.write_atomic(path, lambda f: pil_image.save(f, format='PNG'))

#----------------------------------------------------------------------------
# Snapshot naming and lookup.

def snapshot_name(cur_nimg):
    return f'network-snapshot-{cur_nimg // 1000:06d}.pkl'

def state_path_for(snapshot_pkl):
    """training-state-KKKKKK.pt next to network-snapshot-KKKKKK.pkl (None for other file names)."""
    directory, name = os.path.split(snapshot_pkl)
    match = _SNAPSHOT_RE.fullmatch(name)
    if match is None:
        return None
    return os.path.join(directory, f'training-state-{match.group(1)}.pt')

def find_latest_snapshot(outdir, desc):
    """Newest snapshot of the runs `<id>-<desc>` under outdir, as (pkl, state_pt or None), or None.

    Newest = highest run id, then highest kimg. A snapshot with its training state wins over newer ones
    without (a run killed between writing the pickle and the state leaves such a pickle behind).
    """
    if not os.path.isdir(outdir):
        return None
    complete, partial = [], []
    for entry in os.listdir(outdir):
        run_match = _RUN_DIR_RE.fullmatch(entry)
        run_dir = os.path.join(outdir, entry)
        if run_match is None or run_match.group(2) != desc or not os.path.isdir(run_dir):
            continue
        for fname in os.listdir(run_dir):
            snap_match = _SNAPSHOT_RE.fullmatch(fname)
            if snap_match is None:
                continue
            pkl = os.path.join(run_dir, fname)
            key = (int(run_match.group(1)), int(snap_match.group(1)))
            state = state_path_for(pkl)
            (complete if os.path.isfile(state) else partial).append((key, pkl, state))
    candidates = complete or partial
    if not candidates:
        return None
    _key, pkl, state = max(candidates)
    return pkl, (state if os.path.isfile(state) else None)

#----------------------------------------------------------------------------
# Training state file.

def save_training_state(path, state):
    state = dict(format=STATE_FORMAT, version=STATE_VERSION, **state)
    dnnlib.util.write_atomic(path, lambda f: torch.save(state, f))

def load_training_state(path):
    """Load a training-state .pt (tensors and plain Python values only; no code is executed)."""
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:
        raise ValueError(f'{path}: cannot read the training state ({type(err).__name__}: '
                         f'{" ".join(str(err).split())[:200]})') from None
    if not isinstance(state, dict) or state.get('format') != STATE_FORMAT:
        raise ValueError(f'{path}: not a training-state file written by this project')
    if state.get('version') != STATE_VERSION:
        raise ValueError(f'{path}: training-state version {state.get("version")} is not supported '
                         f'(expected {STATE_VERSION})')
    return state

def read_state_options(path):
    """Just the training options stored in a state file (memory-mapped, so large files load fast)."""
    try:
        state = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except Exception as err:
        raise ValueError(f'{path}: cannot read the training state ({type(err).__name__})') from None
    if not isinstance(state, dict) or state.get('format') != STATE_FORMAT:
        raise ValueError(f'{path}: not a training-state file written by this project')
    return state['options']

#----------------------------------------------------------------------------
# Random number generator states, as plain values that torch.load(weights_only=True) accepts.

def capture_rng_state(device):
    np_state = np.random.get_state()
    return dict(
        python  = random.getstate(),
        numpy   = dict(name=np_state[0], keys=torch.from_numpy(np_state[1].astype(np.int64)), pos=int(np_state[2]),
                       has_gauss=int(np_state[3]), cached_gaussian=float(np_state[4])),
        torch   = torch.get_rng_state(),
        cuda    = torch.cuda.get_rng_state(device) if device.type == 'cuda' else None,
    )

def restore_rng_state(state, device):
    random.setstate(state['python'])
    np_state = state['numpy']
    np.random.set_state((np_state['name'], np_state['keys'].numpy().astype(np.uint32), np_state['pos'],
                         np_state['has_gauss'], np_state['cached_gaussian']))
    torch.set_rng_state(state['torch'])
    if device.type == 'cuda' and state['cuda'] is not None:
        torch.cuda.set_rng_state(state['cuda'], device)

#----------------------------------------------------------------------------
