"""Convert the camera poses of COLMAP, Blender/NeRF or a look-at list into EG3D labels (dataset.json).

Examples (docs/cameras.md walks through each):

\b
  # COLMAP text model (images.txt + cameras.txt) of the images in scene/images:
  python dataset_preprocessing/convert_cameras.py --format=colmap --source=scene/sparse/0 \\
    --dest=scene/images/dataset.json --up=auto --recenter --radius=2.7
\b
  # Blender / NeRF transforms.json (OpenGL camera axes, z-up world):
  python dataset_preprocessing/convert_cameras.py --format=blender --source=lego/transforms_train.json \\
    --dest=lego/dataset.json --up=+z
\b
  # A look-at list: one camera per line, NAME EYE_X EYE_Y EYE_Z TARGET_X TARGET_Y TARGET_Z [UP_X UP_Y UP_Z]:
  python dataset_preprocessing/convert_cameras.py --format=lookat --source=cams.txt --focal=1.7074 \\
    --dest=renders/dataset.json

A label is the 4x4 cam2world matrix in OpenCV axes (x right, y down, z forward; row-major) followed by
the 3x3 intrinsics divided by the image size. Labels are keyed by the image paths relative to the folder
of --dest, so write dataset.json into the image folder that dataset_tool.py will read. Intrinsics are
normalised by the size of the images as they are: convert again after cropping them (resizing is fine).
--up, --recenter and --radius move the world frame to EG3D's: +y up, scene at the origin, a known
camera distance. The labels are checked before dataset.json is written under a temporary name and
renamed into place; an existing --dest is never overwritten.
"""

import json
import math
import os
import sys

import click
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import dnnlib  # noqa: E402
from cli import PATH, one_line_errors  # noqa: E402
from training.camera_validation import check_camera_labels, least_squares_focus, read_image_header  # noqa: E402
from training.cameras import lookat_cam2world  # noqa: E402

# OpenGL/Blender camera axes (x right, y up, z backward) to OpenCV's (x right, y down, z forward).
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])

# World rotations that take the named axis to +y; '+z' also takes Blender's front view (-y) to +z.
WORLD_UP = {
    '+y': np.eye(3),
    '-y': np.diag([1.0, -1.0, -1.0]),
    '+z': np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]),
    '-z': np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]),
}

# COLMAP camera models: parameter names; fx, fy, cx, cy are taken by name, the rest is lens distortion.
COLMAP_MODELS = {
    'SIMPLE_PINHOLE': ('f', 'cx', 'cy'),
    'PINHOLE': ('fx', 'fy', 'cx', 'cy'),
    'SIMPLE_RADIAL': ('f', 'cx', 'cy', 'k'),
    'RADIAL': ('f', 'cx', 'cy', 'k1', 'k2'),
    'OPENCV': ('fx', 'fy', 'cx', 'cy', 'k1', 'k2', 'p1', 'p2'),
    'FULL_OPENCV': ('fx', 'fy', 'cx', 'cy', 'k1', 'k2', 'p1', 'p2', 'k3', 'k4', 'k5', 'k6'),
}

# Lens distortion keys of a transforms.json (nerfstudio, instant-ngp).
NERF_DISTORTION = ('k1', 'k2', 'k3', 'k4', 'p1', 'p2')

#----------------------------------------------------------------------------

def fail(msg):
    raise click.ClickException(msg)

def warn(msg):
    click.echo(f'Warning: {msg}', err=True)

def numbers(fields, where, what):
    try:
        values = [float(v) for v in fields]
    except (TypeError, ValueError):
        fail(f'{where}: {what} must be numbers, got {" ".join(fields)[:80]!r}')
    if not all(math.isfinite(v) for v in values):
        fail(f'{where}: {what} contain NaN or infinity')
    return values

def intrinsics(fx, fy, cx, cy, width, height):
    """Normalised 3x3 intrinsics of pixel-unit focal lengths and principal point."""
    return np.array([[fx / width, 0, cx / width], [0, fy / height, cy / height], [0, 0, 1]])

def read_text(path):
    try:
        with open(path, encoding='utf-8') as f:
            return f.read().splitlines()
    except FileNotFoundError:
        fail(f'{path}: no such file')
    except (OSError, UnicodeDecodeError) as err:
        fail(f'{path}: cannot read it ({err})')

def data_lines(path):
    """(line number, fields) of the lines of a text file that are neither blank nor '#' comments."""
    return [(num, line.split()) for num, line in enumerate(read_text(path), start=1)
            if line.strip() and not line.lstrip().startswith('#')]

#----------------------------------------------------------------------------
# COLMAP text model.

def quaternion_to_rotation(qw, qx, qy, qz):
    norm = math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
    w, x, y, z = qw / norm, qx / norm, qy / norm, qz / norm
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])

def read_colmap_cameras(path):
    """{camera id: normalised intrinsics} of a cameras.txt; warns about lens distortion it drops."""
    cameras = {}
    for num, fields in data_lines(path):
        where = f'{path}:{num}'
        if len(fields) < 4:
            fail(f'{where}: expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS[], got {" ".join(fields)!r}')
        model = fields[1]
        if model not in COLMAP_MODELS:
            fail(f'{where}: camera model {model} is not supported (known: {", ".join(COLMAP_MODELS)}); undistort '
                 f'the images to a PINHOLE model first (colmap image_undistorter)')
        names = COLMAP_MODELS[model]
        values = numbers(fields[2:], where, 'WIDTH, HEIGHT and PARAMS')
        if len(values) != 2 + len(names):
            fail(f'{where}: a {model} camera has {len(names)} parameters ({" ".join(names)}), got {len(values) - 2}')
        width, height, params = values[0], values[1], dict(zip(names, values[2:]))
        if width <= 0 or height <= 0:
            fail(f'{where}: image size {width:g}x{height:g} must be positive')
        distortion = {k: v for k, v in params.items() if k not in ('f', 'fx', 'fy', 'cx', 'cy') and v != 0}
        if distortion:
            warn(f'{where}: camera {fields[0]} has lens distortion ({", ".join(f"{k}={v:g}" for k, v in distortion.items())}) '
                 f'that a label cannot hold; undistort the images (colmap image_undistorter) for exact cameras')
        fx, fy = params.get('fx', params.get('f')), params.get('fy', params.get('f'))
        cameras[fields[0]] = intrinsics(fx, fy, params['cx'], params['cy'], width, height)
    return cameras

def read_colmap(source, images_dir):
    """[(image path, cam2world, intrinsics)] of a COLMAP text model folder."""
    images_txt, cameras_txt = os.path.join(source, 'images.txt'), os.path.join(source, 'cameras.txt')
    if not os.path.isdir(source):
        fail(f'--source={source}: not a folder (the COLMAP model folder holding images.txt and cameras.txt)')
    for path in (images_txt, cameras_txt):
        if not os.path.isfile(path):
            binary = os.path.splitext(path)[0] + '.bin'
            hint = (f'; convert the binary model first: colmap model_converter --input_path {source} '
                    f'--output_path {source} --output_type TXT') if os.path.isfile(binary) else ''
            fail(f'{path}: no such file{hint}')
    cameras = read_colmap_cameras(cameras_txt)
    result, expect_header = [], True
    for num, line in enumerate(read_text(images_txt), start=1):
        if line.lstrip().startswith('#'):
            continue
        if not expect_header:       # The 2D points line that follows each image line (may be empty).
            expect_header = True
            continue
        if not line.strip():
            continue
        fields, where = line.split(), f'{images_txt}:{num}'
        if len(fields) < 10:
            fail(f'{where}: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, got {line.strip()[:80]!r}')
        qw, qx, qy, qz, tx, ty, tz = numbers(fields[1:8], where, 'QW QX QY QZ TX TY TZ')
        if qw == qx == qy == qz == 0:
            fail(f'{where}: the rotation quaternion is zero')
        if fields[8] not in cameras:
            fail(f'{where}: camera {fields[8]} is not in {cameras_txt}')
        rotation = quaternion_to_rotation(qw, qx, qy, qz)   # world -> camera, OpenCV axes.
        cam2world = np.eye(4)
        cam2world[:3, :3] = rotation.T
        cam2world[:3, 3] = -rotation.T @ np.array([tx, ty, tz])
        result.append((os.path.join(images_dir, ' '.join(fields[9:])), cam2world, cameras[fields[8]]))
        expect_header = False
    return result

#----------------------------------------------------------------------------
# Blender / NeRF transforms.json.

def nerf_image_path(root, file_path, where):
    """The image a frame's file_path names (NeRF synthetic scenes leave out the '.png')."""
    path = os.path.normpath(os.path.join(root, file_path))
    for candidate in (path, path + '.png'):
        if os.path.isfile(candidate):
            return candidate
    fail(f'{where}: image {file_path!r} not found under {root} (also tried {file_path}.png)')

def nerf_intrinsics(get, image_path, where):
    """Normalised intrinsics of a frame from fl_x/fl_y/cx/cy/w/h or camera_angle_x/y (radians)."""
    width, height = get('w'), get('h')
    if width is None or height is None:
        with open(image_path, 'rb') as f:
            width, height, _mode = read_image_header(f)
    if get('fl_x') is not None:
        fx = get('fl_x')
        fy = get('fl_y') if get('fl_y') is not None else fx
    elif get('camera_angle_x') is not None:
        fx = 0.5 * width / math.tan(0.5 * get('camera_angle_x'))
        fy = 0.5 * height / math.tan(0.5 * get('camera_angle_y')) if get('camera_angle_y') is not None else fx
    else:
        fail(f'{where}: no focal length (camera_angle_x or fl_x)')
    cx = get('cx') if get('cx') is not None else width / 2
    cy = get('cy') if get('cy') is not None else height / 2
    values = numbers([fx, fy, cx, cy, width, height], where, 'focal length, principal point and size')
    if min(values[0], values[1], values[4], values[5]) <= 0:
        fail(f'{where}: focal length and image size must be positive')
    return intrinsics(*values)

def read_blender(source):
    """[(image path, cam2world, intrinsics)] of a Blender/NeRF transforms.json."""
    try:
        with open(source, encoding='utf-8') as f:
            meta = json.load(f)
    except FileNotFoundError:
        fail(f'{source}: no such file')
    except (OSError, ValueError) as err:
        fail(f'{source}: cannot read it as JSON ({err})')
    if not isinstance(meta, dict) or not isinstance(meta.get('frames'), list) or not meta['frames']:
        fail(f'{source}: expected a JSON object with a non-empty "frames" list')
    root, result, distorted = os.path.dirname(os.path.abspath(source)), [], {}
    for idx, frame in enumerate(meta['frames']):
        where = f'{source}: frames[{idx}]'
        if not isinstance(frame, dict) or not isinstance(frame.get('file_path'), str):
            fail(f'{where}: expected an object with "file_path" and "transform_matrix"')
        matrix = frame.get('transform_matrix')
        if not (isinstance(matrix, list) and len(matrix) == 4 and all(isinstance(r, list) and len(r) == 4 for r in matrix)):
            fail(f'{where}: transform_matrix must be a 4x4 list of numbers')
        gl_cam2world = np.array(numbers([v for row in matrix for v in row], where, 'transform_matrix entries')).reshape(4, 4)
        image_path = nerf_image_path(root, frame['file_path'], where)
        get = lambda key, frame=frame: frame.get(key, meta.get(key))     # Per-frame values win.
        distorted.update((key, None) for key in NERF_DISTORTION if get(key))
        result.append((image_path, gl_cam2world @ OPENGL_TO_OPENCV, nerf_intrinsics(get, image_path, where)))
    if distorted:
        warn(f'{source}: lens distortion ({", ".join(distorted)}) is dropped; undistort the images for exact cameras')
    return result

#----------------------------------------------------------------------------
# Look-at list.

def read_lookat(source, focal, dest_dir):
    """[(image path, cam2world, intrinsics)] of a text file: NAME EYE(3) TARGET(3) [UP(3)] per line."""
    if focal is None:
        fail('--focal: required with --format=lookat (the focal length divided by the image width)')
    result = []
    for num, fields in data_lines(source):
        where = f'{source}:{num}'
        if len(fields) not in (7, 10):
            fail(f'{where}: expected NAME EYE_X EYE_Y EYE_Z TARGET_X TARGET_Y TARGET_Z [UP_X UP_Y UP_Z], '
                 f'got {len(fields)} fields')
        values = numbers(fields[1:], where, 'the coordinates')
        eye, target, up = values[:3], values[3:6], values[6:] or [0, 1, 0]
        forward = np.subtract(target, eye)
        if np.linalg.norm(forward) == 0 or np.linalg.norm(np.cross(forward, up)) < 1e-9 * np.linalg.norm(forward):
            fail(f'{where}: the eye equals the target, or the up direction is parallel to the view')
        result.append((os.path.join(dest_dir, fields[0]), lookat_cam2world(eye, target, up),
                       intrinsics(focal, focal, 0.5, 0.5, 1, 1)))
    if not result:
        fail(f'{source}: no cameras listed')
    return result

#----------------------------------------------------------------------------

def rotation_to_y(a):
    """Smallest rotation taking unit vector a to +y (Rodrigues)."""
    b = np.array([0.0, 1.0, 0.0])
    axis, cos = np.cross(a, b), float(np.dot(a, b))
    if cos < -1 + 1e-9:
        return WORLD_UP['-y']      # Half a turn; the formula below divides by 1 + cos.
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + k + k @ k / (1 + cos)

def normalize_world(poses, up, recenter, radius):
    """Move the world frame of cam2world matrices [N, 4, 4]: rotate `up` to +y, the look-at point to the origin,
    and scale the median camera distance to `radius` (None: keep the scale)."""
    if up == 'auto':
        mean_up = -poses[:, :3, 1].mean(axis=0)          # Image up (-y) in world coordinates.
        if np.linalg.norm(mean_up) < 1e-6:
            fail('--up=auto: the cameras\' image-up directions cancel out; name the up axis instead')
        rotation = rotation_to_y(mean_up / np.linalg.norm(mean_up))
    else:
        rotation = WORLD_UP[up]
    world = np.eye(4)
    world[:3, :3] = rotation
    poses = world @ poses
    if recenter:
        focus = least_squares_focus(poses[:, :3, 3], poses[:, :3, 2])
        if focus is None:
            fail('--recenter: the cameras\' optical axes are parallel, so they have no common look-at point')
        poses[:, :3, 3] -= focus
    if radius is not None:
        distance = np.median(np.linalg.norm(poses[:, :3, 3], axis=1))
        if distance < 1e-9:
            fail('--radius: the cameras sit at the origin (add --recenter to move the scene there instead)')
        poses[:, :3, 3] *= radius / distance
    return poses

def label_name(path, dest_dir):
    name = os.path.relpath(os.path.abspath(path), dest_dir).replace(os.sep, '/')
    if name.startswith('../'):
        fail(f'{path}: the image is outside {dest_dir}, the folder of --dest; dataset.json must sit above its images')
    return name

#----------------------------------------------------------------------------

@click.command(help=__doc__)
@click.option('--format', 'source_format', help='Kind of --source', type=click.Choice(['colmap', 'blender', 'lookat']), required=True)
@click.option('--source', help='COLMAP model folder, transforms.json, or look-at list', metavar='PATH', type=PATH, required=True)
@click.option('--dest', help='dataset.json to write (must not exist)', metavar='FILE', type=PATH, required=True)
@click.option('--images', help='Folder of the images that images.txt names  [default: the folder of --dest]', metavar='DIR', type=PATH)
@click.option('--focal', help='Focal length / image width of every look-at camera', metavar='FLOAT', type=click.FloatRange(min=0, min_open=True))
@click.option('--up', help='World axis that points up in the scene (auto: the cameras\' mean image-up)',
              type=click.Choice(['+y', '-y', '+z', '-z', 'auto']), default='+y', show_default=True)
@click.option('--recenter', help='Move the point the cameras look at to the origin', is_flag=True)
@click.option('--radius', help='Scale the world so the median camera distance is this', metavar='FLOAT',
              type=click.FloatRange(min=0, min_open=True))
@one_line_errors
def main(source_format, source, dest, images, focal, up, recenter, radius):
    dest_dir = os.path.dirname(os.path.abspath(dest))
    if os.path.lexists(dest):
        fail(f'--dest={dest}: already exists; remove it or choose another name (inputs are never overwritten)')
    if not os.path.isdir(dest_dir):
        fail(f'--dest={dest}: {dest_dir} is not a folder')
    if images is not None and source_format != 'colmap':
        fail('--images: only used with --format=colmap')
    if focal is not None and source_format != 'lookat':
        fail('--focal: only used with --format=lookat (the other formats carry their intrinsics)')

    if source_format == 'colmap':
        cameras = read_colmap(source, dest_dir if images is None else images)
    elif source_format == 'blender':
        cameras = read_blender(source)
    else:
        cameras = read_lookat(source, focal, dest_dir)
    if not cameras:
        fail(f'{source}: no cameras found')
    names = [label_name(path, dest_dir) for path, _pose, _intr in cameras]
    poses = normalize_world(np.stack([pose for _path, pose, _intr in cameras]), up, recenter, radius)
    labels = [[name, pose.reshape(16).tolist() + intr.reshape(9).tolist()]
              for name, pose, (_path, _pose, intr) in zip(names, poses, cameras)]

    report = check_camera_labels(labels, where=source)
    if not report.ok:
        more = f' (and {len(report.errors) - 1} more)' if len(report.errors) > 1 else ''
        fail(f'{report.errors[0]}{more}')
    dnnlib.util.write_atomic(dest, lambda f: json.dump({'labels': labels}, f, indent=1), binary=False)
    click.echo(report.format())
    click.echo(f'{len(labels)} camera label(s) written to {dest}')

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()

#----------------------------------------------------------------------------
