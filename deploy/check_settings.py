#!/usr/bin/env python3
"""Check that every setting a deployment passes to an MCP binary is one the
binary accepts.

Reads the resolved compose file (`docker-compose config` output) and rendered
Kubernetes manifests (`kubectl kustomize` output), finds every container that
runs one of the MCP binaries, and collects the environment it gets (`env`,
`envFrom` ConfigMaps and Secrets, `valueFrom` Secret keys). Then:

1. names: each variable must appear as `[env: NAME=…]` (or `[env: NAME]`,
   for hidden values) in `BIN --help`;
2. values: each binary is started with the values (listen address replaced
   by 127.0.0.1:0) and must still run 2 seconds later (a bad value stops it
   at once with exit status 2). A value from a Secret that is not rendered
   (prod) is taken from another deployment of the same binary.

Usage: check_settings.py --bin-dir DIR [--pending BIN=NAME,NAME ...]
                         [--compose FILE ...] [--manifests FILE ...]

`--pending` lists settings that a binary is expected to grow soon: a missing
one is reported as a warning instead of a failure.
"""

import argparse
import base64
import os
import re
import subprocess
import sys
import time

import yaml

BINARIES = ("gateway", "registry-svc", "config-svc", "health-svc")
ADDR_VARS = ("GATEWAY_ADDR", "REGISTRY_ADDR", "CONFIG_ADDR", "HEALTH_ADDR")
# Settings that name a place to connect to: their hosts (compose service
# names such as `redis`) become 127.0.0.1, so starting a binary here never
# looks a name up in DNS or connects outside loopback.
URL_VARS = ("REDIS_URL", "REGISTRY_URL", "CONFIG_URL", "HEALTH_URL", "JWT_JWKS_URL",
            "REDIS_SENTINELS", "REDIS_CLUSTER_NODES")


def loopback_hosts(value):
    """`value` (a URL or a comma list of URLs or host:port) with every host 127.0.0.1."""
    out = []
    for item in value.split(","):
        scheme, sep, rest = item.partition("://")
        if not sep:
            scheme, rest = "", item
        authority, slash, path = rest.partition("/")
        userinfo, at, hostport = authority.rpartition("@")
        port = hostport.rsplit(":", 1)[1] if ":" in hostport and not hostport.endswith("]") else ""
        authority = (userinfo + at if at else "") + "127.0.0.1" + (":" + port if port else "")
        out.append((scheme + "://" if sep else "") + authority + slash + path)
    return ",".join(out)
ENV_IN_HELP = re.compile(r"\[env: ([A-Za-z_][A-Za-z0-9_]*)[=\]]")


def accepted_settings(bin_dir, binary):
    """The environment variables `binary --help` lists."""
    path = os.path.join(bin_dir, binary)
    out = subprocess.run(
        [path, "--help"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout
    return set(ENV_IN_HELP.findall(out))


def binary_of(command, image):
    """Which MCP binary a container runs, from its command (or None)."""
    if command:
        first = command[0] if isinstance(command, list) else str(command).split()[0]
        name = os.path.basename(first)
        if name in BINARIES:
            return name
    return None


def compose_targets(path):
    """(where, binary, {name: value or None}) for each compose service."""
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    targets = []
    for name, svc in (doc.get("services") or {}).items():
        binary = binary_of(svc.get("command") or svc.get("entrypoint"), svc.get("image"))
        if binary is None:
            continue
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(
                (item.split("=", 1) + [None])[:2] if "=" in item else (item, None)
                for item in env
            )
        env = {k: (None if v is None else str(v)) for k, v in env.items()}
        targets.append((f"{path}: service {name}", binary, env))
    return targets


def manifest_targets(path):
    """(where, binary, {name: value or None}) for each MCP container."""
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    config_maps = {
        d["metadata"]["name"]: {k: str(v) for k, v in (d.get("data") or {}).items()}
        for d in docs
        if d.get("kind") == "ConfigMap"
    }
    secrets = {}
    for d in docs:
        if d.get("kind") == "Secret":
            data = {
                k: base64.b64decode(v).decode("utf-8", "replace")
                for k, v in (d.get("data") or {}).items()
            }
            data.update({k: str(v) for k, v in (d.get("stringData") or {}).items()})
            secrets[d["metadata"]["name"]] = data
    targets, problems = [], []
    for d in docs:
        spec = (d.get("spec") or {}).get("template", {}).get("spec")
        if d.get("kind") == "Pod":
            spec = d.get("spec")
        if not spec:
            continue
        for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            binary = binary_of(c.get("command") or c.get("args"), c.get("image"))
            if binary is None:
                continue
            where = f"{path}: {d['kind']}/{d['metadata']['name']} container {c['name']}"
            env = {}
            for src in c.get("envFrom") or []:
                prefix = src.get("prefix", "")
                if "configMapRef" in src:
                    ref = src["configMapRef"]["name"]
                    if ref not in config_maps:
                        problems.append(f"{where}: envFrom ConfigMap {ref} is not rendered")
                        continue
                    env.update({prefix + k: v for k, v in config_maps[ref].items()})
                if "secretRef" in src:
                    ref = src["secretRef"]["name"]
                    if ref not in secrets:
                        problems.append(
                            f"{where}: envFrom Secret {ref} is not rendered, "
                            "so its keys cannot be checked (use secretKeyRef)"
                        )
                        continue
                    env.update({prefix + k: v for k, v in secrets[ref].items()})
            for e in c.get("env") or []:
                value = e.get("value")
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    value = secrets.get(ref["name"], {}).get(ref["key"])
                ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
                if ref:
                    value = config_maps.get(ref["name"], {}).get(ref["key"])
                env[e["name"]] = None if value is None else str(value)
            targets.append((where, binary, env))
    return targets, problems


def check_values(bin_dir, targets):
    """Start each binary with its values; stopping within 2 s fails.

    A value that is not rendered (a Secret made outside git, in prod) is taken
    from another deployment of the same binary that sets it (compose, dev)."""
    known = {}
    for _, binary, env in targets:
        for k, v in env.items():
            if v is not None:
                known.setdefault(binary, {}).setdefault(k, v)
    running = []
    for where, binary, env in targets:
        values = {
            k: v if v is not None else known.get(binary, {}).get(k)
            for k, v in env.items()
        }
        values = {k: v for k, v in values.items() if v is not None}
        for var in ADDR_VARS:
            if var in values:
                values[var] = "127.0.0.1:0"
        for var in URL_VARS:
            if var in values:
                values[var] = loopback_hosts(values[var])
        values.setdefault("PATH", "/usr/bin:/bin")
        # Never export traces from this check.
        values.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        proc = subprocess.Popen(
            [os.path.join(bin_dir, binary)],
            env=values,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        running.append((where, binary, proc))
    failures = []
    deadline = time.monotonic() + 2.0
    for where, binary, proc in running:
        try:
            rc = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            continue
        err = proc.stderr.read() if proc.stderr else ""
        first = next((l for l in err.splitlines() if l.strip()), f"exit status {rc}")
        if rc == 2:
            failures.append(f"{where}: {binary} rejects a value: {first.strip()}")
        else:
            failures.append(f"{where}: {binary} stopped at start ({rc}): {first.strip()}")
    for _, _, proc in running:
        if proc.stderr:
            proc.stderr.close()
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--compose", action="append", default=[])
    ap.add_argument("--manifests", action="append", default=[])
    ap.add_argument("--pending", action="append", default=[], metavar="BIN=NAME,NAME")
    args = ap.parse_args()

    pending = {}
    for item in args.pending:
        binary, _, names = item.partition("=")
        pending.setdefault(binary, set()).update(n for n in names.split(",") if n)

    accepted = {b: accepted_settings(args.bin_dir, b) for b in BINARIES}
    targets, problems = [], []
    for path in args.compose:
        targets += compose_targets(path)
    for path in args.manifests:
        t, p = manifest_targets(path)
        targets += t
        problems += p

    seen = {b: 0 for b in BINARIES}
    warnings = {}
    for where, binary, env in targets:
        seen[binary] += 1
        for name in sorted(env):
            if name in accepted[binary]:
                continue
            if name in pending.get(binary, ()):
                warnings.setdefault((binary, name), set()).add(os.path.basename(where.split(":")[0]))
                continue
            problems.append(f"{where}: {binary} does not accept {name} (not in `{binary} --help`)")
    for binary, count in seen.items():
        if count == 0 and (args.compose or args.manifests):
            problems.append(f"no deployment runs {binary}")

    problems += check_values(args.bin_dir, targets)

    for (binary, name), files in sorted(warnings.items()):
        print(f"  warning: PENDING: {binary} does not accept {name} yet ({', '.join(sorted(files))})")
    print(
        f"  checked {len(targets)} containers "
        f"({', '.join(f'{b}: {n}' for b, n in seen.items())}) against --help"
    )
    if problems:
        for p in problems:
            print(f"  FAIL {p}", file=sys.stderr)
        return 1
    print("  every setting passed is accepted by its binary")
    return 0


if __name__ == "__main__":
    sys.exit(main())
