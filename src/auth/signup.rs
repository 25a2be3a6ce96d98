//! Who may sign up, said out loud: the startup line of the no-config developer mode (open
//! sign-up on loopback) and the upgrade notice for installs created when sign-up was open.
//!
//! Since `auth.firstuse.create_users` defaults to false, an install created by an older Orrery
//! whose config never set the key stops letting unknown names create accounts. That is the
//! safe change, but it must not be silent: the daemon logs [`upgrade_notice`] at every start
//! and `orrery doctor` shows it, until the config sets the key either way.

use crate::config::{load, AuthType, LoadedConfig};

/// The config key whose default changed.
pub const CREATE_USERS_KEY: &str = "auth.firstuse.create_users";

/// The notice for an install whose sign-up behaviour this version changed, if this is one:
/// a config file (the no-config developer mode keeps open sign-up) that selects first-use
/// passwords and does not set [`CREATE_USERS_KEY`], on state created while sign-up was open.
pub fn upgrade_notice(loaded: &LoadedConfig, created_with_open_signup: bool) -> Option<String> {
    let file = loaded.file()?;
    if loaded.config.auth.kind != AuthType::Firstuse
        || !created_with_open_signup
        || load::file_sets_key(file, CREATE_USERS_KEY)
    {
        return None;
    }
    Some(format!(
        "{CREATE_USERS_KEY} now defaults to false: unknown names can no longer create an account \
         by logging in (only admins, users an admin added, and the names in users.allowed can). \
         This hub was set up when sign-up was open. To keep open sign-up run \
         `sudo orrery config set {CREATE_USERS_KEY} true` and `sudo orrery config reload`; to \
         keep it closed and silence this notice, set it to false."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigSource;

    fn loaded(dir: &std::path::Path, text: &str) -> LoadedConfig {
        let path = dir.join("config.toml");
        std::fs::write(&path, text).expect("write");
        LoadedConfig {
            config: load::load_file(&path).expect("valid"),
            source: ConfigSource::File(path),
        }
    }

    #[test]
    fn notice_only_for_upgraded_installs_that_leave_the_key_unset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let unset = loaded(dir.path(), "[http]\nport = 80\n");
        let notice = upgrade_notice(&unset, true).expect("an upgraded install gets the notice");
        assert!(notice.contains("orrery config set auth.firstuse.create_users true"));
        assert_eq!(upgrade_notice(&unset, false), None, "a new install");

        for set in ["false", "true"] {
            let l = loaded(
                dir.path(),
                &format!("[auth.firstuse]\ncreate_users = {set}\n"),
            );
            assert_eq!(upgrade_notice(&l, true), None, "the key is set to {set}");
        }
        let dotted = loaded(dir.path(), "auth.firstuse.create_users = false\n");
        assert_eq!(upgrade_notice(&dotted, true), None, "a dotted key counts");
        let native = loaded(dir.path(), "[auth]\ntype = \"native\"\n");
        assert_eq!(
            upgrade_notice(&native, true),
            None,
            "native never signed up"
        );
        let dev = LoadedConfig {
            config: crate::config::Config::developer(),
            source: ConfigSource::Defaults,
        };
        assert_eq!(
            upgrade_notice(&dev, true),
            None,
            "developer mode keeps open sign-up"
        );
    }
}
