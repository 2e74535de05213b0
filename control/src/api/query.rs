//! Pure helpers for the HTTP API: query strings and percent-decoding.

/// Decodes `%XX` escapes (and `+` as a space in query values when `plus` is set).
/// Invalid escapes are an error, never a panic.
pub fn percent_decode(s: &str, plus: bool) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3).ok_or_else(|| format!("bad escape at byte {i}"))?;
                let h = std::str::from_utf8(hex).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                out.push(h.ok_or_else(|| format!("bad escape at byte {i}"))?);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 after decoding".to_string())
}

/// `a=1&b&c=x` → [("a", Some("1")), ("b", None), ("c", Some("x"))], decoded.
pub fn parse_query(q: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let mut out = Vec::new();
    for part in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = match part.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (part, None),
        };
        out.push((percent_decode(k, true)?, v.map(|v| percent_decode(v, true)).transpose()?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%2Fb%20c", false).unwrap(), "a/b c");
        assert_eq!(percent_decode("a+b", true).unwrap(), "a b");
        assert_eq!(percent_decode("a+b", false).unwrap(), "a+b");
        assert!(percent_decode("%", false).is_err());
        assert!(percent_decode("%zz", false).is_err());
        assert!(percent_decode("%ff", false).is_err());
        let q = parse_query("recurse&index=5&separator=%2F").unwrap();
        assert_eq!(q[0], ("recurse".into(), None));
        assert_eq!(q[1], ("index".into(), Some("5".into())));
        assert_eq!(q[2], ("separator".into(), Some("/".into())));
    }
}
