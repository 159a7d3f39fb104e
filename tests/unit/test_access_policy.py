"""The access policy file: identities (or shapes of them) to roles, validated like the door file."""

from __future__ import annotations

import pytest

from services.core.access import PERMISSIONS, ROLES, AccessPolicy, PolicyError, parse_policy

POLICY = {"callers": [
    {"id": "spiffe://facegate/user/alice", "roles": ["operator", "auditor"]},
    {"id": "spiffe://facegate/*/camera/*", "roles": ["camera"]},
    {"id": "spiffe://facegate/integration/hr", "roles": ["integration"], "sites": ["hq"]},
]}


def test__a_caller_gets_the_roles_of_the_first_rule_naming_it():
    policy = parse_policy(POLICY)

    alice = policy.caller("spiffe://facegate/user/alice")
    camera = policy.caller("spiffe://facegate/hq/camera/lab-door")
    assert alice is not None and alice.roles == {"operator", "auditor"} and alice.door is None
    assert camera is not None and camera.roles == {"camera"} and camera.door == ("hq", "lab-door")
    assert policy.caller("spiffe://facegate/hq/camera/lab-door/extra") is None  # * is one segment
    assert policy.caller("spiffe://facegate/user/mallory") is None
    assert policy.caller("spiffe://facegate/integration/hr").sites == ("hq",)  # type: ignore[union-attr]


@pytest.mark.parametrize(("data", "error"), [
    ({"callers": [{"id": "spiffe://facegate/user/alice", "roles": ["root"]}]}, "callers[0].roles: ['root']"),
    ({"callers": [{"id": "spiffe://elsewhere/user/alice", "roles": ["operator"]}]}, "callers[0].id"),
    ({"callers": [{"id": "spiffe://facegate/user/alice\n", "roles": ["operator"]}]}, "callers[0].id"),
    ({"callers": [{"id": "spiffe://facegate/user/alice", "roles": []}]}, "callers[0].roles: []"),
    ({"callers": [{"id": "spiffe://facegate/user/a", "roles": ["operator"], "rpcs": ["*"]}]}, "callers[0]: a mapping"),
    ({"people": []}, "a mapping with the keys callers and optionally token_issuers"),
])
def test__an_invalid_policy_is_refused_naming_the_field(data, error):
    with pytest.raises(PolicyError) as caught:
        parse_policy(data)
    assert error in str(caught.value)


def test__every_permission_names_known_roles_and_every_role_may_call_something():
    granted = set().union(*PERMISSIONS.values())

    assert granted <= set(ROLES) and set(ROLES) <= granted
    assert AccessPolicy().caller("spiffe://facegate/user/alice") is None  # an empty policy lets nobody in
