"""`check --origin`: whether a bucket's CORS rules let the site's browsers PUT direct
uploads (issue 16, point 5), judged on rules as S3 applies them, and read from the real
servers: SeaweedFS keeps CORS rules; rclone has none to report, which check says."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest

from gateway.cli import main
from gateway.cors import judge, upload_headers
from tests.conftest import SECRET
from tests.s3server import S3Server
from tests.test_cli_s3 import run_check, s3_env

__all__ = ["s3_env"]  # the fixture of test_cli_s3.py, used here too

SITE = "https://www.example.com"
README_RULE: dict[str, Any] = {
    "AllowedOrigins": [SITE],
    "AllowedMethods": ["PUT"],
    "AllowedHeaders": ["Content-Type", "Cache-Control", "x-amz-*"],
    "ExposeHeaders": ["ETag"],
    "MaxAgeSeconds": 3600,
}


def test_upload_headers_are_what_the_preflight_names() -> None:
    assert upload_headers({}) == ["content-type"]
    assert upload_headers({"Cache-Control": "max-age=60", "x-amz-meta-owner": "7"}) == [
        "cache-control",
        "content-type",
        "x-amz-meta-owner",
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, "ok"),
        ({"AllowedOrigins": ["https://*.example.com"]}, "ok"),
        ({"AllowedOrigins": ["*"]}, "ok"),
        ({"AllowedHeaders": ["*"]}, "ok"),
        ({"AllowedMethods": ["put"]}, "ok"),
        ({"AllowedOrigins": ["https://example.com"]}, "refused"),
        ({"AllowedOrigins": ["http://www.example.com"]}, "refused"),
        ({"AllowedMethods": ["GET", "POST"]}, "refused"),
        ({"AllowedHeaders": ["Content-Type"]}, "refused"),  # cache-control is sent too
        ({"ExposeHeaders": []}, "no etag"),
    ],
)
def test_judge(change: dict[str, Any], expected: str) -> None:
    rule = README_RULE | change
    headers = upload_headers({"Cache-Control": "max-age=60"})
    problems, warnings = judge([rule], SITE, headers)
    if expected == "ok":
        assert (problems, warnings) == ([], [])
    elif expected == "refused":
        assert warnings == [] and len(problems) == 1
        assert problems[0].startswith(f"CORS: no rule of the bucket lets {SITE} PUT")
        assert "cache-control, content-type" in problems[0]
    else:
        assert problems == [] and "does not expose ETag" in warnings[0]


def test_the_first_matching_rule_decides() -> None:
    """S3 applies the first rule that matches the origin, method and headers."""
    narrow = README_RULE | {"ExposeHeaders": []}
    assert judge([narrow, README_RULE], SITE, ["content-type"])[1] != []
    assert judge([README_RULE, narrow], SITE, ["content-type"]) == ([], [])
    other_site = README_RULE | {"AllowedOrigins": ["https://other.example"]}
    assert judge([other_site, README_RULE], SITE, ["content-type"]) == ([], [])
    assert judge([], SITE, ["content-type"])[0] != []


@pytest.mark.parametrize("s3_server", ["seaweedfs"], indirect=True)
def test_check_reads_the_buckets_cors(
    s3_env: str, s3_server: S3Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """SeaweedFS keeps CORS rules: none is a problem (exit 1), the README's rule passes,
    a rule for another origin is a problem again."""
    code, report, _ = run_check(capsys, "--origin", SITE)
    assert code == 1
    assert any(p.startswith("CORS: no rule of the bucket") for p in report["problems"])
    with contextlib.closing(s3_server.client()) as client:
        rules: Any = [README_RULE]  # a plain dict, as a user's JSON would be
        client.put_bucket_cors(Bucket=s3_env, CORSConfiguration={"CORSRules": rules})
        code, report, _ = run_check(capsys, "--origin", SITE)
        assert (code, report["problems"]) == (0, [])
        assert report["cors_origin"] == SITE
        code, report, _ = run_check(capsys, "--origin", "https://elsewhere.example")
        assert code == 1


@pytest.mark.parametrize("s3_server", ["rclone"], indirect=True)
def test_rclone_has_no_cors_rules(s3_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    """rclone keeps no CORS rules for a bucket (GetBucketCors: none), so check fails as
    for any bucket without a rule, naming the origin and the headers."""
    code, report, _ = run_check(capsys, "--origin", SITE)
    assert code == 1
    assert report["problems"] == [
        f"CORS: no rule of the bucket lets {SITE} PUT with the headers content-type:"
        " browsers cannot upload directly; add the rule in the README's Direct uploads"
    ]


def test_check_origin_is_an_origin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["check", "--origin", "https://www.example.com/uploads"])
    assert exit_.value.code == 2
    assert "expected an origin like https://www.example.com" in capsys.readouterr().err
    monkeypatch.setenv("GATEWAY_SECRET_KEY", SECRET)
    main(["check", "--json", "--origin", SITE])  # local mode (USE_S3 unset)
    out = json.loads(capsys.readouterr().out)
    assert out["mode"] == "local"
    assert out["warnings"] == ["CORS: not needed in local mode (uploads go to the gateway)"]
