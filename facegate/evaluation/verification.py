"""Verification metrics for pairs of faces: the LFW 10-fold protocol, ROC, EER, TAR@FAR."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve


@dataclass(frozen=True)
class VerificationReport:
    pairs: int
    accuracy_mean: float
    accuracy_std: float
    fold_accuracies: tuple[float, ...]
    threshold: float  # mean of the per-fold thresholds (each chosen on the other 9 folds)
    auc: float
    eer: float
    tar_at_far: dict[str, float]


def best_threshold(distances: np.ndarray, same: np.ndarray) -> float:
    """The distance threshold (accept if distance <= t) with the highest accuracy on these pairs."""
    order = np.sort(distances)
    candidates = np.concatenate([[order[0] - 1e-6], (order[:-1] + order[1:]) / 2, [order[-1] + 1e-6]])
    # accuracy(t) = (#same with d <= t + #different with d > t) / n, computed for all t at once
    same_sorted = np.sort(distances[same])
    diff_sorted = np.sort(distances[~same])
    true_accepts = np.searchsorted(same_sorted, candidates, side="right")
    true_rejects = len(diff_sorted) - np.searchsorted(diff_sorted, candidates, side="right")
    correct = true_accepts + true_rejects
    # Accuracy is flat between data points: take the middle of the first best plateau, not its
    # edge, so the threshold sits between the classes rather than on a sample.
    best = np.flatnonzero(correct == correct.max())
    run_end = best[0]
    while run_end + 1 < len(correct) and correct[run_end + 1] == correct.max():
        run_end += 1
    return float((candidates[best[0]] + candidates[run_end]) / 2)


def tar_at_far(distances: np.ndarray, same: np.ndarray, far: float) -> float:
    """The highest true-accept rate whose false-accept rate does not exceed `far`."""
    fpr, tpr, _ = roc_curve(same, -distances)
    allowed = fpr <= far
    return float(tpr[allowed].max()) if allowed.any() else 0.0


def equal_error_rate(distances: np.ndarray, same: np.ndarray) -> float:
    """The rate where false accepts equal false rejects, interpolated along the ROC."""
    fpr, tpr, _ = roc_curve(same, -distances)
    gap = (1 - tpr) - fpr  # decreasing along the curve, from 1 to -1
    i = int(np.flatnonzero(gap >= 0)[-1])
    if i + 1 == len(gap) or gap[i] == 0:
        return float(fpr[i])
    t = gap[i] / (gap[i] - gap[i + 1])
    return float(fpr[i] + t * (fpr[i + 1] - fpr[i]))


def evaluate(
    distances: np.ndarray, same: np.ndarray, folds: np.ndarray, fars: tuple[float, ...] = (1e-3, 1e-2)
) -> VerificationReport:
    """10-fold style protocol: for each fold, pick the threshold on the others, score this one."""
    distances = np.asarray(distances, np.float64)
    same = np.asarray(same, bool)
    accuracies, thresholds = [], []
    for fold in np.unique(folds):
        test = folds == fold
        threshold = best_threshold(distances[~test], same[~test])
        thresholds.append(threshold)
        accuracies.append(float(np.mean((distances[test] <= threshold) == same[test])))
    return VerificationReport(
        pairs=len(distances),
        accuracy_mean=float(np.mean(accuracies)),
        accuracy_std=float(np.std(accuracies)),
        fold_accuracies=tuple(accuracies),
        threshold=float(np.mean(thresholds)),
        auc=float(roc_auc_score(same, -distances)),
        eer=equal_error_rate(distances, same),
        tar_at_far={f"{far:g}": tar_at_far(distances, same, far) for far in fars},
    )
