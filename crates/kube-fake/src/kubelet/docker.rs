//! The kubelet's container runtime: the local Docker engine. How a pod's container becomes a
//! Docker container (named as the dockershim named them, `k8s_<container>_<pod>_<ns>_<uid>_0`,
//! labelled `io.kubernetes.pod.name/namespace/uid` so the kubelet finds them again): command
//! and args, env (with `$(VAR)` expansion), working directory, the security context (user,
//! groups, capabilities, no-new-privileges, privileged, read-only root, seccomp), resource
//! limits (memory, CPU, GPUs), volumes, and the network (the node's bridge network, or the
//! host's for `hostNetwork`); plus the engine calls the kubelet
//! makes (network, volumes, images, logs, clean-up).

use std::collections::HashMap;
use std::net::IpAddr;

use bollard::container::{
    Config, CreateContainerOptions, ListContainersOptions, LogsOptions, NetworkingConfig,
    RemoveContainerOptions,
};
use bollard::models::{
    ContainerSummary, DeviceRequest, EndpointSettings, HostConfig, Ipam, Mount, MountTypeEnum,
};
use bollard::network::{CreateNetworkOptions, InspectNetworkOptions};
use bollard::volume::CreateVolumeOptions;
use bollard::Docker;
use futures::StreamExt;
use serde_json::Value;

use super::quantity;
use super::scheduler::GPU;

/// Label: the Docker network (the fake node) a container or volume belongs to.
pub const LABEL_NETWORK: &str = "io.kube-fake.network";
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// Label of a PVC's volume: `<namespace>/<claim>`.
pub const LABEL_CLAIM: &str = "io.kube-fake.claim";

/// An engine call failed.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct EngineError {
    pub what: String,
    #[source]
    pub source: bollard::errors::Error,
}

pub fn engine(what: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> EngineError {
    let what = what.into();
    move |source| EngineError { what, source }
}

pub fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Connect to the engine at `socket` (default: `$DOCKER_HOST` or the usual socket).
pub async fn connect(socket: Option<&str>) -> Result<Docker, EngineError> {
    let socket = match socket {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into()),
    };
    let d = Docker::connect_with_socket(&socket, 900, bollard::API_DEFAULT_VERSION).map_err(
        engine(format!("connecting to the Docker engine at {socket}")),
    )?;
    d.negotiate_version().await.map_err(engine(format!(
        "connecting to the Docker engine at {socket}"
    )))
}

/// Make sure bridge network `name` exists; its gateway, and whether this call created it.
pub async fn ensure_network(d: &Docker, name: &str) -> Result<(IpAddr, bool), EngineError> {
    let inspect = |d: Docker, name: String| async move {
        d.inspect_network(
            &name,
            Some(InspectNetworkOptions::<String> {
                verbose: false,
                scope: "local".into(),
            }),
        )
        .await
    };
    let (net, created) = match inspect(d.clone(), name.to_string()).await {
        Ok(n) => (n, false),
        Err(e) if is_not_found(&e) => {
            d.create_network(CreateNetworkOptions {
                name: name.to_string(),
                driver: "bridge".into(),
                check_duplicate: true,
                ipam: Ipam::default(),
                labels: HashMap::from([(LABEL_NETWORK.to_string(), name.to_string())]),
                ..Default::default()
            })
            .await
            .map_err(engine(format!("creating network {name}")))?;
            let n = inspect(d.clone(), name.to_string())
                .await
                .map_err(engine(format!("inspecting network {name}")))?;
            (n, true)
        }
        Err(e) => return Err(engine(format!("inspecting network {name}"))(e)),
    };
    let gateway = net
        .ipam
        .and_then(|i| i.config)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| c.gateway)
        .find_map(|g| g.parse::<IpAddr>().ok());
    let gateway = match gateway {
        Some(g) => g,
        None => {
            // Some engines leave the gateway out of the IPAM config: take the subnet's first.
            return Err(EngineError {
                what: format!("network {name} has no IPv4 gateway"),
                source: bollard::errors::Error::DockerResponseServerError {
                    status_code: 500,
                    message: "no gateway".into(),
                },
            });
        }
    };
    Ok((gateway, created))
}

/// An image in the local engine: its id and `USER`.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    pub id: String,
    pub user: String,
}

/// The local image `image`, or `None` if the engine does not have it.
pub async fn image(d: &Docker, image: &str) -> Result<Option<ImageInfo>, EngineError> {
    match d.inspect_image(image).await {
        Ok(i) => Ok(Some(ImageInfo {
            id: i.id.unwrap_or_default(),
            user: i.config.and_then(|c| c.user).unwrap_or_default(),
        })),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(engine(format!("inspecting image {image}"))(e)),
    }
}

/// A PVC's Docker volume name.
pub fn claim_volume(ns: &str, claim: &str) -> String {
    format!("kube-fake-{ns}-{claim}")
}

/// Make sure volume `name` exists; its mountpoint on the host.
pub async fn ensure_volume(
    d: &Docker,
    name: &str,
    labels: HashMap<String, String>,
) -> Result<String, EngineError> {
    match d.inspect_volume(name).await {
        Ok(v) => Ok(v.mountpoint),
        Err(e) if is_not_found(&e) => d
            .create_volume(CreateVolumeOptions {
                name: name.to_string(),
                driver: "local".into(),
                labels,
                ..Default::default()
            })
            .await
            .map(|v| v.mountpoint)
            .map_err(engine(format!("creating volume {name}"))),
        Err(e) => Err(engine(format!("inspecting volume {name}"))(e)),
    }
}

/// The containers carrying `network`'s label (running or not).
pub async fn list_ours(d: &Docker, network: &str) -> Result<Vec<ContainerSummary>, EngineError> {
    d.list_containers(Some(ListContainersOptions::<String> {
        all: true,
        filters: HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_NETWORK}={network}")],
        )]),
        ..Default::default()
    }))
    .await
    .map_err(engine("listing containers"))
}

/// Remove container `id` (killing it if it runs); gone already is fine.
pub async fn remove(d: &Docker, id: &str) -> Result<(), EngineError> {
    match d
        .remove_container(
            id,
            Some(RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            }),
        )
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => Ok(()), // removal already in progress
        Err(e) => Err(engine(format!("removing container {id}"))(e)),
    }
}

/// What a log request asks for.
#[derive(Debug, Clone, Default)]
pub struct LogRequest {
    pub tail: Option<i64>,
    pub timestamps: bool,
    pub follow: bool,
    /// Only output newer than this many seconds.
    pub since_seconds: Option<i64>,
}

fn log_options(r: &LogRequest) -> LogsOptions<String> {
    LogsOptions::<String> {
        stdout: true,
        stderr: true,
        follow: r.follow,
        timestamps: r.timestamps,
        since: r
            .since_seconds
            .map_or(0, |s| chrono::Utc::now().timestamp() - s.max(0)),
        tail: r
            .tail
            .map_or_else(|| "all".to_string(), |t| t.max(0).to_string()),
        ..Default::default()
    }
}

/// Container `id`'s output (stdout and stderr) as a stream of chunks.
pub fn log_stream(
    d: &Docker,
    id: &str,
    r: &LogRequest,
) -> futures::stream::BoxStream<'static, Result<axum::body::Bytes, std::io::Error>> {
    d.logs(id, Some(log_options(r)))
        .map(|chunk| chunk.map(|c| c.into_bytes()).map_err(std::io::Error::other))
        .boxed()
}

/// Container `id`'s output so far (stdout and stderr).
pub async fn logs(d: &Docker, id: &str, r: &LogRequest) -> Result<String, EngineError> {
    let r = LogRequest {
        follow: false,
        ..r.clone()
    };
    let mut s = log_stream(d, id, &r);
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| EngineError {
            what: format!("reading the logs of container {id}"),
            source: bollard::errors::Error::IOError { err: e },
        })?;
        out.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The dockershim's container name.
pub fn container_name(container: &str, pod: &str, ns: &str, uid: &str) -> String {
    format!("k8s_{container}_{pod}_{ns}_{uid}_0")
}

/// Why a container cannot be made: `CreateContainerConfigError` and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

/// `$(VAR)` references in `s`, expanded from `env` (unknown ones stay; `$$` is `$`).
pub fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(j) => {
                    let name = &body[..j];
                    match env.iter().rev().find(|(k, _)| k == name) {
                        Some((_, v)) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[j + 1..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    v.and_then(Value::as_array).map(|a| {
        a.iter()
            .map(|x| match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect()
    })
}

fn quantity_of(c: &Value, section: &str, name: &str) -> Option<String> {
    match c.pointer(&format!("/resources/{section}"))?.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The security settings that apply to a container: its own, else the pod's.
pub struct Security {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_non_root: bool,
    pub fs_group: Option<i64>,
}

pub fn security(pod: &Value, c: &Value) -> Security {
    let pick = |f: &str| {
        c.pointer(&format!("/securityContext/{f}"))
            .filter(|v| !v.is_null())
            .or_else(|| {
                pod.pointer(&format!("/spec/securityContext/{f}"))
                    .filter(|v| !v.is_null())
            })
    };
    Security {
        run_as_user: pick("runAsUser").and_then(Value::as_i64),
        run_as_group: pick("runAsGroup").and_then(Value::as_i64),
        run_as_non_root: pick("runAsNonRoot").and_then(Value::as_bool) == Some(true),
        fs_group: pod
            .pointer("/spec/securityContext/fsGroup")
            .and_then(Value::as_i64),
    }
}

/// The kubelet's `runAsNonRoot` check, with its messages.
pub fn check_non_root(
    sec: &Security,
    image_user: &str,
    pod_desc: &str,
    container: &str,
) -> Result<(), ConfigError> {
    if !sec.run_as_non_root {
        return Ok(());
    }
    if let Some(uid) = sec.run_as_user {
        if uid == 0 {
            return Err(ConfigError(format!(
                "container's runAsUser breaks non-root policy (pod: {pod_desc}, container: {container})"
            )));
        }
        return Ok(());
    }
    let user = image_user.split(':').next().unwrap_or("");
    if user.is_empty() || user == "root" || user == "0" {
        return Err(ConfigError(format!(
            "container has runAsNonRoot and image will run as root (pod: {pod_desc}, container: {container})"
        )));
    }
    if user.parse::<i64>().is_err() {
        return Err(ConfigError(format!(
            "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root (pod: {pod_desc}, container: {container})"
        )));
    }
    Ok(())
}

/// What a container needs besides its spec.
pub struct Plan<'a> {
    pub pod: &'a Value,
    pub container: &'a Value,
    pub image_user: &'a str,
    pub network: &'a str,
    /// The container whose network namespace this one joins (`None`: it owns the pod's).
    pub join: Option<&'a str>,
    pub mounts: Vec<Mount>,
    /// The Docker runtime for the pod's RuntimeClass handler, if the engine has it.
    pub runtime: Option<String>,
    /// Extra environment (resolved `valueFrom` is not supported: none).
    pub labels: HashMap<String, String>,
}

/// The Docker container for `plan`.
pub fn container_config(plan: &Plan) -> Result<Config<String>, ConfigError> {
    let c = plan.container;
    let pod = plan.pod;
    let name = c.get("name").and_then(Value::as_str).unwrap_or("");
    let mut env: Vec<(String, String)> = Vec::new();
    for e in c
        .get("env")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let k = e
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if e.get("valueFrom").is_some_and(|v| !v.is_null()) {
            return Err(ConfigError(format!(
                "kube-fake does not resolve env valueFrom (variable {k} of container {name}); use value"
            )));
        }
        let v = e.get("value").and_then(Value::as_str).unwrap_or("");
        let v = expand(v, &env);
        env.push((k, v));
    }
    if c.get("envFrom")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        return Err(ConfigError(format!(
            "kube-fake does not resolve envFrom (container {name})"
        )));
    }
    let command =
        strings(c.get("command")).map(|v| v.iter().map(|s| expand(s, &env)).collect::<Vec<_>>());
    let args =
        strings(c.get("args")).map(|v| v.iter().map(|s| expand(s, &env)).collect::<Vec<_>>());
    let sec = security(pod, c);
    let user = match (sec.run_as_user, sec.run_as_group) {
        (Some(u), Some(g)) => Some(format!("{u}:{g}")),
        (Some(u), None) => Some(u.to_string()),
        (None, Some(g)) => {
            let u = plan
                .image_user
                .split(':')
                .next()
                .filter(|u| !u.is_empty())
                .unwrap_or("0");
            Some(format!("{u}:{g}"))
        }
        (None, None) => None,
    };
    let mut groups: Vec<String> = Vec::new();
    if let Some(g) = sec.fs_group {
        groups.push(g.to_string());
    }
    for g in pod
        .pointer("/spec/securityContext/supplementalGroups")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        if let Some(g) = g.as_i64() {
            if !groups.contains(&g.to_string()) {
                groups.push(g.to_string());
            }
        }
    }
    let csc = c.get("securityContext").cloned().unwrap_or(Value::Null);
    let caps =
        |k: &str| strings(csc.pointer(&format!("/capabilities/{k}"))).filter(|v| !v.is_empty());
    let mut security_opt = Vec::new();
    if csc.get("allowPrivilegeEscalation").and_then(Value::as_bool) == Some(false) {
        security_opt.push("no-new-privileges:true".to_string());
    }
    let seccomp = csc
        .pointer("/seccompProfile/type")
        .or_else(|| pod.pointer("/spec/securityContext/seccompProfile/type"))
        .and_then(Value::as_str);
    if seccomp == Some("Unconfined") {
        security_opt.push("seccomp=unconfined".to_string());
    }
    let privileged = csc.get("privileged").and_then(Value::as_bool) == Some(true);
    let memory = quantity_of(c, "limits", "memory")
        .map(|q| quantity::units(&q).ok_or_else(|| ConfigError(format!("bad memory limit {q:?}"))))
        .transpose()?;
    let nano_cpus = quantity_of(c, "limits", "cpu")
        .map(|q| {
            quantity::cpu_millis(&q).ok_or_else(|| ConfigError(format!("bad cpu limit {q:?}")))
        })
        .transpose()?
        .map(|m| m.saturating_mul(1_000_000));
    let cpu_shares = quantity_of(c, "requests", "cpu")
        .and_then(|q| quantity::cpu_millis(&q))
        .map(|m| (m * 1024 / 1000).max(2));
    let gpus = quantity_of(c, "limits", GPU)
        .and_then(|q| quantity::units(&q))
        .unwrap_or(0);
    let mut labels = plan.labels.clone();
    labels.insert(LABEL_NETWORK.into(), plan.network.into());
    labels.insert(LABEL_CONTAINER_NAME.into(), name.into());
    let host_network = pod.pointer("/spec/hostNetwork").and_then(Value::as_bool) == Some(true);
    let network_mode = match plan.join {
        Some(id) => format!("container:{id}"),
        None if host_network => "host".to_string(),
        None => plan.network.to_string(),
    };
    let owns_network = plan.join.is_none() && !host_network;
    let pod_name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let hostname = pod
        .pointer("/spec/hostname")
        .and_then(Value::as_str)
        .unwrap_or(pod_name)
        .chars()
        .take(63)
        .collect::<String>();
    let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    Ok(Config {
        image: c.get("image").and_then(Value::as_str).map(String::from),
        entrypoint: command.clone(),
        // A command without args: the image's CMD does not apply (as in Kubernetes).
        cmd: args.or_else(|| command.as_ref().map(|_| Vec::new())),
        env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        working_dir: c
            .get("workingDir")
            .and_then(Value::as_str)
            .map(String::from),
        user,
        hostname: owns_network.then_some(hostname),
        tty: c.get("tty").and_then(Value::as_bool),
        open_stdin: c.get("stdin").and_then(Value::as_bool),
        labels: Some(labels),
        host_config: Some(HostConfig {
            network_mode: Some(network_mode),
            mounts: Some(plan.mounts.clone()),
            memory: memory.map(to_i64),
            memory_swap: memory.map(to_i64),
            nano_cpus: nano_cpus.map(to_i64),
            cpu_shares: cpu_shares.map(to_i64),
            cap_drop: caps("drop"),
            cap_add: caps("add"),
            security_opt: (!security_opt.is_empty()).then_some(security_opt),
            group_add: (!groups.is_empty()).then_some(groups),
            privileged: Some(privileged),
            readonly_rootfs: csc.get("readOnlyRootFilesystem").and_then(Value::as_bool),
            runtime: plan.runtime.clone(),
            device_requests: (gpus > 0).then(|| {
                vec![DeviceRequest {
                    driver: Some("nvidia".into()),
                    count: Some(to_i64(gpus)),
                    capabilities: Some(vec![vec!["gpu".into()]]),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
        networking_config: owns_network.then(|| NetworkingConfig {
            endpoints_config: HashMap::from([(
                plan.network.to_string(),
                EndpointSettings {
                    aliases: Some(vec![pod_name.to_string()]),
                    ..Default::default()
                },
            )]),
        }),
        ..Default::default()
    })
}

/// Create container `name` from `config`; its id.
pub async fn create(d: &Docker, name: &str, config: Config<String>) -> Result<String, EngineError> {
    d.create_container(
        Some(CreateContainerOptions {
            name: name.to_string(),
            platform: None,
        }),
        config,
    )
    .await
    .map(|r| r.id)
    .map_err(engine(format!("creating container {name}")))
}

/// A bind mount.
pub fn bind(source: &str, target: &str, read_only: bool) -> Mount {
    Mount {
        target: Some(target.to_string()),
        source: Some(source.to_string()),
        typ: Some(MountTypeEnum::BIND),
        read_only: Some(read_only),
        ..Default::default()
    }
}

/// A named-volume mount.
pub fn volume(name: &str, target: &str, read_only: bool) -> Mount {
    Mount {
        target: Some(target.to_string()),
        source: Some(name.to_string()),
        typ: Some(MountTypeEnum::VOLUME),
        read_only: Some(read_only),
        ..Default::default()
    }
}

/// A tmpfs mount.
pub fn tmpfs(target: &str, size: Option<u64>) -> Mount {
    Mount {
        target: Some(target.to_string()),
        typ: Some(MountTypeEnum::TMPFS),
        tmpfs_options: size.map(|s| bollard::models::MountTmpfsOptions {
            size_bytes: Some(i64::try_from(s).unwrap_or(i64::MAX)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn env_expansion() {
        let env = vec![("A".to_string(), "x".to_string())];
        assert_eq!(expand("$(A)/$(B)/$$(A)/$", &env), "x/$(B)/$(A)/$");
    }

    #[test]
    fn config_maps_the_security_context() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"securityContext": {"runAsUser": 1000, "runAsGroup": 100, "fsGroup": 100}}});
        let c = json!({"name": "c", "image": "i", "command": ["sh"], "env": [{"name": "A", "value": "1"}],
            "resources": {"limits": {"memory": "512Mi", "cpu": "500m"}},
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}});
        let plan = Plan {
            pod: &pod,
            container: &c,
            image_user: "",
            network: "n",
            join: None,
            mounts: vec![],
            runtime: None,
            labels: HashMap::new(),
        };
        let cfg = container_config(&plan).unwrap();
        assert_eq!(cfg.user.as_deref(), Some("1000:100"));
        assert_eq!(cfg.cmd, Some(vec![]));
        let hc = cfg.host_config.unwrap();
        assert_eq!(hc.memory, Some(512 << 20));
        assert_eq!(hc.nano_cpus, Some(500_000_000));
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(hc.group_add, Some(vec!["100".to_string()]));
        assert_eq!(
            hc.security_opt,
            Some(vec!["no-new-privileges:true".to_string()])
        );
    }

    #[test]
    fn non_root_policy() {
        let sec = |u: Option<i64>| Security {
            run_as_user: u,
            run_as_group: None,
            run_as_non_root: true,
            fs_group: None,
        };
        assert!(check_non_root(&sec(Some(0)), "1000", "p", "c")
            .unwrap_err()
            .0
            .starts_with("container's runAsUser breaks non-root policy"));
        assert!(check_non_root(&sec(None), "", "p", "c")
            .unwrap_err()
            .0
            .starts_with("container has runAsNonRoot and image will run as root"));
        assert!(check_non_root(&sec(None), "jovyan", "p", "c")
            .unwrap_err()
            .0
            .contains("non-numeric user"));
        assert!(check_non_root(&sec(None), "1000:100", "p", "c").is_ok());
        assert!(check_non_root(&sec(Some(1000)), "", "p", "c").is_ok());
    }
}
