//! Whole-configuration checks after every file is read: references between sections
//! (`use_backend`, `default_backend`, ACL names), duplicates, and the final `L7Config`.
use super::{acl::PREDEFINED, Parser};
use crate::haproxy::model::Fetch;

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
        }
        let conditions = px
            .use_backends
            .iter()
            .map(|u| (px.line, &u.cond))
            .chain(px.http_request.iter().filter_map(|r| Some((r.line, r.cond.as_ref()?))))
            .chain(px.http_response.iter().filter_map(|r| Some((r.line, r.cond.as_ref()?))));
        for (line, cond) in conditions {
            for term in cond.any_of.iter().flatten() {
                if !px.acls.iter().any(|a| a.name == term.1) && !PREDEFINED.contains(&term.1.as_str()) {
                    p.alert_at(
                        &px.file,
                        line,
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
        // Response rules see the response and the connection, not the request (as in HAProxy,
        // where such an ACL never matches there and `hdr()` reads the response's headers).
        for r in &px.http_response {
            for term in r.cond.iter().flat_map(|c| c.any_of.iter().flatten()) {
                let reads_request = px.acls.iter().filter(|a| a.name == term.1).any(|a| {
                    matches!(a.fetch, Fetch::Path | Fetch::Url | Fetch::Query | Fetch::Method | Fetch::ReqVer)
                });
                if reads_request {
                    p.warn_at(
                        &px.file,
                        r.line,
                        format!(
                            "http-response: acl '{}' reads the request, which response rules cannot see: \
                             it never matches here (as in HAProxy)",
                            term.1
                        ),
                    );
                }
            }
        }
        // A connection is judged before any request: only its addresses can be read.
        for r in &px.tcp_request_connection {
            for term in r.cond.iter().flat_map(|c| c.any_of.iter().flatten()) {
                let acls: Vec<_> = px.acls.iter().filter(|a| a.name == term.1).collect();
                let ok = if acls.is_empty() {
                    matches!(term.1.as_str(), "TRUE" | "FALSE" | "LOCALHOST")
                } else {
                    acls.iter().all(|a| a.fetch.at_connection())
                };
                if !ok {
                    p.alert_at(
                        &px.file,
                        r.line,
                        format!(
                            "tcp-request connection: acl '{}' reads what a connection does not have yet \
                             (src, src_port, dst, dst_port are available)",
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
