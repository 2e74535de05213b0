//! `http-request`, `http-response` and `tcp-request connection` rules. An action ballast
//! does not implement is an ALERT, since ignoring an access rule changes who gets served;
//! only actions that affect logging alone are a WARNING.
use super::{acl::condition, format::parse_format, Parser};
use crate::haproxy::model::*;

/// Actions that only change what is logged: ignoring them serves the same requests.
const LOG_ONLY: &[&str] = &["capture", "set-log-level", "early-hint"];

/// The words before `if`/`unless`, and the condition after it.
fn split_condition(p: &mut Parser, idx: usize, w: &[String]) -> Option<(usize, Option<Condition>)> {
    match w.iter().position(|x| x == "if" || x == "unless") {
        Some(at) => {
            let cond = condition(p, idx, &w[at], &w[at + 1..])?;
            Some((at, Some(cond)))
        }
        None => Some((w.len(), None)),
    }
}

fn status_arg(p: &mut Parser, what: &str, v: Option<&String>) -> Option<u16> {
    match v.and_then(|v| v.parse::<u16>().ok()).filter(|s| (200..=599).contains(s)) {
        Some(s) => Some(s),
        None => {
            p.alert(format!("'{what}' expects a status code from 200 to 599"));
            None
        }
    }
}

fn format_arg(p: &mut Parser, what: &str, v: Option<&String>) -> Option<Format> {
    let Some(v) = v else {
        p.alert(format!("'{what}' expects a value"));
        return None;
    };
    parse_format(v).map_err(|e| p.alert(format!("'{what}': {e}"))).ok()
}

fn header_name(p: &mut Parser, what: &str, v: Option<&String>) -> Option<String> {
    match v {
        Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic() && b != b':') => Some(n.clone()),
        _ => {
            p.alert(format!("'{what}' expects a header name"));
            None
        }
    }
}

/// `http-request <action> [args] [if|unless <condition>]`.
pub(super) fn http_request(p: &mut Parser, idx: usize, w: &[String]) {
    let Some((end, cond)) = split_condition(p, idx, &w[1..]) else { return };
    let args = &w[1..1 + end];
    let Some(kw) = args.first().map(String::as_str) else {
        p.alert("'http-request' expects an action");
        return;
    };
    let what = format!("http-request {kw}");
    let action = match kw {
        "allow" if args.len() == 1 => RequestAction::Allow,
        "deny" => {
            let mut status = 403;
            let mut i = 1;
            while i < args.len() {
                match args[i].as_str() {
                    "deny_status" => {
                        let Some(s) = status_arg(p, &what, args.get(i + 1)) else { return };
                        status = s;
                        i += 1;
                    }
                    other => {
                        p.alert(format!("'{what}': option '{other}' is not supported by ballast"));
                        return;
                    }
                }
                i += 1;
            }
            RequestAction::Deny { status }
        }
        "return" => {
            let (mut status, mut content_type, mut body, mut headers) = (200, None, None, Vec::new());
            let mut i = 1;
            while i < args.len() {
                match args[i].as_str() {
                    "status" => {
                        let Some(s) = status_arg(p, &what, args.get(i + 1)) else { return };
                        status = s;
                    }
                    "content-type" => content_type = args.get(i + 1).cloned(),
                    "string" => body = args.get(i + 1).map(|s| Format(vec![FormatPart::Text(s.clone())])),
                    "lf-string" => {
                        let Some(f) = format_arg(p, &what, args.get(i + 1)) else { return };
                        body = Some(f);
                    }
                    "hdr" => {
                        let Some(name) = header_name(p, &what, args.get(i + 1)) else { return };
                        let Some(v) = format_arg(p, &what, args.get(i + 2)) else { return };
                        headers.push((name, v));
                        i += 1;
                    }
                    other => {
                        p.alert(format!("'{what}': option '{other}' is not supported by ballast"));
                        return;
                    }
                }
                i += 2;
            }
            if body.is_some() && content_type.is_none() {
                p.alert(format!("'{what}': a body needs 'content-type'"));
                return;
            }
            RequestAction::Return { status, content_type, body, headers }
        }
        "redirect" => {
            let kind = match args.get(1).map(String::as_str) {
                Some("location") => RedirectKind::Location,
                Some("prefix") => RedirectKind::Prefix,
                Some("scheme") => RedirectKind::Scheme,
                other => {
                    p.alert(format!("'{what}' expects location, prefix or scheme, got {other:?}"));
                    return;
                }
            };
            let Some(value) = format_arg(p, &what, args.get(2)) else { return };
            let mut r = Redirect { kind, value, code: 302, drop_query: false, append_slash: false };
            let mut i = 3;
            while i < args.len() {
                match args[i].as_str() {
                    "code" => {
                        match args.get(i + 1).and_then(|c| c.parse::<u16>().ok()) {
                            Some(c @ (301 | 302 | 303 | 307 | 308)) => r.code = c,
                            _ => {
                                p.alert(format!("'{what}': code must be 301, 302, 303, 307 or 308"));
                                return;
                            }
                        }
                        i += 1;
                    }
                    "drop-query" => r.drop_query = true,
                    "append-slash" => r.append_slash = true,
                    other => {
                        p.alert(format!("'{what}': option '{other}' is not supported by ballast"));
                        return;
                    }
                }
                i += 1;
            }
            RequestAction::Redirect(r)
        }
        "set-header" | "add-header" if args.len() == 3 => {
            let Some(name) = header_name(p, &what, args.get(1)) else { return };
            let Some(value) = format_arg(p, &what, args.get(2)) else { return };
            if kw == "set-header" {
                RequestAction::SetHeader { name, value }
            } else {
                RequestAction::AddHeader { name, value }
            }
        }
        "del-header" if args.len() == 2 => {
            let Some(name) = header_name(p, &what, args.get(1)) else { return };
            RequestAction::DelHeader { name }
        }
        "set-path" if args.len() == 2 => {
            let Some(f) = format_arg(p, &what, args.get(1)) else { return };
            RequestAction::SetPath(f)
        }
        k if LOG_ONLY.contains(&k) => {
            p.warn(format!("'{what}' only changes logging and is not supported by ballast, ignored"));
            return;
        }
        "allow" | "set-header" | "add-header" | "del-header" | "set-path" => {
            p.alert(format!("'{what}': unexpected arguments '{}'", args[1..].join(" ")));
            return;
        }
        _ => {
            p.alert(format!(
                "'{what}' is not supported by ballast (allow, deny, return, redirect, set-header, add-header, \
                 del-header, set-path are)"
            ));
            return;
        }
    };
    let line = p.line;
    p.proxies[idx].http_request.push(Rule { action, cond, line });
}

/// `http-response <action> [args] [if|unless <condition>]`.
pub(super) fn http_response(p: &mut Parser, idx: usize, w: &[String]) {
    let Some((end, cond)) = split_condition(p, idx, &w[1..]) else { return };
    let args = &w[1..1 + end];
    let Some(kw) = args.first().map(String::as_str) else {
        p.alert("'http-response' expects an action");
        return;
    };
    let what = format!("http-response {kw}");
    let action = match (kw, args.len()) {
        ("allow", 1) => ResponseAction::Allow,
        ("set-header" | "add-header", 3) => {
            let Some(name) = header_name(p, &what, args.get(1)) else { return };
            let Some(value) = format_arg(p, &what, args.get(2)) else { return };
            if kw == "set-header" {
                ResponseAction::SetHeader { name, value }
            } else {
                ResponseAction::AddHeader { name, value }
            }
        }
        ("del-header", 2) => {
            let Some(name) = header_name(p, &what, args.get(1)) else { return };
            ResponseAction::DelHeader { name }
        }
        (k, _) if LOG_ONLY.contains(&k) => {
            p.warn(format!("'{what}' only changes logging and is not supported by ballast, ignored"));
            return;
        }
        _ => {
            p.alert(format!(
                "'{what} {}' is not supported by ballast (allow, set-header, add-header, del-header are)",
                args[1..].join(" ")
            ));
            return;
        }
    };
    let line = p.line;
    p.proxies[idx].http_response.push(Rule { action, cond, line });
}

/// `tcp-request connection accept|reject [if|unless <condition>]`; other `tcp-request`
/// rules are refused, `inspect-delay` alone means nothing without content rules.
pub(super) fn tcp_request(p: &mut Parser, idx: usize, w: &[String]) {
    match w.get(1).map(String::as_str) {
        Some("connection") => {}
        Some("inspect-delay") => {
            p.warn("'tcp-request inspect-delay' has no effect without content rules, ignored");
            return;
        }
        other => {
            p.alert(format!(
                "'tcp-request {}' is not supported by ballast (tcp-request connection accept|reject is)",
                other.unwrap_or("")
            ));
            return;
        }
    }
    let Some((end, cond)) = split_condition(p, idx, &w[2..]) else { return };
    let action = match &w[2..2 + end] {
        [a] if a == "accept" => ConnectionAction::Accept,
        [a] if a == "reject" => ConnectionAction::Reject,
        other => {
            p.alert(format!(
                "'tcp-request connection {}' is not supported by ballast (accept, reject are)",
                other.join(" ")
            ));
            return;
        }
    };
    let line = p.line;
    p.proxies[idx].tcp_request_connection.push(Rule { action, cond, line });
}
