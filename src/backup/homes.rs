//! Copying users' homes into and out of a backup. A home is a Docker volume (the default) or a
//! host directory (`spawner.docker.home_host_path`). A volume is read and written through a
//! helper container that is created, never started, with the volume mounted at
//! `/orrery-home`: the engine's archive API copies files of a stopped container's mounts, so no
//! process runs and nothing needs a shell in the image. Either way the tar holds
//! `orrery-home/…` with owners and modes as they were.

use std::collections::HashMap;
use std::path::Path;

use bollard::container::{
    Config as ContainerConfig, CreateContainerOptions, DownloadFromContainerOptions,
    UploadToContainerOptions,
};
use bollard::models::{HostConfig, Mount, MountTypeEnum};
use bollard::Docker;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{BackupError, Result};
use crate::config::DockerSpawner;
use crate::docker::{self, home_source, LABEL_HUB, LABEL_KIND};

/// The directory the tar's entries live under.
const ROOT: &str = "orrery-home";

fn engine(what: String) -> impl FnOnce(bollard::errors::Error) -> BackupError {
    move |e| BackupError::Engine(format!("{what}: {e}"))
}

/// A created (not started) container with `volume` mounted at `/orrery-home`; removed on drop
/// by the caller through [`docker::remove`].
async fn helper(
    docker: &Docker,
    cfg: &DockerSpawner,
    instance: &str,
    volume: &str,
) -> Result<String> {
    let labels = HashMap::from([
        (LABEL_KIND.to_string(), "backup-helper".to_string()),
        (LABEL_HUB.to_string(), instance.to_string()),
    ]);
    let created = docker
        .create_container(
            Some(CreateContainerOptions {
                name: format!("orrery-backup-{}", crate::secrets::new_id("")),
                platform: None,
            }),
            ContainerConfig {
                image: Some(cfg.image.clone()),
                cmd: Some(vec!["true".to_string()]),
                labels: Some(labels),
                network_disabled: Some(true),
                host_config: Some(HostConfig {
                    mounts: Some(vec![Mount {
                        target: Some(format!("/{ROOT}")),
                        source: Some(volume.to_string()),
                        typ: Some(MountTypeEnum::VOLUME),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .map_err(engine(format!(
            "creating a helper container from {} to copy the volume {volume} (is the image there? `docker image ls {}`)",
            cfg.image, cfg.image
        )))?;
    Ok(created.id)
}

/// Where homes are copied from and to: the engine (for volumes; `None` with host-directory
/// homes and no engine), the spawner's settings and this hub's instance (for labels).
pub struct Homes<'a> {
    pub docker: Option<&'a Docker>,
    pub cfg: &'a DockerSpawner,
    pub instance: &'a str,
}

impl Homes<'_> {
    /// The engine, which a volume needs.
    fn engine(&self, volume: &str) -> Result<&Docker> {
        self.docker.ok_or_else(|| {
            BackupError::Engine(format!("the home volume {volume} needs the Docker engine"))
        })
    }

    /// Write `user`'s home as a tar to `out`. False when the user has no home yet.
    pub async fn save(&self, user: &str, out: &Path) -> Result<bool> {
        save(self, user, out).await
    }

    /// Put the tar at `tar` back as `user`'s home (created if missing; files in the tar
    /// replace files of the same name, others stay); says where it went.
    pub async fn load(&self, user: &str, tar: &Path) -> Result<String> {
        load(self, user, tar).await
    }
}

async fn save(homes: &Homes<'_>, user: &str, out: &Path) -> Result<bool> {
    let (cfg, instance) = (homes.cfg, homes.instance);
    let (source, typ) = home_source(cfg, user);
    if typ == MountTypeEnum::BIND {
        let dir = std::path::PathBuf::from(&source);
        if !dir.is_dir() {
            return Ok(false);
        }
        let out = out.to_path_buf();
        return tokio::task::spawn_blocking(move || -> Result<bool> {
            let file = std::fs::File::create(&out)
                .map_err(BackupError::io(format!("cannot write {}", out.display())))?;
            let mut tar = tar::Builder::new(file);
            tar.follow_symlinks(false);
            tar.append_dir_all(ROOT, &dir)
                .map_err(BackupError::io(format!("cannot read {}", dir.display())))?;
            tar.finish()
                .map_err(BackupError::io(format!("cannot write {}", out.display())))?;
            Ok(true)
        })
        .await
        .map_err(|e| BackupError::Engine(e.to_string()))?;
    }
    let docker = homes.engine(&source)?;
    if docker.inspect_volume(&source).await.is_err() {
        return Ok(false);
    }
    let id = helper(docker, cfg, instance, &source).await?;
    let copied = async {
        let mut file = tokio::fs::File::create(out)
            .await
            .map_err(BackupError::io(format!("cannot write {}", out.display())))?;
        let mut stream = docker.download_from_container(
            &id,
            Some(DownloadFromContainerOptions {
                path: format!("/{ROOT}"),
            }),
        );
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(engine(format!("copying the volume {source}")))?;
            file.write_all(&chunk)
                .await
                .map_err(BackupError::io(format!("cannot write {}", out.display())))?;
        }
        file.flush()
            .await
            .map_err(BackupError::io(format!("cannot write {}", out.display())))?;
        Ok(true)
    }
    .await;
    let _ = docker::remove(docker, &id).await;
    copied
}

async fn load(homes: &Homes<'_>, user: &str, tar: &Path) -> Result<String> {
    let (cfg, instance) = (homes.cfg, homes.instance);
    let (source, typ) = home_source(cfg, user);
    if typ == MountTypeEnum::BIND {
        let parent = std::path::PathBuf::from(&source);
        let parent = parent.parent().map(Path::to_path_buf).unwrap_or_default();
        let tar = tar.to_path_buf();
        let home = source.clone();
        return tokio::task::spawn_blocking(move || -> Result<String> {
            // The entries are orrery-home/…: unpack into a scratch directory beside the home,
            // then move the files into place.
            let scratch = parent.join(format!(".orrery-restore-{}", crate::secrets::new_id("")));
            std::fs::create_dir_all(&scratch).map_err(BackupError::io(format!(
                "cannot create {}",
                scratch.display()
            )))?;
            let file = std::fs::File::open(&tar)
                .map_err(BackupError::io(format!("cannot read {}", tar.display())))?;
            let mut archive = tar::Archive::new(file);
            archive.set_preserve_ownerships(true);
            archive.set_preserve_permissions(true);
            let unpacked = archive.unpack(&scratch).map_err(BackupError::io(format!(
                "cannot unpack into {}",
                scratch.display()
            )));
            let moved = unpacked.and_then(|()| {
                merge_dir(&scratch.join(ROOT), Path::new(&home))
                    .map_err(BackupError::io(format!("cannot fill {home}")))
            });
            let _ = std::fs::remove_dir_all(&scratch);
            moved.map(|()| format!("directory {home}"))
        })
        .await
        .map_err(|e| BackupError::Engine(e.to_string()))?;
    }
    let docker = homes.engine(&source)?;
    docker::ensure_home_volume(docker, &source, user, instance)
        .await
        .map_err(|e| BackupError::Engine(e.to_string()))?;
    let id = helper(docker, cfg, instance, &source).await?;
    let uploaded = async {
        let file = tokio::fs::File::open(tar)
            .await
            .map_err(BackupError::io(format!("cannot read {}", tar.display())))?;
        let failed = std::sync::Arc::new(std::sync::Mutex::new(None::<std::io::Error>));
        let seen = failed.clone();
        // The engine takes a stream of bytes; a read error ends it (the engine then refuses
        // the cut archive) and is reported below.
        let body = tokio_util::io::ReaderStream::new(file).scan((), move |_, chunk| {
            let next = match chunk {
                Ok(bytes) => Some(bytes),
                Err(e) => {
                    if let Ok(mut slot) = seen.lock() {
                        *slot = Some(e);
                    }
                    None
                }
            };
            futures::future::ready(next)
        });
        docker
            .upload_to_container_streaming(
                &id,
                Some(UploadToContainerOptions {
                    path: "/".to_string(),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(engine(format!("copying into the volume {source}")))?;
        if let Some(e) = failed.lock().ok().and_then(|mut s| s.take()) {
            return Err(BackupError::Io {
                what: format!("cannot read {}", tar.display()),
                source: e,
            });
        }
        Ok(format!("volume {source}"))
    }
    .await;
    let _ = docker::remove(docker, &id).await;
    uploaded
}

/// Move everything under `from` into `to` (created if missing), replacing files of the same name.
fn merge_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    if !to.exists() {
        return std::fs::rename(from, to);
    }
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() && target.is_dir() {
            merge_dir(&entry.path(), &target)?;
        } else {
            if target.is_dir() {
                std::fs::remove_dir_all(&target)?;
            }
            std::fs::rename(entry.path(), &target)?;
        }
    }
    Ok(())
}
