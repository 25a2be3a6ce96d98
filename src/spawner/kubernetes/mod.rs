//! The Kubernetes backend (issue 18), being built: so far the objects it makes
//! ([`objects`]), as pure functions with their security and GPU fields tested one by one. The
//! client that sends them (kube-rs, watches, reconcile by labels) comes next; until then
//! `spawner.backend` has no `"kubernetes"` value.

pub mod objects;
