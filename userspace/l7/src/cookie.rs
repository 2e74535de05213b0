//! `cookie NAME insert [indirect] [nocache] [httponly] [secure] [domain D]`, as HAProxy
//! documents it:
//! - a request whose cookie names a server that is up (or draining) goes to that server;
//!   a cookie naming an unknown or down server is ignored and the request is balanced;
//! - a response gets `Set-Cookie: NAME=<server's cookie>; path=/` when the client did not
//!   already hold a cookie for the server that answered;
//! - `indirect`: the persistence cookie is removed from the request sent to the server;
//! - `nocache`: a response that gets the cookie is marked `Cache-Control: private`, so no
//!   shared cache stores one client's persistence cookie for others.
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
}
