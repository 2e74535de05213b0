//! The checks RFC 9113 §8 makes of a request's header fields: pseudo-headers, names,
//! connection-specific fields, `te`.
use super::RequestHead;
use crate::hpack::HeaderField;

/// Fields HTTP/2 forbids (RFC 9113 §8.2.2); `te` is allowed with "trailers" only and is
/// checked on requests.
pub(super) fn is_connection_specific(name: &[u8]) -> bool {
    matches!(name, b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding" | b"upgrade")
}

/// Checks a request's fields (RFC 9113 §8.3.1, §8.2): the pseudo-header fields first,
/// each once, the three of a request all there (CONNECT is not served); names lower
/// case; no connection-specific fields; a valid Content-Length. None: malformed.
pub(super) fn check_request(fields: &mut Vec<HeaderField>) -> Option<RequestHead> {
    let (mut method, mut scheme, mut authority, mut path) = (None, None, None, None);
    let mut regular = 0;
    for f in fields.iter() {
        if f.name.first() != Some(&b':') {
            break;
        }
        let slot = match &f.name[..] {
            b":method" => &mut method,
            b":scheme" => &mut scheme,
            b":authority" => &mut authority,
            b":path" => &mut path,
            _ => return None,
        };
        if slot.replace(f.value.clone()).is_some() {
            return None;
        }
        regular += 1;
    }
    let rest = fields.split_off(regular);
    let mut content_length = None;
    for f in &rest {
        let bad_name = f.name.is_empty()
            || f.name.iter().any(|&b| b == b':' || b.is_ascii_uppercase() || b <= b' ' || b == 0x7f)
            || is_connection_specific(&f.name)
            || (&f.name[..] == b"te" && &f.value[..] != b"trailers");
        if bad_name || f.value.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n') {
            return None;
        }
        if &f.name[..] == b"content-length" {
            let n = std::str::from_utf8(&f.value).ok()?.parse::<u64>().ok()?;
            if content_length.replace(n).is_some_and(|m| m != n) {
                return None;
            }
        }
    }
    let (method, scheme, path) = (method?, scheme?, path?);
    if path.is_empty() || &method[..] == b"CONNECT" {
        return None;
    }
    Some(RequestHead {
        method,
        scheme,
        authority: authority.unwrap_or_default(),
        path,
        fields: rest,
        content_length,
    })
}
