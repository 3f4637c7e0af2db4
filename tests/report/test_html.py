"""The HTML report (report/html.py, report/svg.py): one self-contained page that opens offline, with its charts;
rendered in a headless Chromium when the machine has one (CI installs it)."""
from __future__ import annotations

import shutil
import subprocess
from html import escape
from html.parser import HTMLParser

import pytest

from archsim.cli import main
from archsim.report.svg import PALETTE, Axis

VOID = {"meta", "br", "img", "hr", "input", "link", "circle", "line", "rect", "polyline", "path"}


class _Checker(HTMLParser):
    """Counts svg charts and checks that every non-void tag closes in order."""

    def __init__(self):
        super().__init__()
        self.stack, self.svgs, self.errors, self.fetches = [], 0, [], []

    def handle_starttag(self, tag, attrs):
        self.svgs += tag == "svg"
        self.fetches += [v for k, v in attrs if k in ("src", "href") and v]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.fetches += [v for k, v in attrs if k in ("src", "href") and v]

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()


def _check(text: str, charts: int) -> None:
    checker = _Checker()
    checker.feed(text)
    assert not checker.errors and not checker.stack, (checker.errors, checker.stack)
    assert checker.svgs >= charts
    # offline: nothing fetched (no script, stylesheet, image or font from a URL or a file)
    assert not checker.fetches and "<script" not in text and "@import" not in text and "url(" not in text


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    out = tmp_path_factory.mktemp("html")
    run, serve, sweep = out / "run.html", out / "serve.html", out / "sweep.html"
    assert main(["report", "workloads/kimi_k2.yaml", "--hw", "hardware/h100.yaml", "--out", str(run)]) == 0
    assert main(["serve", "workloads/deepseek_v3.yaml", "--hw", "hardware/h200.yaml", "--devices", "8", "--tp", "8",
                 "--num-prompts", "32", "--max-concurrency", "8", "--prompt-len", "1000", "--output-len", "50",
                 "--html", str(serve)]) == 0
    assert main(["sweep", "workloads/deepseek_v3.yaml", "--hw", "hardware/h200.yaml", "--devices", "8", "--tp", "8",
                 "--set", "memory.hbm.bandwidth=2TB/s..8TB/s:4", "--html", str(sweep)]) == 0
    return {"run": run, "serve": serve, "sweep": sweep}


@pytest.mark.parametrize("kind, charts", [("run", 6), ("serve", 3), ("sweep", 4)])
def test_pages_are_whole_and_offline(pages, capsys, kind, charts):
    capsys.readouterr()
    _check(pages[kind].read_text(encoding="utf-8"), charts)


def test_run_page_says_what_run_prints(pages):
    text = pages["run"].read_text(encoding="utf-8")
    for heading in ("Memory per device", "Step time", "Roofline", "Timeline of the projected step", "Heaviest ops",
                    "time per output token"):
        assert heading in text


def test_axes_place_values_and_ticks():
    log = Axis(label="x", low=1.0, high=1000.0, log=True)
    assert log.ticks() == [1.0, 10.0, 100.0, 1000.0]
    assert log.position(10.0, 0.0, 300.0) == pytest.approx(100.0)  # a third of the way: one decade of three
    lin = Axis(label="y", low=0.0, high=10.0)
    assert lin.ticks() == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0] and lin.position(5.0, 100.0, 0.0) == pytest.approx(50.0)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="no headless Chromium on this machine (.ci/run installs it)")
@pytest.mark.parametrize("kind", ["run", "serve", "sweep"])
def test_pages_render_in_a_headless_browser(pages, tmp_path, kind):
    import matplotlib.image as mpimg
    import numpy as np

    shot = tmp_path / f"{kind}.png"
    # the background-networking flags keep Chromium from dialling out on a machine with no network (offline page)
    proc = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--disable-quic", "--no-first-run", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
                           "--enable-logging=stderr", "--v=0", f"--screenshot={shot}", "--window-size=1100,2400",
                           pages[kind].resolve().as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.exists(), proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    image = mpimg.imread(str(shot))[..., :3]
    blue = np.array([int(PALETTE[0][i:i + 2], 16) / 255 for i in (1, 3, 5)])
    # the charts are drawn: pixels of the palette's first colour (lines, points, bars)
    assert (np.abs(image - blue).max(axis=-1) < 0.08).sum() > 200


def test_run_page_of_a_sliding_window_model_says_what_a_sequence_holds(pages, tmp_path):
    """gpt-oss-20b at 1,000 + 24 tokens: 1,024 x 24,576 B (12 full-attention layers x 2 x 8 KV heads x 64 x 2 B)
    + 3,145,728 B (12 sliding layers x 128 tokens x 2,048 B) = 28,311,552 B; the Kimi K2 page (no windows) has no
    such rows."""
    out = tmp_path / "gpt_oss.html"
    assert main(["report", "tests/data/hf_configs/gpt-oss-20b/config.json", "--hw", "hardware/h100.yaml",
                 "--prompt-len", "1000", "--output-len", "24", "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    _check(text, 1)
    for cell in ("KV cache per sequence", "28,311,552 B at 1,024 tokens (bf16)", "KV cache, full-attention layers",
                 "24,576 B per token (12 layers)", "KV cache, sliding-window layers",
                 "3,145,728 B (12 layers, last 128 tokens)"):
        assert escape(cell) in text, cell
    assert "KV cache per sequence" not in pages["run"].read_text(encoding="utf-8")
