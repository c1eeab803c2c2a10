"""The report as a user sees it: opened in a real headless browser (Debian's chromium), not read as text.

What is checked in the browser's own DOM after the page loaded: every section is laid out with its
heading, every plot image decoded to the size its PNG has and is shown, every link of the navigation
has its target, no script error; and a screenshot of the top of the page shows the plots' colours.
The page has no script of its own: the test adds one to a copy, which reports what the browser
rendered into the DOM that `--dump-dom` prints.

Skipped with the reason when no chromium is installed: `apt-get install -y chromium` enables it
(install.sh does not: ~460 MB and 116 system packages are not a project's to install; docs/jobs.md)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from shammie.jobs.report import write_report
from test_report import CRAWL, DEDUP, EDU_SCORE, EDU_SUBSET, SHARD, make_job

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no chromium on PATH (apt-get install -y chromium)")

CHECK = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e)));
window.addEventListener('load', () => {
  const shown = el => { const r = el.getBoundingClientRect(), s = getComputedStyle(el);
                        return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'; };
  const out = {errors: window.__errors, sections: [], images: [], nav: [], boxes: {}};
  for (const s of document.querySelectorAll('section')) {
    const h = s.querySelector('h2');
    out.sections.push({id: s.id, title: h ? h.textContent : null, shown: shown(s) && !!h && shown(h)});
  }
  // what the browser decoded of each image: the share of drawn (non-white) pixels, over the whole image
  // and in its bottom 20% (where the x-axis label is: a truncated or blank image has none there)
  const ink = img => {
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    if (!c.width || !c.height) return {all: 0, bottom: 0};
    const g = c.getContext('2d');
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data, from = Math.floor(c.height * 0.8) * c.width;
    let all = 0, bottom = 0;
    for (let p = 0; p < c.width * c.height; p++) {
      const dark = d[4 * p + 3] > 0 && (d[4 * p] < 200 || d[4 * p + 1] < 200 || d[4 * p + 2] < 200);
      if (dark) { all++; if (p >= from) bottom++; }
    }
    return {all: all / (c.width * c.height), bottom: bottom / (c.width * c.height - from)};
  };
  for (const img of document.querySelectorAll('img')) {
    out.images.push({id: img.id, alt: img.alt, complete: img.complete, width: img.naturalWidth,
                     height: img.naturalHeight, shownWidth: img.getBoundingClientRect().width, shown: shown(img),
                     ink: ink(img)});
  }
  for (const a of document.querySelectorAll('nav a')) {
    out.nav.push({href: a.getAttribute('href'), text: a.textContent,
                  target: !!document.getElementById(a.getAttribute('href').slice(1))});
  }
  for (const id of ['warnings', 'missing']) {
    const el = document.getElementById(id);
    out.boxes[id] = el && shown(el) ? el.innerText : null;
  }
  const pre = document.createElement('pre');
  pre.id = 'browser-check';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    # a profile of its own (never the machine's), no sandbox (tests may run as root), no GPU
    return subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--user-data-dir={tmp_path / 'chromium-profile'}", *args],
                          capture_output=True, text=True, timeout=120)


def png_size(png: bytes) -> tuple[int, int]:
    return struct.unpack(">II", png[16:24])


@pytest.fixture
def report(tmp_path) -> Path:
    manifest = {"group_by": "edu", "domains": {"3": {"documents": 3, "tokens": 700, "shards": []},
                                               "4": {"documents": 1, "tokens": 200, "shards": []}}}
    crawl = {**CRAWL, "errors": {"input_unreadable": 1}, "cpu_seconds": 4.0, "ray_start_seconds": 2.0}
    job = make_job(tmp_path, {"crawl": crawl, "dedup": DEDUP, "edu_score": EDU_SCORE, "edu_subset": EDU_SUBSET,
                              "shard": SHARD}, manifest=manifest, scored=[0.2, 1.1, 2.9, 3.4, 4.8, 3.0, 2.2, 1.7])
    path, _ = write_report(str(job))
    return Path(path)


def test_every_section_and_plot_is_rendered_in_a_real_browser(report, tmp_path):
    html = report.read_text()
    pngs = {key: base64.b64decode(data) for key, data in
            re.findall(r'<img id="plot-(\w+)" alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)}
    checked = tmp_path / "checked.html"
    checked.write_text(html.replace("<head>", "<head>" + CHECK, 1))
    run = chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", checked.as_uri())
    found = re.search(r'<pre id="browser-check">(.*?)</pre>', run.stdout, re.S)
    assert found, f"the page did not finish loading in chromium: {run.stderr[-2000:]}"
    seen = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                      .replace("&gt;", ">"))
    assert seen["errors"] == []
    sections = {s["id"]: s for s in seen["sections"]}
    for key in ("recipe", "funnel", "domains", "edu", "language", "dedup", "throughput", "stage_cpu", "cost", "stats"):
        assert sections[key]["shown"], f"section {key} is not laid out with its heading"
    assert sections["stage_cpu"]["title"] == "CPU cost per stage" and sections["funnel"]["title"] == "Filter funnel"
    images = {i["id"].removeprefix("plot-"): i for i in seen["images"]}
    assert set(images) == set(pngs) and len(images) == 8
    for key, image in images.items():
        # decoded by the browser to the PNG's own size, and shown on the page (scaled to fit at most)
        assert image["complete"] and (image["width"], image["height"]) == png_size(pngs[key]), key
        assert image["shown"] and 0 < image["shownWidth"] <= image["width"], key
        assert image["alt"], key
        # drawn, down to the axis label at the bottom (a truncated or empty PNG is blank there)
        assert image["ink"]["all"] > 0.01 and image["ink"]["bottom"] > 0.001, (key, image["ink"])
    assert seen["nav"] and all(link["target"] for link in seen["nav"])
    # the warnings box is shown at the top, naming the crawl's unreadable input
    assert "input_unreadable 1" in seen["boxes"]["warnings"]


def test_a_screenshot_of_the_report_shows_its_plots(report, tmp_path):
    import matplotlib.image as mpimg
    import numpy as np

    shot = tmp_path / "report.png"
    run = chromium(tmp_path, "--window-size=1200,3000", f"--screenshot={shot}", report.as_uri())
    assert shot.exists(), run.stderr[-2000:]
    pixels = (mpimg.imread(str(shot))[..., :3] * 255).round().astype(int)
    assert pixels.shape[:2] == (3000, 1200)
    not_white = (pixels < 245).any(axis=2).mean()
    assert not_white > 0.05, "the page rendered (nearly) blank"

    def share(hex_colour: str) -> float:
        rgb = [int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]
        return float((np.abs(pixels - rgb).max(axis=2) <= 3).mean())

    # the funnel's green bars and the domain plot's blue and red ones are on screen (drawn, not just present)
    assert share("#55A868") > 0.002 and share("#4C72B0") > 0.002 and share("#C44E52") > 0.001
