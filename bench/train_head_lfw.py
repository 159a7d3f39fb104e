"""A head trained on the frozen embedding: does it help? Trained on LFW View 1 DevTrain people,
scored on DevTest people (the two share none), never on pairs.txt.

    python bench/train_head_lfw.py --data ../shared/data/lfw-deepfunneled --pairs ../shared/data/lfw-pairs [--copies 2]

Every image named by pairsDevTrain.txt is aligned once (MTCNN, as the pipeline does) and embedded
clean and as `--copies` augmented copies (`facegate/training/augment.py`, seeded); the embeddings
are cached in $FACEGATE_HOME/cache. Heads (linear and residual MLP) are trained with each loss on
them (`facegate/training/head.py`). Scored on DevTest's images, clean and as grey/dark copies
(the same augmentation with only that operation): the accuracy on DevTest's own 1,000 pairs at
the threshold that is best on DevTrain's pairs, and TAR at FAR 1e-3 over every pair of DevTest's
images (hundreds of thousands of impostor pairs: FAR 1e-3 is measurable there, not on 500).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from facegate.evaluation.calibration import pair_distances  # noqa: E402
from facegate.evaluation.lfw import read_pairs  # noqa: E402
from facegate.evaluation.verification import best_threshold, tar_at_far  # noqa: E402
from facegate.training.data import embeddings_of, stacked_crops  # noqa: E402

CONDITIONS = ("clean", "grey", "dark")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--pairs", type=Path, required=True, help="the folder with pairsDevTrain.txt, pairsDevTest.txt")
    parser.add_argument("--copies", type=int, default=2, help="augmented copies of each training image")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.data.is_dir() or not (args.pairs / "pairsDevTrain.txt").is_file():
        sys.exit(f"need the LFW images (--data {args.data}) and View 1 pairs files (--pairs {args.pairs})")
    from facegate.evaluation.pipeline import FacePipeline
    from facegate.training.head import HEADS, HeadTraining, train_head
    from facegate.training.losses import LOSSES
    from services.core import assets
    from services.detector.mtcnn_cascade import DetectorSettings

    started = time.monotonic()
    pipeline = FacePipeline(detector_settings=DetectorSettings(min_face_size=40))
    cache = assets.home() / "cache"
    train_pairs, test_pairs = read_pairs(args.pairs / "pairsDevTrain.txt"), read_pairs(args.pairs / "pairsDevTest.txt")
    train_names = sorted({p.first for p in train_pairs} | {p.second for p in train_pairs})
    test_names = sorted({p.first for p in test_pairs} | {p.second for p in test_pairs})
    train_crops, test_crops = stacked_crops(pipeline, args.data, train_names), stacked_crops(pipeline, args.data,
                                                                                            test_names)
    clean = embeddings_of(pipeline, train_crops, args.seed, "clean", cache)
    copies = [embeddings_of(pipeline, train_crops, args.seed + 1000 * (c + 1), "augmented", cache)
              for c in range(args.copies)]
    train_x = np.concatenate([clean, *copies])
    train_y = np.tile(np.array([n.split("/")[0] for n in train_names]), 1 + args.copies)
    test = {c: embeddings_of(pipeline, test_crops, args.seed + 7, c, cache) for c in CONDITIONS}
    index = {n: i for i, n in enumerate(test_names)}
    train_index = {n: i for i, n in enumerate(train_names)}
    test_labels = np.array([n.split("/")[0] for n in test_names])
    print(f"embedded {len(train_names)} DevTrain images x {1 + args.copies} and {len(test_names)} DevTest images x "
          f"{len(CONDITIONS)} in {time.monotonic() - started:.0f} s", file=sys.stderr)

    def score(transform) -> list[str]:
        train_vectors = transform(clean)
        d_train = np.array([np.linalg.norm(train_vectors[train_index[p.first]] - train_vectors[train_index[p.second]])
                            for p in train_pairs])
        threshold = best_threshold(d_train, np.array([p.same for p in train_pairs]))
        cells = []
        for condition in CONDITIONS:
            vectors = transform(test[condition])
            d = np.array([np.linalg.norm(vectors[index[p.first]] - vectors[index[p.second]]) for p in test_pairs])
            same = np.array([p.same for p in test_pairs])
            accuracy = np.mean((d <= threshold) == same)
            genuine, impostor = pair_distances(vectors, test_labels)
            tar = tar_at_far(np.concatenate([genuine, impostor]),
                             np.concatenate([np.ones(len(genuine), bool), np.zeros(len(impostor), bool)]), 1e-3)
            cells.append(f"{100 * accuracy:.1f}% / {100 * tar:.1f}%")
        return cells

    print(f"LFW View 1, seed {args.seed}: heads trained on {len(train_names)} DevTrain images (clean + {args.copies} "
          f"augmented copies each), scored on {len(test_names)} DevTest images (no person in common); "
          "cells: DevTest pairs accuracy at DevTrain's best threshold / TAR at FAR 1e-3 over all DevTest image pairs")
    print("| head | loss | train s | " + " | ".join(CONDITIONS) + " |")
    print("|---|---|---|" + "---|" * len(CONDITIONS))
    print("| none (the pretrained embedding) | - | - | " + " | ".join(score(lambda x: x)) + " |")
    for head in HEADS:
        for loss in LOSSES:
            began = time.monotonic()
            model, _ = train_head(train_x, train_y, HeadTraining(head=head, loss=loss, epochs=args.epochs,
                                                                 seed=args.seed))
            seconds = time.monotonic() - began
            print(f"| {head} | {loss} | {seconds:.0f} | "
                  + " | ".join(score(lambda x, m=model: m.predict(x, batch_size=4096, verbose=0))) + " |",
                  flush=True)
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
