//! HPACK (RFC 7541), the header compression of HTTP/2: a decoder for the client's header
//! blocks (static and dynamic table, Huffman strings) and an encoder for responses.
//!
//! The encoder never indexes: every field goes as a literal "without indexing" (by the
//! static table's name where it has one), so the client's table size setting never
//! matters and no state is kept. Responses lose a few bytes to this; their fields come
//! from servers and seldom repeat exactly anyway.
use std::collections::VecDeque;

use bytes::Bytes;

/// The dynamic table size the decoder allows (SETTINGS_HEADER_TABLE_SIZE, left at the
/// protocol's default).
pub const TABLE_SIZE: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HpackError {
    #[error("header block ends in the middle of a field")]
    Truncated,
    #[error("integer too large")]
    Overflow,
    #[error("index {0} is in neither table")]
    BadIndex(usize),
    #[error("bad Huffman-coded string")]
    BadHuffman,
    #[error("dynamic table size update to {0}, above the allowed {TABLE_SIZE} or not first")]
    BadSizeUpdate(usize),
    #[error("header list larger than {0} bytes")]
    TooLarge(usize),
}

/// RFC 7541 Appendix A.
pub const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// Bit lengths of the Huffman codes of bytes 0-255 and EOS (256), RFC 7541 Appendix B.
/// The code is canonical (codes of one length are consecutive, in symbol order, and
/// shorter codes come first), so the lengths define it.
const HUFFMAN_LEN: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28,
    28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6,
    6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7,
    8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7,
    15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24,
    23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23,
    23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26,
    26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20,
    21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27,
    27, 27, 26, 30,
];

const MAX_LEN: usize = 30;

/// The canonical code's decoding tables: symbols sorted by code, and for each length the
/// first code of that length (left-aligned in 32 bits), and where its symbols start.
struct Canonical {
    sorted: [u16; 257],
    /// First code of each length, left-aligned in 32 bits; `u64` so that one past the
    /// last code (2^32) fits.
    limit: [u64; MAX_LEN + 2],
    first: [u32; MAX_LEN + 1],
    start: [u16; MAX_LEN + 1],
}

const fn canonical() -> Canonical {
    let mut c = Canonical {
        sorted: [0; 257],
        limit: [0; MAX_LEN + 2],
        first: [0; MAX_LEN + 1],
        start: [0; MAX_LEN + 1],
    };
    let mut n = 0;
    let mut code: u64 = 0; // the next code, left-aligned in 32 bits
    let mut len = 1;
    while len <= MAX_LEN {
        c.first[len] = code as u32;
        c.start[len] = n as u16;
        let mut sym = 0;
        while sym < 257 {
            if HUFFMAN_LEN[sym] as usize == len {
                c.sorted[n] = sym as u16;
                n += 1;
                code += 1 << (32 - len);
            }
            sym += 1;
        }
        // Codes shorter than or as long as `len` are all below this.
        c.limit[len] = code;
        len += 1;
    }
    c
}

static CANONICAL: Canonical = canonical();

/// The code of each symbol, right-aligned.
const fn codes() -> [u32; 257] {
    let mut out = [0u32; 257];
    let mut i = 0;
    while i < 257 {
        let sym = CANONICAL.sorted[i] as usize;
        let len = HUFFMAN_LEN[sym] as usize;
        let first_of_len = CANONICAL.first[len] >> (32 - len);
        out[sym] = first_of_len + (i as u32 - CANONICAL.start[len] as u32);
        i += 1;
    }
    out
}

static CODES: [u32; 257] = codes();

/// Decodes a Huffman-coded string (RFC 7541 §5.2): padding must be under 8 bits and
/// all ones; EOS must not appear.
pub fn huffman_decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), HpackError> {
    let mut bits: u64 = 0; // left-aligned at bit 63
    let mut have = 0usize;
    let mut i = 0;
    loop {
        while have <= 56 && i < src.len() {
            bits |= (src[i] as u64) << (56 - have);
            have += 8;
            i += 1;
        }
        if have == 0 {
            return Ok(());
        }
        let top = bits >> 32; // 32 bits, left-aligned
        let mut len = 5; // the shortest code
        while len <= MAX_LEN && top >= CANONICAL.limit[len] {
            len += 1;
        }
        if len > have {
            // What is left is shorter than the code it starts: it must be padding.
            let pad_mask = (1u64 << have) - 1;
            if have < 8 && i == src.len() && (bits >> (64 - have)) == pad_mask {
                return Ok(());
            }
            return Err(HpackError::BadHuffman);
        }
        if len > MAX_LEN {
            return Err(HpackError::BadHuffman);
        }
        let idx = CANONICAL.start[len] as u32 + ((top as u32 - CANONICAL.first[len]) >> (32 - len));
        let sym = CANONICAL.sorted[idx as usize];
        if sym == 256 {
            return Err(HpackError::BadHuffman);
        }
        out.push(sym as u8);
        bits <<= len;
        have -= len;
    }
}

/// Huffman-codes `src` (used by tests and fuzzing to produce client-like blocks).
pub fn huffman_encode(src: &[u8], out: &mut Vec<u8>) {
    let mut acc: u64 = 0;
    let mut n = 0;
    for &b in src {
        let len = HUFFMAN_LEN[b as usize] as usize;
        acc = (acc << len) | CODES[b as usize] as u64;
        n += len;
        while n >= 8 {
            n -= 8;
            out.push((acc >> n) as u8);
        }
    }
    if n > 0 {
        out.push(((acc << (8 - n)) as u8) | (0xff >> n));
    }
}

/// Reads an integer with an `prefix`-bit prefix (RFC 7541 §5.1) from `src[*pos..]`.
fn integer(src: &[u8], pos: &mut usize, prefix: u8) -> Result<usize, HpackError> {
    let mask = (1usize << prefix) - 1;
    let first = *src.get(*pos).ok_or(HpackError::Truncated)? as usize & mask;
    *pos += 1;
    if first < mask {
        return Ok(first);
    }
    let mut value = mask;
    let mut shift = 0;
    loop {
        let b = *src.get(*pos).ok_or(HpackError::Truncated)? as usize;
        *pos += 1;
        // Nothing in HTTP/2 needs more than 2^28 (a 4-byte continuation).
        if shift > 21 {
            return Err(HpackError::Overflow);
        }
        value += (b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
}

/// Writes `value` with a `prefix`-bit prefix; `first` holds the bits above the prefix.
pub fn write_integer(out: &mut Vec<u8>, first: u8, prefix: u8, value: usize) {
    let mask = (1usize << prefix) - 1;
    if value < mask {
        out.push(first | value as u8);
        return;
    }
    out.push(first | mask as u8);
    let mut rest = value - mask;
    while rest >= 0x80 {
        out.push((rest as u8 & 0x7f) | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// One decoded header field; values and names share the block's or the table's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderField {
    pub name: Bytes,
    pub value: Bytes,
}

pub struct Decoder {
    /// Newest first: index 62 is the front.
    table: VecDeque<HeaderField>,
    size: usize,
    max_size: usize,
    /// Largest decoded header list (names, values and 32 bytes each, as RFC 9113's
    /// SETTINGS_MAX_HEADER_LIST_SIZE counts them).
    max_list: usize,
}

impl Decoder {
    pub fn new(max_list: usize) -> Decoder {
        Decoder { table: VecDeque::new(), size: 0, max_size: TABLE_SIZE, max_list }
    }

    /// Decodes one whole header block. On `TooLarge` the block was still decoded to its
    /// end (the table stays in step with the client's); other errors are connection
    /// errors (COMPRESSION_ERROR).
    pub fn decode(&mut self, block: &Bytes, fields: &mut Vec<HeaderField>) -> Result<(), HpackError> {
        let src = &block[..];
        let mut pos = 0;
        let mut list = 0usize;
        let mut too_large = false;
        let mut first = true;
        while pos < src.len() {
            let b = src[pos];
            let field = if b & 0x80 != 0 {
                let idx = integer(src, &mut pos, 7)?;
                self.get(idx)?
            } else if b & 0xe0 == 0x20 {
                let size = integer(src, &mut pos, 5)?;
                if size > TABLE_SIZE || !first {
                    return Err(HpackError::BadSizeUpdate(size));
                }
                self.max_size = size;
                self.evict(0);
                continue;
            } else {
                let (prefix, index) = if b & 0xc0 == 0x40 { (6, true) } else { (4, false) };
                let idx = integer(src, &mut pos, prefix)?;
                let name = if idx == 0 { string(block, &mut pos)? } else { self.get(idx)?.name };
                let value = string(block, &mut pos)?;
                let f = HeaderField { name, value };
                if index {
                    self.insert(f.clone());
                }
                f
            };
            first = false;
            list += field.name.len() + field.value.len() + 32;
            if list > self.max_list {
                too_large = true;
                fields.clear();
            }
            if !too_large {
                fields.push(field);
            }
        }
        if too_large {
            return Err(HpackError::TooLarge(self.max_list));
        }
        Ok(())
    }

    fn get(&self, idx: usize) -> Result<HeaderField, HpackError> {
        match idx {
            1..=61 => {
                let (n, v) = STATIC[idx - 1];
                Ok(HeaderField {
                    name: Bytes::from_static(n.as_bytes()),
                    value: Bytes::from_static(v.as_bytes()),
                })
            }
            _ => {
                idx.checked_sub(62).and_then(|i| self.table.get(i)).cloned().ok_or(HpackError::BadIndex(idx))
            }
        }
    }

    fn insert(&mut self, f: HeaderField) {
        let size = f.name.len() + f.value.len() + 32;
        self.evict(size);
        // An entry larger than the table empties it and is not added (RFC 7541 §4.4).
        if size <= self.max_size {
            self.size += size;
            self.table.push_front(f);
        }
    }

    /// Evicts the oldest entries until `room` more bytes fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max_size {
            match self.table.pop_back() {
                Some(old) => self.size -= old.name.len() + old.value.len() + 32,
                None => break,
            }
        }
    }
}

/// A string literal (RFC 7541 §5.2): raw ones share the block's bytes.
fn string(block: &Bytes, pos: &mut usize) -> Result<Bytes, HpackError> {
    let huffman = *block.get(*pos).ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = integer(block, pos, 7)?;
    let end = pos.checked_add(len).filter(|&e| e <= block.len()).ok_or(HpackError::Truncated)?;
    let raw = block.slice(*pos..end);
    *pos = end;
    if !huffman {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(len * 8 / 5 + 1);
    huffman_decode(&raw, &mut out)?;
    Ok(Bytes::from(out))
}

/// The static table's index for a field name, if it has one.
fn static_name(name: &[u8]) -> Option<usize> {
    // Entries with one name appear once, except :method, :path, :scheme and :status,
    // which responses do not send: the first match is the right one.
    STATIC.iter().position(|(n, _)| n.as_bytes() == name).map(|i| i + 1)
}

/// Writes a response's `:status`.
pub fn encode_status(out: &mut Vec<u8>, status: u16) {
    let idx = match status {
        200 => 8,
        204 => 9,
        206 => 10,
        304 => 11,
        400 => 12,
        404 => 13,
        500 => 14,
        _ => 0,
    };
    if idx > 0 {
        out.push(0x80 | idx);
    } else {
        // Literal without indexing, name :status (index 8).
        out.push(0x08);
        write_integer(out, 0, 7, 3);
        out.extend_from_slice(format!("{:03}", status.min(999)).as_bytes());
    }
}

/// Writes one field as a literal without indexing (`name` lower-case).
pub fn encode_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    match static_name(name) {
        Some(idx) => write_integer(out, 0x00, 4, idx),
        None => {
            out.push(0x00);
            write_integer(out, 0, 7, name.len());
            out.extend_from_slice(name);
        }
    }
    write_integer(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Bytes {
        let s: String = s.split_whitespace().collect();
        Bytes::from(
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect::<Vec<u8>>(),
        )
    }

    fn decode_all(d: &mut Decoder, block: &str) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        d.decode(&hex(block), &mut fields).unwrap();
        fields
            .into_iter()
            .map(|f| {
                (String::from_utf8(f.name.to_vec()).unwrap(), String::from_utf8(f.value.to_vec()).unwrap())
            })
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn integers_as_in_rfc_c1() {
        let mut out = Vec::new();
        write_integer(&mut out, 0, 5, 10);
        assert_eq!(out, [0x0a]);
        out.clear();
        write_integer(&mut out, 0, 5, 1337);
        assert_eq!(out, [0x1f, 0x9a, 0x0a]);
        let mut pos = 0;
        assert_eq!(integer(&out, &mut pos, 5), Ok(1337));
        assert_eq!(pos, 3);
        let mut pos = 0;
        assert_eq!(
            integer(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], &mut pos, 7),
            Err(HpackError::Overflow)
        );
        let mut pos = 0;
        assert_eq!(integer(&[0x1f, 0x9a], &mut pos, 5), Err(HpackError::Truncated));
    }

    #[test]
    fn huffman_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let mut enc = Vec::new();
        huffman_encode(&all, &mut enc);
        let mut dec = Vec::new();
        huffman_decode(&enc, &mut dec).unwrap();
        assert_eq!(dec, all);
        // RFC 7541 C.4.1.
        let mut enc = Vec::new();
        huffman_encode(b"www.example.com", &mut enc);
        assert_eq!(Bytes::from(enc), hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff"));
    }

    #[test]
    fn huffman_rejects_bad_padding_and_eos() {
        let mut out = Vec::new();
        // 'a' is 00011 (5 bits): padding of zeros is refused, ones accepted.
        assert_eq!(huffman_decode(&[0b0001_1000], &mut out), Err(HpackError::BadHuffman));
        out.clear();
        assert_eq!(huffman_decode(&[0b0001_1111], &mut out), Ok(()));
        assert_eq!(out, b"a");
        // A whole byte of ones is padding longer than 7 bits.
        out.clear();
        assert_eq!(huffman_decode(&[0b0001_1111, 0xff], &mut out), Err(HpackError::BadHuffman));
        // EOS (30 ones).
        out.clear();
        assert_eq!(huffman_decode(&[0xff, 0xff, 0xff, 0xfc], &mut out), Err(HpackError::BadHuffman));
    }

    /// The three requests of RFC 7541 C.3 and C.4, decoded.
    const RFC_REQUESTS: [&[(&str, &str)]; 3] = [
        &[(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")],
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
            ("cache-control", "no-cache"),
        ],
        &[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ],
    ];

    #[test]
    fn requests_of_rfc_c3_without_huffman() {
        let mut d = Decoder::new(1 << 16);
        let blocks = [
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "8286 84be 5808 6e6f 2d63 6163 6865",
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ];
        for (block, want) in blocks.iter().zip(RFC_REQUESTS) {
            assert_eq!(decode_all(&mut d, block), pairs(want));
        }
        assert_eq!(d.size, 164);
    }

    #[test]
    fn requests_of_rfc_c4_with_huffman() {
        let mut d = Decoder::new(1 << 16);
        let blocks = [
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ];
        for (block, want) in blocks.iter().zip(RFC_REQUESTS) {
            assert_eq!(decode_all(&mut d, block), pairs(want));
        }
        assert_eq!(d.size, 164);
    }

    #[test]
    fn eviction_keeps_the_table_within_its_size() {
        let mut d = Decoder::new(1 << 16);
        // Size update to 100, then two 60-byte entries: the first is evicted.
        let mut block = vec![0x3f];
        block.extend_from_slice(&[0x45]); // 31 + 69 = 100
        for v in [b"aaaa", b"bbbb"] {
            block.push(0x40);
            write_integer(&mut block, 0, 7, 24);
            block.extend_from_slice(&[b'n'; 24]);
            write_integer(&mut block, 0, 7, 4);
            block.extend_from_slice(v);
        }
        block.push(0x80 | 62);
        let mut fields = Vec::new();
        d.decode(&Bytes::from(block), &mut fields).unwrap();
        assert_eq!(fields[2].value, "bbbb");
        assert_eq!(d.table.len(), 1);
        assert_eq!(d.decode(&Bytes::from_static(&[0x80 | 63]), &mut fields), Err(HpackError::BadIndex(63)));
        // A size update after a field is refused, as is one above the setting.
        assert!(matches!(
            d.decode(&Bytes::from_static(&[0x82, 0x20]), &mut fields),
            Err(HpackError::BadSizeUpdate(0))
        ));
        assert_eq!(d.decode(&hex("3fe1 1f"), &mut fields), Ok(()));
        assert!(matches!(d.decode(&hex("3fe2 1f"), &mut fields), Err(HpackError::BadSizeUpdate(4097))));
        assert_eq!(d.decode(&Bytes::from_static(&[0x80]), &mut fields), Err(HpackError::BadIndex(0)));
        assert_eq!(
            d.decode(&Bytes::from_static(&[0x40, 0x05, b'a']), &mut fields),
            Err(HpackError::Truncated)
        );
    }

    #[test]
    fn a_list_over_the_limit_is_refused_but_still_indexed() {
        let mut d = Decoder::new(100);
        let mut block = vec![0x40, 50];
        block.extend_from_slice(&[b'x'; 50]);
        block.push(20);
        block.extend_from_slice(&[b'y'; 20]);
        let mut fields = Vec::new();
        assert_eq!(d.decode(&Bytes::from(block), &mut fields), Err(HpackError::TooLarge(100)));
        assert!(fields.is_empty());
        assert_eq!(d.table.len(), 1);
    }

    #[test]
    fn encoded_responses_decode_back() {
        let mut out = Vec::new();
        encode_status(&mut out, 200);
        encode_status(&mut out, 503);
        encode_field(&mut out, b"content-type", b"text/html");
        encode_field(&mut out, b"x-custom", b"v");
        let mut d = Decoder::new(1 << 16);
        let mut fields = Vec::new();
        d.decode(&Bytes::from(out), &mut fields).unwrap();
        let got: Vec<_> = fields.iter().map(|f| (f.name.to_vec(), f.value.to_vec())).collect();
        assert_eq!(
            got,
            vec![
                (b":status".to_vec(), b"200".to_vec()),
                (b":status".to_vec(), b"503".to_vec()),
                (b"content-type".to_vec(), b"text/html".to_vec()),
                (b"x-custom".to_vec(), b"v".to_vec())
            ]
        );
        assert!(d.table.is_empty());
    }
}
