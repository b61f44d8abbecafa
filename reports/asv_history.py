"""asv history: the deterministic suite checked against its stored baseline; an offline site.

``python -m taskbench.reports.asv_history check [--factor F]`` runs the deterministic suite
(``benchmarks/deterministic.py``: no clock, the same value on every machine) with asv under the
fixed machine name ``deterministic``, into the project's results (so ``asv publish`` shows its
history), then has ``asv compare`` set it against the stored baseline
(``benchmarks/baseline/deterministic.json``, an asv results file). Machine and environment names
differ between machines (``--python=same`` names the environment after the interpreter's path),
so both files are copied into a scratch results folder under one machine and one environment
name first. Every metric of that suite is lower-is-better, as ``asv compare`` assumes. It exits
1 with one line per metric that got worse by more than the factor, failed, is not comparable
(its benchmark's ``version`` changed) or has no counterpart; else 0 with a one-line summary.

``python -m taskbench.reports.asv_history baseline`` re-records the baseline from the working
tree, for a deliberate change; commit the file it writes.

``python -m taskbench.reports.asv_history publish OUT`` runs ``asv publish`` into ``OUT`` and
makes the pages work offline: the scripts and styles that asv's pages load from public CDNs
are fetched once per machine from the npm registry (``npm pack``, cached in ``.asv/vendor/``),
copied beside the pages, and the pages point at the copies. No external URL is left in the
published files (it raises if one is). With no asv results yet, ``OUT`` gets a page that says so.

This module reads files and runs asv, git and npm; it imports neither the engine nor asv's
benchmarks (asv itself is imported only where its results are read).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The machine name every deterministic result is recorded and compared under.
MACHINE = "deterministic"
#: asv's ``--bench`` regex that selects the deterministic suite, and only it.
SUITE = r"^deterministic\."
#: The environment name both sides of the comparison are given (asv's differs per machine).
ENV_NAME = "same-python"
#: The commit name the baseline takes in the scratch comparison (not a hash: never a commit).
BASELINE_HASH = "baseline" + "0" * 32
#: Where the baseline lives, relative to the project root (asv collects only .py files there).
BASELINE = Path("benchmarks/baseline/deterministic.json")
#: asv's descriptions (units, parameter names) of the suite's benchmarks, stored beside it.
BASELINE_BENCHMARKS = Path("benchmarks/baseline/benchmarks.json")
#: A metric fails the check when it is more than this many times its baseline value.
FACTOR = 1.02
#: Where the unpacked npm packages are kept, relative to the project root.
VENDOR_CACHE = Path(".asv/vendor")
#: Where the copies go inside the published site.
SITE_VENDOR = "vendor"

#: Every CDN URL asv 0.6.6's pages load -> (npm package, version, file inside the package).
#: flot is on npm unminified only; stupidtable 1.0.1 is not on npm at all: 1.1.3, the one
#: version there, is the same plugin with additions (multi-column sort, settings) only.
CDN_ASSETS: dict[str, tuple[str, str, str]] = {
    "https://code.jquery.com/jquery-3.3.1.min.js": ("jquery", "3.3.1", "dist/jquery.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.min.js": (
        "flot", "0.8.3", "jquery.flot.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.time.min.js": (
        "flot", "0.8.3", "jquery.flot.time.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.selection.min.js": (
        "flot", "0.8.3", "jquery.flot.selection.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.categories.min.js": (
        "flot", "0.8.3", "jquery.flot.categories.js"),
    "https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js": (
        "flot-orderbars", "1.0.0", "js/jquery.flot.orderBars.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js": (
        "stupid-table-plugin", "1.1.3", "stupidtable.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js": (
        "blueimp-md5", "2.19.0", "js/md5.min.js"),
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js": (
        "bootstrap", "3.1.1", "dist/js/bootstrap.min.js"),
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css": (
        "bootstrap", "3.1.1", "dist/css/bootstrap.min.css"),
}  # fmt: skip
#: Files a vendored file loads by relative URL, copied with it (Bootstrap's glyph fonts).
COMPANIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("bootstrap", "3.1.1"): tuple(
        f"dist/fonts/glyphicons-halflings-regular.{ext}" for ext in ("eot", "svg", "ttf", "woff")
    ),
}
#: Links in asv's page chrome that point off the site; they are made plain text.
OFFSITE_LINKS = ("https://github.com/airspeed-velocity/asv/",)
_EXTERNAL = re.compile(r"""(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s"'<>)]*""")


class HistoryError(RuntimeError):
    """Something this module cannot do, said in one line (the CLI prints it and exits 1)."""


# ------------------------------------------------------------------------------ the project


@dataclass(frozen=True)
class Project:
    """The asv project: its root (where ``asv.conf.json`` is) and its folders, absolute."""

    root: Path
    conf: dict[str, Any]

    @classmethod
    def find(cls, start: Path | None = None) -> Project:
        """The nearest folder at or above ``start`` (default: the working folder) holding
        ``asv.conf.json``; else the source tree this module was installed from (editable)."""
        here = (start or Path.cwd()).resolve()
        candidates = [here, *here.parents, Path(__file__).resolve().parent.parent]
        for folder in candidates:
            path = folder / "asv.conf.json"
            if path.is_file():
                return cls(folder, json.loads(path.read_text()))
        raise HistoryError(f"no asv.conf.json at or above {here}")

    def path(self, key: str, default: str) -> Path:
        return (self.root / self.conf.get(key, default)).resolve()

    @property
    def results_dir(self) -> Path:
        return self.path("results_dir", "results")

    @property
    def baseline(self) -> Path:
        return self.root / BASELINE

    def stored_benchmarks(self) -> dict[str, Any] | None:
        """The suite's benchmark descriptions stored with the baseline, if there are any."""
        path = self.root / BASELINE_BENCHMARKS
        return json.loads(path.read_text()) if path.is_file() else None

    def config(self, folder: Path, **overrides: str) -> Path:
        """A copy of the asv configuration in ``folder``, every path absolute, with overrides.

        asv resolves a configuration's paths from the folder it is in, so a copy elsewhere
        needs them absolute.
        """
        conf = dict(self.conf)
        conf["repo"] = str(self.path("repo", "."))
        for key, default in (
            ("benchmark_dir", "benchmarks"),
            ("results_dir", "results"),
            ("html_dir", "html"),
            ("env_dir", "env"),
        ):
            conf[key] = str(self.path(key, default))
        conf.update(overrides)
        path = folder / "asv.conf.json"
        path.write_text(json.dumps(conf, indent=2))
        return path


def asv(
    project: Project,
    *args: str,
    config: Path | None = None,
    capture: bool = False,
    ok: tuple[int, ...] = (0,),
):
    """Run ``asv ARGS`` with this interpreter, from the project root; raise on another exit
    status than ``ok``."""
    cmd = [sys.executable, "-m", "asv", *(["--config", str(config)] if config else []), *args]
    proc = subprocess.run(
        cmd, cwd=project.root, text=True, capture_output=capture, stdin=subprocess.DEVNULL
    )
    if proc.returncode not in ok:
        detail = (proc.stderr or proc.stdout or "").strip().splitlines()[-5:] if capture else []
        raise HistoryError(
            f"`asv {' '.join(args)}` exited {proc.returncode}" + "".join(f"\n  {d}" for d in detail)
        )
    return proc


def head_commit(project: Project) -> str:
    proc = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=project.root, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise HistoryError(f"git rev-parse HEAD failed in {project.root}: {proc.stderr.strip()}")
    return proc.stdout.strip()


# ------------------------------------------------------------------------------ running the suite


def run_suite(project: Project) -> Path:
    """Run the deterministic suite on the working tree under machine ``deterministic``.

    The result is saved in the project's results (as for HEAD, like ``make test``'s timing
    run), so the published history shows it. Returns the results file it wrote.
    """
    asv(project, "machine", "--yes", "--machine", MACHINE, capture=True)
    commit = head_commit(project)
    folder = project.results_dir / MACHINE
    before = {p: p.stat().st_mtime_ns for p in folder.glob(f"{commit[:8]}-*.json")}
    print(f"asv: the deterministic suite ({SUITE}) under machine {MACHINE!r}", flush=True)
    # forkserver: the suite imports once, then each of its ~120 cases is a fork (about 20 s
    # in all; spawning a fresh interpreter per case took 3-4 minutes). No clock is read, so
    # the fresh process a timing needs buys nothing here.
    # exit 2: some benchmark failed; its result is saved as failed, and the check names it
    asv(project, "run", "--python=same", "--show-stderr", "--launch-method", "forkserver",
        "--machine", MACHINE, "--bench", SUITE, "--set-commit-hash", commit, ok=(0, 2))  # fmt: skip
    written = [
        p for p in folder.glob(f"{commit[:8]}-*.json") if before.get(p) != p.stat().st_mtime_ns
    ]
    if len(written) != 1:
        raise HistoryError(f"asv run wrote {len(written)} results files in {folder}, expected 1")
    return written[0]


def normalised(document: dict[str, Any], commit_hash: str | None = None) -> dict[str, Any]:
    """An asv results document under the fixed machine and environment names."""
    out = json.loads(json.dumps(document))
    out["env_name"] = ENV_NAME
    out["python"] = ENV_NAME  # the interpreter's path, different on every machine
    out["params"] = {**out.get("params", {}), "machine": MACHINE, "python": ENV_NAME}
    if commit_hash is not None:
        out["commit_hash"] = commit_hash
    return out


def record_baseline(project: Project) -> Path:
    """Run the suite and store its result as the baseline; returns the baseline's path."""
    current = json.loads(run_suite(project).read_text())
    values = metric_values(current)
    if not values or any(v is None or v != v for v in values.values()):
        bad = sorted(name for name, v in values.items() if v is None or v != v)
        raise HistoryError(f"not recording a baseline with failed or skipped metrics: {bad}")
    listing = json.loads((project.results_dir / "benchmarks.json").read_text())
    suite = {k: v for k, v in listing.items() if k == "version" or re.search(SUITE, k)}
    project.baseline.parent.mkdir(parents=True, exist_ok=True)
    project.baseline.write_text(json.dumps(normalised(current), indent=1, sort_keys=True) + "\n")
    (project.root / BASELINE_BENCHMARKS).write_text(
        json.dumps(suite, indent=1, sort_keys=True) + "\n"
    )
    return project.baseline


# ------------------------------------------------------------------------------ comparing


def metric_values(document: dict[str, Any]) -> dict[str, float | None]:
    """``{"bench(param, ...)": value}`` from an asv results document, as asv unrolls them.

    None is a failed benchmark, NaN a skipped one.
    """
    from asv.commands.compare import unroll_result
    from asv.results import Results

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / MACHINE / "result.json"
        path.parent.mkdir()
        path.write_text(json.dumps(document))
        result = Results.load(str(path))
    out: dict[str, float | None] = {}
    for key in result.get_all_result_keys():
        params = result.get_result_params(key)
        for name, value in unroll_result(key, params, result.get_result_value(key, params)):
            out[name] = value
    return out


def _benchmarks_json(document: dict[str, Any]) -> dict[str, Any]:
    """A minimal ``benchmarks.json`` for the benchmarks of ``document`` (no units), for when
    none is stored."""
    from asv.results import Results

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / MACHINE / "result.json"
        path.parent.mkdir()
        path.write_text(json.dumps(document))
        result = Results.load(str(path))
    out: dict[str, Any] = {"version": 2}
    for key in result.get_all_result_keys():
        params = result.get_result_params(key)
        out[key] = {"name": key, "params": params, "type": "track", "unit": "unit",
                    "param_names": [f"param{i + 1}" for i in range(len(params))],
                    "version": result.benchmark_version.get(key)}  # fmt: skip
    return out


@dataclass
class Verdict:
    """The comparison's outcome: one line per problem, and how many metrics were compared."""

    problems: list[str]
    metrics: int
    factor: float
    table: str

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            return (
                f"{self.metrics} deterministic metrics, none worse than the baseline "
                f"(factor {self.factor:g})"
            )
        return f"{len(self.problems)} of {self.metrics} deterministic metrics fail the check"


def _units(benchmarks: dict[str, Any]) -> dict[str, str]:
    return {k: v.get("unit") or "" for k, v in benchmarks.items() if isinstance(v, dict)}


def _base_name(metric: str) -> str:
    return metric.split("(", 1)[0]


def compare(
    project: Project,
    baseline: dict[str, Any],
    current: dict[str, Any],
    *,
    factor: float = FACTOR,
    benchmarks: dict[str, Any] | None = None,
) -> Verdict:
    """Set ``current`` against ``baseline`` (asv results documents) with ``asv compare``.

    Both go into a scratch results folder under machine ``deterministic`` and environment
    ``same-python``; the baseline under the commit name ``baseline0…``. ``benchmarks`` is the
    ``benchmarks.json`` to use (units, parameter names); by default the one stored with the
    baseline.
    """
    current_hash = current["commit_hash"]
    if current_hash[:8] == BASELINE_HASH[:8]:
        raise HistoryError("the current result carries the baseline's commit name")
    benchmarks = benchmarks or project.stored_benchmarks() or _benchmarks_json(current)
    with tempfile.TemporaryDirectory(prefix="taskbench-asv-compare-") as tmp:
        scratch = Path(tmp)
        results = scratch / "results"
        machine_dir = results / MACHINE
        machine_dir.mkdir(parents=True)
        (results / "benchmarks.json").write_text(json.dumps(benchmarks))
        (machine_dir / "machine.json").write_text(json.dumps({"machine": MACHINE, "version": 1}))
        for doc, commit in ((baseline, BASELINE_HASH), (current, current_hash)):
            (machine_dir / f"{commit[:8]}-{ENV_NAME}.json").write_text(
                json.dumps(normalised(doc, commit))
            )
        config = project.config(scratch, results_dir=str(results), html_dir=str(scratch / "html"))
        proc = asv(project, "compare", "--split", "--no-stats", "--factor", repr(factor),
                   "--machine", MACHINE, BASELINE_HASH, current_hash,
                   config=config, capture=True)  # fmt: skip
    table = proc.stdout
    marks = _marks(table)
    before, after = metric_values(baseline), metric_values(current)
    units = _units(benchmarks)
    problems = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        unit = units.get(_base_name(name), "")
        mark = marks.get(name)
        if name not in after or _isnan(new):
            problems.append(
                f"{name}: in the baseline ({_fmt(old)} {unit}) but not measured now; "
                "removed or skipped? re-record the baseline if that is meant"
            )
        elif name not in before or _isnan(old):
            problems.append(
                f"{name}: measured ({_fmt(new)} {unit}) but not in the baseline; "
                "re-record the baseline to guard it"
            )
        elif new is None:
            problems.append(f"{name}: failed to run (baseline {_fmt(old)} {unit})")
        elif mark == "x":
            problems.append(
                f"{name}: not comparable: its benchmark's version changed since the baseline; "
                "re-record the baseline"
            )
        elif mark == "+":
            problems.append(
                f"{name}: worse: {old:.6g} -> {new:.6g} {unit} "
                f"({new / old:.3g}x the baseline, factor {factor:g}; lower is better)"
            )
        elif mark is None:
            raise HistoryError(f"asv compare did not list {name}:\n{table}")
    return Verdict(problems, len(after), factor, table)


def _fmt(value: float | None) -> str:
    return "failed" if value is None else f"{value:.6g}"


def _isnan(value: float | None) -> bool:
    return value is not None and value != value


def _marks(table: str) -> dict[str, str]:
    """``{metric: change mark}`` from ``asv compare``'s GitHub-style tables.

    asv's marks: ``+`` worse, ``-`` better, ``!`` newly failing, ``*`` fixed, ``x`` not
    comparable, blank the same (or n/a).
    """
    out = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 5 or cells[0] == "Change" or re.fullmatch(r":?-{3,}:?", cells[0]):
            continue  # not a table row, the header, or the rule under it
        out[cells[-1]] = cells[0]
    return out


def check(project: Project, *, factor: float = FACTOR) -> Verdict:
    """Run the suite on the working tree and compare it with the stored baseline."""
    if not project.baseline.is_file():
        raise HistoryError(
            f"no baseline at {BASELINE}: record one with "
            "`python -m taskbench.reports.asv_history baseline`"
        )
    baseline = json.loads(project.baseline.read_text())
    current = json.loads(run_suite(project).read_text())
    listing = project.results_dir / "benchmarks.json"
    benchmarks = json.loads(listing.read_text()) if listing.is_file() else None
    return compare(project, baseline, current, factor=factor, benchmarks=benchmarks)


# ------------------------------------------------------------------------------ publishing


def _has_results(results_dir: Path) -> bool:
    if not (results_dir / "benchmarks.json").is_file():
        return False
    return any(
        p.name not in ("machine.json", "benchmarks.json") for p in results_dir.glob("*/*.json")
    )


def vendor_package(project: Project, package: str, version: str) -> Path:
    """The unpacked npm package ``package@version`` (its ``package/`` folder), fetched once."""
    folder = project.root / VENDOR_CACHE / f"{package}-{version}"
    unpacked = folder / "package"
    if (folder / ".complete").is_file():
        return unpacked
    npm = shutil.which("npm")
    if npm is None:
        raise HistoryError("npm is not installed: it fetches the scripts asv's pages need")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="taskbench-npm-") as tmp:
        proc = subprocess.run(
            [npm, "pack", f"{package}@{version}", "--pack-destination", tmp, "--silent"],
            cwd=tmp, capture_output=True, text=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        tarballs = list(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or len(tarballs) != 1:
            raise HistoryError(f"npm pack {package}@{version} failed: {proc.stderr.strip()[-500:]}")
        with tarfile.open(tarballs[0]) as tar:
            tar.extractall(folder, filter="data")
    if not unpacked.is_dir():
        raise HistoryError(f"npm package {package}@{version} has no package/ folder")
    (folder / ".complete").write_text(f"{package}@{version}\n")
    return unpacked


def _sri_matches(data: bytes, integrity: str | None) -> bool | None:
    """Whether ``data`` has the Subresource Integrity hash the page names (None: no hash)."""
    if not integrity:
        return None
    algo, _, digest = integrity.partition("-")
    if algo not in ("sha256", "sha384", "sha512"):
        return None
    return base64.b64encode(hashlib.new(algo, data).digest()).decode() == digest


def vendor_assets(project: Project, site: Path) -> dict[str, dict[str, Any]]:
    """Copy every CDN asset into ``site/vendor/``; returns ``{cdn url: {"path", "sri"}}``."""
    index = (site / "index.html").read_text() if (site / "index.html").is_file() else ""
    placed: dict[str, dict[str, Any]] = {}
    for url, (package, version, inner) in CDN_ASSETS.items():
        source = vendor_package(project, package, version)
        rel = Path(SITE_VENDOR) / f"{package}-{version}" / inner
        for name in (inner, *COMPANIONS.get((package, version), ())):
            target = site / SITE_VENDOR / f"{package}-{version}" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if not (source / name).is_file():
                raise HistoryError(f"npm package {package}@{version} has no {name}")
            shutil.copyfile(source / name, target)
        tag = re.search(rf"<[^>]*{re.escape(url)}[^>]*>", index)
        integrity = re.search(r'integrity="([^"]+)"', tag.group(0)) if tag else None
        data = (site / rel).read_bytes()
        placed[url] = {
            "path": rel.as_posix(),
            "package": f"{package}@{version}",
            "sri": _sri_matches(data, integrity.group(1) if integrity else None),
        }
    return placed


def _localise(text: str, placed: dict[str, dict[str, Any]], prefix: str) -> str:
    """Point every tag that loads a CDN asset at its copy, dropping the attributes that only
    a CDN load needs (integrity, crossorigin, referrerpolicy: with them a browser refuses a
    page opened from disk)."""

    def tag(match: re.Match) -> str:
        text = match.group(0)
        for url, info in placed.items():
            if url in text:
                text = text.replace(url, prefix + info["path"])
                text = re.sub(r'\s+(integrity|crossorigin|referrerpolicy)="[^"]*"', "", text)
        return text

    text = re.sub(r"<(?:script|link)\b[^>]*>", tag, text)
    for link in OFFSITE_LINKS:
        text = re.sub(
            rf'<a\s[^>]*href="{re.escape(link)}"[^>]*>(.*?)</a>', r"<span>\1</span>", text,
            flags=re.S,
        )  # fmt: skip
    return text


def external_urls(site: Path) -> list[str]:
    """``path: url`` for every external URL left in the site's HTML, CSS and JS."""
    found = []
    for path in sorted(site.rglob("*")):
        if path.suffix not in (".html", ".css", ".js", ".json") or not path.is_file():
            continue
        if SITE_VENDOR in path.relative_to(site).parts[:1]:
            continue  # the libraries' own licence comments and docs links load nothing
        text = path.read_text(errors="replace")
        for match in _EXTERNAL.finditer(text):
            found.append(f"{path.relative_to(site)}: {match.group(0)}")
    return found


def _vendored_loads(site: Path) -> list[str]:
    """URLs the vendored CSS loads (``url(...)``/``@import``) that are not local files."""
    bad = []
    for css in (site / SITE_VENDOR).rglob("*.css"):
        for ref in re.findall(r"url\(([^)]+)\)|@import\s+['\"]([^'\"]+)", css.read_text()):
            target = (ref[0] or ref[1]).strip("'\" ").split("?")[0].split("#")[0]
            if target.startswith("data:"):
                continue
            if _EXTERNAL.match(target) or not (css.parent / target).resolve().is_file():
                bad.append(f"{css.relative_to(site)}: {target}")
    return bad


NO_HISTORY = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{project} benchmarks</title></head>
<body><h1>{project}: no asv history yet</h1>
<p>There are no asv results in <code>{results}</code>. <code>make test</code> records some
(the timing suites and the deterministic suite), or run
<code>asv run --python=same --quick --set-commit-hash $(git rev-parse HEAD)</code>,
then publish again.</p></body></html>
"""


def publish(out_dir: Path | str, project: Project | None = None) -> Path:
    """``asv publish`` into ``out_dir``, made to work offline; returns ``out_dir``.

    With no asv results yet, ``out_dir/index.html`` says so instead.
    """
    project = project or Project.find()
    out = Path(out_dir).resolve()
    if not _has_results(project.results_dir):
        out.mkdir(parents=True, exist_ok=True)
        (out / "index.html").write_text(
            NO_HISTORY.format(
                project=html.escape(str(project.conf.get("project", "asv"))),
                results=html.escape(str(project.results_dir)),
            )
        )
        print(f"no asv results in {project.results_dir}: {out / 'index.html'} says so")
        return out
    with tempfile.TemporaryDirectory(prefix="taskbench-asv-publish-") as tmp:
        # the project's link in the page chrome stays on the site
        config = project.config(Path(tmp), html_dir=str(out), project_url="index.html")
        asv(project, "publish", "--no-pull", config=config, capture=True)
    placed = vendor_assets(project, out)
    for page in out.rglob("*.html"):
        depth = len(page.relative_to(out).parts) - 1
        page.write_text(_localise(page.read_text(), placed, "../" * depth))
    left = external_urls(out) + _vendored_loads(out)
    if left:
        raise HistoryError("the published site still loads from outside: " + "; ".join(left))
    (out / SITE_VENDOR / "MANIFEST.json").write_text(json.dumps(placed, indent=1) + "\n")
    return out


# ------------------------------------------------------------------------------ command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m taskbench.reports.asv_history",
        description="The deterministic asv suite against its baseline, and an offline asv site.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_check = sub.add_parser("check", help="run the deterministic suite; fail on any regression")
    p_check.add_argument(
        "--factor", type=float, default=FACTOR,
        help=f"fail when a metric exceeds its baseline × this (default {FACTOR})",
    )  # fmt: skip
    sub.add_parser("baseline", help="re-record the stored baseline from the working tree")
    p_pub = sub.add_parser("publish", help="asv publish into OUT, working offline")
    p_pub.add_argument("out", type=Path, help="the site's folder (emptied first)")
    args = parser.parse_args(argv)
    try:
        project = Project.find()
        if args.command == "check":
            if args.factor < 1:
                parser.error("--factor must be at least 1")
            verdict = check(project, factor=args.factor)
            if not verdict.ok:
                print(verdict.table.rstrip())  # asv compare's own view, then ours
                print()
            for line in verdict.problems:
                print(f"REGRESSION {line}" if ": worse:" in line else f"CHECK {line}")
            print(verdict.summary())
            return 0 if verdict.ok else 1
        if args.command == "baseline":
            path = record_baseline(project)
            n = len(metric_values(json.loads(path.read_text())))
            print(f"recorded {n} deterministic metrics in {path.relative_to(project.root)}")
            return 0
        out = publish(args.out, project)
        print(f"asv site (works offline) in {out}")
        return 0
    except HistoryError as exc:
        print(f"asv_history: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
