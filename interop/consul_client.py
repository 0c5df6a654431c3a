"""Drives MCP's Consul-compatible API with py-consul, unmodified.

Run by e2e/tests/it/interop.rs against a real gateway stack:
MCP_GATEWAY_PORT, CONSUL_TOKEN (a JWT with registry, health and KV scopes)
and CONSUL_READ_TOKEN (registry:read only) come from the environment. Every
request is bounded; any failed expectation raises, and the exit status is
what the test checks. Talks to 127.0.0.1 only.
"""

import os
import threading
import time

import consul
from consul.exceptions import ACLPermissionDenied, ConsulException

PORT = int(os.environ["MCP_GATEWAY_PORT"])
TOKEN = os.environ["CONSUL_TOKEN"]
READ_TOKEN = os.environ["CONSUL_READ_TOKEN"]


def client(token):
    # The token goes out as X-Consul-Token, as Consul clients send it.
    return consul.Consul(host="127.0.0.1", port=PORT, token=token)


def expect(condition, what):
    if not condition:
        raise AssertionError(what)
    print(f"ok: {what}", flush=True)


def later(seconds, action):
    """Run `action` on a thread after `seconds` (to wake a blocking query)."""
    thread = threading.Timer(seconds, action)
    thread.start()
    return thread


c = client(TOKEN)

# Agent and catalog basics.
me = c.agent.self()
expect(me["Config"]["Datacenter"] == "dc1", "agent/self names the datacenter")
expect(c.catalog.datacenters() == ["dc1"], "catalog/datacenters")

# Register with a TTL check, then pass it.
expect(
    c.agent.service.register(
        "web", service_id="web-1", address="127.0.0.1", port=18080,
        tags=["v1"], meta={"zone": "a"}, check=consul.Check.ttl("30s"),
    ),
    "registered web-1 with a TTL check",
)
expect(c.agent.check.ttl_pass("service:web-1"), "passed the TTL check")

index, services = c.catalog.services()
expect(services.get("web") == ["v1"], f"catalog/services lists web with its tags: {services}")
expect(int(index) >= 1, "catalog answers X-Consul-Index")

index, nodes = c.catalog.service("web")
expect(
    [(n["ServiceID"], n["ServiceAddress"], n["ServicePort"], n["ServiceMeta"]) for n in nodes]
    == [("web-1", "127.0.0.1", 18080, {"zone": "a"})],
    f"catalog/service/web: {nodes}",
)
index, tagged = c.catalog.service("web", tag="v2")
expect(tagged == [], "catalog/service filters by tag")

index, healthy = c.health.service("web", passing=True)
expect(len(healthy) == 1, "health/service?passing lists web-1")
checks = healthy[0]["Checks"]
expect(
    [(ch["CheckID"], ch["Status"]) for ch in checks] == [("service:web-1", "passing")],
    f"the service check is passing: {checks}",
)

# A blocking health query wakes when an instance joins.
index, _ = c.health.service("web")
later(0.5, lambda: c.agent.service.register(
    "web", service_id="web-2", address="127.0.0.1", port=18081, check=consul.Check.ttl("30s")))
started = time.monotonic()
new_index, entries = c.health.service("web", index=index, wait="20s")
elapsed = time.monotonic() - started
expect(len(entries) == 2, "the blocking health query sees web-2")
expect(elapsed < 15, f"it woke on the change ({elapsed:.1f}s), not at its wait")
expect(int(new_index) > int(index), "the index moved forward")

# Scopes apply: a read-only token cannot register.
try:
    client(READ_TOKEN).agent.service.register("web", service_id="web-3", address="127.0.0.1", port=1)
    raise AssertionError("a read-only token registered a service")
except ACLPermissionDenied:
    print("ok: a read-only token is refused (403)", flush=True)

# KV with CAS.
kv = c.kv
expect(kv.put("app/color", "blue"), "kv put")
index, item = kv.get("app/color")
expect(item["Value"] == b"blue", f"kv get returns the value: {item}")
modify = item["ModifyIndex"]
expect(not kv.put("app/color", "red", cas=modify + 1000), "kv put with a stale cas fails")
expect(kv.put("app/color", "red", cas=modify), "kv put with the current cas succeeds")
expect(not kv.put("app/color", "pink", cas=modify), "the same cas cannot win twice")
expect(not kv.put("app/color", "pink", cas=0), "cas=0 only creates")
expect(kv.put("app/size", "xl", cas=0), "cas=0 creates a new key")
_, item = kv.get("app/color")
expect(item["Value"] == b"red", "the value is the CAS winner's")
_, keys = kv.get("app/", keys=True)
expect(keys == ["app/color", "app/size"], f"kv keys: {keys}")
_, items = kv.get("app/", recurse=True)
expect([i["Key"] for i in items] == ["app/color", "app/size"], "kv recurse")
_, missing = kv.get("app/nothing")
expect(missing is None, "a missing key is None (404)")

# A blocking KV query wakes on a change.
index, item = kv.get("app/color")
later(0.5, lambda: kv.put("app/color", "green"))
started = time.monotonic()
new_index, item = kv.get("app/color", index=index, wait="20s")
elapsed = time.monotonic() - started
expect(item["Value"] == b"green", "the blocking kv query returns the new value")
expect(elapsed < 15, f"it woke on the change ({elapsed:.1f}s)")
expect(int(new_index) > int(index), "the kv index moved forward")
# index=0 never blocks.
started = time.monotonic()
kv.get("app/color", index=0, wait="20s")
expect(time.monotonic() - started < 5, "index=0 does not block")

expect(kv.delete("app/size"), "kv delete")
_, gone = kv.get("app/size")
expect(gone is None, "the deleted key is gone")

# What is not supported says so (501).
try:
    c.session.list()
    raise AssertionError("sessions answered")
except ConsulException as error:
    expect("501" in str(error), f"unsupported endpoints answer 501: {error}")

# Deregister.
expect(c.agent.service.deregister("web-1"), "deregistered web-1")
_, nodes = c.catalog.service("web")
expect([n["ServiceID"] for n in nodes] == ["web-2"], "web-1 left the catalog")
print("consul client: all checks passed", flush=True)
