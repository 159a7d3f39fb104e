"""The embedding models side by side on the same detections: the dlib ResNet, MobileFaceNet, and
two fusions of them, on LFW's standard 10 folds, on all pairs of people kept out of calibration,
at each model's calibrated thresholds, and on speed.

    .venv/bin/python bench/embedders_lfw.py [--rounds 5]        (make bench-embedders)

Faces: every image of pairs.txt and pairsDevTrain.txt is detected once (MTCNN, 40 px minimum
face, score 0.95, as `facegate calibrate`); the face nearest the centre is kept and each model
aligns those same landmarks to its own template (images without a face: the mean landmarks).
Each model embeds as its card says (both flip-average); "single pass" is MobileFaceNet without
its mirror, to show what the flip buys.

- 10-fold: pairs.txt's 6,000 pairs, each fold's threshold chosen on the other nine; AUC, EER;
  TAR at FAR 1e-3 of its 3,000 impostor pairs (3 false accepts: coarse).
- All pairs: every pair among the pairs.txt images of people who are not in pairsDevTrain.txt
  (people-disjoint from calibration; millions of impostor pairs): TAR at FAR 1e-3 and 1e-4, the
  threshold set on these pairs themselves (a point of the ROC, not an operating point).
- Card: each model's FAR 1e-3 threshold calibrated on pairsDevTrain.txt (as its card's, so the
  fusions' are calibrated here the same way), applied to those people-disjoint pairs: the
  false-accept and false-reject rates a site would see.
- Speed: ms per face at batch 1 and 16 on LiteRT with one thread (the embedder service's
  settings), models taking turns for `--rounds` rounds; a fusion costs both networks.

Fusions:
- embedding: the two unit embeddings concatenated and divided by sqrt(2) (a unit vector whose
  squared distance is the mean of the two squared distances): a matcher stores it as any model.
- score: the mean of the two distances, each divided by its model's FAR 1e-3 threshold.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tflite_lfw import speed  # noqa: E402

from facegate.evaluation.calibration import pair_distances, threshold_at_far  # noqa: E402
from facegate.evaluation.lfw import Landmarks, centred_faces, mean_landmarks, read_pairs  # noqa: E402
from facegate.evaluation.verification import evaluate  # noqa: E402
from services.core.images import decode_image  # noqa: E402
from services.core.model_card import ModelCard  # noqa: E402
from services.detector.alignment import align_face  # noqa: E402
from services.detector.mtcnn_cascade import DetectorSettings, MtcnnDetector  # noqa: E402
from services.embedder.models import FaceEmbedder, load_embedder  # noqa: E402

DATA = REPO.parent / "shared" / "data"
MODELS = ("dlib-resnet-v1", "mobilefacenet-v1")
FAR = 1e-3


def landmarks_of(detector: MtcnnDetector, root: Path, names: list[str]) -> dict[str, Landmarks]:
    """Each image's centred face; images without one get the mean landmarks of those found."""
    found: dict[str, Landmarks | None] = {}
    for chunk, _, faces in centred_faces(detector, root, names):
        found.update(zip(chunk, faces, strict=True))
    fallback = mean_landmarks([f for f in found.values() if f is not None])
    missed = sum(f is None for f in found.values())
    print(f"{len(names)} images, {missed} without a detected face (mean landmarks)", file=sys.stderr)
    return {n: f if f is not None else fallback for n, f in found.items()}


def aligned(card: ModelCard, root: Path, names: list[str], landmarks: dict[str, Landmarks]) -> np.ndarray:
    """The images' faces aligned to the card's template."""
    return np.stack([align_face(decode_image((root / n).read_bytes()), landmarks[n], card.landmark_template,
                                card.input_size) for n in names])


def embed_all(embedder: FaceEmbedder, root: Path, names: list[str], landmarks: dict[str, Landmarks]) -> np.ndarray:
    return np.concatenate([embedder.embed(aligned(embedder.card, root, names[start:start + 32], landmarks))
                           for start in range(0, len(names), 32)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA / "lfw-deepfunneled")
    parser.add_argument("--pairs", type=Path, default=DATA / "lfw-pairs" / "pairs.txt")
    parser.add_argument("--dev-train", type=Path, default=DATA / "lfw-pairs" / "pairsDevTrain.txt")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not args.data.is_dir() or not args.pairs.is_file() or not args.dev_train.is_file():
        print(f"LFW not found ({args.data}, {args.pairs}, {args.dev_train}): nothing to measure", file=sys.stderr)
        return 2
    started = time.monotonic()
    pairs, dev = read_pairs(args.pairs), read_pairs(args.dev_train)
    test_names = sorted({p.first for p in pairs} | {p.second for p in pairs})
    dev_names = sorted({p.first for p in dev} | {p.second for p in dev})
    dev_people = {n.split("/")[0] for n in dev_names}
    disjoint = [n for n in test_names if n.split("/")[0] not in dev_people]
    names = sorted(set(test_names) | set(dev_names))
    landmarks = landmarks_of(MtcnnDetector(DetectorSettings(min_face_size=40)), args.data, names)

    embedders = {name: load_embedder(name, runtime="litert") for name in MODELS}
    single = load_embedder(MODELS[1], runtime="litert")
    single.card = replace(single.card, flip_average=False)
    vectors = {name: embed_all(e, args.data, names, landmarks) for name, e in embedders.items()}
    vectors["MobileFaceNet single pass"] = embed_all(single, args.data, names, landmarks)
    fused = np.concatenate([vectors[m] for m in MODELS], axis=1) / np.sqrt(2)
    vectors["fusion: embedding"] = fused.astype(np.float32)  # as a matcher would store it
    print(f"embedded; {time.monotonic() - started:.0f} s", file=sys.stderr)

    index = {n: i for i, n in enumerate(names)}
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    first = np.array([index[p.first] for p in pairs])
    second = np.array([index[p.second] for p in pairs])

    def all_pairs(vectors: np.ndarray, keep: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(genuine, impostor) distances of every pair among `keep`, in the same order for every model."""
        return pair_distances(vectors[[index[n] for n in keep]], np.array([n.split("/")[0] for n in keep]))

    # every measure below works on distances: per model, pairs.txt's pairs, then all pairs of the
    # DevTrain images and of the people-disjoint ones, each as (genuine, impostor)
    distances = {name: (np.linalg.norm(v[first] - v[second], axis=1), *all_pairs(v, dev_names),
                        *all_pairs(v, disjoint)) for name, v in vectors.items()}
    scale = {m: threshold_at_far(distances[m][2], FAR) for m in MODELS}  # each model's DevTrain FAR 1e-3 point
    distances["fusion: score"] = tuple(
        (distances[MODELS[0]][k] / scale[MODELS[0]] + distances[MODELS[1]][k] / scale[MODELS[1]]) / 2
        for k in range(5))

    rows = {}
    for name, (pair_d, _, dev_impostor, genuine, impostor) in distances.items():
        report = evaluate(pair_d, same, folds)
        roc = {far: float(np.mean(genuine <= threshold_at_far(impostor, far))) for far in (1e-3, 1e-4)}
        card_threshold = threshold_at_far(dev_impostor, FAR)
        rows[name] = (report, roc, card_threshold, float(np.mean(impostor <= card_threshold)),
                      float(np.mean(genuine > card_threshold)))

    crops = {name: aligned(e.card, args.data, test_names[:200], landmarks) for name, e in embedders.items()}
    crops["MobileFaceNet single pass"] = crops[MODELS[1]]
    timing = {}
    for batch in (1, 16):  # a fusion runs both networks, one after the other
        timed = {**embedders, "MobileFaceNet single pass": single}
        per_model = speed(timed, crops, batch, args.rounds)
        timing[batch] = {**per_model, "fusion": per_model[MODELS[0]] + per_model[MODELS[1]]}

    genuine_count, impostor_count = (len(d) for d in distances[MODELS[0]][3:])
    print(f"{platform.machine()}, {os.cpu_count()} CPUs; pairs.txt 6,000 pairs (10 folds); all pairs among "
          f"{len(disjoint):,} images of {len({n.split('/')[0] for n in disjoint}):,} people not in pairsDevTrain.txt "
          f"({genuine_count:,} genuine, {impostor_count:,} impostor); {time.monotonic() - started:.0f} s in all")
    print("| model | 10-fold accuracy | AUC | EER | TAR@FAR 1e-3 (pairs.txt) | TAR@FAR 1e-3 (all pairs) | "
          "TAR@FAR 1e-4 (all pairs) | DevTrain FAR 1e-3 threshold: FAR / FRR on the others | ms/face batch 1 | "
          "ms/face batch 16 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, (report, roc, threshold, far, frr) in rows.items():
        key = "fusion" if name.startswith("fusion") else name
        ms = f"{timing[1][key]:.1f} | {timing[16][key]:.1f}"
        print(f"| {name} | {100 * report.accuracy_mean:.2f}% +- {100 * report.accuracy_std:.2f} | {report.auc:.4f} | "
              f"{100 * report.eer:.2f}% | {100 * report.tar_at_far['0.001']:.1f}% | {100 * roc[1e-3]:.2f}% | "
              f"{100 * roc[1e-4]:.2f}% | {threshold:.4f}: {far:.1e} / {100 * frr:.2f}% | {ms} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
