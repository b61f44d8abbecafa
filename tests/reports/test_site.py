"""The asv history hand-off and the output checks of the site builder (no figures drawn)."""

from __future__ import annotations

from pathlib import Path

import pytest
from taskbench.reports.loader import ReportError
from taskbench.reports.site import check_output, publish_asv


def test_publish_writes_into_dir_asv_and_the_page_links_it(tmp_path: Path) -> None:
    calls = []

    def publish(out_dir):
        calls.append(Path(out_dir))
        Path(out_dir).mkdir(parents=True)
        (Path(out_dir) / "index.html").write_text("<title>asv</title>")

    link = publish_asv(tmp_path, publish=True, publisher=publish)
    assert calls == [tmp_path / "asv"]
    assert link.href == "asv/index.html" and link.note == ""


def test_a_failing_publish_is_a_note_not_a_crash(tmp_path: Path) -> None:
    def publish(out_dir):
        raise RuntimeError("asv publish failed: no results\nmore detail")

    link = publish_asv(tmp_path, publish=True, publisher=publish)
    assert link.href is None
    assert link.note.startswith("asv history not published: RuntimeError: asv publish failed")
    assert "more detail" not in link.note


def test_without_publishing_an_existing_history_is_still_linked(tmp_path: Path) -> None:
    assert publish_asv(tmp_path, publish=False).href is None
    (tmp_path / "asv").mkdir()
    (tmp_path / "asv" / "index.html").write_text("<title>asv</title>")
    assert publish_asv(tmp_path, publish=False).href == "asv/index.html"
    assert publish_asv(tmp_path, publish=False).note == ""


def test_output_checks(tmp_path: Path) -> None:
    check_output(tmp_path / "new" / "deeper")  # made later, by build
    (tmp_path / "file").write_text("x")
    with pytest.raises(ReportError, match="is a file, not a folder"):
        check_output(tmp_path / "file")
    with pytest.raises(ReportError, match="is a file, not a folder"):
        check_output(tmp_path / "file" / "site")
