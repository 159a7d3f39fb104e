"""The TFLite backend: a model directory converted from the SavedModel (`facegate tflite`) loads
in the embedder like any model and gives the SavedModel's embeddings, within each precision's
stated tolerance (fp32 is the same network; a conversion that kept the variables unfrozen would
give NaN, which the parity check catches)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from facegate.harness.stack import ServiceProcess
from services.contracts.v1 import embedder_pb2, embedder_pb2_grpc
from services.core import ndarray
from services.embedder.models import load_embedder, prepare_model
from services.embedder.tflite import TFLiteEmbedder, convert
from tests.conftest import channel
from tests.system.test_cli import facegate

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

# largest Euclidean distance between a TFLite embedding and the SavedModel's (unit vectors; the
# card's thresholds are about 0.37): fp32 is exact up to float rounding, fp16 rounds the
# weights, int8 quantises weights and activations
TOLERANCE = {"fp32": 1e-5, "fp16": 5e-3, "int8": 0.08}


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test__a_tflite_model_directory_gives_the_saved_models_embeddings_within_its_precisions_tolerance(
    precision, tmp_path, embedder, demo_crops
):
    card = convert(prepare_model(), tmp_path / precision, precision, representative=demo_crops)
    lite = load_embedder(str(tmp_path / precision))

    expected, got = embedder.embed(demo_crops), lite.embed(demo_crops)
    one_by_one = np.concatenate([lite.embed(demo_crops[i:i + 1]) for i in range(len(demo_crops))])

    assert isinstance(lite, TFLiteEmbedder) and lite.card == card
    assert np.isfinite(got).all() and np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert np.linalg.norm(got - expected, axis=1).max() < TOLERANCE[precision]
    assert np.allclose(one_by_one, got, atol=1e-5)  # the batch size does not change a face's embedding
    assert card.model_key == ("dlib-resnet-v1@1.0" if precision == "fp32" else f"dlib-resnet-v1@1.0+{precision}")
    assert card.source["precision"] == precision and card.source["backend"] == "tflite"


def test__int8_without_representative_crops_is_refused_saying_what_it_needs(tmp_path):
    with pytest.raises(ValueError, match="int8 needs representative aligned crops"):
        convert(prepare_model(), tmp_path / "int8", "int8")


def test__the_cli_converts_and_the_embedder_service_serves_the_tflite_directory(tmp_path, embedder, demo_crops):
    converted = facegate("tflite", "--out", str(tmp_path / "lite"))
    refused = facegate("tflite", "--precision", "int8", "--out", str(tmp_path / "int8"))
    service = ServiceProcess("embedder", tmp_path, ["--model", str(tmp_path / "lite")], ENV)
    service.start()
    try:
        service.wait_serving(time.monotonic() + 120)
        stub = embedder_pb2_grpc.EmbedderStub(channel(service.address))
        info = stub.GetModel(embedder_pb2.GetModelRequest(), timeout=30)
        reply = stub.Embed(embedder_pb2.EmbedRequest(each_crop=[ndarray.encode(c, "png") for c in demo_crops[:2]]),
                           timeout=60)
    finally:
        service.stop()

    assert converted.returncode == 0, converted.stderr
    assert "dlib-resnet-v1@1.0 (fp32) written to" in converted.stdout
    assert refused.returncode == 2 and "int8 needs --representative" in refused.stderr
    served = np.array([list(e.vector) for e in reply.embeddings], np.float32)
    assert (info.model_id, info.model_version) == ("dlib-resnet-v1", "1.0")
    assert np.linalg.norm(served - embedder.embed(demo_crops[:2]), axis=1).max() < TOLERANCE["fp32"]


def test__a_known_model_on_litert_runs_its_fp32_conversion_with_the_same_card_and_embeddings(embedder, demo_crops):
    lite = load_embedder(runtime="litert")
    many = np.concatenate([demo_crops] * 3)  # more crops than one interpreter call takes

    got = lite.embed(many)

    assert isinstance(lite, TFLiteEmbedder) and lite.card == embedder.card  # same key: galleries stay valid
    assert np.linalg.norm(got - embedder.embed(many), axis=1).max() < TOLERANCE["fp32"]
    assert np.allclose(np.concatenate([lite.embed(many[i:i + 1]) for i in range(len(many))]), got, atol=1e-5)


@pytest.mark.parametrize("runtime", ["litert", "tensorflow"])
def test__a_crop_drafted_moments_before__when_embedded_in_full__then_only_its_mirror_is_run_and_the_vector_is_the_same(  # noqa: E501
        runtime, demo_crops, monkeypatch):
    model, afresh = load_embedder(runtime=runtime), load_embedder(runtime=runtime)
    expected = afresh.embed(demo_crops[:3])
    model.embed(demo_crops[:2], draft=True)
    rows: list[int] = []
    run = model._module.embed if runtime == "tensorflow" else model._run
    if runtime == "tensorflow":
        monkeypatch.setattr(model, "_module", type("Counted", (), {
            "embed": staticmethod(lambda batch: (rows.append(int(batch.shape[0])), run(batch))[1])}))
    else:
        monkeypatch.setattr(model, "_run", lambda batch: (rows.append(len(batch)), run(batch))[1])

    got = model.embed(demo_crops[:3])

    assert rows == [4]  # the third crop (never drafted) and the three mirrors
    assert np.allclose(got, expected, atol=1e-6)


def test__an_unknown_runtime_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="one of tensorflow, litert"):
        load_embedder(runtime="onnx")
