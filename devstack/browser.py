"""Chromium for the browser tests: Debian's package, since Playwright's own browser downloads are not reachable.

Playwright drives whatever Chromium `chromium_path` names (`executable_path=`), so the tests need only this
one system package, installed like MariaDB and PostgreSQL are: apt-get, with root or sudo, on first use.
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
