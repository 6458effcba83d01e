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


def up_to_typical(opt_batch: int, max_batch: int) -> list[int]:
    """The buckets of a CPU engine (IREE, TFLite): powers of two up to the first one holding ``opt_batch`` jets
    (the path's typical batch), never beyond ``max_batch``; bigger batches run in slices of the largest (each
    bucket's activations are held per stream: up to max_batch they would be ~100 kB per jet of the largest)."""
    return bucket_sizes(min(next_power_of_two(opt_batch), max(1, max_batch)))


def bucket_for(n: int, buckets: Sequence[int]) -> int | None:
    """The smallest bucket holding ``n`` jets; None when ``n`` is over the largest (run it in slices)."""
    for b in buckets:
        if b >= n:
            return b
    return None
