"""The `facegate` command as users run it: a real subprocess, real files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from facegate.harness.pki import default_pki
from tests.conftest import shared_path


def facegate(*args: str, tls_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it, with the harness's admin certificate (FACEGATE_TLS_DIR), or
    `tls_dir` (a camera's, for `facegate camera`)."""
    env = {**os.environ, "FACEGATE_TLS_DIR": str(tls_dir or default_pki().user())}
    return subprocess.run([sys.executable, "-m", "facegate.cli", *args], capture_output=True, text=True, timeout=600,
                          env=env)


def test__given_good_and_bad_files__when_embedding__then_each_gets_a_line_and_bad_ones_an_error(tmp_path, demo_photos):
    extensionless = tmp_path / "IMG_0001"
    shutil.copy(demo_photos["obama.jpg"], extensionless)  # recognised by content, not by name
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")

    result = facegate("embed", str(extensionless), str(empty), str(tmp_path / "missing.png"), str(text))
    lines = [json.loads(line) for line in result.stdout.splitlines()]

    assert result.returncode == 0, result.stderr
    assert [line["file"] for line in lines] == [str(p) for p in (extensionless, empty, tmp_path / "missing.png", text)]
    good = lines[0]
    assert good["error"] is None and len(good["faces"]) == 1
    face = good["faces"][0]
    assert len(face["box"]) == 4 and len(face["landmarks"]) == 5 and len(face["embedding"]) == 128
    assert 0.0 < face["score"] <= 1.0
    assert "empty" in lines[1]["error"]
    assert "cannot read file" in lines[2]["error"]
    assert "not a recognised image" in lines[3]["error"]


def test__given_two_photos_of_obama__when_compared__then_same(demo_photos):
    result = facegate("compare", str(demo_photos["obama.jpg"]), str(demo_photos["obama2.jpg"]))
    verdict = json.loads(result.stdout)

    assert verdict["verdict"] == "same", verdict
    assert verdict["distance"] < verdict["threshold"]


def test__given_obama_and_biden__when_compared__then_different(demo_photos):
    verdict = json.loads(facegate("compare", str(demo_photos["obama.jpg"]), str(demo_photos["biden.jpg"])).stdout)

    assert verdict["verdict"] == "different", verdict


def test__given_the_shared_examples__when_compared__then_same_person_same_and_two_people_different():
    examples = shared_path("face_recognition-examples", "examples")
    train = examples / "knn_examples" / "train"
    same = json.loads(facegate("compare", str(examples / "obama.jpg"), str(next((train / "obama").iterdir()))).stdout)
    different = json.loads(facegate("compare", str(examples / "obama.jpg"), str(examples / "biden.jpg")).stdout)

    assert same["verdict"] == "same" and different["verdict"] == "different"


def test__given_a_photo_without_a_face__when_compared__then_exit_2_and_say_so(tmp_path, demo_photos):
    from PIL import Image

    blank = tmp_path / "wall.png"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)

    result = facegate("compare", str(blank), str(demo_photos["obama.jpg"]))

    assert result.returncode == 2 and "no face found" in result.stderr


def test__given_a_bad_detector_setting__then_the_cli_refuses_before_loading_models():
    result = facegate("embed", "--min-face-size", "3", "x.jpg")

    assert result.returncode == 2 and "min_face_size" in result.stderr


def test__given_lfw__when_evaluating_a_seeded_subset__then_the_report_has_the_protocol_fields(tmp_path):
    data = shared_path("lfw-deepfunneled")
    pairs = shared_path("lfw-pairs", "pairs.txt")
    out = tmp_path / "report.json"

    result = facegate("eval", "lfw", "--data", str(data), "--pairs", str(pairs), "--limit", "200", "--seed", "3",
                      "--json", str(out))
    report = json.loads(out.read_text())

    assert result.returncode == 0, result.stderr
    assert report["pairs"] == 200
    assert report["accuracy"]["mean"] >= 0.95
    assert {"std", "folds"} <= set(report["accuracy"]) and len(report["accuracy"]["folds"]) == 10
    assert {"auc", "eer", "threshold", "missed_faces"} <= set(report)
    assert "0.001" in report["tar_at_far"]


def test__given_lfw_images__when_calibrating__then_thresholds_report_and_plot_are_written(tmp_path):
    data = shared_path("lfw-deepfunneled")
    dev = shared_path("lfw-pairs", "pairsDevTrain.txt").read_text().splitlines()
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("\n".join(dev[:30] + dev[1100:1130]) + "\n")  # 30 matched + 30 mismatched
    report, plot = tmp_path / "calibration.json", tmp_path / "calibration.png"

    result = facegate("calibrate", "--data", str(data), "--pairs", str(pairs), "--far", "0.01",
                      "--json", str(report), "--plot", str(plot))
    calibration = json.loads(report.read_text())

    assert result.returncode == 0, result.stderr
    assert "| 0.01 |" in result.stdout
    assert calibration["genuine_pairs"] >= 30 and calibration["impostor_pairs"] > 1000
    point = calibration["points"][0]
    assert point["far"] <= 0.01 and 0.2 < point["threshold"] < 0.6
    assert plot.read_bytes()[:4] == b"\x89PNG"
