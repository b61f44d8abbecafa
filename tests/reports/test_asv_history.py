"""The deterministic-suite check against its stored baseline, and the offline asv site.

No timing suite runs here: the check's comparison is fed planted results (copies of the stored
baseline with one metric made worse), and the site tests use the stored baseline as history.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from taskbench.reports import asv_history as ah

ROOT = Path(__file__).resolve().parents[2]
CURRENT = "c0ffee" + "0" * 34  # a commit name that is no commit
WORSE = "deterministic.Simulated.track_makespan_ratio('locality+stealing', 'skewed')"
BETTER = "deterministic.Simulated.track_bytes_per_task('random', 'tree-reduce')"


@pytest.fixture(scope="module")
def project() -> ah.Project:
    return ah.Project.find(ROOT)


@pytest.fixture(scope="module")
def baseline(project) -> dict:
    return json.loads(project.baseline.read_text())


def planted(baseline: dict, changes: dict[str, float | None]) -> dict:
    """A copy of ``baseline`` as the current run, each named metric set to its factor × the
    baseline (None: failed)."""
    doc = copy.deepcopy(baseline)
    doc["commit_hash"] = CURRENT
    doc["env_name"] = "existing-py_somewhere_else_bin_python"  # another machine's env name
    result = doc["result_columns"].index("result")
    names = list(ah.metric_values(baseline))
    for name, factor in changes.items():
        bench = name.split("(", 1)[0]
        index = [n for n in names if n.startswith(bench + "(") or n == bench].index(name)
        values = doc["results"][bench][result]
        values[index] = None if factor is None else values[index] * factor
    return doc


def test_the_baseline_is_stored_complete_and_normalised(project, baseline):
    values = ah.metric_values(baseline)
    assert project.baseline.relative_to(ROOT) == ah.BASELINE
    assert len(values) >= 100
    assert all(name.startswith("deterministic.") for name in values)
    assert all(v is not None and v == v for v in values.values()), "failed or skipped metric"
    assert baseline["env_name"] == ah.ENV_NAME
    assert baseline["params"]["machine"] == ah.MACHINE
    assert values[WORSE] >= 1.0  # a makespan ratio: 1 is perfect


def test_an_unchanged_run_passes_with_a_one_line_summary(project, baseline):
    verdict = ah.compare(project, baseline, planted(baseline, {}))
    assert verdict.ok, verdict.problems
    n = len(ah.metric_values(baseline))
    assert verdict.summary() == (
        f"{n} deterministic metrics, none worse than the baseline (factor {ah.FACTOR:g})"
    )


def test_a_worse_metric_fails_the_check_by_name_and_by_how_much(project, baseline):
    current = planted(baseline, {WORSE: 1.5, BETTER: 0.5})
    verdict = ah.compare(project, baseline, current)
    assert not verdict.ok
    assert len(verdict.problems) == 1, verdict.problems  # the better one is no problem
    (line,) = verdict.problems
    old = ah.metric_values(baseline)[WORSE]
    assert line.startswith(f"{WORSE}: worse: {old:.6g} -> {old * 1.5:.6g}")
    assert "1.5x the baseline" in line


def test_a_change_within_the_factor_passes(project, baseline):
    current = planted(baseline, {WORSE: 1.01})
    assert ah.compare(project, baseline, current, factor=1.02).ok
    assert not ah.compare(project, baseline, current, factor=1.005).ok


def test_failed_missing_new_and_redefined_metrics_fail(project, baseline):
    current = planted(baseline, {WORSE: None})
    version = current["result_columns"].index("version")
    current["results"]["deterministic.Sizeof.track_error_factor"][version] = "2"
    del current["results"]["deterministic.Simulated.track_idle_fraction"]
    verdict = ah.compare(project, baseline, current)
    text = "\n".join(verdict.problems)
    assert f"{WORSE}: failed to run" in text
    assert "deterministic.Sizeof.track_error_factor('object'): not comparable" in text
    assert (
        "deterministic.Simulated.track_idle_fraction('random', 'skewed'): in the baseline" in text
    )
    assert len(verdict.problems) == 1 + 4 + 20  # one failed, 4 kinds, 4 policies × 5 workloads

    reverse = ah.compare(project, current, copy.deepcopy(baseline) | {"commit_hash": CURRENT})
    assert any("but not in the baseline" in line for line in reverse.problems)


def test_the_command_line_check_exits_1_naming_the_metric(project, baseline, tmp_path, capsys,
                                                          monkeypatch):  # fmt: skip
    def fake_run(doc):
        path = tmp_path / "result.json"
        path.write_text(json.dumps(doc))
        return lambda project: path

    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(ah, "run_suite", fake_run(planted(baseline, {WORSE: 2.0})))
    assert ah.main(["check"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("| +") and line.rstrip(" |").endswith(WORSE) for line in out)
    assert out[-2].startswith(f"REGRESSION {WORSE}: worse:")
    assert out[-1] == f"1 of {len(ah.metric_values(baseline))} deterministic metrics fail the check"

    monkeypatch.setattr(ah, "run_suite", fake_run(planted(baseline, {})))
    assert ah.main(["check"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{len(ah.metric_values(baseline))} deterministic metrics, none worse than "
                   f"the baseline (factor {ah.FACTOR:g})"]  # fmt: skip


def test_the_baseline_folder_holds_no_benchmark_module():
    """asv collects Python modules only: the stored JSON must never look like one."""
    folder = ROOT / ah.BASELINE.parent
    assert not list(folder.glob("*.py"))


# ------------------------------------------------------------------------------ the site


def test_every_cdn_url_of_asvs_pages_is_vendored_and_rewritten(tmp_path):
    """asv's own page template: each external load is one of CDN_ASSETS, and none is left."""
    import asv

    template = Path(asv.__file__).parent / "www" / "index.html"
    text = template.read_text()
    loads = {u for u in ah._EXTERNAL.findall(text) if u not in ah.OFFSITE_LINKS}
    assert loads == set(ah.CDN_ASSETS)
    placed = {url: {"path": f"vendor/{i}.js"} for i, url in enumerate(ah.CDN_ASSETS)}
    (tmp_path / "index.html").write_text(ah._localise(text, placed, ""))
    assert ah.external_urls(tmp_path) == []
    page = (tmp_path / "index.html").read_text()
    assert "integrity=" not in page and "crossorigin" not in page
    assert page.count('src="vendor/') + page.count('href="vendor/') == len(ah.CDN_ASSETS)


def test_publish_with_no_results_says_there_is_no_history(tmp_path):
    conf = {"project": "taskbench", "repo": ".", "results_dir": "results", "html_dir": "html"}
    (tmp_path / "asv.conf.json").write_text(json.dumps(conf))
    out = ah.publish(tmp_path / "site", ah.Project.find(tmp_path))
    assert "no asv history yet" in (out / "index.html").read_text()


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm fetches the vendored scripts")
def test_publish_makes_a_site_with_no_external_url(project, baseline, tmp_path):
    """The baseline as the only history (for HEAD), published: every script and style local."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    results = tmp_path / "results"
    (results / ah.MACHINE).mkdir(parents=True)
    (results / ah.MACHINE / "machine.json").write_text('{"machine": "deterministic", "version": 1}')
    (results / ah.MACHINE / f"{head[:8]}-{ah.ENV_NAME}.json").write_text(
        json.dumps(ah.normalised(baseline, head))
    )
    (results / "benchmarks.json").write_text(json.dumps(project.stored_benchmarks()))
    scratch = ah.Project(project.root, {**project.conf, "results_dir": str(results)})
    out = ah.publish(tmp_path / "site", scratch)
    index = (out / "index.html").read_text()
    assert "vendor/jquery-3.3.1/dist/jquery.min.js" in index
    assert ah.external_urls(out) == []
    for info in json.loads((out / "vendor" / "MANIFEST.json").read_text()).values():
        assert (out / info["path"]).is_file()
    assert (out / "vendor/bootstrap-3.1.1/dist/fonts/glyphicons-halflings-regular.woff").is_file()
    assert (out / "graphs").is_dir()
