"""Clustering quality on LFW: pairwise precision and recall against the true identities.

    python bench/cluster_lfw.py --data ../shared/data/lfw-deepfunneled [--faces 3000] [--seed 0]

A seeded sample of images (all images of randomly drawn people until --faces is reached, so
each person is either fully in or out) is clustered at several cut distances; embeddings are
cached by bench/openset_lfw.py's helper.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from openset_lfw import embed_lfw

from services.matcher.clustering import cluster_faces, pairwise_precision_recall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--faces", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    embeddings, labels = embed_lfw(args.data)
    people = np.random.default_rng(args.seed).permutation(np.unique(labels))
    chosen: list[int] = []
    for person in people:
        if len(chosen) >= args.faces:
            break
        chosen += list(np.flatnonzero(labels == person))
    vectors, truth = embeddings[chosen], labels[chosen]
    print(f"LFW clustering: {len(chosen)} faces of {len(np.unique(truth))} people (seed {args.seed})")
    print("| cut distance | clusters | pairwise precision | pairwise recall |")
    print("|---|---|---|---|")
    for cut in (0.30, 0.35, 0.40, 0.45, 0.50):
        predicted = cluster_faces(vectors, cut)
        precision, recall = pairwise_precision_recall(predicted, truth)
        print(f"| {cut:.2f} | {len(np.unique(predicted))} | {100 * precision:.1f}% | {100 * recall:.1f}% |")


if __name__ == "__main__":
    main()
