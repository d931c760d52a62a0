"""Screenshot a page of `mlbuild ui` with headless Chromium (Debian's, driven by Playwright):
the README's docs/ui.png. Run it on a built project with some history, e.g. the example after
`mlbuild run`, a sweep, `mlbuild model register/promote` and `mlbuild monitor`:

    python scripts/ui_screenshot.py --project PATH [--page /] [--out docs/ui.png]
        [--width 1280] [--height PX]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"mlbuild ui ended early with exit code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"{url} did not answer within 60 s")


def shoot(project: Path, page: str, out: Path, width: int, height: int | None) -> None:
    """Start the dashboard in *project*, save a screenshot of *page* to *out*: the whole
    page, or its top *height* pixels."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("Debian's chromium is needed (apt-get install chromium)")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mlbuild", "ui", "--port", str(port)],
                            cwd=project, stdout=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}{page}"
        _wait(url, proc)
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=chromium, args=FLAGS)
            tab = browser.new_page(viewport={"width": width, "height": height or 800})
            tab.goto(url)
            out.parent.mkdir(parents=True, exist_ok=True)
            tab.screenshot(path=str(out), full_page=height is None)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> None:
    """Parse the arguments and take the screenshot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path.cwd(), help="The project.")
    parser.add_argument("--page", default="/", help="The page's path (default: the pipeline).")
    parser.add_argument("--out", type=Path, default=Path("docs/ui.png"), help="The PNG.")
    parser.add_argument("--width", type=int, default=1280, help="The window's width in px.")
    parser.add_argument("--height", type=int, default=None,
                        help="Keep only the top HEIGHT px (default: the whole page).")
    args = parser.parse_args()
    shoot(args.project.resolve(), args.page, args.out.resolve(), args.width, args.height)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
