"""Capture conditions on LFW: FAR/FRR and open-set DIR when door cameras degrade the probe, before
and after a condition estimate selects a stricter threshold (issue 14, "capture conditions").

    python bench/capture_conditions_lfw.py --data ../shared/data/lfw-deepfunneled [--seed 0]

Protocol (people-disjoint, seeded): LFW people split in two halves exactly as
bench/openset_lfw.py does; half 0 calibrates, half 1 is reported on. From each half, `--multi`
people with >= 2 photos (up to `--per-person` photos each) and `--single` one-photo people.
Every chosen photo is degraded (facegate/evaluation/conditions.py, seeded per photo) *before*
detection, detected (MTCNN, min face 40 px, the face nearest the centre kept), aligned and
embedded once per condition. A photo whose face is not found is a detector miss: no fallback
crop, it is rejected (a false reject if genuine, never a false accept). Templates are clean.
- verification: clean template vs degraded probe, every ordered pair of different photos: FAR
  over the impostor pairs (different people), FRR over the genuine ones; then both photos
  degraded (a site enrolling from its own cameras), each pair once;
- open set: `--repeats` galleries of `--gallery` people enrolled from one photo each (clean,
  then degraded); their other photos are genuine probes, every photo of a person not enrolled
  an impostor probe; the matcher's rule at the card's 1:K threshold for K identities: accept
  iff the nearest identity is within it and the second-nearest is at least the card's
  ambiguity gap farther. FAR per impostor probe; DIR = genuine probes accepted as the right
  person;
- after: flags from capture features (`ConditionEstimator`; each cut-off the one that best
  tells the conditions it is meant for from clean photos of the calibration half) lower the
  threshold: per flag, a pair threshold calibrated on the calibration half for the card's FAR
  on the impostor pairs the flag governs (one for a flagged probe, one for a probe and template
  sharing the flag); the open set's 1:K threshold is lowered by as much. Three rules are
  fitted (`fit`) and the one kept is chosen on the calibration half (FAR within 2x of the
  target on every condition there, then the lowest FRR).
Prints the tables and the chosen rule as the model card's `condition_thresholds` entry (JSON).
Embeddings and features are cached in $FACEGATE_HOME/cache: the first run embeds ~4,700 photos
x 8 conditions (~18 min on 2 cores), a rerun takes ~3 min.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import marshal
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facegate.evaluation.calibration import threshold_at_far
from facegate.evaluation.conditions import (
    DEGRADATIONS,
    ConditionEstimator,
    choose_cutoff,
    flag_rows,
    pair_thresholds,
    rng_for,
)
from services.core.capture import FEATURES, FlagRule, capture_features

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported (in main)


@dataclass(frozen=True)
class Embedded:
    """One image set under one condition: per photo, whether a face was found, its embedding, its
    box and its capture features (with the detector's score and quality). The cache also keeps
    each face's landmarks, for a pose cue later."""

    names: np.ndarray
    found: np.ndarray  # bool
    vectors: np.ndarray  # (n, d) unit vectors; zeros where not found
    boxes: np.ndarray  # (n, 4) x, y, w, h; NaN where not found
    features: dict[str, np.ndarray]  # capture features, "score" and "quality" -> (n,); NaN where not found


def sample(labels: np.ndarray, people: np.ndarray, seed: int, multi: int, single: int, per_person: int) -> list[int]:
    """Indices of the chosen photos of `people`: a seeded sample of people with >= 2 photos
    (up to `per_person` photos each, seeded) and of one-photo people."""
    rng = np.random.default_rng(seed)
    counts = {p: int(np.sum(labels == p)) for p in people}
    several = sorted(p for p in people if counts[p] >= 2)
    one = sorted(p for p in people if counts[p] == 1)
    chosen = list(rng.choice(several, min(multi, len(several)), replace=False))
    chosen += list(rng.choice(one, min(single, len(one)), replace=False))
    out = []
    for person in sorted(chosen):
        idx = np.flatnonzero(labels == person)
        out += sorted(rng.choice(idx, min(per_person, len(idx)), replace=False).tolist())
    return out


def degraded(root: Path, name: str, condition: str, seed: int) -> np.ndarray:
    from services.core.images import decode_image

    return DEGRADATIONS[condition](decode_image((root / name).read_bytes()), rng_for(seed, condition, name))


def cache_key(root: Path, names: list[str], condition: str, seed: int, model_key: str, settings: str) -> str:
    """Everything that changes one (condition, image set)'s embeddings, including the
    degradation's output on two photos (so an edited degradation re-embeds)."""
    digest = hashlib.sha256("\n".join([model_key, settings, condition, str(seed), *names]).encode())
    for name in names[:2]:
        digest.update(degraded(root, name, condition, seed).tobytes())
    return f"conditions-{model_key}-{condition}-{digest.hexdigest()[:16]}"


def embed_condition(pipeline, root: Path, names: list[str], condition: str, seed: int, label: str) -> Embedded:
    """Degrade, detect, align and embed every photo (cached), then measure its capture features
    (cached apart: they need the photo and the box, not the model)."""
    from services.core import assets
    from services.detector.quality import face_quality

    card = pipeline.embedder.card
    key = cache_key(root, names, condition, seed, card.model_key, repr(pipeline.detector.settings))
    path = assets.home() / "cache" / f"{key}.npz"
    n = len(names)
    if path.is_file():
        stored = dict(np.load(path))
    else:
        stored = {"names": np.array(names), "found": np.zeros(n, bool),
                  "vectors": np.zeros((n, card.embedding_dim), np.float32), "boxes": np.full((n, 4), np.nan),
                  "landmarks": np.full((n, 5, 2), np.nan), "score": np.full(n, np.nan), "quality": np.full(n, np.nan)}
        started, batch = time.perf_counter(), 16
        for start in range(0, n, batch):
            chunk = range(start, min(n, start + batch))
            frames = [degraded(root, names[i], condition, seed) for i in chunk]
            crops, kept = [], []
            for i, frame, faces in zip(chunk, frames, pipeline.detector.detect(frames), strict=True):
                if not faces:
                    continue  # a detector miss: no fallback crop (a door would see no face)
                centre = np.array(frame.shape[1::-1]) / 2
                face = min(faces, key=lambda f: np.linalg.norm(np.mean(f.landmarks, 0) - centre))
                crop = pipeline.align(frame, face.landmarks)
                stored["boxes"][i], stored["landmarks"][i] = face.box, face.landmarks
                stored["score"][i], stored["quality"][i] = face.score, face_quality(face, crop)
                crops.append(crop)
                kept.append(i)
            if crops:
                stored["vectors"][kept] = pipeline.embedder.embed(np.stack(crops))
                stored["found"][kept] = True
            if chunk.stop % 320 < batch or chunk.stop == n:
                print(f"  {label} {condition}: embedded {chunk.stop}/{n} photos, {time.perf_counter() - started:.0f} s",
                      file=sys.stderr)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **stored)
    features = measure_features(root, names, condition, seed, stored["boxes"], path.with_suffix(""))
    features.update(score=stored["score"], quality=stored["quality"])
    return Embedded(stored["names"], stored["found"], stored["vectors"], stored["boxes"], features)


def measure_features(root: Path, names: list[str], condition: str, seed: int, boxes: np.ndarray,
                     stem: Path) -> dict[str, np.ndarray]:
    """`capture_features` of every found face (cached beside the embeddings, keyed by its code)."""
    function = capture_features.__code__
    code = hashlib.sha256(marshal.dumps((function.co_code, function.co_consts, function.co_names))).hexdigest()[:12]
    path = stem.with_name(f"{stem.name}-features-{code}.npz")
    if path.is_file():
        return dict(np.load(path))
    features: dict[str, Any] = {k: np.full(len(names), np.nan) for k in FEATURES}
    for i, name in enumerate(names):
        if not np.isnan(boxes[i, 0]):
            for k, v in capture_features(degraded(root, name, condition, seed), tuple(boxes[i])).items():
                features[k][i] = v
    np.savez(path, **features)
    return features


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between two sets of unit vectors."""
    return np.sqrt(np.maximum(0.0, 2.0 - 2.0 * a @ b.T))


@dataclass(frozen=True)
class Outcome:
    """One condition under one threshold rule, on one half."""

    far: float  # clean template vs degraded probe, impostor pairs
    frr: float  # same, genuine pairs (different photos of one person)
    degraded_far: float  # both photos degraded
    degraded_frr: float
    open_far: float = float("nan")  # galleries of K clean templates: per impostor probe
    dir: float = float("nan")  # genuine probes accepted as the right person
    degraded_open_far: float = float("nan")  # galleries of K degraded templates
    degraded_dir: float = float("nan")


def verify(labels: np.ndarray, clean: Embedded, probe: Embedded, threshold: np.ndarray,
           threshold_both: np.ndarray) -> tuple[float, float, float, float]:
    """FAR and FRR with clean templates vs degraded probes (every ordered pair of different photos
    whose template was found; `threshold` is template x probe), then with both photos degraded
    (each pair once; `threshold_both` is degraded x degraded, the stricter of its two
    directions used). A photo not found rejects."""
    same = labels[:, None] == labels[None, :]
    other = ~np.eye(len(labels), dtype=bool)
    accept = (distances(clean.vectors, probe.vectors) <= threshold) & probe.found[None, :] & clean.found[:, None]
    usable = np.broadcast_to(clean.found[:, None], same.shape)
    far, frr = accept[usable & ~same].mean(), 1.0 - accept[usable & same & other].mean()
    upper = np.triu_indices(len(labels), 1)
    limit = np.minimum(threshold_both[upper], threshold_both.T[upper])
    accept_both = distances(probe.vectors, probe.vectors)[upper] <= limit
    accept_both &= probe.found[upper[0]] & probe.found[upper[1]]
    different = labels[upper[0]] != labels[upper[1]]
    return float(far), float(frr), float(accept_both[different].mean()), float(1.0 - accept_both[~different].mean())


def open_set(labels: np.ndarray, gallery: Embedded, probe: Embedded, threshold: np.ndarray, gap: float,
             size: int, repeats: int, seed: int) -> tuple[float, float]:
    """(FAR per impostor probe, DIR) over `repeats` galleries of `size` people enrolled from one
    photo each of `gallery` (people with >= 2 photos; seeded: the same galleries for every rule).
    `threshold` is (template x probe) as in `verify`."""
    rng = np.random.default_rng(seed)
    candidates = sorted({p for p in labels[gallery.found] if np.sum(labels == p) >= 2})
    d = distances(probe.vectors, gallery.vectors)
    rows = np.arange(len(labels))
    false_accepts = impostors = identified = genuine_probes = 0
    for _ in range(repeats):
        people = rng.choice(candidates, size, replace=False)
        templates = np.array([rng.choice(np.flatnonzero((labels == p) & gallery.found)) for p in people])
        block = d[:, templates]
        order = np.argsort(block, axis=1)[:, :2]
        d1, d2 = block[rows, order[:, 0]], block[rows, order[:, 1]]
        limit = threshold[templates[order[:, 0]], rows]
        accept = probe.found & (d1 <= limit) & (d2 - d1 >= gap)
        enrolled = np.isin(labels, people)
        genuine = enrolled.copy()
        genuine[templates] = False  # a template's own photo is not probed
        right = labels[templates][order[:, 0]] == labels
        false_accepts += int(np.sum(accept & ~enrolled))
        impostors += int(np.sum(~enrolled))
        identified += int(np.sum(accept & right & genuine))
        genuine_probes += int(np.sum(genuine))
    return false_accepts / impostors, identified / genuine_probes


# flag, feature, below (else above), on the magnitude, the conditions it is meant to catch (the
# cut-off is the one that best tells those from clean photos on the calibration half)
RULES = (
    ("grey", "saturation", True, False, ("grey",)),
    ("dark", "luma_mean", True, False, ("low_light",)),
    ("blurry", "detail", True, False, ("low_res", "motion_blur")),
    ("blocky", "blockiness", False, False, ("jpeg",)),
    ("uneven", "balance", False, True, ("side_light",)),
)


def floor4(value: float) -> float:
    """Rounded down to 4 decimals (a threshold rounded the strict way)."""
    return float(np.floor(value * 1e4) / 1e4)


def fit(labels: np.ndarray, sets: dict[str, Embedded], default: float, target: float) -> dict[str, ConditionEstimator]:
    """On the calibration half: a cut-off per flag, then three candidate rules, each with a
    threshold for a flagged probe (clean template) and one for a probe and template sharing a
    flag, calibrated for `target` on the impostor pairs it governs:
    - one threshold for any flag (all flagged pairs pooled);
    - a threshold per flag (its flagged pairs pooled over every condition);
    - a threshold per flag, for its worst condition (the strictest of the pooled one and the
      ones calibrated on each condition the flag is meant to catch alone)."""
    clean = sets["clean"]
    rules, meant = [], {}
    for flag, feature, below, absolute, conditions in RULES:
        meant[flag] = [c for c in conditions if c in sets]
        if not meant[flag]:
            continue

        def value(e: Embedded, feature: str = feature, absolute: bool = absolute) -> np.ndarray:
            return np.abs(e.features[feature]) if absolute else e.features[feature]

        cutoff = choose_cutoff(value(clean), np.concatenate([value(sets[c]) for c in meant[flag]]), below)
        rules.append(FlagRule(flag, feature, float(f"{cutoff:.4g}"), below, absolute))
    estimator = ConditionEstimator(tuple(rules), default=default, target_far=target)
    flags, anyone = [r.flag for r in rules], ""  # "": any flag
    same = labels[:, None] == labels[None, :]
    upper = np.triu_indices(len(labels), 1)
    different = labels[upper[0]] != labels[upper[1]]
    # flag -> condition -> impostor distances it governs: clean template vs flagged probe; both flagged
    probe_pairs: dict[str, dict[str, np.ndarray]] = {f: {} for f in [*flags, anyone]}
    both_pairs: dict[str, dict[str, np.ndarray]] = {f: {} for f in [*flags, anyone]}
    for condition, embedded in sets.items():
        d = distances(clean.vectors[clean.found], embedded.vectors)
        d_both = distances(embedded.vectors, embedded.vectors)[upper]
        rows = flag_rows(estimator, embedded.features)
        rows[anyone] = np.any([rows[f] for f in flags], axis=0)
        for flag, hit in rows.items():
            hit = hit & embedded.found
            probe_pairs[flag][condition] = d[:, hit][~same[clean.found][:, hit]]
            both_pairs[flag][condition] = d_both[hit[upper[0]] & hit[upper[1]] & different]
    enough = 10 / target  # impostor pairs needed to calibrate at all

    def threshold(pairs: dict[str, np.ndarray], worst_of: list[str]) -> float | None:
        pooled = np.concatenate(list(pairs.values()))
        if len(pooled) < enough:
            return None
        found = [threshold_at_far(pooled, target)]
        found += [threshold_at_far(pairs[c], target) for c in worst_of if len(pairs[c]) >= enough]
        return min(default, floor4(min(found)))

    def per_flag(pairs: dict[str, dict[str, np.ndarray]], worst: bool) -> dict[str, float]:
        out = {f: threshold(pairs[f], meant[f] if worst else []) for f in flags}
        return {f: t for f, t in out.items() if t is not None}

    any_probe, any_both = threshold(probe_pairs[anyone], []), threshold(both_pairs[anyone], [])
    return {
        "one threshold for any flag": ConditionEstimator(
            estimator.rules, {f: any_probe for f in flags if any_probe is not None},
            {f: any_both for f in flags if any_both is not None}, default, target),
        "a threshold per flag": ConditionEstimator(
            estimator.rules, per_flag(probe_pairs, False), per_flag(both_pairs, False), default, target),
        "a threshold per flag, for its worst condition": ConditionEstimator(
            estimator.rules, per_flag(probe_pairs, True), per_flag(both_pairs, True), default, target),
    }


def outcome(labels, clean: Embedded, probe: Embedded, estimator: ConditionEstimator | None, default: float,
            band: float | None = None, open_args: tuple = ()) -> Outcome:
    """One condition's outcome at the card's thresholds (`estimator` None) or lowered by the
    estimator's flags: the pair threshold `default` for verification, the 1:K `band` for the open
    set (measured only when `band` is given)."""
    square = (len(labels), len(labels))
    if estimator is None:
        threshold = threshold_both = np.full(square, default)
    else:
        threshold = pair_thresholds(estimator, clean.features, probe.features)
        threshold_both = pair_thresholds(estimator, probe.features, probe.features)
    far, frr, degraded_far, degraded_frr = verify(labels, clean, probe, threshold, threshold_both)
    if band is None:
        return Outcome(far, frr, degraded_far, degraded_frr)
    if estimator is None:
        open_clean = open_both = np.full(square, band)
    else:
        open_clean = pair_thresholds(estimator, clean.features, probe.features, base=band)
        open_both = pair_thresholds(estimator, probe.features, probe.features, base=band)
    return Outcome(far, frr, degraded_far, degraded_frr, *open_set(labels, clean, probe, open_clean, *open_args),
                   *open_set(labels, probe, probe, open_both, *open_args))


def worst_far_and_mean_frr(labels, sets: dict[str, Embedded], estimator: ConditionEstimator,
                           target: float) -> tuple[float, float]:
    """On the calibration half (in sample): the worst FAR / target over conditions and both
    enrolment kinds, and the FRR averaged over conditions and both kinds: how a rule is chosen."""
    results = [outcome(labels, sets["clean"], e, estimator, estimator.default) for e in sets.values()]
    return (max(max(r.far, r.degraded_far) for r in results) / target,
            float(np.mean([(r.frr + r.degraded_frr) / 2 for r in results])))


def composition_check(labels, sets: dict[str, Embedded], estimator: ConditionEstimator, band: float,
                      open_args: tuple, target: float) -> dict[str, float]:
    """On the calibration half (in sample), galleries enrolled from degraded photos: the worst
    open-set FAR / target over conditions with the band alone, with the stricter of the band and
    the flags' pair threshold, and with the band lowered by the flags' tightening (the rule used)."""
    names = ("band alone", "stricter of band and flag threshold", "band lowered by the flags' tightening")
    worst = dict.fromkeys(names, 0.0)
    for embedded in sets.values():
        pair = pair_thresholds(estimator, embedded.features, embedded.features)
        for name, threshold in zip(worst, (np.full(pair.shape, band), np.minimum(pair, band),
                                           pair_thresholds(estimator, embedded.features, embedded.features, base=band)),
                                   strict=True):
            far, _ = open_set(labels, embedded, embedded, threshold, *open_args)
            worst[name] = max(worst[name], far / target)
    return worst


def sci(value: float) -> str:
    return f"{value:.1e}" if value else "0"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/lfw-deepfunneled"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--multi", type=int, default=600, help="people with >= 2 photos per half")
    parser.add_argument("--single", type=int, default=600, help="one-photo people per half")
    parser.add_argument("--per-person", type=int, default=4)
    parser.add_argument("--gallery", type=int, default=20, help="K: people enrolled per open-set gallery")
    parser.add_argument("--repeats", type=int, default=200, help="open-set galleries drawn")
    parser.add_argument("--conditions", default=",".join(DEGRADATIONS), help="comma-separated; clean is always run")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"no LFW images at {args.data}: nothing to measure", file=sys.stderr)
        return 2
    from facegate.evaluation.pipeline import FacePipeline
    from services.detector.mtcnn_cascade import DetectorSettings

    started = time.perf_counter()
    names = sorted(str(p.relative_to(args.data)) for p in args.data.glob("*/*.jpg"))
    labels = np.array([n.split("/")[0] for n in names])
    people = np.unique(labels)
    halves = np.array_split(np.random.default_rng(args.seed).permutation(people), 2)
    conditions = ["clean", *(c for c in args.conditions.split(",") if c and c != "clean")]
    unknown = [c for c in conditions if c not in DEGRADATIONS]
    if unknown:
        print(f"unknown conditions {unknown}; known: {list(DEGRADATIONS)}", file=sys.stderr)
        return 2
    pipeline = FacePipeline(detector_settings=DetectorSettings(min_face_size=40))
    sets = {}
    for half, label in ((0, "calibration"), (1, "report")):
        photos = sample(labels, halves[half], args.seed + half, args.multi, args.single, args.per_person)
        chosen_names = [names[i] for i in photos]
        print(f"{label} half: {len(photos)} photos of {len(set(labels[photos]))} people", file=sys.stderr)
        sets[label] = (labels[photos], {c: embed_condition(pipeline, args.data, chosen_names, c, args.seed, label)
                                        for c in conditions})
    print(f"embedded in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    card = pipeline.embedder.card
    default, target, gap = card.distance_threshold, card.default_far or 1e-3, card.ambiguity_gap
    band = card.threshold_for(target, identities=args.gallery)  # what the matcher applies for K identities
    cal_labels, cal = sets["calibration"]
    labels, report = sets["report"]

    candidates = fit(cal_labels, cal, default, target)
    scored = {name: worst_far_and_mean_frr(cal_labels, cal, e, target) for name, e in candidates.items()}
    meeting = [n for n, (worst, _) in scored.items() if worst <= 2.0]
    # the lowest FRR among the rules holding FAR within 2x of the target; if none does, the lowest FAR
    chosen = min(meeting, key=lambda n: scored[n][1]) if meeting else min(scored, key=lambda n: scored[n][0])
    estimator = candidates[chosen]

    open_args = (gap, args.gallery, args.repeats, args.seed)
    rows = []
    for condition, probe in report.items():
        before = outcome(labels, report["clean"], probe, None, default, band, open_args)
        after = outcome(labels, report["clean"], probe, estimator, default, band, open_args)
        other = {n: outcome(labels, report["clean"], probe, e, default) for n, e in candidates.items() if n != chosen}
        flagged = flag_rows(estimator, probe.features)
        rows.append((condition, probe, before, after, other, flagged))

    n_people = len(set(labels))
    print(f"LFW capture conditions, seed {args.seed}: report half {len(labels)} photos of {n_people} people "
          f"({sum(np.sum(labels == p) >= 2 for p in set(labels))} with >= 2 photos), clean and degraded before "
          f"detection. Verification at the card's pair threshold {default} (FAR {target:g}); open set: "
          f"{args.repeats} galleries of K={args.gallery} people enrolled from one photo each, at the card's 1:K "
          f"threshold for K={args.gallery} ({band}) and ambiguity gap {gap}. 'before -> after': the card's "
          f"threshold -> lowered by the condition estimate's flags ({chosen}). 'clean tpl': enrolled from clean "
          f"photos; 'both deg': templates degraded too.")
    print()
    print("| condition | detector miss | flagged | FAR clean tpl | FRR clean tpl | FAR both deg | FRR both deg "
          f"| open-set FAR K={args.gallery} clean tpl | DIR clean tpl | open-set FAR both deg | DIR both deg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for condition, probe, before, after, _, flagged in rows:
        any_flag = np.any(list(flagged.values()), axis=0) & probe.found
        print(f"| {condition} | {1 - probe.found.mean():.1%} | {any_flag.mean():.0%} "
              f"| {sci(before.far)} -> {sci(after.far)} | {before.frr:.1%} -> {after.frr:.1%} "
              f"| {sci(before.degraded_far)} -> {sci(after.degraded_far)} "
              f"| {before.degraded_frr:.1%} -> {after.degraded_frr:.1%} "
              f"| {sci(before.open_far)} -> {sci(after.open_far)} | {before.dir:.1%} -> {after.dir:.1%} "
              f"| {sci(before.degraded_open_far)} -> {sci(after.degraded_open_far)} "
              f"| {before.degraded_dir:.1%} -> {after.degraded_dir:.1%} |")
    print()
    print("Flags raised per condition (share of report-half probes whose face was found):")
    print("| condition | " + " | ".join(r.flag for r in estimator.rules) + " |")
    print("|---|" + "---|" * len(estimator.rules))
    for condition, probe, _, _, _, flagged in rows:
        found = probe.found
        print(f"| {condition} | " + " | ".join(f"{flagged[r.flag][found].mean():.0%}" for r in estimator.rules) + " |")
    print()
    print("The rules not chosen, on the report half (FAR / FRR clean template; FAR / FRR both degraded):")
    for name in (n for n in candidates if n != chosen):
        print()
        print(f"| condition | {name}: FAR | FRR | FAR both degraded | FRR both degraded |")
        print("|---|---|---|---|---|")
        for condition, _, _, _, other, _ in rows:
            o = other[name]
            print(f"| {condition} | {sci(o.far)} | {o.frr:.1%} | {sci(o.degraded_far)} | {o.degraded_frr:.1%} |")
    print()
    print("Rules on the calibration half (in sample; worst FAR / target over conditions and both enrolment kinds, "
          "FRR averaged over conditions and kinds): "
          + "; ".join(f"{n}: {w:.2f}x, {f:.1%}" for n, (w, f) in scored.items())
          + f". Chosen: {chosen} (the lowest FRR among those within 2x; if none, the lowest FAR).")
    sample_faces = [(args.data / n, tuple(b)) for n, b, f in zip(report["clean"].names, report["clean"].boxes,
                                                                   report["clean"].found, strict=True) if f][:200]
    frames = [(degraded(args.data, str(path.relative_to(args.data)), "clean", args.seed), box)
              for path, box in sample_faces]
    timer = time.perf_counter()
    for frame, box in frames:
        estimator.estimate(capture_features(frame, box))
    per_face = (time.perf_counter() - timer) * 1000 / max(1, len(frames))
    check = composition_check(cal_labels, cal, estimator, band, open_args, target)
    print("Open set with degraded templates on the calibration half (in sample), worst FAR / target over conditions: "
          + "; ".join(f"{n}: {w:.2f}x" for n, w in check.items()) + ".")
    print(f"Capture features + estimate: {per_face:.2f} ms per face (250 px photo, {len(frames)} faces).")
    cal_people = len(set(cal_labels))
    entry = {"condition_thresholds": {
        **estimator.to_dict(),
        "rule": chosen,
        "applies_as": "a flagged pair's threshold is the matcher's own (the pair threshold, or the 1:K band's) "
                      "lowered by default - threshold (the strictest of the flags raised)",
        "source": f"bench/capture_conditions_lfw.py --seed {args.seed}: cut-offs and thresholds chosen on the "
                  f"calibration half only (half 0 of the people split of bench/openset_lfw.py; {len(cal_labels)} "
                  f"photos of {cal_people} people, each clean and under {len(cal) - 1} degradations); "
                  f"FAR/FRR reported on the other half",
    }}
    print(json.dumps(entry, indent=2))
    print(f"total {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
