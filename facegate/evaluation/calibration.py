"""Threshold calibration: from labelled faces to the distance that meets a false-accept target.

A door's costly error is letting a stranger in, so the operating threshold is chosen for a
target false accept rate (FAR), not for best accuracy. With a few thousand labelled images,
every pair among them is used: ~6 million impostor pairs make FAR = 1e-4 measurable, which
the 1,100 impostor pairs of an LFW pairs file cannot.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from facegate.evaluation.verification import equal_error_rate


@dataclass(frozen=True)
class OperatingPoint:
    far_target: float
    threshold: float  # accept if distance <= threshold (as everywhere in FaceGate)
    far: float  # measured on the impostor pairs
    frr: float  # measured on the genuine pairs


@dataclass(frozen=True)
class CalibrationReport:
    genuine_pairs: int
    impostor_pairs: int
    auc: float
    eer: float
    points: tuple[OperatingPoint, ...]
    histogram_edges: tuple[float, ...]
    genuine_histogram: tuple[int, ...]
    impostor_histogram: tuple[int, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def pair_distances(embeddings: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances of every genuine (same label) and impostor pair among unit embeddings."""
    upper = np.triu_indices(len(embeddings), 1)
    similarity = (embeddings @ embeddings.T)[upper]
    distances = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * similarity))
    same = labels[upper[0]] == labels[upper[1]]
    return distances[same], distances[~same]


def threshold_at_far(impostor: np.ndarray, far: float) -> float:
    """A threshold accepting (distance <= threshold) at most `far` of the impostor pairs: halfway
    between the last impostor it may accept and the first it must not."""
    allowed = int(np.floor(far * len(impostor)))
    ordered = np.sort(impostor)
    if allowed >= len(ordered):
        return float(ordered[-1])
    if allowed == 0:
        return float(ordered[0]) * (1 - 1e-6)
    return float((ordered[allowed - 1] + ordered[allowed]) / 2)


def calibrate(genuine: np.ndarray, impostor: np.ndarray, fars: tuple[float, ...]) -> CalibrationReport:
    if len(genuine) == 0 or len(impostor) == 0:
        raise ValueError("calibration needs genuine and impostor pairs (several images of some people)")
    smallest = 1.0 / len(impostor)
    for far in fars:
        if far < smallest:
            raise ValueError(f"FAR {far:g} needs more than {len(impostor)} impostor pairs to measure")
    points = []
    for far in sorted(fars, reverse=True):
        threshold = threshold_at_far(impostor, far)
        points.append(OperatingPoint(far, threshold, float(np.mean(impostor <= threshold)),
                                     float(np.mean(genuine > threshold))))
    distances = np.concatenate([genuine, impostor])
    same = np.concatenate([np.ones(len(genuine), bool), np.zeros(len(impostor), bool)])
    edges = np.linspace(0.0, 1.6, 81)
    return CalibrationReport(
        genuine_pairs=len(genuine),
        impostor_pairs=len(impostor),
        auc=float(roc_auc_score(same, -distances)),
        eer=equal_error_rate(distances, same),
        points=tuple(points),
        histogram_edges=tuple(float(e) for e in edges),
        genuine_histogram=tuple(int(c) for c in np.histogram(genuine, edges)[0]),
        impostor_histogram=tuple(int(c) for c in np.histogram(impostor, edges)[0]),
    )


def plot(report: CalibrationReport, path: Path, title: str) -> None:
    """Genuine/impostor distance distributions with the operating thresholds marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = np.asarray(report.histogram_edges)
    centres = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    genuine = np.asarray(report.genuine_histogram) / max(1, report.genuine_pairs)
    impostor = np.asarray(report.impostor_histogram) / max(1, report.impostor_pairs)
    figure, axis = plt.subplots(figsize=(8, 4.5))
    axis.bar(centres, genuine, width, alpha=0.6, label=f"genuine ({report.genuine_pairs:,} pairs)")
    axis.bar(centres, impostor, width, alpha=0.6, label=f"impostor ({report.impostor_pairs:,} pairs)")
    axis.set_yscale("log")  # the tails decide the thresholds; a linear scale hides them
    for i, point in enumerate(report.points):
        axis.axvline(point.threshold, linestyle="--", color="black", linewidth=0.8)
        axis.text(point.threshold, 10.0 ** (-1 - 1.2 * i), f" FAR {point.far_target:g}: d <= {point.threshold:.3f},"
                  f" FRR {point.frr:.1%}", fontsize=8)
    axis.set_xlabel("distance between unit embeddings")
    axis.set_ylabel("fraction of pairs (log)")
    axis.set_title(f"{title} (AUC {report.auc:.4f}, EER {report.eer:.2%})")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
