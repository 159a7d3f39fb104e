"""A second embedding model behind the same seam: MobileFaceNet, a TFLite network published in an
npm package, prepared with its hash checked, run by the LiteRT backend with the pixel scaling and
fixed batch its file asks for (or rewritten for XNNPACK, with the same outputs), selected for a
whole stack by one setting (FACEGATE_MODEL), and moved to from a dlib gallery by re-enrolment."""

from __future__ import annotations

import os
import shutil

import cv2
import numpy as np
import pytest

from facegate.harness.stack import LocalStack
from services.contracts.v1 import gateway_pb2, gateway_pb2_grpc, matcher_pb2, matcher_pb2_grpc
from services.core.images import decode_image
from services.core.model_card import ModelError, bundled_card
from services.detector.alignment import align_face
from services.embedder.models import TFLITE_FILE, load_embedder, prepare_model
from services.embedder.tflite import TFLiteEmbedder
from tests.conftest import channel, stream
from tests.system.test_services import camera_frames, photo

MODEL = "mobilefacenet-v1"
Outcome = gateway_pb2.Decision.Outcome


@pytest.fixture(scope="module")
def crops(detector, demo_photos) -> np.ndarray:
    """Every demo face aligned to MobileFaceNet's 112 px template."""
    card = bundled_card(MODEL)
    out = []
    for path in sorted(demo_photos.values()):
        image = decode_image(path.read_bytes())
        out += [align_face(image, f.landmarks, card.landmark_template, card.input_size)
                for f in detector.detect([image])[0]]
    return np.stack(out)


def interpreters_own(crops: np.ndarray) -> np.ndarray:
    """The embeddings computed by hand: the LiteRT interpreter on the published file, fed as the
    package's own code feeds it (a batch of two, pixels (x - 127.5) / 128), the two being a face
    and its mirror; their raw outputs summed and L2-normalised, as the card's flip averaging asks."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(prepare_model(MODEL) / TFLITE_FILE))
    interpreter.allocate_tensors()
    given, taken = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    out = []
    for crop in crops:
        pair = np.stack([crop, crop[:, ::-1]]).astype(np.float32)
        interpreter.set_tensor(given, (pair - 127.5) / 128.0)
        interpreter.invoke()
        vector = interpreter.get_tensor(taken).sum(axis=0)
        out.append(vector / np.linalg.norm(vector))
    return np.stack(out)


@pytest.mark.parametrize("runtime", ["litert", "tensorflow"])
def test__the_tflite_backend_gives_the_interpreters_own_embeddings_on_fixed_crops(crops, runtime):
    """litert (the service's default): the file rewritten for XNNPACK; tensorflow: the published
    file as it is (a model published as TFLite has no SavedModel)."""
    embedder = load_embedder(MODEL, runtime=runtime)
    expected = interpreters_own(crops)

    together = embedder.embed(crops)  # an odd count: a chunk of a fixed-batch file is padded
    one_by_one = np.concatenate([embedder.embed(crops[i:i + 1]) for i in range(len(crops))])

    assert isinstance(embedder, TFLiteEmbedder) and embedder.card.model_key == "mobilefacenet-v1@1.0"
    assert together.shape == (len(crops), 192) and len(crops) % 2 == 1
    assert np.abs(together - expected).max() < 1e-5
    assert np.abs(one_by_one - expected).max() < 1e-5


def test__the_rewritten_file_runs_one_face_alone_with_a_fifth_of_the_ops(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from services.embedder.tflite_graph import rewrite

    done = rewrite(prepare_model(MODEL) / TFLITE_FILE, tmp_path / TFLITE_FILE)  # checks its outputs itself
    alone = Interpreter(model_path=str(tmp_path / TFLITE_FILE))
    alone.resize_tensor_input(alone.get_input_details()[0]["index"], [1, 112, 112, 3])
    alone.allocate_tensors()

    assert done == {"prelu_fused": 33, "ops_before": 230, "ops_after": 98}
    assert tuple(alone.get_output_details()[0]["shape"]) == (1, 192)


def test__a_file_whose_rewrite_would_change_its_outputs_is_refused(tmp_path, monkeypatch):
    from services.embedder import tflite_graph

    real = tflite_graph._fuse_prelu

    def off_by_a_bit(model, graph, schema):  # a rewrite that gets one slope wrong
        fused = real(model, graph, schema)
        slope = next(t for t in graph.tensors if t.name.endswith(b"/prelu_slope"))
        data = np.frombuffer(bytes(model.buffers[slope.buffer].data), np.float32) * 1.5
        model.buffers[slope.buffer].data = np.frombuffer(data.tobytes(), np.uint8)
        return fused

    monkeypatch.setattr(tflite_graph, "_fuse_prelu", off_by_a_bit)
    with pytest.raises(ModelError, match="changed its outputs .* refusing the rewrite"):
        tflite_graph.rewrite(prepare_model(MODEL) / TFLITE_FILE, tmp_path / TFLITE_FILE)


def test__crops_of_the_wrong_size_are_refused_saying_what_the_model_takes(crops):
    embedder = load_embedder(MODEL)

    with pytest.raises(ValueError, match=r"uint8 \(N, 112, 112, 3\)"):
        embedder.embed(np.zeros((1, 150, 150, 3), np.uint8))


@pytest.fixture(scope="module")
def mobilefacenet_stack(tmp_path_factory):
    """The four services with MobileFaceNet selected: detector, embedder and matcher read the same
    setting. As on the shared stack, the gateway keeps a photo burst's frames, and tests keep
    apart by site while enrolling the same demo photos as different people, so the duplicate
    check is off (it is tested in test_matcher.py and test_gateway_rules.py)."""
    env = {**os.environ, "FACEGATE_MODEL": MODEL, "FACEGATE_FRAME_QUEUE": "16", "FACEGATE_DUPLICATE_DISTANCE": "0"}
    with LocalStack(tmp_path_factory.mktemp("mobilefacenet"), env=env) as local:
        yield local


def test__with_mobilefacenet_selected_an_enrolled_person_is_granted_and_a_stranger_is_unknown(
    mobilefacenet_stack, demo_photos
):
    gateway = gateway_pb2_grpc.GatewayStub(channel(mobilefacenet_stack.address("gateway")))
    enrolled = gateway.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
        identity_id="obama", display_name="Barack Obama", site="e2e", images=[photo(demo_photos, "obama.jpg")]),
        timeout=60)
    frames = camera_frames(demo_photos, "lobby", ["obama2.jpg", "biden.jpg", "obama3.jpg"], site="e2e")
    decisions = list(stream(mobilefacenet_stack.address("gateway"), frames))

    assert enrolled.templates_added == 1 and list(enrolled.image_errors) == [""]
    assert [(d.outcome, d.identity_id) for d in decisions] == [
        (Outcome.OUTCOME_GRANTED, "obama"), (Outcome.OUTCOME_DENIED_UNKNOWN, ""), (Outcome.OUTCOME_GRANTED, "obama")]
    assert all(d.model_key == "mobilefacenet-v1@1.0" for d in decisions)


def test__reembed_moves_people_with_kept_photos_to_the_new_model_and_lists_those_who_need_new_ones(
    stack, mobilefacenet_stack, demo_photos, tmp_path
):
    from tests.system.test_cli import facegate

    old = gateway_pb2_grpc.GatewayStub(channel(stack.address("gateway")))  # the dlib stack the site runs today
    for who, name in (("obama-moved", "obama.jpg"), ("biden-moved", "biden.jpg")):
        old.EnrollFromImages(gateway_pb2.EnrollFromImagesRequest(
            identity_id=who, display_name=who, site="moving", groups=["staff"], metadata={"badge": who},
            images=[photo(demo_photos, name)]), timeout=60)
    kept = tmp_path / "kept"  # the site kept Obama's enrolment photo, a photo of no one, and a file that is not one
    (kept / "obama-moved").mkdir(parents=True)
    shutil.copy(demo_photos["obama.jpg"], kept / "obama-moved" / "desk.jpg")
    cv2.imwrite(str(kept / "obama-moved" / "blank.png"), np.full((480, 640, 3), 90, np.uint8))
    (kept / "obama-moved" / "scan.png").write_bytes(b"not a png")

    args = ("gallery", "reembed", "--photos", str(kept), "--site", "moving", "--matcher", stack.address("matcher"),
            "--gateway", mobilefacenet_stack.address("gateway"))
    first, again = facegate(*args), facegate(*args)
    new = matcher_pb2_grpc.MatcherStub(channel(mobilefacenet_stack.address("matcher")))
    moved = new.GetIdentity(matcher_pb2.GetIdentityRequest(identity_id="obama-moved"), timeout=10)
    frames = camera_frames(demo_photos, "moving-door", ["obama2.jpg"], site="moving")
    decisions = list(stream(mobilefacenet_stack.address("gateway"), frames))

    assert first.returncode == 1, first.stderr  # not everyone could be moved: the run says so
    assert "obama-moved: 1 photo(s) enrolled; not used: scan.png: not a recognised image format" in first.stdout
    assert "; blank.png: " in first.stdout and "desk.jpg" not in first.stdout
    assert "biden-moved: needs new photos (no photo in" in first.stdout
    assert "1 identities re-enrolled with the gateway's model, 0 already there, 1 need new photos (of 2)" in (
        first.stdout)
    assert "0 identities re-enrolled with the gateway's model, 1 already there, 1 need new photos" in again.stdout
    assert (moved.site, list(moved.groups), moved.metadata["badge"], moved.template_count) == (
        "moving", ["staff"], "obama-moved", 1)
    assert [(d.outcome, d.identity_id, d.model_key) for d in decisions] == [
        (Outcome.OUTCOME_GRANTED, "obama-moved", "mobilefacenet-v1@1.0")]


def test__a_matcher_started_with_another_model_on_an_existing_gallery_refuses_to_start_saying_what_to_do(tmp_path):
    from facegate.harness.stack import ServiceProcess
    from services.matcher.gallery import Gallery

    Gallery(str(tmp_path / "gallery.db"), "dlib-resnet-v1@1.0", 128, 0.3746).close()  # the site's dlib gallery
    matcher = ServiceProcess("matcher", tmp_path, ["--milvus-uri", str(tmp_path / "gallery.db")],
                             {**os.environ, "FACEGATE_MODEL": MODEL})
    matcher.start()
    assert matcher.process is not None
    code = matcher.process.wait(120)

    assert code == 3
    assert "holds 128-d vectors; this matcher's model mobilefacenet-v1@1.0 makes 192-d" in matcher.log_tail()
    assert "its own collection (--collection" in matcher.log_tail() and "facegate gallery reembed" in matcher.log_tail()
