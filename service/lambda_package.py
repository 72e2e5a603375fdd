"""Lambda packages that fit: one zip per function, holding only what its handler imports.

``aiops package lambda`` builds ``aiops-platform-rca.zip`` and ``aiops-platform-rollback.zip``.
What goes in is measured, not listed by hand: a probe process imports each handler and runs the
code paths a call runs (the RCA handler on the seed's payload; the rollback handler's platform,
remediator and AWS clients, without calling AWS), then reports every module file it loaded and
every shared library mapped into it. Each top-level package or module behind those files goes in
whole (with its ``*.libs`` and ``dist-info``), less test suites and byte code; botocore keeps
only the service models the platform calls. The unzipped size is checked against Lambda's
250 MB limit (the zip is uploaded through S3, so its own 50 MB direct-upload limit does not apply).

The binaries are those of the environment that builds the package, so it must be the runtime's:
Linux x86_64 with the Python of the stack's runtime (:data:`RUNTIME`, ``python3.11``; wheels
tagged up to manylinux_2_34). Built anywhere else the package would not import on Lambda, so
:func:`build` refuses, naming the machine it runs on (there is no cross-build yet).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RUNTIME = "python3.11"                    # the stack's Lambda runtime (deploy/template.yaml)
ARCHITECTURE = ("Linux", "x86_64")        # and its architecture
LIMIT_BYTES = 250 * 1024 * 1024           # Lambda: unzipped deployment package, layers included
SEED_RCA = {"anomalies": ["CPU: 60% (expected 4%)"], "metrics": {"cpu_utilization": 60}}
SEED_ROLLBACK = {"cluster": "aiops-platform-cluster", "service": "aiops-platform-service", "reason": "Test"}
FUNCTIONS = {"aiops-platform-rca": "service.lambda_handlers.rca_handler",
             "aiops-platform-rollback": "service.lambda_handlers.rollback_handler"}
# The AWS APIs the platform calls (botocore's other ~400 service models stay out).
BOTOCORE_SERVICES = ("ecs", "dynamodb", "application-autoscaling", "cloudwatch", "sns", "ses", "sts", "s3")
SKIPPED_DIRS = {"__pycache__", "tests"}
# Imported when present, needed by no handler (the clean-interpreter test proves it): pandas tries
# pyarrow, httpx its command line (click, rich, pygments), joblib psutil; setuptools' and the
# editable install's import hooks.
OPPORTUNISTIC = {"pyarrow", "click", "rich", "pygments", "psutil",
                 "charset_normalizer", "_distutils_hack"}
FORBIDDEN = {"aiops-platform-rca": ("training", "simulation", "harness", "mlflow", "matplotlib"),
             "aiops-platform-rollback": ("training", "simulation", "harness", "mlflow", "matplotlib",
                                         "sklearn", "scipy", "statsmodels", "joblib")}

# Run in the probe process: import the handler, run what a call runs, print what was loaded.
PROBE = r"""
import json, os, sys
function = sys.argv[1]
import service.lambda_handlers as handlers
if function == "aiops-platform-rca":
    answer = handlers.rca_handler(json.loads(sys.argv[2]))
    assert answer["statusCode"] == 200, answer
else:
    from service import usecases
    from service.requests import RollbackCommand, parse
    import service.dynamo_store
    parse(RollbackCommand, json.loads(sys.argv[2])).action()
    platform = handlers._platform()
    platform.remediator()
    for name in json.loads(sys.argv[3]):
        platform.factory.client(name)
files = {getattr(m, "__file__", None) for m in list(sys.modules.values())}
with open("/proc/self/maps") as maps:
    files |= {line.split()[-1] for line in maps if line.rstrip().endswith(".so") or ".so." in line}
print(json.dumps({"files": sorted(f for f in files if f),
                  "modules": sorted({name.split(".")[0] for name in sys.modules})}))
"""


class PackageError(RuntimeError):
    """A package could not be built, or would not fit; the message names the function."""


@dataclass(frozen=True)
class LambdaPackage:
    """One built package: where, how big, what it holds."""

    function: str
    handler: str
    path: Path
    zipped_bytes: int
    unzipped_bytes: int
    files: int
    top_level: tuple[str, ...]

    @property
    def fits(self) -> bool:
        return self.unzipped_bytes <= LIMIT_BYTES

    def to_dict(self) -> dict:
        return {"function": self.function, "handler": self.handler, "path": str(self.path),
                "zipped_mb": round(self.zipped_bytes / 2**20, 1),
                "unzipped_mb": round(self.unzipped_bytes / 2**20, 1),
                "limit_mb": LIMIT_BYTES // 2**20, "files": self.files, "fits": self.fits,
                "top_level": list(self.top_level)}


def probe(function: str, python: str = sys.executable) -> dict:
    """What the handler of ``function`` loads: module files and shared libraries, and module names."""
    with tempfile.TemporaryDirectory() as scratch:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIOPS_", "AWS_"))}
        env.update({"PYTHONPATH": str(PROJECT_ROOT), "AIOPS_DATA_DIR": scratch, "AWS_REGION": "us-east-1",
                    "AWS_ACCESS_KEY_ID": "probe", "AWS_SECRET_ACCESS_KEY": "probe",
                    "MPLBACKEND": "Agg"})
        seed = SEED_RCA if function == "aiops-platform-rca" else SEED_ROLLBACK
        done = subprocess.run([python, "-c", PROBE, function, json.dumps(seed),
                               json.dumps(BOTOCORE_SERVICES)], capture_output=True, text=True,
                              env=env, cwd=scratch, timeout=600)
    if done.returncode != 0:
        raise PackageError(f"{function}: the handler failed in the probe: "
                           f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _roots(python: str = sys.executable) -> list[Path]:
    """Where top-level packages may come from: the environment's site-packages, then the project
    (in that order: a virtual environment may live inside the project's folder)."""
    done = subprocess.run([python, "-c", "import json, site, sys; print(json.dumps(site.getsitepackages() "
                           "+ [p for p in sys.path if p.endswith('site-packages')]))"],
                          capture_output=True, text=True, check=True)
    return [Path(p) for p in dict.fromkeys(json.loads(done.stdout))] + [PROJECT_ROOT]


def top_level_entries(files: list[str], roots: list[Path]) -> dict[str, Path]:
    """The top-level package directories and single-file modules behind ``files``, by name."""
    entries: dict[str, Path] = {}
    resolved = [(root, root.resolve()) for root in roots]
    for name in files:
        path = Path(name).resolve()
        for root, real in resolved:
            try:
                relative = path.relative_to(real)
            except ValueError:
                continue
            first = relative.parts[0]
            skip = (first in ("tests", "harness") or first in OPPORTUNISTIC or first.startswith((".", "__"))
                    or first.endswith(".dist-info") or first.removesuffix(".py") in OPPORTUNISTIC)
            if not skip:
                entries.setdefault(first, root / first)
            break
    return entries


def _distribution_infos(entries: dict[str, Path]) -> list[Path]:
    """The dist-info folders of the distributions that own the entries (importlib.metadata needs some)."""
    from importlib.metadata import packages_distributions

    owners = packages_distributions()
    wanted = {d.lower().replace("-", "_") for name in entries
              for d in owners.get(name.removesuffix(".py"), [])}
    infos = []
    for root in {p.parent for p in entries.values()}:
        for info in root.glob("*.dist-info"):
            if info.name.split("-")[0].lower().replace("-", "_") in wanted:
                infos.append(info)
    return infos


def _walk(entry: Path, arcroot: str):
    """(file, name in the zip) for every file of an entry, less tests, byte code and unused AWS models."""
    if entry.is_file():
        yield entry, arcroot
        return
    for folder, dirs, names in os.walk(entry):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        relative = Path(folder).relative_to(entry)
        if entry.name == "botocore" and relative.parts[:1] == ("data",) and len(relative.parts) == 1:
            dirs[:] = [d for d in dirs if d in BOTOCORE_SERVICES]
        for name in sorted(names):
            if name.endswith((".pyc", ".pyo")):
                continue
            yield Path(folder) / name, f"{arcroot}/{relative.as_posix()}/{name}".replace("/./", "/")


def check_build_machine(version: tuple[int, int] = sys.version_info[:2],
                        machine: tuple[str, str] | None = None) -> None:
    """Refuse to package on a machine whose binaries the Lambda runtime cannot load."""
    import platform

    machine = machine or (platform.system(), platform.machine())
    runtime = f"python{version[0]}.{version[1]}"
    if runtime != RUNTIME or tuple(machine) != ARCHITECTURE:
        raise PackageError(f"the packages carry this machine's compiled libraries, so they must be built "
                           f"on {ARCHITECTURE[0]} {ARCHITECTURE[1]} with {RUNTIME} (the stack's runtime); "
                           f"this is {runtime} on {machine[0]} {machine[1]}")


def build(function: str, out_dir: Path, compresslevel: int = 6,
          python: str = sys.executable) -> LambdaPackage:
    """Build ``function``'s zip in ``out_dir`` from what its handler loads; refuse one over the limit."""
    if function not in FUNCTIONS:
        raise PackageError(f"unknown function {function!r}; known: {', '.join(FUNCTIONS)}")
    check_build_machine()
    loaded = probe(function, python)
    present = [m for m in FORBIDDEN[function] if m in loaded["modules"]]
    if present:
        raise PackageError(f"{function}: its handler imports {', '.join(present)}, which it must not need")
    entries = top_level_entries(loaded["files"], _roots(python))
    entries = {name: path for name, path in entries.items() if path.exists()}
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{function}.zip"
    unzipped = count = 0
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as archive:
        for entry in sorted(entries.values()) + sorted(_distribution_infos(entries)):
            for path, arcname in _walk(entry, entry.name):
                archive.write(path, arcname)
                unzipped += path.stat().st_size
                count += 1
    package = LambdaPackage(function, FUNCTIONS[function], target, target.stat().st_size, unzipped, count,
                            tuple(sorted(entries)))
    if not package.fits:
        raise PackageError(f"{function}: {unzipped / 2**20:.1f} MB unzipped, over Lambda's "
                           f"{LIMIT_BYTES // 2**20} MB")
    return package


def build_all(out_dir: Path, compresslevel: int = 6) -> list[LambdaPackage]:
    """Every function's package."""
    return [build(function, out_dir, compresslevel) for function in FUNCTIONS]
