"""How far a draft embedding (one pass, without the mirror the card averages with) lies from the
full one, measured as the gateway uses it: a door's probe as a draft against a gallery of full
embeddings. Chooses each model card's `draft_margin`.

    .venv/bin/python bench/draft_margin_lfw.py [--margins 0.01 0.02 0.03 0.05 0.06 0.08]

Faces as in bench/embedders_lfw.py (every image of pairs.txt and pairsDevTrain.txt detected once,
the same landmarks aligned to each model's template). Pairs: every ordered pair among the
pairs.txt images of the people who are not in pairsDevTrain.txt (the thresholds were chosen on
those), the first as a draft probe, the second as a full template. Per model, at its card's
FAR 1e-3 threshold t: false accepts and rejects of full/full (today's), draft/full and
draft/draft; the spread |d(draft, full) - d(full, full)|; and per margin m, the share of genuine
and impostor pairs whose draft distance lies within m of t (the gateway embeds those again in
full) and how many pairs outside that band the draft would decide differently from the full
embedding. The card's margin is the smallest here at which none (or a handful in millions)
would.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from capture_conditions_lfw import distances  # noqa: E402
from embedders_lfw import DATA, MODELS, embed_all, landmarks_of  # noqa: E402

from facegate.evaluation.lfw import read_pairs  # noqa: E402
from services.detector.mtcnn_cascade import DetectorSettings, MtcnnDetector  # noqa: E402
from services.embedder.models import load_embedder  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA / "lfw-deepfunneled")
    parser.add_argument("--pairs", type=Path, default=DATA / "lfw-pairs" / "pairs.txt")
    parser.add_argument("--dev-train", type=Path, default=DATA / "lfw-pairs" / "pairsDevTrain.txt")
    parser.add_argument("--margins", type=float, nargs="+", default=[0.01, 0.02, 0.03, 0.05, 0.06, 0.08])
    args = parser.parse_args()
    if not args.data.is_dir() or not args.pairs.is_file() or not args.dev_train.is_file():
        print(f"LFW not found ({args.data}, {args.pairs}, {args.dev_train}): nothing to measure", file=sys.stderr)
        return 2
    started = time.monotonic()
    test = {n for p in read_pairs(args.pairs) for n in (p.first, p.second)}
    dev_people = {n.split("/")[0] for p in read_pairs(args.dev_train) for n in (p.first, p.second)}
    names = sorted(n for n in test if n.split("/")[0] not in dev_people)
    landmarks = landmarks_of(MtcnnDetector(DetectorSettings(min_face_size=40)), args.data, names)
    people = np.array([n.split("/")[0] for n in names])
    pair = ~np.eye(len(names), dtype=bool)
    genuine = (people[:, None] == people[None, :]) & pair
    impostor = people[:, None] != people[None, :]
    print(f"{len(names):,} images of {len(set(people)):,} people not in pairsDevTrain.txt: {genuine.sum():,} genuine "
          f"and {impostor.sum():,} impostor ordered pairs")
    for name in MODELS:
        embedder = load_embedder(name, runtime="litert")
        full = embed_all(embedder, args.data, names, landmarks)
        draft_embedder = load_embedder(name, runtime="litert")
        draft_embedder.card = replace(draft_embedder.card, flip_average=False)
        draft = embed_all(draft_embedder, args.data, names, landmarks)
        t = embedder.card.far_thresholds["0.001"]
        by = {"full/full": distances(full, full), "draft/full": distances(draft, full),
              "draft/draft": distances(draft, draft)}
        print(f"\n{name} (card FAR 1e-3 threshold {t:.4f}; card draft_margin {embedder.card.draft_margin:g})")
        print("| probe/template | FAR at t | FRR at t |\n|---|---|---|")
        for label, d in by.items():
            print(f"| {label} | {np.mean(d[impostor] <= t):.2e} | {100 * np.mean(d[genuine] > t):.2f}% |")
        spread = np.abs(by["draft/full"] - by["full/full"])[pair]
        print("|d(draft, full) - d(full, full)| percentiles 50/90/99/99.9/99.99: "
              + " / ".join(f"{v:.4f}" for v in np.percentile(spread, [50, 90, 99, 99.9, 99.99])))
        print("| margin | genuine pairs within it of t (embedded again) | impostor pairs within it | decided "
              "differently outside it: genuine | impostor |\n|---|---|---|---|---|")
        near_full, near_draft = by["full/full"] <= t, by["draft/full"] <= t
        for margin in args.margins:
            outside = np.abs(by["draft/full"] - t) > margin
            differ = (near_full != near_draft) & outside
            within = (100 * np.mean(~outside[genuine]), 100 * np.mean(~outside[impostor]))
            print(f"| {margin:g} | {within[0]:.1f}% | {within[1]:.3f}% | {differ[genuine].sum()} | "
                  f"{differ[impostor].sum()} |")
    print(f"\n{time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
