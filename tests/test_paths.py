"""Confinement of user-given paths to the allowed roots."""

import pytest

from matelix.paths import PathRefused, confine


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "datasets"
    r.mkdir()
    (r / "ok.csv").write_text("text\nx\n")
    return r


def test_relative_path_inside_root_resolves(root):
    assert confine("ok.csv", [root]) == (root / "ok.csv").resolve()


@pytest.mark.parametrize("bad", ["../secret", "../../etc/passwd", "/etc/passwd", "a/../../x", "x\x00.csv",
                                 "a" * 300, "", "   "])
def test_escapes_and_malformed_names_are_refused(root, bad):
    with pytest.raises(PathRefused):
        confine(bad, [root])


def test_symlink_pointing_outside_is_refused(root, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    (root / "link.csv").symlink_to(outside)
    with pytest.raises(PathRefused):
        confine("link.csv", [root])


def test_second_root_is_allowed(root, tmp_path):
    other = tmp_path / "models"
    (other / "m").mkdir(parents=True)
    assert confine(str(other / "m"), [root, other]) == (other / "m").resolve()


def test_tilde_is_not_expanded_to_the_server_users_home(root):
    assert confine("~", [root]) == (root / "~").resolve()
    assert confine("~nosuchuser/x", [root]) == (root / "~nosuchuser" / "x").resolve()


def test_length_is_counted_in_bytes_as_the_file_system_does(root):
    with pytest.raises(PathRefused, match="too long"):
        confine("ä" * 200, [root])  # 200 characters, 400 bytes
    assert confine("ä" * 100, [root]) == (root / ("ä" * 100)).resolve()
