//! `orrery doctor` with the Kubernetes backend: the API server answers and lets Orrery work in
//! its namespace, the nodes are Ready, and this machine reaches the pods' IPs (the hub talks
//! to servers and kernels there, so Orrery must run on a node or in the cluster).

use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};

use super::doctor::{check, Check, Level};
use crate::config::Config;
use crate::docker::LABEL_KIND;
use crate::kernels::KernelPorts;
use crate::spawner::kubernetes::cluster::Cluster;

/// Every Kubernetes check, in order; the first failure that makes the rest meaningless stops.
pub async fn checks(cfg: &Config) -> Vec<Check> {
    let k = &cfg.spawner.kubernetes;
    let cluster = Cluster::new(k, "");
    let mut out = Vec::new();
    let client = match cluster.client().await {
        Ok(c) => c.clone(),
        Err(e) => {
            out.push(check(
                "kubernetes",
                Level::Fail,
                e.to_string(),
                "point spawner.kubernetes.kubeconfig at a kubeconfig for the cluster (k3s: /etc/rancher/k3s/k3s.yaml)",
            ));
            return out;
        }
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), &k.namespace);
    let lp = ListParams::default().labels(&format!("{LABEL_KIND} in (notebook,kernel)"));
    let listed = match tokio::time::timeout(Duration::from_secs(10), pods.list(&lp)).await {
        Ok(Ok(l)) => l.items,
        Ok(Err(e)) => {
            out.push(check(
                "kubernetes",
                Level::Fail,
                format!("listing pods in namespace {}: {e}", k.namespace),
                "give Orrery's account the rules in packaging/kubernetes/rbac.yaml, and create the namespace (kubectl create namespace NAME)",
            ));
            return out;
        }
        Err(_) => {
            out.push(check(
                "kubernetes",
                Level::Fail,
                "the API server did not answer within 10 s",
                "check that the cluster runs (k3s: systemctl status k3s)",
            ));
            return out;
        }
    };
    out.push(check(
        "kubernetes",
        Level::Ok,
        format!(
            "the API server answers; namespace {} has {} Orrery pod(s)",
            k.namespace,
            listed.len()
        ),
        "",
    ));
    out.push(node_check(client).await);
    out.push(reach_check(&listed, cfg.spawner.docker.port).await);
    out
}

/// Whether the nodes are Ready (a warning when Orrery may not read nodes: it needs no more).
async fn node_check(client: kube::Client) -> Check {
    let nodes: Api<Node> = Api::all(client);
    match nodes.list(&ListParams::default()).await {
        Ok(list) => {
            let not_ready: Vec<String> = list
                .items
                .iter()
                .filter(|n| {
                    !n.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .filter_map(|n| n.metadata.name.clone())
                .collect();
            if list.items.is_empty() || !not_ready.is_empty() {
                check(
                    "nodes",
                    Level::Fail,
                    format!(
                        "nodes not Ready: {}",
                        if not_ready.is_empty() {
                            "(no nodes)".into()
                        } else {
                            not_ready.join(", ")
                        }
                    ),
                    "look at the node (kubectl describe node NAME; k3s: journalctl -u k3s)",
                )
            } else {
                check(
                    "nodes",
                    Level::Ok,
                    format!("{} node(s) Ready", list.items.len()),
                    "",
                )
            }
        }
        Err(e) => check(
            "nodes",
            Level::Warn,
            format!("cannot list nodes ({e})"),
            "optional: apply packaging/kubernetes/rbac-nodes.yaml to let doctor see them",
        ),
    }
}

/// Connect to every running Orrery pod's port from here: the hub must reach pod IPs.
async fn reach_check(pods: &[Pod], server_port: u16) -> Check {
    let mut tried = 0;
    let mut unreachable = Vec::new();
    for p in pods {
        let Some(status) = &p.status else { continue };
        let Some(ip) = status.pod_ip.as_deref().filter(|ip| !ip.is_empty()) else {
            continue;
        };
        if status.phase.as_deref() != Some("Running") || p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let kind = p
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_KIND))
            .map(String::as_str);
        let port = if kind == Some("kernel") {
            KernelPorts::FIXED.hb
        } else {
            server_port
        };
        let Ok(ip) = ip.parse::<std::net::IpAddr>() else {
            continue;
        };
        tried += 1;
        let addr = SocketAddr::new(ip, port);
        let ok = matches!(
            tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(addr))
                .await,
            Ok(Ok(_))
        );
        if !ok {
            unreachable.push(format!(
                "{} ({addr})",
                p.metadata.name.as_deref().unwrap_or("?")
            ));
        }
    }
    match (tried, unreachable.is_empty()) {
        (0, _) => check(
            "pod network",
            Level::Warn,
            "no running Orrery pod to try; run doctor again while a server runs",
            "",
        ),
        (n, true) => check(
            "pod network",
            Level::Ok,
            format!("this machine reaches the {n} running pod(s) at their pod IPs"),
            "",
        ),
        (_, false) => check(
            "pod network",
            Level::Fail,
            format!("cannot connect to: {}", unreachable.join(", ")),
            "the hub talks to servers and kernels at their pod IPs: run Orrery on a node of the cluster (k3s: bootstrap.sh --backend k3s) or in it (packaging/kubernetes/), and let the NetworkPolicy admit it (spawner.kubernetes.hub_cidr or hub_pod_labels)",
        ),
    }
}
