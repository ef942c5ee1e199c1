"""Generate every file that repeats a fact owned elsewhere: `make manifests`.

The CRD is generated from the models (:func:`~together_operator.gpucluster.crd.crd_yaml`) into
`crds/` and copied where kustomize and Helm need it (neither reads files outside its own
directory); the version in the Helm chart and the kustomize image tag is the package version
(pyproject.toml). Run ``python -m together_operator.manifests`` from the repository root; the
test suite fails when a generated file differs from what this would write.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from together_operator import __version__
from together_operator.gpucluster.crd import crd_yaml

CRD_FILE = "gpuclusters.compute.together.ai.yaml"
CRD_PATHS = (
    Path("crds") / CRD_FILE,
    Path("deploy") / "crds" / CRD_FILE,
    Path("deploy") / "helm" / "together-operator" / "crds" / CRD_FILE,
)
CHART = Path("deploy") / "helm" / "together-operator" / "Chart.yaml"
KUSTOMIZATION = Path("deploy") / "kustomization.yaml"


def _stamped(text: str, pattern: str, value: str) -> str:
    stamped, count = re.subn(pattern, rf"\g<1>{value}", text, flags=re.MULTILINE)
    if count != 1:
        raise ValueError(f"expected exactly one line matching {pattern!r}")
    return stamped


def generated_files(repo: Path, version: str = __version__) -> dict[Path, str]:
    """Each generated file (relative to ``repo``) with the content it must have."""
    files = dict.fromkeys(CRD_PATHS, crd_yaml())
    chart = (repo / CHART).read_text()
    chart = _stamped(chart, r"^(version: ).*$", version)
    files[CHART] = _stamped(chart, r"^(appVersion: ).*$", f'"{version}"')
    kustomization = (repo / KUSTOMIZATION).read_text()
    files[KUSTOMIZATION] = _stamped(kustomization, r"^(\s+newTag: ).*$", version)
    return files


def main(repo: Path) -> int:
    for path, content in generated_files(repo).items():
        target = repo / path
        if not target.exists() or target.read_text() != content:
            target.write_text(content)
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path.cwd()))
