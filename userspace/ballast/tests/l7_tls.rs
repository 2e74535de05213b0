//! TLS offload (`bind ... ssl crt ... alpn ...`) checked with real clients: openssl
//! s_client (SNI, ALPN, TLS 1.2/1.3, session resumption) and curl (HTTP/1.1 and HTTP/2
//! over TLS), against a backend the test starts.
mod common;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{free_port, http_backend, l7::make_cert, Child};

/// `openssl s_client ARGS` against the proxy, sending one request and reading until the
/// proxy closes (so TLS 1.3 session tickets, sent after the handshake, are received);
/// the transcript.
fn s_client(port: u16, args: &[&str]) -> String {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(["s_client", "-ign_eof", "-connect", &format!("127.0.0.1:{port}")])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().expect("openssl s_client");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn tls_offload_sni_alpn_versions_and_resumption() {
    let dir = std::env::temp_dir().join(format!("ballast-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let a = make_cert(&dir, "a.example");
    let b = make_cert(&dir, "b.example");
    let backend = http_backend::start("s1");
    let port = free_port();
    let cfg = format!(
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 10s\n    timeout server 10s\n\
         listen web\n    bind 127.0.0.1:{port} ssl crt {} crt {} alpn h2,http/1.1\n    option forwardfor\n    server s1 {}\n",
        a.display(),
        b.display(),
        backend.addr
    );
    let cfg_path = dir.join("haproxy.cfg");
    std::fs::write(&cfg_path, cfg).unwrap();
    let log = std::fs::File::create(dir.join("proxy.log")).unwrap();
    let _proxy = Child(
        Command::new(env!("CARGO_BIN_EXE_ballast"))
            .args(["proxy", "-f", cfg_path.to_str().unwrap()])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "proxy did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    // SNI picks the certificate; no SNI gets the first one.
    assert!(s_client(port, &["-servername", "b.example"]).contains("subject=CN = b.example"));
    assert!(s_client(port, &["-servername", "a.example"]).contains("subject=CN = a.example"));
    assert!(s_client(port, &["-noservername"]).contains("subject=CN = a.example"));
    // ALPN.
    assert!(s_client(port, &["-servername", "a.example", "-alpn", "h2"]).contains("ALPN protocol: h2"));
    assert!(s_client(port, &["-servername", "a.example", "-alpn", "http/1.1"])
        .contains("ALPN protocol: http/1.1"));
    // TLS 1.2 and 1.3.
    assert!(s_client(port, &["-servername", "a.example", "-tls1_2"]).contains("Protocol  : TLSv1.2"));
    assert!(s_client(port, &["-servername", "a.example", "-tls1_3"]).contains("TLSv1.3"));
    // Session resumption, both versions.
    for v in ["-tls1_2", "-tls1_3"] {
        let sess = dir.join(format!("sess{v}"));
        let first = s_client(port, &["-servername", "a.example", v, "-sess_out", sess.to_str().unwrap()]);
        assert!(first.contains("New,"), "{v}: {first}");
        let again = s_client(port, &["-servername", "a.example", v, "-sess_in", sess.to_str().unwrap()]);
        assert!(again.contains("Reused,"), "{v} not resumed: {again}");
    }
    // Real requests over TLS: HTTP/1.1 and HTTP/2 (ALPN), offloaded to a plain backend.
    let resolve = format!("a.example:{port}:127.0.0.1");
    let url = format!("https://a.example:{port}/");
    for (proto, want) in [("--http1.1", "HTTP/1.1 200"), ("--http2", "HTTP/2 200")] {
        let out = Command::new("curl")
            .args([
                "-s",
                "-i",
                "-m",
                "10",
                "--cacert",
                a.to_str().unwrap(),
                "--resolve",
                &resolve,
                proto,
                &url,
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with(want), "{proto}: {text}");
        assert!(text.contains("s1 xff=127.0.0.1"), "{proto}: {text}");
    }
    // h2load: HTTP/2 over TLS (ALPN h2), many streams per connection, no failure.
    let out = Command::new("h2load")
        .args(["-n", "2000", "-c", "4", "-m", "10", &format!("https://127.0.0.1:{port}/")])
        .output()
        .expect("h2load (nghttp2-client)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Application protocol: h2"), "{text}");
    assert!(text.contains("2000 succeeded, 0 failed, 0 errored"), "{text}");
    assert!(text.contains("status codes: 2000 2xx"), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}

/// What a TLS handshake came to: None when it failed, else (protocol, cipher).
fn handshake(port: u16, args: &[&str]) -> Option<(String, String)> {
    let out = s_client(port, args);
    let line = out.lines().find(|l| l.starts_with("New, "))?;
    // "New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384"
    let mut parts = line.trim_start_matches("New, ").split(", Cipher is ");
    let (proto, cipher) = (parts.next()?.to_string(), parts.next()?.trim().to_string());
    (cipher != "(NONE)").then_some((proto, cipher))
}

/// The TLS a configuration asks for, side by side with HAProxy 2.6 on the same config:
/// versions (`ssl-min-ver`, `ssl-max-ver`, `no-tlsv13`, `ssl-default-bind-options`),
/// TLS 1.2 ciphers and TLS 1.3 suites (on the bind line and as defaults), `curves` and
/// `strict-sni`. Every probe must come out the same through both: the handshake refused,
/// or the same protocol (and, where the config pins one, the same cipher).
#[test]
fn tls_versions_ciphers_and_sni_as_haproxy() {
    if !common::l7::have_haproxy() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("ballast-tlspol-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let a = make_cert(&dir, "a.example");
    let backend = http_backend::start("s1");
    // (global lines, bind options, probes: (s_client arguments, expected outcome)).
    type Probe = (&'static [&'static str], Option<(&'static str, Option<&'static str>)>);
    let tls12: Option<(&str, Option<&str>)> = Some(("TLSv1.2", None));
    let tls13: Option<(&str, Option<&str>)> = Some(("TLSv1.3", None));
    let cases: Vec<(&str, &str, Vec<Probe>)> = vec![
        ("", "ssl-min-ver TLSv1.3", vec![(&["-tls1_2"], None), (&["-tls1_3"], tls13)]),
        ("", "ssl-max-ver TLSv1.2", vec![(&["-tls1_3"], None), (&["-tls1_2"], tls12)]),
        ("", "no-tlsv13", vec![(&["-tls1_3"], None), (&["-tls1_2"], tls12)]),
        (
            "    ssl-default-bind-options ssl-min-ver TLSv1.3 no-tls-tickets\n",
            "",
            vec![(&["-tls1_2"], None), (&["-tls1_3"], tls13)],
        ),
        (
            "",
            "ciphers ECDHE-ECDSA-AES256-GCM-SHA384",
            vec![
                (&["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"], None),
                (&["-tls1_2"], Some(("TLSv1.2", Some("ECDHE-ECDSA-AES256-GCM-SHA384")))),
            ],
        ),
        (
            "    ssl-default-bind-ciphers ECDHE+AESGCM:!AES256\n",
            "",
            vec![
                (&["-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"], None),
                (&["-tls1_2"], Some(("TLSv1.2", Some("ECDHE-ECDSA-AES128-GCM-SHA256")))),
            ],
        ),
        (
            "    ssl-default-bind-ciphersuites TLS_CHACHA20_POLY1305_SHA256\n",
            "",
            vec![
                (&["-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256"], None),
                (&["-tls1_3"], Some(("TLSv1.3", Some("TLS_CHACHA20_POLY1305_SHA256")))),
            ],
        ),
        ("", "curves P-384", vec![(&["-groups", "X25519"], None), (&["-groups", "P-384"], tls13)]),
        (
            "",
            "strict-sni",
            vec![
                (&["-servername", "nope.example"], None),
                (&["-noservername"], None),
                (&["-servername", "a.example"], tls13),
            ],
        ),
    ];
    for (global, opts, probes) in cases {
        let (pb, ph) = (free_port(), free_port());
        let cfg = |port: u16| {
            format!(
                "global\n{global}defaults\n    mode http\n    timeout connect 1s\n    timeout client 10s\n    timeout server 10s\n\
                 listen web\n    bind 127.0.0.1:{port} ssl crt {} {opts}\n    server s1 {}\n",
                a.display(),
                backend.addr
            )
        };
        let _ballast = common::l7::start_proxy(&cfg(pb));
        let _haproxy = common::l7::start_haproxy(&cfg(ph), ph);
        for (args, want) in probes {
            let mut args = args.to_vec();
            if !args.iter().any(|a| a.contains("servername")) {
                args.extend(["-servername", "a.example"]);
            }
            let (b, h) = (handshake(pb, &args), handshake(ph, &args));
            let what = format!("[{}{opts}] s_client {}", global.trim(), args.join(" "));
            assert_eq!(b.as_ref().map(|x| &x.0), h.as_ref().map(|x| &x.0), "{what}: ballast vs HAProxy");
            match want {
                None => assert!(b.is_none(), "{what}: ballast must refuse, got {b:?}"),
                Some((proto, cipher)) => {
                    let (bp, bc) = b.clone().unwrap_or_else(|| panic!("{what}: ballast refused"));
                    assert_eq!(bp, proto, "{what}");
                    if let Some(c) = cipher {
                        assert_eq!(bc, c, "{what}: ballast's cipher");
                        assert_eq!(h.as_ref().map(|x| x.1.as_str()), Some(c), "{what}: HAProxy's cipher");
                    }
                }
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
