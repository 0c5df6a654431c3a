#!/usr/bin/env python3
"""Check the rendered Kubernetes manifests for what the schemas cannot see.

Usage: check_manifests.py RENDERED.yaml [...]

For every MCP Deployment: at least 2 replicas, readiness on /readyz and
liveness on /healthz, requests and limits, runAsNonRoot, a read-only root
file system, all capabilities dropped, topology spread, a preStop pause and a
termination grace period longer than the pause plus SHUTDOWN_GRACE; a
Service, a PodDisruptionBudget and no dangling references (Services,
ConfigMaps, Secrets, HPA target, Ingress backend). Also: the namespace, a
default-deny NetworkPolicy, an HPA for the gateway.
"""

import re
import sys

import yaml

SERVICES = ("gateway", "registry-svc", "config-svc", "health-svc")


def seconds(value):
    """`25s`, `1m`, `500ms` → seconds (enough for SHUTDOWN_GRACE)."""
    m = re.fullmatch(r"(\d+)(ms|s|m)?", str(value).strip())
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2) or "s"
    return {"ms": n / 1000, "s": n, "m": n * 60}[unit]


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def check(path):
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    errors = []
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    deployments = by_kind.get("Deployment", {})
    config_maps = by_kind.get("ConfigMap", {})
    secrets = by_kind.get("Secret", {})
    services = by_kind.get("Service", {})

    if not by_kind.get("Namespace"):
        errors.append("no Namespace")
    for name in SERVICES:
        if name not in deployments:
            errors.append(f"no Deployment {name}")

    for name, d in deployments.items():
        where = f"Deployment/{name}"
        spec = d["spec"]
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"].get("labels", {})
        if spec.get("replicas", 1) < 2:
            errors.append(f"{where}: fewer than 2 replicas")
        psc = pod.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True:
            errors.append(f"{where}: runAsNonRoot is not set")
        if not pod.get("topologySpreadConstraints"):
            errors.append(f"{where}: no topologySpreadConstraints")
        for c in pod["containers"]:
            cw = f"{where} container {c['name']}"
            ready = (c.get("readinessProbe") or {}).get("httpGet", {}).get("path")
            live = (c.get("livenessProbe") or {}).get("httpGet", {}).get("path")
            if ready != "/readyz":
                errors.append(f"{cw}: readinessProbe is not GET /readyz")
            if live != "/healthz":
                errors.append(f"{cw}: livenessProbe is not GET /healthz")
            res = c.get("resources") or {}
            for part in ("requests", "limits"):
                for what in ("cpu", "memory"):
                    if what not in (res.get(part) or {}):
                        errors.append(f"{cw}: no resources.{part}.{what}")
            sc = c.get("securityContext") or {}
            if sc.get("readOnlyRootFilesystem") is not True:
                errors.append(f"{cw}: root file system is writable")
            if sc.get("allowPrivilegeEscalation") is not False:
                errors.append(f"{cw}: allowPrivilegeEscalation is not false")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                errors.append(f"{cw}: capabilities are not all dropped")
            # Graceful shutdown: preStop pause + SHUTDOWN_GRACE < grace period.
            pre = (((c.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command")
            pause = None
            if pre and pre[0] == "sleep" and len(pre) == 2:
                pause = seconds(pre[1])
            if pause is None:
                errors.append(f"{cw}: no `sleep N` preStop pause")
                pause = 0
            grace = None
            for src in c.get("envFrom") or []:
                ref = (src.get("configMapRef") or {}).get("name")
                if ref and ref not in config_maps:
                    errors.append(f"{cw}: ConfigMap {ref} does not exist")
                elif ref:
                    grace = config_maps[ref].get("data", {}).get("SHUTDOWN_GRACE", grace)
            for e in c.get("env") or []:
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref and ref["name"] in secrets:
                    if ref["key"] not in (secrets[ref["name"]].get("data") or {}):
                        errors.append(f"{cw}: Secret {ref['name']} has no key {ref['key']}")
                if e["name"] == "SHUTDOWN_GRACE":
                    grace = e.get("value", grace)
            grace_s = seconds(grace) if grace is not None else 25
            period = pod.get("terminationGracePeriodSeconds", 30)
            if grace_s is None or pause + grace_s >= period:
                errors.append(
                    f"{cw}: terminationGracePeriodSeconds {period} must exceed the "
                    f"preStop pause {pause}s + SHUTDOWN_GRACE {grace}"
                )
        if not any(
            matches(s["spec"].get("selector"), labels) for s in services.values()
        ):
            errors.append(f"{where}: no Service selects its pods")
        if not any(
            matches(p["spec"]["selector"].get("matchLabels"), labels)
            for p in by_kind.get("PodDisruptionBudget", {}).values()
        ):
            errors.append(f"{where}: no PodDisruptionBudget")

    for name, s in services.items():
        sel = s["spec"].get("selector")
        pods = [
            w["spec"]["template"]["metadata"].get("labels", {})
            for kind in ("Deployment", "StatefulSet")
            for w in by_kind.get(kind, {}).values()
        ]
        if sel and not any(matches(sel, p) for p in pods):
            errors.append(f"Service/{name}: selects no pods")

    hpas = by_kind.get("HorizontalPodAutoscaler", {}).values()
    if not any(h["spec"]["scaleTargetRef"]["name"] == "gateway" for h in hpas):
        errors.append("no HorizontalPodAutoscaler for the gateway")
    for h in hpas:
        if h["spec"]["scaleTargetRef"]["name"] not in deployments:
            errors.append(f"HPA/{h['metadata']['name']}: target does not exist")
        if h["spec"].get("minReplicas", 1) < 2:
            errors.append(f"HPA/{h['metadata']['name']}: minReplicas below 2")

    policies = by_kind.get("NetworkPolicy", {}).values()
    if not any(
        p["spec"].get("podSelector") == {} and "Ingress" in p["spec"].get("policyTypes", [])
        and not p["spec"].get("ingress")
        for p in policies
    ):
        errors.append("no default-deny ingress NetworkPolicy")

    for ing in by_kind.get("Ingress", {}).values():
        for rule in ing["spec"].get("rules", []):
            for p in rule.get("http", {}).get("paths", []):
                svc = p["backend"]["service"]
                if svc["name"] not in services:
                    errors.append(f"Ingress/{ing['metadata']['name']}: Service {svc['name']} missing")
                elif "name" in svc.get("port", {}) and svc["port"]["name"] not in [
                    port.get("name") for port in services[svc["name"]]["spec"]["ports"]
                ]:
                    errors.append(f"Ingress/{ing['metadata']['name']}: port {svc['port']} missing")
    return errors


def main():
    failed = False
    for path in sys.argv[1:]:
        errors = check(path)
        for e in errors:
            print(f"  FAIL {path}: {e}", file=sys.stderr)
        failed |= bool(errors)
    if not failed:
        print(f"  deployment policy holds in {len(sys.argv) - 1} rendered overlays")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
