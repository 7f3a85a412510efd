"""GraphiQL served by the gateway itself: the page on GET /graphql, its files under /graphiql/.

Strawberry's own page loads React and GraphiQL from a public CDN, so it stays at "Loading..." on a machine
without internet and trusts a third party at run time. Here every file comes from the gateway: the browser
build of GraphiQL and React is vendored under static/graphiql/vendor/ by `make graphiql-assets` (pinned by
gateway/graphiql/package-lock.json, listed with sha384 in vendor/manifest.json), and the page's tags carry
those hashes as `integrity`, so a file that differs from the manifest never runs. The boot code is a file too,
so the page works under a Content-Security-Policy without 'unsafe-inline' scripts.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static" / "graphiql"
MOUNT_PATH = "/graphiql"
# The URLs carry a digest of the content (?v=), so an upgrade changes the URL and a year of caching is safe.
IMMUTABLE = "public, max-age=31536000, immutable"

VENDOR_STYLES = ("graphiql.min.css",)
VENDOR_SCRIPTS = ("react.production.min.js", "react-dom.production.min.js", "graphiql.min.js")
OWN_STYLES = ("page.css",)
OWN_SCRIPTS = ("boot.js",)

_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")

PAGE = """<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>eventshop GraphiQL</title>
    <link rel="icon" href="data:,">
{styles}
  </head>
  <body>
    <div id="graphiql">Loading GraphiQL...</div>
{scripts}
  </body>
</html>
"""


def sha384(data: bytes) -> str:
    """A Subresource Integrity value."""
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


@dataclass(frozen=True)
class Asset:
    path: str  # relative to STATIC_DIR
    integrity: str

    @property
    def version(self) -> str:
        digest = base64.b64decode(self.integrity.removeprefix("sha384-"))
        return base64.urlsafe_b64encode(digest[:9]).decode()


def load_manifest(directory: Path = STATIC_DIR) -> dict[str, dict[str, object]]:
    files: dict[str, dict[str, object]] = json.loads((directory / "vendor" / "manifest.json").read_text())["files"]
    return files


class GraphiQLPage:
    """The HTML page: vendored files with the manifest's hashes, then the gateway's own CSS and boot script."""

    def __init__(self, directory: Path = STATIC_DIR) -> None:
        manifest = load_manifest(directory)

        def vendored(name: str) -> Asset:
            return Asset(f"vendor/{name}", str(manifest[name]["integrity"]))

        def own(name: str) -> Asset:
            return Asset(name, sha384((directory / name).read_bytes()))

        self.styles = [*map(vendored, VENDOR_STYLES), *map(own, OWN_STYLES)]
        self.scripts = [*map(vendored, VENDOR_SCRIPTS), *map(own, OWN_SCRIPTS)]

    def render(self, base: str) -> str:
        def url(asset: Asset) -> str:
            return html.escape(f"{base}{MOUNT_PATH}/{asset.path}?v={asset.version}")

        styles = "\n".join(
            f'    <link rel="stylesheet" href="{url(a)}" integrity="{a.integrity}">' for a in self.styles
        )
        scripts = "\n".join(f'    <script src="{url(a)}" integrity="{a.integrity}"></script>' for a in self.scripts)
        return PAGE.format(styles=styles, scripts=scripts)

    def response(self, request: Request) -> Response:
        base = str(request.scope.get("root_path", "")).rstrip("/")
        return HTMLResponse(
            self.render(base),
            headers={
                "Content-Security-Policy": content_security_policy(request.headers.get("host")),
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )


def content_security_policy(host: str | None) -> str:
    """Same origin only; WebSockets to this host (older browsers do not count ws: as 'self')."""
    sockets = f" ws://{host} wss://{host}" if host and _HOST.match(host) else ""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self' data:",
            f"connect-src 'self'{sockets}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


class GraphiQLAssets(StaticFiles):
    """The page's files with a year of caching (their URLs change with their content)."""

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = IMMUTABLE
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def assets_mount(directory: Path = STATIC_DIR) -> Mount:
    return Mount(MOUNT_PATH, app=GZipMiddleware(GraphiQLAssets(directory=directory)), name="graphiql")
