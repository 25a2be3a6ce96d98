//! Who is calling the gateway: `Authorization: token <gateway token>` (or `bearer`), hashed and
//! looked up; only tokens of kind [`TokenKind::Gateway`] owned by a user are accepted.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use chrono::Utc;

use super::{Gateway, GatewayError};
use crate::secrets;
use crate::state::{TokenKind, TokenOwner};

/// The user a gateway request acts for, the server it comes from (each server's gateway
/// token says which: its kernels are that server's) and the user's groups (for kernelspec
/// filters).
#[derive(Debug, Clone)]
pub struct GatewayUser {
    pub name: String,
    /// "" for the default server.
    pub server: String,
    pub groups: Vec<String>,
}

impl FromRequestParts<Arc<Gateway>> for GatewayUser {
    type Rejection = GatewayError;

    async fn from_request_parts(
        parts: &mut Parts,
        gw: &Arc<Gateway>,
    ) -> Result<Self, Self::Rejection> {
        let unauthorized = || GatewayError::Unauthorized;
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(unauthorized)?;
        let token = value
            .split_once(' ')
            .filter(|(scheme, _)| {
                scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer")
            })
            .map(|(_, t)| t.trim())
            .filter(|t| !t.is_empty())
            .ok_or_else(unauthorized)?;
        let rec = gw
            .services
            .store
            .token_by_hash(&secrets::hash_token(token))?
            .ok_or_else(unauthorized)?;
        if rec.kind != TokenKind::Gateway || rec.is_expired(Utc::now()) {
            return Err(unauthorized());
        }
        let server = rec.server.clone().unwrap_or_default();
        let TokenOwner::User(name) = rec.owner else {
            return Err(unauthorized());
        };
        if gw.services.store.user(&name).ok().flatten().is_none() {
            return Err(unauthorized());
        }
        // A store error yields no groups (fails closed for group-only specs).
        let groups = gw.services.store.groups_of(&name).unwrap_or_default();
        Ok(GatewayUser {
            name,
            server,
            groups,
        })
    }
}
