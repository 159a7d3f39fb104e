"""The Cluster RPC and `facegate cluster` on real services."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest

from services.contracts.v1 import common_pb2, matcher_pb2, matcher_pb2_grpc
from services.matcher.clustering import pairwise_precision_recall
from tests.conftest import channel
from tests.unit.test_clustering import people


def test__the_cluster_rpc_groups_faces_and_refuses_other_models(stack):
    matcher = matcher_pb2_grpc.MatcherStub(channel(stack.address("matcher")))
    vectors, truth = people(4, 3, 0.01, seed=3)
    embeddings = [common_pb2.Embedding(vector=v.tolist(), model_id="dlib-resnet-v1", model_version="1.0")
                  for v in vectors]

    reply = matcher.Cluster(matcher_pb2.ClusterRequest(embeddings=embeddings), timeout=30)
    foreign = [common_pb2.Embedding(vector=vectors[0].tolist(), model_id="facenet", model_version="1")]

    assert reply.clusters == 4
    assert pairwise_precision_recall(np.array(reply.labels), truth) == (1.0, 1.0)
    with pytest.raises(grpc.RpcError) as caught:
        matcher.Cluster(matcher_pb2.ClusterRequest(embeddings=foreign), timeout=30)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test__given_embed_output__when_clustering__then_the_three_obama_photos_group_apart_from_biden(
    tmp_path, demo_photos
):
    from tests.system.test_cli import facegate

    names = ["obama.jpg", "biden.jpg", "obama2.jpg", "obama3.jpg"]
    embedded = facegate("embed", *[str(demo_photos[n]) for n in names])
    faces = tmp_path / "faces.jsonl"
    faces.write_text(embedded.stdout)

    result = facegate("cluster", str(faces))
    clusters = [json.loads(line) for line in result.stdout.splitlines()]

    assert result.returncode == 0, result.stderr
    groups = [sorted(f["file"].rsplit("/", 1)[-1] for f in c["faces"]) for c in clusters]
    assert ["obama.jpg", "obama2.jpg", "obama3.jpg"] in groups and ["biden.jpg"] in groups


def test__a_cluster_call_larger_than_the_matcher_can_hold_is_refused_before_any_work(stack):
    from services.matcher.clustering import MAX_FACES

    matcher = matcher_pb2_grpc.MatcherStub(channel(stack.address("matcher")))
    vectors, _ = people(1, MAX_FACES + 1, 0.01)
    embeddings = [common_pb2.Embedding(vector=v.tolist(), model_id="dlib-resnet-v1", model_version="1.0")
                  for v in vectors]

    with pytest.raises(grpc.RpcError) as caught:
        matcher.Cluster(matcher_pb2.ClusterRequest(embeddings=embeddings), timeout=60)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"embeddings: {MAX_FACES + 1} faces; at most {MAX_FACES} per call" in caught.value.details()
