"""Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel
k(a, b) = (a.b / d + 1)^3 on Inception features, averaged over random subsets."""

import numpy as np

from . import metric_utils
from .frechet_inception_distance import INCEPTION_URL

#----------------------------------------------------------------------------

def kid_from_features(real_features, gen_features, num_subsets, max_subset_size):
    """Subsets are drawn without replacement from NumPy's global RNG: generated rows first, then real rows."""
    d = real_features.shape[1]
    m = min(real_features.shape[0], gen_features.shape[0], max_subset_size)
    total = 0
    for _ in range(num_subsets):
        x = gen_features[np.random.choice(gen_features.shape[0], m, replace=False)]
        y = real_features[np.random.choice(real_features.shape[0], m, replace=False)]
        within = (x @ x.T / d + 1) ** 3 + (y @ y.T / d + 1) ** 3
        across = (x @ y.T / d + 1) ** 3
        total += (within.sum() - np.diag(within).sum()) / (m - 1) - across.sum() * 2 / m
    return float(total / num_subsets / m)

def compute_kid(opts, max_real, num_gen, num_subsets, max_subset_size):
    detector_kwargs = dict(return_features=True)
    real_features = metric_utils.compute_feature_stats_for_dataset(opts=opts, detector_url=INCEPTION_URL,
        detector_kwargs=detector_kwargs, rel_lo=0, rel_hi=0, capture_all=True, max_items=max_real).get_all()
    gen_features = metric_utils.compute_feature_stats_for_generator(opts=opts, detector_url=INCEPTION_URL,
        detector_kwargs=detector_kwargs, rel_lo=0, rel_hi=1, capture_all=True, max_items=num_gen).get_all()
    if opts.rank != 0:
        return float('nan')
    return kid_from_features(real_features, gen_features, num_subsets=num_subsets, max_subset_size=max_subset_size)

#----------------------------------------------------------------------------
