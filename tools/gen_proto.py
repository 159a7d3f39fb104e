"""Generate the Python gRPC code from protos/ into services/contracts/v1/ (or check that it is fresh).

    python tools/gen_proto.py          # regenerate (make proto)
    python tools/gen_proto.py --check  # exit 1 if services/contracts/v1/ differs from what protoc makes

Generated files are never edited by hand. protoc names Python modules after the .proto paths
(`facegate/v1/common.proto` -> `facegate.v1.common_pb2`), but the contracts live below the
services, not in the client package `facegate`: the generated imports between the contract
modules are rewritten to relative ones (what protoletariat does; it pins protobuf < 6, and the
generated code needs 7.x), so the package can live anywhere. The wire names (`facegate.v1.*`)
are unchanged.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

REPO = Path(__file__).resolve().parent.parent
PROTOS = REPO / "protos"
PROTO_PACKAGE = Path("facegate") / "v1"  # protos/facegate/v1/*.proto, package facegate.v1
PACKAGE = Path("services") / "contracts" / "v1"  # where the generated modules go
INIT = '"""Generated gRPC/protobuf code for the facegate.v1 contracts (make proto). Do not edit."""\n'
ABSOLUTE_IMPORT = re.compile(r"^from facegate\.v1 import ", re.MULTILINE)


def generate(out: Path) -> None:
    """Write the generated package to `out / PACKAGE`."""
    sources = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / PROTO_PACKAGE).glob("*.proto"))
    well_known = resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = ["protoc", f"-I{PROTOS}", f"-I{well_known}", f"--python_out={tmp}", f"--pyi_out={tmp}",
                f"--grpc_python_out={tmp}", *sources]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        target = out / PACKAGE
        target.mkdir(parents=True, exist_ok=True)
        for generated in sorted((Path(tmp) / PROTO_PACKAGE).iterdir()):
            (target / generated.name).write_text(ABSOLUTE_IMPORT.sub("from . import ", generated.read_text()))
    (target / "__init__.py").write_text(INIT)


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
