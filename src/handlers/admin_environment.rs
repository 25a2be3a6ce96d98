//! The admin page's *Software environment* section: the generation in effect (`orrery env`),
//! what it holds, and per base image what new servers and kernels get, so the page never
//! shows a configured image that is not what runs. It costs one record, whatever the number
//! of users.

use maud::{html, Markup};

use crate::hub::Hub;

pub(super) fn section(hub: &Hub) -> Markup {
    let cfg = hub.config();
    let bases = crate::environment::bases_in_use(&cfg);
    let env = hub.store.environment().unwrap_or_default();
    let effective = env.effective_images();
    html! {
        section aria-labelledby="environment-heading" {
            h2 #environment-heading { "Software environment" }
            @match env.current_generation() {
                None => p { "No packages installed for everyone: new servers and kernels get their base images. "
                            "Install with " code { "orrery env install PKG" } " (pip), " code { "--apt PKG" } " or " code { "-r requirements.txt" } "." }
                Some(g) => {
                    p {
                        "Generation " strong { (g.id) } " (" (g.change) "), made " (g.created.format("%Y-%m-%d %H:%M UTC")) ". "
                        "Change it with " code { "orrery env" } " (" code { "install" } ", " code { "remove" } ", " code { "rollback" } ")."
                    }
                    @let packages: Vec<String> = g.spec.pip.iter().cloned()
                        .chain(g.spec.requirements.keys().map(|n| format!("-r {n}")))
                        .chain(g.spec.apt.iter().map(|p| format!("apt {p}")))
                        .chain(g.spec.conda.iter().map(|p| format!("conda {p}")))
                        .collect();
                    @if !packages.is_empty() {
                        p { "Packages: " @for (i, p) in packages.iter().enumerate() { @if i > 0 { ", " } code { (p) } } }
                    }
                }
            }
            table.environment {
                thead { tr { th scope="col" { "Base image (config)" } th scope="col" { "New servers and kernels get" } } }
                tbody {
                    @for base in &bases {
                        tr {
                            td { code { (base) } }
                            td { code { (effective.get(base).unwrap_or(base)) } }
                        }
                    }
                }
            }
            p.hint { "Running servers keep the image they started with until they are restarted; their owners' home page says so." }
        }
    }
}
