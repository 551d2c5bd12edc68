#!/usr/bin/env python3
"""Deploys a small app N times through a `kraken up` on loopback and prints,
from each deployment's status history, the time of each phase.

Usage: scripts/deploy-phases.py PATH/TO/kraken ROUNDS

The app is a FROM-scratch image with the host's static busybox serving a
page (its own Dockerfile), in a git repository on the local disk; every
round commits a new page, deploys it, waits for Running, destroys it and
waits for Destroyed. Needs Docker and the base image named by
KRAKEN_TEST_BASE_IMAGE (default kraken-test-base:bookworm-v2)."""
import json, os, shutil, socket, subprocess, sys, tempfile, time, urllib.request
from datetime import datetime

kraken, rounds = sys.argv[1], int(sys.argv[2])
TOKEN = "phases-token-0123456789"
base = os.environ.get("KRAKEN_TEST_BASE_IMAGE", "kraken-test-base:bookworm-v2")
work = tempfile.mkdtemp(prefix="kraken-phases-")
repo = os.path.join(work, "app")
os.makedirs(os.path.join(repo, "www"))
shutil.copy("/bin/busybox", os.path.join(repo, "busybox"))
open(os.path.join(repo, "Dockerfile"), "w").write(
    'FROM scratch\nCOPY busybox /busybox\nCOPY www /www\nEXPOSE 8080\nENTRYPOINT ["/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]\n')
open(os.path.join(repo, "shipwreck.toml"), "w").write(
    '[app]\nname = "phases-%d"\n\n[config]\nport = 8080\nlang = "dockerfile"\n' % os.getpid())
def git(*a): subprocess.run(["git", "-C", repo, "-c", "user.name=m", "-c", "user.email=m@localhost", *a], check=True, capture_output=True)
git("init", "-q", "-b", "main")
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
log = open(os.path.join(work, "agent.log"), "w")
agent = subprocess.Popen([kraken, "up", "--listen", f"127.0.0.1:{port}", "--publish-ip", "127.0.0.1", "--name", "phases",
    "--token", TOKEN, "--base-image", base, "--allow-local-sources", "--no-discovery", "--data-dir", os.path.join(work, "data")],
    stdout=log, stderr=log)
server = f"http://127.0.0.1:{port}"
def call(method, path, body=None):
    req = urllib.request.Request(server + path, method=method, data=json.dumps(body).encode() if body else None,
        headers={"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r: return json.load(r)
def wait(id, wanted, within=120):
    end = time.time() + within
    while True:
        d = call("GET", f"/api/v1/deployments/{id}")
        if d["status"] in wanted: return d
        if d["status"] == "Errored": raise SystemExit(f"errored: {d.get('error')}")
        if time.time() > end: raise SystemExit(f"{id} is {d['status']}")
        time.sleep(0.02)
end = time.time() + 60
while True:
    try: call("GET", "/api/v1/deployments"); break
    except Exception:
        if time.time() > end: raise
        time.sleep(0.1)
def at(d, status):
    return next(datetime.fromisoformat(c["at"].replace("Z", "+00:00")) for c in d["status_history"] if c["status"] == status)
rows = []
try:
    for i in range(rounds):
        open(os.path.join(repo, "www", "index.html"), "w").write(f"round {i}\n")
        git("add", "-A"); git("commit", "-q", "-m", f"round {i}")
        id = call("POST", "/api/v1/deployments", {"url": "file://" + repo, "branch": "main"})["id"]
        d = wait(id, ["Running"])
        ms = lambda a, b: (at(d, b) - at(d, a)).total_seconds() * 1000
        row = (ms("RetrievingApplicationData", "DelegatingDeployment"), ms("BuildingDeployment", "Deploying"),
               ms("DeploymentRequested", "Running"))
        print(f"round {i}: orchestrator fetch {row[0]:.0f} ms, building (worker fetch + build) {row[1]:.0f} ms, requested→Running {row[2]:.0f} ms", flush=True)
        rows.append(row)
        call("DELETE", f"/api/v1/deployments/{id}")
        wait(id, ["Destroyed"])
finally:
    agent.terminate(); agent.wait(30)
    if os.environ.get("SHOWLOG"): print(open(os.path.join(work, "agent.log")).read()[-3000:])
    shutil.rmtree(work, ignore_errors=True)
import statistics
for name, k in (("orchestrator fetch", 0), ("building (worker fetch + build)", 1), ("requested→Running", 2)):
    v = sorted(r[k] for r in rows)
    print(f"{name}: median {statistics.median(v):.0f} ms, min {v[0]:.0f}, max {v[-1]:.0f}")
