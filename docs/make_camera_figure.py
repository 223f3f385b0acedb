"""Draw docs/camera_conventions.png: EG3D's world frame and OpenCV camera axes, from camera_utils itself.

    python docs/make_camera_figure.py
"""

import math
import os
import sys

import numpy as np
import PIL.Image
import PIL.ImageDraw
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from camera_utils import LookAtPoseSampler  # noqa: E402

PANEL = 420
SCALE = 60.0  # pixels per world unit
COLORS = dict(x=(220, 40, 40), y=(40, 160, 40), z=(40, 80, 220), cam=(90, 90, 90), text=(0, 0, 0))


def camera(yaw: float, pitch: float) -> np.ndarray:
    torch.manual_seed(0)
    pose = LookAtPoseSampler.sample(yaw, pitch, torch.tensor([0.0, 0.0, 0.0]), radius=2.7)
    return pose[0].numpy()


def draw_panel(draw, origin_px, title, to_2d, axis_names, poses):
    ox, oy = origin_px

    def project(p):
        u, v = to_2d(p)
        return ox + u * SCALE, oy - v * SCALE

    draw.text((ox - PANEL // 2 + 10 if ox < PANEL else PANEL + 10, 10), title, fill=COLORS['text'])
    # World axes at the origin.
    for name, direction in (('x', [1, 0, 0]), ('y', [0, 1, 0]), ('z', [0, 0, 1])):
        tip = project(np.array(direction, dtype=float) * 1.0)
        if abs(tip[0] - ox) + abs(tip[1] - oy) < 1:
            draw.ellipse([ox - 4, oy - 4, ox + 4, oy + 4], outline=COLORS[name])
            draw.text((ox + 6, oy + 4), f'+{name} (out of page)', fill=COLORS[name])
            continue
        draw.line([(ox, oy), tip], fill=COLORS[name], width=3)
        draw.text((tip[0] + 4, tip[1] - 12), f'world +{name}', fill=COLORS[name])
    # Cameras: centre, and their OpenCV axes (x right, y down, z viewing direction), 0.6 units long.
    for label, pose in poses:
        centre = pose[:3, 3]
        c2d = project(centre)
        draw.ellipse([c2d[0] - 5, c2d[1] - 5, c2d[0] + 5, c2d[1] + 5], fill=COLORS['cam'])
        draw.text((c2d[0] + 8, c2d[1] + 6), label, fill=COLORS['cam'])
        for column, name in enumerate('xyz'):
            tip = project(centre + pose[:3, column] * 0.6)
            if abs(tip[0] - c2d[0]) + abs(tip[1] - c2d[1]) > 1:
                draw.line([c2d, tip], fill=COLORS[name], width=2)
    del axis_names


def main():
    poses = [
        ('A', camera(math.pi / 2, math.pi / 2)),
        ('B', camera(math.pi / 2 + 0.6, math.pi / 2)),
        ('C', camera(math.pi / 2, math.pi / 2 - 0.5)),
    ]
    image = PIL.Image.new('RGB', (PANEL * 2, PANEL + 60), 'white')
    draw = PIL.ImageDraw.Draw(image)
    draw_panel(draw, (PANEL // 2, 90), 'Top view (from +y): x right, z down the page',
               lambda p: (p[0], -p[2]), 'xz', poses)
    draw_panel(draw, (2 * PANEL - 90, PANEL // 2 + 40), 'Side view (from +x): y up, z to the left',
               lambda p: (-p[2], p[1]), 'zy', poses)
    draw.text((10, PANEL + 15), 'A: frontal camera, LookAtPoseSampler yaw = pitch = pi/2.  B: yaw pi/2 + 0.6 '
              '(moves toward +x).  C: pitch pi/2 - 0.5 (moves up, +y).', fill=COLORS['text'])
    draw.text((10, PANEL + 35), 'Camera axes (OpenCV): red = image right (x), green = image down (y), '
              'blue = viewing direction (z). Radius 2.7, looking at the origin.', fill=COLORS['text'])
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'camera_conventions.png')
    image.save(out)
    print(out)


if __name__ == '__main__':
    main()
