"""Admission per caller: a rate per RPC (lower for heavy ones) and a number of open streams;
FaceGate's own services are not limited."""

from __future__ import annotations

import asyncio

import pytest

from services.core.admission import Admission, Refused, parse_rate

OPERATOR, SERVICE = frozenset({"operator"}), frozenset({"service"})
IDENTIFY, ENROL = "/facegate.v1.Matcher/Identify", "/facegate.v1.Gateway/EnrollFromImages"


async def admitted(admission: Admission, identity: str, roles: frozenset[str], method: str, calls: int) -> int:
    count = 0
    for _ in range(calls):
        try:
            await admission.admit(identity, roles, method)
            count += 1
        except Refused:
            pass
    return count


def test__a_caller_gets_its_rate_per_method_and_a_lower_one_for_heavy_methods():
    admission = Admission("10/second", "2/second", max_streams=4)

    async def run() -> tuple[int, int, int]:
        return (await admitted(admission, "alice", OPERATOR, IDENTIFY, 30),
                await admitted(admission, "alice", OPERATOR, ENROL, 30),
                await admitted(admission, "bob", OPERATOR, IDENTIFY, 30))

    assert asyncio.run(run()) == (10, 2, 10)  # bob is not slowed down by alice


def test__a_refusal_names_the_limit_and_when_to_retry():
    admission = Admission("1/minute", "1/minute", max_streams=4)

    async def run() -> None:
        await admission.admit("alice", OPERATOR, IDENTIFY)
        await admission.admit("alice", OPERATOR, IDENTIFY)

    with pytest.raises(Refused, match=r"alice is over its rate for Identify \(1 per 1 minute\); retry in \d"):
        asyncio.run(run())


def test__services_are_not_limited():
    admission = Admission("1/second", "1/second", max_streams=1)

    assert asyncio.run(admitted(admission, "gateway", SERVICE, IDENTIFY, 50)) == 50
    for _ in range(5):
        admission.open_stream("gateway", SERVICE)


def test__open_streams_are_bounded_per_caller_and_given_back_when_closed():
    admission = Admission("100/second", "5/second", max_streams=2)
    admission.open_stream("door-a", OPERATOR)
    admission.open_stream("door-a", OPERATOR)

    with pytest.raises(Refused, match="already has 2 streams open"):
        admission.open_stream("door-a", OPERATOR)
    admission.open_stream("door-b", OPERATOR)  # another caller is not affected
    admission.close_stream("door-a", OPERATOR)
    admission.open_stream("door-a", OPERATOR)


@pytest.mark.parametrize(("text", "ok"), [("100/second", True), ("20 per minute", True), ("lots", False), ("", False)])
def test__rates_are_read_as_the_limits_library_writes_them(text, ok):
    assert (parse_rate(text) is None) is ok
