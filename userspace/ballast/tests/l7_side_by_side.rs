//! HAProxy's semantics, checked against HAProxy itself: the same configuration runs in
//! Debian's HAProxy 2.6 and in `ballast proxy`, the same requests go to both (from curl,
//! over HTTP/1.1, and to ballast over HTTP/2 too), and the answers must match: status,
//! `Location`, the response headers the rules touch, and the body, which (from an echo
//! backend) shows the target and headers the server received.
mod common;

use std::process::Command;

use common::{
    free_port, http_backend,
    l7::{have_haproxy, start_haproxy, start_proxy},
};

/// What a client saw: status (None: refused or reset), Location, the rule-touched
/// response headers, and the body.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    status: Option<u16>,
    location: Option<String>,
    headers: Vec<String>,
    body: String,
}

/// One request with curl: `args` are curl's (headers, `--interface`, ...).
fn fetch(port: u16, path: &str, args: &[&str], h2: bool) -> Seen {
    let url = format!("http://127.0.0.1:{port}{path}");
    let out = Command::new("curl")
        .args(["-s", "-i", "-m", "10", if h2 { "--http2-prior-knowledge" } else { "--http1.1" }])
        .args(args)
        .arg(&url)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    let Some((head, body)) = text.split_once("\n\n") else {
        return Seen { status: None, location: None, headers: Vec::new(), body: String::new() };
    };
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok());
    let mut location = None;
    let mut headers = Vec::new();
    for l in lines {
        let (k, v) = l.split_once(':').unwrap_or((l, ""));
        let k = k.to_ascii_lowercase();
        match k.as_str() {
            "location" => location = Some(v.trim().to_string()),
            "x-frame-options" | "x-internal" | "x-tag" | "content-type" | "cache-control" | "set-cookie" => {
                headers.push(format!("{k}: {}", v.trim()))
            }
            _ => {}
        }
    }
    headers.sort();
    Seen { status, location, headers, body: body.to_string() }
}

/// Runs `config` (with `{port}` for the bind address and `{echo}` for the server) in
/// both, then each probe (path, curl arguments) against both, and compares.
fn side_by_side(config: &str, probes: &[(&str, &[&str])]) {
    let echo = http_backend::start_echo("s1");
    let cfg = |port: u16| {
        config
            .replace("{port}", &port.to_string())
            .replace("{echo}", &echo.addr.to_string())
            .replace("{echo_port}", &echo.addr.port().to_string())
    };
    let (pb, ph) = (free_port(), free_port());
    let _ballast = start_proxy(&cfg(pb));
    let _haproxy = start_haproxy(&cfg(ph), ph);
    // The Host the echo backend reports names each proxy's own port.
    let norm = |mut s: Seen, port: u16| {
        s.body = s.body.replace(&format!(":{port}"), ":PORT");
        s
    };
    for (path, args) in probes {
        let want = norm(fetch(ph, path, args, false), ph);
        let got = norm(fetch(pb, path, args, false), pb);
        assert_eq!(got, want, "HTTP/1.1 {path} {args:?}: ballast (left) vs HAProxy (right)");
        if want.status.is_some() {
            let got2 = norm(fetch(pb, path, args, true), pb);
            assert_eq!(got2, want, "HTTP/2 {path} {args:?}: ballast (left) vs HAProxy over HTTP/1.1 (right)");
        }
    }
}

const HEAD: &str =
    "defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n";

/// Access rules: `http-request deny|return|redirect|set-header|add-header|del-header|
/// set-path`, `http-response set-header|del-header`, with named and anonymous ACLs on
/// the source address, path, Host and TLS. Later rules see earlier rules' headers; a
/// response rule's condition on the request's path never matches (HAProxy's behaviour).
#[test]
fn access_rules_as_haproxy() {
    if !have_haproxy() {
        return;
    }
    let config = format!(
        "{HEAD}frontend fe\n    bind 127.0.0.1:{{port}}\n\
         acl admin path_beg /admin\n    acl office src 127.0.0.2\n\
         http-request deny if admin !office\n\
         http-request deny deny_status 429 if {{ path /limited }}\n\
         http-request return status 200 content-type text/plain string pong if {{ path /ping }}\n\
         http-request redirect scheme https code 301 if {{ path_beg /secure }}\n\
         http-request redirect prefix /v2 if {{ path_beg /old }}\n\
         http-request redirect location /moved code 303 if {{ path /here }} !{{ ssl_fc }}\n\
         http-request set-header X-Seen-By rules\n\
         http-request add-header X-Client %[src]\n\
         http-request del-header X-Secret\n\
         http-request set-path /rewritten%[path] if {{ path_beg /rw }}\n\
         http-request deny if {{ req.hdr(x-seen-by) rules }} {{ path /after-set }}\n\
         http-response set-header X-Frame-Options DENY\n\
         http-response del-header X-Internal if {{ path_beg /hide }}\n\
         http-response del-header X-Internal if {{ src 127.0.0.2 }}\n\
         use_backend tagged if {{ hdr(x-tag) -m found }}\n\
         default_backend web\n\
         backend web\n    server s1 {{echo}}\n\
         backend tagged\n    http-request set-header X-Backend tagged\n    http-response set-header X-Tag yes\n    server s1 {{echo}}\n"
    );
    let probes: &[(&str, &[&str])] = &[
        ("/", &[]),
        ("/admin/users", &[]),
        ("/admin/users", &["--interface", "127.0.0.2"]),
        ("/limited", &[]),
        ("/ping", &[]),
        ("/secure/x?y=1", &["-H", "Host: a.test:8080"]),
        ("/old/a?b=2", &[]),
        ("/here?x", &[]),
        ("/rw/page?q=1", &["-H", "X-Secret: s", "-H", "X-Other: o"]),
        ("/after-set", &[]),
        ("/hide/x", &[]),
        ("/x", &["--interface", "127.0.0.2"]),
        ("/t", &["-H", "X-Tag: 1"]),
    ];
    side_by_side(&config, probes);
}

/// Host matching as HAProxy 2.6 does it: `hdr(host)` sees the port, is case-sensitive
/// without `-i`; `hdr_dom` matches whole labels; `-i` ignores case; `tcp-request
/// connection reject` on the source address.
#[test]
fn host_acls_and_connection_rules_as_haproxy() {
    if !have_haproxy() {
        return;
    }
    let config = format!(
        "{HEAD}frontend fe\n    bind 127.0.0.1:{{port}}\n\
         tcp-request connection reject if {{ src 127.0.0.3 }}\n\
         acl exact hdr(host) dom.test\n    acl ci hdr(host) -i CI.test\n    acl dom hdr_dom(host) dom.test\n\
         acl end hdr_end(host) .end.test\n    acl beg hdr_beg(host) api.\n\
         http-request return status 200 content-type text/plain string exact if exact\n\
         http-request return status 200 content-type text/plain string ci if ci\n\
         http-request return status 200 content-type text/plain string dom if dom\n\
         http-request return status 200 content-type text/plain string end if end\n\
         http-request return status 200 content-type text/plain string beg if beg\n\
         default_backend web\n\
         backend web\n    server s1 {{echo}}\n"
    );
    let host = |h: &'static str| -> (&'static str, Vec<&'static str>) { ("/", vec!["-H", h]) };
    let cases: Vec<(&str, Vec<&str>)> = vec![
        host("Host: dom.test"),
        host("Host: dom.test:8080"),
        host("Host: DOM.test"),
        host("Host: www.dom.test"),
        host("Host: wwwdom.test"),
        host("Host: ci.TEST"),
        host("Host: a.end.test"),
        host("Host: end.test"),
        host("Host: api.example"),
        ("/", vec!["--interface", "127.0.0.3"]),
        ("/", vec!["--interface", "127.0.0.2"]),
    ];
    let probes: Vec<(&str, &[&str])> = cases.iter().map(|(p, a)| (*p, a.as_slice())).collect();
    side_by_side(&config, &probes);
}

/// `cookie NAME insert indirect nocache`: the cookie is inserted for a client without it,
/// and `Cache-Control: private` is added (the server's own kept) only to a response a
/// shared cache could store, as HAProxy 2.6 decides it (fresh, cacheable status, GET/HEAD,
/// no no-cache/no-store/private).
#[test]
fn nocache_cookie_as_haproxy() {
    if !have_haproxy() {
        return;
    }
    let config = format!(
        "{HEAD}listen web\n    bind 127.0.0.1:{{port}}\n    cookie SRV insert indirect nocache\n    server s1 {{echo}} cookie s1\n"
    );
    let probes: &[(&str, &[&str])] = &[
        ("/", &[]),
        ("/?cc=no-store", &[]),
        ("/?cc=max-age%3D60", &[]),
        ("/?cc=public", &[]),
        ("/?cc=public%2Cmax-age%3D60", &[]),
        ("/?cc=max-age%3D60%2C%20private", &[]),
        ("/?cc=max-age%3D60&cc=no-store", &[]),
        ("/?cc=max-age%3D0", &[]),
        ("/?cc=s-maxage%3D60", &[]),
        ("/?cc=max-age%3D60&st=404", &[]),
        ("/?cc=max-age%3D60&st=302", &[]),
        ("/?cc=max-age%3D60", &["-X", "POST", "-d", "x"]),
        ("/?cc=max-age%3D60", &["-H", "Cookie: SRV=s1"]),
    ];
    side_by_side(&config, probes);
}

/// `option forwardfor` in a frontend: the header goes to every backend it routes to, named
/// as the backend's own `option forwardfor` says when it has one (one header, not two),
/// and appended after a client's own.
#[test]
fn forwardfor_in_a_frontend_as_haproxy() {
    if !have_haproxy() {
        return;
    }
    let config = format!(
        "{HEAD}frontend fe\n    bind 127.0.0.1:{{port}}\n    option forwardfor header X-Client\n\
         use_backend own if {{ path_beg /own }}\n    default_backend plain\n\
         backend plain\n    server s1 {{echo}}\n\
         backend own\n    option forwardfor header X-Real\n    server s1 {{echo}}\n"
    );
    let probes: &[(&str, &[&str])] =
        &[("/", &[]), ("/own", &[]), ("/", &["-H", "X-Client: 192.0.2.9"]), ("/own", &["-H", "X-Client: 192.0.2.9"])];
    side_by_side(&config, probes);
}

/// A server written with a host name is resolved at start, as HAProxy does; one that
/// does not resolve refuses the configuration in both.
#[test]
fn server_host_names_resolve_as_haproxy() {
    if !have_haproxy() {
        return;
    }
    let config = format!("{HEAD}listen web\n    bind 127.0.0.1:{{port}}\n    server s1 localhost:{{echo_port}}\n");
    side_by_side(&config, &[("/named", &[])]);
    let bad = std::env::temp_dir().join(format!("ballast-badhost-{}.cfg", std::process::id()));
    std::fs::write(&bad, format!("{HEAD}listen web\n    bind 127.0.0.1:1\n    server s1 no-such-host.invalid:80\n")).unwrap();
    let haproxy = Command::new("haproxy").args(["-c", "-f"]).arg(&bad).output().unwrap();
    let ballast = Command::new(env!("CARGO_BIN_EXE_ballast")).args(["check", "--file"]).arg(&bad).output().unwrap();
    let _ = std::fs::remove_file(&bad);
    assert!(!haproxy.status.success(), "HAProxy accepted an unresolvable server");
    let err = String::from_utf8_lossy(&ballast.stderr);
    assert!(!ballast.status.success() && err.contains("could not resolve address 'no-such-host.invalid'"), "{err}");
}

/// Each backend's server status (`pxname/svname` → `UP`, `DOWN`, ...) from a stats page's CSV.
fn server_states(port: u16) -> std::collections::BTreeMap<String, String> {
    let out = Command::new("curl").args(["-s", "-m", "5"]).arg(format!("http://127.0.0.1:{port}/stats;csv")).output().expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f.len() > 17 && f[0].starts_with('r') && f[1] == "s1").then(|| (f[0].to_string(), f[17].to_string()))
        })
        .collect()
}

/// `http-check send` and the `http-check expect` forms of 2.6 (status lists and ranges,
/// regular expressions on the status and the body, negation, options before the match):
/// the same servers pass in both.
#[test]
fn health_checks_as_haproxy() {
    if !have_haproxy() {
        return;
    }
    let cases: [(&str, &str, &str); 12] = [
        ("r1", "option httpchk GET /?st=302\n    http-check expect status 200-399", "UP"),
        ("r2", "option httpchk GET /?st=404\n    http-check expect status 200-399", "DOWN"),
        ("r3", "option httpchk GET /?st=302\n    http-check expect status 200,302", "UP"),
        ("r4", "option httpchk GET /?st=404\n    http-check expect ! status 500-599", "UP"),
        ("r5", "option httpchk\n    http-check send meth GET uri /?st=404\n    http-check expect status 404", "UP"),
        (
            "r6",
            "option httpchk\n    http-check send meth GET uri /?st=204 ver HTTP/1.1 hdr Host check.example\n    http-check expect comment \"no content\" status 204",
            "UP",
        ),
        ("r7", "option httpchk GET /?st=503", "DOWN"),
        ("r8", "option httpchk GET /?st=302\n    http-check expect rstatus ^3[0-9]+$", "UP"),
        ("r9", "option httpchk GET /?st=404\n    http-check expect rstatus ^(2|3)", "DOWN"),
        ("ra", "option httpchk GET /?st=200&tag=abc123\n    http-check expect rstring tag=[a-c]+[0-9]{3}", "UP"),
        ("rb", "option httpchk GET /?st=200\n    http-check expect ! rstring st=2[0-9][0-9]", "DOWN"),
        ("rc", "option httpchk GET /?st=200\n    http-check expect rstring nowhere-[0-9]", "DOWN"),
    ];
    let echo = http_backend::start_echo("s1");
    let cfg = |port: u16| {
        let mut c = format!("{HEAD}listen stats\n    bind 127.0.0.1:{port}\n    stats enable\n    stats uri /stats\n");
        for (name, check, _) in &cases {
            c.push_str(&format!("backend {name}\n    {check}\n    server s1 {} check inter 200 rise 1 fall 1\n", echo.addr));
        }
        c
    };
    let (pb, ph) = (free_port(), free_port());
    let _ballast = start_proxy(&cfg(pb));
    let _haproxy = start_haproxy(&cfg(ph), ph);
    let want: std::collections::BTreeMap<String, String> =
        cases.iter().map(|(n, _, st)| (n.to_string(), st.to_string())).collect();
    // HAProxy shows servers UP until their first check: wait for its verdicts, then ballast's.
    let haproxy = common::eventually("HAProxy's check verdicts", std::time::Duration::from_secs(15), || {
        let s = server_states(ph);
        (s == want).then_some(s)
    });
    let ballast = common::eventually("ballast's check verdicts", std::time::Duration::from_secs(15), || {
        let s = server_states(pb);
        (s == haproxy).then_some(s)
    });
    println!("{ballast:?}");
}

/// One GET with curl: (status, body) or None when refused.
fn get(port: u16, path: &str) -> (Option<u16>, String) {
    let s = fetch(port, path, &[], false);
    (s.status, s.body.trim().to_string())
}

/// `maxconn` on servers: round robin skips a full server for one with a free slot, and a
/// request waits in the backend's queue only when all are full, as HAProxy does (ballast
/// queued on the busy server while the other was idle, and answered 503 after `timeout
/// queue`). Requests: A slow (holds s1's only slot for 1 s), then B and C: s2 serves both.
#[test]
fn full_servers_are_skipped_and_the_backend_queue_is_shared_as_haproxy() {
    if !have_haproxy() {
        return;
    }
    let (s1, s2) = (http_backend::start("s1"), http_backend::start("s2"));
    let cfg = |port: u16| {
        format!(
            "{HEAD}    timeout queue 300ms\nlisten web\n    bind 127.0.0.1:{port}\n    balance roundrobin\n    server s1 {} maxconn 1\n    server s2 {} maxconn 1\n",
            s1.addr, s2.addr
        )
    };
    let (pb, ph) = (free_port(), free_port());
    let _ballast = start_proxy(&cfg(pb));
    let _haproxy = start_haproxy(&cfg(ph), ph);
    let run = |port: u16| {
        let slow = std::thread::spawn(move || get(port, "/slow"));
        // A is on its way (it holds s1 for a second; nothing here depends on how long).
        std::thread::sleep(std::time::Duration::from_millis(200));
        let b = get(port, "/");
        let c = get(port, "/");
        let a = slow.join().unwrap();
        let who = |(st, body): (Option<u16>, String)| (st, body.split_whitespace().next().unwrap_or("").to_string());
        [who(a), who(b), who(c)]
    };
    let want = run(ph);
    let got = run(pb);
    println!("HAProxy {want:?}, ballast {got:?}");
    assert_eq!(got, want, "ballast (left) vs HAProxy (right)");
    assert!(want.iter().all(|(st, _)| *st == Some(200)), "{want:?}");
}

/// `econ`, `wretr`, `wredis` for each server and the backend, from a stats page's CSV.
fn retry_counters(port: u16) -> Vec<String> {
    let out = Command::new("curl").args(["-s", "-m", "5"]).arg(format!("http://127.0.0.1:{port}/stats;csv")).output().expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("web,") && !l.starts_with("web,FRONTEND"))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            format!("{} econ={} wretr={} wredis={}", f[1], f[13], f[15], f[16])
        })
        .collect()
}

/// Retries after a refused connection, with and without `option redispatch`: the same
/// answers, the same servers tried, and the same counters (a request's connection error
/// counted once, when it gives up; a retry elsewhere counted as a redispatch only).
#[test]
fn retries_and_redispatch_as_haproxy() {
    if !have_haproxy() {
        return;
    }
    let live = http_backend::start("live");
    let dead = free_port();
    for option in ["option redispatch", "no option redispatch"] {
        let cfg = |port: u16| {
            format!(
                "{HEAD}    retries 2\n    {option}\nlisten web\n    bind 127.0.0.1:{port}\n    stats uri /stats\n    balance roundrobin\n    server dead 127.0.0.1:{dead}\n    server live {}\n",
                live.addr
            )
        };
        let (pb, ph) = (free_port(), free_port());
        let _ballast = start_proxy(&cfg(pb));
        let _haproxy = start_haproxy(&cfg(ph), ph);
        let run = |port: u16| {
            let statuses: Vec<Option<u16>> = (0..4).map(|_| get(port, "/").0).collect();
            (statuses, retry_counters(port))
        };
        let want = run(ph);
        let got = run(pb);
        println!("{option}: {want:?}");
        assert_eq!(got, want, "{option}: ballast (left) vs HAProxy (right)");
    }
}

/// Rows of a stats page's CSV as (pxname/svname) → column → value.
fn csv_rows(port: u16, path: &str) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> {
    let out = Command::new("curl").args(["-s", "-m", "5"]).arg(format!("http://127.0.0.1:{port}{path}")).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let header: Vec<String> =
        lines.next().unwrap_or("").trim_start_matches("# ").split(',').map(str::to_string).collect();
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let row = header.iter().zip(&f).map(|(h, v)| (h.clone(), v.to_string())).collect();
            (format!("{}/{}", f[0], f.get(1).unwrap_or(&"")), row)
        })
        .collect()
}

/// The `;csv` stats as HAProxy 2.6 fills them, for the columns monitoring reads: status
/// (an empty backend is UP), weights (the backend's without idle backups), `slim` (a
/// backend's default fullconn), check code and health, counters filled with 0 rather
/// than left empty, and addresses, cookies and algorithms only with `stats show-legends`.
#[test]
fn stats_csv_as_haproxy() {
    if !have_haproxy() {
        return;
    }
    let web = http_backend::start("w");
    // Ports: the frontend, the stats page, the stats page with legends, a scoped page.
    let cfg = |[fe, stats, legends, scoped]: [u16; 4]| {
        format!(
            "{HEAD}frontend fe\n    bind 127.0.0.1:{fe}\n    maxconn 500\n    default_backend web\n\
             listen stats\n    bind 127.0.0.1:{stats}\n    stats uri /stats\n\
             listen legends\n    bind 127.0.0.1:{legends}\n    stats uri /stats\n    stats show-legends\n\
             listen scoped\n    bind 127.0.0.1:{scoped}\n    stats uri /stats\n    stats scope web\n    stats scope .\n\
             backend web\n    balance roundrobin\n    cookie SRV insert indirect nocache\n    option httpchk GET /\n\
             server a {} check inter 200 weight 3 cookie a maxconn 10\n    server b {} check inter 200 weight 2 cookie b\n    server c {} check inter 200 backup\n\
             backend empty\n",
            web.addr, web.addr, web.addr
        )
    };
    let pb = [free_port(), free_port(), free_port(), free_port()];
    let ph = [free_port(), free_port(), free_port(), free_port()];
    let _ballast = start_proxy(&cfg(pb));
    let _haproxy = start_haproxy(&cfg(ph), ph[0]);
    for ports in [ph, pb] {
        common::eventually("every server checked", std::time::Duration::from_secs(15), || {
            let rows = csv_rows(ports[1], "/stats;csv");
            ["web/a", "web/b", "web/c"]
                .iter()
                .all(|s| rows.get(*s).is_some_and(|r| r["check_status"] == "L7OK"))
                .then_some(())
        });
        for _ in 0..3 {
            let r = get(ports[0], "/");
            assert_eq!(r.0, Some(200), "{} {r:?}", if ports == ph { "HAProxy" } else { "ballast" });
        }
    }
    // (`connect`/`reuse` differ by design: under `http-reuse safe` ballast may send a first
    // request that it could resend itself on an idle connection; see the proxy's README.)
    let columns = [
        "status", "weight", "uweight", "act", "bck", "slim", "stot", "lbtot", "req_tot", "conn_tot",
        "hrsp_2xx", "dresp", "eresp", "econ", "qcur", "qmax", "check_status", "check_code", "check_health",
        "addr", "cookie", "algo", "comp_in", "wrew", "eint", "-", "iid", "sid", "type",
    ];
    for (page, which) in [("without legends", 1), ("with show-legends", 2)] {
        let pick = |ports: [u16; 4]| {
            let rows = csv_rows(ports[which], "/stats;csv");
            rows.into_iter()
                .filter(|(k, _)| k.starts_with("web/") || k.starts_with("empty/") || k == "fe/FRONTEND")
                .map(|(k, r)| {
                    let kept: Vec<String> = columns
                        .iter()
                        .map(|c| {
                            let v = r.get(*c).cloned().unwrap_or_default();
                            format!("{c}={v}")
                        })
                        .collect();
                    (k, kept)
                })
                .collect::<Vec<_>>()
        };
        // HAProxy marks a check in progress ("* L7OK", code 0): read again until none is.
        let want = common::eventually("HAProxy's stats between checks", std::time::Duration::from_secs(10), || {
            let w = pick(ph);
            (!w.iter().any(|(_, r)| r.iter().any(|c| c.starts_with("check_status=*")))).then_some(w)
        });
        let got = pick(pb);
        for ((kw, w), (kg, g)) in want.iter().zip(&got) {
            assert_eq!(kg, kw);
            assert_eq!(g, w, "{page}: {kw}: ballast (left) vs HAProxy (right)");
        }
        assert_eq!(got.len(), want.len(), "{page}: rows");
    }
    // `stats scope`: only the proxies named (and `.`, the page's own).
    let scoped = |ports: [u16; 4]| csv_rows(ports[3], "/stats;csv").into_keys().collect::<Vec<_>>();
    assert_eq!(scoped(pb), scoped(ph), "stats scope: ballast (left) vs HAProxy (right)");
    assert!(scoped(ph).iter().all(|k| k.starts_with("web/") || k.starts_with("scoped/")), "{:?}", scoped(ph));
}

/// One line to a stats socket; the whole answer.
fn socket_command(path: &std::path::Path, line: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    s.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The runtime API's weight commands and `;` chaining answer as HAProxy's: `get weight`,
/// `set weight` absolute and as a percentage of the configured weight, unknown servers,
/// an empty line after each command's answer.
#[test]
fn runtime_weights_and_chaining_as_haproxy() {
    if !have_haproxy() {
        return;
    }
    let web = http_backend::start("w");
    let dir = std::env::temp_dir();
    let (pb, ph) = (free_port(), free_port());
    let sock = |port: u16| dir.join(format!("ballast-rt-{port}.sock"));
    let cfg = |port: u16| {
        format!(
            "global\n    stats socket {} level admin\n{HEAD}listen web\n    bind 127.0.0.1:{port}\n    server a {} weight 10\n    server b {} weight 3\n",
            sock(port).display(),
            web.addr,
            web.addr
        )
    };
    let _ballast = start_proxy(&cfg(pb));
    let _haproxy = start_haproxy(&cfg(ph), ph);
    for port in [pb, ph] {
        common::eventually("the stats socket", std::time::Duration::from_secs(10), || sock(port).exists().then_some(()));
    }
    for line in [
        "get weight web/a",
        "set weight web/a 50%;get weight web/a",
        "set weight web/a 300%;get weight web/a",
        "set server web/a weight 7",
        "get weight web/a;get weight web/zz",
        "set weight web/b 15%;get weight web/b",
        "set weight web/zz 5",
    ] {
        let want = socket_command(&sock(ph), line);
        let got = socket_command(&sock(pb), line);
        assert_eq!(got, want, "{line:?}: ballast (left) vs HAProxy (right)");
    }
    // `show stat <iid> <type> <sid>` filters: the same rows in both.
    let rows = |out: String| -> Vec<String> {
        out.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).map(|l| l.split(',').take(2).collect::<Vec<_>>().join("/")).collect()
    };
    for line in ["show stat -1 4 -1", "show stat -1 1 -1", "show stat -1 2 -1", "show stat 1 4 2", "show stat -1 6 -1"] {
        let want = rows(socket_command(&sock(ph), line));
        let got = rows(socket_command(&sock(pb), line));
        assert_eq!(got, want, "{line:?}: ballast (left) vs HAProxy (right)");
    }
    for line in std::iter::empty::<&str>() {
        let want = socket_command(&sock(ph), line);
        let got = socket_command(&sock(pb), line);
        assert_eq!(got, want, "{line:?}: ballast (left) vs HAProxy (right)");
    }
    for port in [pb, ph] {
        let _ = std::fs::remove_file(sock(port));
    }
}

/// `show servers state` answers as HAProxy's (every column but the seconds since the
/// last change): servers up, down, without a check, disabled in the config with and
/// without one, put in maintenance and drain at run time, with a forced `id` (the ids
/// after it as HAProxy numbers them) and a host name; one backend, an unknown one. And
/// `show info`'s TLS counters after three TLS connections.
#[test]
fn servers_state_and_tls_info_as_haproxy() {
    if !have_haproxy() {
        return;
    }
    let web = http_backend::start("w");
    let dir = std::env::temp_dir().join(format!("ballast-sbs-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pem = common::l7::make_cert(&dir, "state.test");
    let ports = |_: u8| [free_port(), free_port(), free_port()];
    let (pb, ph) = (ports(0), ports(1));
    let sock = |port: u16| dir.join(format!("rt-{port}.sock"));
    let w = web.addr;
    let cfg = |p: [u16; 3]| {
        format!(
            "global\n    stats socket {sock} level admin\n{HEAD}\
             listen web\n    bind 127.0.0.1:{p0}\n    option httpchk GET /\n\
             \x20   server a {w} weight 10 check inter 300ms\n    server b 127.0.0.1:1 weight 3 check inter 300ms\n\
             \x20   server c {w} backup disabled\n    server d localhost:{wp} id 7\n\
             \x20   server e {w} check inter 300ms disabled\n    server f {w}\n    server g {w} check inter 300ms\n    server h {w}\n\
             listen tcpw\n    mode tcp\n    bind 127.0.0.1:{p1}\n    server t {w} check inter 300ms\n\
             listen tlsw\n    bind 127.0.0.1:{p2} ssl crt {pem}\n    server s {w}\n",
            sock = sock(p[0]).display(),
            p0 = p[0],
            p1 = p[1],
            p2 = p[2],
            wp = w.port(),
            pem = pem.display(),
        )
    };
    let _ballast = start_proxy(&cfg(pb));
    let _haproxy = start_haproxy(&cfg(ph), ph[0]);
    for p in [pb, ph] {
        common::eventually("the stats socket", std::time::Duration::from_secs(10), || sock(p[0]).exists().then_some(()));
        socket_command(&sock(p[0]), "set server web/f state maint;set server web/g state drain;set server web/h state drain");
    }
    // Without the seconds-since-change column (the two started at different moments).
    let state = |p: [u16; 3], line: &str| -> String {
        socket_command(&sock(p[0]), line)
            .lines()
            .map(|l| {
                let mut f: Vec<&str> = l.split(' ').collect();
                if f.len() > 10 && !l.starts_with('#') {
                    f[9] = "T";
                }
                f.join(" ")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    // The checks settle (b fails 3 times, the others pass twice) within a few seconds.
    let settled = common::eventually("the same servers state", std::time::Duration::from_secs(15), || {
        let (b, h) = (state(pb, "show servers state"), state(ph, "show servers state"));
        (b == h).then_some(h)
    });
    assert!(settled.contains(" web 7 d 127.0.0.1 ") && settled.contains(" localhost "), "{settled}");
    // A checked server put in maintenance keeps its last check result, loses its health.
    for p in [pb, ph] {
        socket_command(&sock(p[0]), "set server web/a state maint");
    }
    for line in ["show servers state web", "show servers state tcpw", "show servers state nope"] {
        assert_eq!(state(pb, line), state(ph, line), "{line:?}: ballast (left) vs HAProxy (right)");
    }
    // Three TLS connections (curl, a full handshake each), then the counters.
    for p in [pb, ph] {
        for _ in 0..3 {
            let o = Command::new("curl").args(["-sk", "-o", "/dev/null", "-m", "10"]).arg(format!("https://127.0.0.1:{}/", p[2])).output().unwrap();
            assert!(o.status.success(), "curl https {}", p[2]);
        }
    }
    let info = |p: [u16; 3]| -> std::collections::BTreeMap<String, String> {
        socket_command(&sock(p[0]), "show info")
            .lines()
            .filter_map(|l| l.split_once(": "))
            .filter(|(k, _)| k.contains("Ssl"))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let (ib, ih) = (info(pb), info(ph));
    assert_eq!(ib.keys().collect::<Vec<_>>(), ih.keys().collect::<Vec<_>>(), "the TLS fields of show info");
    for k in ["CumSslConns", "CurrSslConns", "MaxSslConns", "SslBackendKeyRate", "SslCacheLookups"] {
        assert_eq!(ib[k], ih[k], "{k}: ballast (left) vs HAProxy (right)");
    }
    assert_eq!(ib["CumSslConns"], "3");
    for p in [pb, ph] {
        let _ = std::fs::remove_file(sock(p[0]));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `balance source`, `uri` (and its options) and `hdr(...)`, map-based and consistent,
/// with each hash function and explicit server ids: every request lands on the same
/// server in ballast as in HAProxy, so persistence by hashing survives a migration.
#[test]
fn hash_balancing_as_haproxy() {
    if !have_haproxy() {
        return;
    }
    let servers: Vec<_> = ["s1", "s2", "s3"].iter().map(|n| http_backend::start(n)).collect();
    let cases: [(&str, &str); 10] = [
        ("source map", "balance source"),
        ("source consistent", "balance source\n    hash-type consistent"),
        ("uri map", "balance uri"),
        ("uri consistent djb2", "balance uri whole\n    hash-type consistent djb2"),
        ("uri depth len wt6", "balance uri depth 2 len 12\n    hash-type map-based wt6 avalanche"),
        ("uri path-only crc32", "balance uri path-only\n    hash-type consistent crc32"),
        ("hdr", "balance hdr(x-user)"),
        ("hdr domain consistent", "balance hdr(host) use_domain_only\n    hash-type consistent"),
        ("ids consistent", "balance uri\n    hash-type consistent\n    # ids"),
        ("weights map", "balance uri\n    # weights"),
    ];
    let cfg = |ports: &[u16]| {
        let mut c = HEAD.to_string();
        for ((name, lines), port) in cases.iter().zip(ports) {
            let params: [&str; 3] = match *name {
                "ids consistent" => ["id 7", "", "id 1"],
                "weights map" | "source map" => ["weight 1", "weight 2", "weight 3"],
                _ => ["", "", ""],
            };
            c.push_str(&format!("listen {}\n    bind 127.0.0.1:{port}\n    {lines}\n", name.replace(' ', "_")));
            for ((n, b), p) in ["s1", "s2", "s3"].iter().zip(&servers).zip(params) {
                c.push_str(&format!("    server {n} {} {p}\n", b.addr));
            }
        }
        c
    };
    let pb: Vec<u16> = cases.iter().map(|_| free_port()).collect();
    let ph: Vec<u16> = cases.iter().map(|_| free_port()).collect();
    let _ballast = start_proxy(&cfg(&pb));
    let _haproxy = start_haproxy(&cfg(&ph), ph[0]);
    let paths: Vec<String> = (0..30).map(|i| format!("/d{}/p{}/item{}?q={}", i % 4, i % 7, i, i * 31)).collect();
    for (i, (name, _)) in cases.iter().enumerate() {
        let requests: Vec<(String, Vec<String>)> = match *name {
            n if n.starts_with("source") => (2..32)
                .map(|h| ("/".to_string(), vec!["--interface".to_string(), format!("127.0.0.{h}")]))
                .collect(),
            n if n.starts_with("hdr domain") => (0..30)
                .map(|k| ("/".to_string(), vec!["-H".to_string(), format!("Host: www.site{k}.example:8080")]))
                .collect(),
            n if n.starts_with("hdr") => (0..30)
                .map(|k| ("/".to_string(), vec!["-H".to_string(), format!("X-User: user{k}, other")]))
                .collect(),
            // Absolute-form targets: path-only hashes their path, not scheme and host.
            n if n.contains("path-only") => paths
                .iter()
                .map(|p| {
                    let args = ["--request-target", &format!("http://example.com{p}"), "-H", "Host: example.com"];
                    ("/".to_string(), args.iter().map(|a| a.to_string()).collect())
                })
                .collect(),
            _ => paths.iter().map(|p| (p.clone(), Vec::new())).collect(),
        };
        let run = |port: u16| {
            requests
                .iter()
                .map(|(path, args)| {
                    let a: Vec<&str> = args.iter().map(String::as_str).collect();
                    fetch(port, path, &a, false).body.split_whitespace().next().unwrap_or("").to_string()
                })
                .collect::<Vec<_>>()
        };
        let want = run(ph[i]);
        let got = run(pb[i]);
        let spread: std::collections::BTreeSet<&String> = want.iter().collect();
        println!("{name}: HAProxy used {spread:?}");
        assert_eq!(got, want, "{name}: ballast (left) vs HAProxy (right)");
        assert!(spread.len() > 1, "{name}: the requests should spread: {want:?}");
    }
}
