//! The first-use authenticator (TLJH's default).
//!
//! A name that has no password yet takes the first password it logs in with (at least
//! `auth.firstuse.min_password_length` characters). After that, only that password works.
//! Who may set a first password: users an admin added (admin page, API, `orrery users add`),
//! and the names listed in `users.admin` or `users.allowed`, which count as added, as in TLJH.
//! Any other name is refused unless `auth.firstuse.create_users` opens sign-up to everyone
//! (off by default; on only in the no-config developer mode).

use super::{hash_password, verify_password, LoginError};
use crate::hub::Hub;
use crate::state::UserRecord;

pub async fn authenticate(hub: &Hub, name: &str, password: &str) -> Result<UserRecord, LoginError> {
    let cfg = hub.config();
    let min = cfg.auth.firstuse.min_password_length;
    match hub.store.user(name)? {
        Some(user) => match &user.password_hash {
            Some(h) => {
                if verify_password(password.to_string(), h.clone()).await {
                    Ok(user)
                } else {
                    Err(LoginError::BadCredentials)
                }
            }
            None => {
                // Created by an admin, never logged in: this password becomes theirs.
                if (password.chars().count() as u32) < min {
                    return Err(LoginError::PasswordTooShort(min));
                }
                let hash = hash_password(password.to_string()).await?;
                let mut claimed = false;
                let updated = hub.store.update_user(name, |u| {
                    if u.password_hash.is_none() {
                        u.password_hash = Some(hash.clone());
                        claimed = true;
                    }
                })?;
                // Lost a race with a concurrent first login: check against the winner's hash.
                match updated {
                    Some(u) if claimed => Ok(u),
                    Some(u) => match &u.password_hash {
                        Some(h) if verify_password(password.to_string(), h.clone()).await => Ok(u),
                        _ => Err(LoginError::BadCredentials),
                    },
                    None => Err(LoginError::BadCredentials),
                }
            }
        },
        None => {
            let listed = cfg.users.admin.iter().any(|a| a == name)
                || cfg.users.allowed.iter().any(|a| a == name);
            if !cfg.auth.firstuse.create_users && !listed {
                // Same answer as a wrong password: the page adds that an admin must add you.
                return Err(LoginError::BadCredentials);
            }
            if (password.chars().count() as u32) < min {
                return Err(LoginError::PasswordTooShort(min));
            }
            let mut user = UserRecord::new(name);
            user.password_hash = Some(hash_password(password.to_string()).await?);
            if hub.store.create_user(&user)? {
                hub.store.flush().await?;
                Ok(user)
            } else {
                // Someone created the name meanwhile; authenticate against that record.
                Box::pin(authenticate(hub, name, password)).await
            }
        }
    }
}
