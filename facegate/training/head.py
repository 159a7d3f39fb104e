"""A small head trained on top of the frozen embedding: the part of FaceNet's recipe a 2-core
CPU can afford.

The backbone (dlib's ResNet) stays frozen: its 128-d unit embeddings of (augmented) aligned
crops are computed once and cached, and only a projection on top of them is trained with a
metric-learning loss (`losses.LOSSES`) on P x K batches (`sampler.PKSampler`). The head starts
as the identity (a linear head) or close to it (a residual MLP), so training starts from the
pretrained embedding rather than from noise, and its output is L2-normalised again, so the
matcher's distances and thresholds keep their meaning (a head's own card recalibrates them).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from facegate.training.losses import LOSSES
from facegate.training.sampler import PKSampler

HEADS = ("linear", "mlp")
RUN_FILE = "run.json"  # in a checkpoint directory: the settings and data its checkpoints belong to


@dataclass(frozen=True)
class HeadTraining:
    """How a head is trained (the defaults are what fits a 2-core CPU in minutes)."""

    head: str = "linear"
    loss: str = "semi_hard"
    margin: float = 0.2
    people: int = 64  # P: identities per batch (the triplet mask is (P K)^3 booleans)
    images: int = 4  # K: images per identity
    epochs: int = 20
    learning_rate: float = 1e-3
    seed: int = 0
    hidden: int = 256  # the MLP's hidden width

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"head {self.head!r}; one of {', '.join(HEADS)}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss {self.loss!r}; one of {', '.join(LOSSES)}")
        if not 0 < self.margin < 2:
            raise ValueError(f"margin {self.margin}: must be in (0, 2) (distances between unit vectors)")
        if self.epochs < 1 or self.learning_rate <= 0:
            raise ValueError(f"epochs {self.epochs} and learning_rate {self.learning_rate} must be positive")


@dataclass
class TrainingLog:
    """Mean loss per epoch (and anything a caller's `progress` wants to keep)."""

    losses: list[float] = field(default_factory=list)


def build_head(dim: int, settings: HeadTraining) -> keras.Model:
    """The head: unit vector in, unit vector out; the identity map before training."""
    keras.utils.set_random_seed(settings.seed)
    inputs = keras.Input((dim,), name="embedding")
    if settings.head == "linear":
        x = keras.layers.Dense(dim, use_bias=False, kernel_initializer="identity", name="projection")(inputs)
    else:  # residual MLP whose residual starts at zero
        hidden = keras.layers.Dense(settings.hidden, activation="relu", name="hidden")(inputs)
        delta = keras.layers.Dense(dim, kernel_initializer="zeros", name="delta")(hidden)
        x = keras.layers.Add(name="residual")([inputs, delta])
    outputs = keras.layers.UnitNormalization(name="unit")(x)
    return keras.Model(inputs, outputs, name=f"head_{settings.head}")


def train_head(embeddings: np.ndarray, labels: np.ndarray, settings: HeadTraining,
               progress: Callable[[int, float], None] | None = None,
               checkpoints: Path | None = None) -> tuple[keras.Model, TrainingLog]:
    """Train a head on unit `embeddings` (N x D) of people `labels` (N); returns it and the
    mean loss per epoch. Deterministic under `settings.seed` on one machine.

    `checkpoints`: a directory where the head, the optimiser's state and the epoch are saved
    after every epoch (the last 3 kept); if it holds a checkpoint, training resumes after it
    (the batches of the epochs done are drawn again and skipped, so a resumed run trains on
    the same batches as an uninterrupted one). The log then holds the resumed epochs only. A
    checkpoint of another run (other settings, other data: `RUN_FILE` says which) is refused
    (ValueError), never resumed from."""
    embeddings = np.asarray(embeddings, np.float32)
    if embeddings.ndim != 2 or len(embeddings) != len(labels):
        raise ValueError(f"embeddings must be N x D with one label each; got {embeddings.shape} and {len(labels)}")
    model = build_head(embeddings.shape[1], settings)
    loss_of = LOSSES[settings.loss]
    optimizer = keras.optimizers.Adam(settings.learning_rate)
    _, owner = np.unique(np.asarray(labels), return_inverse=True)
    sampler = PKSampler(owner, settings.people, settings.images, settings.seed)

    @tf.function(reduce_retracing=True)  # eager Keras is ~10x slower here
    def step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            value = loss_of(y, model(x, training=True), settings.margin)
        optimizer.apply_gradients(zip(tape.gradient(value, model.trainable_variables), model.trainable_variables,
                                      strict=True))
        return value

    done = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_done")
    manager = None
    if checkpoints is not None:
        run = json.dumps({**asdict(settings), "epochs": None, "data": hashlib.sha256(
            embeddings.tobytes() + np.asarray(owner).tobytes()).hexdigest()}, sort_keys=True)
        recorded = checkpoints / RUN_FILE
        if recorded.is_file() and recorded.read_text() != run:
            raise ValueError(f"{checkpoints} holds the checkpoints of another run (other settings or data: see "
                             f"{recorded}); remove it or name another checkpoint directory")
        checkpoints.mkdir(parents=True, exist_ok=True)
        recorded.write_text(run)
        state = tf.train.Checkpoint(head=model, optimizer=optimizer, epochs_done=done)
        manager = tf.train.CheckpointManager(state, str(checkpoints), max_to_keep=3)
        if manager.latest_checkpoint:
            state.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    log = TrainingLog()
    for epoch in range(settings.epochs):
        batches = list(sampler)  # drawn for every epoch, so a resumed run sees the same batches
        if epoch < int(done.numpy()):
            continue
        values = [float(step(tf.constant(embeddings[rows]), tf.constant(owner[rows]))) for rows in batches]
        log.losses.append(float(np.mean(values)))
        done.assign(epoch + 1)
        if manager is not None:
            manager.save(checkpoint_number=epoch + 1)
        if progress:
            progress(epoch + 1, log.losses[-1])
    return model, log
