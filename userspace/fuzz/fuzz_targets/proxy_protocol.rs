#![no_main]
// PROXY protocol headers come from the network: any bytes, no panic, and a parsed
// header never claims more bytes than it was given.
use ballast_l7::proxy_protocol::{parse, Parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Parse::Done { len, .. } = parse(data) {
        assert!(len <= data.len());
    }
});
