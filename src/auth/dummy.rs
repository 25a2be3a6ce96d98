//! The dummy authenticator, for tests and demos: any password works, or only the one set in
//! `auth.dummy.password`. `orrery serve` refuses to bind a non-loopback address with it unless
//! `auth.dummy.allow_non_loopback = true` (see [`check_bind`]).

use std::net::IpAddr;

use super::LoginError;
use crate::hub::Hub;
use crate::secrets::constant_time_eq;
use crate::state::UserRecord;

pub async fn authenticate(hub: &Hub, name: &str, password: &str) -> Result<UserRecord, LoginError> {
    let cfg = hub.config();
    if let Some(expected) = &cfg.auth.dummy.password {
        if !constant_time_eq(expected, password) {
            return Err(LoginError::BadCredentials);
        }
    }
    if let Some(u) = hub.store.user(name)? {
        return Ok(u);
    }
    let user = UserRecord::new(name);
    hub.store.create_user(&user)?;
    hub.store.flush().await?;
    Ok(hub.store.user(name)?.unwrap_or(user))
}

/// Refuse a non-loopback listener with the dummy authenticator unless explicitly allowed.
pub fn check_bind(addr: IpAddr, allow_non_loopback: bool) -> Result<(), String> {
    if addr.is_loopback() || allow_non_loopback {
        return Ok(());
    }
    Err(format!(
        "auth.type is \"dummy\", which lets anyone log in as anyone, and http.address {addr} is reachable from other machines. \
         Bind to 127.0.0.1 (orrery config set http.address 127.0.0.1), choose a real authenticator \
         (orrery config set auth.type firstuse), or, for a throw-away demo, orrery config set auth.dummy.allow_non_loopback true"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_public_bind() {
        assert!(check_bind("127.0.0.1".parse().unwrap(), false).is_ok());
        assert!(check_bind("::1".parse().unwrap(), false).is_ok());
        let e = check_bind("0.0.0.0".parse().unwrap(), false).unwrap_err();
        assert!(e.contains("allow_non_loopback"));
        assert!(check_bind("0.0.0.0".parse().unwrap(), true).is_ok());
    }
}
