//! Orrery: one daemon that turns a Linux machine into a JupyterHub for a class or a team.
//!
//! It manages users, speaks JupyterHub's REST API and OAuth provider (so stock
//! `jupyterhub-singleuser` images and tools such as `jupyterhub-idle-culler` work unmodified),
//! starts each user's server through a backend, and shares GPUs by giving them to kernels.
//!
//! # Layout
//!
//! The file tree follows JupyterHub's vocabulary, so "where is spawning" is answered by name:
//!
//! * [`config`]: the TOML configuration, its validation and `orrery config` editing.
//! * [`state`]: durable state in sled (users, groups, tokens, sessions, OAuth, servers).
//! * [`hub`]: the shared state of the running daemon; who is calling and what they may do.
//! * [`auth`]: authenticators (firstuse, native, dummy, ldap), the rules for identity providers, and login throttling.
//!   [`providers`]: the identity providers' protocol clients (LDAP, OpenID Connect, GitHub).
//! * [`scopes`]: JupyterHub's permission model. [`roles`]: the config's `[[roles]]`.
//!   [`groups`]: config-managed groups and membership. [`username`]: name rules.
//! * [`apihandlers`]: the REST API under `/hub/api`, one file per resource, and the OAuth provider.
//! * [`handlers`]: the HTML pages under `/hub/` and browser sessions.
//! * [`spawner`]: the backend contract (start/stop/poll) and its implementations;
//!   [`spawn`]: the hub's side of starting a server (tokens, OAuth client, readiness, progress).
//! * [`proxy`]: the in-process proxy from `/user/<name>/` to each user's server;
//!   [`origins`]: which host serves the hub and which each server (`http.subdomain_host`).
//! * [`kernels`]: talking to Jupyter kernels over ZeroMQ and the kernel WebSocket (gateway groundwork).
//! * [`gateway`]: the kernel gateway API on the internal listener (`kernels.remote`): kernels in their own containers.
//! * [`sharing`]: the rules of sharing a server; [`visits`]: who visits a shared server through
//!   the proxy, and their sockets a revocation closes.
//! * [`environment`]: the software environment admins install into for everyone (`orrery env`):
//!   derived images per base image, tagged by content hash, recorded as generations.
//! * [`cull`]: the built-in idle culler. [`reload`]: applying a changed config to the running daemon.
//! * [`app`]: the HTTP router. [`serve`]: startup and explicit graceful shutdown.
//! * [`metrics`], [`telemetry`]: Prometheus metrics and logging. [`secrets`]: tokens and hashes. [`files`]: the daemon's own files, written atomically.
//! * [`cli`]: the `orrery` command line (serve, config, users, groups, env, gpus, status, backup, restore,
//!   cleanup, doctor, version). [`backup`]: the backup archive and copying homes in and out.
//!   [`version`]: the version stamp. [`systemd`]: Type=notify and the watchdog.

pub mod activity;
pub mod apihandlers;
pub mod app;
pub mod auth;
pub mod backup;
pub mod cli;
pub mod config;
pub mod cull;
pub mod docker;
pub mod environment;
pub mod files;
pub mod forward;
pub mod gateway;
pub mod gpu;
pub mod groups;
pub mod handlers;
pub mod hub;
pub mod kernels;
pub mod metrics;
pub mod origins;
pub mod profiles;
pub mod progress;
pub mod providers;
pub mod proxy;
pub mod ratelimit;
pub mod reload;
pub mod roles;
pub mod scheme;
pub mod scopes;
pub mod secrets;
pub mod serve;
pub mod session;
pub mod sharing;
pub mod spawn;
pub mod spawner;
pub mod state;
pub mod systemd;
pub mod telemetry;
pub mod tls;
pub mod username;
pub mod version;
pub mod visits;
