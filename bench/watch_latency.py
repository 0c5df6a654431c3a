#!/usr/bin/env python3
"""Watch notification latency with many watchers, for config-svc and etcd.

Opens WATCHERS streaming connections (config-svc SSE `/v1/watch?namespace=`
or etcd's JSON gateway `/v3/watch`), then makes PUTS writes one after another
and records, for every watcher, when each write's notification arrives.
Latency = arrival - the moment just before the write request was sent.
Standard library only (asyncio, raw HTTP/1.1 with a chunked decoder), so it
runs on a fresh machine; targets 127.0.0.1 only, bounded in count and time.

usage: watch_latency.py mcp|etcd PORT [WATCHERS] [PUTS]
prints: REPORT <deliveries> <expected> <p50 ms> <p99 ms> <max ms>
"""
import asyncio, base64, json, os, re, sys, time

KIND, PORT = sys.argv[1], int(sys.argv[2])
WATCHERS = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
PUTS = int(sys.argv[4]) if len(sys.argv) > 4 else 20
SEQ = re.compile(rb"seq-(\d+)-")
sent = {}
arrivals = []
PAD = "x" * 1000


def b64(s):
    return base64.b64encode(s.encode()).decode()


async def read_chunked(reader):
    """Yield the decoded body of a chunked response, chunk by chunk."""
    while True:
        size_line = await reader.readline()
        if not size_line:
            return
        size = int(size_line.strip().split(b";")[0] or b"0", 16)
        if size == 0:
            return
        data = await reader.readexactly(size)
        await reader.readexactly(2)
        yield data


async def watcher(ready):
    reader, writer = await asyncio.open_connection("127.0.0.1", PORT, limit=1 << 20)
    if KIND == "mcp":
        auth = os.environ["MCP_INTERNAL_AUTH"]
        writer.write(f"GET /v1/watch?namespace=bench HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nAccept: text/event-stream\r\n\r\n".encode())
    else:
        body = json.dumps({"create_request": {"key": b64("/bench/k"), "range_end": b64("/bench/l")}})
        writer.write(f"POST /v3/watch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode())
    await writer.drain()
    while (await reader.readline()) not in (b"\r\n", b""):
        pass  # response headers
    ready.release()
    buffer = b""
    async for chunk in read_chunked(reader):
        now = time.perf_counter()
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if KIND == "etcd":
                if b'"events"' not in line:
                    continue
                for event in json.loads(line).get("result", {}).get("events", []):
                    value = base64.b64decode(event["kv"].get("value", "")).decode()
                    m = SEQ.search(value.encode())
                    if m:
                        arrivals.append((int(m.group(1)), now))
            elif line.startswith(b"data:"):
                m = SEQ.search(line)
                if m:
                    arrivals.append((int(m.group(1)), now))


async def put(i):
    value = f"seq-{i}-{PAD}"
    if KIND == "mcp":
        body = json.dumps({"value": value})
        auth = os.environ["MCP_INTERNAL_AUTH"]
        request = f"PUT /v1/namespaces/bench/keys/k HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    else:
        body = json.dumps({"key": b64("/bench/k"), "value": b64(value)})
        request = f"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
    sent[i] = time.perf_counter()
    writer.write(request.encode())
    await writer.drain()
    status = await reader.readline()
    writer.close()
    if b" 200 " not in status and b" 201 " not in status:
        raise SystemExit(f"write {i} failed: {status!r}")


async def main():
    ready = asyncio.Semaphore(0)
    tasks = []
    for _ in range(WATCHERS):
        tasks.append(asyncio.create_task(watcher(ready)))
    for _ in range(WATCHERS):
        await asyncio.wait_for(ready.acquire(), 30)
    await asyncio.sleep(0.5)
    for i in range(PUTS):
        await put(i)
        await asyncio.sleep(0.1)
    deadline = time.perf_counter() + 10
    while len(arrivals) < WATCHERS * PUTS and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    for t in tasks:
        t.cancel()
    lat = sorted((at - sent[i]) * 1000 for i, at in arrivals if i in sent)
    if not lat:
        raise SystemExit("no notification arrived")
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    print(f"REPORT {len(lat)} {WATCHERS * PUTS} {pick(0.5):.2f} {pick(0.99):.2f} {lat[-1]:.2f}")


asyncio.run(main())
