"""Enrolment safety checks on LFW: how many honest enrolments each check refuses, and how many
wrong or repeated faces it catches, at the model card's thresholds and at stricter ones.

    python bench/duplicate_enrolment_lfw.py --data ../shared/data/lfw-deepfunneled \
        --pairs ../shared/data/lfw-pairs/pairsDevTrain.txt [--seed 0]

Distance: the matcher's, Euclidean between unit embeddings, sqrt(2 - 2 cos) (gallery.py reports
Milvus' cosine that way; the card's thresholds are in it). An identity's distance is the minimum
over its templates (`Gallery.verify`, `Gallery.identify`). Embeddings come from `embed_lfw` in
bench/openset_lfw.py (cached): the embedder flip-averages and L2-normalises them, as it does
for the vectors the matcher stores (card `flip_average`).

Every person named in the pairs file is left out: the card's thresholds were calibrated on them.
A person's "first" images are their lowest-numbered ones; "another" image is a random one of the
rest (seeded).
(A) add-templates check: a person is enrolled with their first image (1 template), or their
    first 3 (people with >= 4 images). Adding another of their images is falsely refused if its
    identity distance is > T. Attack: each identity is offered one image of another person (a
    seeded derangement: every person attacks once and is attacked once), accepted if <= T. The
    last column tries every other person's image on every identity, for tighter counts.
(B) duplicate-enrolment check: 1,000 random people are held out as new enrolments (their first
    image; one-image people included); galleries of K of the others (people with >= 2 images
    first, then one-image people; nested) are enrolled with their first image. A true duplicate
    (another image of a gallery person, enrolled as a new identity) is detected if an identity
    is within T; a new person is falsely flagged if an identity is within T. A per-comparison
    false-accept rate p compounds over K identities: were the comparisons independent, 1 - (1 -
    p)^K of new people would be flagged (last column; p measured in (A), 1 template).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np

from services.core import assets
from services.core.model_card import DEFAULT_MODEL, load_card

STRICTER = (0.30, 0.25)  # for the dlib network; other models' scaled (in_model_units)
GALLERY_SIZES = (100, 1000)  # and every remaining person not held out
NEW_PEOPLE = 1000


def openset_lfw() -> Any:
    """bench/openset_lfw.py, for `embed_lfw` and `in_model_units` (bench/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("openset_lfw", Path(__file__).with_name("openset_lfw.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def people_in(pairs: Path) -> set[str]:
    """Everyone a pairs file names (a count line, then `name i j` or `name i name2 j` lines)."""
    people: set[str] = set()
    for line in pairs.read_text().splitlines()[1:]:
        fields = line.split()
        people.update(fields[0::2] if len(fields) == 4 else fields[:1])
    return people


def another(starts: np.ndarray, counts: np.ndarray, skip: int, rng: np.random.Generator) -> np.ndarray:
    """Per person, the index of a random image among those after their first `skip`."""
    return starts + skip + rng.integers(0, counts - skip)


def identity_distances(probes: np.ndarray, templates: np.ndarray) -> np.ndarray:
    """(probe, identity) distances for probes (N, D) and identities' templates (M, t, D): the
    distance to the nearest template (the highest cosine)."""
    m, t, dim = templates.shape
    cosine = (probes @ templates.reshape(m * t, dim).T).reshape(len(probes), m, t).max(axis=2)
    return np.sqrt(np.maximum(0.0, 2.0 - 2.0 * cosine))


def add_check(embeddings: np.ndarray, starts: np.ndarray, counts: np.ndarray, templates: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distances of (genuine additions, one impostor addition per identity, every impostor
    image on every identity) for people with more than `templates` images."""
    starts, counts = starts[counts > templates], counts[counts > templates]
    enrolled = embeddings[starts[:, None] + np.arange(templates)]  # (P, t, D)
    d = identity_distances(embeddings[another(starts, counts, templates, rng)], enrolled)  # image i, identity j
    order = rng.permutation(len(starts))
    attacker = np.empty_like(order)
    attacker[order] = np.roll(order, -1)  # identity order[i] is attacked by person order[i + 1]
    return np.diag(d), d[attacker, np.arange(len(d))], d[~np.eye(len(d), dtype=bool)]


def enrolment_order(counts: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """NEW_PEOPLE random people held out as new enrolments, and the others in the order galleries
    take them: people with >= 2 images first (so even K = 100 has duplicates to find), each
    group in random order. A gallery of K is the first K: galleries are nested."""
    people = rng.permutation(len(counts))
    new, pool = people[:NEW_PEOPLE], people[NEW_PEOPLE:]
    return new, np.concatenate([pool[counts[pool] >= 2], pool[counts[pool] < 2]])


def duplicate_check(embeddings: np.ndarray, starts: np.ndarray, counts: np.ndarray, second: np.ndarray,
                    gallery: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest-identity distances of true duplicates (the `second` image of each gallery person
    who has one) and of new people (their first image), against the gallery's first images;
    and whether each duplicate's nearest identity is its own."""
    enrolled = embeddings[starts[gallery]][:, None]  # (K, 1, D)
    own = np.flatnonzero(counts[gallery] >= 2)
    dup = identity_distances(embeddings[second[gallery[own]]], enrolled)
    fresh = identity_distances(embeddings[starts[new]], enrolled)
    return dup.min(axis=1), fresh.min(axis=1), dup.argmin(axis=1) == own


def rate(hits: np.ndarray) -> str:
    """`12.34% (n/N)` for a boolean array (4 decimals below 0.1%, so small rates do not read 0)."""
    if not len(hits):
        return "- (0/0)"
    percent = 100 * hits.mean()
    return f"{percent:.{4 if 0 < percent < 0.1 else 2}f}% ({int(hits.sum())}/{len(hits)})"


def table(header: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the LFW image folder (lfw-deepfunneled)")
    parser.add_argument("--pairs", type=Path, required=True, help="pairsDevTrain.txt: its people are left out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="a known model")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"need the LFW image folder: {args.data} is not a directory (see ../shared/data)")
    if not args.pairs.is_file():
        sys.exit(f"need the LFW pairs file the thresholds were calibrated on: {args.pairs} is not a file")
    card = load_card(args.model)
    bench = openset_lfw()
    thresholds = [(f"FAR {far} point", t) for far, t in sorted(card.far_thresholds.items(), key=lambda x: -float(x[0]))]
    thresholds += [("stricter", t) for t in bench.in_model_units(card, STRICTER)]
    if not (assets.home() / "cache" / f"lfw-{card.model_key}.npz").is_file():
        print("no cached LFW embeddings: embedding 13,233 images first (~5 min)", file=sys.stderr)
    embeddings, labels = bench.embed_lfw(args.data, args.model)
    excluded = people_in(args.pairs)
    keep = ~np.isin(labels, sorted(excluded))
    embeddings, labels = embeddings[keep], labels[keep]  # sorted by name: each person's images are contiguous
    _, starts, counts = np.unique(labels, return_index=True, return_counts=True)
    rng = np.random.default_rng(args.seed)
    print(f"model {card.model_key}; distance sqrt(2 - 2 cos) between unit embeddings; identity = nearest template")
    print(f"left out {len(excluded)} people named in {args.pairs.name}; remaining: {len(starts)} people, "
          f"{len(labels)} images ({np.sum(counts >= 2)} with >= 2 images, {np.sum(counts >= 4)} with >= 4)\n")

    print("## (A) add templates to an existing identity: allowed only if distance <= T\n")
    per_comparison: dict[float, float] = {}
    for templates in (1, 3):
        genuine, attack, every = add_check(embeddings, starts, counts, templates, rng)
        print(f"### {templates} enrolled template(s), people with >= {templates + 1} images\n")
        rows = []
        for name, t in thresholds:
            rows.append([name, f"{t:.4f}", rate(genuine > t), rate(attack <= t), rate(every <= t)])
            if templates == 1:
                per_comparison[t] = float(np.mean(every <= t))
        table(["operating point", "T", "false refusal (own face refused)", "attack accepted (1 per identity)",
               "attack accepted (every other person) = p"], rows)

    print("## (B) duplicate-enrolment check: a new identity is flagged if an enrolled identity is within T\n")
    print("A per-comparison FAR p becomes about 1 - (1 - p)^K per new person against K identities: the card's "
          "FAR points are per comparison, so a 1:K check needs a stricter T as K grows.\n")
    new, order = enrolment_order(counts, rng)
    second = np.full(len(counts), -1)
    second[counts >= 2] = another(starts[counts >= 2], counts[counts >= 2], 1, rng)
    print(f"{len(new)} random people are held out as new enrolments (first image each); galleries take the other "
          f"{len(order)}, the {np.sum(counts[order] >= 2)} with >= 2 images first.\n")
    for k in (*(s for s in GALLERY_SIZES if s < len(order)), len(order)):
        dup, fresh, own = duplicate_check(embeddings, starts, counts, second, order[:k], new)
        print(f"### K = {k} identities (1 template each); {len(dup)} true duplicates, {len(fresh)} new people\n")
        rows = []
        for name, t in thresholds:
            expected = 1 - (1 - per_comparison[t]) ** k
            rows.append([name, f"{t:.4f}", rate(dup <= t), rate((dup <= t) & own), rate(fresh <= t),
                         f"{100 * expected:.{4 if 0 < expected < 1e-3 else 2}f}%"])
        table(["operating point", "T", "duplicates detected", "... with the right person nearest",
               "new people falsely flagged", "if independent: 1-(1-p)^K"], rows)


if __name__ == "__main__":
    main()
