"""Importing people from a zip: a folder per person, and nothing a zip can do to the console."""

from __future__ import annotations

import io
import zipfile

import pytest

from services.console.people_pages import _file_entries, _import_plan, _zip_entries


def packed(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test__photos_are_grouped_by_their_folder_and_people_csv_gives_the_details():
    details, photos = _import_plan(_zip_entries(packed({
        "alice/1.jpg": b"a1", "alice/2.png": b"a2", "team/bob/1.jpg": b"b1", "notes.txt": b"x", "carol.jpg": b"c",
        "people.csv": b"identity_id,display_name,groups,site\nalice,Alice A,staff;night,hq\n"})))

    assert {person: [name for name, _ in shots] for person, shots in photos.items()} == {
        "alice": ["1.jpg", "2.png"], "bob": ["1.jpg"]}
    assert details["alice"]["display_name"] == "Alice A" and details["alice"]["groups"] == "staff;night"


def test__a_zip_entry_that_inflates_past_its_limit_is_refused_whatever_it_declares():
    with pytest.raises(ValueError, match="more than 20 MiB uncompressed"):
        _import_plan(_zip_entries(packed({"alice/1.jpg": bytes(21 * 2**20)})))  # 21 MiB of zeros: ~20 KB packed


def test__something_that_is_not_a_zip_is_refused_saying_so():
    with pytest.raises(ValueError, match="not a zip file"):
        _import_plan(_zip_entries(b"PK not really"))


def test__a_folder_sent_file_by_file_is_read_like_a_zip():
    details, photos = _import_plan(_file_entries([
        ("staff/alice/1.jpg", b"a1"), ("staff/bob/1.jpg", b"b1"), ("staff/.DS_Store", b"x"),
        ("staff/people.csv", b"identity_id,display_name\nbob,Bob B\n")]))

    assert sorted(photos) == ["alice", "bob"] and details["bob"]["display_name"] == "Bob B"
