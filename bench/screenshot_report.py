"""Look at a run's report.html as a person would: render it in headless Chromium and save a screenshot.

    apt-get install -y chromium          # Debian/Ubuntu; any Chromium or Chrome on PATH works
    python -m bench.screenshot_report runs/quickstart [--out shot.png] [--height 2000]

The page is opened from disk (file://) with networking off, so the screenshot also shows that
report.html needs nothing beyond itself. Writes report.html first when the run predates it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_browser() -> str:
    """The first Chromium-family binary on PATH ($CHROMIUM overrides)."""
    override = os.environ.get("CHROMIUM")
    if override:
        return override
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit("no Chromium found on PATH; install it (Debian: apt-get install -y chromium) or set CHROMIUM")


def screenshot(page: Path, out: Path, width: int = 1280, height: int = 2000, timeout: float = 120) -> Path:
    """Render ``page`` headless at width x height and write a PNG; raises when Chromium writes none."""
    out = out.resolve()
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="ft-chromium-") as profile:
        cmd = [
            find_browser(),
            "--headless",
            "--no-sandbox",  # root in containers has no user namespace for the sandbox
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--proxy-server=127.0.0.1:9",  # nothing may load from the network: a page that tried would show gaps
            f"--screenshot={out}",
            f"--window-size={width},{height}",
            page.resolve().as_uri(),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if not out.is_file():
        raise SystemExit(f"Chromium wrote no screenshot (exit {done.returncode}): {done.stderr.strip()[-800:]}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished run folder (holds report.json)")
    parser.add_argument("--out", type=Path, default=None, help="PNG to write (default: RUN/report_screenshot.png)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2000)
    args = parser.parse_args(argv)
    from finetune.report_html import FILE, write_html

    page = args.run_dir / FILE
    if not page.is_file():
        write_html(args.run_dir)
    out = screenshot(page, args.out or args.run_dir / "report_screenshot.png", args.width, args.height)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
