//! Who is visiting a shared server through the proxy, and their open WebSockets.
//!
//! The proxy does not authenticate: each single-user server checks its visitors through the
//! hub's OAuth, and caches the hub's answers (five minutes in `jupyterhub-singleuser`). For a
//! server that is shared, that cache would let a guest whose share was revoked keep working
//! until it expires, and their open kernel sockets would never notice. So, for shared servers
//! only, the proxy asks the server once per credential who it is (`GET <prefix>api/me`, Jupyter
//! Server's identity API, with the request's own credentials) and remembers the answer here by a
//! hash of the credential; every request is then checked against the visitor's access as the hub
//! sees it now. WebSockets opened by a visitor are registered with a cancellation token that a
//! revocation fires ([`Visits::close_where`]).
//!
//! This is a service of the hub: it knows nothing of shares or scopes; the caller decides who
//! has lost access.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// Remembered identities are dropped beyond this many credentials (oldest first is not worth
/// tracking: a full map is simply cleared, and visitors are asked again).
const MAX_IDENTITIES: usize = 10_000;

/// An open WebSocket of a visitor to a server.
struct Socket {
    owner: String,
    server: String,
    visitor: String,
    cancel: CancellationToken,
}

#[derive(Default)]
struct Inner {
    /// SHA-256 of a request's credentials → the user the server said they are.
    identities: HashMap<[u8; 32], String>,
    sockets: HashMap<u64, Socket>,
    next_socket: u64,
    /// Servers whose visitors are checked: shared now, or a share of them was revoked while
    /// this daemon ran (a revoked guest must stay out after the last share is gone).
    watched: std::collections::HashSet<(String, String)>,
}

#[derive(Default)]
pub struct Visits {
    inner: Mutex<Inner>,
}

/// Removes its socket from the registry when the socket's task ends.
pub struct SocketGuard {
    visits: Arc<Visits>,
    id: u64,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.visits.lock().sockets.remove(&self.id);
    }
}

/// A registered socket: its id (to remove it when it ends) and the token a revocation fires.
pub struct Registered {
    pub id: u64,
    pub cancel: CancellationToken,
}

impl Visits {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Check visitors of `owner`'s server `server` from now on.
    pub fn watch(&self, owner: &str, server: &str) {
        self.lock()
            .watched
            .insert((owner.to_string(), server.to_string()));
    }

    pub fn is_watched(&self, owner: &str, server: &str) -> bool {
        self.lock()
            .watched
            .contains(&(owner.to_string(), server.to_string()))
    }

    /// Who the credential with this hash belongs to, if a server said so before.
    pub fn identity(&self, credential: &[u8; 32]) -> Option<String> {
        self.lock().identities.get(credential).cloned()
    }

    pub fn remember(&self, credential: [u8; 32], visitor: &str) {
        let mut inner = self.lock();
        if inner.identities.len() >= MAX_IDENTITIES {
            inner.identities.clear();
        }
        inner.identities.insert(credential, visitor.to_string());
    }

    /// Register an open WebSocket of `visitor` to `owner`'s server `server`.
    pub fn open_socket(&self, owner: &str, server: &str, visitor: &str) -> Registered {
        let mut inner = self.lock();
        inner.next_socket += 1;
        let id = inner.next_socket;
        let cancel = CancellationToken::new();
        inner.sockets.insert(
            id,
            Socket {
                owner: owner.to_string(),
                server: server.to_string(),
                visitor: visitor.to_string(),
                cancel: cancel.clone(),
            },
        );
        Registered { id, cancel }
    }

    /// A guard that unregisters socket `id` when dropped.
    pub fn guard(self: &Arc<Self>, id: u64) -> SocketGuard {
        SocketGuard {
            visits: self.clone(),
            id,
        }
    }

    /// The distinct visitors with open sockets to `owner`'s server `server`.
    pub fn visitors_of(&self, owner: &str, server: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .lock()
            .sockets
            .values()
            .filter(|s| s.owner == owner && s.server == server)
            .map(|s| s.visitor.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Close (cancel) every socket to `owner`'s server `server` opened by a visitor for whom
    /// `lost` is true; how many were closed.
    pub fn close_where(&self, owner: &str, server: &str, lost: impl Fn(&str) -> bool) -> usize {
        let mut inner = self.lock();
        let ids: Vec<u64> = inner
            .sockets
            .iter()
            .filter(|(_, s)| s.owner == owner && s.server == server && lost(&s.visitor))
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            if let Some(s) = inner.sockets.remove(id) {
                s.cancel.cancel();
            }
        }
        ids.len()
    }

    /// How many sockets are registered (for tests and metrics).
    pub fn open_sockets(&self) -> usize {
        self.lock().sockets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoking_closes_only_the_lost_visitors_sockets_of_that_server() {
        let v = Arc::new(Visits::default());
        let bob = v.open_socket("alice", "", "bob");
        let carol = v.open_socket("alice", "", "carol");
        let bob_elsewhere = v.open_socket("dan", "", "bob");
        assert_eq!(v.visitors_of("alice", ""), vec!["bob", "carol"]);
        assert_eq!(v.close_where("alice", "", |who| who == "bob"), 1);
        assert!(bob.cancel.is_cancelled());
        assert!(!carol.cancel.is_cancelled());
        assert!(!bob_elsewhere.cancel.is_cancelled());
        {
            let _g = v.guard(carol.id);
        }
        assert_eq!(v.open_sockets(), 1, "the guard unregistered carol's socket");
    }

    #[test]
    fn identities_are_remembered_by_credential() {
        let v = Visits::default();
        v.remember([1; 32], "bob");
        assert_eq!(v.identity(&[1; 32]).as_deref(), Some("bob"));
        assert_eq!(v.identity(&[2; 32]), None);
    }
}
