"""Several matcher replicas on one Milvus 2.3.5 server: how long a write on one replica takes to
show on another, and how long something removed on one can still be returned by another.

    tools/private_net.sh .venv/bin/python bench/matchers_bench.py [--trials 50] [--after 1.0]
    (or `make bench-matchers`; the server listens on every interface, so this runs only inside
    the private network namespace, where it can see loopback alone)

Three matcher processes, A, B and C, share one gallery (one pair of collections) on a real
Milvus 2.3.5 server started here. Each trial enrols a new person on A, then, still on A, takes
access away three ways: revokes their groups (UPDATE_DETAILS with replace_groups), moves them
to another site (their templates at the old site are removed: the contract has no call that
removes single templates) and deletes them (DeleteIdentity; the gateway's erasure is this call).
Replica B is probed throughout:

- enrolment: Identify on B until it finds the person; the time from A's acknowledgement to the
  end of the first probe that found them;
- each removal: probes of B (Identify, Verify, GetIdentity, whichever can show what was
  removed; one thread each, a probe every ~10 ms) run from before A's call until `--after`
  seconds after its acknowledgement, longer if a positive came late. The window is the start
  of the last probe that still returned what was removed, from A's acknowledgement (0 when no
  probe started after it returned it) and from A's request. Before each removal B is polled
  until it shows what is about to be removed, so a window measures the removal alone.

Two phases: B busy only with the probes, then a light write load (C enrols and deletes other
people, a write every ~250 ms). Then what reads cost at each Milvus consistency level on the
gallery's collections (the options weighed for cross-replica deletion). Bounded: a fixed number
of trials. Timings on a shared machine: other work on it shows as noise.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from facegate.harness.milvus_server import MilvusServer, in_private_network  # noqa: E402
from facegate.harness.pki import default_pki  # noqa: E402
from facegate.harness.stack import ServiceProcess  # noqa: E402
from services.contracts.v1 import common_pb2, matcher_pb2, matcher_pb2_grpc  # noqa: E402
from services.core.channels import blocking_channel  # noqa: E402

COLLECTION = "bench_matchers"
PACE = 0.01  # seconds between one prober's probes
LOAD_PACE = 0.25  # seconds between the load's writes
DEADLINE = 10.0  # the most a replica may take to show a write before the trial counts it lost
Probe = Callable[[], bool]  # True while B still returns what was (or is about to be) removed


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(128)
    return (v / np.linalg.norm(v)).astype(np.float32)


def emb(vector: np.ndarray) -> common_pb2.Embedding:
    return common_pb2.Embedding(vector=vector.tolist(), model_id="dlib-resnet-v1", model_version="1.0")


@dataclass
class Samples:
    """One row's measurements over the trials."""

    windows: list[float] = field(default_factory=list)  # from the acknowledgement, s
    from_request: list[float] = field(default_factory=list)  # from the request, s
    calls: list[float] = field(default_factory=list)  # A's call, s
    late: int = 0  # trials where a probe that started after the acknowledgement was positive
    lost: int = 0  # trials where B never showed the state (enrolment) in DEADLINE


@dataclass
class Results:
    rows: dict[tuple[str, str], Samples] = field(default_factory=dict)
    identify_ms: list[float] = field(default_factory=list)  # B's Identify latency during the probes
    errors: Counter[str] = field(default_factory=Counter)

    def row(self, event: str, read: str) -> Samples:
        return self.rows.setdefault((event, read), Samples())


def matcher_on(server: MilvusServer, workdir: Path, name: str) -> ServiceProcess:
    (workdir / "milvus-token").write_text(server.token)
    process = ServiceProcess("matcher", workdir, [
        "--milvus-uri", server.uri, "--collection", COLLECTION,
        "--milvus-token-file", str(workdir / "milvus-token")], dict(os.environ))
    process.log_path = workdir / f"matcher-{name}.log"
    process.start()
    return process


def until(probe: Probe, wanted: bool, deadline: float) -> float | None:
    """Probe until it returns `wanted`; the end time of that probe, None after `deadline`."""
    while time.perf_counter() < deadline:
        if probe() == wanted:
            return time.perf_counter()
        time.sleep(PACE)
    return None


def watch(action: Callable[[], object], probes: dict[str, Probe], after: float, results: Results,
          identify: str = "") -> tuple[float, float, dict[str, float]]:
    """Run `probes` in threads around `action`; (request time, acknowledgement time, start of
    each probe's last positive)."""
    stop = threading.Event()
    last: dict[str, float] = {}

    def loop(name: str, probe: Probe) -> None:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                positive = probe()
            except grpc.RpcError as exc:
                results.errors[f"{name}: {exc.code().name}"] += 1
                positive = False
            if positive:
                last[name] = started
            if name == identify:
                results.identify_ms.append((time.perf_counter() - started) * 1000)
            time.sleep(PACE)

    threads = [threading.Thread(target=loop, args=item, daemon=True) for item in probes.items()]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    sent = time.perf_counter()
    action()
    acked = time.perf_counter()
    while True:
        now, latest = time.perf_counter(), max(last.values(), default=0.0)
        if now >= max(acked, latest) + after or now >= acked + 10 * after:
            break
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join()
    return sent, acked, last


class Trial:
    """One person: enrolled on A, then groups revoked, moved and deleted on A; B probed."""

    def __init__(self, a: matcher_pb2_grpc.MatcherStub, b: matcher_pb2_grpc.MatcherStub, seed: int,
                 phase: str, after: float, results: Results) -> None:
        self.a, self.b, self.phase, self.after, self.results = a, b, phase, after, results
        self.person = f"{phase}-person-{seed}"
        self.face = unit(seed)

    # what B returns about the person
    def found(self, site: str) -> bool:
        reply = self.b.Identify(matcher_pb2.IdentifyRequest(probes=[emb(self.face)], top_k=5, site=site), timeout=10)
        return any(c.identity_id == self.person for c in reply.results[0].candidates)

    def record(self) -> matcher_pb2.Identity | None:
        try:
            return self.b.GetIdentity(matcher_pb2.GetIdentityRequest(identity_id=self.person), timeout=10)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
            return None

    def in_group(self) -> bool:
        record = self.record()
        return record is not None and "staff" in record.groups

    def verified(self) -> bool:
        try:
            self.b.Verify(matcher_pb2.VerifyRequest(identity_id=self.person, probe=emb(self.face)), timeout=10)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
            return False
        return True

    def run(self) -> None:
        if not self.enrol():
            return
        self.remove("groups revoked", lambda: self.a.Enroll(matcher_pb2.EnrollRequest(
            identity_id=self.person, mode=common_pb2.ENROLL_MODE_UPDATE_DETAILS, replace_groups=True), timeout=30),
            {"GetIdentity groups": self.in_group})
        self.remove("moved (old site's templates removed)", lambda: self.a.Enroll(matcher_pb2.EnrollRequest(
            identity_id=self.person, site="lab", mode=common_pb2.ENROLL_MODE_UPDATE_DETAILS), timeout=30),
            {"Identify at the old site": lambda: self.found("hq"),
             "GetIdentity site": lambda: getattr(self.record(), "site", "") == "hq"})
        self.remove("deleted (DeleteIdentity = erasure)", lambda: self.a.DeleteIdentity(
            matcher_pb2.DeleteIdentityRequest(identity_id=self.person), timeout=30),
            {"Identify": lambda: self.found(""), "Verify": self.verified,
             "GetIdentity": lambda: self.record() is not None})

    def enrol(self) -> bool:
        samples = self.results.row("enrolled (CREATE)", "Identify: first found")
        sent = time.perf_counter()
        self.a.Enroll(matcher_pb2.EnrollRequest(identity_id=self.person, site="hq", groups=["staff"],
                                                embeddings=[emb(self.face)]), timeout=30)
        acked = time.perf_counter()
        seen = until(lambda: self.found("hq"), True, acked + DEADLINE)
        samples.calls.append(acked - sent)
        if seen is None:
            samples.lost += 1
            return False
        samples.windows.append(seen - acked)
        samples.from_request.append(seen - sent)
        return True

    def remove(self, event: str, action: Callable[[], object], probes: dict[str, Probe]) -> None:
        deadline = time.perf_counter() + DEADLINE
        for name, probe in probes.items():  # B shows what is about to be removed
            if until(probe, True, deadline) is None:
                self.results.errors[f"{event}: B never showed {name} before the removal"] += 1
                return
        sent, acked, last = watch(action, probes, self.after, self.results,
                                  identify=next((n for n in probes if n.startswith("Identify")), ""))
        for name in probes:
            samples = self.results.row(event, name)
            samples.calls.append(acked - sent)
            at = last.get(name)
            samples.windows.append(max(0.0, at - acked) if at is not None else 0.0)
            samples.from_request.append(max(0.0, at - sent) if at is not None else 0.0)
            samples.late += at is not None and at > acked


def write_load(stub: matcher_pb2_grpc.MatcherStub, stop: threading.Event, results: Results) -> None:
    """Other people enrolled and deleted on C, a write every LOAD_PACE seconds."""
    previous = ""
    for j in range(10**9):
        if stop.is_set():
            break
        person = f"load-{j}"
        try:
            stub.Enroll(matcher_pb2.EnrollRequest(identity_id=person, embeddings=[emb(unit(500_000 + j))]), timeout=30)
            time.sleep(LOAD_PACE)
            if previous:
                stub.DeleteIdentity(matcher_pb2.DeleteIdentityRequest(identity_id=previous), timeout=30)
        except grpc.RpcError as exc:
            results.errors[f"load: {exc.code().name}"] += 1
        previous = person
        time.sleep(LOAD_PACE)


def ms(samples: list[float], scale: float = 1000.0) -> str:
    if not samples:
        return "-"
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered) * scale:.0f} / {p95 * scale:.0f} / {ordered[-1] * scale:.0f}"


def table(phase: str, results: Results, trials: int) -> None:
    print(f"\n{phase}: {trials} trials; Identify on B while probing: p50 / p95 "
          f"{ms(results.identify_ms, 1.0)} ms (p50 / p95 / max)")
    print("| on A | read on B | trials with a positive after A's ack | window after ack ms p50 / p95 / max "
          "| after request ms p50 / p95 / max | A's call ms p50 / p95 / max |")
    print("|---|---|---|---|---|---|")
    for (event, read), samples in results.rows.items():
        late = "-" if event.startswith("enrolled") else f"{samples.late} / {len(samples.windows)}"
        lost = f" ({samples.lost} never seen)" if samples.lost else ""
        print(f"| {event} | {read} | {late}{lost} | {ms(samples.windows)} | {ms(samples.from_request)} | "
              f"{ms(samples.calls)} |")
    for error, count in results.errors.most_common():
        print(f"  {count} x {error}")


def read_costs(server: MilvusServer, reads: int) -> None:
    """Search the templates and get a person's row at each consistency level, one client."""
    from pymilvus import MilvusClient

    client = MilvusClient(server.uri, token=server.token)
    probe = [unit(1).tolist()]
    person = client.query(f"{COLLECTION}_identities", filter='identity_id != ""', output_fields=["identity_id"],
                          limit=1, consistency_level="Strong")[0]["identity_id"]
    print(f"\nRead cost by Milvus consistency level (one pymilvus client in this process, {reads} reads each; "
          "the matcher reads Session):")
    print("| consistency | template search (limit 64) ms p50 / p95 / max | identity get ms p50 / p95 / max |")
    print("|---|---|---|")
    for level in ("Session", "Bounded", "Strong"):
        searches, gets = [], []
        for _ in range(reads):
            started = time.perf_counter()
            client.search(f"{COLLECTION}_templates", probe, limit=64, filter='model_key == "dlib-resnet-v1@1.0"',
                          output_fields=["identity_id"], search_params={"metric_type": "COSINE"},
                          consistency_level=level)
            searches.append(time.perf_counter() - started)
            started = time.perf_counter()
            client.get(f"{COLLECTION}_identities", ids=[person], output_fields=["groups"], consistency_level=level)
            gets.append(time.perf_counter() - started)
        print(f"| {level} | {ms(searches)} | {ms(gets)} |")
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=50, help="people per phase")
    parser.add_argument("--after", type=float, default=1.0,
                        help="seconds to keep probing after A's acknowledgement (and after a late positive)")
    parser.add_argument("--reads", type=int, default=100, help="reads per consistency level")
    args = parser.parse_args()
    if not in_private_network():
        raise SystemExit("run inside the private network namespace: tools/private_net.sh .venv/bin/python "
                         "bench/matchers_bench.py (the Milvus server listens on every interface)")
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; Milvus 2.3.5 "
          f"standalone server and 3 matchers (A writes, B is read, C writes the load), all on this machine")
    pki = default_pki()
    with tempfile.TemporaryDirectory() as tmp, MilvusServer(Path(tmp) / "milvus-server") as server:
        matchers = [matcher_on(server, Path(tmp), name) for name in "abc"]
        try:
            for matcher in matchers:
                matcher.wait_serving(time.monotonic() + 120)
            a, b, c = (matcher_pb2_grpc.MatcherStub(blocking_channel(m.address, pki.service("harness")))
                       for m in matchers)
            for phase, loaded in (("idle", False), ("write load", True)):
                results, stop = Results(), threading.Event()
                load = threading.Thread(target=write_load, args=(c, stop, results), daemon=True)
                if loaded:
                    load.start()
                for i in range(args.trials):
                    Trial(a, b, 1000 * (1 + loaded) + i, phase.replace(" ", "-"), args.after, results).run()
                stop.set()
                if loaded:
                    load.join()
                table(phase, results, args.trials)
            read_costs(server, args.reads)
        finally:
            for matcher in matchers:
                matcher.stop()


if __name__ == "__main__":
    main()
