"""The asv history hand-off and the output checks of the site builder (no figures drawn)."""

from __future__ import annotations

import importlib.machinery
import sys
import types
from pathlib import Path

import pytest
from taskbench.reports.loader import ReportError
from taskbench.reports.site import ASV_MODULE, check_output, publish_asv


@pytest.fixture
def fake_asv(monkeypatch: pytest.MonkeyPatch):
    """A stand-in for reports.asv_history whose ``publish`` is the test's to set."""
    module = types.ModuleType(ASV_MODULE)
    module.__spec__ = importlib.machinery.ModuleSpec(ASV_MODULE, None)
    monkeypatch.setitem(sys.modules, ASV_MODULE, module)
    return module


def test_publish_writes_into_dir_asv_and_the_page_links_it(fake_asv, tmp_path: Path) -> None:
    calls = []

    def publish(out_dir):
        calls.append(Path(out_dir))
        Path(out_dir).mkdir(parents=True)
        (Path(out_dir) / "index.html").write_text("<title>asv</title>")
        return Path(out_dir)

    fake_asv.publish = publish
    link = publish_asv(tmp_path, publish=True)
    assert calls == [tmp_path / "asv"]
    assert link.href == "asv/index.html" and link.note == ""


def test_a_failing_publish_is_a_note_not_a_crash(fake_asv, tmp_path: Path) -> None:
    def publish(out_dir):
        raise RuntimeError("asv publish failed: no results\nmore detail")

    fake_asv.publish = publish
    link = publish_asv(tmp_path, publish=True)
    assert link.href is None
    assert link.note.startswith("asv history not published: RuntimeError: asv publish failed")
    assert "more detail" not in link.note


def test_a_module_without_publish_and_no_publishing_still_link_an_existing_history(
    fake_asv, tmp_path: Path
) -> None:
    assert "has no publish()" in publish_asv(tmp_path, publish=True).note
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
