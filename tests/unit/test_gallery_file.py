"""Gallery export files: sealed with age to recipients or a passphrase, opened only with the key."""

from __future__ import annotations

import stat

import pyrage
import pytest

from facegate.gallery_file import GalleryFileError, is_sealed, keygen, seal, unseal

EXPORT = b'{"identity": {"identity_id": "obama"}, "templates": []}\n'


def test__an_export_sealed_to_a_recipient_opens_with_its_key_only(tmp_path):
    recipient = keygen(tmp_path / "desk.key")
    keygen(tmp_path / "other.key")

    sealed = seal(EXPORT, [recipient], None)

    assert is_sealed(sealed) and EXPORT not in sealed
    assert unseal(sealed, [tmp_path / "desk.key"], None) == EXPORT
    with pytest.raises(GalleryFileError, match="cannot decrypt"):
        unseal(sealed, [tmp_path / "other.key"], None)


def test__a_key_file_is_owner_only_and_names_its_public_key(tmp_path):
    recipient = keygen(tmp_path / "desk.key")

    text = (tmp_path / "desk.key").read_text()
    assert stat.S_IMODE((tmp_path / "desk.key").stat().st_mode) == 0o600
    assert f"# public key: {recipient}" in text and recipient.startswith("age1")
    with pytest.raises(GalleryFileError, match="exists"):
        keygen(tmp_path / "desk.key")


def test__the_age_format_is_standard_so_other_age_tools_read_it(tmp_path):
    recipient = keygen(tmp_path / "desk.key")
    secret = next(line for line in (tmp_path / "desk.key").read_text().splitlines() if line.startswith("AGE-"))

    opened = pyrage.decrypt(seal(EXPORT, [recipient], None), [pyrage.x25519.Identity.from_str(secret)])

    assert opened == EXPORT


def test__an_export_sealed_to_a_passphrase_opens_with_it_only():
    sealed = seal(EXPORT, [], "correct horse battery staple")

    assert unseal(sealed, [], "correct horse battery staple") == EXPORT
    with pytest.raises(GalleryFileError, match="cannot decrypt"):
        unseal(sealed, [], "wrong horse battery staple")


@pytest.mark.parametrize(("recipients", "passphrase", "error"), [
    ([], None, "no recipient and no passphrase"),
    (["age1notakey"], None, "recipient 'age1notakey'"),
    (["alice@example.com"], None, "an age public key"),
    (["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"], None,
     "an age public key"),  # import reads age key files only: an ssh-sealed export could not be opened
    ([], "short", "shorter than 12"),
])
def test__sealing_needs_a_valid_recipient_or_a_real_passphrase(recipients, passphrase, error):
    with pytest.raises(GalleryFileError, match=error):
        seal(EXPORT, recipients, passphrase)


def test__opening_a_sealed_export_without_a_key_says_what_to_give():
    sealed = seal(EXPORT, [str(pyrage.x25519.Identity.generate().to_public())], None)

    with pytest.raises(GalleryFileError, match="give --identity KEY_FILE"):
        unseal(sealed, [], None)
