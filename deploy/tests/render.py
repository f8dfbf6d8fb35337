#!/usr/bin/env python3
"""Renders the Helm chart offline with helm-python-sdk (Helm v4's renderer; no cluster, no helm
binary) for its default values and each deploy/helm/sandbox/ci/*-values.yaml, lints it, and
checks that deploy/manifests/sandbox.yaml is the chart rendered with ci/manifests-values.yaml.
The Rust test crates/runtime/tests/kubernetes/deploy.rs runs this and checks the output
(including kubernetes-validate on every object).

usage: render.py                     render and lint; print the report as JSON
       render.py --write-manifests   regenerate deploy/manifests/sandbox.yaml

The report:
  {"helm": VERSION,
   "variants": {NAME: {"objects": [...], "config": {parsed config.toml}, "lint": {...}}},
   "manifests": {"objects": [...], "current": BOOL}}
with a variant for the default values and one per ci/NAME-values.yaml.
Exit status 3 when a Python tool is missing; the message says how to install it."""
import json
import pathlib
import sys
import tomllib

try:
    import helm_python
    import yaml
except ImportError as e:  # pragma: no cover - the message is the point
    sys.stderr.write(
        "render.py: %s. Install the chart tools with scripts/test-tools.sh, or by hand:\n"
        "  /var/cache/sandbox-tools/venv/bin/pip install helm-python-sdk==0.2.2 kubernetes-validate==1.37.0\n" % e
    )
    sys.exit(3)

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy/helm/sandbox"
MANIFESTS = ROOT / "deploy/manifests/sandbox.yaml"
RELEASE, NAMESPACE = "sandbox", "sandbox-system"
KUBE_VERSION = "v1.34.0"
HEADER = (
    "# Generated from deploy/helm/sandbox with ci/manifests-values.yaml (release \"sandbox\" in namespace\n"
    "# \"sandbox-system\") by deploy/tests/render.py --write-manifests; do not edit by hand.\n"
    "# Create the Secret sandbox-secrets first (docs/kubernetes.md), then: kubectl apply -k deploy/manifests\n"
)


def variants():
    yield "default", {}
    for path in sorted((CHART / "ci").glob("*-values.yaml")):
        yield path.name[: -len("-values.yaml")], yaml.safe_load(path.read_text()) or {}


def render(chart, values):
    """The rendered documents as (template path, text), in a stable order, without NOTES."""
    out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for path in sorted(out):
        if path.endswith("NOTES.txt"):
            continue
        for text in out[path].split("\n---\n"):
            text = text.strip("\n") + "\n"
            if yaml.safe_load(text):
                docs.append((path, text))
    # Namespaces first, so `kubectl apply -f` of the manifests works in one pass.
    return sorted(docs, key=lambda d: yaml.safe_load(d[1])["kind"] != "Namespace")


def manifest_text(docs):
    parts = ["# Source: %s\n%s" % (path, text.split("\n", 1)[1] if text.startswith("---") else text)
             for path, text in docs]
    return HEADER + "---\n" + "---\n".join(parts)


def main(argv):
    if argv == ["--write-manifests"]:
        with helm_python.Chart.load(str(CHART)) as chart:
            values = yaml.safe_load((CHART / "ci/manifests-values.yaml").read_text())
            MANIFESTS.write_text(manifest_text(render(chart, values)))
        print("wrote %s" % MANIFESTS.relative_to(ROOT))
        return 0
    if argv:
        sys.stderr.write(__doc__)
        return 2
    report = {"helm": helm_python.helm_sdk_version(), "variants": {}}
    current = False
    with helm_python.Chart.load(str(CHART)) as chart:
        for name, values in variants():
            docs = render(chart, values)
            objects = [yaml.safe_load(text) for _, text in docs]
            config = next(o for o in objects if o["kind"] == "ConfigMap" and "config.toml" in o.get("data", {}))
            lint = helm_python.lint(str(CHART), values, strict=True, namespace=NAMESPACE, kube_version=KUBE_VERSION)
            report["variants"][name] = {
                "objects": objects,
                "config": tomllib.loads(config["data"]["config.toml"]),
                "lint": lint,
            }
            if name == "manifests":
                current = MANIFESTS.exists() and MANIFESTS.read_text() == manifest_text(docs)
    try:
        plain = [o for o in yaml.safe_load_all(MANIFESTS.read_text()) if o]
    except (OSError, yaml.YAMLError) as e:
        sys.stderr.write("render.py: cannot read %s: %s\n" % (MANIFESTS, e))
        plain, current = [], False
    report["manifests"] = {"objects": plain, "current": current}
    json.dump(report, sys.stdout, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
