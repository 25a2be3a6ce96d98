//! What a class or team needs beyond one image for everyone: `[[profiles]]` (a choice of image
//! and size on the spawn form), `[[groups]]` (groups managed by the config, with their own
//! limits and allowed profiles) and `[[roles]]` (JupyterHub's `load_roles`: scopes granted to
//! users, groups and services, e.g. a teaching assistant's).

use serde::{Deserialize, Serialize};

use super::{Limits, Size};

/// A directory or volume mounted into the notebook servers and remote kernels of the users it
/// is for (`[[shared_volumes]]`): course data read-only for everyone, a group's read-write
/// share. Every user is uid 1000 in the containers, so a read-write share is writable by all
/// who get it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SharedVolume {
    /// A host directory (an absolute path) or a Docker volume's name.
    pub source: String,
    /// Where it appears in the containers (an absolute path).
    pub target: String,
    /// Read-only unless set to false.
    pub read_only: bool,
    /// Who gets it: these users and members of these groups. Both empty: everyone.
    pub users: Vec<String>,
    pub groups: Vec<String>,
}

impl Default for SharedVolume {
    fn default() -> Self {
        SharedVolume {
            source: String::new(),
            target: String::new(),
            read_only: true,
            users: Vec::new(),
            groups: Vec::new(),
        }
    }
}

impl SharedVolume {
    /// Whether `user`, a member of `groups`, gets it.
    pub fn is_for(&self, user: &str, groups: &[String]) -> bool {
        (self.users.is_empty() && self.groups.is_empty())
            || self.users.iter().any(|u| u == user)
            || self.groups.iter().any(|g| groups.contains(g))
    }

    /// As a volume line (`SOURCE:/target[:ro]`), the form `spawner.docker.volumes` uses.
    pub fn as_volume(&self) -> String {
        let ro = if self.read_only { ":ro" } else { "" };
        format!("{}:{}{ro}", self.source, self.target)
    }
}

/// The shared volumes `user` (a member of `groups`) gets, as volume lines.
pub fn shared_volumes_for(shared: &[SharedVolume], user: &str, groups: &[String]) -> Vec<String> {
    shared
        .iter()
        .filter(|v| v.is_for(user, groups))
        .map(SharedVolume::as_volume)
        .collect()
}

/// A server profile (`[[profiles]]`, like KubeSpawner's `profile_list`): what a user picks on
/// the spawn form or with the API's `user_options.profile`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Profile {
    /// The key (`user_options.profile`): lower-case letters, digits, `-` and `_`.
    pub name: String,
    /// What the form shows; the name if empty.
    pub display_name: String,
    pub description: String,
    /// The image; `spawner.docker.image` if empty.
    pub image: String,
    /// Fractional cores; `limits.cpu` (or a group's) if unset.
    pub cpu: Option<f64>,
    /// `limits.memory` (or a group's) if unset.
    pub memory: Option<Size>,
    /// Extra volumes, as `spawner.docker.volumes` (`source:target[:ro]`).
    pub volumes: Vec<String>,
    /// GPU units the server holds for its whole life (its kernels use them); 0: none.
    pub gpus: u32,
    /// Only units whose model contains this (e.g. `H200`).
    pub gpu_model: Option<String>,
    /// Extra environment variables.
    pub env: std::collections::BTreeMap<String, String>,
    /// Who may choose it: these users and members of these groups. Both empty: everyone (unless
    /// a group's `profiles` list names it, see [`GroupConfig::profiles`]).
    pub users: Vec<String>,
    pub groups: Vec<String>,
    /// Chosen when the user chooses nothing (at most one profile says so; else the first one
    /// the user may choose).
    pub default: bool,
}

impl Profile {
    /// What the form shows.
    pub fn label(&self) -> &str {
        if self.display_name.is_empty() {
            &self.name
        } else {
            &self.display_name
        }
    }
}

/// A group declared in the config (`[[groups]]`, like JupyterHub's `load_groups`): its
/// membership is managed here (the API refuses to change it), and it may override limits and
/// allow profiles for its members.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupConfig {
    pub name: String,
    /// The members (user names, normalised like every user name).
    pub users: Vec<String>,
    /// Free-form properties (JupyterHub's group `properties`).
    pub properties: serde_json::Map<String, serde_json::Value>,
    /// Overrides of `[limits]` for members; an unset key inherits the global value. A user in
    /// several groups gets the largest value any of them sets.
    pub limits: Limits,
    /// Profiles members may choose in addition to those open to everyone.
    pub profiles: Vec<String>,
}

/// A role (`[[roles]]`, JupyterHub's `load_roles`): scopes granted to users, members of groups
/// and services, on top of what they hold already.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoleConfig {
    pub name: String,
    pub description: String,
    /// Scopes, with filters (`access:servers!group=class-a`), checked like services' scopes.
    pub scopes: Vec<String>,
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub services: Vec<String>,
}
