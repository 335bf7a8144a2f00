"""deploy/compose.yaml and the Kubernetes manifests in deploy/k8s/.

The manifests are validated against the Kubernetes OpenAPI schemas shipped by
``kubernetes-validate`` (the ``[test]`` extra), strictly (no unknown fields),
for the newest and an older Kubernetes; the rest checks that the pieces fit:
the ConfigMap is deploy/ctxserve.toml with cluster addresses, the Deployment
mounts it where the image's apps are found, the probes, the Prometheus
annotations and the Service name real ports, and compose.yaml has the image's
healthcheck. ``tests/test_container.py`` runs the image the way the Deployment
does.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"

pytestmark = pytest.mark.manifests

yaml = pytest.importorskip("yaml", reason="needs PyYAML (the [test] extra brings it with kubernetes-validate)")

# The newest Kubernetes kubernetes-validate knows, and an older one still in use.
OLDEST_K8S = "1.29"


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def resources() -> dict[str, dict[str, Any]]:
    """Every resource in deploy/k8s, by kind (one of each)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in load_all(path):
            assert doc["kind"] not in found, f"two {doc['kind']}s"
            found[doc["kind"]] = doc
    return found


@pytest.fixture(scope="module")
def k8s() -> dict[str, dict[str, Any]]:
    found = resources()
    assert set(found) == {"ConfigMap", "Deployment", "Service"}, sorted(found)
    return found


def pod_spec(k8s: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return k8s["Deployment"]["spec"]["template"]["spec"]


def container(k8s: dict[str, dict[str, Any]]) -> dict[str, Any]:
    containers = pod_spec(k8s)["containers"]
    assert len(containers) == 1
    return containers[0]


def ports(k8s: dict[str, dict[str, Any]]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container(k8s)["ports"]}


def demo_server() -> dict[str, Any]:
    return dict(tomllib.loads((DEPLOY / "ctxserve.toml").read_text())["server"])


def has_admin() -> bool:
    return bool(demo_server().get("admin"))


def dockerfile_instruction(name: str) -> str:
    """The text of the Dockerfile's (last) instruction *name*, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    lines = [line for line in text.splitlines() if line.split(" ", 1)[0].upper() == name]
    assert lines, f"the Dockerfile has no {name}"
    return lines[-1].split(" ", 1)[1].strip()


# -- schemas -------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["latest", OLDEST_K8S])
def test_kubernetes_validate_strict(version: str) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="needs kubernetes-validate (the [test] extra)")
    if version == "latest":
        version = ".".join(kv.latest_version().split(".")[:2])
    files = sorted(K8S.glob("*.yaml"))
    assert files
    proc = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "-k", version,
                           *map(str, files)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(" passed for resource ") == len(resources()), proc.stdout


# -- the pieces fit ------------------------------------------------------------------

def test_configmap_is_the_demo_config_with_cluster_addresses(k8s: dict[str, dict[str, Any]]) -> None:
    cluster = tomllib.loads(k8s["ConfigMap"]["data"]["ctxserve.toml"])
    demo = tomllib.loads((DEPLOY / "ctxserve.toml").read_text())
    assert cluster["server"]["bind"] == "0.0.0.0:8000"
    expected_server = {**demo["server"], "bind": "0.0.0.0:8000"}
    if "admin" in cluster["server"]:
        assert cluster["server"]["admin"] == "0.0.0.0:9100"
        expected_server["admin"] = "0.0.0.0:9100"
    assert cluster == {**demo, "server": expected_server}, (
        "deploy/k8s/configmap.yaml must hold deploy/ctxserve.toml with bind 0.0.0.0:8000 "
        "(and admin 0.0.0.0:9100)")
    # the admin listener is in the cluster config exactly when the demo has one
    assert ("admin" in cluster["server"]) == has_admin()


def test_configmap_config_loads_every_app(k8s: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """``ctxserve check`` on the ConfigMap's file, laid out as in the image:
    config/ctxserve.toml beside apps/."""
    mount = Path(container(k8s)["command"][-1]).parent
    workdir = Path(dockerfile_instruction("WORKDIR"))
    assert mount.parent == workdir, f"the config must be mounted in a directory of {workdir} (beside apps/)"
    (tmp_path / "apps").symlink_to(ROOT / "apps", target_is_directory=True)
    config = tmp_path / mount.name / "ctxserve.toml"
    config.parent.mkdir()
    config.write_text(k8s["ConfigMap"]["data"]["ctxserve.toml"])
    proc = subprocess.run([sys.executable, "-m", "ctxserve", "check", str(config)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("ledger", "hello", "envinfo"):
        assert re.search(rf"^{name}\s.*\sloaded$", proc.stdout, re.MULTILINE), proc.stdout


def test_deployment_mounts_the_configmap(k8s: dict[str, dict[str, Any]]) -> None:
    spec, pod = container(k8s), pod_spec(k8s)
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in spec["volumeMounts"]}
    config = next(name for name, v in volumes.items() if "configMap" in v)
    assert volumes[config]["configMap"]["name"] == k8s["ConfigMap"]["metadata"]["name"]
    assert mounts[config]["readOnly"] is True
    assert spec["command"][:2] == ["ctxserve", "serve"]
    assert spec["command"][-1] == f"{mounts[config]['mountPath']}/ctxserve.toml"


def test_deployment_is_non_root_and_locked_down(k8s: dict[str, dict[str, Any]]) -> None:
    spec, pod = container(k8s), pod_spec(k8s)
    security = {**pod["securityContext"], **spec["securityContext"]}
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 10001
    assert dockerfile_instruction("USER").split(":")[0] == "10001"
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    # the one writable place: /tmp, an emptyDir, also gunicorn's control socket directory
    tmp = next(m for m in spec["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])
    assert {"name": "XDG_RUNTIME_DIR", "value": "/tmp"} in spec["env"]
    assert spec["resources"]["requests"] and spec["resources"]["limits"]["memory"]


def test_probes(k8s: dict[str, dict[str, Any]]) -> None:
    spec = container(k8s)
    named = ports(k8s)
    for kind in ("livenessProbe", "readinessProbe"):
        get = spec[kind]["httpGet"]
        assert get["port"] in named, f"{kind} on an undeclared port {get['port']}"
    if has_admin():
        assert named["admin"] == int(demo_server()["admin"].rsplit(":", 1)[1]) == 9100
        assert spec["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
        assert spec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    else:  # before the admin listener: a demo route
        assert spec["livenessProbe"]["httpGet"]["port"] == "http"


def test_prometheus_annotations_name_the_admin_port(k8s: dict[str, dict[str, Any]]) -> None:
    annotations = k8s["Deployment"]["spec"]["template"]["metadata"].get("annotations", {})
    if not has_admin():
        assert "prometheus.io/scrape" not in annotations, "no /metrics without the admin listener"
        return
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == ports(k8s)["admin"]


def test_graceful_shutdown_fits_the_grace_period(k8s: dict[str, dict[str, Any]]) -> None:
    spec, pod = container(k8s), pod_spec(k8s)
    command = spec["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = int(command[1])
    graceful_timeout = 30  # gunicorn's default; [server.gunicorn] graceful_timeout would change it
    assert pre_stop >= 3
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + graceful_timeout


def test_service_selects_the_pods(k8s: dict[str, dict[str, Any]]) -> None:
    service = k8s["Service"]["spec"]
    labels = k8s["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    assert k8s["Deployment"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for port in service["ports"]:
        assert port["targetPort"] in ports(k8s)
    assert "admin" not in [p["targetPort"] for p in service["ports"]], "the admin port stays off the Service"


# -- compose -------------------------------------------------------------------------

def test_compose_file() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    (service,) = compose["services"].values()
    assert service["build"]["context"] == ".." and (DEPLOY / service["build"]["context"] / "Dockerfile").exists()
    assert "8000:8000" in service["ports"]
    assert service["stop_signal"] == "SIGTERM"
    assert int(service["stop_grace_period"].rstrip("s")) >= 30  # gunicorn's graceful_timeout
    if service.get("read_only"):
        assert "/tmp" in service["tmpfs"] and service["environment"]["XDG_RUNTIME_DIR"] == "/tmp"


def test_compose_healthcheck_is_the_images() -> None:
    (service,) = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"].values()
    healthcheck = dockerfile_instruction("HEALTHCHECK")
    options = dict(re.findall(r"--([\w-]+)=(\S+)", healthcheck))
    command = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert service["healthcheck"]["test"] == ["CMD", *command]
    for option, value in options.items():
        assert service["healthcheck"][option.replace("-", "_")] in (value, int(value) if value.isdigit() else value)
