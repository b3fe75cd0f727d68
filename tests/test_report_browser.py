"""report.html in a real browser: Debian's chromium, headless (run by `nox -s browser`).

The page is loaded from a copy with a small probe script at the top of <head>: it records
console errors and uncaught errors, and on `load` writes what it found (each image's
naturalWidth, the entries table's rows) into the DOM, which `--dump-dom` prints.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_answers_sweep import sleepy_spec

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PROBE = """<script>
window.__problems = [];
(function () {
  var original = console.error;
  console.error = function () { window.__problems.push(Array.prototype.join.call(arguments, " ")); original.apply(console, arguments); };
  window.addEventListener("error", function (e) { window.__problems.push("error: " + (e.message || (e.target && e.target.src) || "unknown")); }, true);
  window.addEventListener("load", function () {
    var images = Array.prototype.map.call(document.images, function (i) { return {width: i.naturalWidth, height: i.naturalHeight, file: i.getAttribute("data-file")}; });
    var found = {problems: window.__problems, images: images, rows: document.querySelectorAll("#entries tbody tr").length};
    var pre = document.createElement("pre");
    pre.id = "probe-findings";
    pre.textContent = JSON.stringify(found);
    document.body.appendChild(pre);
  });
})();
</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("chromium is not installed: run `nox -s browser`, which installs Debian's chromium")


def load_in_chromium(page: Path, tmp_path: Path) -> dict:
    probed = tmp_path / "probed.html"
    text = page.read_text(encoding="utf-8")
    probed.write_text(text.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    result = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    match = re.search(r'<pre id="probe-findings">(.*?)</pre>', result.stdout, re.S)
    assert match, f"the probe wrote nothing (exit {result.returncode}): {result.stderr[-2000:]}"
    return json.loads(html.unescape(match.group(1)))


def test_report_page_loads_cleanly_in_chromium(tmp_path, cli):
    spec = sleepy_spec(tmp_path / "sweep", axes="batch_sizes: [1, 2]\nworkers_per_model: [1, 2]", duration=0.5,
                       extra="instance_type: trn1.2xlarge")
    run = cli("run", str(spec), "-q")
    assert run.code == 0, run.err + run.out
    report = cli("report", str(tmp_path / "sweep" / "out"), "-o", str(tmp_path / "report"))
    assert report.code == 0, report.err
    found = load_in_chromium(tmp_path / "report" / "report.html", tmp_path)
    assert found["problems"] == []
    assert len(found["images"]) == 3
    assert all(i["width"] > 0 and i["height"] > 0 for i in found["images"]), found["images"]
    assert found["rows"] == 4  # one table row per entry
