"""Re-align the FFHQ in-the-wild images for EG3D: FFHQ landmark alignment, quad enlarged 1.8x, 1500x1500 output.

    python align_ffhq.py [--source=.] [--dest=realign1500] [--threads=12] [--start_index=0] [--max_images=N]

Reads <source>/ffhq-dataset-v2.json and the in-the-wild images it lists (download_ffhq.py --wilds) and writes
<dest>/<index:05d>.png. Outputs that already exist are kept, so an interrupted run resumes where it stopped.
The published cropping_params.json holds landmarks in the frame of these images, so the geometry follows the
FFHQ alignment (quad size and centre from the eyes and mouth); only the padding fade is cosmetic.
"""

import argparse
import multiprocessing
import os
import sys

import numpy as np
import PIL.Image
import scipy.ndimage
from tqdm import tqdm

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from mirror_dataset import expand_path, fail, read_json, save_image  # noqa: E402

METADATA_FILE = 'ffhq-dataset-v2.json'
Q_SCALE = 1.8           # EG3D's enlargement of the FFHQ quad (data.md 7.1).
OUTPUT_SIZE = 1500
TRANSFORM_SIZE = 4096   # The quad is resampled at this size first, then downscaled with Lanczos.

# Constants the spec does not list; these are the FFHQ alignment's values, which keep the output in the frame
# that the published cropping_params.json landmarks refer to.
EYE_SPAN = 2.0          # Quad half-side >= 2x the distance between the eye centres...
MOUTH_SPAN = 1.8        # ... and >= 1.8x the distance from the eye midpoint to the mouth midpoint.
CENTRE_SHIFT = 0.1      # Quad centre: 10% of the way from the eye midpoint towards the mouth.
BORDER = 0.1            # Context kept around the quad when cropping, fraction of the quad side (at least 3 px).
MIN_PAD = 0.3           # Reflect padding on every side when the quad nears the image edge, fraction of the side.
EDGE_TOLERANCE = 4      # Pad once the quad comes closer than this many pixels to an image edge.
BLUR = 0.02             # Gaussian sigma of the padding fade, fraction of the quad side.
FADE_INSIDE = 1 / 3     # The blur fades in over this fraction of the pad width inside the real image.
PNG_COMPRESS_LEVEL = 6  # PIL's default; uncompressed 1500x1500 PNGs would take ~470 GB for all of FFHQ.

#----------------------------------------------------------------------------

def face_quad(landmarks, q_scale=Q_SCALE):
    """Oriented square around a face given its 68 iBUG landmarks (x, y pixel centres, y down).

    Returns (quad, side): the corners upper-left, lower-left, lower-right, upper-right (PIL's QUAD order)
    and the side length, in the same pixel coordinates as the landmarks.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f'expected 68 (x, y) face landmarks, got an array of shape {lm.shape}')
    eye_left = lm[36:42].mean(axis=0)
    eye_right = lm[42:48].mean(axis=0)
    eye_mid = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = (lm[48] + lm[54]) / 2 - eye_mid

    # Horizontal axis: the eye direction plus the eye-to-mouth direction turned a quarter turn (so that "down"
    # becomes "right"), each weighted by its length; both cues agree on an upright face.
    right = eye_to_eye + np.array([eye_to_mouth[1], -eye_to_mouth[0]])
    half_side = max(EYE_SPAN * np.hypot(*eye_to_eye), MOUTH_SPAN * np.hypot(*eye_to_mouth)) * q_scale
    if not (np.isfinite(half_side) and half_side > 1 and np.hypot(*right) > 0):
        raise ValueError('degenerate face landmarks (eyes and mouth at the same place?)')
    right *= half_side / np.hypot(*right)
    down = np.array([-right[1], right[0]])
    centre = eye_mid + CENTRE_SHIFT * eye_to_mouth
    quad = np.stack([centre - right - down, centre - right + down, centre + right + down, centre + right - down])
    return quad, 2 * half_side

def _edge_ramp(length, pad_before, pad_after):
    """Per index of a padded axis: 1 at the outer edges, 0 where the real image starts, negative inside it."""
    i = np.arange(length, dtype=np.float32)
    return 1 - np.minimum(i / pad_before, (length - 1 - i) / pad_after)

def _reflect_pad(img, pad, side):
    """Reflect-pad an RGB image by (left, top, right, bottom) and fade the padding into a blur of the
    image and then towards its median colour, so that mirrored content does not look like real context."""
    left, top, right, bottom = pad
    arr = np.pad(np.asarray(img, dtype=np.float32), ((top, bottom), (left, right), (0, 0)), mode='reflect')
    h, w = arr.shape[:2]
    mask = np.maximum(_edge_ramp(w, left, right)[np.newaxis, :], _edge_ramp(h, top, bottom)[:, np.newaxis])
    mask = mask[..., np.newaxis]
    sigma = side * BLUR
    blurred = scipy.ndimage.gaussian_filter(arr, sigma=(sigma, sigma, 0))
    arr += (blurred - arr) * np.clip(mask / FADE_INSIDE + 1, 0, 1)
    arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(mask, 0, 1)
    return PIL.Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))

def align_face(img, landmarks, q_scale=Q_SCALE, output_size=OUTPUT_SIZE, transform_size=TRANSFORM_SIZE):
    """Cut the face quad out of a PIL image and resample it upright into an output_size square."""
    quad, side = face_quad(landmarks, q_scale)
    # PIL coordinates: pixel i covers [i, i + 1), so a landmark at pixel centre x sits at x + 0.5. Working in
    # these continuous coordinates keeps the resize/crop/pad steps below exact.
    quad = quad + 0.5
    img = img.convert('RGB')

    # Faces over 4x the output size: downsample first (keeping at least 2x the output resolution) to save time
    # and memory in the steps below.
    shrink = int(np.floor(side / output_size * 0.5))
    if shrink > 1:
        size = (max(int(np.rint(img.size[0] / shrink)), 1), max(int(np.rint(img.size[1] / shrink)), 1))
        quad = quad * (np.array(size) / np.array(img.size))
        side /= shrink
        img = img.resize(size, PIL.Image.Resampling.LANCZOS)

    # Crop to the quad plus a border of context.
    border = max(int(np.rint(side * BORDER)), 3)
    lo = np.floor(quad.min(axis=0)).astype(int) - border
    hi = np.ceil(quad.max(axis=0)).astype(int) + border
    box = (max(lo[0], 0), max(lo[1], 0), min(hi[0], img.size[0]), min(hi[1], img.size[1]))
    if box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError('the face landmarks lie outside the image')
    img = img.crop(box)
    quad -= box[:2]
    lo -= box[:2]
    hi -= box[:2]

    # Pad when the quad (not just its border) reaches the image edge.
    missing = np.array([-lo[0], -lo[1], hi[0] - img.size[0], hi[1] - img.size[1]])
    if missing.max() > border - EDGE_TOLERANCE:
        pad = np.maximum(missing, int(np.rint(side * MIN_PAD)))
        img = _reflect_pad(img, pad.tolist(), side)
        quad += pad[:2]

    img = img.transform((transform_size, transform_size), PIL.Image.Transform.QUAD, quad.flatten().tolist(),
                        PIL.Image.Resampling.BILINEAR)
    if output_size != transform_size:
        img = img.resize((output_size, output_size), PIL.Image.Resampling.LANCZOS)
    return img

#----------------------------------------------------------------------------

def select_entries(metadata, metadata_path, required_keys, start_index=0, max_images=None, kind='in_the_wild'):
    """(index, metadata[index][kind]) of the selected entries, in index order; each has required_keys.

    kind: 'in_the_wild', 'image' (1024x1024 crops) or 'thumbnail' (128x128)."""
    if not isinstance(metadata, dict):
        fail(f'{metadata_path}: expected a JSON object keyed by image index')
    bad = [key for key in metadata if not key.isdigit()]
    if bad:
        fail(f'{metadata_path}: entry key {bad[0]!r} is not an image index')
    keys = sorted(metadata, key=int)
    keys = keys[start_index:] if max_images is None else keys[start_index:start_index + max_images]
    entries = []
    for key in keys:
        spec = metadata[key].get(kind) if isinstance(metadata[key], dict) else None
        if not isinstance(spec, dict) or not set(required_keys) <= spec.keys():
            fail(f'{metadata_path}: entry {key} lacks {kind}.{f" / {kind}.".join(required_keys)}')
        entries.append((int(key), spec))
    return entries

def list_items(metadata, metadata_path, source, dest, start_index=0, max_images=None):
    """(output path, image path, landmarks) of the selected metadata entries, in index order."""
    entries = select_entries(metadata, metadata_path, ('file_path', 'face_landmarks'), start_index, max_images)
    return [(os.path.join(dest, f'{index:05d}.png'), os.path.join(source, wild['file_path']), wild['face_landmarks'])
            for index, wild in entries]

def align_item(item):
    """Align one image; returns None or a one-line error."""
    dst, src, landmarks = item
    try:
        with PIL.Image.open(src) as img:
            out = align_face(img, landmarks)
    except FileNotFoundError:
        return f'{src}: no such file (download it with download_ffhq.py --wilds)'
    except (OSError, ValueError, PIL.Image.DecompressionBombError) as exc:
        return f'{src}: {exc}'
    save_image(out, dst, compress_level=PNG_COMPRESS_LEVEL)
    return None

def align_dataset(metadata, metadata_path, source, dest, threads=12, start_index=0, max_images=None):
    """Align the selected entries of the parsed FFHQ metadata; image paths are relative to `source`."""
    items = list_items(metadata, metadata_path, source, dest, start_index, max_images)
    todo = [item for item in items if not os.path.isfile(item[0])]
    print(f'Aligning {len(todo)} image(s) into {dest} ({len(items) - len(todo)} already there)')
    os.makedirs(dest, exist_ok=True)
    if threads > 1 and len(todo) > 1:
        with multiprocessing.Pool(min(threads, len(todo))) as pool:
            errors = list(tqdm(pool.imap_unordered(align_item, todo), total=len(todo), desc='Aligning', unit='img'))
    else:
        errors = [align_item(item) for item in tqdm(todo, desc='Aligning', unit='img')]
    errors = [e for e in errors if e is not None]
    for error in errors:
        print(f'Error: {error}', file=sys.stderr)
    if errors:
        fail(f'{len(errors)} of {len(todo)} image(s) could not be aligned')

def main(argv=None):
    parser = argparse.ArgumentParser(description='Re-align the FFHQ in-the-wild images to 1500x1500 for EG3D.')
    parser.add_argument('--source', type=expand_path, default='.', help=f'folder with {METADATA_FILE} and in-the-wild-images/')
    parser.add_argument('--dest', type=expand_path, default='realign1500', help='output folder')
    parser.add_argument('--threads', type=int, default=12, help='worker processes')
    parser.add_argument('--start_index', type=int, default=0, help='first metadata entry to align')
    parser.add_argument('--max_images', '--max-images', type=int, default=None, help='align at most N entries')
    args = parser.parse_args(argv)
    metadata_path = os.path.join(args.source, METADATA_FILE)
    align_dataset(read_json(metadata_path), metadata_path, source=args.source, dest=args.dest, threads=args.threads,
                  start_index=args.start_index, max_images=args.max_images)

if __name__ == '__main__':
    main()
