"""The site adapter on LFW people standing in for sites: does a head fine-tuned on a site's own
enrolments help that site, clean and when the whole site's camera is grey or dark?

    .venv/bin/python bench/site_adapter_lfw.py [--sites 8] [--people 20] [--copies 2]

Sites: LFW people with at least 6 images, shuffled (seeded) into sites of `--people`; 6 images
each. Per person, 2 images are the site's report probes (never seen by the adapter) and 4 are
its enrolment: the adapter (`facegate/training/adapter.py`) trains on 3 of them (plus
`--copies` augmented copies of each, as a site with its enrolment photos at hand could make)
and holds 1 out for its keep-only-if-better guard. A condition applies to every image of the
site (its camera). The settings are fixed in advance (linear head, contrastive loss, which lost
least in `make bench-train-head`), not tuned here. Reported per condition: sites where the
guard kept the head; EER and rank-1 of the report probes against the site's enrolment
templates with the pretrained embedding and with what the adapter returned (the head if kept,
else the pretrained embedding); the mean training time per site.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from facegate.training.adapter import adapt_site, site_score  # noqa: E402
from facegate.training.data import embeddings_of, stacked_crops  # noqa: E402
from facegate.training.head import HeadTraining  # noqa: E402

CONDITIONS = ("clean", "grey", "dark")
SETTINGS = HeadTraining(head="linear", loss="contrastive", people=8, images=4, epochs=20, learning_rate=1e-3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "lfw-deepfunneled")
    parser.add_argument("--sites", type=int, default=8)
    parser.add_argument("--people", type=int, default=20)
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"LFW not found at {args.data}: nothing to measure", file=sys.stderr)
        return 2
    from facegate.evaluation.pipeline import FacePipeline
    from services.core import assets
    from services.detector.mtcnn_cascade import DetectorSettings

    started = time.monotonic()
    people = sorted(p.name for p in args.data.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 6)
    random.Random(args.seed).shuffle(people)
    people = people[:args.sites * args.people]
    names = [str(image.relative_to(args.data)) for person in people
             for image in sorted((args.data / person).glob("*.jpg"))[:6]]
    labels = np.array([n.split("/")[0] for n in names])
    report = np.tile(np.array([False] * 4 + [True] * 2), len(people))  # the last 2 images of each person
    pipeline = FacePipeline(detector_settings=DetectorSettings(min_face_size=40))
    cache = assets.home() / "cache"
    crops = stacked_crops(pipeline, args.data, names)
    vectors = {c: embeddings_of(pipeline, crops, args.seed + 7, c, cache) for c in CONDITIONS}
    enrolment = crops[~report]
    copies = [embeddings_of(pipeline, enrolment, args.seed + 1000 * (c + 1), "augmented", cache)
              for c in range(args.copies)]
    print(f"{len(names)} images of {len(people)} people in {args.sites} sites embedded in "
          f"{time.monotonic() - started:.0f} s", file=sys.stderr)

    print(f"{platform.machine()}, {os.cpu_count()} CPUs; {args.sites} sites of {args.people} LFW people, 6 images "
          f"each (4 enrolment: 3 to train + 1 for the guard; 2 report probes), {args.copies} augmented copies; seed "
          f"{args.seed}")
    print("| site camera | sites where the head was kept | report EER, pretrained | report EER, adapter | "
          "rank-1, pretrained | rank-1, adapter | training s per site |")
    print("|---|---|---|---|---|---|---|")
    for condition in CONDITIONS:
        kept, eer_before, eer_after, rank_before, rank_after, seconds = 0, [], [], [], [], []
        for s in range(args.sites):
            site = np.isin(labels, people[s * args.people:(s + 1) * args.people])
            enrol, probe = site & ~report, site & report
            x, y = vectors[condition][enrol], labels[enrol]
            augmented = [c[site[~report]] for c in copies]  # the site's rows among the enrolment crops
            began = time.monotonic()
            adaptation = adapt_site(x, y, SETTINGS, augmented=augmented, seed=args.seed + s)
            seconds.append(time.monotonic() - began)
            before = site_score(x, y, vectors[condition][probe], labels[probe])
            if adaptation.kept and adaptation.head is not None:
                kept += 1
                after = site_score(adaptation.head.predict(x, verbose=0), y,
                                   adaptation.head.predict(vectors[condition][probe], verbose=0), labels[probe])
            else:
                after = before
            eer_before.append(before.eer)
            eer_after.append(after.eer)
            rank_before.append(before.rank1)
            rank_after.append(after.rank1)
        print(f"| {condition} | {kept} of {args.sites} | {100 * np.mean(eer_before):.2f}% | "
              f"{100 * np.mean(eer_after):.2f}% | {100 * np.mean(rank_before):.1f}% | {100 * np.mean(rank_after):.1f}% "
              f"| {statistics.mean(seconds):.0f} |")
    print(f"\n{time.monotonic() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
