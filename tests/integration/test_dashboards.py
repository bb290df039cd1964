"""The Grafana dashboards in docker/grafana/dashboards/ (issue 8).

1. Structure: tests/dashboards/generate.mjs turns every dashboard into a
   TypeScript object literal checked with `satisfies` against
   @grafana/schema's Dashboard (and the narrower ToriiDashboard in
   tests/dashboards/types.ts), and `tsc --noEmit --strict` must accept them.
2. PromQL: every query (panels, annotations, the selectors of the template
   variables' label_values) goes into a rules file, one recording rule per
   expression, and `promtool check rules` must accept it.
3. Drift: every metric a query selects must be a family that a real Torii
   exports, and every label it matches or groups on must be one of that
   family's labels (or job/instance, which Prometheus adds). The gateway is
   driven through every kind of event the dashboards show first, so each
   family used has samples (a family without samples shows only HELP/TYPE,
   which is not enough to know its labels).

The queries are parsed with Prometheus's own grammar (@prometheus-io/lezer-promql,
tests/dashboards/promql.mjs). node and npm are the machine's; the npm packages
(pinned in tests/dashboards/package-lock.json) are installed with `npm ci`
when tests/dashboards/node_modules is missing.

TORII_DASHBOARDS_DIR=<dir> checks another folder of dashboards (for proving
that a broken dashboard fails).
"""

import json
import threading
import time
import os
import re
import shutil
import signal
import ssl
import subprocess
import http.client

import pytest

from helpers import (
    REPO,
    HttpConn,
    admin_port,
    build_request,
    free_port,
    make_config,
    scrape_until,
    upstream,
)

DASH_DIR = os.environ.get("TORII_DASHBOARDS_DIR", os.path.join(REPO, "docker", "grafana", "dashboards"))
CHECK_DIR = os.path.join(REPO, "tests", "dashboards")
PROMTOOL = "/usr/bin/promtool"
NPM_TIMEOUT = 300
EXPECTED = {"traffic", "upstreams", "cache", "tls", "process"}

# Grafana's built-in variables, with a value that makes a valid PromQL duration.
BUILTIN_VARS = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}
# Labels Prometheus attaches to every scraped series.
TARGET_LABELS = {"job", "instance"}
_VAR = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(.+?)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$", re.S)


def tool(name, package):
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is missing: install {package}")
    return path


def run(cmd, cwd=None, timeout=120, input=None):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, input=input,
                          stdin=None if input is not None else subprocess.DEVNULL)


# --------------------------------------------------------------------------- the dashboards

def load_dashboards():
    if not os.path.isdir(DASH_DIR):
        pytest.fail(f"no dashboards folder {DASH_DIR}")
    out = {}
    for f in sorted(os.listdir(DASH_DIR)):
        if f.endswith(".json"):
            with open(os.path.join(DASH_DIR, f)) as fh:
                out[f[:-5]] = json.load(fh)
    if not out:
        pytest.fail(f"no *.json dashboards in {DASH_DIR}")
    return out


def queries(name, dash):
    """[(where, raw PromQL, label or None)] of one dashboard: every panel target, every
    annotation query, and the selector of every label_values() variable (with its label)."""
    out = []
    for panel in dash.get("panels", []):
        for t in panel.get("targets", []):
            out.append((f"{name}: panel {panel.get('id')} {panel.get('title')!r} {t.get('refId')}", t["expr"], None))
    for a in dash.get("annotations", {}).get("list", []):
        if "target" in a and "expr" in a["target"]:
            out.append((f"{name}: annotation {a.get('name')!r}", a["target"]["expr"], None))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            m = _LABEL_VALUES.match(v["query"])
            assert m, f"{name}: variable {v['name']!r}: expected label_values(<selector>, <label>), got {v['query']!r}"
            out.append((f"{name}: variable {v['name']!r}", m.group(1), m.group(2)))
    return out


def expand(expr, defined, where):
    """Replace Grafana variables: built-ins by a duration, the dashboard's own by `.*`
    (they are only used in =~ matchers, with allValue .*). Unknown variables fail."""
    def sub(m):
        var = m.group(1) or m.group(2)
        if var in BUILTIN_VARS:
            return BUILTIN_VARS[var]
        if var not in defined:
            raise AssertionError(f"{where}: uses ${var}, which the dashboard does not define: {expr!r}")
        return ".*"
    return _VAR.sub(sub, expr)


def all_queries():
    """[(where, PromQL with variables expanded, label_values label or None)] over every dashboard."""
    out = []
    for name, dash in load_dashboards().items():
        defined = {v["name"] for v in dash.get("templating", {}).get("list", [])}
        for where, expr, label in queries(name, dash):
            out.append((where, expand(expr, defined, where), label))
    assert out, "the dashboards have no queries"
    return out


# --------------------------------------------------------------------------- node tools

@pytest.fixture(scope="module")
def node_modules():
    """tests/dashboards/node_modules, installed from the lock file when missing."""
    tool("node", "nodejs (the machine's Node.js)")
    npm = tool("npm", "npm (the machine's Node.js)")
    if not os.path.isfile(os.path.join(CHECK_DIR, "node_modules", "typescript", "bin", "tsc")):
        r = run([npm, "ci", "--no-audit", "--no-fund"], cwd=CHECK_DIR, timeout=NPM_TIMEOUT)
        assert r.returncode == 0, f"npm ci in {CHECK_DIR} failed:\n{r.stdout}\n{r.stderr}"
    return os.path.join(CHECK_DIR, "node_modules")


def parse_promql(exprs):
    """promql.mjs: for each expression, {errors, selectors: [{metric, labels}], grouping}."""
    r = run([tool("node", "nodejs"), os.path.join(CHECK_DIR, "promql.mjs")], cwd=CHECK_DIR,
            input=json.dumps(exprs), timeout=60)
    assert r.returncode == 0, f"promql.mjs failed:\n{r.stderr}"
    out = json.loads(r.stdout)
    assert len(out) == len(exprs)
    return out


# --------------------------------------------------------------------------- 1. structure

def test_dashboards_present():
    dashes = load_dashboards()
    assert EXPECTED <= set(dashes), f"missing dashboards: {sorted(EXPECTED - set(dashes))} in {DASH_DIR}"
    uids = [d.get("uid") for d in dashes.values()]
    assert len(set(uids)) == len(uids), f"duplicate dashboard uids: {uids}"
    for name, d in dashes.items():
        ids = [p["id"] for p in d["panels"]]
        assert len(set(ids)) == len(ids), f"{name}: duplicate panel ids"
        taken = {}
        for p in d["panels"]:
            g = p["gridPos"]
            assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, f"{name}: {p['title']!r} outside 24 columns"
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in taken, f"{name}: {p['title']!r} overlaps {taken[(x, y)]!r}"
                    taken[(x, y)] = p["title"]


def test_dashboards_typecheck_against_grafana_schema(node_modules):
    r = run([tool("node", "nodejs"), os.path.join(CHECK_DIR, "generate.mjs"), DASH_DIR], cwd=CHECK_DIR)
    assert r.returncode == 0, f"generate.mjs failed:\n{r.stdout}\n{r.stderr}"
    r = run([tool("npx", "npm"), "--no-install", "tsc", "--noEmit", "--strict", "-p", CHECK_DIR], cwd=CHECK_DIR)
    assert r.returncode == 0, (
        "tsc rejects a dashboard (generated/<name>.ts line N is line N of <name>.json):\n"
        f"{r.stdout}\n{r.stderr}")


# --------------------------------------------------------------------------- 2. promtool

def test_promql_passes_promtool_check_rules(tmp_path):
    if not os.access(PROMTOOL, os.X_OK):
        pytest.fail(f"{PROMTOOL} is missing (apt-get install -y prometheus)")
    rules = []
    for i, (where, expr, _) in enumerate(all_queries()):
        rules.append({"record": f"torii_dashboard:query:{i}", "expr": expr, "labels": {"where": where}})
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboards", "rules": rules}]}, indent=1))  # JSON is YAML
    r = run([PROMTOOL, "check", "rules", str(path)], timeout=60)
    assert r.returncode == 0, f"promtool check rules {path} failed:\n{r.stdout}\n{r.stderr}"
    assert f"SUCCESS: {len(rules)} rules found" in r.stdout, r.stdout


# --------------------------------------------------------------------------- 3. drift against a real Torii

ADMIN_TOKEN = "dashboard-drift-test-token"


def self_signed(folder):
    """A self-signed EC certificate for 127.0.0.1 and 127.0.0.2 (also the client's trust anchor)."""
    folder.mkdir(parents=True, exist_ok=True)
    r = run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "key.pem", "-out", "cert.pem", "-days", "2", "-subj", "/CN=torii.test",
             "-addext", "subjectAltName=DNS:torii.test,IP:127.0.0.1,IP:127.0.0.2"], cwd=folder, timeout=30)
    assert r.returncode == 0, f"openssl failed: {r.stderr}"
    return folder / "cert.pem", folder / "key.pem"


def https_get(port, cafile, path, version):
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.minimum_version = ctx.maximum_version = version
    conn = http.client.HTTPSConnection("127.0.0.2", port, context=ctx, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": "app.test"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def get(port, target, host="app.test", method="GET", headers=None, body=b""):
    with HttpConn(port, timeout=5) as c:
        c.request(method, target, host=host, headers=headers, body=body)
        return c.read_response(method=method)


def families(m):
    """({family: set of label names seen on its samples}, families with samples);
    a histogram's `le` (on _bucket) is included."""
    labels = {name: set() for name in m.types}
    sampled = set()
    for (sample, items), _ in m.samples.items():
        fam = m.family_of(sample)
        assert fam is not None, f"sample {sample} has no family"
        labels[fam] |= {k for k, _ in items}
        sampled.add(fam)
    return labels, sampled


def family_of_selector(m, metric):
    """The exported family a selected metric name belongs to, or None."""
    if metric in m.types and m.types[metric] != "histogram":
        return metric
    for suffix in ("_bucket", "_count", "_sum"):
        if metric.endswith(suffix) and m.types.get(metric[: -len(suffix)]) == "histogram":
            return metric[: -len(suffix)]
    return None


@pytest.fixture
def busy_gateway(torii, origin, raw_upstream, tmp_path):
    """A 1-worker Torii (plain + TLS listener, admin with a token) after traffic that makes every
    family the dashboards use appear: proxied 2xx/4xx/5xx, unrouted 404, a cached route with
    pre-warm, hits, stores, evictions and a purge, a dead upstream (connect_error), a keep-alive
    race (retry), TLS 1.2 and 1.3 handshakes and plain HTTP on the TLS port, a worker restart,
    active health checks, an outlier ejection and a circuit-breaker rejection."""
    cert, key = self_signed(tmp_path / "tls")
    race = raw_upstream("ka-race-fin")
    app = upstream(origin.port)
    app["health_check"] = {"path": "/count/health", "interval": "200ms", "timeout": "150ms"}
    dead = upstream(free_port(), connect_timeout="2s")
    dead["outlier_detection"] = {"consecutive_connect_failures": 1, "max_ejected_percent": 100}
    capped = upstream(origin.port)
    capped["max_requests"] = 1
    cfg = make_config(
        {"app": app, "dead": dead, "race": upstream(race.port), "capped": capped},
        routes=[
            {"name": "cached", "match": {"host": "app.test", "path_prefix": "/cache/"}, "upstream": "app",
             "cache": {"ttl": "60s", "prewarm": ["/cache/warm"]}},
            {"name": "app", "match": {"host": "app.test"}, "upstream": "app"},
            {"name": "dead", "match": {"host": "dead.test"}, "upstream": "dead"},
            {"name": "racy", "match": {"host": "race.test"}, "upstream": "race"},
            {"name": "capped", "match": {"host": "capped.test"}, "upstream": "capped"},
        ],
        workers=1,
        listeners=[{"address": "127.0.0.1:0"},
                   # 127.0.0.2: checked with the client's SNI-less requests on its own address
                   {"address": "127.0.0.2:0", "tls": {"certificates": [{"cert": str(cert), "key": str(key)}]}}],
        admin={"address": "127.0.0.1:0", "token": ADMIN_TOKEN},
        cache={"memory": "1MiB"},
    )
    t = torii(cfg)
    t.admin = admin_port(t)
    plain, tls_port = t.ports
    assert get(plain, "/echo").status == 200
    assert get(plain, "/echo", method="POST", body=b"x" * 1000).status == 200
    assert get(plain, "/status/404").status == 404
    assert get(plain, "/status/503").status == 503
    assert get(plain, "/x", host="nobody.test").status == 404  # no route
    for _ in range(2):
        assert get(plain, "/cache/a").status == 200  # miss, then hit
    assert get(plain, "/cache/warm").header("Cache-Status") is not None
    with HttpConn(t.admin, timeout=5) as c:
        c.send(build_request("POST", "/cache/purge", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                             body=b'{"prefix": "/cache/a"}', host="127.0.0.1"))
        r = c.read_response()
        assert r.status == 200 and json.loads(r.body)["purged"] == 1, r
    for i in range(4):  # 4 x 300 KB > the worker's 1 MiB: evictions
        assert get(plain, f"/cache/big{i}?size=300000").status == 200
    assert get(plain, "/x", host="dead.test").status == 502
    slow = threading.Thread(target=lambda: get(plain, "/delay?ms=800", host="capped.test"))
    slow.start()  # holds the capped upstream's one request slot ...
    time.sleep(0.3)
    assert get(plain, "/echo", host="capped.test").status == 503  # ... so this one is refused
    slow.join(5)
    with HttpConn(plain, timeout=5) as c:  # the race upstream closes every reused connection: retries
        for i in range(3):
            c.request("GET", f"/item/{i}", host="race.test")
            assert c.read_response().status == 200
    assert https_get(tls_port, cert, "/echo", ssl.TLSVersion.TLSv1_3) == 200
    assert https_get(tls_port, cert, "/echo", ssl.TLSVersion.TLSv1_2) == 200
    with HttpConn(tls_port, timeout=5, host="127.0.0.2") as c:  # plain HTTP on the TLS port
        c.request("GET", "/echo", host="app.test")
        assert c.read_response().status == 400
    victim = t.ready_workers()["0"]
    os.kill(victim, signal.SIGKILL)
    want = ("torii_worker_restarts_total", "torii_cache_purged_total", "torii_cache_evictions_total",
            "torii_upstream_retries_total", "torii_upstream_health_checks_total",
            "torii_upstream_ejections_total", "torii_upstream_rejected_total")
    m = scrape_until(t.admin, lambda m: (all(m.sum(f) >= 1 for f in want)
                                         and m.sum("torii_workers", state="running") == 1), timeout=10)
    for f in want:
        assert m.sum(f) >= 1, f"{f} did not count:\n{m.text}"
    return m


def test_dashboard_metrics_exist_in_a_real_scrape(busy_gateway, node_modules):
    m = busy_gateway
    fams, sampled = families(m)
    found = [(where, expr, label) for where, expr, label in all_queries()]
    parsed = parse_promql([expr for _, expr, _ in found])
    problems = []
    used = set()
    for (where, expr, label), p in zip(found, parsed):
        if p["errors"]:
            problems.append(f"{where}: PromQL syntax error at offset(s) {p['errors']}: {expr!r}")
            continue
        if not p["selectors"]:
            problems.append(f"{where}: selects no metric: {expr!r}")
        labels_here = set(TARGET_LABELS)
        for sel in p["selectors"]:
            metric = sel["metric"]
            if metric is None:
                problems.append(f"{where}: a selector without a metric name ({{__name__=...}}): {expr!r}")
                continue
            fam = family_of_selector(m, metric)
            if fam is None:
                problems.append(f"{where}: {metric} is not exported by Torii")
                continue
            used.add(fam)
            have = fams[fam] | TARGET_LABELS
            labels_here |= have
            if fam not in sampled:
                problems.append(f"{where}: {fam} has no samples in the scrape, so its labels cannot be checked "
                                f"(the fixture should produce it)")
                continue
            for lbl in sel["labels"]:
                if lbl not in have:
                    problems.append(f"{where}: {metric} has no label {lbl!r} (it has {sorted(fams[fam])})")
        for lbl in p["grouping"]:
            if lbl not in labels_here:
                problems.append(f"{where}: groups by {lbl!r}, which none of its metrics has: {expr!r}")
        if label is not None and label not in labels_here:
            problems.append(f"{where}: label_values(..., {label}): its metric has no label {label!r}")
    assert not problems, "dashboards drifted from what Torii exports:\n" + "\n".join(problems) + \
        f"\n\nexported families: {sorted(fams)}"
    assert used, "no dashboard query uses a Torii metric"
