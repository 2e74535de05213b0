#![no_main]
// The HAProxy config parser must turn any input into diagnostics, never a panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = ballast_l7::haproxy::parse("fuzz.cfg", &text);
    // A config that parses must also check its references without panicking.
    if let Some(c) = parsed.config {
        for p in &c.proxies {
            let view = ballast_l7::route::RequestView { host: Some("example.com"), path: "/" };
            let _ = ballast_l7::route::backend_for(p, &view);
        }
    }
});
