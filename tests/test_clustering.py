"""Clustering groups faces of one person together and keeps different people apart."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest

from services.contracts.v1 import common_pb2, matcher_pb2, matcher_pb2_grpc
from services.matcher.clustering import cluster_faces, pairwise_precision_recall
from tests.conftest import channel


def people(count: int, faces_each: int, spread: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((count, 128))
    vectors = np.repeat(centres, faces_each, axis=0) + spread * rng.standard_normal((count * faces_each, 128))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32), np.repeat(np.arange(count), faces_each)


def test__given_well_separated_people__then_each_becomes_one_cluster():
    vectors, truth = people(6, 5, 0.01)

    labels = cluster_faces(vectors, 0.35)

    assert pairwise_precision_recall(labels, truth) == (1.0, 1.0)
    assert len(set(labels)) == 6


def test__clusters_below_min_size_are_noise_and_labels_go_by_size():
    vectors, _ = people(3, 4, 0.01)
    vectors = np.concatenate([vectors[:8], vectors[8:9]])  # person 2 seen once

    labels = cluster_faces(vectors, 0.35, min_size=2)

    assert labels[-1] == -1 and set(labels[:8]) == {0, 1}


def test__pairwise_metrics_count_pairs():
    precision, recall = pairwise_precision_recall(np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1]))

    assert precision == pytest.approx(1 / 3) and recall == pytest.approx(1 / 2)


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
    from tests.test_cli import facegate

    names = ["obama.jpg", "biden.jpg", "obama2.jpg", "obama3.jpg"]
    embedded = facegate("embed", *[str(demo_photos[n]) for n in names])
    faces = tmp_path / "faces.jsonl"
    faces.write_text(embedded.stdout)

    result = facegate("cluster", str(faces))
    clusters = [json.loads(line) for line in result.stdout.splitlines()]

    assert result.returncode == 0, result.stderr
    groups = [sorted(f["file"].rsplit("/", 1)[-1] for f in c["faces"]) for c in clusters]
    assert ["obama.jpg", "obama2.jpg", "obama3.jpg"] in groups and ["biden.jpg"] in groups
