"""The code version of a job kind: its distribution's version when it comes from an installed
package, and a digest of its source files, taken when the kind is registered.

Taken at registration (import), not when asked: a process reports the code it loaded, which
is what its `run` executes, even if the file changed on disk since (`make run` restarts the
services when a kind's source changes, so a fresh process loads, and reports, the new code).

The source files are those of the modules that define the kind's class and its bases, less
Coreboard's own bases (the Coreboard commit covers those: a built-in kind's digest is of its
own module); for a package in the kinds folder,
every `.py` file of that package, since its modules import one another. A module without a
file (built in a test or at the prompt) has no digest: "" is said as "unknown".
"""

from __future__ import annotations

import hashlib
import importlib
import sys
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

# Coreboard's own modules: versioned by the Coreboard commit, not by a kind's digest.
COREBOARD_PACKAGES = frozenset({"jobs", "project", "tokens", "launcher", "coreconf", "coreboard"})
# The package the kinds folder's modules are imported under (jobs.kinds.loading).
FOLDER_PACKAGE = "coreboard_kinds"
# The package of a kind that comes with Coreboard (its commit says which code).
BUILT_IN = "built into Coreboard"
# A digest is shown by this many hex digits (like a short commit); stored whole.
SHORT = 12
# A kinds-folder package of more files than this is digested by its first ones only
# (sorted): enough to notice an edit, bounded for a folder someone filled by mistake.
PACKAGE_FILES_MAX = 500


@dataclass(frozen=True)
class KindVersion:
    """`package`: "name version" of the installed distribution the kind comes from, ""
    when it comes from no installed package; `source`: the sha256 of its source files
    (hex), "" when they cannot be read."""

    package: str
    source: str

    @property
    def source_short(self) -> str:
        return self.source[:SHORT]


def source_files(cls: type) -> list[Path]:
    """The files whose text makes up the kind `cls` (see the module's docstring)."""
    files: set[Path] = set()
    for klass in cls.__mro__:
        module_name = klass.__module__
        top = module_name.partition(".")[0]
        if top == "builtins" or (klass is not cls and top in COREBOARD_PACKAGES):
            continue
        module = sys.modules.get(module_name)
        file = getattr(module, "__file__", None)
        if not file:
            continue
        files.add(Path(file).resolve())
        parts = module_name.split(".")
        if parts[0] == FOLDER_PACKAGE and len(parts) > 2:
            package = importlib.import_module(".".join(parts[:2]))
            for folder in getattr(package, "__path__", []):
                found = sorted(Path(folder).rglob("*.py"))[:PACKAGE_FILES_MAX]
                files.update(path.resolve() for path in found)
    return sorted(files)


def source_digest(files: list[Path]) -> str:
    """A stable digest of `files`: each one's name and bytes, in order; "" when there are
    none or one cannot be read (a partial digest would claim a version it is not)."""
    if not files:
        return ""
    digest = hashlib.sha256()
    for path in files:
        try:
            data = path.read_bytes()
        except OSError:
            return ""
        # The file's name, not its absolute path: the same code in two checkouts (two
        # machines) has the same digest.
        digest.update(path.name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return digest.hexdigest()


@cache
def _distributions() -> dict[str, list[str]]:
    return dict(metadata.packages_distributions())


def package_version(module_name: str) -> str:
    """ "name version" of the installed distribution that provides `module_name`'s
    top-level package; "" when none does (a kinds folder, a test module)."""
    top = module_name.partition(".")[0]
    if top in COREBOARD_PACKAGES:
        # A built-in kind: Coreboard's own code, versioned by its commit.
        return BUILT_IN
    for name in _distributions().get(top, []):
        try:
            return f"{name} {metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return ""


def kind_version_of(cls: type) -> KindVersion:
    """The version of the kind class `cls` as its files read now (registration calls it
    once per class; `jobs.kinds.registry.version` returns what it took)."""
    return KindVersion(
        package=package_version(cls.__module__),
        source=source_digest(source_files(cls)),
    )
