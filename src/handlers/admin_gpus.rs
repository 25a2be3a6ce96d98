//! The admin's GPU panel (`<hub>/admin/gpus`): the units NVML shows (memory, utilization, how
//! many kernels hold each), who holds them (user, kernel, since, idle for, utilization), the
//! queue in the order the policy serves it (positions and waits; nobody reorders it by hand),
//! and processes Orrery did not start. An admin can take a kernel's GPU back: its notebooks
//! are told who did, and the unit goes to the next in line. The same values as
//! `GET /hub/api/orrery/gpus`, rendered without JavaScript.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::admin::{require_admin, AdminForm};
use super::forms::{self, Fields};
use super::layout::{self, span, Nav, Notice};
use crate::config::GpuPolicy;
use crate::gateway::manager::short_id;
use crate::hub::{Hub, Principal};
use crate::session::{self, LoggedIn};
use crate::username;

/// `GET <hub>/admin/gpus`.
pub async fn page(
    State(hub): State<Arc<Hub>>,
    LoggedIn(p): LoggedIn,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(r) = require_admin(&hub, &p) {
        return r;
    }
    let q = Fields::query(query.as_deref());
    // Only fixed messages, naming a user only when the name is valid.
    let notices = match (q.get("done"), username::normalize(q.get("user"))) {
        ("reclaimed", Ok(user)) => vec![Notice::Info(format!(
            "{user}'s kernel gave its GPU back; the next in line gets it."
        ))],
        _ => Vec::new(),
    };
    render(&hub, &p, StatusCode::OK, notices).await
}

/// `POST <hub>/admin/gpus/reclaim` (field `kernel`): take a kernel's GPU back now.
pub async fn reclaim(State(hub): State<Arc<Hub>>, form: AdminForm) -> Response {
    let AdminForm { p, me, fields } = form;
    let kernel = fields.get("kernel");
    match hub.gateway.reclaim_gpus_by_admin(kernel, &me.name).await {
        Ok(user) => layout::redirect(&format!(
            "{}admin/gpus?done=reclaimed&user={}",
            hub.hub_prefix(),
            urlencoding::encode(&user)
        )),
        Err(message) => render(&hub, &p, StatusCode::CONFLICT, vec![Notice::Error(message)]).await,
    }
}

async fn render(hub: &Hub, p: &Principal, status: StatusCode, notices: Vec<Notice>) -> Response {
    let hp = hub.hub_prefix();
    let csrf = session::csrf_token(p);
    let cfg = hub.config();
    let crate::gateway::queue::GpuSnapshot {
        inventory,
        holders,
        queue,
        foreign,
    } = hub.gateway.gpu_snapshot().await;
    let gib = |b: u64| format!("{:.1}", b as f64 / f64::from(1u32 << 30));
    let policy = match cfg.gpu.policy {
        GpuPolicy::Exclusive => "exclusive: one kernel per unit".to_string(),
        GpuPolicy::Shared => format!(
            "shared: up to {} kernels per unit, each within its GPU memory budget",
            cfg.gpu.shared.max_per_unit
        ),
    };
    let body = html! {
        (layout::notices(&notices))
        p { a href=(format!("{hp}admin")) { "← Users" } }
        section aria-labelledby="units-heading" {
            h2 #units-heading { "GPU units" }
            p.hint { "Policy: " (policy) ". Quota per user: " (cfg.gpu.quota.per_user) "." }
            @match &inventory {
                Err(e) => { p #gpu-error { "No GPUs: " (e) } }
                Ok(inv) => {
                    div.table-wrap {
                        table #gpu-units {
                            caption { (inv.units.len()) " unit(s), NVIDIA driver " (inv.driver_version) }
                            thead { tr {
                                th scope="col" { "GPU" } th scope="col" { "Unit" } th scope="col" { "Model" }
                                th scope="col" { "Memory (GiB)" } th scope="col" { "Utilization" } th scope="col" { "Held by" }
                            } }
                            tbody {
                                @for u in &inv.units {
                                    tr data-unit=(u.uuid) {
                                        td { (u.gpu_index) }
                                        th scope="row" { code { (u.uuid) } }
                                        td { (u.model) @if let Some(m) = &u.mig_profile { " (" (m) ")" } }
                                        td { (gib(u.memory_used)) " / " (gib(u.memory_total)) }
                                        td { @if let Some(x) = u.utilization { (x) " %" } @else { "–" } }
                                        td { (holders.iter().filter(|h| h.unit == u.uuid).count()) " kernel(s)"
                                            @if !u.scheduled { " (not handed out: gpu.devices)" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="holders-heading" {
            h2 #holders-heading { "Holders" }
            @if holders.is_empty() { p.muted #gpu-no-holders { "No kernel holds a GPU." } } @else {
                div.table-wrap {
                    table #gpu-holders {
                        thead { tr {
                            th scope="col" { "User" } th scope="col" { "Kernel" } th scope="col" { "Unit" }
                            th scope="col" { "Since" } th scope="col" { "Idle for" } th scope="col" { "Utilization" }
                            th scope="col" { "Actions" }
                        } }
                        tbody {
                            @for h in &holders {
                                tr data-kernel=(h.kernel) data-unit=(h.unit) data-user=(h.user) data-server=[h.server.as_deref()] {
                                    th scope="row" { (h.user) }
                                    td {
                                        @match &h.server {
                                            Some(s) if s.is_empty() => { "notebook server" }
                                            Some(s) => { "notebook server " code { (s) } }
                                            None => { code { (short_id(&h.kernel)) } }
                                        }
                                    }
                                    td { code { (h.unit) } }
                                    td { (layout::time(h.since.as_ref(), "–")) }
                                    td.idle {
                                        @match (h.idle_s, &h.server) {
                                            (_, Some(_)) => "–",
                                            (Some(s), None) => (span(s)),
                                            (None, None) => "busy",
                                        }
                                    }
                                    td.util { @if let Some(x) = h.utilization { (x) " %" } @else { "–" } }
                                    td {
                                        @if h.server.is_some() {
                                            span.hint { "held while the server runs (stop it on the users page)" }
                                        } @else {
                                        form.inline method="post" action=(format!("{hp}admin/gpus/reclaim")) {
                                            (forms::xsrf_input(&csrf))
                                            input type="hidden" name="kernel" value=(h.kernel);
                                            button.small.danger type="submit"
                                                aria-label=(format!("Take the GPU back from {}'s kernel {}", h.user, short_id(&h.kernel))) { "Take GPU back" }
                                        }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                p.hint { "Taking a GPU back stops the kernel's container (its variables are lost) and tells its notebook who did it; its next cell starts it again, waiting its turn." }
            }
        }
        section aria-labelledby="queue-heading" {
            h2 #queue-heading { "Queue" }
            p.hint { "Served in this order: higher group priority ([[gpu.groups]]) first, then users holding fewer GPUs, then arrival. The policy decides; the order cannot be changed by hand." }
            @if queue.is_empty() { p.muted #gpu-no-queue { "Nobody waits for a GPU." } } @else {
                div.table-wrap {
                    table #gpu-queue {
                        thead { tr {
                            th scope="col" { "Position" } th scope="col" { "User" } th scope="col" { "Kernel" }
                            th scope="col" { "Units" } th scope="col" { "Waiting for" } th scope="col" { "Priority" }
                        } }
                        tbody {
                            @for w in &queue {
                                tr data-kernel=(w.kernel) data-user=(w.user) data-position=(w.ahead + 1) {
                                    th scope="row" { (w.ahead + 1) }
                                    td { (w.user) }
                                    td { code { (short_id(&w.kernel)) } }
                                    td { (w.units) }
                                    td { (span(w.waiting_s)) }
                                    td { (w.priority) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="foreign-heading" {
            h2 #foreign-heading { "Processes Orrery did not start" }
            @if foreign.is_empty() { p.muted { "None." } } @else {
                p.hint { "A unit running a process no kernel of Orrery's runs is not handed out while it runs." }
                div.table-wrap {
                    table #gpu-foreign {
                        thead { tr { th scope="col" { "Unit" } th scope="col" { "PID" } th scope="col" { "Memory (GiB)" } } }
                        tbody {
                            @for f in &foreign {
                                tr data-pid=(f.pid) {
                                    td { code { (f.unit) } }
                                    th scope="row" { (f.pid) }
                                    td { @if let Some(m) = f.used_memory { (gib(m)) } @else { "–" } }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout::html_response(status, layout::page(hub, Some(p), Nav::Admin, "GPUs", body))
}
