"""Inception Score (Salimans et al. 2016): exp of the mean KL divergence between each generated image's
class distribution and the marginal, over consecutive splits."""

import numpy as np

from . import metric_utils
from .frechet_inception_distance import INCEPTION_URL

#----------------------------------------------------------------------------

def is_from_probs(probs, num_splits):
    """Mean and population std of the per-split scores; split i is rows [i n / s, (i + 1) n / s)."""
    n = probs.shape[0]
    scores = []
    for i in range(num_splits):
        part = probs[i * n // num_splits : (i + 1) * n // num_splits]
        marginal = np.mean(part, axis=0, keepdims=True)
        kl = np.sum(part * (np.log(part) - np.log(marginal)), axis=1)
        scores.append(np.exp(np.mean(kl)))
    return float(np.mean(scores)), float(np.std(scores))

def compute_is(opts, num_gen, num_splits):
    detector_kwargs = dict(no_output_bias=True) # Softmax of the 1008 logits computed without the output bias.
    gen_probs = metric_utils.compute_feature_stats_for_generator(opts=opts, detector_url=INCEPTION_URL,
        detector_kwargs=detector_kwargs, capture_all=True, max_items=num_gen).get_all()
    if opts.rank != 0:
        return float('nan'), float('nan')
    return is_from_probs(gen_probs, num_splits=num_splits)

#----------------------------------------------------------------------------
