"""The matcher as a product API, in its own process, on a real Milvus Lite gallery (the embedded
default) or, under `make test-milvus-server`, on a real Milvus 2.3.5 server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2

from facegate.harness.stack import ServiceProcess
from services.contracts.v1 import common_pb2, matcher_pb2, matcher_pb2_grpc
from tests.conftest import channel

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def unit(seed: int, near: np.ndarray | None = None, noise: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(128) if near is None else near + noise * rng.standard_normal(128)
    return (v / np.linalg.norm(v)).astype(np.float32)


def emb(vector: np.ndarray) -> common_pb2.Embedding:
    return common_pb2.Embedding(vector=vector.tolist(), model_id="dlib-resnet-v1", model_version="1.0")


def measured(vector: np.ndarray, *flags: str) -> common_pb2.Embedding:
    """An embedding of a face whose capture was measured (as FaceGate's detector does): `flags`, or clean."""
    embedding = emb(vector)
    embedding.capture_flags[:], embedding.capture_measured = flags, True
    return embedding


@pytest.fixture(scope="session")
def gallery_args(milvus_server_uri, milvus_token):
    """Matcher flags for a gallery of its own per work directory: a Lite file in it, or a
    collection named after it on the Milvus server (with the server's credentials in a file, as
    a mounted Secret gives them)."""
    def args(workdir) -> list[str]:
        if milvus_server_uri is None:
            return ["--milvus-uri", str(workdir / "gallery.db")]
        (workdir / "milvus-token").write_text(milvus_token)
        return ["--milvus-uri", milvus_server_uri, "--collection", "t_" + re.sub(r"\W", "_", workdir.name),
                "--milvus-token-file", str(workdir / "milvus-token")]
    return args


def start_matcher(workdir, gallery: list[str], name: str = "matcher") -> ServiceProcess:
    service = ServiceProcess("matcher", workdir, gallery, ENV)
    service.log_path = workdir / f"{name}.log"
    service.start()
    service.wait_serving(time.monotonic() + 60)
    return service


@pytest.fixture(scope="module")
def matcher_process(tmp_path_factory, gallery_args):
    workdir = tmp_path_factory.mktemp("matcher")
    service = start_matcher(workdir, gallery_args(workdir) + ["--site-far", SITE_FAR])
    yield service, workdir
    service.stop()


@pytest.fixture
def matcher(matcher_process):
    return matcher_pb2_grpc.MatcherStub(channel(matcher_process[0].address))


ALICE, BOB = unit(1), unit(2)
SITE_FAR = '{"server-room": 0.0001}'


def test__given_enrolments__then_identify_aggregates_templates_per_identity_and_rejects_strangers(matcher):
    matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="alice", display_name="Alice", site="hq",
                                             embeddings=[emb(ALICE), emb(unit(3, ALICE, 0.01))]), timeout=10)
    again = matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="alice", embeddings=[emb(unit(4, ALICE, 0.01))],
                                                     mode=common_pb2.ENROLL_MODE_ADD_TEMPLATES), timeout=10)
    matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="bob", display_name="Bob", site="lab", embeddings=[emb(BOB)]),
                   timeout=10)

    reply = matcher.Identify(matcher_pb2.IdentifyRequest(probes=[emb(unit(5, ALICE, 0.02)), emb(unit(99))], top_k=5),
                             timeout=10)

    assert again.templates_added == 1 and again.identity.template_count == 3
    assert again.identity.display_name == "Alice" and again.identity.site == "hq"  # kept when not re-sent
    alice, stranger = reply.results
    assert not alice.unknown and alice.candidates[0].identity_id == "alice"
    assert [c.identity_id for c in alice.candidates].count("alice") == 1  # one entry per identity
    assert alice.candidates[0].distance < alice.threshold
    assert alice.candidates[0].similarity == pytest.approx(1 - alice.candidates[0].distance ** 2 / 2, abs=1e-5)
    assert stranger.unknown and stranger.candidates  # nearest still reported, for review
    assert not alice.ambiguous and not stranger.ambiguous


def test__given_a_site__then_identify_only_matches_that_sites_people(matcher):
    lab_person = unit(50)
    matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="lab-person", site="lab", embeddings=[emb(lab_person)]),
                   timeout=10)
    probe = emb(unit(51, lab_person, 0.02))

    at_hq = matcher.Identify(matcher_pb2.IdentifyRequest(probes=[probe], site="hq"), timeout=10).results[0]
    at_lab = matcher.Identify(matcher_pb2.IdentifyRequest(probes=[probe], site="lab"), timeout=10).results[0]

    assert at_hq.unknown and all(c.identity_id != "lab-person" for c in at_hq.candidates)
    assert not at_lab.unknown and at_lab.candidates[0].identity_id == "lab-person"


def test__verify_uses_the_calibrated_threshold_or_a_stricter_one(matcher):
    from services.core.model_card import bundled_card

    card = bundled_card("dlib-resnet-v1")
    vera = unit(60)
    matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="vera", embeddings=[emb(vera)]), timeout=10)
    probe = emb(unit(7, vera, 0.02))
    same = matcher.Verify(matcher_pb2.VerifyRequest(identity_id="vera", probe=probe), timeout=10)
    other = matcher.Verify(matcher_pb2.VerifyRequest(identity_id="vera", probe=emb(unit(61))), timeout=10)
    strict = matcher.Verify(matcher_pb2.VerifyRequest(identity_id="vera", probe=probe, max_distance=same.distance / 2),
                            timeout=10)
    server_room = matcher.Verify(matcher_pb2.VerifyRequest(identity_id="vera", probe=probe, target_far=1e-4),
                                 timeout=10)

    assert same.match and not other.match and not strict.match
    assert same.threshold == pytest.approx(card.distance_threshold, abs=1e-6)
    assert server_room.threshold == pytest.approx(card.far_thresholds["0.0001"], abs=1e-6)
    assert server_room.threshold < same.threshold


def test__no_caller_loosens_a_threshold_past_what_the_model_is_calibrated_for(matcher):
    matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="loose-vera", embeddings=[emb(unit(162))]), timeout=10)
    anyone = emb(unit(63))  # a random face: with max_distance=2 it "matched" before

    with pytest.raises(grpc.RpcError) as caught:
        matcher.Verify(matcher_pb2.VerifyRequest(identity_id="loose-vera", probe=anyone, max_distance=2.0), timeout=10)
    with pytest.raises(grpc.RpcError) as identify:
        matcher.Identify(matcher_pb2.IdentifyRequest(probes=[anyone], max_distance=0.9), timeout=10)

    assert caught.value.code() == identify.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_distance: 2.0; must be in (0, 0.4220] (the loosest threshold dlib-resnet-v1@1.0 is calibrated for)" \
        in caught.value.details()


def test__a_sites_far_is_a_floor_a_call_can_tighten_but_never_loosen(matcher):
    from services.core.model_card import bundled_card

    card = bundled_card("dlib-resnet-v1")

    def threshold(site: str, target_far: float = 0.0, max_distance: float = 0.0) -> tuple[float, int]:
        request = matcher_pb2.IdentifyRequest(probes=[emb(ALICE)], site=site, target_far=target_far,
                                              max_distance=max_distance)
        response = matcher.Identify(request, timeout=10)
        return response.results[0].threshold, response.gallery_identities

    server_room, size = threshold("server-room")
    assert server_room == pytest.approx(card.threshold_for(1e-4, size), abs=1e-4)  # from --site-far
    assert threshold("lobby")[0] == pytest.approx(card.threshold_for(None, size), abs=1e-4)  # the model's default
    assert threshold("server-room", target_far=0.001)[0] == pytest.approx(server_room, abs=1e-4)  # not loosened
    assert threshold("server-room", target_far=0.01)[0] == pytest.approx(server_room, abs=1e-4)
    assert threshold("server-room", max_distance=0.42)[0] == pytest.approx(server_room, abs=1e-4)
    assert threshold("lobby", target_far=0.0001)[0] == pytest.approx(server_room, abs=1e-4)  # tightened
    assert threshold("server-room", max_distance=0.2)[0] == pytest.approx(0.2, abs=1e-6)
    assert server_room < threshold("lobby")[0] <= card.threshold_for(1e-3)


def test__identify_applies_the_threshold_calibrated_for_the_gallerys_size(tmp_path, gallery_args):
    """A stranger compared with K people has K chances: the larger the gallery a search covers,
    the stricter the distance that keeps FAR 1e-3 per probe (the card's 1:K bands)."""
    from services.core.model_card import bundled_card

    card = bundled_card("dlib-resnet-v1")
    small = card.gallery_bands[0]
    service = start_matcher(tmp_path, gallery_args(tmp_path))  # a gallery of its own: its size is known
    try:
        matcher = matcher_pb2_grpc.MatcherStub(channel(service.address))
        people = [(f"k-{i}", unit(4000 + i)) for i in range(small.max_identities + 1)]
        anywhere = unit(5000)
        matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="anywhere", embeddings=[emb(anywhere)]), timeout=10)

        def enrol(identity_id: str, vector: np.ndarray) -> None:
            matcher.Enroll(matcher_pb2.EnrollRequest(identity_id=identity_id, site="hq", embeddings=[emb(vector)]),
                           timeout=10)

        def search(site: str) -> matcher_pb2.IdentifyResponse:
            return matcher.Identify(matcher_pb2.IdentifyRequest(probes=[emb(people[0][1])], site=site), timeout=10)

        enrol(*people[0])
        few = search("hq")
        for person in people[1:]:  # this matcher's own enrolments are counted at once
            enrol(*person)
        more, elsewhere = search("hq"), search("lab")
    finally:
        service.stop()

    assert (few.gallery_identities, more.gallery_identities, elsewhere.gallery_identities) == \
        (2, small.max_identities + 2, 1)  # a site's people and those of no site
    assert few.results[0].threshold == pytest.approx(small.far_thresholds["0.001"], abs=1e-6)
    assert elsewhere.results[0].threshold == pytest.approx(small.far_thresholds["0.001"], abs=1e-6)
    assert more.results[0].threshold == pytest.approx(card.gallery_bands[1].far_thresholds["0.001"], abs=1e-6)
    assert more.results[0].threshold < few.results[0].threshold < card.threshold_for(1e-3)
    assert not more.results[0].unknown and more.results[0].candidates[0].identity_id == "k-0"


def test__a_dark_probe_is_held_stricter_against_someone_enrolled_from_dark_photos_than_from_clean_ones(matcher):
    from services.core.model_card import bundled_card

    card = bundled_card("dlib-resnet-v1")
    matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="desk-vera", site="dim",
                                             embeddings=[measured(unit(6070))]), timeout=10)
    matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="camera-ivan", site="dim",
                                             embeddings=[measured(unit(6080), "dark")]), timeout=10)
    probes = [measured(unit(6071, unit(6070), 0.02), "dark"), measured(unit(6081, unit(6080), 0.02), "dark"),
              emb(unit(6082))]
    searched = matcher.Identify(matcher_pb2.IdentifyRequest(probes=probes, site="dim"), timeout=10)
    verified = matcher.Verify(matcher_pb2.VerifyRequest(identity_id="camera-ivan", probe=probes[1]), timeout=10)
    ivan = matcher.GetIdentity(matcher_pb2.GetIdentityRequest(identity_id="camera-ivan"), timeout=10)

    size = searched.gallery_identities
    assert [r.candidates[0].identity_id for r in searched.results[:2]] == ["desk-vera", "camera-ivan"]
    assert [r.threshold for r in searched.results] == pytest.approx([
        card.threshold_for(None, size, ("dark",), ()),  # against a desk photo
        card.threshold_for(None, size, ("dark",), ("dark",)),  # against a photo as dark as itself
        card.threshold_for(None, size)], abs=1e-6)  # a clean probe
    assert searched.results[1].threshold < searched.results[0].threshold < searched.results[2].threshold
    assert verified.threshold == pytest.approx(card.threshold_for(None, None, ("dark",), ("dark",)), abs=1e-6)
    assert ivan.metadata["facegate.capture"] == "dark"


def test__a_person_enrolled_from_an_embedding_whose_capture_was_not_measured_is_held_as_unknown_capture(matcher):
    """An embedding from another system says nothing of how its face was captured: the person is
    held as if their photos carried every flag (the strictest threshold), not as clean."""
    from services.core.model_card import bundled_card

    card = bundled_card("dlib-resnet-v1")
    matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="api-una", site="api", embeddings=[emb(unit(6090))]),
                   timeout=10)
    matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="desk-dora", site="api",
                                             embeddings=[measured(unit(6095))]), timeout=10)
    mixed = matcher.Enroll(matcher_pb2.EnrollRequest(
        identity_id="desk-dora", embeddings=[emb(unit(6096, unit(6095), 0.01))],
        mode=common_pb2.ENROLL_MODE_ADD_TEMPLATES), timeout=10)  # one more face, of unknown capture
    probes = [measured(unit(6091, unit(6090), 0.02), "grey"), measured(unit(6097, unit(6095), 0.02), "grey")]
    searched = matcher.Identify(matcher_pb2.IdentifyRequest(probes=probes, site="api"), timeout=10)
    una = matcher.GetIdentity(matcher_pb2.GetIdentityRequest(identity_id="api-una"), timeout=10)

    size = searched.gallery_identities
    assert "facegate.capture" not in una.metadata and "facegate.capture" not in mixed.identity.metadata
    assert [r.threshold for r in searched.results] == pytest.approx(
        [card.threshold_for(None, size, ("grey",), None)] * 2, abs=1e-6)  # as against every flag
    assert searched.results[0].threshold < card.threshold_for(None, size, ("grey",), ())


def test__capture_flags_that_are_not_known_or_set_by_hand_in_metadata_are_refused(matcher):
    foggy = emb(unit(6072))
    foggy.capture_flags[:] = ["foggy"]
    with pytest.raises(grpc.RpcError) as searched:
        matcher.Identify(matcher_pb2.IdentifyRequest(probes=[emb(unit(6073)), foggy]), timeout=10)
    with pytest.raises(grpc.RpcError) as enrolled:
        matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="foggy", embeddings=[foggy]), timeout=10)
    with pytest.raises(grpc.RpcError) as forged:
        matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="forged", embeddings=[emb(unit(6074))],
                                                 metadata={"facegate.capture": ""}), timeout=10)

    assert searched.value.code() == enrolled.value.code() == forged.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "probes[1].capture_flags: unknown capture flags ['foggy']" in searched.value.details()
    assert "embeddings[0].capture_flags: unknown capture flags ['foggy']" in enrolled.value.details()
    assert "'facegate.capture' is kept by the matcher" in forged.value.details()


def test__given_a_site_far_without_calibration__then_the_matcher_refuses_to_start_naming_the_site(tmp_path):
    service = ServiceProcess("matcher", tmp_path, ["--milvus-uri", str(tmp_path / "g.db"),
                                                   "--site-far", '{"vault": 0.5}'], ENV)
    service.start()
    assert service.process is not None

    assert service.process.wait(timeout=60) != 0
    assert "--site-far: site 'vault'" in service.log_tail() and "calibrated: " in service.log_tail()


def test__given_a_far_without_calibration__then_identify_says_which_are_calibrated(matcher):
    with pytest.raises(grpc.RpcError) as caught:
        matcher.Identify(matcher_pb2.IdentifyRequest(probes=[emb(ALICE)], target_far=0.05), timeout=10)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no threshold calibrated for FAR 0.05" in caught.value.details() and "0.0001" in caught.value.details()


def test__metadata_upsert_keeps_templates_and_list_pages_in_id_order(matcher):
    for i in range(5):
        matcher.Enroll(matcher_pb2.EnrollRequest(identity_id=f"page-{i}", embeddings=[emb(unit(100 + i))]), timeout=10)
    mona = unit(62)
    matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="mona", display_name="Mona", embeddings=[measured(mona)]),
                   timeout=10)
    matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="mona", groups=["night-shift"], metadata={"badge": "42"},
                                             mode=common_pb2.ENROLL_MODE_UPDATE_DETAILS), timeout=10)
    updated = matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="mona", embeddings=[measured(unit(8, mona, 0.01))],
                                                       mode=common_pb2.ENROLL_MODE_ADD_TEMPLATES), timeout=10)

    pages, token = [], ""
    while True:
        page = matcher.ListIdentities(matcher_pb2.ListIdentitiesRequest(page_size=3, page_token=token), timeout=10)
        pages.append([i.identity_id for i in page.identities])
        token = page.next_page_token
        if not token:
            break

    assert updated.identity.template_count == 2 and list(updated.identity.groups) == ["night-shift"]
    assert dict(updated.identity.metadata) == {"badge": "42", "facegate.capture": ""}  # enrolled from clean faces
    assert updated.identity.display_name == "Mona"
    flat = [i for p in pages for i in p]
    assert flat == sorted(flat) and {"mona", "page-0", "page-4"} <= set(flat)
    assert all(len(p) <= 3 for p in pages) and len(flat) == len(set(flat))


def test__delete_removes_every_template(matcher):
    matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="carol", embeddings=[emb(unit(9)), emb(unit(10))]), timeout=10)

    removed = matcher.DeleteIdentity(matcher_pb2.DeleteIdentityRequest(identity_id="carol"), timeout=10)
    probe = matcher.Identify(matcher_pb2.IdentifyRequest(probes=[emb(unit(9))], top_k=10), timeout=10).results[0]

    assert removed.templates_removed == 2
    assert all(c.identity_id != "carol" for c in probe.candidates)
    with pytest.raises(grpc.RpcError) as caught:
        matcher.GetIdentity(matcher_pb2.GetIdentityRequest(identity_id="carol"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test__the_gallery_survives_a_matcher_restart(tmp_path, gallery_args):
    first = start_matcher(tmp_path, gallery_args(tmp_path))
    try:
        stub = matcher_pb2_grpc.MatcherStub(channel(first.address))
        stub.Enroll(matcher_pb2.EnrollRequest(identity_id="dave", embeddings=[emb(unit(11))]), timeout=10)
    finally:
        assert first.stop() == 0  # graceful on SIGTERM

    restarted = start_matcher(tmp_path, gallery_args(tmp_path), "restarted")
    try:
        stub = matcher_pb2_grpc.MatcherStub(channel(restarted.address))
        assert stub.GetIdentity(matcher_pb2.GetIdentityRequest(identity_id="dave"), timeout=10).template_count == 1
        found = stub.Identify(matcher_pb2.IdentifyRequest(probes=[emb(unit(11))]), timeout=10).results[0]
        assert not found.unknown and found.candidates[0].identity_id == "dave"
    finally:
        restarted.stop()


def test__a_second_matcher_cannot_open_a_lite_file_in_use_and_says_why(tmp_path, milvus_server_uri):
    if milvus_server_uri is not None:
        pytest.skip("Milvus Lite only: a Milvus server serves several matchers")
    first = start_matcher(tmp_path, ["--milvus-uri", str(tmp_path / "gallery.db")])
    try:
        stub = matcher_pb2_grpc.MatcherStub(channel(first.address))
        stub.Enroll(matcher_pb2.EnrollRequest(identity_id="dave", embeddings=[emb(unit(11))]), timeout=10)

        second = ServiceProcess("matcher", tmp_path, ["--milvus-uri", str(tmp_path / "gallery.db")], ENV)
        second.log_path = tmp_path / "second.log"
        second.start()
        assert second.process is not None
        code = second.process.wait(timeout=60)
        assert code != 0
        assert "one process at a time" in second.log_tail()
        assert stub.GetIdentity(matcher_pb2.GetIdentityRequest(identity_id="dave"), timeout=10).template_count == 1
    finally:
        first.stop()


def test__health_is_not_serving_until_the_model_is_loaded(tmp_path):
    service = ServiceProcess("embedder", tmp_path, [], ENV)
    service.start()
    seen = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            status = service.health(timeout=0.5)
            if status is not None and (not seen or seen[-1] != status):
                seen.append(status)
            if status == health_pb2.HealthCheckResponse.SERVING:
                break
            time.sleep(0.05)
    finally:
        service.stop()

    assert seen == [health_pb2.HealthCheckResponse.NOT_SERVING, health_pb2.HealthCheckResponse.SERVING]


@pytest.mark.parametrize("args, message", [
    (["--port", "70000"], "--port='70000': must be a TCP port"),
    (["--index-type", "LSH"], "--index-type='LSH': must be one of"),
    (["--max-top-k", "many"], "not a valid int"),
    (["--search-params", "nprobe=32"], "--search-params='nprobe=32': not valid JSON"),
    (["--index-params", "[16]"], "must be a JSON object"),
])
def test__given_a_bad_setting__then_the_service_refuses_to_start_naming_it(args, message):
    result = subprocess.run([sys.executable, "-m", "services.matcher", *args], capture_output=True, text=True,
                            timeout=60, env=ENV)

    assert result.returncode == 2 and message in result.stderr


def test__given_a_bad_environment_variable__then_the_message_names_the_variable():
    result = subprocess.run([sys.executable, "-m", "services.gateway"], capture_output=True, text=True, timeout=60,
                            env={**ENV, "FACEGATE_DEADLINE_SECONDS": "-1"})

    assert result.returncode == 2 and "FACEGATE_DEADLINE_SECONDS='-1': must be > 0" in result.stderr


def test__given_a_new_site_on_re_enrolment__then_every_template_moves_with_the_person(matcher):
    erin = unit(20)
    matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="erin", site="hq",
                                             embeddings=[emb(erin), emb(unit(21, erin, 0.01))]), timeout=10)

    matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="erin", site="lab",
                                             mode=common_pb2.ENROLL_MODE_UPDATE_DETAILS), timeout=10)
    moved = matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="erin", embeddings=[emb(unit(22, erin, 0.01))],
                                                     mode=common_pb2.ENROLL_MODE_ADD_TEMPLATES), timeout=10)
    at_lab = matcher.Identify(matcher_pb2.IdentifyRequest(probes=[emb(erin)], site="lab"), timeout=10).results[0]
    at_hq = matcher.Identify(matcher_pb2.IdentifyRequest(probes=[emb(erin)], site="hq"), timeout=10).results[0]

    assert moved.templates_added == 1 and moved.identity.template_count == 3 and moved.identity.site == "lab"
    assert not at_lab.unknown and at_lab.candidates[0].identity_id == "erin"
    assert at_lab.candidates[0].distance < 1e-3  # the original template moved, not only the new one
    assert all(c.identity_id != "erin" for c in at_hq.candidates)


def test__given_two_people_who_fit_a_probe_equally__then_the_match_is_ambiguous_and_not_accepted(matcher):
    twin = unit(30)
    for name, seed, known in (("twin-a", 31, []), ("twin-b", 32, ["twin-a"])):  # the desk knows they are twins
        matcher.Enroll(matcher_pb2.EnrollRequest(identity_id=name, embeddings=[emb(unit(seed, twin, 0.005))],
                                                 allow_duplicate_of=known), timeout=10)

    result = matcher.Identify(matcher_pb2.IdentifyRequest(probes=[emb(twin)]), timeout=10).results[0]

    assert result.ambiguous and result.unknown
    assert {c.identity_id for c in result.candidates[:2]} == {"twin-a", "twin-b"}
    assert result.candidates[0].distance <= result.threshold


def test__with_knn_vote__the_person_most_of_the_nearest_templates_belong_to_ranks_first(matcher):
    probe = unit(40)
    # One template of "single" nearest the probe; three of "several" a little farther.
    matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="single", embeddings=[emb(unit(41, probe, 0.002))]),
                   timeout=10)
    matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="several", embeddings=[
        emb(unit(seed, probe, 0.004)) for seed in (42, 43, 44)], allow_duplicate_of=["single"]), timeout=10)

    def identify(**options):
        return matcher.Identify(matcher_pb2.IdentifyRequest(probes=[emb(probe)], **options), timeout=10).results[0]

    nearest = identify()
    voted = identify(classifier=matcher_pb2.CLASSIFIER_KNN_VOTE, k=4)

    assert nearest.candidates[0].identity_id == "single" and nearest.candidates[0].vote == 0
    assert [c.identity_id for c in voted.candidates[:2]] == ["several", "single"]
    assert voted.candidates[0].vote == pytest.approx(3.0, abs=0.01)
    assert voted.unknown and voted.ambiguous  # two people this close to a probe is never a match


@pytest.mark.parametrize("options, message", [
    ({"classifier": 7}, "classifier: 7"),
    ({"k": 1000}, "k: 1000"),
])
def test__given_a_bad_classifier_option__then_identify_says_which(matcher, options, message):
    with pytest.raises(grpc.RpcError) as caught:
        matcher.Identify(matcher_pb2.IdentifyRequest(probes=[emb(unit(45))], **options), timeout=10)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()


def test__given_an_export__when_imported_into_an_empty_gallery__then_people_and_templates_carry_over(
    matcher, matcher_process, tmp_path, gallery_args
):
    """The export is encrypted to a recipient's key (templates are biometric data) and opens with it."""
    from facegate import gallery_file
    from tests.system.test_cli import facegate

    xena = unit(63)
    night_shot = measured(unit(64, xena, 0.01), "dark")  # how her photos were captured travels with her
    matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="xena", display_name="Xena", site="hq",
                                             embeddings=[measured(xena), night_shot]), timeout=10)
    key, dump = tmp_path / "desk.key", tmp_path / "gallery.age"
    recipient = gallery_file.keygen(key)
    exported = facegate("gallery", "export", "--matcher", matcher_process[0].address, "--recipient", recipient,
                        str(dump))
    sealed = dump.read_bytes()
    records = [json.loads(line) for line in gallery_file.unseal(sealed, [key], None).decode().splitlines()]
    target = start_matcher(tmp_path, gallery_args(tmp_path), "target")
    try:
        imported = facegate("gallery", "import", "--matcher", target.address, "--identity", str(key), str(dump))
        again = facegate("gallery", "import", "--matcher", target.address, "--identity", str(key), str(dump))
        copy = matcher_pb2_grpc.MatcherStub(channel(target.address))
        original = matcher.GetIdentity(matcher_pb2.GetIdentityRequest(identity_id="xena"), timeout=10)
        restored = copy.GetIdentity(matcher_pb2.GetIdentityRequest(identity_id="xena"), timeout=10)
        found = copy.Identify(matcher_pb2.IdentifyRequest(probes=[emb(unit(5, xena, 0.02))]), timeout=10).results[0]
    finally:
        target.stop()

    assert exported.returncode == 0 and imported.returncode == 0, exported.stderr + imported.stderr
    assert again.returncode == 0, again.stderr  # an import run twice changes nothing the second time
    assert sealed.startswith(b"age-encryption.org/v1") and b"xena" not in sealed
    assert dump.stat().st_mode & 0o077 == 0  # owner-only
    ids = [r["identity"]["identity_id"] for r in records]
    assert ids == sorted(ids) and "xena" in ids
    assert all(len(r["templates"]) == r["identity"]["template_count"] for r in records)
    assert (restored.template_count, restored.display_name, restored.site, dict(restored.metadata)) == (
        original.template_count, original.display_name, original.site, dict(original.metadata))
    assert restored.metadata["facegate.capture"] == "dark"
    assert (restored.template_count, original.template_count) == (2, 2)
    assert not found.unknown and found.candidates[0].identity_id == "xena"


def test__an_export_is_not_written_unencrypted_unless_asked(matcher_process, tmp_path):
    from tests.system.test_cli import facegate

    dump = tmp_path / "gallery.jsonl"

    refused = facegate("gallery", "export", "--matcher", matcher_process[0].address, str(dump))
    plain = facegate("gallery", "export", "--matcher", matcher_process[0].address, "--plaintext", str(dump))

    assert refused.returncode == 2 and "--recipient" in refused.stderr
    assert plain.returncode == 0 and "UNENCRYPTED" in plain.stdout and dump.read_bytes().startswith(b"{")


def test__an_encrypted_export_does_not_open_with_another_key(matcher_process, tmp_path):
    from facegate import gallery_file
    from tests.system.test_cli import facegate

    dump = tmp_path / "gallery.age"
    exported = facegate("gallery", "export", "--matcher", matcher_process[0].address,
                        "--recipient", gallery_file.keygen(tmp_path / "desk.key"), str(dump))
    gallery_file.keygen(tmp_path / "other.key")

    result = facegate("gallery", "import", "--matcher", matcher_process[0].address,
                      "--identity", str(tmp_path / "other.key"), str(dump))

    assert exported.returncode == 0 and result.returncode == 2 and "cannot decrypt" in result.stderr


def test__given_a_corrupt_export_line__then_import_stops_naming_the_line(matcher_process, tmp_path):
    from tests.system.test_cli import facegate

    dump = tmp_path / "bad.jsonl"
    dump.write_text('{"identity": {"identity_id": "x"}, "templates": [{"vector": "oops"}]}\n')

    result = facegate("gallery", "import", "--matcher", matcher_process[0].address, str(dump))

    assert result.returncode == 2 and "bad.jsonl:1" in result.stderr


def test__a_person_with_many_templates_cannot_hide_a_close_rival_from_the_ambiguity_rule(matcher):
    probe = unit(80)
    # 20 near-duplicates of "flood" (a window of 16 templates per identity asked for would hold
    # nothing else), and one "rival" template as close to the probe as flood's best.
    matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="flood", embeddings=[
        emb(unit(seed, probe, 0.002)) for seed in range(1000, 1020)]), timeout=10)
    matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="rival", embeddings=[emb(unit(81, probe, 0.004))],
                                             allow_duplicate_of=["flood"]), timeout=10)

    result = matcher.Identify(matcher_pb2.IdentifyRequest(probes=[emb(probe)], top_k=1), timeout=10).results[0]

    assert result.ambiguous and result.unknown
    assert [c.identity_id for c in result.candidates] == ["flood"]  # top_k=1 still reports one


def test__a_person_holds_at_most_32_templates_and_the_refusal_says_what_to_do(matcher):
    base = unit(82)
    matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="capped", embeddings=[
        emb(unit(seed, base, 0.01)) for seed in range(2000, 2030)]), timeout=10)

    with pytest.raises(grpc.RpcError) as caught:
        matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="capped", embeddings=[
            emb(unit(seed, base, 0.01)) for seed in range(2030, 2033)], mode=common_pb2.ENROLL_MODE_ADD_TEMPLATES),
            timeout=10)
    stored = matcher.GetIdentity(matcher_pb2.GetIdentityRequest(identity_id="capped"), timeout=10)

    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "would have 33 templates; at most 32" in caught.value.details()
    assert "re-enrol it from its best photos" in caught.value.details()
    assert stored.template_count == 30  # nothing written


def test__enrolling_the_same_embeddings_again_adds_nothing(matcher):
    once = [emb(unit(83)), emb(unit(84, unit(83), 0.01))]
    first = matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="retried", embeddings=once), timeout=10)

    again = matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="retried", embeddings=once), timeout=10)

    assert (first.templates_added, again.templates_added) == (2, 0)
    assert again.identity.template_count == 2


def test__a_matcher_killed_between_moving_templates_and_deleting_the_old_ones_leaves_nothing_that_matches(
    tmp_path, gallery_args
):
    """The process dies (SIGKILL, at a failpoint) after writing a person's templates under a new
    site and before deleting the old copies; a retried enrolment finishes the move, and a
    deletion removes every template either way."""
    nina, other = unit(85), unit(86)
    crashing = ServiceProcess("matcher", tmp_path, gallery_args(tmp_path),
                              {**ENV, "FACEGATE_FAILPOINTS": "gallery.enroll.before_stale_delete"})
    crashing.log_path = tmp_path / "crashing.log"
    crashing.start()
    crashing.wait_serving(time.monotonic() + 60)
    stub = matcher_pb2_grpc.MatcherStub(channel(crashing.address))
    stub.Enroll(matcher_pb2.EnrollRequest(identity_id="nina", site="hq", embeddings=[emb(nina)]), timeout=10)
    stub.Enroll(matcher_pb2.EnrollRequest(identity_id="olaf", site="hq", embeddings=[emb(other)]), timeout=10)
    move = matcher_pb2.EnrollRequest(identity_id="nina", site="lab", mode=common_pb2.ENROLL_MODE_UPDATE_DETAILS)
    with pytest.raises(grpc.RpcError):
        stub.Enroll(move, timeout=10)
    assert crashing.process is not None and crashing.process.wait(timeout=30) == -9

    restarted = start_matcher(tmp_path, gallery_args(tmp_path), "restarted")
    try:
        stub = matcher_pb2_grpc.MatcherStub(channel(restarted.address))
        retried = stub.Enroll(move, timeout=10)
        at_hq = stub.Identify(matcher_pb2.IdentifyRequest(probes=[emb(nina)], site="hq"), timeout=10).results[0]
        again = stub.Enroll(move, timeout=10)
        olaf_removed = stub.DeleteIdentity(matcher_pb2.DeleteIdentityRequest(identity_id="olaf"), timeout=10)
        removed = stub.DeleteIdentity(matcher_pb2.DeleteIdentityRequest(identity_id="nina"), timeout=10)
        after = stub.Identify(matcher_pb2.IdentifyRequest(probes=[emb(nina)], top_k=10), timeout=10).results[0]
    finally:
        restarted.stop()

    assert retried.identity.template_count == 1 and retried.identity.site == "lab"
    assert (retried.templates_added, again.templates_added) == (0, 0)
    assert all(c.identity_id != "nina" for c in at_hq.candidates)  # the old copies are gone
    assert removed.templates_removed == 1 and olaf_removed.templates_removed == 1
    assert all(c.identity_id != "nina" for c in after.candidates)


def test__two_matchers_enrolling_one_person_at_once_lose_no_template_and_deletion_removes_them_all(
    tmp_path, gallery_args, milvus_server_uri
):
    if milvus_server_uri is None:
        pytest.skip("needs a Milvus server (make test-milvus-server): a Lite file has one matcher at a time")
    import concurrent.futures

    pia = unit(88)
    first = start_matcher(tmp_path, gallery_args(tmp_path), "first")
    second = start_matcher(tmp_path, gallery_args(tmp_path), "second")
    try:
        stubs = [matcher_pb2_grpc.MatcherStub(channel(m.address)) for m in (first, second)]
        stubs[0].Enroll(matcher_pb2.EnrollRequest(identity_id="pia", embeddings=[emb(pia)]), timeout=30)
        time.sleep(1.0)  # a new person shows on the other matcher a server time tick or two later
        calls = [(stubs[i % 2],
                  matcher_pb2.EnrollRequest(identity_id="pia", embeddings=[emb(unit(3000 + i, pia, 0.01))],
                                            mode=common_pb2.ENROLL_MODE_ADD_TEMPLATES))
                 for i in range(24)]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda call: call[0].Enroll(call[1], timeout=30), calls))
        time.sleep(1.0)  # GetIdentity reads Session: the other matcher's new faces a time tick or two later
        counted = [s.GetIdentity(matcher_pb2.GetIdentityRequest(identity_id="pia"), timeout=10).template_count
                   for s in stubs]
        removed = stubs[1].DeleteIdentity(matcher_pb2.DeleteIdentityRequest(identity_id="pia"), timeout=10)
        # no wait: a deletion is acknowledged once every matcher reads it (test_matchers_shared.py)
        after = [s.Identify(matcher_pb2.IdentifyRequest(probes=[emb(pia)], top_k=10), timeout=10).results[0]
                 for s in stubs]
    finally:
        first.stop()
        second.stop()

    assert counted == [25, 25]
    assert removed.templates_removed == 25
    assert all(c.identity_id != "pia" for result in after for c in result.candidates)


def files_holding(root, pattern: bytes) -> list:
    """Files under `root` whose bytes contain `pattern` (not a server's binaries, logs or config)."""
    from pathlib import Path

    hits = []
    for folder, subfolders, names in os.walk(root):  # os.walk skips folders removed while it walks
        subfolders[:] = [d for d in subfolders if d not in ("bin", "logs", "configs")]
        for name in names:
            path = Path(folder) / name
            try:
                if not path.is_symlink() and pattern in path.read_bytes():
                    hits.append(path)
            except OSError:  # a file removed while we looked
                continue
    return hits


def test__a_deleted_persons_vectors_leave_the_gallerys_files_within_the_purge_delay(
    tmp_path, gallery_args, milvus_server
):
    if milvus_server is not None:
        pytest.skip("Milvus Lite only: a 2.3.5 server's own compaction and GC decide (README 'Erasure'); "
                    "requested compactions (--compact-server) made its datacoord panic in this suite")
    root = tmp_path / "gallery.db"
    matcher = start_matcher(tmp_path, gallery_args(tmp_path) + ["--purge-after-seconds", "1"], "purging")
    stored = np.asarray([unit(90)], np.float32)
    stored = stored / np.linalg.norm(stored, axis=1)[:, None]  # as the matcher normalises it
    pattern = stored[0].astype("<f4").tobytes()
    try:
        stub = matcher_pb2_grpc.MatcherStub(channel(matcher.address))
        stub.Enroll(matcher_pb2.EnrollRequest(identity_id="quinn", embeddings=[emb(unit(90))]), timeout=10)
        stub.Enroll(matcher_pb2.EnrollRequest(identity_id="rhea", embeddings=[emb(unit(91))]), timeout=10)

        def stored_on_disk() -> list:  # in its data files (after a flush), not only in its write-ahead log
            return [p for p in files_holding(root, pattern) if p.suffix != ".arrow"]

        deadline = time.monotonic() + 30
        while not stored_on_disk() and time.monotonic() < deadline:
            time.sleep(0.5)
        written = stored_on_disk()
        stub.DeleteIdentity(matcher_pb2.DeleteIdentityRequest(identity_id="quinn"), timeout=10)
        deleted_at = time.monotonic()
        while files_holding(root, pattern) and time.monotonic() - deleted_at < 30:
            time.sleep(1)
        elapsed = time.monotonic() - deleted_at
        left = files_holding(root, pattern)
        rhea = stub.Identify(matcher_pb2.IdentifyRequest(probes=[emb(unit(91))]), timeout=10).results[0]
    finally:
        matcher.stop()

    print(f"\ndeleted vector on disk in {len(written)} files; gone from all {elapsed:.1f} s after DeleteIdentity")
    assert written  # the test can see the vector while it is stored
    assert left == []
    assert not rhea.unknown and rhea.candidates[0].identity_id == "rhea"  # the purge kept everyone else


def test__a_matcher_killed_while_rewriting_a_lite_gallery_loses_nobody_and_purges_after_restart(
    tmp_path, gallery_args, milvus_server
):
    if milvus_server is not None:
        pytest.skip("Milvus Lite only: a server gallery is compacted by the server, not rewritten")
    # It purges 5 s after it opens the gallery (once after every start), long after these calls.
    crashing = ServiceProcess("matcher", tmp_path, gallery_args(tmp_path) + ["--purge-after-seconds", "5"],
                              {**ENV, "FACEGATE_FAILPOINTS": "gallery.rewrite.before_drop"})
    crashing.log_path = tmp_path / "crashing.log"
    crashing.start()
    crashing.wait_serving(time.monotonic() + 60)
    stub = matcher_pb2_grpc.MatcherStub(channel(crashing.address))
    stub.Enroll(matcher_pb2.EnrollRequest(identity_id="sven", embeddings=[emb(unit(92))]), timeout=10)
    stub.Enroll(matcher_pb2.EnrollRequest(identity_id="tove", embeddings=[emb(unit(93))]), timeout=10)
    stub.DeleteIdentity(matcher_pb2.DeleteIdentityRequest(identity_id="sven"), timeout=10)
    assert crashing.process is not None and crashing.process.wait(timeout=30) == -9  # died mid-rewrite

    restarted = start_matcher(tmp_path, gallery_args(tmp_path) + ["--purge-after-seconds", "1"], "restarted")
    try:
        stub = matcher_pb2_grpc.MatcherStub(channel(restarted.address))
        time.sleep(3)  # the purge it owes runs after the restart
        tove = stub.Identify(matcher_pb2.IdentifyRequest(probes=[emb(unit(93))]), timeout=10).results[0]
        sven = stub.Identify(matcher_pb2.IdentifyRequest(probes=[emb(unit(92))], top_k=10), timeout=10).results[0]
        listed = [i.identity_id
                  for i in stub.ListIdentities(matcher_pb2.ListIdentitiesRequest(), timeout=10).identities]
    finally:
        restarted.stop()

    assert not tove.unknown and tove.candidates[0].identity_id == "tove"
    assert all(c.identity_id != "sven" for c in sven.candidates) and listed == ["tove"]
    assert "deleted rows purged" in restarted.log_tail(200)
    assert not (tmp_path / "gallery.db" / "collections" / "facegate_gallery_templates__rewrite").exists()


def test__a_person_deleted_and_enrolled_again_from_the_same_photo_is_found_and_deleted_again(matcher):
    # The same photo gives the same template key as the one just deleted.
    enrolment = matcher_pb2.EnrollRequest(identity_id="uma", embeddings=[emb(unit(94))])
    matcher.Enroll(enrolment, timeout=10)
    matcher.DeleteIdentity(matcher_pb2.DeleteIdentityRequest(identity_id="uma"), timeout=10)

    again = matcher.Enroll(enrolment, timeout=10)
    found = matcher.Identify(matcher_pb2.IdentifyRequest(probes=[emb(unit(94))]), timeout=10).results[0]
    removed = matcher.DeleteIdentity(matcher_pb2.DeleteIdentityRequest(identity_id="uma"), timeout=10)
    after = matcher.Identify(matcher_pb2.IdentifyRequest(probes=[emb(unit(94))], top_k=10), timeout=10).results[0]

    assert again.templates_added == 1
    assert not found.unknown and found.candidates[0].identity_id == "uma"
    assert removed.templates_removed == 1 and all(c.identity_id != "uma" for c in after.candidates)


def listening_tcp_ports(pid: int) -> set[int]:
    """The TCP ports process `pid` listens on (from /proc: its socket inodes in LISTEN state)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test__a_lite_gallery_opens_no_port_of_its_own(matcher, matcher_process, milvus_server_uri):
    """pymilvus would serve a Lite file on a TCP port of 127.0.0.1 that any local process could
    use without credentials; the matcher's Lite server listens on a private Unix socket."""
    service = matcher_process[0]
    if milvus_server_uri:
        pytest.skip("a Milvus server gallery: no Lite server in the matcher")
    matcher.ListIdentities(matcher_pb2.ListIdentitiesRequest(page_size=1), timeout=10)  # the gallery in use

    ports = listening_tcp_ports(service.process.pid)

    assert ports == {service.port, service.metrics_port, service.health_port, service.token_port}


def test__a_matcher_without_the_servers_credentials_does_not_start_and_says_why(tmp_path, milvus_server_uri):
    if milvus_server_uri is None:
        pytest.skip("Milvus Lite has no credentials; this needs the Milvus server (make test-milvus-server)")
    service = ServiceProcess("matcher", tmp_path, ["--milvus-uri", milvus_server_uri, "--collection", "t_no_token"],
                             {k: v for k, v in ENV.items() if k != "MILVUS_TOKEN"})
    service.start()
    assert service.process is not None and service.process.wait(timeout=60) != 0

    assert "--milvus-token-file or MILVUS_TOKEN" in service.log_tail(60)


@pytest.mark.parametrize(("details", "message"), [
    ({"display_name": "Mallory\x1b[2J"}, "display_name: control or format characters"),
    ({"display_name": "x" * 600}, "display_name: 600 characters; at most 512"),
    ({"metadata": {"badge": "4\x002"}}, "metadata['badge']: control or format characters"),
    ({"metadata": {f"k{i}": "v" for i in range(40)}}, "metadata: 40 keys; at most 32"),
    ({"metadata": {"badge": "x" * 2000}}, "at most 1024"),
    ({"groups": [f"g{i}" for i in range(1000)]}, "groups: 1000; at most 64"),
    ({"metadata": {"facegate.lookalikes": "obama"}}, "is kept by the matcher"),
    ({"allow_duplicate_of": [f"p{i}" for i in range(20)]}, "allow_duplicate_of: 20 ids; at most 16"),
])
def test__free_text_is_bounded_and_without_control_characters(matcher, details, message):
    with pytest.raises(grpc.RpcError) as caught:
        matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="free-text", embeddings=[emb(unit(170))], **details),
                       timeout=10)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in caught.value.details()


def test__each_enrolment_mode_does_one_thing_and_refuses_the_others(matcher):
    """CREATE refuses an existing id (a retry of the same call changes nothing); ADD_TEMPLATES
    takes only faces of the person and no details; UPDATE_DETAILS takes no faces; neither
    touches an id that is not enrolled."""
    ADD, UPDATE = common_pb2.ENROLL_MODE_ADD_TEMPLATES, common_pb2.ENROLL_MODE_UPDATE_DETAILS
    uma = unit(171)
    create = matcher_pb2.EnrollRequest(identity_id="uma", display_name="Uma", groups=["staff"], embeddings=[emb(uma)])
    matcher.Enroll(create, timeout=10)

    def status(**fields) -> grpc.StatusCode:
        try:
            matcher.Enroll(matcher_pb2.EnrollRequest(**fields), timeout=10)
            return grpc.StatusCode.OK
        except grpc.RpcError as error:
            return error.code()

    retried = matcher.Enroll(create, timeout=10)
    assert retried.templates_added == 0 and retried.identity.template_count == 1
    assert status(identity_id="uma", groups=["server-room"], embeddings=[emb(uma)]) == grpc.StatusCode.ALREADY_EXISTS
    assert status(identity_id="uma", embeddings=[emb(unit(172))], mode=ADD) == grpc.StatusCode.FAILED_PRECONDITION
    assert status(identity_id="uma", groups=["server-room"], embeddings=[emb(unit(173, uma, 0.01))],
                  mode=ADD) == grpc.StatusCode.INVALID_ARGUMENT
    assert status(identity_id="uma", groups=["x"], embeddings=[emb(uma)],
                  mode=UPDATE) == grpc.StatusCode.INVALID_ARGUMENT
    assert status(identity_id="nobody-uma", embeddings=[emb(uma)], mode=ADD) == grpc.StatusCode.NOT_FOUND
    assert status(identity_id="nobody-uma", groups=["x"], mode=UPDATE) == grpc.StatusCode.NOT_FOUND
    assert status(identity_id="uma-again", embeddings=[emb(unit(174, uma, 0.005))]) == grpc.StatusCode.ALREADY_EXISTS
    stored = matcher.GetIdentity(matcher_pb2.GetIdentityRequest(identity_id="uma"), timeout=10)
    assert (stored.template_count, list(stored.groups)) == (1, ["staff"])  # nothing refused changed anything
    added = matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="uma", embeddings=[emb(unit(175, uma, 0.01))],
                                                     mode=ADD), timeout=10)
    moved = matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="uma", groups=["night"], mode=UPDATE), timeout=10)
    assert (added.templates_added, moved.identity.template_count, list(moved.identity.groups)) == (1, 2, ["night"])


def test__replace_groups_sets_the_groups_exactly_and_only_with_update_details(matcher):
    """An empty `groups` in UPDATE_DETAILS keeps the stored ones; with `replace_groups` the groups
    become what is sent, none included: how a person's access groups are taken away."""
    UPDATE = common_pb2.ENROLL_MODE_UPDATE_DETAILS
    matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="gus", groups=["staff", "lab"], embeddings=[emb(unit(190))]),
                   timeout=10)

    kept = matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="gus", display_name="Gus", mode=UPDATE), timeout=10)
    fewer = matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="gus", groups=["lab"], replace_groups=True,
                                                     mode=UPDATE), timeout=10)
    none = matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="gus", replace_groups=True, mode=UPDATE), timeout=10)
    with pytest.raises(grpc.RpcError) as caught:
        matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="gus-2", embeddings=[emb(unit(191))],
                                                 replace_groups=True), timeout=10)

    assert list(kept.identity.groups) == ["staff", "lab"] and list(fewer.identity.groups) == ["lab"]
    assert list(none.identity.groups) == [] and none.identity.display_name == "Gus"
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "UPDATE_DETAILS" in caught.value.details()


def test__an_acknowledged_look_alike_is_kept_with_the_person(matcher):
    """Twins enrolled on purpose: the acknowledgement is stored in metadata (facegate.lookalikes),
    so an export imports again without anyone being asked twice."""
    twin = unit(176)
    matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="ada", embeddings=[emb(unit(177, twin, 0.004))]), timeout=10)

    eve = matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="eve", embeddings=[emb(unit(178, twin, 0.004))],
                                                   allow_duplicate_of=["ada"]), timeout=10)

    assert dict(eve.identity.metadata) == {"facegate.lookalikes": "ada"}


def test__changes_made_straight_on_the_matcher_are_logged_with_who_made_them(matcher, matcher_process):
    matcher.Enroll(matcher_pb2.EnrollRequest(identity_id="logged-lou", embeddings=[emb(unit(179))]), timeout=10)
    matcher.DeleteIdentity(matcher_pb2.DeleteIdentityRequest(identity_id="logged-lou"), timeout=10)

    lines = [json.loads(line) for line in matcher_process[0].log_tail(400).splitlines()
             if line.startswith("{") and '"admin action"' in line and "logged-lou" in line]

    assert [(e["action"], e["subject"], e["caller"]) for e in lines] == [
        ("create", "logged-lou", "spiffe://facegate/user/admin"), ("delete", "logged-lou", "spiffe://facegate/user/admin")]
