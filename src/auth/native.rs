//! The native authenticator: users exist only if an admin created them, and log in with the
//! password an admin (or they themselves) set. No self sign-up.

use super::{verify_password, LoginError};
use crate::hub::Hub;
use crate::state::UserRecord;

pub async fn authenticate(hub: &Hub, name: &str, password: &str) -> Result<UserRecord, LoginError> {
    let user = hub.store.user(name)?.ok_or(LoginError::BadCredentials)?;
    match &user.password_hash {
        Some(h) if verify_password(password.to_string(), h.clone()).await => Ok(user),
        _ => Err(LoginError::BadCredentials),
    }
}
