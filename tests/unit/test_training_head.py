"""The head trained on frozen embeddings: starts as the identity, learns, repeats under a seed."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from facegate.training.head import HeadTraining, build_head, train_head  # noqa: E402 (after the import check)


def people(seed: int = 0, count: int = 24, images: int = 6, dim: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors whose identity lives in a few directions, drowned by a nuisance direction
    (as lighting or pose moves an embedding): what a head can learn to discount."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(count), images)
    centres = np.zeros((count, dim))
    centres[:, :4] = rng.normal(size=(count, 4))
    x = centres[labels] + 0.3 * rng.normal(size=(len(labels), dim))
    x[:, 4] += 3.0 * rng.normal(size=len(labels))  # nuisance
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


SMALL = HeadTraining(people=8, images=4, epochs=15, learning_rate=1e-2, margin=0.2)


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test__an_untrained_head_is_the_identity(head):
    x, _ = people()
    model = build_head(x.shape[1], HeadTraining(head=head))
    assert np.allclose(model(x).numpy(), x, atol=1e-5)


@pytest.mark.parametrize("loss", ["semi_hard", "batch_hard", "contrastive"])
def test__training_lowers_the_loss_and_separates_people_better(loss):
    x, labels = people()
    model, log = train_head(x, labels, HeadTraining(**{**SMALL.__dict__, "loss": loss}))

    def gap(vectors: np.ndarray) -> float:
        d = np.linalg.norm(vectors[:, None] - vectors[None], axis=2)
        same = labels[:, None] == labels[None]
        return float(d[~same].mean() - d[same & ~np.eye(len(labels), dtype=bool)].mean())

    assert log.losses[-1] < log.losses[0]
    assert gap(model(x).numpy()) > gap(x)
    assert np.allclose(np.linalg.norm(model(x).numpy(), axis=1), 1.0, atol=1e-5)


def test__the_same_seed_trains_the_same_head():
    x, labels = people()
    first, _ = train_head(x, labels, SMALL)
    second, _ = train_head(x, labels, SMALL)
    assert np.allclose(first(x).numpy(), second(x).numpy(), atol=1e-6)


def test__bad_settings_are_refused_naming_the_choices():
    with pytest.raises(ValueError, match="one of batch_all"):
        HeadTraining(loss="hinge")
    with pytest.raises(ValueError, match="one of linear, mlp"):
        HeadTraining(head="transformer")
    with pytest.raises(ValueError, match="N x D with one label each"):
        train_head(np.zeros((4, 3), np.float32), np.zeros(5), SMALL)


def test__training_stopped_half_way_resumes_from_its_checkpoint_to_the_same_head(tmp_path):
    x, y = people()
    whole, _ = train_head(x, y, replace(SMALL, epochs=6))
    train_head(x, y, replace(SMALL, epochs=3), checkpoints=tmp_path / "run")  # stopped after 3 epochs
    resumed, log = train_head(x, y, replace(SMALL, epochs=6), checkpoints=tmp_path / "run")

    assert len(log.losses) == 3  # only epochs 4 to 6 were trained again
    assert sorted(p.name for p in (tmp_path / "run").glob("ckpt-*.index")) == ["ckpt-4.index", "ckpt-5.index",
                                                                             "ckpt-6.index"]
    assert np.allclose(resumed.predict(x, verbose=0), whole.predict(x, verbose=0), atol=1e-5)


def test__a_checkpoint_directory_of_another_run_is_refused_not_resumed_from(tmp_path):
    x, y = people()
    train_head(x, y, replace(SMALL, epochs=2), checkpoints=tmp_path / "run")

    with pytest.raises(ValueError, match="holds the checkpoints of another run"):
        train_head(x, y, replace(SMALL, epochs=2, loss="contrastive"), checkpoints=tmp_path / "run")
    with pytest.raises(ValueError, match="holds the checkpoints of another run"):
        train_head(x[::-1].copy(), y, replace(SMALL, epochs=2), checkpoints=tmp_path / "run")
