//! Whole-configuration checks after every file is read: references between sections
//! (`use_backend`, `default_backend`, ACL names), duplicates, and the final `L7Config`.
use super::Parser;

/// Whole-file checks: targets of use_backend/default_backend, ACL names, binds, timeouts.
pub(super) fn check_references(p: &mut Parser) {
    let proxies = p.proxies.clone();
    for px in &proxies {
        let backend_ok = |name: &str| proxies.iter().any(|b| b.name == name && b.kind.has_backend());
        for ub in &px.use_backends {
            if !backend_ok(&ub.backend) {
                p.alert_at(
                    &px.file,
                    px.line,
                    format!(
                        "{} '{}': use_backend '{}' names no backend",
                        px.kind.keyword(),
                        px.name,
                        ub.backend
                    ),
                );
            }
            for term in ub.cond.any_of.iter().flatten() {
                if !px.acls.iter().any(|a| a.name == term.1) {
                    p.alert_at(
                        &px.file,
                        px.line,
                        format!(
                            "{} '{}': condition uses unknown acl '{}'",
                            px.kind.keyword(),
                            px.name,
                            term.1
                        ),
                    );
                }
            }
        }
        if let Some(db) = &px.default_backend {
            if !backend_ok(db) {
                p.alert_at(
                    &px.file,
                    px.line,
                    format!("{} '{}': default_backend '{db}' names no backend", px.kind.keyword(), px.name),
                );
            }
        }
        if px.kind.has_frontend() && px.binds.is_empty() {
            p.warn_at(
                &px.file,
                px.line,
                format!(
                    "{} '{}' has no 'bind' directive: it will not accept connections",
                    px.kind.keyword(),
                    px.name
                ),
            );
        }
        let t = &px.settings.timeouts;
        let mut missing = Vec::new();
        if px.kind.has_frontend() && t.client.is_none() {
            missing.push("client");
        }
        if px.kind.has_backend() && t.connect.is_none() {
            missing.push("connect");
        }
        if px.kind.has_backend() && t.server.is_none() {
            missing.push("server");
        }
        if !missing.is_empty() && px.stats.is_none() {
            p.warn_at(
                &px.file,
                px.line,
                format!(
                    "{} '{}': missing timeouts ({}); ballast uses 30s",
                    px.kind.keyword(),
                    px.name,
                    missing.join(", ")
                ),
            );
        }
        if let Some(c) = &px.settings.cookie {
            if px.kind.has_backend() {
                for s in px.servers.iter().filter(|s| s.cookie.is_none()) {
                    p.warn_at(
                        &px.file,
                        s.line,
                        format!(
                            "server '{}' has no 'cookie' value: cookie '{}' is never set for it",
                            s.name, c.name
                        ),
                    );
                }
            }
        }
        // A frontend's mode must match its backends'.
        for target in px.use_backends.iter().map(|u| &u.backend).chain(px.default_backend.as_ref()) {
            if let Some(b) = proxies.iter().find(|b| &b.name == target && b.kind.has_backend()) {
                if b.settings.mode != px.settings.mode {
                    p.alert_at(
                        &px.file,
                        px.line,
                        format!(
                            "{} '{}' (mode {:?}) cannot use backend '{}' (mode {:?})",
                            px.kind.keyword(),
                            px.name,
                            px.settings.mode,
                            b.name,
                            b.settings.mode
                        ),
                    );
                }
            }
        }
    }
    tls_policies(p);
}

/// Each `bind ... ssl` line's TLS policy: its options over `ssl-default-bind-*` (known
/// only once every file is read), narrowed to what ballast speaks.
fn tls_policies(p: &mut Parser) {
    let defaults = p.global.ssl_default_bind.clone();
    for i in 0..p.proxies.len() {
        let file = p.proxies[i].file.clone();
        for j in 0..p.proxies[i].binds.len() {
            let b = &p.proxies[i].binds[j];
            if b.tls_certs.is_empty() {
                continue;
            }
            let line = b.line;
            match crate::haproxy::tls::resolve(&b.tls.over(&defaults)) {
                Ok((policy, warnings)) => {
                    for w in warnings {
                        p.warn_at(&file, line, format!("bind: {w}"));
                    }
                    p.proxies[i].binds[j].tls_policy = Some(policy);
                }
                Err(e) => p.alert_at(&file, line, format!("bind: {e}")),
            }
        }
    }
}
