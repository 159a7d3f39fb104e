"""Gallery export files: JSON lines of identities and templates, encrypted by default.

Templates are biometric data, so an export is sealed with age (the `age-encryption.org/v1`
format, via pyrage): to one or more recipients' public keys (`age1...` from
`facegate gallery keygen`), or to a passphrase (age's scrypt). Not to ssh keys, which age also
takes: `facegate gallery import` reads age key files only. The file opens with the standard
`age` tool too (`age -d -i key.txt export.age`), so a site needs nothing of FaceGate's to read
its own export. Writing plaintext takes an explicit `--plaintext`. Files are written
owner-only and whole (a temp file renamed into place).
"""

from __future__ import annotations

from pathlib import Path

import pyrage

from facegate.certs import write_file

MAGIC = b"age-encryption.org/v1\n"


class GalleryFileError(ValueError):
    """An export cannot be sealed or opened as asked (the message says what to give)."""


def keygen(path: Path) -> str:
    """A new age identity (secret key) written owner-only to `path`; returns its recipient (public key)."""
    if path.exists():
        raise GalleryFileError(f"{path} exists; use it, or choose another file")
    identity = pyrage.x25519.Identity.generate()
    recipient = str(identity.to_public())
    write_file(path, f"# public key: {recipient}\n{identity}\n".encode(), 0o600)
    return recipient


def recipient(text: str) -> pyrage.x25519.Recipient:
    """An age public key (age1..., `facegate gallery keygen`), or GalleryFileError saying what is wrong."""
    if not text.startswith("age1"):
        raise GalleryFileError(f"recipient {text[:80]!r}: an age public key (age1..., from `facegate gallery "
                               "keygen`)")
    try:
        return pyrage.x25519.Recipient.from_str(text)
    except pyrage.RecipientError as exc:
        raise GalleryFileError(f"recipient {text[:80]!r}: {exc}") from None


def check_passphrase(passphrase: str) -> None:
    """A passphrase long enough to seal an export with (age's scrypt does the rest)."""
    if len(passphrase) < 12:
        raise GalleryFileError("the passphrase is shorter than 12 characters")


def seal(data: bytes, recipients: list[str], passphrase: str | None) -> bytes:
    """`data` encrypted to every recipient, or to the passphrase (age allows one or the other)."""
    if recipients and passphrase is not None:
        raise GalleryFileError("a passphrase or recipients, not both (age seals to one or the other)")
    if passphrase is not None:
        check_passphrase(passphrase)
        return bytes(pyrage.passphrase.encrypt(data, passphrase))
    if not recipients:
        raise GalleryFileError("no recipient and no passphrase to seal to")
    return bytes(pyrage.encrypt(data, [recipient(r) for r in recipients]))


def is_sealed(data: bytes) -> bool:
    return data.startswith(MAGIC)


def unseal(data: bytes, identity_files: list[Path], passphrase: str | None) -> bytes:
    """The plaintext of a sealed export, with one of the identities (key files) or the passphrase."""
    try:
        if passphrase is not None:
            return bytes(pyrage.passphrase.decrypt(data, passphrase))
        if not identity_files:
            raise GalleryFileError("the file is encrypted: give --identity KEY_FILE (its recipient's secret key) "
                                   "or --passphrase-file")
        identities = [_identity(path) for path in identity_files]
        return bytes(pyrage.decrypt(data, identities))
    except pyrage.DecryptError as exc:
        raise GalleryFileError(f"cannot decrypt ({exc}): a wrong key or passphrase, or a damaged file") from None


def _identity(path: Path) -> pyrage.x25519.Identity:
    try:
        lines = [line.strip() for line in path.read_text().splitlines()]
    except OSError as exc:
        raise GalleryFileError(f"{path}: cannot read ({exc.strerror})") from exc
    keys = [line for line in lines if line.startswith("AGE-SECRET-KEY-")]
    if len(keys) != 1:
        raise GalleryFileError(f"{path}: not an age identity file (one AGE-SECRET-KEY-... line)")
    try:
        return pyrage.x25519.Identity.from_str(keys[0])
    except pyrage.IdentityError as exc:
        raise GalleryFileError(f"{path}: {exc}") from None
