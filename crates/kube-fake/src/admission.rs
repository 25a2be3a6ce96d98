//! What the real API server does to an object between decoding and storing it: defaulting
//! (a pod's `restartPolicy`, `terminationGracePeriodSeconds`, `imagePullPolicy`, requests
//! defaulted from limits, a Secret's `stringData` folded into `data`, a Service's cluster IP),
//! validation (names, labels, the few required fields clients trip over, pod spec
//! immutability) with the real `Invalid` wording, admission (a pod's RuntimeClass must exist),
//! and what happens at creation (a pod starts `Pending`; a PVC is provisioned at once, as
//! with a local-path provisioner: `Bound` to a volume named `pvc-<uid>`).

use base64::Engine;
use serde_json::{json, Map, Value};

use crate::resources::{NameRule, ResourceInfo};
use crate::status::{ApiError, Cause};

/// The storage class a PVC without one gets (the fake's only, "default" class).
pub const DEFAULT_STORAGE_CLASS: &str = "local-path";

/// `v` as an object (made one if it is not).
fn as_map(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = json!({});
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// The object at `v[key]` (made an empty object if absent or not an object).
fn obj_mut<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    as_map(as_map(v).entry(key).or_insert_with(|| json!({})))
}

/// `v[key]` as a `Value` (made an empty object if absent or not an object).
fn obj_mut_value<'a>(v: &'a mut Value, key: &str) -> &'a mut Value {
    let e = as_map(v).entry(key).or_insert_with(|| json!({}));
    as_map(e);
    e
}

fn set_default(m: &mut Map<String, Value>, key: &str, value: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.to_string(), value);
    }
}

/// Is `image`'s default pull policy `Always` (no tag, or `:latest`)?
fn pulls_always(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) => tag == "latest",
        None => true,
    }
}

fn default_container(c: &mut Value) {
    let Value::Object(m) = c else { return };
    let image = m
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    set_default(m, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(m, "terminationMessagePolicy", json!("File"));
    set_default(
        m,
        "imagePullPolicy",
        json!(if pulls_always(&image) {
            "Always"
        } else {
            "IfNotPresent"
        }),
    );
    set_default(m, "resources", json!({}));
    if let Some(Value::Object(res)) = m.get_mut("resources") {
        if let Some(Value::Object(limits)) = res.get("limits").cloned() {
            let requests = res.entry("requests").or_insert_with(|| json!({}));
            if let Value::Object(req) = requests {
                for (k, v) in limits {
                    req.entry(k).or_insert(v);
                }
            }
        }
    }
    if let Some(Value::Array(ports)) = m.get_mut("ports") {
        for p in ports {
            if let Value::Object(p) = p {
                set_default(p, "protocol", json!("TCP"));
            }
        }
    }
}

/// Fill in what the real server defaults (idempotent: done on every write).
pub fn default_object(res: &ResourceInfo, obj: &mut Value) {
    match res.plural {
        "pods" => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "restartPolicy", json!("Always"));
            set_default(spec, "terminationGracePeriodSeconds", json!(30));
            set_default(spec, "dnsPolicy", json!("ClusterFirst"));
            set_default(spec, "schedulerName", json!("default-scheduler"));
            set_default(spec, "securityContext", json!({}));
            set_default(spec, "enableServiceLinks", json!(true));
            set_default(spec, "serviceAccountName", json!("default"));
            let sa = spec
                .get("serviceAccountName")
                .cloned()
                .unwrap_or(json!("default"));
            set_default(spec, "serviceAccount", sa);
            set_default(spec, "priority", json!(0));
            set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
            for list in ["containers", "initContainers"] {
                if let Some(Value::Array(cs)) = spec.get_mut(list) {
                    cs.iter_mut().for_each(default_container);
                }
            }
        }
        "persistentvolumeclaims" => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "volumeMode", json!("Filesystem"));
            set_default(spec, "storageClassName", json!(DEFAULT_STORAGE_CLASS));
        }
        "secrets" => {
            set_default(as_map(obj), "type", json!("Opaque"));
            if let Some(Value::Object(sd)) = obj.get("stringData").cloned() {
                let data = obj_mut(obj, "data");
                for (k, v) in sd {
                    let s = v.as_str().unwrap_or("").to_string();
                    data.insert(
                        k,
                        json!(base64::engine::general_purpose::STANDARD.encode(s)),
                    );
                }
                if let Value::Object(m) = obj {
                    m.remove("stringData");
                }
            }
        }
        "services" => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "type", json!("ClusterIP"));
            set_default(spec, "sessionAffinity", json!("None"));
            set_default(spec, "ipFamilies", json!(["IPv4"]));
            set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
            set_default(spec, "internalTrafficPolicy", json!("Cluster"));
            if let Some(Value::Array(ports)) = spec.get_mut("ports") {
                for p in ports {
                    if let Value::Object(p) = p {
                        set_default(p, "protocol", json!("TCP"));
                        let port = p.get("port").cloned().unwrap_or(Value::Null);
                        set_default(p, "targetPort", port);
                    }
                }
            }
        }
        "namespaces" => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "finalizers", json!(["kubernetes"]));
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let labels = obj_mut(obj_mut_value(obj, "metadata"), "labels");
            labels.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
        "networkpolicies" => {
            let spec = obj_mut(obj, "spec");
            if !spec.contains_key("policyTypes") {
                let mut types = vec![json!("Ingress")];
                if spec.contains_key("egress") {
                    types.push(json!("Egress"));
                }
                spec.insert("policyTypes".into(), json!(types));
            }
        }
        _ => {}
    }
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
    alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character \
    (e.g. 'example.com', regex used for validation is \
    '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric \
    characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  \
    or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const LABEL1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric \
    characters or '-', start with an alphabetic character, and end with an alphanumeric \
    character (e.g. 'my-name',  or 'abc-123', regex used for validation is \
    '[a-z]([-a-z0-9]*[a-z0-9])?')";

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label)
}

/// Is `name` valid for `rule`? `Err` is the real server's explanation.
pub fn check_name(rule: NameRule, name: &str) -> Result<(), &'static str> {
    match rule {
        NameRule::Subdomain if !is_subdomain(name) => Err(SUBDOMAIN_MSG),
        NameRule::Label if !is_label(name) => Err(LABEL_MSG),
        NameRule::Label1035
            if !is_label(name) || !name.starts_with(|c: char| c.is_ascii_lowercase()) =>
        {
            Err(LABEL1035_MSG)
        }
        _ => Ok(()),
    }
}

fn invalid_value(field: &str, value: &Value, message: &str) -> Cause {
    Cause {
        field: field.to_string(),
        reason: "FieldValueInvalid",
        message: format!("Invalid value: {value}: {message}"),
    }
}

fn required(field: &str, message: &str) -> Cause {
    Cause {
        field: field.to_string(),
        reason: "FieldValueRequired",
        message: if message.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {message}")
        },
    }
}

fn check_labels(obj: &Value, causes: &mut Vec<Cause>) {
    if let Some(Value::Object(labels)) = obj.pointer("/metadata/labels") {
        for (k, v) in labels {
            let field = "metadata.labels";
            match v.as_str() {
                Some(s) => {
                    if crate::selectors::check_label_key(k).is_err() {
                        causes.push(invalid_value(
                            field,
                            &json!(k),
                            "name part must consist of alphanumeric characters, '-', '_' or \
                             '.', and must start and end with an alphanumeric character",
                        ));
                    }
                    if crate::selectors::check_label_value(s).is_err() {
                        causes.push(invalid_value(
                            field,
                            v,
                            "a valid label must be an empty string or consist of alphanumeric \
                             characters, '-', '_' or '.', and must start and end with an \
                             alphanumeric character",
                        ));
                    }
                }
                None => causes.push(invalid_value(field, v, "label values must be strings")),
            }
        }
    }
}

fn validate_pod(obj: &Value, causes: &mut Vec<Cause>) {
    let volumes: Vec<String> = obj
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter_map(|v| v.get("name").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default();
    for (i, name) in volumes.iter().enumerate() {
        if volumes[..i].contains(name) {
            causes.push(Cause {
                field: format!("spec.volumes[{i}].name"),
                reason: "FieldValueDuplicate",
                message: format!("Duplicate value: \"{name}\""),
            });
        }
    }
    let containers = obj.pointer("/spec/containers").and_then(Value::as_array);
    match containers {
        None => causes.push(required("spec.containers", "")),
        Some(cs) if cs.is_empty() => causes.push(required("spec.containers", "")),
        Some(cs) => {
            let mut seen: Vec<&str> = Vec::new();
            for (i, c) in cs.iter().enumerate() {
                let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                if name.is_empty() {
                    causes.push(required(&format!("spec.containers[{i}].name"), ""));
                } else if !is_label(name) {
                    causes.push(invalid_value(
                        &format!("spec.containers[{i}].name"),
                        &json!(name),
                        LABEL_MSG,
                    ));
                } else if seen.contains(&name) {
                    causes.push(Cause {
                        field: format!("spec.containers[{i}].name"),
                        reason: "FieldValueDuplicate",
                        message: format!("Duplicate value: \"{name}\""),
                    });
                }
                seen.push(name);
                if c.get("image")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
                {
                    causes.push(required(&format!("spec.containers[{i}].image"), ""));
                }
                if let Some(Value::Array(mounts)) = c.get("volumeMounts") {
                    for (j, m) in mounts.iter().enumerate() {
                        let mname = m.get("name").and_then(Value::as_str).unwrap_or("");
                        if !volumes.iter().any(|v| v == mname) {
                            causes.push(Cause {
                                field: format!("spec.containers[{i}].volumeMounts[{j}].name"),
                                reason: "FieldValueNotFound",
                                message: format!("Not found: \"{mname}\""),
                            });
                        }
                        if m.get("mountPath")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .is_empty()
                        {
                            causes.push(required(
                                &format!("spec.containers[{i}].volumeMounts[{j}].mountPath"),
                                "",
                            ));
                        }
                    }
                }
            }
        }
    }
    if let Some(p) = obj.pointer("/spec/restartPolicy").and_then(Value::as_str) {
        if !["Always", "OnFailure", "Never"].contains(&p) {
            causes.push(Cause {
                field: "spec.restartPolicy".into(),
                reason: "FieldValueNotSupported",
                message: format!(
                    "Unsupported value: \"{p}\": supported values: \"Always\", \"OnFailure\", \"Never\""
                ),
            });
        }
    }
}

fn validate_pvc(obj: &Value, causes: &mut Vec<Cause>) {
    let modes = obj.pointer("/spec/accessModes").and_then(Value::as_array);
    if modes.is_none_or(|m| m.is_empty()) {
        causes.push(required(
            "spec.accessModes",
            "at least 1 access mode is required",
        ));
    }
    if obj.pointer("/spec/resources/requests/storage").is_none() {
        causes.push(required("spec.resources[storage]", ""));
    }
}

/// Validate an object about to be created or replaced (defaulted already).
pub fn validate(res: &ResourceInfo, obj: &Value) -> Result<(), ApiError> {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut causes = Vec::new();
    if name.is_empty() {
        causes.push(required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else if let Err(msg) = check_name(res.name_rule, name) {
        causes.push(invalid_value("metadata.name", &json!(name), msg));
    }
    check_labels(obj, &mut causes);
    match res.plural {
        "pods" => validate_pod(obj, &mut causes),
        "persistentvolumeclaims" => validate_pvc(obj, &mut causes),
        "secrets" => {
            if let Some(Value::Object(data)) = obj.get("data") {
                for (k, v) in data {
                    let ok = v.as_str().is_some_and(|s| {
                        base64::engine::general_purpose::STANDARD.decode(s).is_ok()
                    });
                    if !ok {
                        causes.push(invalid_value(
                            &format!("data[{k}]"),
                            v,
                            "must be base64-encoded",
                        ));
                    }
                }
            }
        }
        _ => {}
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(res, name, causes))
    }
}

/// A pod's spec without the fields an update may change.
fn pod_spec_fixed(spec: Option<&Value>) -> Value {
    let mut s = spec.cloned().unwrap_or(Value::Null);
    if let Value::Object(m) = &mut s {
        for k in [
            "activeDeadlineSeconds",
            "tolerations",
            "terminationGracePeriodSeconds",
            "schedulingGates",
            "ephemeralContainers",
        ] {
            m.remove(k);
        }
        for list in ["containers", "initContainers"] {
            if let Some(Value::Array(cs)) = m.get_mut(list) {
                for c in cs {
                    if let Value::Object(c) = c {
                        c.remove("image");
                    }
                }
            }
        }
    }
    s
}

/// Validate a replacement of `old` by `new` (both defaulted) through the main resource.
pub fn validate_update(res: &ResourceInfo, old: &Value, new: &Value) -> Result<(), ApiError> {
    validate(res, new)?;
    let name = new
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let forbidden = |field: &str, msg: &str| {
        ApiError::invalid(
            res,
            name,
            vec![Cause {
                field: field.into(),
                reason: "FieldValueForbidden",
                message: format!("Forbidden: {msg}"),
            }],
        )
    };
    if old.pointer("/metadata/deletionTimestamp").is_some() {
        let fins = |o: &Value| -> Vec<String> {
            o.pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .map(|f| {
                    f.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let before = fins(old);
        if fins(new).iter().any(|f| !before.contains(f)) {
            return Err(forbidden(
                "metadata.finalizers",
                "no new finalizers can be added if the object is being deleted",
            ));
        }
    }
    match res.plural {
        "pods" if pod_spec_fixed(old.get("spec")) != pod_spec_fixed(new.get("spec")) => {
            return Err(forbidden(
                "spec",
                "pod updates may not change fields other than \
                 `spec.containers[*].image`,`spec.initContainers[*].image`,\
                 `spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to \
                 existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to \
                 be set to 1 if it was previously negative)",
            ));
        }
        "persistentvolumeclaims" => {
            let fixed = |o: &Value| {
                let mut s = o.get("spec").cloned().unwrap_or(Value::Null);
                if let Value::Object(m) = &mut s {
                    m.remove("resources");
                    m.remove("volumeAttributesClassName");
                }
                s
            };
            if fixed(old) != fixed(new) {
                return Err(forbidden(
                    "spec",
                    "spec is immutable after creation except resources.requests and \
                     volumeAttributesClassName for bound claims",
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// The QoS class of a pod spec.
pub fn qos_class(spec: &Value) -> &'static str {
    let containers = spec
        .get("containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let req = c.pointer("/resources/requests");
        let lim = c.pointer("/resources/limits");
        for r in ["cpu", "memory"] {
            let rq = req.and_then(|x| x.get(r));
            let lm = lim.and_then(|x| x.get(r));
            if rq.is_some() || lm.is_some() {
                any = true;
            }
            if lm.is_none() || rq != lm {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Admission before a create: a pod naming a RuntimeClass needs that RuntimeClass to exist.
/// `exists(name)` says whether a RuntimeClass does.
pub fn admit_create(
    res: &ResourceInfo,
    obj: &Value,
    runtime_class_exists: impl Fn(&str) -> bool,
) -> Result<(), ApiError> {
    if res.plural == "pods" {
        if let Some(rc) = obj
            .pointer("/spec/runtimeClassName")
            .and_then(Value::as_str)
        {
            if !runtime_class_exists(rc) {
                return Err(ApiError::forbidden(format!(
                    "pod rejected: RuntimeClass \"{rc}\" not found"
                )));
            }
        }
    }
    Ok(())
}

/// What creation does to an object's status (it is not the client's to set): a pod starts
/// `Pending` with its QoS class, a PVC is provisioned and bound at once, a namespace is
/// `Active`, a Service gets a cluster IP (`ip`).
pub fn on_create(
    res: &ResourceInfo,
    obj: &mut Value,
    uid: &str,
    cluster_ip: impl FnOnce() -> String,
) {
    match res.plural {
        "pods" => {
            let qos = qos_class(obj.get("spec").unwrap_or(&Value::Null));
            obj["status"] = json!({ "phase": "Pending", "qosClass": qos });
        }
        "persistentvolumeclaims" => {
            let modes = obj
                .pointer("/spec/accessModes")
                .cloned()
                .unwrap_or(json!([]));
            let storage = obj
                .pointer("/spec/resources/requests/storage")
                .cloned()
                .unwrap_or(json!("0"));
            obj_mut(obj, "spec").insert("volumeName".into(), json!(format!("pvc-{uid}")));
            let meta = obj_mut_value(obj, "metadata");
            let ann = obj_mut(meta, "annotations");
            ann.insert("pv.kubernetes.io/bind-completed".into(), json!("yes"));
            ann.insert("pv.kubernetes.io/bound-by-controller".into(), json!("yes"));
            ann.insert(
                "volume.kubernetes.io/storage-provisioner".into(),
                json!("kube-fake.local/local-path"),
            );
            let meta = obj_mut_value(obj, "metadata");
            let fins = meta
                .get("finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if !fins.iter().any(|f| f == "kubernetes.io/pvc-protection") {
                let mut fins = fins;
                fins.push(json!("kubernetes.io/pvc-protection"));
                meta["finalizers"] = json!(fins);
            }
            obj["status"] = json!({
                "phase": "Bound",
                "accessModes": modes,
                "capacity": { "storage": storage },
            });
        }
        "namespaces" => {
            obj["status"] = json!({ "phase": "Active" });
        }
        "services" => {
            let spec = obj_mut(obj, "spec");
            let asked = spec.get("clusterIP").and_then(Value::as_str).unwrap_or("");
            if asked.is_empty() {
                let ip = cluster_ip();
                spec.insert("clusterIP".into(), json!(ip));
            }
            let ip = spec.get("clusterIP").cloned().unwrap_or(json!("None"));
            spec.insert("clusterIPs".into(), json!([ip]));
            obj["status"] = json!({ "loadBalancer": {} });
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{PODS, SECRETS};

    #[test]
    fn pod_defaults_and_requests_from_limits() {
        let mut p = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "image": "img:1", "resources": {"limits": {"cpu": "1", "nvidia.com/gpu": "1"}}},
            {"name": "d", "image": "img"}]}});
        default_object(&PODS, &mut p);
        assert_eq!(p["spec"]["restartPolicy"], "Always");
        assert_eq!(p["spec"]["terminationGracePeriodSeconds"], 30);
        assert_eq!(
            p["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(p["spec"]["containers"][1]["imagePullPolicy"], "Always");
        assert_eq!(
            p["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"],
            "1"
        );
        assert_eq!(qos_class(&p["spec"]), "Burstable");
        validate(&PODS, &p).unwrap();
    }

    #[test]
    fn secret_string_data() {
        let mut s = json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}});
        default_object(&SECRETS, &mut s);
        assert_eq!(s["data"]["k"], "dg==");
        assert!(s.get("stringData").is_none());
        assert_eq!(s["type"], "Opaque");
    }

    #[test]
    fn names() {
        assert!(check_name(NameRule::Subdomain, "a.b-c").is_ok());
        assert!(check_name(NameRule::Subdomain, "A").is_err());
        assert!(check_name(NameRule::Label, "a.b").is_err());
        assert!(check_name(NameRule::Label1035, "1a").is_err());
        let e = validate(&PODS, &json!({"metadata": {"name": "Bad_Name"}, "spec": {"containers": [{"name": "c", "image": "i"}]}})).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(
            e.message.starts_with(
                "Pod \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\""
            ),
            "{}",
            e.message
        );
    }
}
