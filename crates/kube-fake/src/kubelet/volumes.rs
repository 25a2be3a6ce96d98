//! A pod's volumes on the fake node: a `persistentVolumeClaim` is the Docker volume
//! `kube-fake-<ns>-<claim>` (made on first use: local-path-like, it outlives the pod); a
//! `secret` or `configMap` is a directory of files written from the object (its keys, or
//! `items`; mode `defaultMode`/`mode`, default 0644; owner root, and with the pod's `fsGroup`
//! that group with group-read added, as the kubelet does), bind-mounted read-only; an
//! `emptyDir` is a fresh directory (tmpfs for `medium: Memory`) that goes with the pod; a
//! `hostPath` is bound as it is. Other volume types are refused (`FailedMount`). Files are
//! written once, when the pod starts: later changes to the Secret are not propagated.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use bollard::models::Mount;
use bollard::Docker;
use serde_json::Value;

use super::docker::{self, LABEL_CLAIM, LABEL_NETWORK};
use crate::resources::{CONFIGMAPS, SECRETS};
use crate::store::Store;

/// Where a volume's files are.
#[derive(Debug, Clone)]
pub enum Source {
    /// A Docker volume (a PVC's) and its mountpoint on the host.
    Volume { name: String, mountpoint: String },
    /// A directory on the host.
    Dir(PathBuf),
    /// A tmpfs of at most this many bytes.
    Tmpfs(Option<u64>),
}

/// A pod volume ready to mount.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub source: Source,
    pub read_only: bool,
}

/// Why a volume cannot be set up (`FailedMount`).
#[derive(Debug, Clone)]
pub struct MountError {
    pub volume: String,
    pub message: String,
}

impl MountError {
    /// The kubelet's `FailedMount` message.
    pub fn event_message(&self) -> String {
        format!(
            "MountVolume.SetUp failed for volume \"{}\" : {}",
            self.volume, self.message
        )
    }
}

fn decode(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

fn mode_of(v: Option<&Value>) -> Option<u32> {
    v.and_then(Value::as_u64)
        .and_then(|m| u32::try_from(m).ok())
        .map(|m| m & 0o7777)
}

/// Write `files` (key -> bytes) into `dir` as the volume source `src` asks.
fn write_files(
    dir: &Path,
    src: &Value,
    files: &HashMap<String, Vec<u8>>,
    fs_group: Option<u32>,
    what: &str,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let default_mode = mode_of(src.get("defaultMode")).unwrap_or(0o644);
    let optional = src.get("optional").and_then(Value::as_bool) == Some(true);
    let mut wanted: Vec<(String, String, u32)> = Vec::new();
    match src.get("items").and_then(Value::as_array) {
        Some(items) => {
            for it in items {
                let key = it.get("key").and_then(Value::as_str).unwrap_or("");
                let path = it.get("path").and_then(Value::as_str).unwrap_or(key);
                if !files.contains_key(key) {
                    if optional {
                        continue;
                    }
                    return Err(format!("{what} references non-existent config key: {key}"));
                }
                let mode = mode_of(it.get("mode")).unwrap_or(default_mode);
                wanted.push((key.to_string(), path.to_string(), mode));
            }
        }
        None => {
            for k in files.keys() {
                wanted.push((k.clone(), k.clone(), default_mode));
            }
        }
    }
    let set_owner = |p: &Path, mode: u32| -> Result<(), String> {
        let mode = match fs_group {
            Some(g) => {
                std::os::unix::fs::chown(p, Some(0), Some(g))
                    .map_err(|e| format!("chown {}: {e}", p.display()))?;
                mode | 0o040
            }
            None => mode,
        };
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("chmod {}: {e}", p.display()))
    };
    for (key, path, mode) in wanted {
        if path.split('/').any(|s| s == "..") || path.starts_with('/') {
            return Err(format!("invalid path {path:?} for key {key}"));
        }
        let target = dir.join(&path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        let data = files.get(&key).map(Vec::as_slice).unwrap_or_default();
        std::fs::write(&target, data).map_err(|e| format!("writing {}: {e}", target.display()))?;
        set_owner(&target, mode)?;
    }
    set_owner(dir, if fs_group.is_some() { 0o2755 } else { 0o755 })
}

/// Set up every volume of `pod` (namespace `ns`, uid `uid`), files under `dir`.
pub async fn prepare(
    store: &Store,
    docker: &Docker,
    network: &str,
    pod: &Value,
    dir: &Path,
) -> Result<HashMap<String, Prepared>, MountError> {
    let ns = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let fs_group = pod
        .pointer("/spec/securityContext/fsGroup")
        .and_then(Value::as_i64)
        .and_then(|g| u32::try_from(g).ok());
    let mut out = HashMap::new();
    for v in pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let fail = |message: String| MountError {
            volume: name.clone(),
            message,
        };
        let vdir = dir.join(&name);
        let prepared = if let Some(pvc) = v.get("persistentVolumeClaim") {
            let claim = pvc.get("claimName").and_then(Value::as_str).unwrap_or("");
            let vol = docker::claim_volume(ns, claim);
            let labels = HashMap::from([
                (LABEL_NETWORK.to_string(), network.to_string()),
                (LABEL_CLAIM.to_string(), format!("{ns}/{claim}")),
            ]);
            let mountpoint = docker::ensure_volume(docker, &vol, labels)
                .await
                .map_err(|e| fail(e.to_string()))?;
            Prepared {
                source: Source::Volume {
                    name: vol,
                    mountpoint,
                },
                read_only: pvc.get("readOnly").and_then(Value::as_bool) == Some(true),
            }
        } else if let Some(src) = v.get("secret") {
            let sname = src.get("secretName").and_then(Value::as_str).unwrap_or("");
            let optional = src.get("optional").and_then(Value::as_bool) == Some(true);
            let files = match store.get(&SECRETS, ns, sname) {
                Ok(s) => {
                    let mut files = HashMap::new();
                    if let Some(Value::Object(data)) = s.get("data") {
                        for (k, val) in data {
                            let bytes = val.as_str().and_then(decode).ok_or_else(|| {
                                fail(format!("secret {sname:?} key {k:?} is not base64"))
                            })?;
                            files.insert(k.clone(), bytes);
                        }
                    }
                    files
                }
                Err(_) if optional => HashMap::new(),
                Err(_) => return Err(fail(format!("secret \"{sname}\" not found"))),
            };
            write_files(&vdir, src, &files, fs_group, "secret").map_err(fail)?;
            Prepared {
                source: Source::Dir(vdir),
                read_only: true,
            }
        } else if let Some(src) = v.get("configMap") {
            let cname = src.get("name").and_then(Value::as_str).unwrap_or("");
            let optional = src.get("optional").and_then(Value::as_bool) == Some(true);
            let files = match store.get(&CONFIGMAPS, ns, cname) {
                Ok(cm) => {
                    let mut files = HashMap::new();
                    if let Some(Value::Object(data)) = cm.get("data") {
                        for (k, val) in data {
                            files.insert(k.clone(), val.as_str().unwrap_or("").as_bytes().to_vec());
                        }
                    }
                    if let Some(Value::Object(data)) = cm.get("binaryData") {
                        for (k, val) in data {
                            let bytes = val.as_str().and_then(decode).ok_or_else(|| {
                                fail(format!("configmap {cname:?} key {k:?} is not base64"))
                            })?;
                            files.insert(k.clone(), bytes);
                        }
                    }
                    files
                }
                Err(_) if optional => HashMap::new(),
                Err(_) => return Err(fail(format!("configmap \"{cname}\" not found"))),
            };
            write_files(&vdir, src, &files, fs_group, "configmap").map_err(fail)?;
            Prepared {
                source: Source::Dir(vdir),
                read_only: true,
            }
        } else if let Some(src) = v.get("emptyDir") {
            if src.get("medium").and_then(Value::as_str) == Some("Memory") {
                let size = src
                    .get("sizeLimit")
                    .and_then(Value::as_str)
                    .and_then(super::quantity::units);
                Prepared {
                    source: Source::Tmpfs(size),
                    read_only: false,
                }
            } else {
                std::fs::create_dir_all(&vdir).map_err(|e| fail(e.to_string()))?;
                let mode = if let Some(g) = fs_group {
                    std::os::unix::fs::chown(&vdir, Some(0), Some(g))
                        .map_err(|e| fail(e.to_string()))?;
                    0o2777
                } else {
                    0o777
                };
                std::fs::set_permissions(&vdir, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| fail(e.to_string()))?;
                Prepared {
                    source: Source::Dir(vdir),
                    read_only: false,
                }
            }
        } else if let Some(src) = v.get("hostPath") {
            let path = src.get("path").and_then(Value::as_str).unwrap_or("");
            let kind = src.get("type").and_then(Value::as_str).unwrap_or("");
            if kind == "DirectoryOrCreate" {
                std::fs::create_dir_all(path).map_err(|e| fail(e.to_string()))?;
            } else if !Path::new(path).exists() && !kind.is_empty() {
                return Err(fail(format!(
                    "hostPath type check failed: {path} is not a {kind}"
                )));
            }
            Prepared {
                source: Source::Dir(PathBuf::from(path)),
                read_only: false,
            }
        } else {
            let kind = v
                .as_object()
                .and_then(|m| m.keys().find(|k| *k != "name").cloned())
                .unwrap_or_else(|| "unknown".into());
            return Err(fail(format!("kube-fake does not support {kind} volumes")));
        };
        out.insert(name, prepared);
    }
    Ok(out)
}

/// The Docker mounts of container `c`'s `volumeMounts`. `Err`: a message for
/// `CreateContainerConfigError`.
pub fn mounts(c: &Value, volumes: &HashMap<String, Prepared>) -> Result<Vec<Mount>, String> {
    let mut out = Vec::new();
    for m in c
        .get("volumeMounts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let name = m.get("name").and_then(Value::as_str).unwrap_or("");
        let target = m.get("mountPath").and_then(Value::as_str).unwrap_or("");
        let sub = m
            .get("subPath")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        if sub.is_some_and(|s| s.starts_with('/') || s.split('/').any(|p| p == "..")) {
            return Err(format!("invalid subPath {sub:?}"));
        }
        let Some(v) = volumes.get(name) else {
            return Err(format!("volume {name:?} not prepared"));
        };
        let ro = v.read_only || m.get("readOnly").and_then(Value::as_bool) == Some(true);
        let mount = match (&v.source, sub) {
            (Source::Volume { name, .. }, None) => docker::volume(name, target, ro),
            (Source::Volume { mountpoint, .. }, Some(sub)) => {
                let p = Path::new(mountpoint).join(sub);
                if !p.exists() {
                    std::fs::create_dir_all(&p)
                        .map_err(|e| format!("creating subPath {}: {e}", p.display()))?;
                }
                docker::bind(&p.to_string_lossy(), target, ro)
            }
            (Source::Dir(d), sub) => {
                let p = match sub {
                    Some(s) => d.join(s),
                    None => d.clone(),
                };
                docker::bind(&p.to_string_lossy(), target, ro)
            }
            (Source::Tmpfs(size), _) => docker::tmpfs(target, *size),
        };
        out.push(mount);
    }
    Ok(out)
}
