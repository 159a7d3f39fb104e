"""The in-process face pipeline: detect -> align -> embed, used by the CLI and evaluations.

The gRPC services run the same three steps in separate processes; this composition is for
tools that work on files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.core.model_card import DEFAULT_MODEL
from services.detector.alignment import align_face
from services.detector.faces import DetectedFace
from services.detector.mtcnn_cascade import DetectorSettings, MtcnnDetector
from services.embedder.models import FaceEmbedder, load_embedder


@dataclass(frozen=True)
class EmbeddedFace:
    face: DetectedFace
    embedding: np.ndarray  # unit vector


class FacePipeline:
    """Detector + aligner + embedder, loaded once."""

    def __init__(
        self,
        detector: MtcnnDetector | None = None,
        embedder: FaceEmbedder | None = None,
        *,
        model: str = DEFAULT_MODEL,
        detector_settings: DetectorSettings | None = None,
    ) -> None:
        self.detector = detector or MtcnnDetector(detector_settings)
        self.embedder = embedder or load_embedder(model)

    @property
    def distance_threshold(self) -> float:
        return self.embedder.card.distance_threshold

    def align(self, frame: np.ndarray, landmarks: tuple[tuple[float, float], ...]) -> np.ndarray:
        card = self.embedder.card
        return align_face(frame, landmarks, card.landmark_template, card.input_size)

    def embed_faces(self, frame: np.ndarray, faces: list[DetectedFace]) -> list[EmbeddedFace]:
        if not faces:
            return []
        crops = np.stack([self.align(frame, f.landmarks) for f in faces])
        return [EmbeddedFace(f, e) for f, e in zip(faces, self.embedder.embed(crops), strict=True)]

    def process(self, frame: np.ndarray) -> list[EmbeddedFace]:
        """All faces in one RGB frame with their embeddings, most confident first."""
        return self.embed_faces(frame, self.detector.detect([frame])[0])


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two unit embeddings (0 = identical, 2 = opposite)."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
