//! ACLs as Consul has them for KV: tokens carry policies; a policy's rules grant `read`,
//! `write`, `list` or `deny` on `key "exact"` or `key_prefix "prefix"`; the longest
//! matching rule decides (an exact `key` beats a prefix of the same length); nothing
//! matching falls back to the default policy (`allow` or `deny`). Management tokens may
//! do everything, including managing ACLs.
//!
//! Rules are written in Consul's HCL form (a small subset: blocks of `policy = "..."`),
//! e.g. `key_prefix "app/" { policy = "write" }  operator = "read"`, or as the same
//! shape in JSON. Pure: parsing and decisions here, storage in the replicated state.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Access {
    Deny,
    /// Key listing only (Consul's `list`): enough for `?keys`.
    List,
    Read,
    Write,
}

impl Access {
    fn parse(s: &str) -> Result<Access, String> {
        match s {
            "deny" => Ok(Access::Deny),
            "list" => Ok(Access::List),
            "read" => Ok(Access::Read),
            "write" => Ok(Access::Write),
            other => Err(format!("invalid policy {other:?} (want read, write, list or deny)")),
        }
    }
}

/// Parsed rules of one policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    pub keys: BTreeMap<String, Access>,
    pub key_prefixes: BTreeMap<String, Access>,
    pub operator: Option<Access>,
    pub acl: Option<Access>,
    /// `account "acco01" { policy = "write" }`: a tenant's LB groups.
    #[serde(default)]
    pub accounts: BTreeMap<String, Access>,
    #[serde(default)]
    pub account_prefixes: BTreeMap<String, Access>,
    /// `session "node" { policy = "write" }`: sessions on a node, as in Consul.
    #[serde(default)]
    pub sessions: BTreeMap<String, Access>,
    #[serde(default)]
    pub session_prefixes: BTreeMap<String, Access>,
}

#[derive(Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Open,
    Close,
    Eq,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        match c {
            c if c.is_whitespace() || c == ',' => {}
            '#' => {
                while it.peek().is_some_and(|(_, c)| *c != '\n') {
                    it.next();
                }
            }
            '{' => out.push(Tok::Open),
            '}' => out.push(Tok::Close),
            '=' | ':' => out.push(Tok::Eq),
            '"' => {
                let mut v = String::new();
                loop {
                    match it.next() {
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match it.next() {
                            Some((_, c)) => v.push(c),
                            None => return Err("unterminated string".into()),
                        },
                        Some((_, c)) => v.push(c),
                        None => return Err(format!("unterminated string starting at byte {i}")),
                    }
                }
                out.push(Tok::Str(v));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut v = String::from(c);
                while let Some((_, c)) =
                    it.peek().copied().filter(|(_, c)| c.is_ascii_alphanumeric() || *c == '_')
                {
                    v.push(c);
                    it.next();
                }
                out.push(Tok::Ident(v));
            }
            c => return Err(format!("unexpected {c:?} at byte {i}")),
        }
    }
    Ok(out)
}

/// The map a named rule (`key`, `key_prefix`, `account`, `account_prefix`) goes into.
fn rule_map<'r>(r: &'r mut Rules, name: &str) -> &'r mut BTreeMap<String, Access> {
    match name {
        "key" => &mut r.keys,
        "key_prefix" => &mut r.key_prefixes,
        "account" => &mut r.accounts,
        "session" => &mut r.sessions,
        "session_prefix" => &mut r.session_prefixes,
        _ => &mut r.account_prefixes,
    }
}

/// Parses `key_prefix "x" { policy = "read" }` blocks and `operator = "read"` lines; the
/// JSON form (`{"key_prefix": {"x": {"policy": "read"}}}`) reduces to the same tokens.
pub fn parse_rules(text: &str) -> Result<Rules, String> {
    let toks = tokenize(text)?;
    let mut r = Rules::default();
    let mut i = 0;
    // JSON wraps everything in one object.
    let (mut start, mut end) = (0, toks.len());
    if toks.first() == Some(&Tok::Open) && toks.last() == Some(&Tok::Close) {
        start = 1;
        end -= 1;
    }
    i += start;
    let expect_policy = |toks: &[Tok], at: &mut usize| -> Result<Access, String> {
        // { policy = "x" }
        match (toks.get(*at), toks.get(*at + 1), toks.get(*at + 2), toks.get(*at + 3), toks.get(*at + 4)) {
            (
                Some(Tok::Open),
                Some(Tok::Ident(p) | Tok::Str(p)),
                Some(Tok::Eq),
                Some(Tok::Str(v)),
                Some(Tok::Close),
            ) if p == "policy" => {
                *at += 5;
                Access::parse(v)
            }
            _ => Err("expected { policy = \"read|write|list|deny\" }".into()),
        }
    };
    while i < end {
        let name = match &toks[i] {
            Tok::Ident(n) | Tok::Str(n) => n.clone(),
            t => return Err(format!("unexpected {t:?}")),
        };
        i += 1;
        match name.as_str() {
            "key" | "key_prefix" | "account" | "account_prefix" | "session" | "session_prefix" => {
                if toks.get(i) == Some(&Tok::Eq) {
                    // JSON: "key_prefix": { "a/": { "policy": "read" }, ... }
                    i += 1;
                    if toks.get(i) != Some(&Tok::Open) {
                        return Err(format!("{name}: expected an object"));
                    }
                    i += 1;
                    while toks.get(i) != Some(&Tok::Close) {
                        let Some(Tok::Str(k)) = toks.get(i) else {
                            return Err(format!("{name}: expected a string"));
                        };
                        let k = k.clone();
                        if toks.get(i + 1) != Some(&Tok::Eq) {
                            return Err(format!("{name} {k:?}: expected ':'"));
                        }
                        i += 2;
                        let a = expect_policy(&toks, &mut i).map_err(|e| format!("{name} {k:?}: {e}"))?;
                        rule_map(&mut r, &name).insert(k, a);
                    }
                    i += 1;
                } else {
                    let Some(Tok::Str(k)) = toks.get(i) else {
                        return Err(format!("{name}: expected a quoted key"));
                    };
                    let k = k.clone();
                    i += 1;
                    let a = expect_policy(&toks, &mut i).map_err(|e| format!("{name} {k:?}: {e}"))?;
                    rule_map(&mut r, &name).insert(k, a);
                }
            }
            "operator" | "acl" => match (toks.get(i), toks.get(i + 1)) {
                (Some(Tok::Eq), Some(Tok::Str(v))) => {
                    let a = Access::parse(v)?;
                    if name == "operator" {
                        r.operator = Some(a)
                    } else {
                        r.acl = Some(a)
                    }
                    i += 2;
                }
                _ => return Err(format!("{name}: expected = \"read|write|deny\"")),
            },
            other => {
                return Err(format!(
                    "unsupported rule {other:?} (ballast supports key, key_prefix, account, account_prefix, session, session_prefix, operator, acl)"
                ))
            }
        }
    }
    Ok(r)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub id: String,
    pub name: String,
    pub description: String,
    pub rules: String,
    pub parsed: Rules,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub accessor_id: String,
    pub secret_id: String,
    pub description: String,
    /// Policy ids.
    pub policies: Vec<String>,
    pub management: bool,
    pub create_index: u64,
    /// Role ids: the token holds their policies too.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// A named set of policies tokens link to (Consul's ACL role).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub id: String,
    pub name: String,
    pub description: String,
    /// Policy ids.
    pub policies: Vec<String>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// A replicated ACL change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclWrite {
    /// Only once per cluster: creates the first management token.
    Bootstrap {
        token: Token,
    },
    SetPolicy(Policy),
    DeletePolicy {
        id: String,
    },
    SetToken(Token),
    DeleteToken {
        accessor_id: String,
    },
    /// Last, so that logs written before roles decode the same.
    SetRole(Role),
    DeleteRole {
        id: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclState {
    pub bootstrapped: bool,
    pub policies: BTreeMap<String, Policy>,
    /// By secret id.
    pub tokens: BTreeMap<String, Token>,
    #[serde(default)]
    pub roles: BTreeMap<String, Role>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclResult {
    Ok,
    /// Why a change was refused (bootstrap twice, a name taken, an unknown policy).
    Refused(String),
}

impl AclState {
    pub fn apply(&mut self, index: u64, w: &AclWrite) -> AclResult {
        match w {
            AclWrite::Bootstrap { token } => {
                if self.bootstrapped {
                    return AclResult::Refused("ACL bootstrap no longer allowed".into());
                }
                self.bootstrapped = true;
                let mut t = token.clone();
                t.management = true;
                t.create_index = index;
                self.tokens.insert(t.secret_id.clone(), t);
            }
            AclWrite::SetPolicy(p) => {
                if self.policies.values().any(|o| o.name == p.name && o.id != p.id) {
                    return AclResult::Refused(format!(
                        "Invalid Policy: A Policy with Name {:?} already exists",
                        p.name
                    ));
                }
                self.policies.insert(p.id.clone(), p.clone());
            }
            AclWrite::DeletePolicy { id } => {
                self.policies.remove(id);
            }
            AclWrite::SetToken(t) => {
                if let Some(missing) = t.policies.iter().find(|p| !self.policies.contains_key(*p)) {
                    return AclResult::Refused(format!("cannot find policy {missing}"));
                }
                if let Some(missing) = t.roles.iter().find(|r| !self.roles.contains_key(*r)) {
                    return AclResult::Refused(format!("cannot find role {missing}"));
                }
                if self.tokens.values().any(|o| o.accessor_id == t.accessor_id && o.secret_id != t.secret_id)
                {
                    return AclResult::Refused("accessor id already in use".into());
                }
                let mut t = t.clone();
                t.create_index = self.tokens.get(&t.secret_id).map(|o| o.create_index).unwrap_or(index);
                self.tokens.insert(t.secret_id.clone(), t);
            }
            AclWrite::DeleteToken { accessor_id } => {
                self.tokens.retain(|_, t| t.accessor_id != *accessor_id);
            }
            AclWrite::SetRole(r) => {
                if r.name.is_empty() {
                    return AclResult::Refused("Invalid Role: no Name is set".into());
                }
                if self.roles.values().any(|o| o.name == r.name && o.id != r.id) {
                    return AclResult::Refused(format!("Invalid Role: A Role with Name {:?} already exists", r.name));
                }
                if let Some(missing) = r.policies.iter().find(|p| !self.policies.contains_key(*p)) {
                    return AclResult::Refused(format!("cannot find policy {missing}"));
                }
                let mut r = r.clone();
                r.create_index = self.roles.get(&r.id).map(|o| o.create_index).unwrap_or(index);
                r.modify_index = index;
                self.roles.insert(r.id.clone(), r);
            }
            AclWrite::DeleteRole { id } => {
                self.roles.remove(id);
            }
        }
        AclResult::Ok
    }

    pub fn token_by_accessor(&self, accessor: &str) -> Option<&Token> {
        self.tokens.values().find(|t| t.accessor_id == accessor)
    }

    /// The rules a secret carries: None = management (everything allowed).
    pub fn authorizer(&self, secret: Option<&str>, default_allow: bool) -> Authorizer {
        let token = secret.and_then(|s| self.tokens.get(s));
        if token.is_some_and(|t| t.management) {
            return Authorizer { management: true, rules: Vec::new(), default_allow };
        }
        // The token's own policies and its roles' (a deleted role or policy counts for nothing).
        let rules = token
            .map(|t| {
                let from_roles = t.roles.iter().filter_map(|r| self.roles.get(r)).flat_map(|r| r.policies.iter());
                t.policies
                    .iter()
                    .chain(from_roles)
                    .filter_map(|p| self.policies.get(p))
                    .map(|p| p.parsed.clone())
                    .collect()
            })
            .unwrap_or_default();
        Authorizer { management: false, rules, default_allow }
    }
}

/// Answers "may this token do X" for one request.
#[derive(Debug, Clone)]
pub struct Authorizer {
    pub management: bool,
    pub rules: Vec<Rules>,
    pub default_allow: bool,
}

impl Authorizer {
    pub fn management() -> Authorizer {
        Authorizer { management: true, rules: Vec::new(), default_allow: true }
    }

    /// The access the longest matching key rule gives (across all the token's policies;
    /// at the same length an exact `key` wins, then the most permissive... except that an
    /// explicit deny at that length wins, as in Consul).
    pub fn key_access(&self, key: &str) -> Access {
        self.longest(key, |r| &r.keys, |r| &r.key_prefixes)
    }

    /// What the token may do with an account's LB groups (`account` / `account_prefix`
    /// rules, longest match as for keys).
    pub fn account_access(&self, account: &str) -> Access {
        self.longest(account, |r| &r.accounts, |r| &r.account_prefixes)
    }

    /// What the token may do with sessions on a node (`session` / `session_prefix`).
    pub fn session_access(&self, node: &str) -> Access {
        self.longest(node, |r| &r.sessions, |r| &r.session_prefixes)
    }

    pub fn account_read(&self, account: &str) -> bool {
        self.account_access(account) >= Access::Read
    }

    pub fn account_write(&self, account: &str) -> bool {
        self.account_access(account) == Access::Write
    }

    fn longest(
        &self,
        name: &str,
        exact: impl Fn(&Rules) -> &BTreeMap<String, Access>,
        prefixes: impl Fn(&Rules) -> &BTreeMap<String, Access>,
    ) -> Access {
        if self.management {
            return Access::Write;
        }
        let mut best: Option<(usize, bool, Access)> = None;
        for r in &self.rules {
            let exact = exact(r).get(name).map(|a| (name.len(), true, *a));
            let prefixes = prefixes(r)
                .iter()
                .filter(|(p, _)| name.starts_with(p.as_str()))
                .map(|(p, a)| (p.len(), false, *a));
            for cand in exact.into_iter().chain(prefixes) {
                best = Some(match best {
                    None => cand,
                    Some(b) if (cand.0, cand.1) > (b.0, b.1) => cand,
                    Some(b) if (cand.0, cand.1) == (b.0, b.1) => {
                        if cand.2 == Access::Deny || b.2 == Access::Deny {
                            (b.0, b.1, Access::Deny)
                        } else {
                            (b.0, b.1, b.2.max(cand.2))
                        }
                    }
                    Some(b) => b,
                });
            }
        }
        match best {
            Some((_, _, a)) => a,
            None if self.default_allow => Access::Write,
            None => Access::Deny,
        }
    }

    pub fn key_read(&self, key: &str) -> bool {
        self.key_access(key) >= Access::Read
    }

    pub fn key_list(&self, key: &str) -> bool {
        self.key_access(key) >= Access::List
    }

    pub fn key_write(&self, key: &str) -> bool {
        self.key_access(key) == Access::Write
    }

    /// Writing every key under a prefix (recursive delete): the prefix itself must be
    /// writable and no longer rule below it may deny or restrict.
    pub fn key_write_prefix(&self, prefix: &str) -> bool {
        if self.management {
            return true;
        }
        if !self.key_write(prefix) {
            return false;
        }
        self.rules.iter().all(|r| {
            r.keys
                .iter()
                .chain(r.key_prefixes.iter())
                .all(|(k, a)| !k.starts_with(prefix) || *a == Access::Write)
        })
    }

    fn level(&self, pick: impl Fn(&Rules) -> Option<Access>) -> Access {
        if self.management {
            return Access::Write;
        }
        let found: Vec<Access> = self.rules.iter().filter_map(pick).collect();
        if found.contains(&Access::Deny) {
            return Access::Deny;
        }
        found.into_iter().max().unwrap_or(if self.default_allow { Access::Write } else { Access::Deny })
    }

    pub fn operator_read(&self) -> bool {
        self.level(|r| r.operator) >= Access::Read
    }

    pub fn operator_write(&self) -> bool {
        self.level(|r| r.operator) == Access::Write
    }

    /// Managing ACLs needs `acl = "write"` or a management token (never the default).
    pub fn acl_write(&self) -> bool {
        self.management || self.rules.iter().any(|r| r.acl == Some(Access::Write))
    }

    pub fn acl_read(&self) -> bool {
        self.management || self.rules.iter().any(|r| r.acl >= Some(Access::Read))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(rules: &str, default_allow: bool) -> Authorizer {
        Authorizer { management: false, rules: vec![parse_rules(rules).unwrap()], default_allow }
    }

    #[test]
    fn hcl_and_json_rules() {
        let hcl = r#"
            # apps
            key_prefix "app/" { policy = "read" }
            key_prefix "app/secret/" { policy = "deny" }
            key "app/config" { policy = "write" }
            operator = "read"
        "#;
        let r = parse_rules(hcl).unwrap();
        assert_eq!(r.key_prefixes["app/"], Access::Read);
        assert_eq!(r.keys["app/config"], Access::Write);
        assert_eq!(r.operator, Some(Access::Read));
        let json = r#"{"key_prefix": {"app/": {"policy": "read"}, "app/secret/": {"policy": "deny"}},
                       "key": {"app/config": {"policy": "write"}}, "operator": "read"}"#;
        assert_eq!(parse_rules(json).unwrap(), r);
        for bad in [
            r#"key_prefix "a" { policy = "root" }"#,
            r#"key_prefix { policy = "read" }"#,
            r#"service "x" { policy = "read" }"#,
            r#"key "a" { policy = "read""#,
            "\"open",
            "key_prefix \"a\" ! ",
        ] {
            assert!(parse_rules(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn longest_match_decides() {
        let a = auth(
            r#"key_prefix "app/" { policy = "read" } key_prefix "app/secret/" { policy = "deny" } key "app/config" { policy = "write" } key_prefix "" { policy = "list" }"#,
            false,
        );
        assert!(a.key_read("app/x") && !a.key_write("app/x"));
        assert!(!a.key_read("app/secret/pw"));
        assert!(a.key_write("app/config"));
        assert!(!a.key_write("app/config2"));
        assert!(a.key_list("other") && !a.key_read("other"));
        assert!(!a.key_write_prefix("app/"));
        let deny_default = auth(r#"key_prefix "app/" { policy = "write" }"#, false);
        assert!(!deny_default.key_read("db/x"));
        assert!(deny_default.key_write_prefix("app/"));
        let allow_default = auth(r#"key_prefix "app/" { policy = "read" }"#, true);
        assert!(allow_default.key_write("db/x") && !allow_default.key_write("app/x"));
        assert!(!allow_default.acl_write());
        assert!(Authorizer::management().key_write_prefix(""));
    }

    #[test]
    fn bootstrap_once_and_token_policies() {
        let mut s = AclState::default();
        let t = |secret: &str, pols: Vec<String>| Token {
            accessor_id: format!("acc-{secret}"),
            secret_id: secret.into(),
            description: String::new(),
            policies: pols,
            management: false,
            create_index: 0,
            roles: Vec::new(),
        };
        assert_eq!(s.apply(1, &AclWrite::Bootstrap { token: t("root", vec![]) }), AclResult::Ok);
        assert!(matches!(
            s.apply(2, &AclWrite::Bootstrap { token: t("again", vec![]) }),
            AclResult::Refused(_)
        ));
        assert!(s.authorizer(Some("root"), false).management);
        assert!(matches!(s.apply(3, &AclWrite::SetToken(t("u", vec!["p1".into()]))), AclResult::Refused(_)));
        let p = Policy {
            id: "p1".into(),
            name: "ro".into(),
            description: String::new(),
            rules: String::new(),
            parsed: parse_rules(r#"key_prefix "" { policy = "read" }"#).unwrap(),
        };
        assert_eq!(s.apply(4, &AclWrite::SetPolicy(p.clone())), AclResult::Ok);
        let dup = Policy { id: "p2".into(), ..p };
        assert!(matches!(s.apply(5, &AclWrite::SetPolicy(dup)), AclResult::Refused(_)));
        assert_eq!(s.apply(6, &AclWrite::SetToken(t("u", vec!["p1".into()]))), AclResult::Ok);
        let a = s.authorizer(Some("u"), false);
        assert!(a.key_read("x") && !a.key_write("x"));
        let anon = s.authorizer(None, false);
        assert!(!anon.key_read("x"));
        let unknown = s.authorizer(Some("nope"), false);
        assert!(!unknown.key_read("x"));
        s.apply(7, &AclWrite::DeleteToken { accessor_id: "acc-u".into() });
        assert!(!s.authorizer(Some("u"), false).key_read("x"));
    }

    #[test]
    fn account_rules() {
        let a = auth(
            r#"account "acco01" { policy = "write" } account_prefix "shared-" { policy = "read" }"#,
            false,
        );
        assert!(a.account_write("acco01") && !a.account_read("acco02"));
        assert!(a.account_read("shared-x") && !a.account_write("shared-x"));
        assert!(!a.operator_read());
        let json = r#"{"account": {"acco01": {"policy": "read"}}, "operator": "write"}"#;
        let a = auth(json, false);
        assert!(a.account_read("acco01") && !a.account_write("acco01") && a.operator_write());
    }

    #[test]
    fn a_token_holds_its_roles_policies() {
        let mut s = AclState::default();
        let rules = r#"key_prefix "app/" { policy = "write" }"#;
        let p = Policy { id: "p1".into(), name: "app".into(), description: String::new(), rules: rules.into(), parsed: parse_rules(rules).unwrap() };
        assert_eq!(s.apply(1, &AclWrite::SetPolicy(p)), AclResult::Ok);
        let role = |policies: Vec<String>| Role { id: "r1".into(), name: "writers".into(), description: String::new(), policies, create_index: 0, modify_index: 0 };
        assert!(matches!(s.apply(2, &AclWrite::SetRole(role(vec!["nope".into()]))), AclResult::Refused(_)));
        assert_eq!(s.apply(3, &AclWrite::SetRole(role(vec!["p1".into()]))), AclResult::Ok);
        let t = Token { accessor_id: "a".into(), secret_id: "s".into(), description: String::new(), policies: vec![], management: false, create_index: 0, roles: vec!["r1".into()] };
        assert_eq!(s.apply(4, &AclWrite::SetToken(t)), AclResult::Ok);
        assert!(s.authorizer(Some("s"), false).key_write("app/x"));
        assert!(!s.authorizer(Some("s"), false).key_write("db/x"));
        assert_eq!(s.apply(5, &AclWrite::DeleteRole { id: "r1".into() }), AclResult::Ok);
        assert!(!s.authorizer(Some("s"), false).key_write("app/x"), "a deleted role gives nothing");
        let again = Role { id: "r2".into(), ..role(vec![]) };
        assert_eq!(s.apply(6, &AclWrite::SetRole(again.clone())), AclResult::Ok);
        assert!(matches!(s.apply(7, &AclWrite::SetRole(Role { id: "r3".into(), ..again })), AclResult::Refused(_)), "names are unique");
    }
}
