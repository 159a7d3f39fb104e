"""The embedder's backends side by side in one run: the SavedModel and its TFLite conversions
(fp32, fp16, int8; services/embedder/tflite.py), on LFW's standard 10 folds (pairs.txt: the
network is not trained here, so the standard protocol applies) and on speed.

    .venv/bin/python bench/tflite_lfw.py [--representative 300] [--rounds 5]

Accuracy: every pairs.txt image's aligned crop (the detector's face nearest the centre, as
`facegate eval lfw` does) embedded by each backend; 10-fold accuracy (mean +- std over folds,
each fold's threshold chosen on the other nine) and TAR at FAR 1e-3 (pairs.txt has 3,000
impostor pairs: 3 false accepts, so that figure is coarse). The int8 variant calibrates its
activations on aligned crops of LFW people who appear nowhere in pairs.txt (seeded draw).

Speed: ms per face (each face embedded with its mirror, as the card asks) at batch 1 and 16,
the backends taking turns for `--rounds` rounds (so drift on the machine hits all alike); the
median of the rounds' medians. Both runtimes use the machine's cores (TensorFlow's default
thread pools; LiteRT with XNNPACK and one thread per core).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from facegate.evaluation.lfw import aligned_crops, read_pairs, select_pairs  # noqa: E402
from facegate.evaluation.pipeline import FacePipeline  # noqa: E402
from facegate.evaluation.verification import evaluate  # noqa: E402
from services.embedder.models import FaceEmbedder, load_embedder, prepare_model  # noqa: E402
from services.embedder.tflite import PRECISIONS, TFLiteEmbedder, convert  # noqa: E402

DATA = REPO.parent / "shared" / "data"


def crops_of(pipeline: FacePipeline, root: Path, names: list[str]) -> np.ndarray:
    found = {n: c for chunk, batch, _ in aligned_crops(pipeline, root, names)
             for n, c in zip(chunk, batch, strict=True)}
    return np.stack([found[n] for n in names])


def speed(embedders: dict[str, FaceEmbedder], crops: np.ndarray | dict[str, np.ndarray], batch: int, rounds: int,
          calls: int = 10) -> dict:
    """ms per face for each backend at `batch`, backends alternating per round (`crops`: one set for
    all, or each backend's own, when their models take different crops)."""
    mine = {name: crops[name] if isinstance(crops, dict) else crops for name in embedders}
    per_round: dict[str, list[float]] = {name: [] for name in embedders}
    for name, embedder in embedders.items():  # warm up (graph plans, allocations)
        embedder.embed(mine[name][:batch])
    for r in range(rounds):
        for name, embedder in embedders.items():
            times = []
            for c in range(calls):
                start = (r * calls + c) * batch % (len(mine[name]) - batch)
                began = time.perf_counter()
                embedder.embed(mine[name][start:start + batch])
                times.append(time.perf_counter() - began)
            per_round[name].append(1000 * statistics.median(times) / batch)
    return {name: statistics.median(values) for name, values in per_round.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA / "lfw-deepfunneled")
    parser.add_argument("--pairs", type=Path, default=DATA / "lfw-pairs" / "pairs.txt")
    parser.add_argument("--representative", type=int, default=300, help="int8 calibration crops")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="a seeded subset of N pairs (a quick check)")
    args = parser.parse_args()
    if not args.data.is_dir() or not args.pairs.is_file():
        print(f"LFW not found ({args.data}, {args.pairs}): nothing to measure", file=sys.stderr)
        return 2
    started = time.monotonic()
    pipeline = FacePipeline()
    pairs, folds = select_pairs(read_pairs(args.pairs), args.limit, args.seed)
    names = sorted({p.first for p in pairs} | {p.second for p in pairs})
    in_pairs = {n.split("/")[0] for n in names}
    others = sorted(str(p.relative_to(args.data)) for p in args.data.glob("*/*.jpg") if p.parent.name not in in_pairs)
    random.Random(args.seed).shuffle(others)
    representative = crops_of(pipeline, args.data, others[:args.representative])
    crops = crops_of(pipeline, args.data, names)
    print(f"{len(names)} pairs.txt images aligned, {len(representative)} representative crops of "
          f"{len({n.split('/')[0] for n in others[:args.representative]})} people not in pairs.txt; "
          f"{time.monotonic() - started:.0f} s", file=sys.stderr)

    embedders: dict[str, FaceEmbedder] = {"SavedModel": load_embedder()}
    converted: dict[str, float] = {}
    sizes = {"SavedModel": sum(f.stat().st_size for f in (prepare_model() / "saved_model").rglob("*") if f.is_file())}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in PRECISIONS:
            began = time.monotonic()
            convert(prepare_model(), Path(tmp) / precision, precision, representative)
            converted[precision] = time.monotonic() - began
            embedders[f"TFLite {precision}"] = TFLiteEmbedder(Path(tmp) / precision)
            sizes[f"TFLite {precision}"] = (Path(tmp) / precision / "model.tflite").stat().st_size
        rows, reference = {}, None
        for name, embedder in embedders.items():
            vectors = np.concatenate([embedder.embed(crops[i:i + 64]) for i in range(0, len(crops), 64)])
            index = {n: i for i, n in enumerate(names)}
            distances = np.array([np.linalg.norm(vectors[index[p.first]] - vectors[index[p.second]]) for p in pairs])
            report = evaluate(distances, np.array([p.same for p in pairs]), folds)
            drift = 0.0 if reference is None else float(np.linalg.norm(vectors - reference, axis=1).max())
            reference = vectors if reference is None else reference
            rows[name] = (report, drift)
        one = speed(embedders, crops, 1, args.rounds)
        sixteen = speed(embedders, crops, 16, args.rounds)

    print(f"{platform.machine()}, {os.cpu_count()} CPUs; {len(pairs)} pairs.txt pairs, 10 folds; "
          f"{time.monotonic() - started:.0f} s in all")
    print("| backend | file MB | converted in | LFW accuracy (10-fold) | TAR @ FAR 1e-3 | largest drift from "
          "SavedModel | ms/face batch 1 | ms/face batch 16 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (report, drift) in rows.items():
        precision = name.removeprefix("TFLite ")
        made = f"{converted[precision]:.0f} s" if precision in converted else "-"
        print(f"| {name} | {sizes[name] / 1e6:.1f} | {made} | {100 * report.accuracy_mean:.2f}% +- "
              f"{100 * report.accuracy_std:.2f} | {100 * report.tar_at_far['0.001']:.1f}% | {drift:.2e} | "
              f"{one[name]:.2f} | {sixteen[name]:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
