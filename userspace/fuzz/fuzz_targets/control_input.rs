#![no_main]
// Everything the control plane parses from outside: ACL rules, the agent config
// (JSON and HCL, and its warnings), /v1/txn bodies (Consul's case-insensitive keys), query strings and durations, and gossip packets (through the
// key ring and, once opened, a load report). Errors, never panics.
use ballast_control::{api, config, gossip, state::acl};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    match sel % 7 {
        0 => {
            let _ = acl::parse_rules(&text);
        }
        1 => {
            if let Ok(f) = config::FileConfig::parse(&text, "fuzz.json") {
                let _ = f.warnings();
                let _ = f.resolve(Some("n"));
            }
        }
        2 => {
            if let Ok(ops) = api::kv::parse_txn(rest) {
                let _ = ballast_control::state::kv::Write::Txn(ops).validate();
            }
        }
        3 => {
            let _ = api::query::parse_query(&text);
            let _ = ballast_control::duration::parse_duration(&text);
            let _ = api::query::percent_decode(&text, true);
        }
        4 => {
            let ring = gossip::keyring::Keyring::new(&["op+bPRe2ZDynNu2m7V8o1BdFp0L1swlvxzDqOiRWwP0=".into()])
                .expect("valid key");
            let _ = ring.open(rest);
            let _ = gossip::keyring::Keyring::default().open(rest);
        }
        5 => {
            let _ = postcard::from_bytes::<gossip::member::Report>(rest);
        }
        _ => {
            if let Ok(f) = config::FileConfig::parse(&text, "fuzz.hcl") {
                let _ = f.warnings();
                let _ = f.resolve(Some("n"));
            }
        }
    }
});
