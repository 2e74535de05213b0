#![no_main]
// HTTP/1 heads and chunked bodies come from clients and servers: any bytes, no panic;
// parsed ranges stay inside the head; the chunked scanner never claims more bytes than
// it was given, and feeding the same bytes whole or split gives the same result.
use ballast_l7::http1::{parse_request, parse_response, Chunked};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(h)) = parse_request(data) {
        assert!(h.len <= data.len());
        for f in &h.fields {
            assert!(f.name.end <= h.len && f.value.end <= h.len);
        }
        assert!(h.target.end <= h.len);
    }
    if let Ok(Some(r)) = parse_response(data, b"GET") {
        assert!(r.len <= data.len() && r.reason.end <= r.len);
    }
    let mut whole = Chunked::default();
    let mut spans = Vec::new();
    let all = whole.feed(data, Some(&mut spans));
    if let Ok(n) = all {
        assert!(n <= data.len());
        assert!(spans.iter().all(|s| s.end <= n));
    }
    let split = data.len() / 2;
    let mut parts = Chunked::default();
    let first = parts.feed(&data[..split], None);
    let result = match first {
        Ok(n) if n < split => Ok(n),
        Ok(n) => parts.feed(&data[split..], None).map(|m| n + m),
        Err(e) => Err(e),
    };
    assert_eq!(all.map(|_| whole.done()).ok(), result.map(|_| parts.done()).ok());
});
