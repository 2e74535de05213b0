#![no_main]
// The L4 config (TOML) parser and validator: errors, never panics.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ballast_l4::config::L4Config::parse(&String::from_utf8_lossy(data));
});
