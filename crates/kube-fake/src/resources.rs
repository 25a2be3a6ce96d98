//! The resource types the fake API server serves: for each, its group/version, plural and
//! singular names, kind, scope, short names and subresources. Discovery, routing, error
//! messages and validation all read this one table.

/// What a name must look like (the real server's validation for the kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// DNS-1123 subdomain: pods, secrets, configmaps, PVCs, nodes, events, ...
    Subdomain,
    /// DNS-1123 label: namespaces.
    Label,
    /// DNS-1035 label (starts with a letter): services.
    Label1035,
}

/// One resource type.
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    /// "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Has a `status` subresource: a main-resource write keeps the stored status, a status
    /// write keeps everything else.
    pub has_status: bool,
    /// Has a `spec`: `metadata.generation` counts its changes.
    pub has_spec: bool,
    pub name_rule: NameRule,
}

impl ResourceInfo {
    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `PodList`, ...
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// `pods` or `networkpolicies.networking.k8s.io`, as the real server names a resource in
    /// its messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The subresources served, besides the resource itself.
    pub fn subresources(&self) -> &'static [&'static str] {
        match (self.plural, self.has_status) {
            ("pods", _) => &["status", "log"],
            (_, true) => &["status"],
            _ => &[],
        }
    }
}

const fn core(
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
) -> ResourceInfo {
    ResourceInfo {
        group: "",
        version: "v1",
        plural,
        singular,
        kind,
        namespaced,
        short_names,
        categories: &[],
        has_status: false,
        has_spec: false,
        name_rule: NameRule::Subdomain,
    }
}

pub static PODS: ResourceInfo = ResourceInfo {
    has_status: true,
    has_spec: true,
    categories: &["all"],
    ..core("pods", "pod", "Pod", true, &["po"])
};
pub static PVCS: ResourceInfo = ResourceInfo {
    has_status: true,
    has_spec: true,
    ..core(
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        "PersistentVolumeClaim",
        true,
        &["pvc"],
    )
};
pub static SECRETS: ResourceInfo = core("secrets", "secret", "Secret", true, &[]);
pub static CONFIGMAPS: ResourceInfo = core("configmaps", "configmap", "ConfigMap", true, &["cm"]);
pub static SERVICES: ResourceInfo = ResourceInfo {
    has_status: true,
    has_spec: true,
    categories: &["all"],
    name_rule: NameRule::Label1035,
    ..core("services", "service", "Service", true, &["svc"])
};
pub static EVENTS: ResourceInfo = core("events", "event", "Event", true, &["ev"]);
pub static NAMESPACES: ResourceInfo = ResourceInfo {
    has_status: true,
    name_rule: NameRule::Label,
    ..core("namespaces", "namespace", "Namespace", false, &["ns"])
};
pub static NODES: ResourceInfo = ResourceInfo {
    has_status: true,
    has_spec: true,
    ..core("nodes", "node", "Node", false, &["no"])
};
pub static NETWORK_POLICIES: ResourceInfo = ResourceInfo {
    group: "networking.k8s.io",
    version: "v1",
    plural: "networkpolicies",
    singular: "networkpolicy",
    kind: "NetworkPolicy",
    namespaced: true,
    short_names: &["netpol"],
    categories: &[],
    has_status: false,
    has_spec: true,
    name_rule: NameRule::Subdomain,
};
pub static RUNTIME_CLASSES: ResourceInfo = ResourceInfo {
    group: "node.k8s.io",
    version: "v1",
    plural: "runtimeclasses",
    singular: "runtimeclass",
    kind: "RuntimeClass",
    namespaced: false,
    short_names: &[],
    categories: &[],
    has_status: false,
    has_spec: false,
    name_rule: NameRule::Subdomain,
};

/// Every resource served, core group first.
pub static ALL: [&ResourceInfo; 10] = [
    &PODS,
    &PVCS,
    &SECRETS,
    &CONFIGMAPS,
    &SERVICES,
    &EVENTS,
    &NAMESPACES,
    &NODES,
    &NETWORK_POLICIES,
    &RUNTIME_CLASSES,
];

/// The API groups besides the core group, with their one version each.
pub static GROUPS: [(&str, &str); 2] = [("networking.k8s.io", "v1"), ("node.k8s.io", "v1")];

/// The resource `plural` of `group`/`version`.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    ALL.iter()
        .copied()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resources of `group`/`version` (empty if the server does not serve it).
pub fn in_group_version(group: &str, version: &str) -> Vec<&'static ResourceInfo> {
    ALL.iter()
        .copied()
        .filter(|r| r.group == group && r.version == version)
        .collect()
}
