"""The camera-frame path before/after, in one run: decodes per frame, copies per crop, decision latency.

    python bench/frame_path_bench.py [--before REV] [--after REV] [--seconds 30] [--count-seconds 12]

"before" is a git revision (default 7999a55), checked out into a temporary `git worktree` that
is removed at the end; "after" is the working tree this script is in, or `--after REV` (another
temporary worktree: `--before X --after X` checks the bench itself, both sides must agree).
Module paths differ between trees, so nothing here imports FaceGate: each tree runs its own
`bench/doors_bench.py` (one door at 5 fps; four services on 127.0.0.1) as a subprocess with
cwd and PYTHONPATH set to that tree, which takes precedence over the venv's editable install
(checked before anything runs). Per tree, two runs:

1. latency (`--seconds`, default 30): doors_bench's decision latency p50/p95 (a decision's
   arrival minus the send time of its frame) and decisions per visit, as doors_bench prints them;
2. counting (`--count-seconds`, default 12; a profile hook slows the processes, so it is a
   separate, shorter run): the same doors_bench with `bench/frame_path_counter` first on
   PYTHONPATH, whose sitecustomize counts image decodes and pixel copies in every process and
   writes them per process at exit. Its docstring lists exactly what is counted. The camera
   side (the doors_bench process itself) is left out of the tables.

Reported per tree: decodes per frame (gateway frames: `_process` runs once per frame it takes
from the door's queue), crop copies per crop embedded (bytes of crop-sized copies / crop size /
rows the embedder's model embedded), frame copies per frame, latency p50/p95, decisions/visits.
Copies the hook cannot see are in neither tree's numbers: those inside gRPC, TensorFlow or OpenCV
C code, and protobuf's (with the upb runtime, building a message, assigning a bytes field and
reading one -- every `message.data` is a fresh copy -- all copy in C). With the defaults the
whole run takes about 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
COUNTER_DIR = HERE / "frame_path_counter"
SERVICES = ("gateway", "detector", "embedder", "matcher")  # table order; other processes are the camera side


@dataclass
class Latency:
    p50_ms: float = math.nan
    p95_ms: float = math.nan
    decisions_visits: str = "n/a"
    row: str = ""


@dataclass
class Counts:
    """The per-process JSON files of one counting run."""

    processes: dict[str, dict] = field(default_factory=dict)  # service name -> its report
    crop_bytes: int = 150 * 150 * 3
    frame_bytes: int = 640 * 480 * 3

    @property
    def frames(self) -> int:
        return sum(p.get("frames", 0) for p in self.processes.values())

    @property
    def crops(self) -> int:
        return sum(p.get("crops_embedded", 0) for p in self.processes.values())

    @property
    def crops_cut(self) -> int:
        """Aligned crops the detector made (embedded or not: a decided track's faces are not)."""
        return sum(p.get("calls", {}).get("cv2.warpAffine", 0) for p in self.processes.values())

    def decodes(self, name: str) -> int:
        return sum(self.processes.get(name, {}).get("decodes", {}).values())

    def copied(self, name: str, kind: str) -> int:
        """Bytes of `kind` ("crop_bytes" or "frame_bytes") copies in one process."""
        return sum(c[kind] for c in self.processes.get(name, {}).get("copies", {}).values())


@dataclass
class Side:
    label: str  # "before" / "after"
    rev: str  # what the tree is: a short hash, or the working tree's HEAD (+ uncommitted changes)
    tree: Path
    latency: Latency = field(default_factory=Latency)
    counts: Counts = field(default_factory=Counts)
    errors: list[str] = field(default_factory=list)


@contextlib.contextmanager
def worktree(repo: Path, rev: str) -> Iterator[Path]:
    """A detached temporary worktree of `rev`, removed on exit even after a failure."""
    parent = Path(tempfile.mkdtemp(prefix="facegate-frame-path-"))
    path = parent / "tree"
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(path), rev],
                   check=True, capture_output=True, text=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(path)],
                       capture_output=True, text=True)
        with contextlib.suppress(OSError):
            parent.rmdir()


def describe(repo: Path, rev: str | None) -> str:
    """`rev` as its short hash, or the working tree's HEAD and whether it has uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout
    if rev is not None:
        return git("rev-parse", "--short", f"{rev}^{{commit}}").strip()
    dirty = " + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no").strip() else ""
    return f"working tree at {git('rev-parse', '--short', 'HEAD').strip()}{dirty}"


def tree_env(tree: Path, count_dir: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FACEGATE_COUNT_DIR")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["PYTHONPATH"] = str(tree)
    if count_dir is not None:
        env["PYTHONPATH"] = f"{COUNTER_DIR}{os.pathsep}{tree}"
        env["FACEGATE_COUNT_DIR"] = str(count_dir)
    return env


def check_imports(tree: Path) -> None:
    """`services`/`facegate` must come from `tree` (not the editable install), and in counting
    runs `sitecustomize` from the counter (the venv has none of its own to shadow)."""
    probe = ("import services, facegate, sitecustomize; "
             "print(services.__file__, facegate.__file__, sitecustomize.__file__)")
    with tempfile.TemporaryDirectory() as count_dir:
        out = subprocess.run([sys.executable, "-c", probe], cwd=tree, env=tree_env(tree, Path(count_dir)),
                             capture_output=True, text=True, check=True).stdout.split()
    services, facegate, site = (Path(p).resolve() for p in out)
    if not (services.is_relative_to(tree.resolve()) and facegate.is_relative_to(tree.resolve())):
        raise RuntimeError(f"imports in {tree} resolve elsewhere: services={services} facegate={facegate}")
    if site.parent != COUNTER_DIR:
        raise RuntimeError(f"sitecustomize resolves to {site}, not the counter in {COUNTER_DIR}")


def doors_bench(tree: Path, seconds: float, fps: float, count_dir: Path | None = None) -> str:
    """Run the tree's own doors_bench for one door; its stdout."""
    command = [sys.executable, "bench/doors_bench.py", "--doors", "1", "--seconds", f"{seconds:g}",
               "--fps", f"{fps:g}"]
    # Its own session, so a timeout or Ctrl-C ends the services it started too (they share its
    # group); its own TMPDIR, so what a killed run leaves behind (the stack's workdir) goes as well.
    with tempfile.TemporaryDirectory(prefix="facegate-frame-path-run-") as tmp:
        process = subprocess.Popen(command, cwd=tree, env={**tree_env(tree, count_dir), "TMPDIR": tmp},
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            stdout, stderr = process.communicate(timeout=seconds + 300)
        except BaseException:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
    if process.returncode != 0:
        raise RuntimeError(f"doors_bench in {tree} exited {process.returncode}:\n{stderr[-2000:]}")
    return stdout


def parse_latency(stdout: str) -> Latency:
    """doors_bench's table: the header names the columns, the one data row starts with `| 1 |`."""
    lines = [line for line in stdout.splitlines() if line.startswith("|")]
    header = next(line for line in lines if line.startswith("| doors"))
    row = next(line for line in lines if line.startswith("| 1 |"))
    # zip stops at the header's last column: doors_bench may append " errors: ..." after the row
    names, values = [c.strip() for c in header.strip("|").split("|")], [c.strip() for c in row.split("|")[1:]]
    cells = dict(zip(names, values[: len(names)], strict=True))
    p50 = next(v for k, v in cells.items() if "p50" in k)
    p95 = next(v for k, v in cells.items() if "p95" in k)
    return Latency(float(p50), float(p95), next(v for k, v in cells.items() if k.startswith("decisions")), row)


def read_counts(count_dir: Path) -> Counts:
    counts = Counts()
    for path in sorted(count_dir.glob("*.json")):
        report = json.loads(path.read_text())
        counts.crop_bytes, counts.frame_bytes = report["crop_bytes"], report["frame_bytes"]
        if report["process"] not in SERVICES:
            continue
        if not report.get("final"):
            print(f"warning: {report['process']} did not exit normally; its counts are up to its last flush "
                  "(at most 1 s old)", file=sys.stderr)
        counts.processes[report["process"]] = report
    return counts


def measure(side: Side, seconds: float, count_seconds: float, fps: float) -> None:
    started = time.monotonic()
    try:
        side.latency = parse_latency(doors_bench(side.tree, seconds, fps))
    except Exception as exc:  # one side failing must not lose the other's numbers
        side.errors.append(f"latency run: {exc}")
    with tempfile.TemporaryDirectory(prefix="facegate-counts-") as count_dir:
        try:
            doors_bench(side.tree, count_seconds, fps, Path(count_dir))
            side.counts = read_counts(Path(count_dir))
            if not (side.counts.frames and side.counts.crops):
                side.errors.append(f"counting run: {side.counts.frames} frames, {side.counts.crops} crops counted "
                                   "(no gateway `_process` or embedder `embed` seen? see the counter's docstring)")
        except Exception as exc:
            side.errors.append(f"counting run: {exc}")
    print(f"{side.label} ({side.rev}) measured in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)


def ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}" if denominator else "n/a"


def summary(sides: list[Side]) -> list[str]:
    """The comparison table: one column per side."""
    rows: list[tuple[str, list[str]]] = [
        ("frames processed by the gateway (counting run)", [str(s.counts.frames) for s in sides]),
        ("crops embedded (counting run)", [str(s.counts.crops) for s in sides]),
        ("crops cut (cv2.warpAffine calls, counting run)", [str(s.counts.crops_cut) for s in sides]),
    ]
    present = [n for n in SERVICES if any(n in s.counts.processes for s in sides)]

    def per_process(title: str, value: Callable[[Side, str], float], per: Callable[[Side], int]) -> None:
        shown = [n for n in present if any(value(s, n) for s in sides)]
        for name in shown:
            rows.append((f"{title}: {name}", [ratio(value(s, name), per(s)) for s in sides]))
        rows.append((f"**{title}: total**", [ratio(sum(value(s, n) for n in present), per(s)) for s in sides]))

    per_process("decodes per frame", lambda s, n: s.counts.decodes(n), lambda s: s.counts.frames)
    per_process("crop copies per crop embedded",
                lambda s, n: s.counts.copied(n, "crop_bytes") / s.counts.crop_bytes, lambda s: s.counts.crops)
    per_process("frame copies per frame",
                lambda s, n: s.counts.copied(n, "frame_bytes") / s.counts.frame_bytes, lambda s: s.counts.frames)
    rows += [
        ("**decision latency p50 ms** (latency run)", [f"{s.latency.p50_ms:.0f}" for s in sides]),
        ("**decision latency p95 ms** (latency run)", [f"{s.latency.p95_ms:.0f}" for s in sides]),
        ("decisions / visits (latency run)", [s.latency.decisions_visits for s in sides]),
    ]
    lines = ["| | " + " | ".join(f"{s.label} ({s.rev})" for s in sides) + " |",
             "|---|" + "---|" * len(sides)]
    lines += [f"| {title} | " + " | ".join(values) + " |" for title, values in rows]
    return lines


def details(sides: list[Side]) -> list[str]:
    """Where the counts come from: every counted decode and copy per process, per side."""
    lines = ["| side | process | counted | calls | crop copies per crop | frame copies per frame | other MB |",
             "|---|---|---|---|---|---|---|"]
    for s in sides:
        c = s.counts
        for name in SERVICES:
            report = c.processes.get(name)
            if report is None:
                continue
            for what, n in sorted(report["decodes"].items()):
                lines.append(f"| {s.label} | {name} | decode {what} | {n} | | | |")
            for what, copy in sorted(report["copies"].items()):
                lines.append(f"| {s.label} | {name} | copy {what} | {copy['calls']} | "
                             f"{ratio(copy['crop_bytes'] / c.crop_bytes, c.crops)} | "
                             f"{ratio(copy['frame_bytes'] / c.frame_bytes, c.frames)} | "
                             f"{copy['other_bytes'] / 1e6:.2f} |")
            for what, n in sorted(report["calls"].items()):
                lines.append(f"| {s.label} | {name} | call {what} | {n} | | | |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="7999a55", help="git revision of the 'before' tree")
    parser.add_argument("--after", default=None, help="git revision of the 'after' tree (default: this working tree)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each latency run, s")
    parser.add_argument("--count-seconds", type=float, default=12.0, help="length of each counting run, s")
    parser.add_argument("--fps", type=float, default=5.0, help="camera frames per second")
    args = parser.parse_args()
    repo = Path(subprocess.run(["git", "-C", str(HERE), "rev-parse", "--show-toplevel"], check=True,
                               capture_output=True, text=True).stdout.strip())
    print(f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"command: {shlex.join(['python', *sys.argv])}")
    print(f"one door at {args.fps:g} fps; latency runs of {args.seconds:g} s, counting runs of "
          f"{args.count_seconds:g} s; crop = 150x150x3 bytes, frame = 640x480x3 bytes\n")
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        before = Side("before", describe(repo, args.before), stack.enter_context(worktree(repo, args.before)))
        after_tree = stack.enter_context(worktree(repo, args.after)) if args.after else repo
        after = Side("after", describe(repo, args.after), after_tree)
        sides = [before, after]
        for side in sides:
            check_imports(side.tree)
        for side in sides:
            measure(side, args.seconds, args.count_seconds, args.fps)
    print("\n".join(summary(sides)))
    print()
    print("\n".join(details(sides)))
    print("\nNot counted (invisible to a profile hook): copies in C -- protobuf message construction, bytes-field "
          "writes and reads (upb copies on each), gRPC, TensorFlow's C++ side. Rules: "
          "bench/frame_path_counter/sitecustomize.py.")
    print("\ndoors_bench rows (latency runs): " + "; ".join(f"{s.label}: `{s.latency.row}`" for s in sides))
    print(f"total time {time.monotonic() - started:.0f} s")
    failed = [f"{s.label}: {e}" for s in sides for e in s.errors]
    if failed:
        print("\nerrors:\n" + "\n".join(failed), file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
