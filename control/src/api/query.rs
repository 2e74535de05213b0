//! Pure helpers for the HTTP API: query strings, percent-decoding, Consul's durations.
use std::time::Duration;

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

/// Consul/Go durations: `10s`, `5m`, `100ms`, `1h`, `1m30s`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(n) = s.parse::<u64>() {
        if n > 1_000_000_000 {
            return Err(format!("invalid duration {s:?}: too long"));
        }
        return Ok(Duration::from_secs(n));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("invalid duration {s:?}"));
        }
        let n: f64 = rest[..digits].parse().map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            u => return Err(format!("invalid duration {s:?}: unknown unit {u:?}")),
        };
        rest = &rest[unit_len..];
        let secs = n * scale;
        if !secs.is_finite() || secs > 1e9 {
            return Err(format!("invalid duration {s:?}"));
        }
        total += Duration::from_secs_f64(secs);
    }
    Ok(total)
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

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        for bad in ["", "s", "10x", "1e400s", "-1s", "ms5", "18446744073709551615"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
