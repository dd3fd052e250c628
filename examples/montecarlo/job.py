"""A Monte Carlo job: the function `simulate` is what we ship to the cluster.

`simulate` needs numpy (directly and through helpers.estimate_pi); `upload` needs requests.
lfm-pack packs `simulate` without requests: that import is replaced by a placeholder that
raises only if someone calls `upload` inside the pack.
"""

import json
import math

import requests  # used only by upload(): not in the closure of simulate()

from helpers import estimate_pi

TOLERANCE = 0.05


def simulate(samples: int = 100_000, seed: int = 0) -> dict:
    """Estimate pi with `samples` random points and say whether we are within tolerance."""
    pi = estimate_pi(samples, seed)
    return {"samples": samples, "pi": pi, "error": abs(pi - math.pi), "ok": abs(pi - math.pi) < TOLERANCE}


def upload(result: dict, url: str) -> int:
    """Post a result somewhere (never called on the cluster)."""
    return requests.post(url, data=json.dumps(result), timeout=10).status_code


if __name__ == "__main__":
    print(simulate())
