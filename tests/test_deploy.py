"""deploy/: every file parses and carries what an operator relies on. Nothing here is
run: CI has no Docker engine or cluster (see deploy/README.md)."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
KNOWN_EXTRA = {
    "GATEWAY_APP",
    "GATEWAY_INTERFACE",
    "WEB_CONCURRENCY",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
}


def known_variables() -> set[str]:
    example = (DEPLOY.parent / ".env.example").read_text()
    return set(re.findall(r"^([A-Z0-9_]+)=", example, re.MULTILINE)) | KNOWN_EXTRA


def test_every_file_is_documented():
    """deploy/README.md names every file in deploy/."""
    readme = (DEPLOY / "README.md").read_text()
    for path in DEPLOY.iterdir():
        if path.name != "README.md":
            assert f"`{path.name}`" in readme, path.name


def test_compose():
    """compose.yaml: app gateway, MinIO and a one-shot uploader, on known settings."""
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"gateway", "minio", "uploader"} <= set(services)
    gateway = services["gateway"]
    assert gateway["environment"]["USE_S3"] == "true"
    assert gateway["environment"]["GATEWAY_LOCAL_FALLBACK"] == "true"
    assert gateway["environment"]["GATEWAY_S3_PUBLIC_ENDPOINT_URL"].startswith("http")
    assert "upload" in " ".join(services["uploader"]["command"])
    assert services["uploader"]["restart"] == "no"
    for service in services.values():
        assert set(service.get("environment", {})) <= known_variables()
    for port in gateway["ports"] + services["minio"]["ports"]:
        assert port.startswith("127.0.0.1:")


def test_kubernetes():
    """kubernetes.yaml: a Deployment with probes on the configured paths, a Service and
    a Job; the ConfigMap only sets known variables."""
    docs = {
        doc["kind"]: doc for doc in yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text())
    }
    assert {"ConfigMap", "Deployment", "Service", "Job"} <= set(docs)
    config = docs["ConfigMap"]["data"]
    assert set(config) <= known_variables()
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == config["GATEWAY_READY_PATH"]
    assert container["livenessProbe"]["httpGet"]["path"] == config["GATEWAY_LIVE_PATH"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert docs["Job"]["spec"]["template"]["spec"]["containers"][0]["command"][-1].startswith(
        "media-gateway upload"
    )


def test_dockerfile():
    """The image runs as a non-root user, with uvicorn workers and a health check."""
    text = (DEPLOY / "Dockerfile").read_text()
    user = re.search(r"^USER (\S+)$", text, re.MULTILINE)
    assert user and user[1] not in ("root", "0")
    assert re.search(r"^CMD .*media-gateway serve .*--workers", text, re.MULTILINE)
    assert "HEALTHCHECK" in text


def test_systemd_unit():
    """The unit has the three sections and runs media-gateway serve as its own user."""
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read_string((DEPLOY / "media-gateway.service").read_text())
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    assert "media-gateway serve" in unit["Service"]["ExecStart"]
    assert unit["Service"]["User"] != "root"
    assert unit["Service"]["NoNewPrivileges"] == "true"


def test_nginx_conf():
    """nginx.conf is balanced and proxies /media/ to the gateway unbuffered."""
    text = (DEPLOY / "nginx.conf").read_text()
    code = re.sub(r"#.*", "", text)
    assert code.count("{") == code.count("}")
    assert all(
        line.rstrip().endswith(("{", "}", ";")) for line in code.splitlines() if line.strip()
    )
    media = re.search(r"location /media/ \{(.*?)\}", code, re.DOTALL)[1]
    assert "proxy_pass http://media_gateway;" in media
    assert "proxy_buffering off;" in media
    assert not re.search(r"location /media/ \{[^}]*\b(alias|root)\b", code)
