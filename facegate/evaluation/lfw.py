"""The LFW verification benchmark run through FaceGate's own pipeline.

Each LFW image is already a 250x250 crop centred on its subject, so the face we keep is the
detected face nearest the image centre. When the detector finds none (profile, occlusion,
blur) we do what a deployment would do with a pre-cropped photo: align with the mean
landmark positions of the faces that were found in this run (a centre crop in the model's
geometry), and count how often that happened.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold

from facegate.evaluation.pipeline import FacePipeline
from facegate.evaluation.verification import VerificationReport, evaluate
from services.core.images import decode_image
from services.detector.mtcnn_cascade import MtcnnDetector


@dataclass(frozen=True)
class Pair:
    first: str  # path relative to the LFW root
    second: str
    same: bool
    fold: int


# LFW label noise that open-set measurements at FAR 1e-4 trip over (a stranger "accepted" who is
# the enrolled person): found as the closest different-name pairs of the whole set (distance
# < 0.2 with the dlib network) and checked by eye. Verification on pairs files is not affected.
SAME_PERSON = (  # one person under two spellings of the name
    ("Choi_Sung-hong", "Sung_Hong_Choi"), ("Chyung_Dai-chul", "Dai_Chul_Chyung"), ("Wang_Yingfan", "Yingfan_Wang"),
    ("Noer_Moeis", "Noer_Muis"), ("Hasan_Wirayuda", "Hassan_Wirajuda"), ("Nan_Wang", "Wang_Nan"),
    ("Mireya_Moscoso", "Mireya_Elisa_Moscoso_Rodriguez"),
)
SAME_PHOTO = (  # a second copy of a photograph filed under another name (or its face is another's)
    "Ricky_Ray/Ricky_Ray_0001.jpg", "Raul_Ibanez/Raul_Ibanez_0001.jpg", "Eva_Amurri/Eva_Amurri_0001.jpg",
    "Martha_Bowen/Martha_Bowen_0002.jpg", "Andrew_Gilligan/Andrew_Gilligan_0001.jpg",
    "Takahiro_Mori/Takahiro_Mori_0001.jpg",
)


def person_labels(names: list[str] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image path (<person>/<person>_NNNN.jpg): its person, with the name variants of
    SAME_PERSON merged, and whether to use it (False for the copies in SAME_PHOTO)."""
    alias = {second: first for first, second in SAME_PERSON}
    labels = np.array([alias.get(str(n).split("/")[0], str(n).split("/")[0]) for n in names])
    return labels, np.array([str(n) not in SAME_PHOTO for n in names])


def _image(name: str, number: str) -> str:
    return f"{name}/{name}_{int(number):04d}.jpg"


def read_pairs(path: Path) -> list[Pair]:
    """Parse an LFW pairs file. With the "10<TAB>300" header the folds are the file's own blocks;
    without it (View 1 files) every pair gets fold -1 and folds are assigned later."""
    lines = [line.split("\t") for line in Path(path).read_text().splitlines() if line.strip()]
    fold_size = 0
    if len(lines[0]) == 2 and all(part.strip().isdigit() for part in lines[0]):
        fold_size = 2 * int(lines[0][1])
        lines = lines[1:]
    pairs = []
    for index, parts in enumerate(lines):
        fold = index // fold_size if fold_size else -1
        if len(parts) == 3:
            pairs.append(Pair(_image(parts[0], parts[1]), _image(parts[0], parts[2]), True, fold))
        elif len(parts) == 4:
            pairs.append(Pair(_image(parts[0], parts[1]), _image(parts[2], parts[3]), False, fold))
        else:
            raise ValueError(f"{path}:{index + 1}: expected 3 or 4 tab-separated fields, got {len(parts)}")
    return pairs


def select_pairs(pairs: list[Pair], limit: int | None, seed: int) -> tuple[list[Pair], np.ndarray]:
    """The pairs to evaluate and their fold numbers (the file's folds when complete)."""
    chosen = pairs
    if limit is not None and limit < len(pairs):
        chosen = random.Random(seed).sample(pairs, limit)
    if limit is None and all(p.fold >= 0 for p in chosen):
        return chosen, np.array([p.fold for p in chosen])
    same = np.array([p.same for p in chosen])
    splits = min(10, int(min(same.sum(), (~same).sum())))
    if splits < 2:
        raise ValueError("need at least 2 matched and 2 mismatched pairs to cross-validate")
    folds = np.zeros(len(chosen), dtype=int)
    for fold, (_, test) in enumerate(StratifiedKFold(splits, shuffle=True, random_state=seed).split(same, same)):
        folds[test] = fold
    return chosen, folds


@dataclass
class EmbeddingRun:
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    missed: list[str] = field(default_factory=list)


Landmarks = tuple[tuple[float, float], ...]


def centred_faces(
    detector: MtcnnDetector, root: Path, names: list[str], progress: Callable[[int], None] | None = None
) -> Iterator[tuple[list[str], list[np.ndarray], list[Landmarks | None]]]:
    """The images in chunks of up to 16, each with the landmarks of its detected face nearest the
    image's centre (LFW centres the labelled person), or None where the detector found none."""
    batch = 16
    for start in range(0, len(names), batch):
        chunk = names[start : start + batch]
        images = [decode_image((root / name).read_bytes()) for name in chunk]
        found: list[Landmarks | None] = []
        for image, faces in zip(images, detector.detect(images), strict=True):
            centre = np.array(image.shape[1::-1]) / 2
            found.append(min(faces, key=lambda f: np.linalg.norm(np.mean(f.landmarks, 0) - centre)).landmarks
                         if faces else None)
        yield chunk, images, found
        if progress:
            progress(len(chunk))


def mean_landmarks(found: list[Landmarks]) -> Landmarks:
    """Where images without a detected face are aligned: the mean of the faces found (LFW's
    deep-funneled images are roughly aligned already)."""
    if not found:
        raise RuntimeError("the detector found no face in any image; cannot build a fallback crop")
    return tuple(map(tuple, np.mean([np.asarray(v) for v in found], axis=0)))


def aligned_crops(
    pipeline: FacePipeline, root: Path, names: list[str], progress: Callable[[int], None] | None = None
) -> Iterator[tuple[list[str], np.ndarray, bool]]:
    """The images' aligned crops in chunks of up to 16: (names, crops, fallback), each image's
    face as `centred_faces` picks it. Images where the detector found none come last, as one
    chunk with `fallback` True, aligned at `mean_landmarks`."""
    missed: dict[str, np.ndarray] = {}
    landmarks: list[Landmarks] = []
    for chunk, images, found in centred_faces(pipeline.detector, root, names, progress):
        located = [(n, i, f) for n, i, f in zip(chunk, images, found, strict=True) if f is not None]
        missed.update((n, i) for n, i, f in zip(chunk, images, found, strict=True) if f is None)
        landmarks += [f for _, _, f in located]
        if located:
            yield [n for n, _, _ in located], np.stack([pipeline.align(i, f) for _, i, f in located]), False
    if missed:
        fallback = mean_landmarks(landmarks)
        yield list(missed), np.stack([pipeline.align(i, fallback) for i in missed.values()]), True


def embed_images(
    pipeline: FacePipeline, root: Path, names: list[str], progress: Callable[[int], None] | None = None
) -> EmbeddingRun:
    run = EmbeddingRun()
    for chunk, crops, fallback in aligned_crops(pipeline, root, names, progress):
        if fallback:
            run.missed = chunk
        for name, vector in zip(chunk, pipeline.embedder.embed(crops), strict=True):
            run.embeddings[name] = vector
    return run


def evaluate_lfw(
    pipeline: FacePipeline,
    root: Path,
    pairs_file: Path,
    limit: int | None = None,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> tuple[VerificationReport, EmbeddingRun]:
    pairs, folds = select_pairs(read_pairs(pairs_file), limit, seed)
    names = sorted({p.first for p in pairs} | {p.second for p in pairs})
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} images named by {pairs_file} are not under {root}, e.g. {missing[0]}")
    if on_total:
        on_total(len(names))
    run = embed_images(pipeline, root, names, progress)
    distances = np.array([np.linalg.norm(run.embeddings[p.first] - run.embeddings[p.second]) for p in pairs])
    same = np.array([p.same for p in pairs])
    return evaluate(distances, same, folds), run
