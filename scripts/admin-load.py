#!/usr/bin/env python3
# The admin API under the loads of issue 28 part 4, against the real binary and a real
# redis-server; prints the daemon's RSS (the table in docs/src/operations/admin-api.md).
# Usage: scripts/admin-load.py target/debug/sluice target/plugins/payments.wasm reads|uploads|uploads-token|heads
import http.client, os, socket, subprocess, sys, threading, time, tempfile

binary, plugin, scenario = sys.argv[1], sys.argv[2], sys.argv[3]
work = tempfile.mkdtemp()
rport, aport = 16379 + os.getpid() % 1000, 19090 + os.getpid() % 1000
redis = subprocess.Popen(["redis-server", "--port", str(rport), "--save", "", "--appendonly", "no",
                          "--proto-max-bulk-len", "600mb", "--dir", work], stdout=subprocess.DEVNULL)
time.sleep(0.5)
cfg = os.path.join(work, "sluice.toml")
open(cfg, "w").write(f'''[admin]
listen = "127.0.0.1:{aport}"

[[pipeline]]
name = "payments"
plugin = "{plugin}"
input = "ORDERS_STREAM"
group = "G"
outputs = ["PAYMENTS_STREAM"]
''')
env = dict(os.environ, SLUICE_ADMIN_TOKEN="t", SLUICE_LOG="warn")
daemon = subprocess.Popen([binary, "run", "-c", cfg, "--redis", f"redis://127.0.0.1:{rport}"], env=env,
                          stderr=open(os.path.join(work, "log"), "w"))

def rss(field="VmRSS"):
    for line in open(f"/proc/{daemon.pid}/status"):
        if line.startswith(field):
            return int(line.split()[1]) // 1024
for _ in range(300):
    try:
        c = http.client.HTTPConnection("127.0.0.1", aport, timeout=2); c.request("GET", "/healthz")
        if c.getresponse().status == 200: break
    except OSError: time.sleep(0.1)
blob = b"a" * (50 << 20)
subprocess.run(["redis-cli", "-p", str(rport), "-x", "XADD", "ORDERS_STREAM:dead", "*", "sluice.error", "x", "blob"],
               input=blob, stdout=subprocess.DEVNULL, check=True)
time.sleep(1)

def get(token, out):
    c = http.client.HTTPConnection("127.0.0.1", aport, timeout=60)
    h = {"Authorization": "Bearer t"} if token else {}
    c.request("GET", "/v1/pipelines/payments/dead", headers=h)
    r = c.getresponse(); out.append((r.status, len(r.read())))

def put(token, out):
    c = http.client.HTTPConnection("127.0.0.1", aport, timeout=60)
    h = {"Authorization": "Bearer t"} if token else {}
    try:
        c.request("PUT", "/v1/plugins/payments", body=b"\0" * (8 << 20), headers=h)
        r = c.getresponse(); r.read(); out.append(r.status)
    except OSError as e:
        out.append(type(e).__name__)

def burst(fn, n, token):
    out = []
    threads = [threading.Thread(target=fn, args=(token, out)) for _ in range(n)]
    [t.start() for t in threads]; [t.join() for t in threads]
    return out

def heads(n, size):
    """n connections, each sending `size` bytes of a request head that never ends."""
    head = b"GET /v1/pipelines HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * size
    held = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", aport), timeout=2)
        try:
            s.sendall(head)
        except OSError:
            pass
        held.append(s)
    return held

print(f"{scenario}: idle RSS {rss()} MB")
if scenario == "heads":
    held = heads(2000, 400_000)
    time.sleep(1)
    print(f"2000 connections with 400 KB of unfinished headers: RSS {rss()} MB, peak {rss('VmHWM')} MB")
    started = time.time()
    c = http.client.HTTPConnection("127.0.0.1", aport, timeout=60); c.request("GET", "/healthz")
    print(f"  then /healthz: {c.getresponse().status} in {time.time() - started:.2f} s")
    [s.close() for s in held]
elif scenario == "reads":
    for token in (False, True):
        got = burst(get, 4, token)
        time.sleep(0.5)
        print(f"4 concurrent reads of a 50 MB letter, token={token}: {sorted(set(got))}; RSS {rss()} MB, peak {rss('VmHWM')} MB")
else:
    token = scenario == "uploads-token"
    got = burst(put, 24, token)
    time.sleep(0.5)
    print(f"24 concurrent 8 MiB uploads, token={token}: {__import__('collections').Counter(map(str, got))}; RSS {rss()} MB, peak {rss('VmHWM')} MB")
    time.sleep(5)
    print(f"  5 s later: RSS {rss()} MB")
daemon.terminate(); daemon.wait(); redis.terminate()
