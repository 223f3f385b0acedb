"""Checks that dataset.json camera labels follow EG3D's conventions, and summarises where the cameras are.

A label is 25 numbers: cam2world (4x4, OpenCV axes: x right, y down, z = viewing direction, last
column = camera centre) then the intrinsics divided by the image size (3x3). The summary tells at a
glance whether a dataset matches EG3D's setup, e.g. FFHQ/AFHQ: cameras 2.7 from the origin looking
at a point near (0, 0, 0.2), focal 4.2647, principal point (0.5, 0.5).

Used by `dataset_tool.py --check-only --source=...` (standalone check) and before every conversion;
check_rendering_fit() compares the cameras with a rendering config (`--cfg`, and train.py before a run).
This module also holds the dataset.json parser and DatasetError (re-exported by training.dataset); it
does not import torch, so dataset_tool.py starts quickly.
"""

import contextlib
import dataclasses
import io
import json
import os
import struct
import zipfile

import numpy as np
import PIL.Image

from training.cameras import FOCAL_FFHQ, FOCAL_SHAPENET, LABEL_DIM, PRESET_FOCAL

# How far the rendering options may be from the measured cameras before check_rendering_fit() warns.
RADIUS_TOL = 0.05       # avg_camera_radius, relative to the median camera distance.
PIVOT_TOL = 0.05        # avg_camera_pivot, in units of the median camera distance.
FOCAL_TOL = 0.02        # The preset's focal length, relative.
RAY_TOL = 0.1           # ray_start/ray_end, in units of the box size (box_warp).

#----------------------------------------------------------------------------

class DatasetError(IOError):
    """A dataset problem worth one line to the user: the message names the file and what is wrong."""

#----------------------------------------------------------------------------

def file_ext(path):
    return os.path.splitext(path)[1].lower()

def is_image_name(path):
    PIL.Image.init()
    return file_ext(path) in PIL.Image.EXTENSION

def is_number_list(value):
    """True for a JSON list of plain numbers (no bools, strings or nested lists)."""
    return type(value) is list and set(map(type, value)) <= {int, float}

def parse_dataset_json(data, where):
    """Parse the text of a dataset.json. Returns a list of [name, label] pairs, or None for `labels: null`."""
    try:
        meta = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(f'{where}: malformed JSON ({exc})') from None
    if not isinstance(meta, dict) or 'labels' not in meta:
        raise DatasetError(f'{where}: expected a JSON object with a "labels" member')
    labels = meta['labels']
    if labels is None:
        return None
    if not isinstance(labels, list):
        raise DatasetError(f'{where}: "labels" must be null or a list of [file name, label] pairs')
    for i, entry in enumerate(labels):
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise DatasetError(f'{where}: labels[{i}] is not a [file name, label] pair: {json.dumps(entry)[:80]}')
    return labels

#----------------------------------------------------------------------------

@dataclasses.dataclass
class CameraReport:
    errors: list            # Lines describing labels EG3D cannot use as they are.
    warnings: list          # Lines describing likely mistakes (coverage, duplicates, conventions).
    summary: list           # Lines describing the camera distribution.
    stats: dict             # Numbers behind the summary (for tests and scripts).
    where: str = 'dataset.json'     # The labels' file, for messages.
    cam2world: np.ndarray = None    # [N, 4, 4] of the well-formed labels (None if there are none).
    intrinsics: np.ndarray = None   # [N, 3, 3] of the same labels.

    @property
    def ok(self):
        return len(self.errors) == 0

    def format(self):
        lines = [f'Error: {line}' for line in self.errors] + [f'Warning: {line}' for line in self.warnings]
        return '\n'.join(lines + self.summary)

#----------------------------------------------------------------------------

def listing(names, max_listed):
    """'a, b, c, ... (N more)': the first max_listed names of a list, for one-line messages."""
    shown = ', '.join(str(name) for name in names[:max_listed])
    return shown + (f', ... ({len(names) - max_listed} more)' if len(names) > max_listed else '')

def _stats(values):
    return dict(min=float(np.min(values)), median=float(np.median(values)), max=float(np.max(values)))

def _fmt(stats, digits=3):
    return ', '.join(f'{key} {value:.{digits}f}' for key, value in stats.items())

def _vec(v):
    return '(' + ', '.join(f'{round(x, 3) + 0.0:.3f}' for x in v) + ')'  # + 0.0 avoids printing -0.000

def least_squares_focus(centers, dirs):
    """The point with the smallest summed squared distance to all optical axes (None if they are parallel)."""
    proj = np.eye(3)[None] - dirs[:, :, None] * dirs[:, None, :]    # Projections orthogonal to each axis.
    lhs = proj.sum(axis=0)
    rhs = np.einsum('nij,nj->i', proj, centers)
    if np.linalg.cond(lhs) > 1e6:
        return None
    return np.linalg.solve(lhs, rhs)

#----------------------------------------------------------------------------

#----------------------------------------------------------------------------

def check_camera_labels(labels, image_names=None, where='dataset.json', max_listed=5, rot_tol=1e-3, pp_tol=0.05):
    """Validate dataset.json label pairs [[name, label], ...] as EG3D cameras.

    image_names: relative '/'-separated names of the images present, or None to skip the coverage checks.
    """
    errors, warnings, summary, stats = [], [], [], {}
    report = CameraReport(errors=errors, warnings=warnings, summary=summary, stats=stats, where=where)
    if labels is None:
        errors.append(f'{where}: "labels" is null; EG3D needs a 25-number camera label per image')
        return report
    _check_coverage(labels, image_names, where, max_listed, warnings)
    stats['num_labels'] = len(labels)
    names, arr = _well_formed_labels(labels, where, max_listed, errors)
    if not names:
        return report
    pose = arr[:, :16].reshape(-1, 4, 4)
    intr = arr[:, 16:].reshape(-1, 3, 3)
    report.cam2world, report.intrinsics = pose, intr

    def flag(mask, message, into=errors):
        if mask.any():
            bad = [name for name, m in zip(names, mask) if m]
            into.append(f'{where}: {len(bad)} label(s) {message}: {listing(bad, max_listed)}')

    _check_matrices(pose, intr, flag, rot_tol, pp_tol, warnings)
    _describe_cameras(pose, intr, where, stats, summary, warnings)
    return report


def _check_coverage(labels, image_names, where, max_listed, warnings):
    """Warnings for duplicate names, images without labels and labels without images."""
    names = [name for name, _label in labels]
    seen, dups = set(), {}
    for name in names:
        if name in seen:
            dups[name] = None  # Ordered set.
        seen.add(name)
    dups = list(dups)
    if dups:
        warnings.append(f'{where}: {len(dups)} file name(s) listed more than once (the last label wins): {listing(dups, max_listed)}')
    if image_names is not None:
        image_set = set(image_names)
        unlabeled = [name for name in image_names if name not in seen]
        orphans = [name for name in dict.fromkeys(names) if name not in image_set]
        if unlabeled:
            warnings.append(f'{where}: {len(unlabeled)} of {len(image_names)} image(s) have no label: {listing(unlabeled, max_listed)}')
        if orphans:
            warnings.append(f'{where}: {len(orphans)} label(s) name no existing image: {listing(orphans, max_listed)}')


def _well_formed_labels(labels, where, max_listed, errors):
    """(names, float64 [N, 25] array) of the labels that are 25 finite numbers; errors for the others."""
    label_of = dict(labels)
    names = list(label_of)
    bad_type = [name for name in names if not is_number_list(label_of[name])]
    if bad_type:
        errors.append(f'{where}: {len(bad_type)} label(s) are not lists of numbers (class indices?): {listing(bad_type, max_listed)}')
    bad_set = set(bad_type)
    listed = [name for name in names if name not in bad_set]
    bad_len = [name for name in listed if len(label_of[name]) != LABEL_DIM]
    if bad_len:
        first = bad_len[0]
        errors.append(f'{where}: {len(bad_len)} label(s) do not have {LABEL_DIM} numbers (e.g. {first} has '
                      f'{len(label_of[first])}): {listing(bad_len, max_listed)}')
    names = [name for name in listed if len(label_of[name]) == LABEL_DIM]
    arr = np.array([label_of[name] for name in names], dtype=np.float64).reshape(-1, LABEL_DIM)
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        bad = [name for name, ok in zip(names, finite) if not ok]
        errors.append(f'{where}: {len(bad)} label(s) contain NaN or infinity: {listing(bad, max_listed)}')
        names = [name for name, ok in zip(names, finite) if ok]
        arr = arr[finite]
    return names, arr


def _check_matrices(pose, intr, flag, rot_tol, pp_tol, warnings):
    """Errors for malformed cam2world matrices and intrinsics; a warning for an off-centre principal point."""
    rot = pose[:, :3, :3]
    flag(np.abs(pose[:, 3] - [0, 0, 0, 1]).max(axis=1) > 1e-4, 'have a cam2world bottom row other than 0 0 0 1')
    ortho_err = np.abs(np.einsum('nji,njk->nik', rot, rot) - np.eye(3)).max(axis=(1, 2))
    flag(ortho_err > rot_tol, f'have a rotation that is not orthonormal (max |R^T R - I| = {ortho_err.max():.3g})')
    det = np.linalg.det(rot)
    flag((ortho_err <= rot_tol) & (det < 0), 'have a rotation with determinant -1 (a reflection; one axis flipped?)')

    fx, fy, cx, cy = intr[:, 0, 0], intr[:, 1, 1], intr[:, 0, 2], intr[:, 1, 2]
    flag(np.abs(intr[:, 2] - [0, 0, 1]).max(axis=1) > 1e-6, 'have an intrinsics bottom row other than 0 0 1')
    flag(np.abs(intr[:, 1, 0]) > 1e-6, 'have a non-zero intrinsics entry (1, 0)')
    flag((fx <= 0) | (fy <= 0), 'have a focal length <= 0')
    pixels = (np.abs(cx) > 2) | (np.abs(cy) > 2) | (fx > 100) | (fy > 100)
    flag(pixels, 'have intrinsics in pixels: divide the first row by the image width and the second by the height')
    off_center = ~pixels & ((np.abs(cx - 0.5) > pp_tol) | (np.abs(cy - 0.5) > pp_tol))
    flag(off_center, f'have a principal point more than {pp_tol} from (0.5, 0.5) (mirror_dataset.py assumes 0.5)', warnings)


def _describe_cameras(pose, intr, where, stats, summary, warnings):
    """Where the cameras are and where they look: statistics, summary lines, and convention warnings."""
    rot, centers = pose[:, :3, :3], pose[:, :3, 3]
    fx, fy, cx, cy = intr[:, 0, 0], intr[:, 1, 1], intr[:, 0, 2], intr[:, 1, 2]
    dist = np.linalg.norm(centers, axis=1)
    dirs = rot[:, :, 2] / np.maximum(np.linalg.norm(rot[:, :, 2], axis=1, keepdims=True), 1e-12)
    along = np.einsum('ni,ni->n', centers, dirs)
    miss = np.linalg.norm(centers - along[:, None] * dirs, axis=1)     # Distance of each optical axis to the origin.
    toward = along < 0                                                  # Origin in front of the camera.
    focus = least_squares_focus(centers, dirs)
    up = -rot[:, :, 1].mean(axis=0)                                     # Image up (-y) in world coordinates.
    stats.update(num_cameras=len(pose), distance=_stats(dist), axis_miss=_stats(miss),
                 frac_toward_origin=float(toward.mean()), focus=None if focus is None else focus.tolist(),
                 fx=_stats(fx), fy=_stats(fy), cx=_stats(cx), cy=_stats(cy), mean_up=up.tolist())

    summary.append(f'Cameras: {len(pose)} valid label(s)')
    summary.append(f'  distance to origin:          {_fmt(stats["distance"])}')
    summary.append(f'  optical axis to origin:      {_fmt(stats["axis_miss"])} (closest approach)')
    summary.append(f'  looking toward the origin:   {100 * toward.mean():.1f}%')
    summary.append(f'  common look-at point:        {"undefined (parallel axes)" if focus is None else _vec(focus)}')
    summary.append(f'  mean image-up direction:     {_vec(up)}')
    summary.append(f'  focal fx, fy (normalised):   {np.median(fx):.4f}, {np.median(fy):.4f} (median); '
                   f'principal point {np.median(cx):.4f}, {np.median(cy):.4f}')
    summary.append('  for comparison, EG3D FFHQ/AFHQ: distance 2.7, looking at about (0, 0, 0.2), image-up ~ +y, '
                   f'focal {FOCAL_FFHQ}, principal point 0.5; ShapeNet cars: SRN cameras on a sphere around the origin, '
                   f'looking at it, focal about {FOCAL_SHAPENET:.1f}')
    yaw, pitch = yaw_pitch_degrees(centers)
    summary.extend(text_histogram(yaw, 'yaw (degrees; 0 = camera on the +z axis, + = toward +x)'))
    summary.extend(text_histogram(pitch, 'pitch (degrees of elevation above the x-z plane; + = above)'))

    # Conventions that commonly go wrong.
    if toward.mean() < 0.5 and np.median(miss) < 0.5 * np.median(dist):
        warnings.append(f'{where}: {100 * (1 - toward.mean()):.0f}% of the cameras look away from the origin: '
                        'OpenGL/Blender poses (camera looks along -z, y up)? EG3D uses OpenCV axes: '
                        'multiply each rotation by diag(1, -1, -1)')
    spread = np.linalg.norm(centers - centers.mean(axis=0), axis=1).max()
    rot_spread = np.abs(rot - rot[:1]).max()
    if len(pose) > 1 and spread < 1e-3 * max(np.median(dist), 1e-6) and rot_spread > 1e-2:
        warnings.append(f'{where}: all cameras sit at {_vec(centers.mean(axis=0))} while their rotations differ: '
                        'world-to-camera matrices? EG3D needs cam2world (invert each 4x4 matrix)')

def yaw_pitch_degrees(centers):
    """Yaw and pitch (degrees) of camera centres [N, 3] seen from the origin, as LookAtPoseSampler places them:
    yaw = horizontal - 90, pitch = elevation above the x-z plane."""
    yaw = np.degrees(np.arctan2(centers[:, 0], centers[:, 2]))
    pitch = np.degrees(np.arctan2(centers[:, 1], np.hypot(centers[:, 0], centers[:, 2])))
    return yaw, pitch

HISTOGRAM_STEPS = (1, 2, 5, 10, 15, 30, 45, 90)     # Bin widths (degrees) to choose from.

def text_histogram(values, title, max_bins=12, width=30):
    """Lines of a text histogram of angles in degrees, with round bin edges and at most max_bins bins."""
    lo_value, hi_value = float(np.min(values)), float(np.max(values))
    for step in HISTOGRAM_STEPS:
        lo, hi = np.floor(lo_value / step) * step, np.ceil(hi_value / step) * step
        if hi == hi_value and (hi - lo) / step < max_bins:
            hi += step      # The largest value on an edge gets the bin it starts, when there is room.
        if (hi - lo) / step <= max_bins:
            break
    edges = np.arange(lo, hi + step / 2, step)
    counts, _ = np.histogram(values, bins=edges)
    lines = [f'  {title}:']
    for left, right, count in zip(edges[:-1], edges[1:], counts):
        bar = '#' * (max(1, round(width * count / counts.max())) if count else 0)
        lines.append(f'    {left:5.0f} to {right:4.0f}  {bar:<{width}} {count}')
    return lines

#----------------------------------------------------------------------------
# Do the rendering options (a preset or a config file) fit the cameras?

def check_rendering_fit(report, options, preset=None):
    """Warning lines where the rendering options do not fit the cameras of a CameraReport.

    options: resolved rendering options (ray_start, ray_end, box_warp, avg_camera_radius, avg_camera_pivot);
    preset: the preset they come from (or a config file's base), whose focal length the generation scripts
    use, or None to skip the focal check. Each line names the option and the value that would fit.
    """
    if report.cam2world is None or len(report.cam2world) == 0:
        return []
    where, centers = report.where, report.cam2world[:, :3, 3]
    dist = np.linalg.norm(centers, axis=1)
    radius = float(np.median(dist))
    lines = []

    avg_radius = options['avg_camera_radius']
    if abs(avg_radius - radius) > RADIUS_TOL * radius:
        lines.append(f'{where}: avg_camera_radius {avg_radius:g} differs from the cameras\' distance to the origin '
                     f'(median {radius:.3f}): avg_camera_radius={radius:.3g} would fit')

    focus = report.stats.get('focus')
    pivot = np.asarray(options['avg_camera_pivot'], dtype=np.float64)
    if focus is not None and np.linalg.norm(pivot - focus) > PIVOT_TOL * radius:
        fit = ', '.join(f'{round(v, 2) + 0.0:g}' for v in focus)
        lines.append(f'{where}: avg_camera_pivot {_vec(pivot)} is {np.linalg.norm(pivot - focus):.3f} away from the '
                     f'point the cameras look at {_vec(focus)}: avg_camera_pivot=[{fit}] would fit')

    if options['ray_start'] != 'auto':
        lines.extend(_ray_range_fit(where, dist, options))

    focal = PRESET_FOCAL.get(preset)
    measured = float(np.median(report.intrinsics[:, [0, 1], [0, 1]]))
    if focal is not None and abs(measured - focal) > FOCAL_TOL * focal:
        fitting = [name for name, value in PRESET_FOCAL.items() if abs(measured - value) <= FOCAL_TOL * value]
        fit = f'a config based on {" or ".join(fitting)}' if fitting else f'focal {measured:.4f}'
        lines.append(f'{where}: focal length {measured:.4f} (median) differs from the {preset} preset\'s {focal:g}, '
                     f'which its released networks were trained with: {fit} would fit')
    return lines

def _ray_range_fit(where, dist, options):
    """ray_start/ray_end against the depths at which each camera sees the ball inscribed in the box.

    The ball stands for the box: the box corners are empty space that the released presets clip."""
    ball = options['box_warp'] / 2
    near, far = np.maximum(dist - ball, 0), dist + ball
    tol = RAY_TOL * options['box_warp']
    start, end = options['ray_start'], options['ray_end']
    lines = []
    clipped = near < start - tol
    if clipped.any():
        fit = np.floor(near.min() * 100 + 1e-6) / 100
        lines.append(f'{where}: ray_start {start:g} starts past the front of the box for {clipped.sum()} of '
                     f'{len(dist)} cameras (nearest {near.min():.3f} away): ray_start={fit:g} would fit '
                     f'(or ray_start and ray_end "auto")')
    clipped = far > end + tol
    if clipped.any():
        fit = np.ceil(far.max() * 100 - 1e-6) / 100
        lines.append(f'{where}: ray_end {end:g} stops short of the back of the box for {clipped.sum()} of '
                     f'{len(dist)} cameras (farthest {far.max():.3f} away): ray_end={fit:g} would fit '
                     f'(or ray_start and ray_end "auto")')
    return lines

#----------------------------------------------------------------------------

@contextlib.contextmanager
def open_container(path):
    """Yields (sorted image names, dataset.json bytes or None, opener(name) -> file) for a dataset folder or zip."""
    if os.path.isdir(path):
        names = sorted(os.path.relpath(os.path.join(root, f), path).replace('\\', '/')
                       for root, _dirs, files in os.walk(path) for f in files)
        json_path = os.path.join(path, 'dataset.json')
        meta = None
        if os.path.isfile(json_path):
            with open(json_path, 'rb') as f:
                meta = f.read()
        yield [n for n in names if is_image_name(n)], meta, lambda name: open(os.path.join(path, name), 'rb')
    elif file_ext(path) == '.zip' and os.path.isfile(path):
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DatasetError(f'{path}: cannot read zip file ({exc})') from None
        with zf:
            members = zf.namelist()
            meta = zf.read('dataset.json') if 'dataset.json' in members else None
            yield sorted(n for n in members if is_image_name(n)), meta, zf.open
    elif not os.path.exists(path):
        raise DatasetError(f'{path}: no such file or directory')
    else:
        raise DatasetError(f'{path}: path must point to a directory or a zip file')

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
PNG_MODES = {0: 'L', 2: 'RGB', 3: 'P', 4: 'LA', 6: 'RGBA'}  # 8-bit PNG colour types, named as Pillow names them.

def read_image_header(f):
    """(width, height, mode) of an open image file, from its header only (the pixels are not decoded).

    8-bit PNGs are read straight from their IHDR chunk (several times faster than Pillow's parser, which
    walks every chunk before the pixel data); other files go through Pillow."""
    head = f.read(26)
    if head[:8] == PNG_SIGNATURE and head[12:16] == b'IHDR' and head[24] == 8 and head[25] in PNG_MODES:
        width, height = struct.unpack('>II', head[16:24])
        return width, height, PNG_MODES[head[25]]
    if f.seekable():
        f.seek(0)
    else:
        f = io.BytesIO(head + f.read())
    with PIL.Image.open(f) as img:
        return img.size[0], img.size[1], img.mode

def scan_images(names, opener, where, max_listed=5):
    """Read image headers: report unreadable files and sizes or modes that differ from the first image."""
    errors, formats = [], {}
    unreadable = []
    for name in names:
        try:
            with opener(name) as f:
                width, height, mode = read_image_header(f)
            formats.setdefault(((width, height), mode), []).append(name)
        except Exception:
            unreadable.append(name)
    if unreadable:
        errors.append(f'{where}: {len(unreadable)} image(s) cannot be read: {listing(unreadable, max_listed)}')
    if len(formats) > 1:
        (size, mode), _first = next(iter(formats.items()))
        others = [name for key, group in formats.items() if key != (size, mode) for name in group]
        errors.append(f'{where}: {len(others)} image(s) differ in size or mode from the first one '
                      f'({size[0]}x{size[1]} {mode}): {listing(others, max_listed)}')
    return errors, formats

def check_dataset(path, scan=True, **kwargs):
    """Full check of a dataset folder or zip: camera labels, label coverage and (if scan) image headers."""
    with open_container(path) as (names, meta, opener):
        where = os.path.join(path, 'dataset.json')
        if not names:
            raise DatasetError(f'{path}: no image files found')
        if meta is None:
            raise DatasetError(f'{where}: missing; EG3D needs camera labels (see dataset_preprocessing/)')
        report = check_camera_labels(parse_dataset_json(meta, where), names, where=where, **kwargs)
        if scan:
            errors, formats = scan_images(names, opener, where=path)
            report.errors.extend(errors)
            if formats:
                (size, mode), group = next(iter(formats.items()))
                report.summary.insert(0, f'Images: {len(names)} ({size[0]}x{size[1]} {mode} for {len(group)} of them)')
                if size[0] != size[1]:
                    report.warnings.append(f'{path}: images are {size[0]}x{size[1]}; EG3D needs square images')
    return report

#----------------------------------------------------------------------------
