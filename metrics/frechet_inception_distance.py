"""Frechet Inception Distance (Heusel et al. 2017): distance between Gaussians fitted to the Inception-v3
pool features of real and generated images."""

import numpy as np
import scipy.linalg

from . import metric_utils

INCEPTION_URL = 'https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/metrics/inception-2015-12-05.pkl'

#----------------------------------------------------------------------------

def fid_from_stats(mu_real, sigma_real, mu_gen, sigma_gen):
    """|mu_g - mu_r|^2 + tr(S_g + S_r - 2 sqrtm(S_g S_r)), real part, no regularization."""
    mean_term = np.square(mu_gen - mu_real).sum()
    covmean = scipy.linalg.sqrtm(np.dot(sigma_gen, sigma_real))
    return float(np.real(mean_term + np.trace(sigma_gen + sigma_real - 2 * covmean)))

def compute_fid(opts, max_real, num_gen):
    detector_kwargs = dict(return_features=True) # 2048-d pool features.
    mu_real, sigma_real = metric_utils.compute_feature_stats_for_dataset(opts=opts, detector_url=INCEPTION_URL,
        detector_kwargs=detector_kwargs, rel_lo=0, rel_hi=0, capture_mean_cov=True, max_items=max_real).get_mean_cov()
    mu_gen, sigma_gen = metric_utils.compute_feature_stats_for_generator(opts=opts, detector_url=INCEPTION_URL,
        detector_kwargs=detector_kwargs, rel_lo=0, rel_hi=1, capture_mean_cov=True, max_items=num_gen).get_mean_cov()
    if opts.rank != 0:
        return float('nan')
    return fid_from_stats(mu_real, sigma_real, mu_gen, sigma_gen)

#----------------------------------------------------------------------------
