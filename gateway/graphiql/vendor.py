"""Copy GraphiQL's browser build out of an `npm ci` of this folder into gateway/static/graphiql/vendor/.

Run by `make graphiql-assets` (never at install or run time). The files are copied byte for byte and
listed in manifest.json with their package, version and sha384, which the page's integrity attributes
and a unit test read.

    python gateway/graphiql/vendor.py NODE_MODULES OUT_DIR
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import sys
from pathlib import Path

# served name -> (npm package, path inside the package)
FILES = {
    "react.production.min.js": ("react", "umd/react.production.min.js"),
    "react-dom.production.min.js": ("react-dom", "umd/react-dom.production.min.js"),
    "graphiql.min.js": ("graphiql", "graphiql.min.js"),
    "graphiql.min.css": ("graphiql", "graphiql.min.css"),
    "LICENSE.react.txt": ("react", "LICENSE"),
    "LICENSE.react-dom.txt": ("react-dom", "LICENSE"),
    "LICENSE.graphiql.txt": ("graphiql", "LICENSE"),
}


def sha384(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


def vendor(node_modules: Path, out: Path) -> dict[str, dict[str, object]]:
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, object]] = {}
    for name, (package, source) in FILES.items():
        root = node_modules / package
        version = json.loads((root / "package.json").read_text())["version"]
        shutil.copyfile(root / source, out / name)
        data = (out / name).read_bytes()
        files[name] = {
            "package": package,
            "version": version,
            "source": source,
            "bytes": len(data),
            "integrity": sha384(data),
        }
    manifest = {
        "about": "GraphiQL's browser build, copied by `make graphiql-assets` from gateway/graphiql/package-lock.json",
        "files": files,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return files


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    for name, entry in vendor(Path(sys.argv[1]), Path(sys.argv[2])).items():
        print(f"{name}: {entry['package']}@{entry['version']} {entry['bytes']} bytes {entry['integrity']}")
