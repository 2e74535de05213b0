#![no_main]
// Any bytes as a DNS query to the GSLB responder (UDP size and TCP size): an answer that
// fits the transport or none, never a panic.
use ballast_control::{
    gslb,
    state::lb::{Backend, DeviceSpec, GroupSpec, LbState, LbWrite, Listener, Mode, Protocol, VipRange},
};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn state() -> &'static LbState {
    static S: OnceLock<LbState> = OnceLock::new();
    S.get_or_init(|| {
        let mut s = LbState::default();
        let spec = DeviceSpec {
            name: "lb01".into(),
            ranges: vec![VipRange { first: "14.14.1.100".parse().unwrap(), last: "14.14.1.199".parse().unwrap() }],
            capacity: 100,
            ..Default::default()
        };
        s.apply(1, 0, &LbWrite::PutDevice(spec));
        let spec = GroupSpec {
            account: "acco01".into(),
            name: "web".into(),
            listeners: vec![Listener {
                port: 80,
                protocol: Protocol::Tcp,
                mode: Mode::Http,
                balance: None,
                cookie: None,
                check: None,
                maxconn: None,
                certs: vec![],
            }],
            backends: vec![Backend { address: "172.16.0.1".parse().unwrap(), port: 0, weight: 1, backup: false }],
            vip_count: 1,
            gateway: None,
        };
        s.apply(2, 0, &LbWrite::CreateGroup { spec, placement: vec![("14.14.1.100".parse().unwrap(), "lb01".into())] });
        s
    })
}

fuzz_target!(|data: &[u8]| {
    let alive = ["lb01".to_string()].into();
    for (max, cap) in [(512usize, 4096usize), (65535, 65535)] {
        if let Some(out) = gslb::respond(data, max, state(), &alive, "ballast", data.len()) {
            assert!(out.len() >= 12 && out.len() <= cap, "{} bytes", out.len());
        }
    }
});
