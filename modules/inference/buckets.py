"""Static batch shapes for compiled engines (jax/XLA, IREE; TensorRT's profile is the same idea).

A compiled engine runs fastest on a static input shape, so it compiles one executable per *batch
bucket* and pads a batch with zero jets up to its bucket. One rule for every such backend: the
buckets are the powers of two up to a limit, plus the limit itself when it is not one.
"""

from __future__ import annotations

from typing import Sequence


def bucket_sizes(limit: int) -> list[int]:
    """Powers of two up to ``limit``, and ``limit`` itself when it is not one (``limit`` >= 1)."""
    if limit < 1:
        raise ValueError(f"the largest batch bucket must be at least 1, got {limit}")
    sizes = [1 << k for k in range(limit.bit_length()) if (1 << k) <= limit]
    return sizes if sizes[-1] == limit else [*sizes, limit]


def next_power_of_two(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def bucket_for(n: int, buckets: Sequence[int]) -> int | None:
    """The smallest bucket holding ``n`` jets; None when ``n`` is over the largest (run it in slices)."""
    for b in buckets:
        if b >= n:
            return b
    return None
