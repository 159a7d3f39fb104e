"""1:K calibration on LFW: the false-accept rate per stranger as the gallery grows, with the
card's pair threshold and with thresholds chosen per gallery size.

    python bench/gallery_size_lfw.py --data ../shared/data/lfw-deepfunneled [--seed 0] [--card-json F]

People are split in halves as in bench/openset_lfw.py (same seed, same split). On the first
half (calibration), galleries of K people are drawn repeatedly and, per K and target FAR, the
threshold is chosen that lets that share of stranger probes be accepted under the matcher's rule
(facegate/evaluation/openset.py); these are the card's `gallery_bands`. On the second half
(report), fresh galleries measure what each threshold does: FAR per probe (one frame), DIR
(genuine probes accepted as the right person), and FAR per stranger *track* as the gateway
decides it (`services.gateway.tracking.fuse`, 2 agreeing frames, at most 4 embedded), with the
track's frames being different photos of one stranger. Embeddings: bench/openset_lfw.py's cache.
LFW's label noise (one person under two spellings, one photograph under two names) is cleaned
first (`facegate.evaluation.lfw.SAME_PERSON`, `SAME_PHOTO`): at FAR 1e-4 it is most of what a
stranger "accepted" would be.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from openset_lfw import embed_lfw

from facegate.evaluation.lfw import person_labels
from facegate.evaluation.openset import accept_scores, card_bands, gallery_trials, identity_distances
from services.core.model_card import DEFAULT_MODEL, load_card
from services.gateway.tracking import Observation, fuse

SIZES = (10, 30, 100, 300, 1000, 2000)
FARS = (1e-2, 1e-3, 1e-4)


MIN_STRANGERS = 200_000  # pooled stranger probes per size: 20 expected false accepts at FAR 1e-4


def galleries_for(size: int) -> int:
    """At least this many galleries per size (more are drawn until MIN_STRANGERS probes)."""
    return max(10, 3000 // size)


def track_far(similarity: np.ndarray, labels: np.ndarray, size: int, galleries: int, threshold: float, gap: float,
              rng: np.random.Generator, frames_needed: int = 2, max_embeddings: int = 4) -> tuple[float, int]:
    """Share of stranger tracks the gateway would grant to someone: a track is up to
    `max_embeddings` photos of one person not enrolled (people with >= 2 photos), fed to `fuse`
    frame by frame until it reaches a verdict."""
    people, owner = np.unique(labels, return_inverse=True)
    images = [np.flatnonzero(owner == p) for p in range(len(people))]
    granted = tracks = 0
    for _ in range(galleries):
        enrolled = rng.choice(len(people), size, replace=False)
        gallery, gallery_owner = [], []
        for slot, person in enumerate(enrolled):
            idx = rng.permutation(images[person])
            kept = max(1, min(3, len(idx) - 1))
            gallery += list(idx[:kept])
            gallery_owner += [slot] * kept
        strangers = [p for p in np.setdiff1d(np.arange(len(people)), enrolled) if len(images[p]) >= 2]
        frames = [rng.permutation(images[p])[:max_embeddings] for p in strangers]
        flat = np.concatenate(frames)
        best = identity_distances(similarity[np.ix_(flat, gallery)], np.asarray(gallery_owner), size)
        score, nearest = accept_scores(best, gap)
        d1 = best[np.arange(len(flat)), nearest]
        start = 0
        for track in frames:
            observations: list[Observation] = []
            for i in range(start, start + len(track)):
                accepted, ambiguous = bool(score[i] <= threshold), bool(np.isinf(score[i]) and d1[i] <= threshold)
                who = str(nearest[i])
                observations.append(Observation(who, who, float(d1[i]), accepted, ambiguous, threshold,
                                                frozenset({who}) if accepted or ambiguous else frozenset()))
                verdict = fuse(observations, frames_needed, max_embeddings)
                if verdict is not None:
                    granted += verdict.kind == "match"
                    break
            tracks += 1
            start += len(track)
    return granted / tracks, tracks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--card-json", type=Path, default=None, help="write the calibrated bands here")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="a known model")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"need the LFW image folder (--data {args.data})")
    started = time.monotonic()
    embeddings, _ = embed_lfw(args.data, args.model)
    labels, usable = person_labels(sorted(str(p.relative_to(args.data)) for p in args.data.glob("*/*.jpg")))
    embeddings, labels = embeddings[usable], labels[usable]
    people = np.unique(labels)
    calibration, report = np.array_split(np.random.default_rng(args.seed).permutation(people), 2)
    card = load_card(args.model)
    gap = card.ambiguity_gap

    def half(names: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = np.flatnonzero(np.isin(labels, names))
        return embeddings[idx] @ embeddings[idx].T, labels[idx]

    sim, lab = half(calibration)
    trials = [gallery_trials(sim, lab, size, galleries_for(size), gap, np.random.default_rng(args.seed + size),
                             min_strangers=MIN_STRANGERS) for size in SIZES]
    bands = card_bands(trials, FARS, card.far_thresholds)
    for trial, band in zip(trials, bands, strict=True):
        band["stranger_probes"], band["galleries"] = len(trial.impostor_scores), trial.galleries
        print(f"calibrated K={trial.size}: {len(trial.impostor_scores):,} stranger probes over {trial.galleries} "
              f"galleries -> {band['far_thresholds']}", file=sys.stderr)

    sim, lab = half(report)
    print(f"{card.model_key}, LFW 1:K, seed {args.seed}: thresholds chosen on {len(calibration)} people, measured "
          f"on the other {len(report)} ({len(lab)} images); matcher rule: nearest identity within the threshold and "
          f"the second at least {gap} farther; up to 3 templates per person, <= 5 stranger photos per person")
    print("| K enrolled | target FAR | card threshold (1:1) | FAR per probe | DIR | per-K threshold | "
          "FAR per probe | DIR | FAR per stranger track (2 of <= 4 frames) | stranger probes |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for band in bands:
        size = int(band["max_identities"])
        measured = gallery_trials(sim, lab, size, galleries_for(size), gap, np.random.default_rng(args.seed + 7 * size),
                                  min_strangers=MIN_STRANGERS)
        for far in (1e-3, 1e-4):
            pair, per_k = card.far_thresholds[f"{far:g}"], band["far_thresholds"][f"{far:g}"]
            tracks, n_tracks = track_far(sim, lab, size, max(2, galleries_for(size) // 4), per_k, gap,
                                         np.random.default_rng(args.seed + 11 * size))
            print(f"| {size} | {far:g} | {pair:.4f} | {measured.far(pair):.1e} | {100 * measured.dir(pair):.1f}% "
                  f"| {per_k:.4f} | {measured.far(per_k):.1e} | {100 * measured.dir(per_k):.1f}% "
                  f"| {tracks:.1e} ({n_tracks:,} tracks) | {len(measured.impostor_scores):,} |")
    print(f"({time.monotonic() - started:.0f} s)")
    if args.card_json:
        args.card_json.write_text(json.dumps(bands, indent=2))


if __name__ == "__main__":
    main()
