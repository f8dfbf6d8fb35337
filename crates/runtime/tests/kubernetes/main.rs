//! Tests of the Kubernetes backend in layers, as kube-rs tests itself: the objects it builds
//! (snapshots, field assertions, schema validation with kubernetes-validate), its behaviour
//! against a mock API server (tower-test), the Helm chart and plain manifests (rendered offline
//! with helm-python-sdk), and — ignored unless `KUBECONFIG` is set — a real cluster.

mod cluster;
mod deploy;
mod mock;
mod names;
mod objects;
mod support;
