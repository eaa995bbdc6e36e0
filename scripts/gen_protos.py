"""Generate the Python code for protos/ into tessera/, or check it is current.

    python scripts/gen_protos.py           # regenerate tessera/
    python scripts/gen_protos.py --check   # exit 1 when tessera/ is stale

The output depends on the grpcio-tools version, which the ``dev`` extra pins
exactly so that every machine generates the same bytes.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.resources
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
PACKAGE = "tessera"
HEADER = '"""Generated from protos/ by scripts/gen_protos.py; do not edit."""\n'


def generate(out: Path) -> None:
    """Run protoc over every proto file, writing packages under ``out``."""
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")

    for directory in [out / PACKAGE, *(out / PACKAGE).rglob("*")]:
        if directory.is_dir():
            (directory / "__init__.py").write_text(HEADER)


def stale_files(current: Path, fresh: Path) -> list[str]:
    """Names of files that differ between two generated trees."""
    names = {
        str(p.relative_to(tree))
        for tree in (current, fresh)
        for p in tree.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    return sorted(
        name
        for name in names
        if not (current / name).is_file()
        or not (fresh / name).is_file()
        or not filecmp.cmp(current / name, fresh / name, shallow=False)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare")
    options = parser.parse_args()

    if not options.check:
        generate(ROOT)
        return 0

    with tempfile.TemporaryDirectory() as scratch:
        generate(Path(scratch))
        stale = stale_files(ROOT / PACKAGE, Path(scratch) / PACKAGE)
    if stale:
        print("generated code is stale; run scripts/gen_protos.py:", *stale, sep="\n  ")
        return 1
    print("generated code is current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
