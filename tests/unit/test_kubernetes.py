"""The Kubernetes objects docs/deploy.md gives (examples/kubernetes/), checked against Kubernetes' own
schemas (the kubernetes-validate package, strict: no field Kubernetes does not know), and the containerd
configuration, read by containerd itself."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

MANIFESTS = Path(__file__).resolve().parents[2] / "examples" / "kubernetes"
VERSIONS = ("1.28.0", "1.30.0")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", ["runtimeclass.yaml", "pod.yaml", "deployment.yaml"])
def test_the_manifests_are_valid_kubernetes(name: str, version: str) -> None:
    documents = [d for d in yaml.safe_load_all((MANIFESTS / name).read_text()) if d]
    assert documents
    for doc in documents:
        kubernetes_validate.validate(doc, version, strict=True)
        if doc["kind"] in ("Pod", "Deployment"):
            spec = doc["spec"].get("template", {}).get("spec", doc["spec"])
            assert spec["runtimeClassName"] == "kiln"
        if doc["kind"] == "RuntimeClass":
            assert doc["handler"] == "kiln"  # containerd-kiln.toml's runtime


def test_an_invalid_manifest_is_caught() -> None:
    pod = yaml.safe_load((MANIFESTS / "pod.yaml").read_text())
    pod["spec"]["runtimeClass"] = "kiln"  # a misspelt key
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, VERSIONS[-1], strict=True)


@pytest.mark.skipif(shutil.which("containerd") is None, reason="needs containerd")
def test_containerd_reads_the_runtime_handler(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text((MANIFESTS / "containerd-kiln.toml").read_text())
    dumped = subprocess.run(["containerd", "--config", str(config), "config", "dump"], capture_output=True,
                            text=True, check=True).stdout  # fmt: skip
    assert '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kiln]' in dumped
    assert 'BinaryName = "/usr/local/bin/kiln-oci"' in dumped
