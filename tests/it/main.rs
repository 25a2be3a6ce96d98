//! Orrery's integration tests, in one binary: one link instead of a dozen on a 2-core CI, and
//! one process, so the shared fixtures (the test image, the Python venv, the Docker tests'
//! serial lock) are made once. Each module is one area, as the README's table lists.
//!
//! The tests start the real `orrery serve` (or build the app router in-process) and talk to
//! real parts: a Docker engine, `jupyterhub-singleuser`, Jupyter Server, Chromium, JupyterHub's
//! Python clients. A missing prerequisite fails the test and says what to install.

// A panic is how a test fails; unwrapping is the clearest way to say "this must work".
#![allow(clippy::unwrap_used)]

mod common;

mod admin_page;
mod api;
mod auth_and_state;
mod browser;
mod config_cli;
mod docker_e2e;
mod environment;
mod gateway_e2e;
mod gateway_local;
mod github;
mod gpu;
mod groups;
mod https;
mod kernel_wire;
mod kubernetes;
mod ldap;
mod lists_model;
mod oidc;
mod oidc_provider;
mod origins;
mod packaging;
mod pages;
mod proxy;
mod python_clients;
mod roles;
mod serve;
mod sharing;
mod systemd;
