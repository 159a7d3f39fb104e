"""Bad and unauthorised input against the real services (hypothesis): whatever arrives, no
grant, no enrolment and no deletion comes of it, every refusal is a status that says what was
wrong (never INTERNAL or UNKNOWN), and every service is still SERVING within its memory limit.

`make test` runs a bounded number of examples per property (FACEGATE_FUZZ_EXAMPLES, default
25); `make fuzz` runs a longer campaign and prints what it saw."""

from __future__ import annotations

import os
import time
from collections import Counter

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facegate.harness.pki import default_pki
from services.contracts.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc, matcher_pb2, matcher_pb2_grpc
from services.core.channels import blocking_channel
from tests.unit.test_ndarray_properties import messages

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("FACEGATE_FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("FACEGATE_FUZZ_RANDOM") != "1",
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
REFUSALS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.OUT_OF_RANGE}
MEMORY_LIMITS_MB = {"detector": 3072, "embedder": 3072, "matcher": 4096, "gateway": 1024}  # deploy/k8s limits
SEEN: Counter[str] = Counter()  # statuses seen, for `make fuzz`'s report
DECISIONS: Counter[str] = Counter()  # outcomes of the decisions fuzzed camera streams got

# Identity ids that are malformed by construction: empty, too long, or with a character outside
# letters, digits and ._:@- (a newline, a quote, a NUL, a space, non-ASCII).
BAD_IDS = st.one_of(
    st.just(""), st.text(min_size=129, max_size=2000, alphabet="ab"),
    st.builds(lambda a, bad, b: a + bad + b, st.text(max_size=20), st.sampled_from(list("\n\"' \x00/\\é*{}")),
              st.text(max_size=20)),
)
FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=32)


def not_unit(length: int) -> st.SearchStrategy[list[float]]:
    """Vectors the matcher must refuse: wrong length, non-finite, or far from unit norm."""
    wrong_length = st.lists(FLOATS, max_size=300).filter(lambda v: len(v) != length)
    non_finite = st.lists(FLOATS, min_size=length, max_size=length).filter(lambda v: not np.isfinite(v).all())
    off_norm = st.lists(st.floats(-10, 10, width=32), min_size=length, max_size=length).filter(
        lambda v: abs(float(np.linalg.norm(v)) - 1.0) > 0.05)
    return st.one_of(wrong_length, non_finite, off_norm)


def embedding(vector: list[float], model=("dlib-resnet-v1", "1.0")) -> common_pb2.Embedding:
    return common_pb2.Embedding(model_id=model[0], model_version=model[1], vector=vector)


def gallery_ids(stack) -> set[str]:
    matcher = matcher_pb2_grpc.MatcherStub(stack.channel("matcher"))
    ids, token = set(), ""
    while True:
        page = matcher.ListIdentities(matcher_pb2.ListIdentitiesRequest(page_size=1000, page_token=token), timeout=30)
        ids |= {i.identity_id for i in page.identities}
        if not (token := page.next_page_token):
            return ids


def refused_cleanly(call) -> grpc.StatusCode:
    """The call's status, which must be OK or a refusal that names a reason (never INTERNAL)."""
    time.sleep(0.011)  # under the default 100 calls per second per caller: fuzz the checks, not the limiter
    try:
        call()
        code = grpc.StatusCode.OK
    except grpc.RpcError as error:
        code = error.code()
        assert code in REFUSALS, f"{code.name}: {error.details()}"
        assert error.details(), f"{code.name} without a message"
    SEEN[code.name] += 1
    return code


def assert_serving_within_limits(stack) -> None:
    for name, service in stack.services.items():
        assert service.health(timeout=5) == health_pb2.HealthCheckResponse.SERVING, f"{name} is not serving"
        rss_kb = int(next(line.split()[1] for line in open(f"/proc/{service.process.pid}/status")
                          if line.startswith("VmRSS:")))
        assert rss_kb / 1024 < MEMORY_LIMITS_MB[name], f"{name} uses {rss_kb // 1024} MB"


@pytest.fixture(scope="module", autouse=True)
def report():
    """What the campaign saw, printed at the end (`make fuzz` shows it)."""
    yield
    print(f"\nfuzz: {sum(SEEN.values())} calls and streams, {EXAMPLES} examples per property; statuses: "
          + ", ".join(f"{name} {count}" for name, count in SEEN.most_common()) + "; camera decisions: "
          + (", ".join(f"{name} {count}" for name, count in DECISIONS.most_common()) or "none"))


@pytest.fixture(scope="module")
def before(stack):
    """The gallery before this module's fuzzing; each property checks it is unchanged."""
    return gallery_ids(stack)


def test__callers_without_the_role_never_change_the_gallery_whatever_they_send(stack, before):
    pki = default_pki()
    outsiders = {"camera": pki.camera("default", "fuzz-door"), "auditor": pki.user("auditor"),
                 "integration": pki.integration("fuzz"), "door-controller": pki.door_controller("default", "fuzz-door")}
    stubs = {role: matcher_pb2_grpc.MatcherStub(blocking_channel(stack.address("matcher"), tls))
             for role, tls in outsiders.items()}
    unit = (np.ones(128) / np.sqrt(128)).tolist()

    @FUZZ
    @given(role=st.sampled_from(sorted(stubs)),
           identity_id=st.text(max_size=40) | st.sampled_from(sorted(before) or ["x"]),
           vectors=st.lists(st.just(unit) | not_unit(128), min_size=0, max_size=3), delete=st.booleans())
    def probe(role, identity_id, vectors, delete):
        stub = stubs[role]
        if delete:
            call = lambda: stub.DeleteIdentity(matcher_pb2.DeleteIdentityRequest(identity_id=identity_id), timeout=10)  # noqa: E731
        else:
            call = lambda: stub.Enroll(matcher_pb2.EnrollRequest(  # noqa: E731
                identity_id=identity_id, embeddings=[embedding(v) for v in vectors]), timeout=10)
        assert refused_cleanly(call) == grpc.StatusCode.PERMISSION_DENIED

    probe()
    assert gallery_ids(stack) == before
    assert_serving_within_limits(stack)


def test__malformed_enrolments_and_deletions_by_an_operator_change_nothing(stack, before):
    matcher = matcher_pb2_grpc.MatcherStub(stack.channel("matcher"))
    unit = (np.ones(128) / np.sqrt(128)).tolist()
    good_id = st.from_regex(r"fuzz-[a-z0-9]{1,20}", fullmatch=True)

    good_label = st.from_regex(r"[a-z0-9-]{0,20}", fullmatch=True)
    control = st.sampled_from(["\n", "\x1b[2J", "\x00", "\u202e", "\x7f"])  # control or format characters
    bad_text = st.builds(lambda a, bad, b: a + bad + b, st.text(max_size=10), control, st.text(max_size=10))
    one_vector = st.lists(st.just(unit), min_size=1, max_size=2)

    # Each case has exactly one fault, so the check for that fault is the one exercised.
    @FUZZ
    @given(st.one_of(
        st.fixed_dictionaries({"kind": st.just("bad id"), "identity_id": BAD_IDS, "vectors": one_vector}),
        st.fixed_dictionaries({"kind": st.just("bad vector"), "identity_id": good_id,
                               "vectors": st.lists(not_unit(128), min_size=1, max_size=3)}),
        st.fixed_dictionaries({"kind": st.just("no vector"), "identity_id": good_id, "vectors": st.just([])}),
        st.fixed_dictionaries({"kind": st.just("bad mode"), "identity_id": good_id, "vectors": one_vector,
                               "mode": st.integers(4, 2**31 - 1)}),
        st.fixed_dictionaries({"kind": st.just("unknown id"), "identity_id": good_id, "vectors": one_vector,
                               "mode": st.just(common_pb2.ENROLL_MODE_ADD_TEMPLATES)}),
        st.fixed_dictionaries({"kind": st.just("bad site"), "identity_id": good_id, "vectors": one_vector,
                               "site": bad_text | st.text(min_size=129, max_size=600)}),
        st.fixed_dictionaries({"kind": st.just("bad group"), "identity_id": good_id, "vectors": one_vector,
                               "groups": st.lists(bad_text, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"kind": st.just("bad name"), "identity_id": good_id, "vectors": one_vector,
                               "display_name": bad_text}),
        st.fixed_dictionaries({"kind": st.just("bad metadata"), "identity_id": good_id, "vectors": one_vector,
                               "metadata": st.dictionaries(good_label.filter(bool), bad_text, min_size=1,
                                                           max_size=3)}),
    ), good_label)
    def probe(case, site):
        case = dict(case)
        kind, identity_id, vectors = case.pop("kind"), case.pop("identity_id"), case.pop("vectors")
        fields = {"site": site, **case}
        code = refused_cleanly(lambda: matcher.Enroll(matcher_pb2.EnrollRequest(
            identity_id=identity_id, embeddings=[embedding(v) for v in vectors], **fields), timeout=10))
        assert code != grpc.StatusCode.OK, f"{kind}: enrolled"
        refused_cleanly(lambda: matcher.DeleteIdentity(matcher_pb2.DeleteIdentityRequest(identity_id=identity_id),
                                                       timeout=10))

    probe()
    assert gallery_ids(stack) == before
    assert_serving_within_limits(stack)


def test__any_search_request_gets_an_answer_or_a_clean_refusal(stack):
    matcher = matcher_pb2_grpc.MatcherStub(blocking_channel(stack.address("matcher"), default_pki().integration("hr")))

    @FUZZ
    @given(probes=st.lists(st.lists(FLOATS, max_size=140), max_size=3), top_k=st.integers(-5, 2000),
           max_distance=FLOATS, target_far=FLOATS, classifier=st.integers(-2, 5), k=st.integers(-5, 500),
           site=st.text(max_size=150), model=st.sampled_from([("dlib-resnet-v1", "1.0"), ("other", "9")]),
           identity_id=st.text(max_size=200))
    def probe(probes, top_k, max_distance, target_far, classifier, k, site, model, identity_id):
        embeddings = [embedding(p, model) for p in probes]
        refused_cleanly(lambda: matcher.Identify(matcher_pb2.IdentifyRequest(
            probes=embeddings, top_k=top_k, max_distance=max_distance, target_far=target_far, classifier=classifier,
            k=k, site=site), timeout=10))
        refused_cleanly(lambda: matcher.Verify(matcher_pb2.VerifyRequest(
            identity_id=identity_id, probe=embeddings[0] if embeddings else None, max_distance=max_distance,
            target_far=target_far), timeout=10))

    probe()
    assert_serving_within_limits(stack)


def test__no_frame_a_camera_can_send_opens_a_door(stack, before):
    """Garbage, noise and hostile headers in frames, through the real detector and embedder:
    never a grant, and the stream ends (if it ends) with a refusal, never INTERNAL."""
    gateway = gateway_pb2_grpc.GatewayStub(stack.camera_channel("fuzz-door"))
    noise = st.builds(lambda seed, h, w: np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8),
                      st.integers(0, 2**32 - 1), st.integers(12, 240), st.integers(12, 320))
    from services.core import ndarray
    from services.core.assets import demo_photos
    from services.core.images import decode_image

    face = ndarray.encode(decode_image(demo_photos()["obama.jpg"].read_bytes()), "jpeg")

    def lie(kind: str, number: int) -> common_pb2.NDArray:
        """A real face photo whose header lies: it must be refused, never decided on."""
        frame = common_pb2.NDArray()
        frame.CopyFrom(face)
        if kind == "shape":
            frame.shape[:] = [number % 5000 + 1, 7, 3]
        elif kind == "raw":
            frame.encoding = common_pb2.NDArray.ENCODING_RAW
        elif kind == "dtype":
            frame.encoding, frame.dtype = common_pb2.NDArray.ENCODING_RAW, "float64"
        return frame

    lies = st.builds(lie, st.sampled_from(["shape", "raw", "dtype"]), st.integers(0, 10**6))
    frames = st.one_of(messages(), noise.map(ndarray.encode), noise.map(lambda a: ndarray.encode(a, "jpeg")), lies)
    sent = [0]

    @FUZZ
    @given(st.lists(frames, min_size=1, max_size=3), st.sampled_from(["", "default", "elsewhere"]))
    def probe(batch, site):
        start = time.time_ns()
        stream = []
        for i, frame in enumerate(batch):
            message = gateway_pb2.CameraFrame(door_id="fuzz-door", site=site, sequence=sent[0] + i, frame=frame)
            message.captured_at.FromNanoseconds(start + i * 200_000_000)
            stream.append(message)
        sent[0] += len(batch)
        decisions = []

        def call():
            decisions.extend(gateway.StreamCamera(iter(stream), timeout=30))

        refused_cleanly(call)
        DECISIONS.update(gateway_pb2.Decision.Outcome.Name(d.outcome) for d in decisions)
        assert all(d.outcome != gateway_pb2.Decision.Outcome.OUTCOME_GRANTED for d in decisions)

    probe()
    assert gallery_ids(stack) == before
    assert_serving_within_limits(stack)
