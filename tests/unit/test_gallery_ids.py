"""Identity ids and labels are checked whole before they reach a Milvus expression."""

from __future__ import annotations

import pytest

from services.core.errors import InvalidArgument
from services.matcher.gallery import check_id, check_label


@pytest.mark.parametrize("value", ["obama\n", "obama\nor 1", "", "x" * 129, 'x" or 1'])
def test__an_identity_id_with_anything_after_its_allowed_characters_is_refused(value):
    with pytest.raises(InvalidArgument, match="identity_id"):
        check_id(value)


def test__a_label_is_checked_whole_too():
    assert check_label("Barack Obama", "display_name") == "Barack Obama"
    with pytest.raises(InvalidArgument, match="display_name"):
        check_label("Obama\n\x1b[31m", "display_name")


@pytest.mark.parametrize("value", [".", "..", "..."])
def test__an_identity_id_of_dots_alone_is_refused_as_it_would_be_a_path_step_in_a_url(value):
    with pytest.raises(InvalidArgument, match="identity_id"):
        check_id(value)


@pytest.mark.parametrize("value", [".alice", "a.b", "alice..", "j.doe@hq"])
def test__dots_within_an_identity_id_are_fine(value):
    check_id(value)
