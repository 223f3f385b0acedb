"""How dataset_tool.py crops and resizes images (--transform, --resolution); projector.py prepares its target photo
the same way. NumPy and Pillow only, so that dataset_tool.py starts without torch."""

import numpy as np
import PIL.Image

#----------------------------------------------------------------------------

def resize(img, width, height):
    if img.shape[1] == width and img.shape[0] == height:
        return img
    return np.array(PIL.Image.fromarray(img).resize((width, height), PIL.Image.LANCZOS))

def make_transform(transform, width, height):
    """img [H, W, C] uint8 -> img (or None to drop it) for --transform (None, center-crop, center-crop-wide) and
    --resolution=WxH (width None: unchanged)."""
    if width is None:
        return lambda img: img
    if transform is None:
        return lambda img: resize(img, width, height)

    def center_crop(img):
        crop = min(img.shape[0], img.shape[1])
        top, left = (img.shape[0] - crop) // 2, (img.shape[1] - crop) // 2
        return resize(img[top:top + crop, left:left + crop], width, height)

    def center_crop_wide(img):
        # A centred band with the output's aspect ratio, letterboxed into a square black canvas.
        band = int(np.round(width * img.shape[0] / img.shape[1]))
        if img.shape[1] < width or band < height:
            return None
        top = (img.shape[0] - band) // 2
        img = resize(img[top:top + band], width, height)
        canvas = np.zeros([width, width] + list(img.shape[2:]), dtype=np.uint8)
        canvas[(width - height) // 2:(width + height) // 2] = img
        return canvas

    return {'center-crop': center_crop, 'center-crop-wide': center_crop_wide}[transform]

#----------------------------------------------------------------------------
