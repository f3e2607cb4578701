"""Per-example functions over a batch in cache-sized chunks, one loop, on CPUs.

The transforms of `TransformState` and `PhaseCollapse` act on each example alone;
`in_chunks` runs them over a large batch as a loop over chunks of at most
`CHUNK_BYTES` where that is faster (`CHUNKED_PLATFORMS`), and per device shard under
a Keras distribution.
"""

from __future__ import annotations

import math

__all__ = ["CHUNKED_PLATFORMS", "CHUNK_BYTES", "in_chunks"]

# Plan transforms of large batches run in chunks of at most this many input bytes,
# one loop iteration each: the working set stays in cache and XLA reuses the loop's
# buffers (every fresh buffer page costs a fault, about 1 us per 4 KB here). Measured
# 1.5-2.5x faster forward and backward at 64 x 64, L = 31, 32 x 16 maps per spin, than
# one pass. 512 KB chunks (one example of spherical MNIST's 64 x 64 convolutions)
# measured 3-5% faster training steps than 2 MB chunks in both configurations of
# `benchmarks/train_step.py` (alternating runs). Dense transforms are single GEMMs
# and measured no faster in chunks.
CHUNK_BYTES = 2**19
# Chunk loops pay only where a cache-sized pass beats one wide pass: on CPUs. On
# GPUs and TPUs a loop would run its iterations one after another, each far too
# small to fill the device, so the batch goes through whole there.
CHUNKED_PLATFORMS = ("cpu",)


def in_chunks(function, data):
    """Apply `function` (independent per example) to `data` in batch chunks.

    Chunks hold at most `CHUNK_BYTES` of input and run as one loop (``lax.map``) on
    the platforms of `CHUNKED_PLATFORMS` (JAX's default backend); data is passed
    whole elsewhere. Under a Keras distribution every device loops over the chunks
    of its own shard of the batch (``shard_map`` over the distribution's batch axis).
    """
    import jax
    import keras

    if data.shape[0] is None or jax.default_backend() not in CHUNKED_PLATFORMS:
        return function(data)
    distribution = keras.distribution.distribution()
    if distribution is None:
        return _chunk_loop(function, data)
    return _per_shard_chunk_loops(function, data, distribution)


def _chunk_loop(function, data):
    """`function` over `data` in batch chunks of at most `CHUNK_BYTES`, one loop."""
    import jax

    batch = data.shape[0]
    per_example = data.dtype.itemsize * math.prod(data.shape[1:])
    n_chunks = next(
        (
            count
            for count in range(1, batch + 1)
            if batch % count == 0 and (batch // count) * per_example <= CHUNK_BYTES
        ),
        batch,
    )
    if n_chunks == 1:
        return function(data)
    parts = data.reshape(n_chunks, batch // n_chunks, *data.shape[1:])
    out = jax.lax.map(function, parts)
    return out.reshape(batch, *out.shape[2:])


def _per_shard_chunk_loops(function, data, distribution):
    """`_chunk_loop` on each device's shard of the batch axis.

    Spherical-MNIST steps of `benchmarks/train_step.py --devices 2` (2 virtual CPU
    devices) measured 0.37-0.40 s this way, 0.74 s with one loop over chunks of the
    global batch (XLA gathers and reshards around it) and 0.90 s with no chunks;
    0.39-0.41 s on one device. `function` is independent per example, so the shards'
    outputs are the sharded output.
    """
    import jax
    from jax.sharding import PartitionSpec

    mesh = distribution.device_mesh.backend_mesh
    axis = distribution.batch_dim_name
    if axis not in mesh.axis_names or data.shape[0] % mesh.shape[axis]:
        return function(data)  # not split over devices as Keras splits batches
    spec = PartitionSpec(axis)
    # check_vma=False: `function` closes over the replicated transform tables.
    return jax.shard_map(
        lambda shard: _chunk_loop(function, shard),
        mesh=mesh,
        in_specs=spec,
        out_specs=spec,
        check_vma=False,
    )(data)
