"""The checks of scripts/validate-deploy.sh that need Python packages
(PyYAML, promql-parser): run by it inside its cached venv."""

import glob
import json
import re
import sys

import promql_parser
import yaml

problems = []


def problem(where, what):
    problems.append(f"{where}: {what}")


# ---------------------------------------------------------------- config keys
def config_schema(path="src/config/model.rs"):
    """Struct name -> {field: type} from kflip's serde config model."""
    structs, cur = {}, None
    for line in open(path, encoding="utf-8"):
        m = re.match(r"pub struct (\w+) \{", line)
        if m:
            cur = structs.setdefault(m.group(1), {})
            continue
        if line.startswith("}"):
            cur = None
        m = re.match(r"\s+pub (\w+): (.+),$", line)
        if cur is not None and m:
            cur[m.group(1)] = m.group(2)
    return structs


def nested_struct(rust_type, structs):
    for name in re.findall(r"\w+", rust_type):
        if name in structs:
            return name
    return None


def check_keys(where, value, struct, structs):
    fields = structs[struct]
    if not isinstance(value, dict):
        problem(where, f"expected a mapping for {struct}")
        return
    for key, sub in value.items():
        if key not in fields:
            problem(where, f"unknown key {key!r} (not in {struct}, src/config/model.rs)")
            continue
        inner = nested_struct(fields[key], structs)
        if inner is None or sub is None:
            continue
        if fields[key].startswith("IndexMap"):
            for name, entry in sub.items():
                check_keys(f"{where}.{key}.{name}", entry, inner, structs)
        elif fields[key].startswith("Vec"):
            for i, entry in enumerate(sub):
                check_keys(f"{where}.{key}[{i}]", entry, inner, structs)
        else:
            check_keys(f"{where}.{key}", sub, inner, structs)


def check_configs():
    structs = config_schema()
    found = {}
    for path in sorted(glob.glob("deploy/kubernetes/**/*.yaml", recursive=True)):
        for doc in yaml.safe_load_all(open(path, encoding="utf-8")):
            if doc and doc.get("kind") == "ConfigMap":
                for key, text in doc.get("data", {}).items():
                    where = f"{path} {doc['metadata']['name']}/{key}"
                    cfg = yaml.safe_load(text)
                    check_keys(where, cfg, "FileConfig", structs)
                    p = cfg.get("proxy", {})
                    if p.get("active") not in cfg.get("clusters", {}):
                        problem(where, f"proxy.active {p.get('active')!r} is not a cluster")
                    if not str(cfg.get("admin", {}).get("listen", "")).endswith(":9644"):
                        problem(where, "admin.listen must be on port 9644 (probes, scrape annotations)")
                    found[doc["metadata"]["name"]] = (path, cfg)
    print(f"== kflip config keys against src/config/model.rs: {len(found)} ConfigMaps")
    return found


# ----------------------------------------------------------------- manifests
def check_workloads(configs):
    docs = []
    for path in sorted(glob.glob("deploy/kubernetes/**/*.yaml", recursive=True)):
        docs += [(path, d) for d in yaml.safe_load_all(open(path, encoding="utf-8")) if d]
    services = {d["metadata"]["name"]: d for _, d in docs if d["kind"] == "Service"}
    n = 0
    for path, d in docs:
        if d["kind"] != "Deployment":
            continue
        spec = d["spec"]["template"]["spec"]
        psc = spec.get("securityContext", {})
        if not psc.get("runAsNonRoot") or psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problem(path, "pod securityContext needs runAsNonRoot and seccomp RuntimeDefault")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            if "kflip" not in c["image"]:
                continue
            n += 1
            where = f"{path} {d['metadata']['name']}/{c['name']}"
            sc = c.get("securityContext", {})
            if not (sc.get("runAsNonRoot") and sc.get("readOnlyRootFilesystem")
                    and sc.get("allowPrivilegeEscalation") is False
                    and sc.get("capabilities", {}).get("drop") == ["ALL"]):
                problem(where, "securityContext: runAsNonRoot, readOnlyRootFilesystem, no privilege escalation, drop ALL")
            for probe, path_ in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                if c.get(probe, {}).get("httpGet", {}).get("path") != path_:
                    problem(where, f"{probe} must GET {path_}")
            res = c.get("resources", {})
            if not res.get("requests") or not res.get("limits"):
                problem(where, "resources need requests and limits")
            args = c.get("args", [])
            cfg_file = args[args.index("--config") + 1] if "--config" in args else None
            cfg = None
            for m in c.get("volumeMounts", []):
                if "subPath" in m or "subPathExpr" in m:
                    problem(where, f"mount {m['name']} uses subPath: it would never be updated")
                vol = volumes.get(m["name"], {})
                if "configMap" in vol and cfg_file and cfg_file.startswith(m["mountPath"] + "/"):
                    cm = vol["configMap"]["name"]
                    if cm not in configs:
                        problem(where, f"ConfigMap {cm} is not in deploy/kubernetes")
                    else:
                        cfg = configs[cm][1]
            if cfg is None:
                problem(where, f"--config {cfg_file} is not in a mounted ConfigMap directory")
                continue
            ports = {p["containerPort"] for p in c.get("ports", [])}
            prx = cfg.get("proxy", {})
            if not prx.get("listen", "").startswith("127.0.0.1:"):
                # A proxy on the pod network: every listener must be a declared
                # port and in a Service, and advertised_host the Service's name.
                lport = int(prx["listen"].rsplit(":", 1)[1])
                base = prx.get("broker_port_base", lport + 1)
                need = {lport} | set(range(base, base + prx.get("max_brokers", 32)))
                if need - ports:
                    problem(where, f"container ports missing: {sorted(need - ports)}")
                svc = [s for s in services.values()
                       if s["metadata"].get("namespace") == d["metadata"].get("namespace")
                       and prx.get("advertised_host", "").split(".")[0] == s["metadata"]["name"]]
                if not svc:
                    problem(where, f"no Service named after advertised_host {prx.get('advertised_host')!r}")
                else:
                    s = svc[0]
                    host = f"{s['metadata']['name']}.{s['metadata']['namespace']}."
                    if not prx["advertised_host"].startswith(host):
                        problem(where, f"advertised_host should be {host}svc...")
                    sports = {p["port"] for p in s["spec"]["ports"]}
                    if need - sports:
                        problem(f"Service {s['metadata']['name']}", f"ports missing: {sorted(need - sports)}")
            if cfg.get("replication") and args[0] in ("run", "replicate"):
                if d["spec"].get("replicas", 1) != 1 or d["spec"].get("strategy", {}).get("type") != "Recreate":
                    problem(where, "a replication engine runs as one replica with strategy Recreate")
    print(f"== kflip containers: {n} (security, probes, resources, config mount, ports vs Service)")


# --------------------------------------------------------------------- alerts
def anchors(path="docs/operations.md"):
    """GitHub's heading anchors of a Markdown file."""
    out = set()
    for line in open(path, encoding="utf-8"):
        m = re.match(r"#+\s+(.*)", line)
        if m:
            a = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(a)
    return out


def check_alerts():
    docs = anchors()
    n = 0
    for path in sorted(glob.glob("deploy/prometheus/*.yaml")):
        data = yaml.safe_load(open(path, encoding="utf-8"))
        if not isinstance(data, dict) or set(data) != {"groups"}:
            problem(path, "must hold only `groups:`")
            continue
        names = set()
        for g in data["groups"]:
            if not g.get("name") or g["name"] in names:
                problem(path, f"group without a unique name: {g.get('name')!r}")
            names.add(g.get("name"))
            for r in g.get("rules", []):
                n += 1
                a = r.get("alert") or r.get("record")
                where = f"{path} {a}"
                extra = set(r) - {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
                if extra:
                    problem(where, f"unknown rule keys {sorted(extra)}")
                try:
                    promql_parser.parse(r.get("expr", ""))
                except Exception as e:  # the parser raises ValueError
                    problem(where, f"PromQL: {e}")
                if "for" in r:
                    try:
                        promql_parser.parse_duration(r["for"])
                    except Exception as e:
                        problem(where, f"for: {e}")
                if "alert" in r:
                    ann = r.get("annotations", {})
                    for k in ("summary", "description", "runbook_url"):
                        if not ann.get(k):
                            problem(where, f"annotation {k} missing")
                    if not r.get("labels", {}).get("severity"):
                        problem(where, "label severity missing")
                    url = ann.get("runbook_url", "")
                    if not url.startswith("docs/operations.md#") or url.split("#", 1)[1] not in docs:
                        problem(where, f"runbook_url {url!r} is not an anchor of docs/operations.md")
    print(f"== alert rules: {n} rules (structure, PromQL, for, annotations, runbook anchors)")


# ------------------------------------------------------------------ dashboard
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "6h"}


def check_dashboards():
    n = 0
    for path in sorted(glob.glob("deploy/grafana/*.json")):
        try:
            dash = json.load(open(path, encoding="utf-8"))
        except ValueError as e:
            problem(path, f"not JSON: {e}")
            continue
        tmpl = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
        if tmpl.get("datasource", {}).get("type") != "datasource":
            problem(path, "no templated `datasource` variable")
        panels = []
        for p in dash.get("panels", []):
            panels += [p] + p.get("panels", [])
        for p in panels:
            if p.get("type") == "row":
                continue
            n += 1
            where = f"{path} panel {p.get('id')} {p.get('title')!r}"
            if p.get("datasource", {}).get("uid") != "${datasource}":
                problem(where, "datasource is not ${datasource}")
            targets = [t for t in p.get("targets", []) if t.get("expr", "").strip()]
            if not targets:
                problem(where, "no query")
            for t in targets:
                expr = t["expr"]
                for k, v in GRAFANA_VARS.items():
                    expr = expr.replace(k, v)
                try:
                    promql_parser.parse(expr)
                except Exception as e:
                    problem(where, f"PromQL {t['expr']!r}: {e}")
    print(f"== dashboards: {n} panels (JSON, datasource variable, a query per panel, PromQL)")


if __name__ == "__main__":
    check_workloads(check_configs())
    check_alerts()
    check_dashboards()
    for p in problems:
        print(f"   PROBLEM {p}")
    if problems:
        print(f"{len(problems)} problem(s)")
        sys.exit(1)
    print("   ok")
