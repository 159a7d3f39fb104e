"""Calibration picks thresholds that meet false-accept targets on the pairs it is given."""

from __future__ import annotations

import numpy as np
import pytest

from facegate.evaluation.calibration import calibrate, pair_distances, threshold_at_far


def test__given_impostor_distances__then_the_threshold_accepts_exactly_the_allowed_share():
    impostor = np.linspace(0.3, 1.3, 10_000)

    threshold = threshold_at_far(impostor, 1e-3)

    assert np.sum(impostor <= threshold) == 10


def test__given_separated_classes__then_each_operating_point_reports_its_measured_far_and_frr():
    rng = np.random.default_rng(0)
    genuine, impostor = rng.normal(0.3, 0.05, 2_000), rng.normal(0.6, 0.05, 200_000)

    report = calibrate(genuine, impostor, (1e-2, 1e-3, 1e-4))

    assert [p.far_target for p in report.points] == [1e-2, 1e-3, 1e-4]
    for point in report.points:
        assert point.far <= point.far_target
        assert point.frr == pytest.approx(np.mean(genuine > point.threshold))
    assert report.points[0].threshold > report.points[1].threshold > report.points[2].threshold
    assert sum(report.impostor_histogram) <= 200_000 and report.auc > 0.99


def test__given_too_few_impostors_for_a_target__then_calibration_refuses():
    with pytest.raises(ValueError, match="needs more than 100 impostor pairs"):
        calibrate(np.array([0.2, 0.3]), np.linspace(0.5, 1, 100), (1e-3,))


def test__pair_distances_split_every_pair_by_label():
    embeddings = np.eye(4, dtype=np.float32)[[0, 0, 1, 2]]
    labels = np.array(["a", "a", "b", "c"])

    genuine, impostor = pair_distances(embeddings, labels)

    np.testing.assert_allclose(genuine, [0.0], atol=1e-6)
    np.testing.assert_allclose(impostor, [np.sqrt(2)] * 5, atol=1e-6)
