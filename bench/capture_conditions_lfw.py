"""Capture conditions on LFW: FAR/FRR and open-set DIR when door cameras degrade the photos, at
the card's threshold and under the rule the services apply (issue 14, "capture conditions").

    python bench/capture_conditions_lfw.py --data ../shared/data/lfw-deepfunneled [--seed 0]

Protocol (people-disjoint, seeded): LFW people split in two halves exactly as
bench/openset_lfw.py does; half 0 calibrates, half 1 is reported on. From each half, `--multi`
people with >= 2 photos (up to `--per-person` photos each) and `--single` one-photo people.
Every chosen photo is degraded (facegate/evaluation/conditions.py, seeded per photo) *before*
detection, detected (MTCNN, min face 40 px, the face nearest the centre kept), aligned and
embedded once per condition. A photo whose face is not found is a detector miss: as a probe it
is rejected (a false reject if genuine, never a false accept); it is never a template (its
enrolment would have failed).
- verification: every ordered pair (template, probe) of different photos; templates clean, then
  degraded too (a site enrolling from its own cameras). FAR over the impostor pairs (different
  people), FRR over the genuine ones;
- open set: `--repeats` galleries of `--gallery` people enrolled from one photo each (clean,
  then degraded); their other photos are genuine probes, every photo of a person not enrolled
  an impostor probe; the matcher's rule: accept iff the nearest identity is within the
  threshold and the second-nearest is at least the card's ambiguity gap farther. FAR per
  impostor probe; DIR = genuine probes accepted as the right person;
- thresholds, as the services apply them: before = `card.threshold_for(FAR)` (pairs) or
  `card.threshold_for(FAR, K)` (the 1:K band); after = `card.threshold_for(FAR, K, probe flags,
  template flags)`: lowered by the card's `capture_tightening`, per probe flag its
  `clean_template` value if the template does not carry the flag, its `flagged_template` value
  if it does, the largest of those. Flags are `services.core.capture.CAPTURE_RULES` on each
  photo's own frame and box. In verification the template is the pair's template photo; in the
  open set, the nearest enrolled person's one template (the matcher records the flags of each
  person's enrolment photos).
The shipped cut-offs and tightening were chosen on the calibration half; this bench re-derives
them there (each cut-off the one that best tells the conditions its flag is meant for from clean
photos, Youden's J; per flag, the card's pair threshold minus the one meeting the FAR on the
impostor pairs it governs, for the worst of the conditions it is meant for: a clean photo as
template and a flagged probe (clean_template), both photos flagged (flagged_template)) and warns
if they no longer match what ships. Everything in the table is measured on the report half.
Embeddings and features are cached in $FACEGATE_HOME/cache: the first run embeds ~4,700 photos
x 8 conditions (~18 min on 2 cores), a rerun takes under a minute.
"""

from __future__ import annotations

import argparse
import hashlib
import marshal
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from facegate.evaluation.calibration import threshold_at_far
from facegate.evaluation.conditions import DEGRADATIONS, choose_cutoff, flag_rows, pair_thresholds, rng_for, row_flags
from services.core.capture import CAPTURE_RULES, FEATURES, FlagRule, capture_features, capture_flags
from services.core.model_card import DEFAULT_MODEL, ModelCard, Tightening, load_card

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported (in main)

# the conditions each flag is meant to catch: its cut-off is re-derived against them, its tightening
# for the worst of them
MEANT = {"grey": ("grey",), "dark": ("low_light",), "blurry": ("low_res", "motion_blur"), "blocky": ("jpeg",),
         "uneven": ("side_light",)}


@dataclass(frozen=True)
class Embedded:
    """One image set under one condition: per photo, whether a face was found, its embedding, its
    box and its capture features (NaN where not found)."""

    names: np.ndarray
    found: np.ndarray  # bool
    vectors: np.ndarray  # (n, d) unit vectors; zeros where not found
    boxes: np.ndarray  # (n, 4) x, y, w, h; NaN where not found
    features: dict[str, np.ndarray]  # capture features -> (n,)


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

    card = pipeline.embedder.card
    key = cache_key(root, names, condition, seed, card.model_key, repr(pipeline.detector.settings))
    path = assets.home() / "cache" / f"{key}.npz"
    n = len(names)
    if path.is_file():
        stored = dict(np.load(path))
    else:
        stored = {"names": np.array(names), "found": np.zeros(n, bool),
                  "vectors": np.zeros((n, card.embedding_dim), np.float32), "boxes": np.full((n, 4), np.nan),
                  "landmarks": np.full((n, 5, 2), np.nan)}
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
                stored["boxes"][i], stored["landmarks"][i] = face.box, face.landmarks
                crops.append(pipeline.align(frame, face.landmarks))
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


def photo_flags(embedded: Embedded, rules: tuple[FlagRule, ...] = CAPTURE_RULES) -> list[tuple[str, ...]]:
    """Each photo's capture flags as the detector raises them (none where no face was found)."""
    return row_flags(rules, embedded.features)


def verify(labels: np.ndarray, template: Embedded, probe: Embedded, threshold: np.ndarray) -> tuple[float, float]:
    """(FAR, FRR) over every ordered pair (template, probe) of different photos whose template's
    face was found; `threshold` is (templates x probes), or (1, 1) for all. A probe not found
    rejects."""
    same = labels[:, None] == labels[None, :]
    usable = template.found[:, None] & ~np.eye(len(labels), dtype=bool)
    accept = (distances(template.vectors, probe.vectors) <= threshold) & probe.found[None, :]
    return float(accept[usable & ~same].mean()), float(1.0 - accept[usable & same].mean())


def open_set(labels: np.ndarray, gallery: Embedded, probe: Embedded, threshold: np.ndarray, gap: float,
             size: int, repeats: int, seed: int) -> tuple[float, float]:
    """(FAR per impostor probe, DIR) over `repeats` galleries of `size` people enrolled from one
    found photo each of `gallery` (people with >= 2 photos; seeded: the same galleries for every
    threshold); `threshold` is (gallery photos x probes), or (1, 1) for all: a probe is judged at
    the threshold of its nearest template."""
    rng = np.random.default_rng(seed)
    candidates = sorted({p for p in labels[gallery.found] if np.sum(labels == p) >= 2})
    d = distances(probe.vectors, gallery.vectors)
    threshold = np.broadcast_to(threshold, d.T.shape)
    rows = np.arange(len(labels))
    false_accepts = impostors = identified = genuine_probes = 0
    for _ in range(repeats):
        people = rng.choice(candidates, size, replace=False)
        templates = np.array([rng.choice(np.flatnonzero((labels == p) & gallery.found)) for p in people])
        block = d[:, templates]
        order = np.argsort(block, axis=1)[:, :2]
        d1, d2 = block[rows, order[:, 0]], block[rows, order[:, 1]]
        accept = probe.found & (d1 <= threshold[templates[order[:, 0]], rows]) & (d2 - d1 >= gap)
        enrolled = np.isin(labels, people)
        genuine = enrolled.copy()
        genuine[templates] = False  # a template's own photo is not probed
        right = labels[templates][order[:, 0]] == labels
        false_accepts += int(np.sum(accept & ~enrolled))
        impostors += int(np.sum(~enrolled))
        identified += int(np.sum(accept & right & genuine))
        genuine_probes += int(np.sum(genuine))
    return false_accepts / impostors, identified / genuine_probes


@dataclass(frozen=True)
class Outcome:
    """One condition at one set of thresholds, on the report half."""

    far: float  # clean templates vs degraded probes
    frr: float
    both_far: float  # templates degraded too
    both_frr: float
    open_far: float  # galleries of K clean templates, per impostor probe
    dir: float  # genuine probes accepted as the right person
    both_open_far: float  # galleries of K degraded templates
    both_dir: float


def outcome(labels: np.ndarray, clean: Embedded, probe: Embedded, card: ModelCard, far: float,
            flagged: bool, open_args: tuple) -> Outcome:
    """One condition at the card's thresholds (`flagged` False) or, as the matcher applies them,
    lowered by the probe's capture flags against the template's (clean photos as templates, then
    the degraded ones)."""
    size = open_args[1]
    if not flagged:
        pair = np.full((1, 1), card.threshold_for(far))
        band = np.full((1, 1), card.threshold_for(far, size))
        return Outcome(*verify(labels, clean, probe, pair), *verify(labels, probe, probe, pair),
                       *open_set(labels, clean, probe, band, *open_args),
                       *open_set(labels, probe, probe, band, *open_args))
    clean_flags, probe_flags = photo_flags(clean), photo_flags(probe)
    return Outcome(*verify(labels, clean, probe, pair_thresholds(card, far, None, clean_flags, probe_flags)),
                   *verify(labels, probe, probe, pair_thresholds(card, far, None, probe_flags, probe_flags)),
                   *open_set(labels, clean, probe, pair_thresholds(card, far, size, clean_flags, probe_flags),
                             *open_args),
                   *open_set(labels, probe, probe, pair_thresholds(card, far, size, probe_flags, probe_flags),
                             *open_args))


def floor4(value: float) -> float:
    """Rounded down to 4 decimals (a threshold rounded the strict way)."""
    return float(np.floor(value * 1e4) / 1e4)


def calibrate(labels: np.ndarray, sets: dict[str, Embedded], default: float,
              far: float) -> tuple[tuple[FlagRule, ...], dict[str, Tightening]]:
    """What the calibration half chooses: CAPTURE_RULES' features and directions with each
    cut-off re-chosen (the one that best tells its flag's conditions from clean photos), and per
    flag its tightening, `default` minus the threshold meeting `far` on the impostor pairs it
    governs, pooled over every condition and on each of the flag's conditions alone, the
    strictest (rounded down to 4 decimals; none without 10 / far such pairs):
    - clean_template: a clean photo as template (any clean photo: the few that carry the flag
      themselves are judged by flagged_template at runtime, and leaving them out here loosens
      blurry's by ~0.0007), a probe carrying the flag;
    - flagged_template: both photos carrying it (the same condition)."""
    clean = sets["clean"]
    rules = []
    for rule in CAPTURE_RULES:
        def value(e: Embedded, rule: FlagRule = rule) -> np.ndarray:
            return np.abs(e.features[rule.feature]) if rule.absolute else e.features[rule.feature]

        flagged = np.concatenate([value(sets[c]) for c in MEANT[rule.flag] if c in sets] or [np.array([np.nan])])
        if np.isnan(flagged).all():  # none of its conditions run: keep the shipped cut-off
            rules.append(rule)
            continue
        rules.append(replace(rule, cutoff=float(f"{choose_cutoff(value(clean), flagged, rule.below):.4g}")))
    upper = np.triu_indices(len(labels), 1)
    different = labels[upper[0]] != labels[upper[1]]
    other = labels[:, None] != labels[None, :]
    # flag -> condition -> the impostor distances its tightening governs
    one: dict[str, dict[str, np.ndarray]] = {r.flag: {} for r in rules}  # clean template, flagged probe
    both: dict[str, dict[str, np.ndarray]] = {r.flag: {} for r in rules}  # both flagged
    for condition, embedded in sets.items():
        d = distances(embedded.vectors, embedded.vectors)[upper]
        d_clean = distances(clean.vectors, embedded.vectors)
        for flag, hit in flag_rows(tuple(rules), embedded.features).items():
            hit = hit & embedded.found
            both[flag][condition] = d[hit[upper[0]] & hit[upper[1]] & different]
            one[flag][condition] = d_clean[clean.found][:, hit][other[clean.found][:, hit]]

    def tightening(by_condition: dict[str, np.ndarray], flag: str) -> float | None:
        pooled = np.concatenate(list(by_condition.values()))
        if len(pooled) < 10 / far:
            return None
        found = [threshold_at_far(pooled, far)]
        found += [threshold_at_far(by_condition[c], far) for c in MEANT[flag]
                  if len(by_condition.get(c, ())) >= 10 / far]
        return round(default - min(default, floor4(min(found))), 4)

    out = {}
    for rule in rules:
        strong = tightening(both[rule.flag], rule.flag)
        if strong is not None:
            out[rule.flag] = Tightening(tightening(one[rule.flag], rule.flag) or 0.0, strong)
    return tuple(rules), out


def sci(value: float) -> str:
    return f"{value:.1e}" if value else "0"


def arrow(before: float, after: float, percent: bool = False) -> str:
    show = (lambda v: f"{v:.1%}") if percent else sci
    return show(before) if show(before) == show(after) else f"{show(before)} -> {show(after)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/lfw-deepfunneled"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--multi", type=int, default=600, help="people with >= 2 photos per half")
    parser.add_argument("--single", type=int, default=600, help="one-photo people per half")
    parser.add_argument("--per-person", type=int, default=4)
    parser.add_argument("--gallery", type=int, default=20, help="K: people enrolled per open-set gallery")
    parser.add_argument("--repeats", type=int, default=200, help="open-set galleries drawn")
    parser.add_argument("--far", type=float, default=1e-3, help="target FAR (one the card calibrates)")
    parser.add_argument("--conditions", default=",".join(DEGRADATIONS), help="comma-separated; clean is always run")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="a known model")
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
    card = load_card(args.model)  # the card the matcher applies
    pipeline = FacePipeline(model=args.model, detector_settings=DetectorSettings(min_face_size=40))
    if pipeline.embedder.card.model_key != card.model_key:
        print(f"the pipeline embeds with {pipeline.embedder.card.model_key}, the card is {card.model_key}",
              file=sys.stderr)
        return 2
    sets = {}
    for half, label in ((0, "calibration"), (1, "report")):
        photos = sample(labels, halves[half], args.seed + half, args.multi, args.single, args.per_person)
        chosen_names = [names[i] for i in photos]
        print(f"{label} half: {len(photos)} photos of {len(set(labels[photos]))} people", file=sys.stderr)
        sets[label] = (labels[photos], {c: embed_condition(pipeline, args.data, chosen_names, c, args.seed, label)
                                        for c in conditions})
    print(f"embedded in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    far, gap, size = args.far, card.ambiguity_gap, args.gallery
    cal_labels, cal = sets["calibration"]
    labels, report = sets["report"]

    open_args = (gap, size, args.repeats, args.seed)
    rows = []
    for condition, probe in report.items():
        flags = photo_flags(probe)
        rows.append((condition, probe, flags, outcome(labels, report["clean"], probe, card, far, False, open_args),
                     outcome(labels, report["clean"], probe, card, far, True, open_args)))

    n_people = len(set(labels))
    print(f"LFW capture conditions, seed {args.seed}, target FAR {far:g}: report half {len(labels)} photos of "
          f"{n_people} people ({sum(np.sum(labels == p) >= 2 for p in set(labels))} with >= 2 photos), each "
          f"degraded before detection. 'before -> after': the card's threshold ({card.threshold_for(far)} for "
          f"pairs; the 1:K band for K={size}, {card.threshold_for(far, size)}) -> lowered by the probe's capture "
          f"flags against the template's (card.threshold_for(FAR, K, probe flags, template flags); the open set: "
          f"the nearest person's template), as the matcher does. 'clean tpl': enrolled from clean photos; "
          f"'both deg': templates degraded too. Open set: {args.repeats} galleries of K={size} people, one photo "
          f"each, ambiguity gap {gap}. 'flagged': probes (faces found) raising any flag.")
    print()
    print(f"| condition | miss | flagged | FAR clean tpl | FRR clean tpl | FAR both deg | FRR both deg "
          f"| 1:{size} FAR clean tpl | DIR clean tpl | 1:{size} FAR both deg | DIR both deg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for condition, probe, flags, before, after in rows:
        flagged = np.mean([bool(f) for f, found in zip(flags, probe.found, strict=True) if found])
        print(f"| {condition} | {1 - probe.found.mean():.1%} | {flagged:.0%} "
              f"| {arrow(before.far, after.far)} | {arrow(before.frr, after.frr, True)} "
              f"| {arrow(before.both_far, after.both_far)} | {arrow(before.both_frr, after.both_frr, True)} "
              f"| {arrow(before.open_far, after.open_far)} | {arrow(before.dir, after.dir, True)} "
              f"| {arrow(before.both_open_far, after.both_open_far)} "
              f"| {arrow(before.both_dir, after.both_dir, True)} |")
    print()
    flag_names = [r.flag for r in CAPTURE_RULES]
    raised = []
    for condition, probe, flags, _, _ in rows:
        shares = {f: np.mean([f in fl for fl, found in zip(flags, probe.found, strict=True) if found])
                  for f in flag_names}
        raised.append(f"{condition} " + (", ".join(f"{f} {v:.0%}" for f, v in shares.items() if v >= 0.005) or "none"))
    print("Flags raised (share of probes whose face was found): " + "; ".join(raised) + ".")
    _, clean_probe, clean_flags, clean_before, clean_after = rows[0]
    any_flag = np.array([bool(f) for f in clean_flags]) & clean_probe.found
    worst = max(max(a.far, a.both_far, a.open_far, a.both_open_far) for *_, a in rows)
    print(f"Clean probes: {any_flag.sum() / clean_probe.found.sum():.1%} raise a flag (of {clean_probe.found.sum()} "
          f"found); FRR {clean_before.frr:.1%} -> {clean_after.frr:.1%}, DIR at K={size} "
          f"{clean_before.dir:.1%} -> {clean_after.dir:.1%} for that. Worst FAR after, over conditions and the "
          f"four columns: {worst / far:.2f}x the target ({'within' if worst <= 2 * far else 'NOT within'} 2x).")

    chosen_rules, tightening = calibrate(cal_labels, cal, card.threshold_for(far), far)
    none = Tightening(0.0, 0.0)
    print(f"Calibration half ({len(cal_labels)} photos of {len(set(cal_labels))} people) would choose: "
          + ", ".join(f"{r.flag} {r.feature} {'<' if r.below else '>'} {r.cutoff:g} (tightening clean template "
                      f"{tightening.get(r.flag, none).clean_template:.4f}, flagged template "
                      f"{tightening.get(r.flag, none).flagged_template:.4f})" for r in chosen_rules) + ".")
    differ = [f"{new.flag} cut-off {new.cutoff:g} (ships {old.cutoff:g})"
              for new, old in zip(chosen_rules, CAPTURE_RULES, strict=True) if new.cutoff != old.cutoff]
    for flag in flag_names:
        chosen, ships = tightening.get(flag, none), card.capture_tightening.get(flag, none)
        differ += [f"{flag} {kind} tightening {getattr(chosen, kind):.4f} (card {getattr(ships, kind):.4f})"
                   for kind in ("clean_template", "flagged_template")
                   if abs(getattr(chosen, kind) - getattr(ships, kind)) > 5e-5]
    if differ:
        warning = ("WARNING: the calibration half no longer chooses what ships (services/core/capture.py "
                   f"CAPTURE_RULES, the card's capture_tightening): {'; '.join(differ)}")
        print(warning)
        print(warning, file=sys.stderr)
    else:
        print("It matches what ships (CAPTURE_RULES and the card's capture_tightening).")
    frames = [(degraded(args.data, str(n), "clean", args.seed), tuple(b))
              for n, b, f in zip(report["clean"].names, report["clean"].boxes, report["clean"].found, strict=True)
              if f][:200]
    timer = time.perf_counter()
    for frame, box in frames:
        capture_flags(frame, box)
    print(f"capture_flags: {(time.perf_counter() - timer) * 1000 / max(1, len(frames)):.2f} ms per face "
          f"(250 px photo, {len(frames)} faces).")
    print(f"total {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
