"""Screenshots of the incident dashboard over an incident log, for the README.

    aiops --data-dir /tmp/demo demo
    python scripts/dashboard_screenshot.py /tmp/demo/demo-*/ --incident 2 --out docs/

Serves the app on a free loopback port and drives Debian's Chromium (``/usr/bin/chromium``, or
``CHROMIUM``) through Playwright with the machine's headless flags; writes
``dashboard-incidents.png`` (the list) and ``dashboard-incident.png`` (one incident, down to
its plots).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import threading
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, help="the directory holding incidents.sqlite")
    parser.add_argument("--incident", type=int, default=None, help="the incident to show [the newest]")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--width", type=int, default=1200)
    args = parser.parse_args()
    if not (args.data_dir / "incidents.sqlite").is_file():
        parser.error(f"no incident log at {args.data_dir / 'incidents.sqlite'}")
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).is_file():
        parser.error(f"no Chromium at {chromium} (apt-get install chromium, or set CHROMIUM)")

    import uvicorn
    from playwright.sync_api import sync_playwright

    from rca.playbook import load_playbook
    from rca.rules import RuleClassifier
    from service.api import create_app
    from service.scoring import ServiceModels
    from service.settings import Settings

    settings = Settings(data_dir=args.data_dir)
    app = create_app(settings, RuleClassifier(load_playbook()), models=ServiceModels(where="none"))
    incidents = app.state.context.store.list(limit=1)
    if not incidents:
        parser.error("the incident log is empty")
    number = args.incident or incidents[0].id
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.05)
    base = f"http://127.0.0.1:{port}"
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=chromium, headless=True, args=FLAGS,
                viewport={"width": args.width, "height": 800})
            page = context.new_page()
            page.goto(base + "/")
            page.locator("#recent").screenshot(path=str(args.out / "dashboard-incidents.png"))
            page.goto(f"{base}/incidents/{number}")
            page.wait_for_function("Array.from(document.images).every(i => i.complete)")
            bottom = page.eval_on_selector("#metrics", "e => e.getBoundingClientRect().bottom + scrollY")
            page.screenshot(path=str(args.out / "dashboard-incident.png"), full_page=True,
                            clip={"x": 0, "y": 0, "width": args.width, "height": bottom + 8})
            context.close()
    finally:
        server.should_exit = True
        thread.join()
    for name in ("dashboard-incidents.png", "dashboard-incident.png"):
        _shrink(args.out / name)
    print(f"wrote {args.out / 'dashboard-incidents.png'} and {args.out / 'dashboard-incident.png'} "
          f"(incident {number})")
    return 0


def _shrink(path: Path) -> None:
    """Re-save with a 256-colour palette: a page of flat colours loses nothing visible."""
    from PIL import Image

    Image.open(path).convert("RGB").quantize(256).save(path, optimize=True)


if __name__ == "__main__":
    sys.exit(main())
