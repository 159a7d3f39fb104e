"""The dlib .dat parser and the Keras rebuild reproduce dlib's own descriptors."""

from __future__ import annotations

import numpy as np
import pytest

from services.core.images import decode_image
from services.embedder.dlib_format import Conv, DlibFormatError, FullyConnected, InputRGB, load_network, parse_network


def _crops(pipeline, demo_photos) -> np.ndarray:
    """Aligned 150x150 crops of real faces, plus their mirrors and a noise image."""
    crops = []
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"):
        image = decode_image(demo_photos[name].read_bytes())
        face = pipeline.detector.detect([image])[0][0]
        crops.append(pipeline.align(image, face.landmarks))
    crops += [c[:, ::-1] for c in crops]
    crops.append(np.random.default_rng(0).integers(0, 256, (150, 150, 3), dtype=np.uint8))
    return np.ascontiguousarray(np.stack(crops))


def test__given_the_shipped_dat__when_parsed__then_the_whole_resnet_is_read(dlib_weights):
    network = load_network(dlib_weights)

    assert isinstance(network.layers[0], InputRGB) and network.layers[0].rows == 150
    assert sum(isinstance(layer, Conv) for layer in network.layers) == 29
    assert isinstance(network.layers[-1], FullyConnected) and network.layers[-1].weights.shape == (256, 128)
    assert network.loss.distance_threshold == pytest.approx(0.6)


def test__given_a_truncated_or_foreign_file__when_parsed__then_a_format_error_says_so(dlib_weights):
    data = dlib_weights.read_bytes()
    with pytest.raises(DlibFormatError, match="ends early"):
        parse_network(data[: len(data) // 2])
    with pytest.raises(DlibFormatError):
        parse_network(b"\x01\x01\x01\x05hello")
    with pytest.raises(DlibFormatError):
        parse_network(data + b"\x00")


def test__given_aligned_crops__when_embedded_by_the_port_and_by_dlib__then_they_agree_to_1e_4(
    pipeline, demo_photos, dlib_weights
):
    dlib = pytest.importorskip("dlib", reason="dlib-bin is the test-only reference (pip install -e '.[dev]')")
    crops = _crops(pipeline, demo_photos)
    reference = np.array(dlib.face_recognition_model_v1(str(dlib_weights)).compute_face_descriptor(list(crops)))

    import tensorflow as tf

    ours = pipeline.embedder._module.embed(tf.constant(crops))["raw"].numpy()

    assert np.abs(ours - reference).max() <= 1e-4


def test__given_the_embedder__then_vectors_are_unit_length_and_batches_match_single_calls(pipeline, demo_photos):
    crops = _crops(pipeline, demo_photos)
    batch = pipeline.embedder.embed(crops)
    one = pipeline.embedder.embed(crops[:1])

    assert batch.shape == (len(crops), 128) and batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(one[0], batch[0], atol=1e-5)


def test__given_wrong_crops__when_embedded__then_a_value_error_names_the_expected_shape(embedder):
    with pytest.raises(ValueError, match=r"uint8 \(N, 150, 150, 3\)"):
        embedder.embed(np.zeros((1, 112, 112, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        embedder.embed(np.zeros((1, 150, 150, 3), np.float32))
    assert embedder.embed(np.zeros((0, 150, 150, 3), np.uint8)).shape == (0, 128)


def test__given_an_empty_cache__when_the_model_is_prepared__then_it_matches_the_served_one(
    tmp_path, monkeypatch, embedder, dlib_weights
):
    """The whole conversion path (what `make setup` runs once) from the fetched .dat file."""
    from services.core import assets
    from services.embedder.models import load_embedder

    (tmp_path / "packages").symlink_to(assets.home() / "packages")  # reuse the fetched sdist files
    monkeypatch.setenv("FACEGATE_HOME", str(tmp_path))
    fresh = load_embedder()
    crops = np.random.default_rng(3).integers(0, 256, (3, 150, 150, 3), dtype=np.uint8)

    assert any((tmp_path / "models").iterdir())
    np.testing.assert_allclose(fresh.embed(crops), embedder.embed(crops), atol=1e-6)
