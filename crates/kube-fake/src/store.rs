//! The object store: every object as JSON under (resource, namespace, name), one global
//! `resourceVersion` (an integer, bumped by every write of any object, as etcd's revision),
//! and the history of changes watches replay from (bounded; `compact` forgets it, after which
//! older resourceVersions are `410 Gone`). Writes follow the real registry's rules: system
//! metadata set on create and kept on update, optimistic concurrency on `resourceVersion`,
//! status written only through `/status`, deletion with grace periods and finalizers,
//! background garbage collection of dependents (`ownerReferences`), and namespaces that
//! empty themselves before they go.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::{json, Value};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::admission;
use crate::resources::{self, ResourceInfo};
use crate::selectors::Selector;
use crate::status::ApiError;

/// Where an object lives: (qualified resource, namespace or "", name).
pub type Key = (String, String, String);

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One write, as watches see it.
#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub kind: ChangeKind,
    pub res: &'static ResourceInfo,
    pub namespace: String,
    pub name: String,
    /// The object after the change (for `Deleted`: its last state, with the deletion's rv).
    pub object: Arc<Value>,
    /// The object before the change (`None` for `Added`).
    pub prev: Option<Arc<Value>>,
}

/// Which endpoint a replace or patch came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// The resource itself: its status is kept as stored.
    Main,
    /// The `status` subresource: only the status is taken.
    Status,
}

/// A delete request's options (`DeleteOptions` body or query parameters).
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    /// `Orphan`, `Background` or `Foreground`; only `Orphan` changes anything here (dependents
    /// are not collected).
    pub propagation_policy: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

/// What a delete did.
#[derive(Debug, Clone)]
pub enum Deleted {
    /// The object is gone (its last state).
    Now(Arc<Value>),
    /// The object is being deleted: a grace period runs or finalizers hold it.
    Pending(Arc<Value>),
}

/// The `resourceVersion` a list asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListRv {
    /// Unset: the latest state.
    Latest,
    /// `resourceVersion=N` (or `NotOlderThan`): at least N (N=0: any).
    NotOlderThan(u64),
    /// `resourceVersionMatch=Exact`: the state at exactly N.
    Exact(u64),
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchStart {
    /// `resourceVersion` unset or "0": an `ADDED` for every current object, then live changes.
    Now,
    /// `resourceVersion=N`: every change after N, then live changes.
    After(u64),
}

/// An open watch's feed: the changes to send first, then `rx`'s.
pub struct Subscription {
    pub initial: Vec<Arc<Change>>,
    pub rx: broadcast::Receiver<Arc<Change>>,
    /// The resourceVersion the watch has seen everything up to after `initial`.
    pub rv: u64,
    /// Cancelled by `close_watches` and at shutdown.
    pub cancel: CancellationToken,
}

/// Now, as the API's timestamps (RFC 3339, seconds).
pub fn now() -> String {
    timestamp(chrono::Utc::now())
}

pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn key(res: &ResourceInfo, ns: &str, name: &str) -> Key {
    (
        res.qualified(),
        if res.namespaced {
            ns.to_string()
        } else {
            String::new()
        },
        name.to_string(),
    )
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn finalizers(obj: &Value) -> usize {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}

fn set_meta(obj: &mut Value, field: &str, value: Value) {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    if let Some(Value::Object(m)) = obj.get_mut("metadata") {
        if value.is_null() {
            m.remove(field);
        } else {
            m.insert(field.to_string(), value);
        }
    }
}

/// A random suffix for `generateName`, from the real server's alphabet.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

struct Inner {
    objects: BTreeMap<Key, Arc<Value>>,
    rv: u64,
    /// Changes with rv > `floor`, oldest first.
    history: VecDeque<Arc<Change>>,
    floor: u64,
    cap: usize,
    tx: broadcast::Sender<Arc<Change>>,
    changed: watch::Sender<u64>,
    next_cluster_ip: u32,
}

/// The store.
pub struct Store {
    inner: Mutex<Inner>,
    /// Parent of every open watch's token: cancelled and replaced by `close_watches`.
    watches: Mutex<CancellationToken>,
    /// Cancelled at shutdown: ends every watch for good.
    root: CancellationToken,
}

impl Store {
    /// A store keeping `history` changes, with the namespaces a cluster starts with and the
    /// given RuntimeClasses.
    pub fn new(history: usize, runtime_classes: &[String]) -> Store {
        let (tx, _) = broadcast::channel(16 * 1024);
        let (changed, _) = watch::channel(0);
        let root = CancellationToken::new();
        let store = Store {
            inner: Mutex::new(Inner {
                objects: BTreeMap::new(),
                rv: 0,
                history: VecDeque::new(),
                floor: 0,
                cap: history,
                tx,
                changed,
                next_cluster_ip: 1,
            }),
            watches: Mutex::new(root.child_token()),
            root,
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            if let Err(e) = store.create(&resources::NAMESPACES, "", obj, false) {
                tracing::error!("seeding namespace {ns}: {e}");
            }
        }
        for rc in runtime_classes {
            let obj = json!({
                "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                "metadata": {"name": rc}, "handler": rc,
            });
            if let Err(e) = store.create(&resources::RUNTIME_CLASSES, "", obj, false) {
                tracing::error!("seeding RuntimeClass {rc}: {e}");
            }
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current global resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// A receiver that wakes after every write (its value: the resourceVersion then).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.lock().changed.subscribe()
    }

    pub fn get(
        &self,
        res: &'static ResourceInfo,
        ns: &str,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        self.lock()
            .objects
            .get(&key(res, ns, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(res, name))
    }

    /// The objects of `res` (in `ns`, or everywhere for `None`) matching `sel`, and the
    /// resourceVersion of that state.
    pub fn list(
        &self,
        res: &'static ResourceInfo,
        ns: Option<&str>,
        sel: &Selector,
        rv: ListRv,
    ) -> Result<(Vec<Arc<Value>>, u64), ApiError> {
        let g = self.lock();
        let (objects, at) = match rv {
            ListRv::Latest | ListRv::NotOlderThan(0) => (g.current(res, ns), g.rv),
            ListRv::NotOlderThan(n) if n <= g.rv => (g.current(res, ns), g.rv),
            ListRv::NotOlderThan(n) | ListRv::Exact(n) if n > g.rv => {
                return Err(ApiError::too_large_resource_version(n, g.rv))
            }
            ListRv::Exact(n) if n < g.floor => {
                return Err(ApiError::expired(n, g.floor + 1));
            }
            ListRv::Exact(n) => (g.at(res, ns, n), n),
            ListRv::NotOlderThan(_) => (g.current(res, ns), g.rv),
        };
        Ok((objects.into_iter().filter(|o| sel.matches(o)).collect(), at))
    }

    /// Create `obj` as a `res` in `ns`.
    pub fn create(
        &self,
        res: &'static ResourceInfo,
        ns: &str,
        obj: Value,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        self.lock().create(res, ns, obj, dry_run)
    }

    /// Replace (PUT) `ns/name` with `obj`.
    pub fn update(
        &self,
        res: &'static ResourceInfo,
        ns: &str,
        name: &str,
        obj: Value,
        write: Write,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let mut g = self.lock();
        let old = g.get(res, ns, name)?;
        let obj = check_identity(res, ns, name, obj)?;
        g.replace(res, old, obj, write, dry_run)
    }

    /// Patch `ns/name` with `patch` of `kind`.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        res: &'static ResourceInfo,
        ns: &str,
        name: &str,
        kind: crate::patch::PatchType,
        patch: &Value,
        write: Write,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let mut g = self.lock();
        let old = g.get(res, ns, name)?;
        let new = crate::patch::apply(kind, &old, patch)?;
        let new = check_identity(res, ns, name, new)?;
        g.replace(res, old, new, write, dry_run)
    }

    /// Delete `ns/name`.
    pub fn delete(
        &self,
        res: &'static ResourceInfo,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        self.lock().delete(res, &key(res, ns, name), opts)
    }

    /// Delete every `res` in `ns` (or everywhere) matching `sel`; the objects as the deletes
    /// left them.
    pub fn delete_collection(
        &self,
        res: &'static ResourceInfo,
        ns: Option<&str>,
        sel: &Selector,
        opts: &DeleteOptions,
    ) -> Result<Vec<Arc<Value>>, ApiError> {
        let mut g = self.lock();
        let targets: Vec<Arc<Value>> = g
            .current(res, ns)
            .into_iter()
            .filter(|o| sel.matches(o))
            .collect();
        let mut out = Vec::new();
        for o in targets {
            let k = key(
                res,
                meta_str(&o, "namespace").unwrap_or(""),
                meta_str(&o, "name").unwrap_or(""),
            );
            match g.delete(res, &k, opts) {
                Ok(Deleted::Now(v) | Deleted::Pending(v)) => out.push(v),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Change `ns/name` in place (the fake's own controllers: status, binding); no
    /// validation, but a real write (resourceVersion, watch event) if anything changed.
    /// `Ok(None)`: no such object.
    pub fn modify(
        &self,
        res: &'static ResourceInfo,
        ns: &str,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Option<Arc<Value>> {
        let mut g = self.lock();
        let k = key(res, ns, name);
        let old = g.objects.get(&k).cloned()?;
        let mut new = (*old).clone();
        f(&mut new);
        if new == *old {
            return Some(old);
        }
        Some(g.write(res, k, Some(old), new))
    }

    /// Subscribe to the changes of `res` (in `ns`, or everywhere).
    pub fn watch(
        &self,
        res: &'static ResourceInfo,
        ns: Option<&str>,
        start: WatchStart,
    ) -> Result<Subscription, ApiError> {
        let g = self.lock();
        let rx = g.tx.subscribe();
        let cancel = self
            .watches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .child_token();
        let in_scope = |c: &Change| std::ptr::eq(c.res, res) && ns.is_none_or(|n| n == c.namespace);
        let (initial, rv) = match start {
            WatchStart::Now => {
                let initial = g
                    .current(res, ns)
                    .into_iter()
                    .map(|o| {
                        Arc::new(Change {
                            rv: meta_str(&o, "resourceVersion")
                                .and_then(|r| r.parse().ok())
                                .unwrap_or(0),
                            kind: ChangeKind::Added,
                            res,
                            namespace: meta_str(&o, "namespace").unwrap_or("").to_string(),
                            name: meta_str(&o, "name").unwrap_or("").to_string(),
                            object: o,
                            prev: None,
                        })
                    })
                    .collect();
                (initial, g.rv)
            }
            WatchStart::After(n) if n < g.floor => {
                return Err(ApiError::expired(n, g.floor + 1));
            }
            WatchStart::After(n) => (
                g.history
                    .iter()
                    .filter(|c| c.rv > n && in_scope(c))
                    .cloned()
                    .collect(),
                // (A resourceVersion from the future: from now on; nothing is skipped.)
                g.rv,
            ),
        };
        Ok(Subscription {
            initial,
            rx,
            rv,
            cancel,
        })
    }

    /// Forget the whole watch history.
    pub fn compact(&self) {
        let mut g = self.lock();
        g.history.clear();
        g.floor = g.rv;
    }

    /// End every open watch.
    pub fn close_watches(&self) {
        let mut w = self.watches.lock().unwrap_or_else(PoisonError::into_inner);
        w.cancel();
        *w = self.root.child_token();
    }

    /// End every watch for good (shutdown).
    pub fn shutdown(&self) {
        self.root.cancel();
    }

    /// Cancelled at shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.root.clone()
    }
}

/// A replacing object must name what the URL names.
fn check_identity(
    res: &ResourceInfo,
    ns: &str,
    name: &str,
    mut obj: Value,
) -> Result<Value, ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    match meta_str(&obj, "name") {
        None => set_meta(&mut obj, "name", json!(name)),
        Some(n) if n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )))
        }
        Some(_) => {}
    }
    if res.namespaced {
        match meta_str(&obj, "namespace") {
            None => set_meta(&mut obj, "namespace", json!(ns)),
            Some(n) if n != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on \
                     the request",
                ))
            }
            Some(_) => {}
        }
    }
    Ok(obj)
}

fn check_type(res: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if (!kind.is_empty() && kind != res.kind)
        || (!api_version.is_empty() && api_version != res.api_version())
    {
        return Err(ApiError::bad_request(format!(
            "{kind} in version \"{api_version}\" cannot be handled as a {}: the object's kind \
             or apiVersion does not match the resource",
            res.kind
        )));
    }
    obj["kind"] = json!(res.kind);
    obj["apiVersion"] = json!(res.api_version());
    Ok(())
}

impl Inner {
    fn get(&self, res: &ResourceInfo, ns: &str, name: &str) -> Result<Arc<Value>, ApiError> {
        self.objects
            .get(&key(res, ns, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(res, name))
    }

    /// The current objects of `res` (in `ns`, or everywhere).
    fn current(&self, res: &ResourceInfo, ns: Option<&str>) -> Vec<Arc<Value>> {
        let q = res.qualified();
        let start = (q.clone(), ns.unwrap_or("").to_string(), String::new());
        self.objects
            .range(start..)
            .take_while(|(k, _)| k.0 == q && ns.is_none_or(|n| !res.namespaced || k.1 == n))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The objects of `res` as they were at resourceVersion `at` (>= floor), by undoing the
    /// history after it.
    fn at(&self, res: &'static ResourceInfo, ns: Option<&str>, at: u64) -> Vec<Arc<Value>> {
        let mut state: BTreeMap<(String, String), Arc<Value>> = self
            .current(res, ns)
            .into_iter()
            .map(|o| {
                (
                    (
                        meta_str(&o, "namespace").unwrap_or("").to_string(),
                        meta_str(&o, "name").unwrap_or("").to_string(),
                    ),
                    o,
                )
            })
            .collect();
        for c in self.history.iter().rev() {
            if c.rv <= at {
                break;
            }
            if !std::ptr::eq(c.res, res) || ns.is_some_and(|n| res.namespaced && n != c.namespace) {
                continue;
            }
            let k = (c.namespace.clone(), c.name.clone());
            match (&c.kind, &c.prev) {
                (ChangeKind::Added, _) => {
                    state.remove(&k);
                }
                (_, Some(prev)) => {
                    state.insert(k, prev.clone());
                }
                (_, None) => {}
            }
        }
        state.into_values().collect()
    }

    fn bump(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn record(&mut self, change: Change) {
        let change = Arc::new(change);
        self.history.push_back(change.clone());
        while self.history.len() > self.cap {
            if let Some(old) = self.history.pop_front() {
                self.floor = old.rv;
            }
        }
        if self.cap == 0 {
            self.floor = self.rv;
        }
        // No receivers is fine.
        let _ = self.tx.send(change);
        self.changed.send_replace(self.rv);
    }

    /// Store `new` at `k` with a new resourceVersion and record the change.
    fn write(
        &mut self,
        res: &'static ResourceInfo,
        k: Key,
        prev: Option<Arc<Value>>,
        mut new: Value,
    ) -> Arc<Value> {
        let rv = self.bump();
        set_meta(&mut new, "resourceVersion", json!(rv.to_string()));
        let new = Arc::new(new);
        self.objects.insert(k.clone(), new.clone());
        let kind = if prev.is_some() {
            ChangeKind::Modified
        } else {
            ChangeKind::Added
        };
        self.record(Change {
            rv,
            kind,
            res,
            namespace: k.1,
            name: k.2,
            object: new.clone(),
            prev,
        });
        new
    }

    fn namespace_state(&self, ns: &str) -> Result<(), ApiError> {
        match self.objects.get(&key(&resources::NAMESPACES, "", ns)) {
            None => Err(ApiError::not_found(&resources::NAMESPACES, ns)),
            Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => {
                Err(ApiError::forbidden(format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                )))
            }
            Some(_) => Ok(()),
        }
    }

    fn create(
        &mut self,
        res: &'static ResourceInfo,
        ns: &str,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        check_type(res, &mut obj)?;
        if !obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"] = json!({});
        }
        if res.namespaced {
            if let Some(n) = meta_str(&obj, "namespace") {
                if n != ns {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent \
                         on the request",
                    ));
                }
            }
            self.namespace_state(ns)?;
            set_meta(&mut obj, "namespace", json!(ns));
        } else {
            set_meta(&mut obj, "namespace", Value::Null);
        }
        for f in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "managedFields",
            "selfLink",
        ] {
            set_meta(&mut obj, f, Value::Null);
        }
        let generate = meta_str(&obj, "name")
            .is_none()
            .then(|| meta_str(&obj, "generateName").map(String::from))
            .flatten();
        if let Some(prefix) = &generate {
            set_meta(
                &mut obj,
                "name",
                json!(format!("{prefix}{}", random_suffix())),
            );
        }
        admission::default_object(res, &mut obj);
        admission::validate(res, &obj)?;
        admission::admit_create(res, &obj, |rc| {
            self.objects
                .contains_key(&key(&resources::RUNTIME_CLASSES, "", rc))
        })?;
        let mut name = meta_str(&obj, "name").unwrap_or("").to_string();
        let mut tries = 0;
        while self.objects.contains_key(&key(res, ns, &name)) {
            match &generate {
                Some(prefix) if tries < 8 => {
                    tries += 1;
                    name = format!("{prefix}{}", random_suffix());
                    set_meta(&mut obj, "name", json!(name));
                }
                _ => return Err(ApiError::already_exists(res, &name)),
            }
        }
        let uid = uuid::Uuid::new_v4().to_string();
        let ip = &mut self.next_cluster_ip;
        admission::on_create(res, &mut obj, &uid, || {
            let n = *ip;
            *ip += 1;
            format!("10.96.{}.{}", n / 250, n % 250 + 1)
        });
        set_meta(&mut obj, "uid", json!(uid));
        set_meta(&mut obj, "creationTimestamp", json!(now()));
        if res.has_spec {
            set_meta(&mut obj, "generation", json!(1));
        }
        if dry_run {
            return Ok(Arc::new(obj));
        }
        Ok(self.write(res, key(res, ns, &name), None, obj))
    }

    /// Replace `old` by `new` (a PUT, or a patch's result), by the real registry's rules.
    fn replace(
        &mut self,
        res: &'static ResourceInfo,
        old: Arc<Value>,
        mut new: Value,
        write: Write,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let name = meta_str(&old, "name").unwrap_or("").to_string();
        let ns = meta_str(&old, "namespace").unwrap_or("").to_string();
        check_type(res, &mut new)?;
        if let Some(asked) = meta_str(&new, "resourceVersion") {
            if Some(asked) != meta_str(&old, "resourceVersion") {
                return Err(ApiError::conflict(res, &name));
            }
        }
        if let Some(uid) = meta_str(&new, "uid") {
            let have = meta_str(&old, "uid").unwrap_or("");
            if uid != have {
                return Err(ApiError::conflict_because(
                    res,
                    &name,
                    &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"),
                ));
            }
        }
        match write {
            Write::Main => {
                if res.has_status {
                    match old.get("status") {
                        Some(s) => new["status"] = s.clone(),
                        None => {
                            if let Value::Object(m) = &mut new {
                                m.remove("status");
                            }
                        }
                    }
                }
            }
            Write::Status => {
                let status = new.get("status").cloned();
                new = (*old).clone();
                match status {
                    Some(s) => new["status"] = s,
                    None => {
                        if let Value::Object(m) = &mut new {
                            m.remove("status");
                        }
                    }
                }
            }
        }
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
            "resourceVersion",
        ] {
            set_meta(
                &mut new,
                f,
                old.pointer(&format!("/metadata/{f}"))
                    .cloned()
                    .unwrap_or(Value::Null),
            );
        }
        set_meta(&mut new, "managedFields", Value::Null);
        set_meta(&mut new, "selfLink", Value::Null);
        if write == Write::Main {
            admission::default_object(res, &mut new);
            admission::validate_update(res, &old, &new)?;
        }
        if res.has_spec && new.get("spec") != old.get("spec") {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            set_meta(&mut new, "generation", json!(g + 1));
        }
        if new == *old {
            return Ok(old);
        }
        if dry_run {
            return Ok(Arc::new(new));
        }
        let k = key(res, &ns, &name);
        let done = new.pointer("/metadata/deletionTimestamp").is_some()
            && finalizers(&new) == 0
            && new
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                == 0;
        if done {
            // The last finalizer went: the object goes (one DELETED, as the real registry).
            return Ok(self.remove(res, &k, Some(new), false));
        }
        Ok(self.write(res, k, Some(old), new))
    }

    /// Remove the object at `k` (its last state `last`, else as stored): a DELETED change,
    /// then its dependents (unless orphaned) and maybe its terminating namespace.
    fn remove(
        &mut self,
        res: &'static ResourceInfo,
        k: &Key,
        last: Option<Value>,
        orphan: bool,
    ) -> Arc<Value> {
        let prev = self.objects.remove(k);
        let mut obj = last
            .or_else(|| prev.as_deref().cloned())
            .unwrap_or(Value::Null);
        let rv = self.bump();
        set_meta(&mut obj, "resourceVersion", json!(rv.to_string()));
        let obj = Arc::new(obj);
        self.record(Change {
            rv,
            kind: ChangeKind::Deleted,
            res,
            namespace: k.1.clone(),
            name: k.2.clone(),
            object: obj.clone(),
            prev,
        });
        if !orphan {
            if let Some(uid) = meta_str(&obj, "uid") {
                self.collect_dependents(uid, res.namespaced.then_some(k.1.as_str()));
            }
        }
        if res.namespaced {
            self.finish_namespace(&k.1);
        }
        obj
    }

    /// Background garbage collection: delete the objects whose every owner is gone.
    fn collect_dependents(&mut self, owner_uid: &str, ns: Option<&str>) {
        let uids: std::collections::HashSet<String> = self
            .objects
            .values()
            .filter_map(|o| meta_str(o, "uid").map(String::from))
            .collect();
        let dependents: Vec<Key> = self
            .objects
            .iter()
            .filter(|(k, _)| ns.is_none_or(|n| k.1 == n))
            .filter(|(_, o)| {
                let owners: Vec<&str> = o
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .map(|refs| {
                        refs.iter()
                            .filter_map(|r| r.get("uid").and_then(Value::as_str))
                            .collect()
                    })
                    .unwrap_or_default();
                owners.contains(&owner_uid) && owners.iter().all(|u| !uids.contains(*u))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in dependents {
            if let Some(res) = resources::ALL
                .iter()
                .copied()
                .find(|r| r.qualified() == k.0)
            {
                if let Err(e) = self.delete(res, &k, &DeleteOptions::default()) {
                    tracing::debug!("collecting {}/{}: {e}", k.0, k.2);
                }
            }
        }
    }

    /// A terminating namespace with nothing left in it goes.
    fn finish_namespace(&mut self, ns: &str) {
        let nk = key(&resources::NAMESPACES, "", ns);
        let Some(n) = self.objects.get(&nk) else {
            return;
        };
        if n.pointer("/metadata/deletionTimestamp").is_none() || finalizers(n) > 0 {
            return;
        }
        let empty = !self.objects.keys().any(|k| {
            k.1 == ns
                && resources::ALL
                    .iter()
                    .any(|r| r.namespaced && r.qualified() == k.0)
        });
        if empty {
            self.remove(&resources::NAMESPACES, &nk, None, true);
        }
    }

    fn delete(
        &mut self,
        res: &'static ResourceInfo,
        k: &Key,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let old = self
            .objects
            .get(k)
            .cloned()
            .ok_or_else(|| ApiError::not_found(res, &k.2))?;
        let name = k.2.as_str();
        if let Some(uid) = &opts.precondition_uid {
            let have = meta_str(&old, "uid").unwrap_or("");
            if uid != have {
                return Err(ApiError::conflict_because(
                    res,
                    name,
                    &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"),
                ));
            }
        }
        if let Some(rv) = &opts.precondition_rv {
            let have = meta_str(&old, "resourceVersion").unwrap_or("");
            if rv != have {
                return Err(ApiError::conflict_because(
                    res,
                    name,
                    &format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {have}"),
                ));
            }
        }
        let orphan = opts.propagation_policy.as_deref() == Some("Orphan");
        let has_finalizers = finalizers(&old) > 0;
        let terminating = old.pointer("/metadata/deletionTimestamp").is_some();
        if std::ptr::eq(res, &resources::NAMESPACES) {
            if ["default", "kube-system", "kube-public"].contains(&name) {
                return Err(ApiError::forbidden(format!(
                    "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
                )));
            }
            if opts.dry_run {
                return Ok(Deleted::Pending(old));
            }
            if terminating {
                return Ok(Deleted::Pending(old));
            }
            let mut new = (*old).clone();
            set_meta(&mut new, "deletionTimestamp", json!(now()));
            set_meta(&mut new, "deletionGracePeriodSeconds", json!(0));
            new["status"] = json!({"phase": "Terminating"});
            let new = self.write(res, k.clone(), Some(old), new);
            let contents: Vec<Key> = self
                .objects
                .keys()
                .filter(|c| c.1 == name && c.0 != res.qualified())
                .cloned()
                .collect();
            for c in contents {
                if let Some(r) = resources::ALL
                    .iter()
                    .copied()
                    .find(|r| r.qualified() == c.0)
                {
                    if let Err(e) = self.delete(r, &c, &DeleteOptions::default()) {
                        tracing::debug!("emptying namespace {name}: {e}");
                    }
                }
            }
            self.finish_namespace(name);
            return Ok(match self.objects.get(k) {
                Some(o) => Deleted::Pending(o.clone()),
                None => Deleted::Now(new),
            });
        }
        let grace = if std::ptr::eq(res, &resources::PODS) {
            let bound = old
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            let finished = matches!(
                old.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed")
            );
            if !bound || finished {
                0
            } else {
                opts.grace_period_seconds
                    .or_else(|| {
                        old.pointer("/spec/terminationGracePeriodSeconds")
                            .and_then(Value::as_i64)
                    })
                    .unwrap_or(30)
                    .max(0)
            }
        } else {
            0
        };
        if terminating {
            let current = old
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if grace >= current {
                return Ok(Deleted::Pending(old));
            }
        }
        if grace == 0 && !has_finalizers {
            if opts.dry_run {
                return Ok(Deleted::Now(old));
            }
            return Ok(Deleted::Now(self.remove(res, k, None, orphan)));
        }
        let mut new = (*old).clone();
        let when = chrono::Utc::now() + chrono::Duration::seconds(grace);
        set_meta(&mut new, "deletionTimestamp", json!(timestamp(when)));
        set_meta(&mut new, "deletionGracePeriodSeconds", json!(grace));
        if opts.dry_run {
            return Ok(Deleted::Pending(Arc::new(new)));
        }
        Ok(Deleted::Pending(self.write(res, k.clone(), Some(old), new)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{CONFIGMAPS, PODS};

    fn cm(name: &str) -> Value {
        json!({"metadata": {"name": name, "labels": {"a": "b"}}, "data": {"k": "v"}})
    }

    #[test]
    fn resource_versions_and_exact_lists() {
        let s = Store::new(100, &[]);
        let base = s.current_rv();
        let a = s.create(&CONFIGMAPS, "default", cm("a"), false).unwrap();
        assert_eq!(a["metadata"]["resourceVersion"], (base + 1).to_string());
        s.create(&CONFIGMAPS, "default", cm("b"), false).unwrap();
        s.delete(&CONFIGMAPS, "default", "a", &DeleteOptions::default())
            .unwrap();
        let all = Selector::default();
        let (now, rv) = s
            .list(&CONFIGMAPS, Some("default"), &all, ListRv::Latest)
            .unwrap();
        assert_eq!((now.len(), rv), (1, base + 3));
        let (then, _) = s
            .list(&CONFIGMAPS, Some("default"), &all, ListRv::Exact(base + 1))
            .unwrap();
        assert_eq!(then.len(), 1);
        assert_eq!(then[0]["metadata"]["name"], "a");
        s.compact();
        assert_eq!(
            s.list(&CONFIGMAPS, None, &all, ListRv::Exact(base + 1))
                .unwrap_err()
                .code,
            410
        );
        assert!(s
            .watch(&CONFIGMAPS, None, WatchStart::After(base + 1))
            .is_err());
        assert!(s
            .watch(&CONFIGMAPS, None, WatchStart::After(base + 3))
            .is_ok());
    }

    #[test]
    fn finalizers_hold_deletion() {
        let s = Store::new(100, &[]);
        let mut o = cm("f");
        o["metadata"]["finalizers"] = json!(["x/y"]);
        s.create(&CONFIGMAPS, "default", o, false).unwrap();
        let d = s
            .delete(&CONFIGMAPS, "default", "f", &DeleteOptions::default())
            .unwrap();
        assert!(matches!(d, Deleted::Pending(_)));
        let got = s.get(&CONFIGMAPS, "default", "f").unwrap();
        assert!(got.pointer("/metadata/deletionTimestamp").is_some());
        let p = json!({"metadata": {"finalizers": null}});
        s.patch(
            &CONFIGMAPS,
            "default",
            "f",
            crate::patch::PatchType::Merge,
            &p,
            Write::Main,
            false,
        )
        .unwrap();
        assert_eq!(s.get(&CONFIGMAPS, "default", "f").unwrap_err().code, 404);
    }

    #[test]
    fn pods_status_and_grace() {
        let s = Store::new(100, &[]);
        let p = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}, "status": {"phase": "Running"}});
        let p = s.create(&PODS, "default", p, false).unwrap();
        assert_eq!(p["status"]["phase"], "Pending");
        // Unbound: goes at once.
        assert!(matches!(
            s.delete(&PODS, "default", "p", &DeleteOptions::default())
                .unwrap(),
            Deleted::Now(_)
        ));
        let p = json!({"metadata": {"name": "q"}, "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "i:1"}]}});
        s.create(&PODS, "default", p, false).unwrap();
        let d = s
            .delete(&PODS, "default", "q", &DeleteOptions::default())
            .unwrap();
        let Deleted::Pending(q) = d else {
            panic!("bound pod should be pending")
        };
        assert_eq!(q["metadata"]["deletionGracePeriodSeconds"], 30);
        let zero = DeleteOptions {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        assert!(matches!(
            s.delete(&PODS, "default", "q", &zero).unwrap(),
            Deleted::Now(_)
        ));
    }

    #[test]
    fn history_is_bounded() {
        let s = Store::new(2, &[]);
        let first = s.current_rv();
        for n in ["a", "b", "c"] {
            s.create(&CONFIGMAPS, "default", cm(n), false).unwrap();
        }
        // Three changes after `first`, two kept: resuming from `first` is too old.
        let e = s
            .watch(&CONFIGMAPS, None, WatchStart::After(first))
            .err()
            .unwrap();
        assert_eq!((e.code, e.reason), (410, "Expired"));
        let sub = s
            .watch(&CONFIGMAPS, None, WatchStart::After(first + 1))
            .ok()
            .unwrap();
        assert_eq!(sub.initial.len(), 2);
    }

    #[test]
    fn missing_namespace() {
        let s = Store::new(100, &[]);
        let e = s.create(&CONFIGMAPS, "nope", cm("a"), false).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (404, "namespaces \"nope\" not found")
        );
    }
}
