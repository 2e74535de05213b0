//! Request bodies decoded as Consul decodes them. Consul uses Go's `encoding/json`, which
//! matches an object's keys to struct fields ignoring case, and real clients rely on it:
//! py-consul's `acl.policy.create` sends `{"name": ..., "rules": ...}`. So every key of a
//! body that equals one of Consul's field names ignoring case is renamed to that field
//! before serde sees it; an exact match is kept as it is.
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// The field names of the Consul bodies ballast decodes (ACL policies, tokens and their
/// policy links, transactions, keyring operations, sessions).
const FIELDS: &[&str] = &[
    "AccessorID",
    "Behavior",
    "Checks",
    "Datacenters",
    "Description",
    "ExpirationTTL",
    "ExpirationTime",
    "Flags",
    "ID",
    "Index",
    "Key",
    "KV",
    "Local",
    "LockDelay",
    "Name",
    "Node",
    "NodeChecks",
    "Policies",
    "Roles",
    "Rules",
    "SecretID",
    "ServiceChecks",
    "ServiceIdentities",
    "NodeIdentities",
    "Session",
    "TTL",
    "Value",
    "Verb",
];

/// Objects under these keys are the user's own maps: their keys stay as sent.
const FREE_FORM: &[&str] = &["Meta", "NodeMeta", "TemplateVariables"];

/// Parses `body` as JSON and deserializes it into `T` with Consul's key matching.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    let mut v: Value = serde_json::from_slice(body)?;
    canonical_keys(&mut v);
    serde_json::from_value(v)
}

fn canonical_keys(v: &mut Value) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(canonical_keys),
        Value::Object(map) => {
            let old = std::mem::take(map);
            let mut out = Map::new();
            // Exact names first, so that `{"name": "a", "Name": "b"}` means "b" whatever
            // order the map iterates in.
            let (exact, other): (Vec<_>, Vec<_>) = old.into_iter().partition(|(k, _)| FIELDS.contains(&k.as_str()));
            for (k, mut val) in other.into_iter().chain(exact) {
                let name = FIELDS.iter().find(|f| f.eq_ignore_ascii_case(&k)).map(|f| f.to_string()).unwrap_or(k);
                if !FREE_FORM.iter().any(|f| f.eq_ignore_ascii_case(&name)) {
                    canonical_keys(&mut val);
                }
                out.insert(name, val);
            }
            *map = out;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(rename_all = "PascalCase")]
    struct Body {
        name: String,
        #[serde(default)]
        rules: String,
        #[serde(default)]
        policies: Vec<Link>,
    }
    #[derive(serde::Deserialize, Debug)]
    struct Link {
        #[serde(rename = "ID", default)]
        id: Option<String>,
    }

    #[test]
    fn keys_match_ignoring_case_at_every_depth() {
        let b: Body = decode(br#"{"name": "p", "RULES": "r", "policies": [{"id": "x"}]}"#).unwrap();
        assert_eq!((b.name.as_str(), b.rules.as_str()), ("p", "r"));
        assert_eq!(b.policies[0].id.as_deref(), Some("x"));
    }

    #[test]
    fn an_exact_name_wins_and_free_form_maps_keep_their_keys() {
        let b: Body = decode(br#"{"Name": "exact", "name": "folded"}"#).unwrap();
        assert_eq!(b.name, "exact");
        let mut v: Value = serde_json::from_str(r#"{"meta": {"name": "x"}, "id": "1"}"#).unwrap();
        canonical_keys(&mut v);
        assert_eq!(v, serde_json::json!({"meta": {"name": "x"}, "ID": "1"}));
    }

    #[test]
    fn bad_bodies_are_errors() {
        assert!(decode::<Body>(b"{").is_err());
        assert!(decode::<Body>(br#"{"rules": "r"}"#).is_err()); // no Name
        assert!(decode::<Body>(br#"[1]"#).is_err());
    }
}
