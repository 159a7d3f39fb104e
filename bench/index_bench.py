"""Identify latency and recall@1 by gallery size, Milvus backend and index.

    tools/private_net.sh .venv/bin/python bench/index_bench.py [--sizes 1000 10000 100000] [--queries 200]
    (or `make bench-index`; without the private network only the Milvus Lite rows run)

Each configuration gets a fresh gallery of N synthetic people (one unit vector each, bulk
loaded) and answers `--queries` probes one at a time through `Gallery.identify` (top 5 people,
the matcher's own code path, in-process: `bench/services_bench.py` adds gRPC on top). Probes
are gallery vectors plus noise, at a distance of ~0.35 from their person (a genuine face at the
threshold); recall@1 = share of probes whose top identity is the exact nearest one (numpy).

Configurations: Milvus Lite with the matcher's in-memory exact search (the embedded default),
Milvus Lite searching itself (FLAT), and a real Milvus 2.3.5 server (started here, loopback only)
with FLAT, IVF_FLAT and HNSW. Bounded: a fixed number of queries per configuration.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from facegate.harness.milvus_server import MilvusServer, in_private_network  # noqa: E402
from services.matcher.gallery import Gallery, Identity  # noqa: E402

MODEL = "dlib-resnet-v1@1.0"
NOISE = 0.35 / np.sqrt(128)  # per-dimension noise for a ~0.35 distance from the enrolled vector


@dataclass(frozen=True)
class Config:
    backend: str  # "lite" or "server"
    index: str
    search: str  # "memory" or "milvus"
    index_params: dict
    search_params: dict

    def label(self, size: int) -> str:
        params = {**self.index_params, **self.search_params}
        where = "in-memory exact" if self.search == "memory" else self.index
        extra = " ".join(f"{k}={v}" for k, v in params.items())
        return f"Milvus {'Lite' if self.backend == 'lite' else '2.3.5 server'} | {where} {extra}".rstrip()


def configs(size: int) -> list[Config]:
    nlist = int(min(4096, max(16, 4 * np.sqrt(size))))
    return [
        Config("lite", "FLAT", "memory", {}, {}),
        Config("lite", "FLAT", "milvus", {}, {}),
        Config("server", "FLAT", "milvus", {}, {}),
        Config("server", "IVF_FLAT", "milvus", {"nlist": nlist}, {"nprobe": 16}),
        Config("server", "HNSW", "milvus", {"M": 16, "efConstruction": 200}, {"ef": 64}),
    ]


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def wait_indexed(uri: str, token: str, collection: str, rows: int, timeout: float = 600) -> None:
    """Flush and wait until the server's index covers every row (it builds asynchronously)."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri, token=token)
    client.flush(collection)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = client.describe_index(collection, "vector")
        if int(info.get("indexed_rows", 0)) >= rows and int(info.get("pending_index_rows", 0)) == 0:
            return
        time.sleep(1)
    raise TimeoutError(f"index of {collection} not built in {timeout} s")


def measure(config: Config, size: int, queries: int, uri: str, token: str, vectors: np.ndarray,
            probes: np.ndarray, truth: np.ndarray) -> str:
    collection = f"bench_{config.backend}_{config.index}_{config.search}_{size}".lower()
    gallery = Gallery(uri, MODEL, 128, 0.3746, collection, config.index, 0.08, config.search,
                      config.index_params, config.search_params, token=token)
    try:
        started = time.perf_counter()
        gallery.enroll_new([(Identity(f"p{i:06d}"), vectors[i:i + 1]) for i in range(size)], MODEL)
        gallery.flush()
        if config.backend == "server":
            wait_indexed(uri, token, f"{collection}_templates", size)
        load = time.perf_counter() - started
        times, hits = [], 0
        for i in range(queries):
            t = time.perf_counter()
            result = gallery.identify(probes[i:i + 1], 5, "", None, MODEL)[0]
            times.append((time.perf_counter() - t) * 1000)
            hits += bool(result.candidates) and result.candidates[0].identity_id == f"p{truth[i]:06d}"
    finally:
        gallery.close()
    times.sort()
    p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
    return (f"| {config.label(size)} | {size:,} | {statistics.median(times):.1f} | {p99:.1f} | "
            f"{hits / queries:.3f} | {load:.0f} s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--lite-milvus-queries", type=int, default=50,
                        help="queries for Lite's own search (85-290 ms each at 100k)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    largest = max(args.sizes)
    vectors = unit(rng.standard_normal((largest, 128)))
    owners = rng.integers(0, min(args.sizes), args.queries)  # probe people every gallery holds
    probes = unit(vectors[owners] + NOISE * rng.standard_normal((args.queries, 128)))
    server_ok = in_private_network()
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}; "
          f"{args.queries} single-probe queries per row, top 5 identities")
    if not server_ok:
        print("(not in a private network namespace: Milvus server rows skipped; see tools/private_net.sh)")
    print("| backend | search | gallery | p50 ms | p99 ms | recall@1 | load + index |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        server = MilvusServer(Path(tmp) / "milvus-server") if server_ok else None
        if server:
            server.start()
        try:
            for size in args.sizes:
                truth = np.argmax(probes @ vectors[:size].T, axis=1)
                for config in configs(size):
                    if config.backend == "server" and server is None:
                        continue
                    uri = server.uri if config.backend == "server" and server else str(Path(tmp) / f"lite-{size}.db")
                    count = args.lite_milvus_queries if (config.backend, config.search) == ("lite", "milvus") \
                        else args.queries
                    token = server.token if config.backend == "server" and server else ""
                    print(measure(config, size, count, uri, token, vectors[:size], probes, truth), flush=True)
        finally:
            if server:
                server.stop()


if __name__ == "__main__":
    main()
