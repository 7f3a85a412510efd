"""Client-side tools of the end-to-end tests: Chromium for the browser test (Debian's package, since
Playwright's own browser downloads are not reachable) and Node.js with npm for the JavaScript clients
(tests/e2e/js: the GraphQL-over-HTTP reference audits, the graphql-sse client).

Playwright drives whatever Chromium `chromium_path` names (`executable_path=`). Both are system packages,
installed like MariaDB and PostgreSQL are: apt-get, with root or sudo, on first use.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from devstack.process import DevstackError, apt_install
from shared.settings import Settings

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium_path() -> str | None:
    """The Chromium executable on this machine (`CHROMIUM` overrides the search), or None."""
    override = os.environ.get("CHROMIUM")
    if override:
        return override if Path(override).exists() else None
    return next((p for p in CANDIDATES if Path(p).exists()), None) or shutil.which("chromium")


def provision_chromium(settings: Settings) -> str:
    """Install Debian's chromium when it is missing (fresh CI machines); return its path."""
    found = chromium_path()
    if found:
        return found
    apt_install(settings, "chromium", what="chromium", options=["--no-install-recommends"])
    found = chromium_path()
    if not found:
        raise DevstackError("chromium: the package is installed but no chromium executable was found")
    return found


def provision_node(settings: Settings) -> str:
    """Install Debian's nodejs and npm when npm is missing (fresh CI machines); return npm's path."""
    found = shutil.which("npm")
    if found:
        return found
    for package in ("nodejs", "npm"):
        apt_install(settings, package, what="node")
    found = shutil.which("npm")
    if not found:
        raise DevstackError("node: the packages are installed but no npm executable was found")
    return found
