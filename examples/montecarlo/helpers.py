"""Numerics used by job.simulate."""

import numpy as np


def estimate_pi(samples: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    xy = rng.random((samples, 2))
    inside = np.count_nonzero((xy**2).sum(axis=1) <= 1.0)
    return float(4.0 * inside / samples)


def plot(points):  # never reached from simulate()
    import matplotlib.pyplot as plt

    plt.scatter(points[:, 0], points[:, 1])
