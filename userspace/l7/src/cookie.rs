//! `cookie NAME insert [indirect] [nocache] [httponly] [secure] [domain D]`, as HAProxy
//! documents it:
//! - a request whose cookie names a server that is up (or draining) goes to that server;
//!   a cookie naming an unknown or down server is ignored and the request is balanced;
//! - a response gets `Set-Cookie: NAME=<server's cookie>; path=/` when the client did not
//!   already hold a cookie for the server that answered;
//! - `indirect`: the persistence cookie is removed from the request sent to the server;
//! - `nocache`: a response that gets the cookie and that a shared cache could store gets
//!   `Cache-Control: private` added (the server's own Cache-Control stays), so no cache
//!   hands one client's persistence cookie to others. "Could store" is HAProxy 2.6's rule,
//!   observed on its binary: see [`cacheable`].
use crate::haproxy::model::CookieCfg;

/// A server as persistence sees it.
#[derive(Clone, Copy, Debug)]
pub struct CookieServer<'a> {
    /// The server's `cookie` value (a server without one never gets a cookie).
    pub value: Option<&'a str>,
    /// Up (or draining: persistence still reaches a server at weight 0).
    pub accepts: bool,
}

/// Values of `name` in `Cookie:` headers (`a=1; b=2`).
pub fn find<'h>(name: &str, headers: &[&'h str]) -> Option<&'h str> {
    headers.iter().flat_map(|h| h.split(';')).find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k.trim() == name).then_some(v.trim())
    })
}

/// The server the request's cookie designates, if any and if it accepts traffic.
pub fn designated(cfg: &CookieCfg, headers: &[&str], servers: &[CookieServer]) -> Option<usize> {
    let v = find(&cfg.name, headers)?;
    servers.iter().position(|s| s.accepts && s.value == Some(v))
}

/// The `Cookie:` header to forward when `indirect` removes ours (None = drop the header).
pub fn strip(cfg: &CookieCfg, header: &str) -> Option<String> {
    let kept: Vec<&str> = header
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty() && p.split_once('=').map(|(k, _)| k.trim()) != Some(cfg.name.as_str()))
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// What to add to the response of `chosen`: (Set-Cookie value, whether to add
/// `Cache-Control: private`), or None when the client already holds the right cookie or
/// the server has no cookie value.
pub fn insert(
    cfg: &CookieCfg,
    request_cookie: Option<&str>,
    chosen: &CookieServer,
) -> Option<(String, bool)> {
    let value = chosen.value?;
    if request_cookie == Some(value) {
        return None;
    }
    let mut c = format!("{}={value}; path=/", cfg.name);
    if let Some(d) = &cfg.domain {
        c.push_str(&format!("; domain={d}"));
    }
    if cfg.httponly {
        c.push_str("; HttpOnly");
    }
    if cfg.secure {
        c.push_str("; Secure");
    }
    Some((c, cfg.nocache))
}

/// Whether a shared cache could store a response, as HAProxy 2.6 decides it for
/// `nocache` (checked against its binary): a GET or HEAD; a status cacheable by default
/// (200, 203, 204, 206, 300, 301, 404, 405, 410, 414, 501); something that makes it fresh
/// (`max-age` or `s-maxage` above 0, `Expires`, `Last-Modified`); and no `no-cache`,
/// `no-store` or `private` directive, nor `Pragma: no-cache`. `header(name)` gives each
/// value of a response header (lower-case name).
pub fn cacheable(method: &str, status: u16, header: &dyn Fn(&str) -> Vec<String>) -> bool {
    if !matches!(method, "GET" | "HEAD")
        || !matches!(status, 200 | 203 | 204 | 206 | 300 | 301 | 404 | 405 | 410 | 414 | 501)
    {
        return false;
    }
    if header("pragma").iter().any(|v| v.trim().eq_ignore_ascii_case("no-cache")) {
        return false;
    }
    let mut fresh = !header("expires").is_empty() || !header("last-modified").is_empty();
    for v in header("cache-control") {
        for d in v.split(',').map(str::trim) {
            let (name, arg) = match d.split_once('=') {
                Some((n, a)) => (n.trim().to_ascii_lowercase(), Some(a.trim().trim_matches('"'))),
                None => (d.to_ascii_lowercase(), None),
            };
            match (name.as_str(), arg) {
                ("no-cache", None) | ("no-store", _) | ("private", None) => return false,
                ("max-age" | "s-maxage", Some(a)) => fresh |= a.parse::<u64>().is_ok_and(|n| n > 0),
                _ => {}
            }
        }
    }
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> CookieCfg {
        CookieCfg {
            name: "SERVERID".into(),
            insert: true,
            indirect: true,
            nocache: true,
            httponly: false,
            secure: false,
            domain: None,
        }
    }

    fn servers(accepts: [bool; 3]) -> Vec<CookieServer<'static>> {
        let vals = [Some("s1"), Some("s2"), None];
        (0..3).map(|i| CookieServer { value: vals[i], accepts: accepts[i] }).collect()
    }

    #[test]
    fn first_request_gets_the_cookie_later_ones_follow_it() {
        let c = cfg();
        let s = servers([true, true, true]);
        // No cookie: balanced, and the response inserts the chosen server's value.
        assert_eq!(designated(&c, &[], &s), None);
        assert_eq!(insert(&c, None, &s[1]), Some(("SERVERID=s2; path=/".into(), true)));
        // With it: that server, and nothing inserted again.
        assert_eq!(designated(&c, &["lang=ko; SERVERID=s2"], &s), Some(1));
        assert_eq!(insert(&c, Some("s2"), &s[1]), None);
        // Several Cookie headers are all searched.
        assert_eq!(designated(&c, &["a=1", "SERVERID=s1"], &s), Some(0));
    }

    #[test]
    fn a_down_or_unknown_server_breaks_persistence() {
        let c = cfg();
        let s = servers([true, false, true]);
        assert_eq!(designated(&c, &["SERVERID=s2"], &s), None);
        assert_eq!(designated(&c, &["SERVERID=nope"], &s), None);
        // The server that then answers re-inserts its own cookie.
        assert_eq!(insert(&c, Some("s2"), &s[0]).unwrap().0, "SERVERID=s1; path=/");
    }

    #[test]
    fn servers_without_a_cookie_value_never_get_one() {
        let s = servers([true, true, true]);
        assert_eq!(insert(&cfg(), None, &s[2]), None);
    }

    #[test]
    fn indirect_strips_only_our_cookie() {
        let c = cfg();
        assert_eq!(strip(&c, "lang=ko; SERVERID=s2; theme=dark").as_deref(), Some("lang=ko; theme=dark"));
        assert_eq!(strip(&c, "SERVERID=s2"), None);
        assert_eq!(strip(&c, "SERVERIDX=1").as_deref(), Some("SERVERIDX=1"));
    }

    #[test]
    fn attributes_and_nocache() {
        let mut c = cfg();
        c.httponly = true;
        c.secure = true;
        c.domain = Some(".example.com".into());
        c.nocache = false;
        let s = servers([true, true, true]);
        assert_eq!(
            insert(&c, None, &s[0]),
            Some(("SERVERID=s1; path=/; domain=.example.com; HttpOnly; Secure".into(), false))
        );
    }

    /// The cases run against HAProxy 2.6 (`cookie SRV insert indirect nocache`): when it
    /// added `Cache-Control: private`.
    #[test]
    fn cacheable_as_haproxy_decides() {
        let h = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| -> Vec<String> {
                pairs.iter().filter(|(n, _)| *n == name).map(|(_, v)| v.to_string()).collect()
            }
        };
        let c = |method, status, pairs: &'static [(&'static str, &'static str)]| {
            cacheable(method, status, &h(pairs))
        };
        assert!(!c("GET", 200, &[]), "nothing makes it fresh");
        assert!(!c("GET", 200, &[("cache-control", "no-store")]));
        assert!(c("GET", 200, &[("cache-control", "max-age=60")]));
        assert!(c("GET", 200, &[("cache-control", "MAX-AGE=60")]));
        assert!(!c("GET", 200, &[("cache-control", "private")]));
        assert!(!c("GET", 200, &[("cache-control", "public")]));
        assert!(!c("GET", 200, &[("cache-control", "no-cache")]));
        assert!(c("GET", 200, &[("cache-control", "public,max-age=60")]));
        assert!(c("GET", 200, &[("cache-control", "max-age=60,no-cache=\"set-cookie\"")]));
        assert!(!c("GET", 200, &[("cache-control", "max-age=60, private")]));
        assert!(!c("GET", 200, &[("cache-control", "max-age=60"), ("cache-control", "no-store")]));
        assert!(!c("GET", 200, &[("cache-control", "max-age=0")]));
        assert!(!c("GET", 200, &[("cache-control", "s-maxage=0")]));
        assert!(c("GET", 200, &[("cache-control", "s-maxage=60")]));
        assert!(!c("GET", 200, &[("cache-control", "must-revalidate")]));
        assert!(c("GET", 200, &[("expires", "Thu, 01 Dec 2099 16:00:00 GMT")]));
        assert!(c("GET", 200, &[("last-modified", "Thu, 01 Dec 2020 16:00:00 GMT")]));
        assert!(!c("GET", 200, &[("cache-control", "max-age=60"), ("pragma", "no-cache")]));
        assert!(c("HEAD", 200, &[("cache-control", "max-age=60")]));
        assert!(!c("POST", 200, &[("cache-control", "max-age=60")]));
        for st in [203, 204, 206, 300, 301, 404, 405, 410, 414, 501] {
            assert!(c("GET", st, &[("cache-control", "max-age=60")]), "{st}");
        }
        for st in [302, 307, 308, 500, 503] {
            assert!(!c("GET", st, &[("cache-control", "max-age=60")]), "{st}");
        }
    }
}
