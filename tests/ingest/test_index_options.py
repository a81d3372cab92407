"""Tests for medsearch.ingest.index_options (issue 12, defects 7 and 9): store keys that alias the index folder
and sizes no encoder can use are refused before any work."""

import pytest

from ..conftest import cli_error_line, run_cli


@pytest.mark.parametrize("name", ["..", ".", "!!!", ".hidden", "/"])
def test_names_that_alias_the_folder_are_refused(tmp_path, tiny, folder_dataset, name):
    res = run_cli("index", folder_dataset, "--out", tmp_path / "out", "--model", "tiny", "--name", name, "--quiet")
    cli_error_line(res, "--name")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args,fragment", [
    (["--crop", "100000"], "GiB"),
    (["--crop", "1"], "too small"),
    (["--resize", "0"], "--resize 0 is too small"),
    (["--resize", "64", "--crop", "128"], "larger than --resize"),
    (["--batch-size", "100000", "--crop", "1024"], "--batch-size"),
    (["--commit-every", "nan"], "--commit-every"),
    (["--device", "quantum"], "unknown device"),
])
def test_bad_sizes_are_refused_up_front(tmp_path, folder_dataset, args, fragment):
    res = run_cli("index", folder_dataset, "--out", tmp_path / "out", "--model", "mobilenet-v2", "--random-init",
               "--quiet", *args)
    cli_error_line(res, fragment)
    assert not (tmp_path / "out").exists()
