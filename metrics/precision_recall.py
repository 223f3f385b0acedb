"""Improved precision and recall (Kynkaanniemi et al. 2019) on VGG16 features: a probe counts when it falls
inside the k-nearest-neighbour ball of some point of the other set's manifold."""

import torch

from . import metric_utils

VGG16_URL = 'https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/metrics/vgg16.pkl'

#----------------------------------------------------------------------------

def _cdist(a, b):
    # float16 in, float16 out (the released precision/recall numbers). Builds of torch without a float16 CPU kernel compute in float32
    # and round instead.
    try:
        return torch.cdist(a.unsqueeze(0), b.unsqueeze(0))[0]
    except RuntimeError:
        if a.device.type != 'cpu' or a.dtype != torch.float16:
            raise
        return torch.cdist(a.float().unsqueeze(0), b.float().unsqueeze(0))[0].to(torch.float16)

def compute_distances(row_features, col_features, num_gpus, rank, col_batch_size):
    """Distances [rows, cols] on rank 0 (None elsewhere); column batches are shared out round-robin over ranks."""
    assert 0 <= rank < num_gpus
    num_cols = col_features.shape[0]
    num_batches = -(-num_cols // (col_batch_size * num_gpus)) * num_gpus
    batch_len = -(-num_cols // num_batches)
    # Zero-pad so that all batches, and hence all collective calls, have the same shape.
    padded = torch.nn.functional.pad(col_features, [0, 0, 0, batch_len * num_batches - num_cols])
    col_batches = padded.split(batch_len)
    parts = []
    for col_batch in col_batches[rank :: num_gpus]:
        dist = _cdist(row_features, col_batch)
        if num_gpus > 1:
            gathered = [torch.empty_like(dist) for _ in range(num_gpus)]
            torch.distributed.all_gather(gathered, dist)
        else:
            gathered = [dist]
        if rank == 0:
            parts += [d.cpu() for d in gathered]
    return torch.cat(parts, dim=1)[:, :num_cols] if rank == 0 else None

def _coverage(manifold, probes, nhood_size, row_batch_size, col_batch_size, num_gpus, rank):
    """Fraction of probes within the nhood_size-th neighbour distance of at least one manifold point."""
    radii = []
    for rows in manifold.split(row_batch_size):
        dist = compute_distances(rows, manifold, num_gpus=num_gpus, rank=rank, col_batch_size=col_batch_size)
        if rank == 0:
            # The (k+1)-th smallest distance: the smallest is the point itself.
            radii.append(dist.to(torch.float32).kthvalue(nhood_size + 1).values.to(torch.float16))
    radii = torch.cat(radii) if rank == 0 else None
    hits = []
    for rows in probes.split(row_batch_size):
        dist = compute_distances(rows, manifold, num_gpus=num_gpus, rank=rank, col_batch_size=col_batch_size)
        if rank == 0:
            hits.append((dist <= radii).any(dim=1))
    return float(torch.cat(hits).to(torch.float32).mean()) if rank == 0 else float('nan')

def compute_pr(opts, max_real, num_gen, nhood_size, row_batch_size, col_batch_size):
    detector_kwargs = dict(return_features=True) # 4096-d fc features.
    real_features = metric_utils.compute_feature_stats_for_dataset(opts=opts, detector_url=VGG16_URL,
        detector_kwargs=detector_kwargs, rel_lo=0, rel_hi=0, capture_all=True, max_items=max_real).get_all_torch().to(torch.float16).to(opts.device)
    gen_features = metric_utils.compute_feature_stats_for_generator(opts=opts, detector_url=VGG16_URL,
        detector_kwargs=detector_kwargs, rel_lo=0, rel_hi=1, capture_all=True, max_items=num_gen).get_all_torch().to(torch.float16).to(opts.device)
    kwargs = dict(nhood_size=nhood_size, row_batch_size=row_batch_size, col_batch_size=col_batch_size, num_gpus=opts.num_gpus, rank=opts.rank)
    precision = _coverage(manifold=real_features, probes=gen_features, **kwargs)
    recall = _coverage(manifold=gen_features, probes=real_features, **kwargs)
    return precision, recall

#----------------------------------------------------------------------------
