//! The parser against the seed configurations (verbatim) and against broken input.
use std::time::Duration;

use super::{model::*, parse, parse_files, Level, Parsed};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn warnings(p: &Parsed) -> Vec<String> {
    p.diags.iter().filter(|d| d.level == Level::Warning).map(|d| format!("{}: {}", d.line, d.msg)).collect()
}

fn alerts(text: &str) -> Vec<String> {
    let p = parse("t.cfg", text);
    assert!(p.config.is_none() || p.alerts().count() == 0);
    p.alerts().map(|d| format!("{}: {}", d.line, d.msg)).collect()
}

#[test]
fn seed_004_single_lb_config_loads_with_legacy_timeouts_mapped() {
    let p = parse("seed004-haproxy.cfg", &fixture("seed004-haproxy.cfg"));
    let c = p.config.as_ref().expect("valid");
    let w = warnings(&p);
    assert!(
        w.iter()
            .any(|m| m
                .starts_with("21: 'contimeout' was removed in HAProxy 2.1; read as 'timeout connect 5000'")),
        "{w:?}"
    );
    assert!(w.iter().any(|m| m.starts_with("22: 'clitimeout'")), "{w:?}");
    assert!(w.iter().any(|m| m.starts_with("23: 'srvtimeout'")), "{w:?}");
    assert_eq!(c.global.maxconn, Some(4096));
    assert_eq!(c.global.user.as_deref(), Some("haproxy"));
    assert!(c.global.daemon);
    assert_eq!(c.global.logs.len(), 2);
    let px = c.proxy("apache-cluster").unwrap();
    assert_eq!(px.kind, ProxyKind::Listen);
    let s = &px.settings;
    assert_eq!(
        (s.mode, s.retries, s.redispatch, s.httplog, s.dontlognull, s.maxconn),
        (Mode::Http, 3, true, true, true, Some(2000))
    );
    assert!(!s.ignore_probes);
    assert_eq!(s.timeouts.connect, Some(Duration::from_millis(5000)));
    assert_eq!(s.timeouts.client, Some(Duration::from_millis(50000)));
    assert_eq!(s.timeouts.server, Some(Duration::from_millis(50000)));
    assert_eq!(s.balance, Balance::RoundRobin);
    assert_eq!(px.binds.len(), 1);
    assert_eq!(px.binds[0].addr, "0.0.0.0:8080".parse().unwrap());
    let names: Vec<(&str, u32)> = px.servers.iter().map(|s| (s.name.as_str(), s.maxconn)).collect();
    assert_eq!(names, [("apach01", 32), ("apach02", 32)]);
    assert_eq!(px.servers[0].addr, "192.168.56.254:80".parse().unwrap());
}

#[test]
fn seed_004_cluster_configs_load_with_duplicate_servers_renamed() {
    for (file, proxies) in [("seed004-lb01.cfg", 2), ("seed004-lb02.cfg", 1)] {
        let p = parse(file, &fixture(file));
        let c = p.config.as_ref().unwrap_or_else(|| panic!("{file}: {:?}", p.diags));
        assert_eq!(c.proxies.len(), proxies);
        for px in &c.proxies {
            let names: Vec<&str> = px.servers.iter().map(|s| s.name.as_str()).collect();
            assert_eq!(names, ["apache01", "apache01-2"], "{file}");
        }
        assert!(warnings(&p).iter().any(|w| w.contains("renamed 'apache01-2'")), "{file}");
    }
    let c = parse("lb01", &fixture("seed004-lb01.cfg")).config.unwrap();
    assert_eq!(c.proxies[1].binds[0].addr, "14.14.1.101:8080".parse().unwrap());
    assert_eq!(c.proxies[1].servers[1].addr, "172.16.0.4:80".parse().unwrap());
}

#[test]
fn seed_003_config_checks_cookies_and_stats() {
    let p = parse("seed003-haproxy.cfg", &fixture("seed003-haproxy.cfg"));
    assert!(warnings(&p).is_empty(), "{:?}", p.diags);
    let c = p.config.unwrap();
    let stats = c.proxy("stats").unwrap().stats.as_ref().unwrap();
    assert_eq!(stats.uri.as_deref(), Some("/haproxy_stats"));
    let fe = c.proxy("http-in").unwrap();
    assert_eq!(fe.default_backend.as_deref(), Some("servers"));
    let be = c.proxy("servers").unwrap();
    let chk = be.settings.httpchk.as_ref().unwrap();
    assert_eq!((chk.method.as_str(), chk.uri.as_str()), ("GET", "/health"));
    assert_eq!(chk.expect, Expect::Status { ranges: vec![(200, 200)], negate: false });
    let ck = be.settings.cookie.as_ref().unwrap();
    assert_eq!((ck.name.as_str(), ck.insert, ck.indirect, ck.nocache), ("SERVERID", true, true, true));
    assert!(be
        .servers
        .iter()
        .all(|s| s.check && s.inter == Duration::from_secs(2) && s.rise == 2 && s.fall == 3));
    assert_eq!(be.servers[2].cookie.as_deref(), Some("web3"));
}

const ROUTING: &str = r#"
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout queue 10s
    default-server inter 3s rise 3 fall 2

frontend fe
    bind 127.0.0.1:8080
    bind [::1]:8443 ssl crt /etc/ssl/a.pem crt /etc/ssl/b.pem alpn h2,http/1.1
    option forwardfor
    acl is_api path_beg /api
    acl host_b hdr(host) -i b.example
    acl host_b hdr_end(host) .b.example
    use_backend api if is_api !host_b
    use_backend bsite if host_b or is_api
    default_backend web

backend api
    balance leastconn
    server a1 10.0.0.1:80 check weight 10 maxconn 5 send-proxy-v2
    server a2 10.0.0.2:80 backup

backend bsite
    balance hdr(User-Agent)
    server b1 10.0.0.3:80

backend web
    balance random(3)
    http-check expect ! string maintenance
    option httpchk HEAD /ping HTTP/1.1
    server w1 10.0.0.4:80 check
"#;

#[test]
fn routing_tls_and_server_parameters() {
    let p = parse("r.cfg", ROUTING);
    let c = p.config.unwrap_or_else(|| panic!("{:?}", p.diags));
    let fe = c.proxy("fe").unwrap();
    assert_eq!(fe.binds.len(), 2);
    assert_eq!(fe.binds[1].tls_certs.len(), 2);
    assert_eq!(fe.binds[1].alpn, ["h2", "http/1.1"]);
    assert_eq!(fe.settings.forwardfor.as_deref(), Some("X-Forwarded-For"));
    assert_eq!(fe.acls.iter().filter(|a| a.name == "host_b").count(), 2);
    assert_eq!(
        fe.use_backends[0].cond.any_of,
        vec![vec![(false, "is_api".to_string()), (true, "host_b".to_string())]]
    );
    assert_eq!(fe.use_backends[1].cond.any_of.len(), 2);
    let api = c.proxy("api").unwrap();
    assert_eq!(api.settings.balance, Balance::LeastConn);
    let a1 = &api.servers[0];
    assert_eq!((a1.weight, a1.maxconn, a1.rise, a1.fall, a1.inter), (10, 5, 3, 2, Duration::from_secs(3)));
    assert_eq!(a1.send_proxy, Some(ProxyProtocol::V2));
    assert!(api.servers[1].backup);
    assert_eq!(api.settings.timeouts.queue, Some(Duration::from_secs(10)));
    assert_eq!(c.proxy("bsite").unwrap().settings.balance, Balance::Hdr("user-agent".into()));
    let web = c.proxy("web").unwrap();
    assert_eq!(web.settings.balance, Balance::Random(3));
    let chk = web.settings.httpchk.as_ref().unwrap();
    assert_eq!((chk.method.as_str(), chk.uri.as_str(), chk.version.as_str()), ("HEAD", "/ping", "HTTP/1.1"));
    assert_eq!(chk.expect, Expect::String { needle: "maintenance".into(), negate: true });
}

#[test]
fn http_reuse_defaults_to_safe_and_is_inherited() {
    let base = "defaults\n mode http\n timeout connect 1s\n timeout client 1s\n timeout server 1s\n";
    let reuse = |text: &str| {
        let p = parse("h.cfg", &format!("{base}{text}"));
        let c = p.config.unwrap_or_else(|| panic!("{:?}", p.diags));
        c.proxy("x").unwrap().settings.http_reuse
    };
    assert_eq!(reuse("listen x\n bind :80\n"), HttpReuse::Safe);
    assert_eq!(reuse("listen x\n bind :80\n http-reuse never\n"), HttpReuse::Never);
    assert_eq!(reuse("listen x\n bind :80\n http-reuse aggressive\n"), HttpReuse::Always);
    assert_eq!(reuse(" http-reuse always\nlisten x\n bind :80\n"), HttpReuse::Always);
}

#[test]
fn mistakes_are_alerts_with_their_line() {
    let base = "defaults\n mode http\n timeout connect 1s\n timeout client 1s\n timeout server 1s\n";
    let cases = [
        ("listen x\n bind :80\n balanse roundrobin\n", "8: unknown keyword 'balanse' in 'listen' section"),
        (
            "frontend f\n bind :80\n default_backend nope\n",
            "6: frontend 'f': default_backend 'nope' names no backend",
        ),
        (
            "listen x\n bind :80\n server s1 web1!:80\n",
            "8: server 's1': \"web1!\" is neither an IP address nor a host name",
        ),
        (
            "listen x\n bind :80\n cookie S rewrite\n",
            "8: 'cookie ... rewrite' is not supported by ballast (use insert)",
        ),
        (
            "listen x\n bind :80\n http-check expect rstring a(?=b)\n",
            "8: 'http-check expect rstring': \"a(?=b)\" is not a regular expression ballast can run",
        ),
        ("listen x\n bind :80\n balance url_param id\n", "8: 'balance url_param' is not supported"),
        (
            "listen x\n bind :80\n http-reuse sometimes\n",
            "8: 'http-reuse' expects never, safe, aggressive or always",
        ),
        (
            "listen x\n bind :80\nlisten x\n bind :81\n",
            "8: listen 'x' has the same name as the proxy declared at line 6",
        ),
        ("backend b\n bind :80\n", "7: 'bind' is not allowed in a backend"),
        ("listen x\n bind :80\n timeout client 5q\n", "8: 'timeout client': \"5q\": unknown time unit \"q\""),
        ("listen x\n bind :80\n server s 10.0.0.1:80 weight 300\n", "8: 'weight 300': must be 0..256"),
        ("listen x\n bind :80\n server s 10.0.0.1:80 chek\n", "8: unknown server parameter 'chek'"),
        ("listen x\n bind :80\n option httpchk \"GET\n", "8: parsing line: unmatched quote (\")"),
        (
            "frontend f\n mode tcp\n bind :80\n default_backend b\nbackend b\n server s 10.0.0.1:80\n",
            "6: frontend 'f' (mode Tcp) cannot use backend 'b' (mode Http)",
        ),
        (
            "frontend f\n bind :80\n use_backend b if nope\nbackend b\n",
            "6: frontend 'f': condition uses unknown acl 'nope'",
        ),
    ];
    for (text, want) in cases {
        let got = alerts(&format!("{base}{text}"));
        assert!(got.iter().any(|a| a.starts_with(want)), "for {text:?}: wanted {want:?}, got {got:?}");
    }
}

#[test]
fn known_but_unsupported_keywords_warn_and_still_load() {
    let p = parse(
        "w.cfg",
        "global\n tune.bufsize 32768\n chroot /x\ndefaults\n mode http\n timeout connect 1s\n timeout client 1s\n timeout server 1s\n option http-server-close\nlisten x\n bind :80\n http-request capture req.hdr(host) len 10\n compression algo gzip\n server s 10.0.0.1:80 slowstart 10s\n",
    );
    assert!(p.config.is_some(), "{:?}", p.diags);
    let w = warnings(&p);
    for (line, what) in [
        (2, "tune.bufsize"),
        (3, "chroot"),
        (9, "option http-server-close"),
        (12, "http-request capture"),
        (13, "compression"),
        (14, "slowstart"),
    ] {
        assert!(
            w.iter().any(|m| m.starts_with(&format!("{line}: ")) && m.contains(what)),
            "no warning for {what}: {w:?}"
        );
    }
}

#[test]
fn several_files_read_as_one() {
    let a = ("a.cfg".to_string(), "defaults\n mode http\n timeout connect 1s\n timeout client 1s\n timeout server 1s\nfrontend f\n bind :80\n default_backend b\n".to_string());
    let b = ("b.cfg".to_string(), "backend b\n server s 10.0.0.1:80\n".to_string());
    let p = parse_files(&[a.clone(), b]);
    assert!(p.config.is_some(), "{:?}", p.diags);
    let p = parse_files(&[a]);
    let d = p.alerts().next().unwrap();
    assert_eq!((d.file.as_str(), d.line), ("a.cfg", 6));
}

#[test]
fn mutated_configs_never_panic() {
    let seeds = [fixture("seed003-haproxy.cfg"), fixture("seed004-haproxy.cfg"), ROUTING.to_string()];
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let alphabet = b" \t\n#\"'\\:,()!{}-0123456789abcdefghijklmnopqrstuvwxyz";
    for i in 0..4000 {
        let mut b = seeds[i % seeds.len()].clone().into_bytes();
        for _ in 0..1 + rnd() % 10 {
            if b.is_empty() {
                break;
            }
            let at = rnd() as usize % b.len();
            match rnd() % 3 {
                0 => b[at] = alphabet[rnd() as usize % alphabet.len()],
                1 => {
                    b.remove(at);
                }
                _ => b.insert(at, alphabet[rnd() as usize % alphabet.len()]),
            }
        }
        let _ = parse("fuzz.cfg", &String::from_utf8_lossy(&b));
    }
}

#[test]
fn log_formats_are_one_or_the_other_the_last_wins() {
    let cfg = "defaults\n mode tcp\n option httplog\n option tcplog\nlisten a\n bind :1\n server s 10.0.0.1:1\nlisten b\n bind :2\n option httplog\n server s 10.0.0.1:1\nlisten c\n bind :3\n option http-ignore-probes\n no option tcplog\n server s 10.0.0.1:1\n";
    let p = parse("l.cfg", cfg);
    let c = p.config.expect("valid");
    let formats = |name: &str| {
        let s = &c.proxy(name).unwrap().settings;
        (s.tcplog, s.httplog, s.ignore_probes)
    };
    assert_eq!(formats("a"), (true, false, false));
    assert_eq!(formats("b"), (false, true, false));
    assert_eq!(formats("c"), (false, false, true));
}

/// TLS options a config asks for are honoured or refused, never ignored: a policy that
/// leaves nothing to serve, client-certificate verification and crt-list are ALERTs;
/// versions ballast cannot speak are left out with a WARNING.
#[test]
fn tls_options_are_honoured_or_refused() {
    let cfg = |global: &str, opts: &str| {
        format!(
            "global\n{global}defaults\n    mode http\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\n\
             listen web\n    bind :443 ssl crt /c.pem {opts}\n    server s1 127.0.0.1:80\n"
        )
    };
    let a = alerts(&cfg("", "ssl-max-ver TLSv1.1"));
    assert!(a.iter().any(|m| m.starts_with("8: bind: no TLS version left to serve")), "{a:?}");
    let a = alerts(&cfg("", "verify required ca-file /ca.pem"));
    assert!(a.iter().any(|m| m.contains("'verify required'") && m.contains("not supported")), "{a:?}");
    let a = alerts(&cfg("", "crt-list /list.txt"));
    assert!(a.iter().any(|m| m.contains("crt-list")), "{a:?}");
    let a = alerts(&cfg("", "ciphers RC4-MD5"));
    assert!(a.iter().any(|m| m.contains("selects no TLSv1.2 suite")), "{a:?}");
    let a = alerts(&cfg("    ssl-default-bind-options no-tlsv12 no-tlsv13\n", ""));
    assert!(a.iter().any(|m| m.contains("no TLS version left")), "{a:?}");
    let a = alerts(&cfg("    ssl-default-bind-options frobnicate\n", ""));
    assert!(a.iter().any(|m| m.contains("unknown ssl-default-bind-options option 'frobnicate'")), "{a:?}");

    let p = parse(
        "t.cfg",
        &cfg("    ssl-default-bind-options ssl-min-ver TLSv1.0 no-tls-tickets\n", "strict-sni"),
    );
    let c = p.config.as_ref().expect("valid");
    assert!(warnings(&p)
        .iter()
        .any(|w| w.contains("TLSv1.0, TLSv1.1 enabled by the configuration but not offered")));
    let policy = c.proxies[0].binds[0].tls_policy.as_ref().unwrap();
    assert!(!policy.tickets && policy.strict_sni);
    assert_eq!(policy.versions.len(), 2);
}

#[test]
fn server_tls_and_state_keywords_are_refused_not_ignored() {
    const HEAD: &str = "defaults\n mode http\n timeout connect 1s\n timeout client 1s\n timeout server 1s\nbackend b\n";
    // Each would change who is served, or send in clear what the config encrypts.
    for params in [
        "ssl verify none",
        "ssl verify required ca-file /etc/ssl/ca.pem sni str(x)",
        "check check-ssl",
        "check port 8080",
        "check addr 10.0.0.9",
        "track b2/s1",
        "maxqueue 10",
        "observe layer7 error-limit 5 on-error mark-down",
        "proto h2",
    ] {
        let a = alerts(&format!("{HEAD} server s 10.0.0.1:443 {params}\n"));
        assert!(!a.is_empty() && a.iter().all(|m| m.starts_with("7: ")), "{params}: {a:?}");
    }
    // Overrides of default-server are honoured.
    let p = parse("d.cfg", &format!("{HEAD} default-server check\n server s 10.0.0.1:80 no-check\n server t 10.0.0.2:80 disabled enabled\n"));
    let cfg = p.config.expect("loads");
    let servers = &cfg.proxies.iter().find(|b| b.name == "b").unwrap().servers;
    assert!(!servers[0].check && !servers[1].disabled, "{servers:?}");
}

#[test]
fn http_check_send_and_expect_forms() {
    let p = parse(
        "c.cfg",
        "defaults\n mode http\n timeout connect 1s\n timeout client 1s\n timeout server 1s\nbackend b\n option httpchk\n http-check send meth GET uri /health ver HTTP/1.1 hdr Host example.com body x=1\n http-check expect comment \"fine\" ! status 500-599,404\n server s 10.0.0.1:80 check\n",
    );
    let cfg = p.config.expect("loads");
    let chk = cfg.proxies.iter().find(|b| b.name == "b").unwrap().settings.httpchk.clone().unwrap();
    assert_eq!((chk.method.as_str(), chk.uri.as_str(), chk.version.as_str()), ("GET", "/health", "HTTP/1.1"));
    assert_eq!(chk.headers, vec![("Host".to_string(), "example.com".to_string())]);
    assert_eq!(chk.body, "x=1");
    assert_eq!(chk.expect, Expect::Status { ranges: vec![(500, 599), (404, 404)], negate: true });
    for bad in ["http-check expect status 200-99", "http-check expect ok-status L7OKC status 200", "http-check disable-on-404", "http-check expect rstatus (?<=x)2"] {
        let a = alerts(&format!("defaults\n mode http\nbackend b\n option httpchk\n {bad}\n server s 10.0.0.1:80 check\n"));
        assert!(!a.is_empty(), "{bad} accepted");
    }
}

#[test]
fn server_host_names_are_resolved_after_parsing() {
    let text = "defaults\n mode http\n timeout connect 1s\n timeout client 1s\n timeout server 1s\nbackend b\n server s localhost:8080\n";
    let parsed = parse("h.cfg", text);
    let s = &parsed.config.as_ref().expect("loads").proxies[0].servers[0];
    assert_eq!((s.host.as_deref(), s.addr.port()), (Some("localhost"), 8080));
    assert!(s.addr.ip().is_unspecified(), "not resolved by the parser");
    let resolved = parsed.resolve_hosts();
    let s = &resolved.config.expect("resolves").proxies[0].servers[0];
    assert!(s.addr.ip().is_loopback(), "{}", s.addr);
    let bad = parse("h.cfg", &text.replace("localhost", "no-such-host.invalid")).resolve_hosts();
    assert!(bad.config.is_none());
    let a: Vec<String> = bad.alerts().map(|d| d.to_string()).collect();
    assert!(a.iter().any(|m| m.contains("h.cfg:7") && m.contains("could not resolve address 'no-such-host.invalid'")), "{a:?}");
}
