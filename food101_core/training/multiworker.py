"""Keras 3 `fit` under `tf.distribute.MultiWorkerMirroredStrategy` (`--strategy multiworker`, several machines).

Keras 3.15 does not run `fit` under this strategy as it stands (keras-team/keras#20585, open; TensorFlow's own
multi-worker tutorial fails the same way). Its TensorFlow trainer
1. reduces the first distributed batch across workers only to learn its shapes for the symbolic build, which this
   strategy cannot do for an (images, labels) pair, and
2. averages each step's scalar logs (loss, accuracy) "over axis 0", which a scalar does not have.
`patch_keras` replaces those two steps, and only those, for a run with this strategy: the shapes come from the
worker's own share of the batch, and a scalar is averaged as a scalar. Everything else (the gradients' all-reduce,
the variables kept in sync) is TensorFlow's. A final short batch would leave a worker with an empty share, so
training and validation batches are kept whole under any distribution strategy (`data.whole_batches`; a batch of
one on two replicas fails in TensorFlow's CPU kernels), and stage 1's features are computed by each worker on its
own (`local_predict`) instead of sharded and gathered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras
    import tensorflow as tf


def patch_keras() -> None:
    """Make Keras 3's TensorFlow trainer work under MultiWorkerMirroredStrategy (idempotent)."""
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer, "_food101_multiworker", False):
        return
    reduce_per_replica = trainer.reduce_per_replica

    def local_share(strategy, value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None:
            return
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tf.nest.map_structure(lambda v: local_share(self.distribute_strategy, v), next(it))
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def reduce_logs(values, strategy, reduction):
        if not (trainer._collective_all_reduce_multi_worker(strategy) and reduction in ("auto", "mean")):
            return reduce_per_replica(values, strategy, reduction)

        def mean(v):
            rank = local_share(strategy, v).shape.rank
            return strategy.reduce("MEAN", v, axis=0 if rank else None)

        return tf.nest.map_structure(mean, values)

    trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    trainer.reduce_per_replica = reduce_logs
    trainer._food101_multiworker = True


def local_predict(model: keras.Model, ds: tf.data.Dataset) -> np.ndarray:
    """The model's outputs over a dataset, computed by this worker alone (no sharding, no gather)."""
    import tensorflow as tf

    step = tf.function(lambda x: model(x, training=False))
    return np.concatenate([step(x).numpy() for x in ds])
