"""What the fleet controller asks the cluster to hold for a doors file (facegate/fleet/agents.py)."""

from __future__ import annotations

import re

import pytest

from facegate.camera import redact
from facegate.fleet.agents import (
    DOOR_ANNOTATION,
    DOOR_LABEL,
    HASH_ANNOTATION,
    SITE_LABEL,
    AgentSettings,
    Owner,
    agent_name,
    desired_agents,
    label_value,
)
from services.gateway.doors import parse_doors

OWNER = Owner("facegate-doors", "0c7d1f0e-1111-2222-3333-444455556666")
SETTINGS = AgentSettings(image="registry.example/facegate:1.0", gateway="gateway:50050")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def doors(*entries: dict) -> object:
    return parse_doors({"sites": {"hq": {}, "lab": {}}, "doors": list(entries)}, calibrated_fars=None)


def test_each_door_with_a_camera_gets_one_agent_and_doors_without_get_none() -> None:
    config = doors({"id": "lobby", "site": "hq", "camera": "rtsp://10.0.0.7/stream"},
                   {"id": "back", "site": "hq"},
                   {"id": "bench", "site": "lab", "camera": "0"})
    agents = desired_agents(config, OWNER, SETTINGS)  # type: ignore[arg-type]
    assert [a.door_id for a in agents] == ["lobby", "bench"]
    assert all(not a.problem and len(a.objects) == 1 for a in agents)


def test_an_agent_runs_the_camera_command_for_its_door_site_and_source() -> None:
    agent, = desired_agents(doors({"id": "lobby", "site": "hq", "camera": "rtsp://10.0.0.7/s"}),  # type: ignore[arg-type]
                            OWNER, SETTINGS)
    container = agent.deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == SETTINGS.image
    assert container["args"] == ["facegate", "camera", "--door", "lobby", "--site", "hq", "--source",
                                 "rtsp://10.0.0.7/s", "--fps", "5", "--gateway", "gateway:50050",
                                 "--tls-dir", "/etc/facegate/tls"]


def test_an_agent_is_one_pod_replaced_not_rolled_because_a_door_takes_one_stream() -> None:
    agent, = desired_agents(doors({"id": "lobby", "site": "hq", "camera": "0"}), OWNER, SETTINGS)  # type: ignore[arg-type]
    spec = agent.deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}


def test_agents_are_owned_by_the_doors_configmap_and_labelled_by_site_and_door() -> None:
    agent, = desired_agents(doors({"id": "lobby", "site": "hq", "camera": "0"}), OWNER, SETTINGS)  # type: ignore[arg-type]
    meta = agent.deployment["metadata"]
    assert meta["ownerReferences"] == [{"apiVersion": "v1", "kind": "ConfigMap", "name": "facegate-doors",
                                        "uid": OWNER.uid, "controller": True}]
    assert meta["labels"][SITE_LABEL] == "hq" and meta["labels"][DOOR_LABEL] == "lobby"
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "facegate-fleet"
    selector = agent.deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= agent.deployment["spec"]["template"]["metadata"]["labels"].items()


def test_agent_pods_are_locked_down_like_every_facegate_pod() -> None:
    agent, = desired_agents(doors({"id": "lobby", "site": "hq", "camera": "0"}), OWNER, SETTINGS)  # type: ignore[arg-type]
    pod = agent.deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    assert set(container["resources"]) == {"requests", "limits"}


def test_names_are_dns_labels_unique_per_exact_door_id_and_short_enough_for_pod_names() -> None:
    ids = ["lobby", "Lobby", "hq:door@3", "a" * 128, "..x..", "--"]
    names = [agent_name(i) for i in ids]
    assert len(set(names)) == len(ids)
    for name in names:
        assert DNS_LABEL.fullmatch(name) and len(name) <= 45, name


def test_labels_keep_ids_that_are_valid_label_values_and_slug_the_others() -> None:
    assert label_value("hq-lobby_2.b") == "hq-lobby_2.b"
    slugged = label_value("hq:door@3")
    assert re.fullmatch(r"hq-door-3-[0-9a-f]{8}", slugged)
    assert label_value("hq:door@3") != label_value("hq:door@4")
    assert len(label_value("x" * 128)) <= 63


def test_the_exact_door_id_is_kept_in_an_annotation_when_the_label_cannot_hold_it() -> None:
    door_id = "d" * 64  # a valid door and certificate name, one character too long for a label
    agent, = desired_agents(doors({"id": door_id, "site": "hq", "camera": "0"}), OWNER, SETTINGS)  # type: ignore[arg-type]
    assert agent.deployment["metadata"]["labels"][DOOR_LABEL] != door_id
    assert agent.deployment["metadata"]["annotations"][DOOR_ANNOTATION] == door_id


def test_a_door_id_that_cannot_name_a_camera_certificate_is_reported_not_applied() -> None:
    agent, = desired_agents(doors({"id": "hq:door@3", "site": "hq", "camera": "0"}), OWNER, SETTINGS)  # type: ignore[arg-type]
    assert agent.objects == ()  # nothing to apply; the status and an Event say why
    assert "cannot have a camera certificate" in agent.problem


def test_with_an_issuer_each_agent_gets_a_certificate_naming_its_door() -> None:
    settings = AgentSettings(image="img", gateway="gateway:50050", certificate_issuer="facegate-ca")
    agent, = desired_agents(doors({"id": "lobby", "site": "hq", "camera": "0"}), OWNER, settings)  # type: ignore[arg-type]
    deployment, certificate = agent.objects
    assert certificate["kind"] == "Certificate"
    assert certificate["spec"]["uris"] == ["spiffe://facegate/hq/camera/lobby"]
    assert certificate["spec"]["usages"] == ["client auth", "digital signature"]
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert {"name": "tls", "secret": {"secretName": certificate["spec"]["secretName"]}} in volumes


def test_camera_passwords_come_from_the_credentials_secret_one_key_per_agent() -> None:
    source = "rtsp://cam:$(LOBBY_PASSWORD)@10.0.0.7:554/stream?token=$(LOBBY_TOKEN)"
    agent, = desired_agents(doors({"id": "lobby", "site": "hq", "camera": source}), OWNER, SETTINGS)  # type: ignore[arg-type]
    container = agent.deployment["spec"]["template"]["spec"]["containers"][0]
    assert source in container["args"]  # Kubernetes expands $(LOBBY_PASSWORD) from the env below
    assert container["env"] == [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": "facegate-camera-credentials", "key": key}}}
        for key in ("LOBBY_PASSWORD", "LOBBY_TOKEN")]  # only this camera's keys, not every camera's
    assert "envFrom" not in container
    plain, = desired_agents(doors({"id": "back", "site": "hq", "camera": "rtsp://10.0.0.8/s"}), OWNER, SETTINGS)  # type: ignore[arg-type]
    assert "env" not in plain.deployment["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("source, shown", [
    ("rtsp://cam:s3cret@10.0.0.7:554/stream", "rtsp://***:***@10.0.0.7:554/stream"),
    ("rtsp://TOKEN@cam.local/s", "rtsp://***@cam.local/s"),
    ("http://cam/video.cgi?usr=admin&pwd=x1", "http://cam/video.cgi?usr=***&pwd=***"),
    ("rtsp://u:p@[fd00::7]:554/s", "rtsp://***:***@[fd00::7]:554/s"),
    ("rtsp://***:$(LOBBY_PASSWORD)@10.0.0.7/s", "rtsp://***:$(LOBBY_PASSWORD)@10.0.0.7/s"),
    ("rtsp://10.0.0.7/stream", "rtsp://10.0.0.7/stream"),
    ("0", "0"),
    ("rtsp://admin:pw@10.0.0.7:55x/s", "(a camera URL that does not parse)"),
])
def test_status_events_and_logs_show_camera_sources_without_credentials(source: str, shown: str) -> None:
    assert redact(source) == shown


def test_a_camera_url_that_does_not_parse_is_reported_not_applied() -> None:
    config = doors({"id": "lobby", "site": "hq", "camera": "rtsp://admin:pw@10.0.0.7:5540a/stream"},
                   {"id": "back", "site": "hq", "camera": "rtsp:///stream"},
                   {"id": "lab", "site": "lab", "camera": "rtsp://10.0.1.9/stream"})
    lobby, back, lab = desired_agents(config, OWNER, SETTINGS)  # type: ignore[arg-type]
    assert "not a valid URL" in lobby.problem and "pw" not in lobby.problem
    assert "without a host" in back.problem
    assert not lab.problem  # one bad door does not stop the others


def test_the_selector_matches_the_labels_whatever_the_doors_configmap_is_called() -> None:
    owner = Owner("doors-" + "x" * 70, OWNER.uid)  # too long for a label value
    agent, = desired_agents(doors({"id": "lobby", "site": "hq", "camera": "0"}), owner, SETTINGS)  # type: ignore[arg-type]
    selector = agent.deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= agent.deployment["spec"]["template"]["metadata"]["labels"].items()
    assert all(len(value) <= 63 for value in selector.values())


def test_the_spec_hash_changes_with_the_spec_and_only_with_it() -> None:
    def hash_of(camera: str, image: str = "img") -> str:
        settings = AgentSettings(image=image, gateway="gateway:50050")
        agent, = desired_agents(doors({"id": "lobby", "site": "hq", "camera": camera}), OWNER, settings)  # type: ignore[arg-type]
        return str(agent.deployment["metadata"]["annotations"][HASH_ANNOTATION])

    assert hash_of("0") == hash_of("0")
    assert hash_of("0") != hash_of("1")
    assert hash_of("0") != hash_of("0", image="img2")


@pytest.mark.parametrize("kwargs, message", [
    ({"image": ""}, "--agent-image"),
    ({"gateway": "gateway"}, "host:port"),
    ({"fps": 0}, "--agent-fps"),
    ({"issuer_kind": "Vault"}, "--issuer-kind"),
])
def test_bad_agent_settings_are_refused_with_the_flag_to_fix(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AgentSettings(**{"image": "img", "gateway": "gateway:50050", **kwargs})
