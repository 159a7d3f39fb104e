"""The verification metrics and the LFW pairs reader, on data whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from facegate.evaluation.lfw import read_pairs, select_pairs
from facegate.evaluation.verification import best_threshold, equal_error_rate, evaluate, tar_at_far


def test__given_separable_distances__then_accuracy_is_perfect_and_the_threshold_separates():
    distances = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9] * 10)
    same = np.array([True, True, True, False, False, False] * 10)
    report = evaluate(distances, same, np.repeat(np.arange(10), 6))

    assert report.accuracy_mean == 1.0 and report.auc == 1.0 and report.eer == 0.0
    assert 0.3 < report.threshold < 0.7
    assert report.tar_at_far["0.001"] == 1.0


def test__given_one_impostor_closer_than_all_genuines__then_tar_at_a_tiny_far_is_zero():
    distances = np.array([0.05, 0.2, 0.3, 0.9, 0.9, 0.9])
    same = np.array([False, True, True, False, False, False])

    assert tar_at_far(distances, same, 1e-3) == 0.0
    assert tar_at_far(distances, same, 0.25) == 1.0
    assert best_threshold(distances, same) == pytest.approx(0.6)
    assert equal_error_rate(distances, same) == pytest.approx(0.25, abs=0.01)


def test__given_a_pairs_file_with_a_header__then_folds_follow_the_blocks(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("2\t1\nA\t1\t2\nB\t1\tC\t2\nD\t3\t4\nE\t1\tF\t1\n")
    pairs = read_pairs(path)

    assert [(p.first, p.second, p.same, p.fold) for p in pairs] == [
        ("A/A_0001.jpg", "A/A_0002.jpg", True, 0),
        ("B/B_0001.jpg", "C/C_0002.jpg", False, 0),
        ("D/D_0003.jpg", "D/D_0004.jpg", True, 1),
        ("E/E_0001.jpg", "F/F_0001.jpg", False, 1),
    ]


def test__given_a_limit__then_the_subset_is_seeded_and_folds_are_stratified(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("".join(f"P{i}\t1\t2\n" for i in range(50)) + "".join(f"Q{i}\t1\tR{i}\t1\n" for i in range(50)))
    pairs = read_pairs(path)
    first, folds = select_pairs(pairs, 40, seed=7)
    again, _ = select_pairs(pairs, 40, seed=7)

    assert first == again and len(first) == 40
    for fold in np.unique(folds):
        members = [p.same for p, f in zip(first, folds, strict=True) if f == fold]
        assert any(members) and not all(members)


def test__given_a_malformed_line__then_the_reader_names_the_line(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("A\t1\t2\nbroken line\n")

    with pytest.raises(ValueError, match=":2:"):
        read_pairs(path)
