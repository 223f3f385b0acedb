"""Snapshot files of a run and the choice of what a resumed run continues from.

A snapshot is a pair: `network-snapshot-*.pkl` (the official format, readable by the official tools) and
`training-state-*.pt` (this project's addition: optimizers, counters, ADA state, random streams), written
in that order, each to a `.tmp-*` name first and renamed into place. The state records the identity of its
pickle (file name, image count, tick, SHA-256 of the bytes), so a pair is consistent only when the state
names the pickle beside it; a run killed between the two writes leaves a pickle that no state vouches for.

Names: the first snapshot within a kimg is `network-snapshot-<kimg:06d>.pkl`; a later
one within the same kimg (only with ticks shorter than 1 kimg) appends its image count within that kimg,
`network-snapshot-<kimg:06d>_<nimg mod 1000:03d>.pkl`, so that no snapshot of a run overwrites another
(and sorting the names keeps the order of writing: '.' sorts before '_').
"""

import hashlib
import json
import os
import pickle
import random
import re

import numpy as np
import torch

import dnnlib

STATE_FORMAT = 'eg3d-training-state'
STATE_VERSION = 2

_SNAPSHOT_RE = re.compile(r'network-snapshot-(\d{6,})(?:_(\d{3}))?\.pkl')
_RUN_DIR_RE = re.compile(r'(\d+)-(.*)')

# Settings that a run continuing another with its full training state may change: resources, bookkeeping,
# length. Everything else recorded in the state has to match for --resume-mode=auto to restore it.
RESOURCE_KEYS = ('run_dir', 'data_loader_kwargs', 'num_gpus', 'batch_gpu', 'metrics', 'total_kimg', 'kimg_per_tick',
                 'image_snapshot_ticks', 'network_snapshot_ticks', 'cudnn_benchmark', 'resume_pkl', 'resume_state',
                 'resume_kimg', 'nan_limit', 'image_grid_size', 'fast_modes')

# Settings that a networks-only resume changes (schedules restart); a full-state resume takes them from
# the state of the run it continues instead.
RESUME_LOOP_KEYS = ('ada_kimg', 'ema_rampup')
RESUME_LOSS_KEYS = ('blur_init_sigma', 'gpc_reg_fade_kimg')


class ResumeError(ValueError):
    """No usable resume source; the message is one line naming the flag and the file."""

#----------------------------------------------------------------------------
# Plain files, written atomically.

def save_json(path, obj, indent=2):
    dnnlib.util.write_atomic(path, lambda f: json.dump(obj, f, indent=indent), binary=False)

class _HashingWriter:
    """File wrapper that hashes everything written through it."""

    def __init__(self, f):
        self._f = f
        self.sha256 = hashlib.sha256()

    def write(self, data):
        self.sha256.update(data)
        return self._f.write(data)

def save_pickle(path, obj) -> str:
    """Pickle `obj` to `path` atomically; returns the SHA-256 (hex) of the bytes written."""
    digest = []

    def write(f):
        writer = _HashingWriter(f)
        pickle.dump(obj, writer)
        digest.append(writer.sha256.hexdigest())
    dnnlib.util.write_atomic(path, write)
    return digest[0]

def file_sha256(path) -> str:
    sha256 = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 22), b''):
            sha256.update(block)
    return sha256.hexdigest()

#----------------------------------------------------------------------------
# Names.

def snapshot_name(cur_nimg: int, previous_nimg=None) -> str:
    """File name of a network snapshot at cur_nimg; previous_nimg is that of the run's previous snapshot."""
    kimg, rest = divmod(int(cur_nimg), 1000)
    if previous_nimg is None or int(previous_nimg) // 1000 != kimg:
        return f'network-snapshot-{kimg:06d}.pkl'
    return f'network-snapshot-{kimg:06d}_{rest:03d}.pkl'

def _parse_snapshot_name(name):
    """(kimg, images within the kimg or -1 for the plain name) of a snapshot file name, else None."""
    match = _SNAPSHOT_RE.fullmatch(name)
    if match is None:
        return None
    return int(match.group(1)), (int(match.group(2)) if match.group(2) is not None else -1)

def state_path_for(snapshot_pkl):
    """training-state-<same suffix>.pt next to network-snapshot-<suffix>.pkl (None for other file names)."""
    directory, name = os.path.split(snapshot_pkl)
    if _SNAPSHOT_RE.fullmatch(name) is None:
        return None
    return os.path.join(directory, 'training-state-' + name[len('network-snapshot-'):-len('.pkl')] + '.pt')

#----------------------------------------------------------------------------
# Training state.

def save_training_state(path, state):
    state = dict(format=STATE_FORMAT, version=STATE_VERSION, **state)
    dnnlib.util.write_atomic(path, lambda f: torch.save(state, f))

def _read_state(path, mmap):
    try:
        state = torch.load(path, map_location='cpu', weights_only=True, mmap=mmap)
    except Exception as err:
        raise ValueError(f'{path}: cannot read the training state ({type(err).__name__}: '
                         f'{" ".join(str(err).split())[:200]})') from None
    if not isinstance(state, dict) or state.get('format') != STATE_FORMAT:
        raise ValueError(f'{path}: not a training-state file written by this project')
    if state.get('version') != STATE_VERSION:
        raise ValueError(f'{path}: training-state version {state.get("version")} is not supported '
                         f'(expected {STATE_VERSION})')
    return state

def load_training_state(path):
    """Load a training-state .pt (tensors and plain Python values only; no code is executed)."""
    return _read_state(path, mmap=False)

def read_state_header(path):
    """The small entries of a state file, 'options' and 'snapshot' (memory-mapped: big files load fast)."""
    state = _read_state(path, mmap=True)
    return dict(options=state.get('options'), snapshot=state.get('snapshot'))

def pickle_identity(pkl_name, sha256, cur_nimg, cur_tick):
    """What a training state records about the network pickle it belongs to."""
    return dict(file=pkl_name, sha256=sha256, nimg=int(cur_nimg), tick=int(cur_tick))

def pair_problem(snapshot_pkl):
    """Why snapshot_pkl and the training state beside it are not a consistent pair (one line), or None."""
    name = os.path.basename(snapshot_pkl)
    state_pt = state_path_for(snapshot_pkl)
    if state_pt is None:
        return f'{name} is not named network-snapshot-*.pkl, so it has no training state'
    if not os.path.isfile(state_pt):
        return f'no {os.path.basename(state_pt)} beside it'
    try:
        identity = read_state_header(state_pt)['snapshot']
    except ValueError as err:
        return str(err)
    if not isinstance(identity, dict) or identity.get('file') != name:
        return f'{os.path.basename(state_pt)} does not name {name} as its network pickle'
    kimg, rest = _parse_snapshot_name(name)
    if identity['nimg'] // 1000 != kimg or rest not in (-1, identity['nimg'] % 1000):
        return f'{os.path.basename(state_pt)} was written at image {identity["nimg"]}, which {name} does not match'
    if file_sha256(snapshot_pkl) != identity['sha256']:
        return f'{name} is not the file that {os.path.basename(state_pt)} was written with (content hash differs)'
    return None

#----------------------------------------------------------------------------
# --resume=latest.

def _same_configuration(run_desc, desc, family):
    return run_desc == desc or (family is not None and family.fullmatch(run_desc) is not None)

def _snapshots_newest_first(outdir, desc, family=None):
    found = []
    for entry in os.listdir(outdir):
        run_match = _RUN_DIR_RE.fullmatch(entry)
        run_dir = os.path.join(outdir, entry)
        if run_match is None or not _same_configuration(run_match.group(2), desc, family) or not os.path.isdir(run_dir):
            continue
        for name in os.listdir(run_dir):
            order = _parse_snapshot_name(name)
            if order is not None:
                found.append(((int(run_match.group(1)), *order), os.path.join(run_dir, name)))
    return [pkl for _order, pkl in sorted(found, reverse=True)]

def find_latest_snapshot(outdir, desc, warn=print, family=None):
    """Newest consistent snapshot pair of the runs `<id>-<desc>` under outdir: (pkl, state_pt), or None.

    `family`, a regex of run descriptions, widens the search to every run it matches (the same configuration
    with another process count or batch: training_options.run_family()).

    Newest = highest run id, then most images. Newer pickles that no state vouches for are skipped with a
    one-line warning. Without any consistent pair, the newest pickle is returned alone, as (pkl, None).
    """
    if not os.path.isdir(outdir):
        return None
    candidates = _snapshots_newest_first(outdir, desc, family)
    for pkl in candidates:
        problem = pair_problem(pkl)
        if problem is None:
            if pkl != candidates[0]:
                warn(f'Warning: --resume=latest: {candidates[0]} has no consistent training state '
                     f'({pair_problem(candidates[0])}); continuing from the newest consistent pair, {pkl}')
            return pkl, state_path_for(pkl)
    if not candidates:
        return None
    warn(f'Warning: --resume=latest: no snapshot under {outdir} has a consistent training state; resuming the '
         f'networks of {candidates[0]} only')
    return candidates[0], None

def remove_stale_temp_files_of(pkl_paths):
    """Clean the folders of the given snapshots of the temporary files that killed writes left there."""
    for directory in sorted({os.path.dirname(os.path.abspath(path)) for path in pkl_paths}):
        for path in dnnlib.util.remove_stale_temp_files(directory):
            print(f'Removed {path} (left by an interrupted write)')

#----------------------------------------------------------------------------
# Resume decision.

def setup_differences(ours: dict, theirs: dict) -> list:
    """Names of the recorded training options in which two runs differ beyond what a continued run may change.

    Both arguments are complete option dicts as training_loop.recorded_options() returns them.
    """
    diffs = []
    for key in sorted(set(ours) | set(theirs)):
        if key in RESOURCE_KEYS or key in RESUME_LOOP_KEYS:
            continue
        a, b = ours.get(key), theirs.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            ignored = RESUME_LOSS_KEYS if key == 'loss_kwargs' else ()
            diffs += [f'{key}.{sub}' for sub in sorted(set(a) | set(b)) if sub not in ignored and a.get(sub) != b.get(sub)]
        elif a != b:
            diffs.append(key)
    return diffs

def describe_family_change(pkl, desc, family):
    """' (written with gpus=8, batch=32; this run has gpus=4, batch=32)' when pkl's run differs from desc, else ''."""
    run_match = _RUN_DIR_RE.fullmatch(os.path.basename(os.path.dirname(pkl)))
    if family is None or run_match is None or run_match.group(2) == desc:
        return ''
    theirs, ours = family.fullmatch(run_match.group(2)).groupdict(), family.fullmatch(desc).groupdict()
    changed = [key for key in ours if ours[key] != theirs[key]]
    return (f' (written with {", ".join(f"{key}={theirs[key]}" for key in changed)}; this run has '
            f'{", ".join(f"{key}={ours[key]}" for key in changed)})')

def choose_resume(resume, outdir, desc, mode, options, dry_run=False, family=None):
    """What `--resume` continues from: (pkl, state_pt or None, state options or None), or None for nothing.

    `options` are the recorded options of the new run (to compare with the state's); `mode` is auto, full or
    networks; `family` widens --resume=latest to runs of the same configuration with another --gpus or --batch
    (find_latest_snapshot()). Raises ResumeError for a source that cannot be used; a dry run only warns about a
    missing file, and removes no temporary files.
    """
    if resume == 'latest':
        if os.path.isdir(outdir) and not dry_run:
            remove_stale_temp_files_of(_snapshots_newest_first(outdir, desc, family))
        found = find_latest_snapshot(outdir, desc, family=family)
        if found is None:
            print(f'--resume=latest: no snapshot of "{desc}" under {outdir}; starting from scratch.')
            return None
        pkl, state_pt = found
        print(f'--resume=latest: {pkl}{describe_family_change(pkl, desc, family)}')
    else:
        pkl, state_pt = resume, None
        if not dnnlib.util.is_url(pkl, allow_file_urls=True):
            if not os.path.isfile(pkl):
                if not dry_run:
                    raise ResumeError(f'--resume: {pkl}: no such file')
                print(f'Warning: --resume: {pkl}: no such file (a real run stops here)')
                return pkl, None, None
            if not dry_run:
                remove_stale_temp_files_of([pkl])
            problem = pair_problem(pkl)
            if problem is None:
                state_pt = state_path_for(pkl)
            elif os.path.isfile(state_path_for(pkl) or ''):
                print(f'Warning: --resume: not restoring the training state beside {pkl}: {problem}')
    if mode == 'full' and state_pt is None:
        raise ResumeError(f'--resume-mode=full: no training-state-KKKKKK.pt next to {pkl} that belongs to it')
    if state_pt is None or mode == 'networks':
        return pkl, None, None

    try:
        theirs = read_state_header(state_pt)['options']
    except ValueError as err:
        raise ResumeError(f'--resume: {err}') from None
    diffs = setup_differences(options, theirs)
    if diffs and mode == 'auto':
        print(f'Not restoring the training state of {pkl}: the training setup differs in {", ".join(diffs)}. '
              f'Resuming the networks only (--resume-mode=full would force it).')
        return pkl, None, None
    if theirs.get('num_gpus') != options.get('num_gpus'):
        print(f'Restoring the training state of {pkl}, written by {theirs.get("num_gpus")} process(es), on '
              f'{options.get("num_gpus")}: optimizers, counters and augmentation continue; the random streams, the '
              f'data order and the per-process buffers start afresh.')
    return pkl, state_pt, theirs

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
