//! `acl` lines and the `if`/`unless` conditions that use them.
use super::Parser;
use crate::haproxy::model::*;

pub(super) fn acl(p: &mut Parser, idx: usize, w: &[String]) {
    let (Some(name), Some(crit)) = (w.get(1), w.get(2)) else {
        p.alert("'acl' expects a name, a criterion and values");
        return;
    };
    let (mut criterion, mut ci, mut i) = (None, false, 3);
    let base = match crit.as_str() {
        "hdr(host)" | "hdr(Host)" => Some((true, Match::Exact)),
        "hdr_beg(host)" => Some((true, Match::Begins)),
        "hdr_end(host)" | "hdr_dom(host)" => Some((true, Match::Ends)),
        "hdr_sub(host)" => Some((true, Match::Contains)),
        "path" => Some((false, Match::Exact)),
        "path_beg" => Some((false, Match::Begins)),
        "path_end" => Some((false, Match::Ends)),
        "path_sub" => Some((false, Match::Contains)),
        _ => None,
    };
    let Some((is_host, mut m)) = base else {
        p.alert(format!("acl '{name}': criterion '{crit}' is not supported by ballast (hdr(host), hdr_beg/end/sub(host), path, path_beg/end/sub)"));
        return;
    };
    while let Some(f) = w.get(i) {
        match f.as_str() {
            "-i" => ci = true,
            "-m" => {
                m = match w.get(i + 1).map(String::as_str) {
                    Some("str") => Match::Exact,
                    Some("beg") => Match::Begins,
                    Some("end") | Some("dom") => Match::Ends,
                    Some("sub") => Match::Contains,
                    other => {
                        p.alert(format!("acl '{name}': match method {other:?} is not supported"));
                        return;
                    }
                };
                i += 1;
            }
            "--" => {
                i += 1;
                break;
            }
            _ => break,
        }
        i += 1;
    }
    criterion.get_or_insert(if is_host { AclCriterion::Host(m) } else { AclCriterion::Path(m) });
    let values: Vec<String> = w[i.min(w.len())..].to_vec();
    if values.is_empty() {
        p.alert(format!("acl '{name}' has no value to match"));
        return;
    }
    // Several `acl` lines with one name are ORed, as in HAProxy: kept as separate entries.
    p.proxies[idx].acls.push(Acl {
        name: name.clone(),
        criterion: criterion.unwrap(),
        case_insensitive: ci || is_host,
        values,
    });
}

pub(super) fn condition(p: &mut Parser, kw: &str, terms: &[String]) -> Option<Condition> {
    let negate_all = match kw {
        "if" => false,
        "unless" => true,
        other => {
            p.alert(format!("expected 'if' or 'unless', got '{other}'"));
            return None;
        }
    };
    let mut any_of = vec![Vec::new()];
    for t in terms {
        match t.as_str() {
            "or" | "||" => any_of.push(Vec::new()),
            "{" | "}" => {
                p.alert("anonymous ACLs ({ ... }) are not supported by ballast; name them with 'acl'");
                return None;
            }
            t => {
                let (neg, name) = match t.strip_prefix('!') {
                    Some(n) => (true, n),
                    None => (false, t),
                };
                any_of.last_mut().unwrap().push((neg, name.to_string()));
            }
        }
    }
    if any_of.iter().any(Vec::is_empty) {
        p.alert("empty condition");
        return None;
    }
    Some(Condition { negate_all, any_of })
}
