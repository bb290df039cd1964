"""Spec point 9: command line (--version, --help, -t validation, -c with a bad config)."""

import json
import os
import re
import signal
import subprocess
import time

import pytest

from helpers import TORII_BIN, make_config, run_cli, upstream


def write(tmp_path, doc, name="torii.json"):
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=2))
    return str(p)


def assert_config_error(res, path, pointer, *needles):
    """Exit 1 and a `<file>: <pointer>: <problem>` line mentioning all needles."""
    assert res.returncode == 1, f"exit {res.returncode}, stderr={res.stderr!r}"
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith(f"{path}: ")]
    assert lines, f"no line starting with '{path}: ' in stderr={res.stderr!r}"
    if pointer is not None:
        lines = [ln for ln in lines if ln.startswith(f"{path}: {pointer}: ")]
        assert lines, f"no '{path}: {pointer}: <problem>' line in stderr={res.stderr!r}"
    for n in needles:
        assert any(n.lower() in ln.lower() for ln in lines), f"{n!r} not in {lines!r}"


def test_version():
    res = run_cli(["--version"])
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    assert re.search(r"\d+\.\d+\.\d+", out), f"no version number in {out!r}"
    assert "torii" in out.lower()


def test_help():
    res = run_cli(["--help"])
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    assert "-c" in out and "-t" in out, f"help does not mention -c / -t: {out!r}"


def test_validate_reference_config_ok(tmp_path):
    cfg = make_config(9001, timeouts={"drain": "30s"})
    path = write(tmp_path, cfg)
    res = run_cli(["-t", "-c", path])
    assert res.returncode == 0, f"stderr={res.stderr!r}"


def test_validate_optional_features_ok(tmp_path):
    """Exact host, wildcard host, no methods, several listeners/upstreams."""
    cfg = make_config(
        {"app": upstream(9001), "other": upstream(9002, 9003)},
        routes=[
            {"match": {"host": "api.example.com", "path_prefix": "/v1"}, "upstream": "app"},
            {"match": {"host": "*.example.com", "path_prefix": "/", "methods": ["GET", "POST"]},
             "upstream": "other"},
        ],
        listeners=[{"address": "127.0.0.1:0"}, {"address": "127.0.0.1:0"}],
    )
    res = run_cli(["-t", "-c", write(tmp_path, cfg)])
    assert res.returncode == 0, f"stderr={res.stderr!r}"


def test_validate_unknown_key_did_you_mean(tmp_path):
    cfg = make_config(9001)
    cfg["listners"] = cfg.pop("listeners")
    path = write(tmp_path, cfg)
    res = run_cli(["-t", "-c", path])
    assert_config_error(res, path, "/listners", 'did you mean "listeners"')


def test_validate_nested_unknown_key_did_you_mean(tmp_path):
    cfg = make_config(9001)
    cfg["timeouts"]["header_raed"] = cfg["timeouts"].pop("header_read")
    path = write(tmp_path, cfg)
    res = run_cli(["-t", "-c", path])
    assert_config_error(res, path, "/timeouts/header_raed", 'did you mean "header_read"')


def test_validate_wrong_type(tmp_path):
    cfg = make_config(9001, workers="two")
    path = write(tmp_path, cfg)
    res = run_cli(["-t", "-c", path])
    assert_config_error(res, path, "/workers")


def test_validate_bad_duration(tmp_path):
    cfg = make_config(9001, timeouts={"header_read": "10 parsecs"})
    path = write(tmp_path, cfg)
    res = run_cli(["-t", "-c", path])
    assert_config_error(res, path, "/timeouts/header_read")


def test_validate_bad_size(tmp_path):
    cfg = make_config(9001, limits={"max_body": "lots"})
    path = write(tmp_path, cfg)
    res = run_cli(["-t", "-c", path])
    assert_config_error(res, path, "/limits/max_body")


def test_validate_unknown_upstream(tmp_path):
    cfg = make_config(9001, routes=[{"match": {"host": "*", "path_prefix": "/"}, "upstream": "ap"}])
    path = write(tmp_path, cfg)
    res = run_cli(["-t", "-c", path])
    assert_config_error(res, path, "/routes/0/upstream", 'unknown upstream "ap" (did you mean "app"?)')


def test_validate_invalid_json(tmp_path):
    path = write(tmp_path, '{"workers": 2,, "listeners": [}\n')
    res = run_cli(["-t", "-c", path])
    assert_config_error(res, path, None)


def test_validate_missing_file(tmp_path):
    path = str(tmp_path / "does-not-exist.json")
    res = run_cli(["-t", "-c", path])
    assert res.returncode == 1, res.stderr
    assert path in res.stderr


def test_run_with_bad_config_exits_without_workers(tmp_path):
    cfg = make_config(9001)
    cfg["bogus_key"] = 1
    path = write(tmp_path, cfg)
    if not os.access(TORII_BIN, os.X_OK):
        pytest.fail(f"torii binary not found or not executable: {TORII_BIN}")
    proc = subprocess.Popen([TORII_BIN, "-c", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    t0 = time.monotonic()
    try:
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        # kill the session this test created (master and any workers it forked)
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=5)
        raise AssertionError(f"torii -c with a bad config is still running after 10s; stderr={err!r}")
    assert proc.returncode != 0, f"exit 0 with a bad config; stderr={err!r}"
    assert "worker ready" not in err and "listening" not in err, err
    assert f"{path}: /bogus_key: " in err, err
    assert time.monotonic() - t0 < 10
