//! The LB API and CLI on a cluster of real agents (`s1`, `s2` as LB devices, `s3` a
//! witness): devices and ranges, groups placed on the least loaded devices, backends
//! changed by read-modify-write, VIP assignment, events, blocking queries, a tenant's
//! token confined to its account, bad input answered 4xx with nothing applied, and
//! seed 004's LB01 configuration imported verbatim.
mod common;

use std::{process::Command, time::Duration};

use common::cluster::{eventually, get, http, http_with, Cluster, Reply};

const LIMIT: Duration = Duration::from_secs(30);

fn ballast(api: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(args)
        .args(["--http-addr", api])
        .env("CONSUL_HTTP_TOKEN", "root-secret")
        .output()
        .expect("ballast");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn ok(api: &str, args: &[&str]) -> String {
    let (success, text) = ballast(api, args);
    assert!(success, "ballast {args:?}: {text}");
    text
}

const ROOT: &str = "X-Consul-Token: root-secret";

fn call(addr: &str, method: &str, path: &str, body: &str) -> Reply {
    http_with(addr, method, path, body.as_bytes(), Some(ROOT), LIMIT).unwrap()
}

#[test]
fn devices_groups_vips_and_tenants() {
    let acl = r#", "acl": { "enabled": true, "default_policy": "deny", "tokens": { "initial_management": "root-secret" } }"#;
    let c = Cluster::servers("lbapi", 3, acl);
    let leader = c.leader(LIMIT);
    let api = c.agents.iter().find(|a| a.addr != leader).unwrap().addr.clone();

    // Devices with seed 004's ranges; the third server is a witness.
    // No public interface: these agents run on the host, not in a namespace of their own,
    // so they must hold no address (the namespace tests serve VIPs).
    ok(&api, &["device", "put", "s1", "--range", "14.14.1.100-14.14.1.199"]);
    ok(&api, &["device", "put", "s2", "--range", "14.14.1.200-14.14.1.253"]);
    ok(&api, &["device", "put", "s3", "--witness"]);
    let list = ok(&api, &["device", "list"]);
    assert!(list.contains("14.14.1.100-14.14.1.199") && list.contains("s3"), "{list}");
    eventually("every device alive", LIMIT, || {
        let v = call(&api, "GET", "/v1/lb/devices", "").json();
        v.as_array()?.iter().all(|d| d["alive"] == true).then_some(())
    });

    // Groups: the first goes to the least loaded device, two VIPs go to two devices.
    let out = ok(
        &api,
        &[
            "group",
            "create",
            "acco01/web",
            "--listen",
            "80:http",
            "--backend",
            "172.16.0.1:80",
            "--backend",
            "172.16.0.2:80,weight=2",
            "--cookie",
            "SRV",
            "--maxconn",
            "32",
        ],
    );
    assert!(out.contains("vip 14.14.1.100") && out.contains("owner s1") && out.contains("epoch 1"), "{out}");
    let out = ok(
        &api,
        &[
            "group",
            "create",
            "acco02/app",
            "--listen",
            "8080:tunnel",
            "--backend",
            "172.16.0.3",
            "--vips",
            "2",
        ],
    );
    assert!(out.contains("14.14.1.101") && out.contains("14.14.1.200"), "{out}");

    // Backends: read-modify-write through the API (cas on the group's index).
    ok(&api, &["backend", "add", "acco01/web", "172.16.0.9:80", "--weight", "3"]);
    ok(&api, &["backend", "weight", "acco01/web", "172.16.0.1:80", "0"]);
    ok(&api, &["backend", "remove", "acco01/web", "172.16.0.2:80"]);
    let g = call(&api, "GET", "/v1/lb/group/acco01/web", "").json();
    let backends: Vec<String> = g["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| format!("{}:{}/{}", b["address"].as_str().unwrap(), b["port"], b["weight"]))
        .collect();
    assert_eq!(backends, ["172.16.0.1:80/0", "172.16.0.9:80/3"]);

    // A blocking query wakes on a change only.
    let index = call(&api, "GET", "/v1/lb/vips", "").index();
    let waiter = {
        let api = api.clone();
        std::thread::spawn(move || call(&api, "GET", &format!("/v1/lb/vips?index={index}&wait=20s"), ""))
    };
    std::thread::sleep(Duration::from_millis(300));
    ok(&api, &["vip", "assign", "14.14.1.100", "--to", "s2"]);
    let woke = waiter.join().unwrap();
    assert!(woke.index() > index);
    let vips = ok(&api, &["vip", "list"]);
    assert!(
        vips.lines().any(|l| l.starts_with("14.14.1.100") && l.contains("s2") && l.trim_end().ends_with('2')),
        "{vips}"
    );
    let events = ok(&api, &["events"]);
    assert!(events.contains("vip_moved group=acco01/web vip=14.14.1.100 from=s1 device=s2 epoch=2 reason=assigned by an operator"), "{events}");

    // Bad input: 4xx with the field named, and nothing applied.
    let before = call(&api, "GET", "/v1/lb/state", "").index();
    let group = |vips: &str| {
        format!(
            r#"{{"listeners": [{{"port": 80, "mode": "http"}}], "backends": [{{"address": "172.16.0.1", "port": 80}}]{vips}}}"#
        )
    };
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        ("PUT", "/v1/lb/group/acco01/x", group(r#", "vips": ["14.14.1.999"]"#), 400, "vips"),
        ("PUT", "/v1/lb/group/acco01/x", group(r#", "vips": ["14.14.2.1"]"#), 409, "in no device's range"),
        ("PUT", "/v1/lb/group/acco01/x", group(r#", "vips": ["14.14.1.101"]"#), 409, "is taken"),
        ("PUT", "/v1/lb/group/acco01/web?cas=1", group(""), 409, "cas: the group is at index"),
        ("PUT", "/v1/lb/group/acco01/x", r#"{"listeners": [{"port": 0, "mode": "http"}]}"#.into(), 400, "listeners[0].port"),
        ("PUT", "/v1/lb/group/acco01/x", r#"{"listeners": [{"port": 80, "mode": "http"}], "backends": [{"address": "172.16.0.1", "weight": 999}]}"#.into(), 400, "backends[0].weight"),
        ("PUT", "/v1/lb/group/acco01/x", r#"{"listeners": [{"port": 80, "mode": "warp"}]}"#.into(), 400, "bad request body"),
        ("PUT", "/v1/lb/group/Acco01/x", group(""), 400, "account"),
        ("PUT", "/v1/lb/device/s4", r#"{"ranges": [{"first": "14.14.1.150", "last": "14.14.1.160"}]}"#.into(), 400, "overlaps 14.14.1.100..14.14.1.199 of device s1"),
        ("PUT", "/v1/lb/device/s4", r#"{"ranges": [{"first": "14.14.9.9", "last": "14.14.9.1"}]}"#.into(), 400, "ranges[0].last"),
        ("PUT", "/v1/lb/vip/14.14.1.101?to=nope", String::new(), 404, "no device nope"),
        ("DELETE", "/v1/lb/device/s1", String::new(), 409, "still serves"),
        ("DELETE", "/v1/lb/group/acco09/none", String::new(), 404, "no group"),
        ("POST", "/v1/lb/groups", String::new(), 405, "method"),
        ("GET", "/v1/lb/nothing", String::new(), 404, "no such endpoint"),
    ];
    for (m, p, body, want, says) in &cases {
        let r = call(&api, m, p, body);
        assert_eq!(r.status, *want, "{m} {p}: {}", r.text());
        assert!(r.text().contains(says), "{m} {p}: {:?} should say {says:?}", r.text());
    }
    assert_eq!(call(&api, "GET", "/v1/lb/state", "").index(), before, "nothing applied");

    // A tenant's token sees and changes its account's groups only; devices need operator.
    let pol = br#"{"Name": "acco01", "Rules": "account \"acco01\" { policy = \"write\" }"}"#;
    assert_eq!(http_with(&api, "PUT", "/v1/acl/policy", pol, Some(ROOT), LIMIT).unwrap().status, 200);
    let r =
        http_with(&api, "PUT", "/v1/acl/token", br#"{"Policies": [{"Name": "acco01"}]}"#, Some(ROOT), LIMIT)
            .unwrap();
    let tenant = format!("X-Consul-Token: {}", r.json()["SecretID"].as_str().unwrap());
    let t =
        |m: &str, p: &str, body: &str| http_with(&api, m, p, body.as_bytes(), Some(&tenant), LIMIT).unwrap();
    let groups = t("GET", "/v1/lb/groups", "").json();
    let ids: Vec<&str> = groups.as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(ids, ["web"], "only acco01's");
    assert_eq!(t("GET", "/v1/lb/group/acco02/app", "").status, 403);
    assert_eq!(t("PUT", "/v1/lb/group/acco02/x", &group("")).status, 403);
    assert_eq!(t("GET", "/v1/lb/devices", "").status, 403);
    assert_eq!(t("PUT", "/v1/lb/device/s9", "{}").status, 403);
    assert_eq!(t("PUT", "/v1/lb/group/acco01/new", &group("")).status, 200);
    assert_eq!(get(&api, "/v1/lb/groups").unwrap().status, 200, "anonymous: default deny shows nothing");
    assert_eq!(get(&api, "/v1/lb/groups").unwrap().json(), serde_json::json!([]));

    // Seed 004's LB01 configuration, verbatim: its listen sections become groups whose
    // VIPs are the bind addresses (on s1, whose range holds them).
    ok(&api, &["group", "delete", "acco01/web"]);
    ok(&api, &["group", "delete", "acco02/app"]);
    let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/../l7/tests/fixtures/seed004-lb01.cfg");
    let out = ok(&api, &["import", "-f", seed]);
    assert!(
        out.contains("acco01/lb-cluster01-acco01")
            && out.contains("vip 14.14.1.100")
            && out.contains("owner s1"),
        "{out}"
    );
    assert!(out.contains("acco02/lb-cluster01-acco02") && out.contains("vip 14.14.1.101"), "{out}");
    assert!(out.contains("backend 172.16.0.4:80"), "{out}");
    let _ = http(&api, "GET", "/v1/lb/events", b"", LIMIT);
}
