"""grid_sample (bilinear, zero padding, align_corners=False) with a double-backward-capable path.

With `enabled = False` (the default; the training loop leaves it off) this calls
`torch.nn.functional.grid_sample`. With `enabled = True` it samples with plain differentiable tensor ops
(gathers and arithmetic), so gradients of every order exist with respect to both the input and the grid
on any PyTorch version and device, at the cost of speed and memory.
"""

import torch.nn.functional as F

enabled = False


def grid_sample(input, grid):
    """Sample `input` [N, C, H, W] at `grid` [N, Ho, Wo, 2] (x, y in [-1, 1]) -> [N, C, Ho, Wo]."""
    if enabled:
        return _grid_sample_explicit(input, grid)
    return F.grid_sample(input=input, grid=grid, mode='bilinear', padding_mode='zeros', align_corners=False)


def _grid_sample_explicit(input, grid):
    assert input.ndim == 4 and grid.ndim == 4 and grid.shape[0] == input.shape[0] and grid.shape[3] == 2
    batch, channels, height, width = input.shape
    out_h, out_w = grid.shape[1:3]
    grid = grid.to(input.dtype)
    # Pixel coordinates; with align_corners=False, -1 and +1 are the outer edges of the border pixels.
    px = ((grid[..., 0] + 1) * width - 1) / 2
    py = ((grid[..., 1] + 1) * height - 1) / 2
    x0 = px.floor().detach()
    y0 = py.floor().detach()
    x1 = x0 + 1
    y1 = y0 + 1
    # Same weight expressions and summation order as PyTorch's kernel (nw, ne, sw, se).
    corners = [
        (x0, y0, (x1 - px) * (y1 - py)),
        (x1, y0, (px - x0) * (y1 - py)),
        (x0, y1, (x1 - px) * (py - y0)),
        (x1, y1, (px - x0) * (py - y0)),
    ]
    flat = input.reshape(batch, channels, height * width)
    out = None
    for cx, cy, weight in corners:
        inside = (cx >= 0) & (cx <= width - 1) & (cy >= 0) & (cy <= height - 1)
        index = (cy.clamp(0, height - 1) * width + cx.clamp(0, width - 1)).long()
        values = flat.gather(2, index.reshape(batch, 1, -1).expand(-1, channels, -1))
        term = values.reshape(batch, channels, out_h, out_w) * (weight * inside).unsqueeze(1)
        out = term if out is None else out + term
    return out
