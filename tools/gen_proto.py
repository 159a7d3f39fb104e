"""Generate the Python gRPC code from protos/ into facegate/v1/ (or check that it is fresh).

    python tools/gen_proto.py          # regenerate (make proto)
    python tools/gen_proto.py --check  # exit 1 if facegate/v1/ differs from what protoc makes

Generated files are never edited by hand.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

REPO = Path(__file__).resolve().parent.parent
PROTOS = REPO / "protos"
PACKAGE = Path("facegate") / "v1"
INIT = '"""Generated gRPC/protobuf code for facegate.v1 (make proto). Do not edit."""\n'


def generate(out: Path) -> None:
    sources = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / PACKAGE).glob("*.proto"))
    well_known = resources.files("grpc_tools") / "_proto"
    args = ["protoc", f"-I{PROTOS}", f"-I{well_known}", f"--python_out={out}", f"--pyi_out={out}",
            f"--grpc_python_out={out}", *sources]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    (out / PACKAGE / "__init__.py").write_text(INIT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    if not args.check:
        generate(REPO)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh, current = Path(tmp) / PACKAGE, REPO / PACKAGE
        names = {p.name for p in fresh.iterdir() if p.is_file()} | {
            p.name for p in current.glob("*") if p.is_file()
        }
        stale = [n for n in sorted(names) if not (current / n).is_file() or not (fresh / n).is_file()
                 or not filecmp.cmp(fresh / n, current / n, shallow=False)]
    if stale:
        print(f"generated code in {PACKAGE} is stale ({', '.join(stale)}): run `make proto`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
