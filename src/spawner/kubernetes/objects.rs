//! The Kubernetes objects Orrery makes, as pure functions of what it wants (k8s-openapi's typed
//! objects): a pod per notebook server and per remote kernel, a PVC per user's home, a Secret
//! per kernel connection file, and the NetworkPolicy that keeps users' pods apart. Names are
//! DNS labels made from user and server names (`crate::origins::label`: readable, unique, and
//! hashed when a name is not a label by itself); labels use the Docker backend's vocabulary
//! (`org.orrery.kind`, `.user`, `.server`, `.kernel`, `.hub`), so reconcile selects by the same
//! keys on both.
//!
//! Every pod is locked down the same way: non-root (the image's user, or `run_as`), all
//! capabilities dropped, no privilege escalation, seccomp `RuntimeDefault`, no service account
//! token mounted. GPUs: with node-local leases (Orrery's NVML scheduler on a single node) a pod
//! gets `runtimeClassName: nvidia` and `NVIDIA_VISIBLE_DEVICES` = its leased UUIDs, and every
//! other pod `NVIDIA_VISIBLE_DEVICES=void`; on a cluster the device plugin places
//! `nvidia.com/gpu` requests instead.
//!
//! Groundwork of the Kubernetes backend (issue 18): the backend that sends these to an API
//! server is not built yet, and `spawner.backend = "kubernetes"` does not exist yet.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, LocalObjectReference, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec,
    ResourceRequirements, SeccompProfile, Secret, SecretVolumeSource, SecurityContext, Volume,
    VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;

use crate::docker::{LABEL_HUB, LABEL_KERNEL, LABEL_KIND, LABEL_SERVER, LABEL_USER};

/// The GPU resource the NVIDIA device plugin offers.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";
/// Where a kernel's connection file is mounted (read-only, from its Secret).
pub const CONNECTION_DIR: &str = "/etc/orrery-kernel";
/// The key of the connection file in a kernel's Secret.
pub const CONNECTION_KEY: &str = "connection.json";

/// How a pod gets GPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gpus {
    /// None: the pod sees no GPU (`NVIDIA_VISIBLE_DEVICES=void`).
    None,
    /// Units Orrery leased on this node (NVML): exactly these, through the nvidia runtime.
    Leased(Vec<String>),
    /// This many, placed by the cluster's device plugin.
    DevicePlugin(u32),
}

/// What a pod is for and what it runs.
#[derive(Debug, Clone)]
pub struct PodPlan {
    /// `notebook` or `kernel`.
    pub kind: &'static str,
    pub user: String,
    /// The named server ("" for the default), also for a kernel (the server it belongs to).
    pub server: String,
    /// A kernel's id (kernel pods only).
    pub kernel: Option<String>,
    /// Tells a kernel's pods apart across its starts (a reclaimed kernel is re-created while
    /// its old pod may still be terminating); empty for servers.
    pub name_suffix: String,
    /// The hub's instance id: pods of another hub are never touched.
    pub instance: String,
    pub image: String,
    /// Replaces the image's `CMD` (the pod's `args`) if not empty; the image's entrypoint
    /// (docker-stacks' tini) stays, as with Docker.
    pub args: Vec<String>,
    /// The working directory (kernels: `KERNEL_WORKING_DIR`); `None`: the image's.
    pub working_dir: Option<String>,
    pub env: BTreeMap<String, String>,
    pub port: u16,
    pub home_mount: String,
    /// Further PVCs to mount: `(claim, mount path, read-only)`.
    pub extra_claims: Vec<(String, String, bool)>,
    pub memory_limit: Option<u64>,
    pub cpu_limit: Option<f64>,
    pub gpus: Gpus,
    /// `(uid, gid)` to run as (the gid is also the pod's `fsGroup`, which makes the home and
    /// the connection Secret readable); `None`: the image's user (which must not be root).
    pub run_as: Option<(i64, i64)>,
    pub image_pull_secrets: Vec<String>,
    /// The RuntimeClass of pods holding leased GPUs (the NVIDIA container runtime).
    pub runtime_class: String,
}

/// `s` as a label value (at most 63 of `[A-Za-z0-9._-]`, alphanumeric at both ends): itself
/// when it is one, else a readable hashed label. The exact names are in the annotations.
pub fn label_value(s: &str) -> String {
    let ok = s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && s.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric());
    if ok {
        s.to_string()
    } else {
        crate::origins::label(s, "")
    }
}

/// The exact user and server names of an object (labels may hold hashed forms).
pub fn annotations(user: &str, server: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_USER.to_string(), user.to_string()),
        (LABEL_SERVER.to_string(), server.to_string()),
    ])
}

/// The labels of an object Orrery makes.
pub fn labels(
    kind: &str,
    user: &str,
    server: &str,
    kernel: Option<&str>,
    instance: &str,
) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        (LABEL_KIND.to_string(), kind.to_string()),
        (LABEL_USER.to_string(), label_value(user)),
        (LABEL_SERVER.to_string(), label_value(server)),
        (LABEL_HUB.to_string(), label_value(instance)),
    ]);
    if let Some(k) = kernel {
        l.insert(LABEL_KERNEL.to_string(), label_value(k));
    }
    l
}

/// `orrery-<label>` for a notebook server's pod.
pub fn server_pod_name(user: &str, server: &str) -> String {
    format!("orrery-{}", crate::origins::label(user, server))
}

/// `orrery-kernel-<id>[-<suffix>]` for a kernel's pod (and its Secret).
pub fn kernel_pod_name(kernel: &str, suffix: &str) -> String {
    let id = crate::origins::label(kernel, "");
    if suffix.is_empty() {
        format!("orrery-kernel-{id}")
    } else {
        format!("orrery-kernel-{id}-{suffix}")
    }
}

/// `orrery-home-<label>` for a user's home PVC.
pub fn home_pvc_name(user: &str) -> String {
    format!("orrery-home-{}", crate::origins::label(user, ""))
}

fn quantity(s: String) -> Quantity {
    Quantity(s)
}

/// The pod for `plan`, mounting `user`'s home PVC (and a kernel's connection Secret).
pub fn pod(plan: &PodPlan) -> Pod {
    let name = match &plan.kernel {
        Some(k) => kernel_pod_name(k, &plan.name_suffix),
        None => server_pod_name(&plan.user, &plan.server),
    };
    let mut env: Vec<EnvVar> = plan
        .env
        .iter()
        .map(|(k, v)| EnvVar {
            name: k.clone(),
            value: Some(v.clone()),
            ..Default::default()
        })
        .collect();
    let visible = match &plan.gpus {
        Gpus::Leased(units) if !units.is_empty() => units.join(","),
        Gpus::DevicePlugin(n) if *n > 0 => String::new(),
        _ => "void".to_string(),
    };
    env.retain(|e| e.name != "NVIDIA_VISIBLE_DEVICES");
    if !visible.is_empty() {
        env.push(EnvVar {
            name: "NVIDIA_VISIBLE_DEVICES".into(),
            value: Some(visible),
            ..Default::default()
        });
    }
    let mut limits = BTreeMap::new();
    if let Some(m) = plan.memory_limit {
        limits.insert("memory".to_string(), quantity(m.to_string()));
    }
    if let Some(c) = plan.cpu_limit {
        limits.insert(
            "cpu".to_string(),
            quantity(format!("{}m", (c * 1000.0).round() as u64)),
        );
    }
    if let Gpus::DevicePlugin(n) = plan.gpus {
        if n > 0 {
            limits.insert(GPU_RESOURCE.to_string(), quantity(n.to_string()));
        }
    }
    let mut volumes = vec![Volume {
        name: "home".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: home_pvc_name(&plan.user),
            read_only: Some(false),
        }),
        ..Default::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "home".into(),
        mount_path: plan.home_mount.clone(),
        ..Default::default()
    }];
    for (i, (claim, target, read_only)) in plan.extra_claims.iter().enumerate() {
        let name = format!("extra-{i}");
        volumes.push(Volume {
            name: name.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: Some(*read_only),
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name,
            mount_path: target.clone(),
            read_only: Some(*read_only),
            ..Default::default()
        });
    }
    if plan.kernel.is_some() {
        volumes.push(Volume {
            name: "connection".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(name.clone()),
                // Owner root, group the pod's fsGroup: the kernel's user reads it.
                default_mode: Some(0o440),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "connection".into(),
            mount_path: CONNECTION_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    let container = Container {
        name: plan.kind.to_string(),
        image: Some(plan.image.clone()),
        args: (!plan.args.is_empty()).then(|| plan.args.clone()),
        working_dir: plan.working_dir.clone(),
        env: Some(env),
        // A kernel's five ports are in its connection file; a server's one is named.
        ports: (plan.port != 0).then(|| {
            vec![ContainerPort {
                container_port: i32::from(plan.port),
                name: Some("http".into()),
                ..Default::default()
            }]
        }),
        resources: Some(ResourceRequirements {
            requests: (!limits.is_empty()).then(|| limits.clone()),
            limits: (!limits.is_empty()).then_some(limits),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    };
    let (run_as_user, run_as_group) = match plan.run_as {
        Some((u, g)) => (Some(u), Some(g)),
        None => (None, None),
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            annotations: Some({
                let mut notes = annotations(&plan.user, &plan.server);
                if let Some(k) = &plan.kernel {
                    notes.insert(LABEL_KERNEL.to_string(), k.clone());
                }
                notes
            }),
            labels: Some(labels(
                plan.kind,
                &plan.user,
                &plan.server,
                plan.kernel.as_deref(),
                &plan.instance,
            )),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            restart_policy: Some("Never".into()),
            // As `docker stop -t 10`: the server saves what it can, then it is killed.
            termination_grace_period_seconds: Some(10),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            runtime_class_name: matches!(&plan.gpus, Gpus::Leased(u) if !u.is_empty())
                .then(|| plan.runtime_class.clone()),
            image_pull_secrets: (!plan.image_pull_secrets.is_empty()).then(|| {
                plan.image_pull_secrets
                    .iter()
                    .map(|s| LocalObjectReference { name: s.clone() })
                    .collect()
            }),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user,
                run_as_group,
                fs_group: run_as_group,
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    localhost_profile: None,
                }),
                ..Default::default()
            }),
            volumes: Some(volumes),
            ..Default::default()
        }),
        status: None,
    }
}

/// `user`'s home: a PVC of `size` in `storage_class` (empty: the cluster's default; k3s's is
/// local-path). ReadWriteOnce: kernels on other nodes need a ReadWriteMany class.
pub fn home_pvc(
    user: &str,
    instance: &str,
    storage_class: &str,
    size: &str,
    many: bool,
) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(home_pvc_name(user)),
            labels: Some(labels("home", user, "", None, instance)),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec![if many {
                "ReadWriteMany"
            } else {
                "ReadWriteOnce"
            }
            .into()]),
            storage_class_name: (!storage_class.is_empty()).then(|| storage_class.to_string()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    quantity(size.to_string()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// A kernel's connection file as a Secret: mounted read-only into the kernel's pod only, so
/// its key never reaches the notebook pod.
pub fn connection_secret(
    name: &str,
    kernel: &str,
    user: &str,
    server: &str,
    instance: &str,
    connection_json: &str,
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            annotations: Some(annotations(user, server)),
            labels: Some(labels("kernel", user, server, Some(kernel), instance)),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            CONNECTION_KEY.to_string(),
            ByteString(connection_json.as_bytes().to_vec()),
        )])),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

/// The hub's pods' ingress rule: only `hub` (the pods Orrery runs in, by label, or the node
/// Orrery runs on, by address) may connect to a user's pods, so users' pods cannot reach each
/// other. (Egress to the hub stays open: the hub's own pods are not selected.)
pub fn isolation_policy(instance: &str, hub: &HubPeer, ports: &[u16]) -> NetworkPolicy {
    let peer = match hub {
        HubPeer::Pods(labels) => NetworkPolicyPeer {
            pod_selector: Some(LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            }),
            ..Default::default()
        },
        HubPeer::Address(cidr) => NetworkPolicyPeer {
            ip_block: Some(k8s_openapi::api::networking::v1::IPBlock {
                cidr: cidr.clone(),
                except: None,
            }),
            ..Default::default()
        },
    };
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(format!("orrery-isolation-{instance}")),
            labels: Some(BTreeMap::from([(
                LABEL_HUB.to_string(),
                instance.to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    LABEL_HUB.to_string(),
                    instance.to_string(),
                )])),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![peer]),
                // No ports: every port (a kernel's five and a server's one).
                ports: (!ports.is_empty()).then(|| {
                    ports
                        .iter()
                        .map(|p| NetworkPolicyPort {
                            port: Some(IntOrString::Int(i32::from(*p))),
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        })
                        .collect()
                }),
            }]),
            ..Default::default()
        }),
    }
}

/// Who may reach users' pods: the hub's own pods (Orrery in the cluster), or the hub's node
/// address (Orrery on a node).
#[derive(Debug, Clone)]
pub enum HubPeer {
    Pods(BTreeMap<String, String>),
    Address(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(kind: &'static str, gpus: Gpus) -> PodPlan {
        PodPlan {
            kind,
            user: "alice".into(),
            server: String::new(),
            kernel: (kind == "kernel").then(|| "0f3a".to_string()),
            name_suffix: String::new(),
            instance: "inst-1".into(),
            image: "quay.io/jupyter/base-notebook:2025-01-01".into(),
            args: Vec::new(),
            working_dir: None,
            env: BTreeMap::from([("JUPYTERHUB_USER".to_string(), "alice".to_string())]),
            port: 8888,
            home_mount: "/home/jovyan".into(),
            extra_claims: Vec::new(),
            memory_limit: Some(2 * 1024 * 1024 * 1024),
            cpu_limit: Some(1.5),
            gpus,
            run_as: None,
            image_pull_secrets: vec!["registry-creds".into()],
            runtime_class: "nvidia".into(),
        }
    }

    /// The first container's resource limits.
    fn limits_of(spec: &PodSpec) -> BTreeMap<String, Quantity> {
        spec.containers[0]
            .resources
            .as_ref()
            .and_then(|r| r.limits.clone())
            .unwrap_or_default()
    }

    fn env(pod: &Pod, name: &str) -> Option<String> {
        pod.spec.as_ref().unwrap().containers[0]
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    }

    #[test]
    fn every_pod_is_locked_down_field_by_field() {
        let p = pod(&plan("notebook", Gpus::None));
        assert_eq!(p.metadata.name.as_deref(), Some("orrery-alice"));
        let spec = p.spec.as_ref().unwrap();
        let psc = spec.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true), "non-root pod");
        assert_eq!(
            psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
            Some("RuntimeDefault")
        );
        assert_eq!(
            spec.automount_service_account_token,
            Some(false),
            "no API token in the pod"
        );
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(
            spec.runtime_class_name, None,
            "no nvidia runtime without a lease"
        );
        let c = &spec.containers[0];
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.privileged, Some(false));
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(
            sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_string()])
        );
        assert_eq!(sc.capabilities.as_ref().and_then(|c| c.add.clone()), None);
        assert_eq!(env(&p, "NVIDIA_VISIBLE_DEVICES").as_deref(), Some("void"));
        let limits = c.resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert_eq!(limits["memory"].0, "2147483648");
        assert_eq!(limits["cpu"].0, "1500m");
        assert!(!limits.contains_key(GPU_RESOURCE));
        assert_eq!(
            spec.image_pull_secrets.as_ref().unwrap()[0].name,
            "registry-creds"
        );
        let labels = p.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_KIND], "notebook");
        assert_eq!(labels[LABEL_USER], "alice");
        assert_eq!(labels[LABEL_HUB], "inst-1");
        // The home PVC is mounted at the home.
        let home = &spec.volumes.as_ref().unwrap()[0];
        assert_eq!(
            home.persistent_volume_claim.as_ref().unwrap().claim_name,
            "orrery-home-alice"
        );
        assert_eq!(
            c.volume_mounts.as_ref().unwrap()[0].mount_path,
            "/home/jovyan"
        );
    }

    #[test]
    fn gpus_are_the_leased_units_through_the_nvidia_runtime_or_device_plugin_requests() {
        let leased = pod(&plan(
            "kernel",
            Gpus::Leased(vec!["GPU-aaaa".into(), "MIG-bbbb".into()]),
        ));
        let spec = leased.spec.as_ref().unwrap();
        assert_eq!(spec.runtime_class_name.as_deref(), Some("nvidia"));
        assert_eq!(
            env(&leased, "NVIDIA_VISIBLE_DEVICES").as_deref(),
            Some("GPU-aaaa,MIG-bbbb")
        );
        let limits = limits_of(spec);
        assert!(
            !limits.contains_key(GPU_RESOURCE),
            "the scheduler decided, not the plugin"
        );

        let placed = pod(&plan("kernel", Gpus::DevicePlugin(2)));
        let spec = placed.spec.as_ref().unwrap();
        assert_eq!(spec.runtime_class_name, None);
        assert_eq!(
            env(&placed, "NVIDIA_VISIBLE_DEVICES"),
            None,
            "the plugin sets it"
        );
        let limits = limits_of(spec);
        assert_eq!(limits[GPU_RESOURCE].0, "2");

        // An env that tries to see every GPU is overridden.
        let mut p = plan("notebook", Gpus::None);
        p.env.insert("NVIDIA_VISIBLE_DEVICES".into(), "all".into());
        assert_eq!(
            env(&pod(&p), "NVIDIA_VISIBLE_DEVICES").as_deref(),
            Some("void")
        );
    }

    #[test]
    fn a_kernels_connection_file_is_a_secret_mounted_read_only_in_its_pod_only() {
        let k = pod(&plan("kernel", Gpus::None));
        assert_eq!(k.metadata.name.as_deref(), Some("orrery-kernel-0f3a"));
        let spec = k.spec.as_ref().unwrap();
        let vol = spec
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "connection")
            .unwrap();
        let secret = vol.secret.as_ref().unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("orrery-kernel-0f3a"));
        assert_eq!(secret.default_mode, Some(0o440));
        let mount = spec.containers[0]
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.name == "connection")
            .unwrap();
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            (CONNECTION_DIR, Some(true))
        );
        assert_eq!(k.metadata.labels.as_ref().unwrap()[LABEL_KERNEL], "0f3a");
        let nb = pod(&plan("notebook", Gpus::None));
        assert!(
            !nb.spec
                .unwrap()
                .volumes
                .unwrap()
                .iter()
                .any(|v| v.secret.is_some()),
            "the notebook pod mounts no kernel secret"
        );
        let s = connection_secret(
            "orrery-kernel-0f3a",
            "0f3a",
            "alice",
            "",
            "inst-1",
            "{\"key\":\"k\"}",
        );
        assert_eq!(s.data.unwrap()[CONNECTION_KEY].0, b"{\"key\":\"k\"}");
    }

    /// The objects for one fixed plan, as JSON, against the files in `tests/golden/kubernetes/`
    /// (what a reviewer reads to see what Orrery sends a cluster). `ORRERY_UPDATE_GOLDEN=1`
    /// rewrites them; the field-by-field tests above keep the security fields honest whatever
    /// the files say.
    #[test]
    fn the_objects_match_their_golden_files() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/kubernetes");
        let mut gpu = plan("kernel", Gpus::Leased(vec!["GPU-aaaa".into()]));
        gpu.run_as = Some((1000, 100));
        let objects: Vec<(&str, serde_json::Value)> = vec![
            (
                "notebook-pod.json",
                serde_json::to_value(pod(&plan("notebook", Gpus::None))).unwrap(),
            ),
            (
                "kernel-pod-gpu.json",
                serde_json::to_value(pod(&gpu)).unwrap(),
            ),
            (
                "home-pvc.json",
                serde_json::to_value(home_pvc("alice", "inst-1", "local-path", "10Gi", false))
                    .unwrap(),
            ),
            (
                "kernel-secret.json",
                serde_json::to_value(connection_secret(
                    "orrery-kernel-0f3a",
                    "0f3a",
                    "alice",
                    "",
                    "inst-1",
                    "{}",
                ))
                .unwrap(),
            ),
            (
                "isolation-policy.json",
                serde_json::to_value(isolation_policy(
                    "inst-1",
                    &HubPeer::Address("10.0.0.5/32".into()),
                    &[8888],
                ))
                .unwrap(),
            ),
        ];
        let update = std::env::var("ORRERY_UPDATE_GOLDEN").is_ok_and(|v| v == "1");
        for (file, value) in objects {
            let path = dir.join(file);
            let text = serde_json::to_string_pretty(&value).unwrap() + "\n";
            if update {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &text).unwrap();
                continue;
            }
            let golden = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (ORRERY_UPDATE_GOLDEN=1 cargo test writes it)",
                    path.display()
                )
            });
            assert_eq!(text, golden, "{file} differs from its golden file");
        }
    }

    #[test]
    fn label_values_are_valid_and_exact_names_are_annotations() {
        assert_eq!(label_value("alice"), "alice");
        assert_eq!(label_value(""), "", "the default server");
        for odd in ["Zoë.M", "-lead", "a b", &"x".repeat(64)] {
            let v = label_value(odd);
            assert!(
                v.len() <= 63
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
                    && v.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric()),
                "{odd:?} → {v:?}"
            );
        }
        assert_ne!(
            label_value("Zoë.M"),
            label_value("Zoe.M"),
            "no two names share one"
        );
        let mut p = plan("kernel", Gpus::None);
        p.user = "Zoë.M".into();
        let k = pod(&p);
        let notes = k.metadata.annotations.unwrap();
        assert_eq!(notes[LABEL_USER], "Zoë.M");
        assert_eq!(notes[LABEL_KERNEL], "0f3a");
    }

    #[test]
    fn names_are_dns_labels_and_homes_and_isolation_are_as_asked() {
        assert_eq!(server_pod_name("alice", "lab"), "orrery-lab--alice");
        let odd = server_pod_name("a.b_c", "");
        assert!(
            odd.len() <= 70
                && odd
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{odd}"
        );
        let pvc = home_pvc("alice", "inst-1", "", "10Gi", false);
        let spec = pvc.spec.unwrap();
        assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_string()]));
        assert_eq!(spec.storage_class_name, None, "the cluster's default class");
        assert_eq!(
            spec.resources.unwrap().requests.unwrap()["storage"].0,
            "10Gi"
        );
        let many = home_pvc("alice", "inst-1", "nfs", "10Gi", true)
            .spec
            .unwrap();
        assert_eq!(many.access_modes, Some(vec!["ReadWriteMany".to_string()]));
        assert_eq!(many.storage_class_name.as_deref(), Some("nfs"));

        let np = isolation_policy(
            "inst-1",
            &HubPeer::Address("10.0.0.5/32".into()),
            &[8888, 9000],
        );
        let spec = np.spec.unwrap();
        assert_eq!(
            spec.pod_selector.unwrap().match_labels.unwrap()[LABEL_HUB],
            "inst-1",
            "selects this hub's pods"
        );
        assert_eq!(spec.policy_types, Some(vec!["Ingress".to_string()]));
        let rule = &spec.ingress.unwrap()[0];
        assert_eq!(
            rule.from.as_ref().unwrap()[0]
                .ip_block
                .as_ref()
                .unwrap()
                .cidr,
            "10.0.0.5/32",
            "only the hub may connect"
        );
        assert_eq!(rule.ports.as_ref().unwrap().len(), 2);
    }
}
