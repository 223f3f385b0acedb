"""Per-pixel camera rays from a cam2world pose and normalized intrinsics."""

import torch

#----------------------------------------------------------------------------

class RaySampler(torch.nn.Module):
    """Generates one ray through the centre of every pixel of an R x R image (row-major order).

    Intrinsics are normalized by the image size (see rendering.md section 1); camera axes follow
    OpenCV (+x right, +y down, +z forward).
    """

    def __init__(self):
        super().__init__()
        # Never read; present because official pickles carry these attributes and expect them here.
        self.ray_origins_h = None
        self.ray_directions = None
        self.depths = None
        self.image_coords = None
        self.rendering_options = None

    def forward(self, cam2world_matrix, intrinsics, resolution):
        """cam2world_matrix [N,4,4], intrinsics [N,3,3], resolution R ->
        (ray_origins [N,R*R,3], ray_directions [N,R*R,3] unit length)."""
        N = cam2world_matrix.shape[0]
        assert cam2world_matrix.shape == (N, 4, 4), f'cam2world_matrix must be [N,4,4], got {list(cam2world_matrix.shape)}'
        assert intrinsics.shape == (N, 3, 3), f'intrinsics must be [N,3,3], got {list(intrinsics.shape)}'
        device = cam2world_matrix.device

        # Pixel centres in [0, 1]; u runs along columns (fastest), v along rows.
        centres = torch.arange(resolution, dtype=torch.float32, device=device) * (1. / resolution) + (0.5 / resolution)
        v, u = torch.meshgrid(centres, centres, indexing='ij')
        u = u.reshape(1, -1)
        v = v.reshape(1, -1)

        fx = intrinsics[:, 0, 0, None]
        fy = intrinsics[:, 1, 1, None]
        cx = intrinsics[:, 0, 2, None]
        cy = intrinsics[:, 1, 2, None]
        sk = intrinsics[:, 0, 1, None]

        # Back-project onto the z = 1 plane of the camera (inverse of the skewed pinhole model).
        x_cam = (u - cx + cy * sk / fy - sk * v / fy) / fx
        y_cam = (v - cy) / fy
        ones = torch.ones_like(x_cam)
        points_cam = torch.stack([x_cam, y_cam, ones, ones], dim=1)  # homogeneous, [N, 4, M]

        # Transforming the homogeneous point and subtracting the camera centre reproduces the
        # official rounding more closely than rotating (x, y, 1) directly.
        points_world = torch.bmm(cam2world_matrix, points_cam).permute(0, 2, 1)[:, :, :3]
        cam_locs = cam2world_matrix[:, :3, 3]
        ray_directions = torch.nn.functional.normalize(points_world - cam_locs[:, None, :], dim=2)
        ray_origins = cam_locs[:, None, :].expand(-1, ray_directions.shape[1], -1).contiguous()
        return ray_origins, ray_directions

#----------------------------------------------------------------------------
