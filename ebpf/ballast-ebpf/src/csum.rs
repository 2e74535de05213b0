//! Internet checksum arithmetic (RFC 1071 / RFC 1624). Values are 16-bit words exactly as
//! loaded from packet memory: one's-complement sums do not care about byte order as long
//! as every operand is loaded the same way.

#[inline(always)]
pub fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m') for a 16-bit field change.
#[inline(always)]
pub fn replace2(check: u16, old: u16, new: u16) -> u16 {
    let sum = (!check) as u64 + (!old) as u64 + new as u64;
    !fold(sum)
}

#[inline(always)]
pub fn replace4(check: u16, old: u32, new: u32) -> u16 {
    let sum = (!check) as u64
        + (!(old as u16)) as u64
        + (!((old >> 16) as u16)) as u64
        + (new & 0xffff) as u64
        + (new >> 16) as u64;
    !fold(sum)
}

#[inline(always)]
pub fn replace16(mut check: u16, old: &[u32; 4], new: &[u32; 4]) -> u16 {
    check = replace4(check, old[0], new[0]);
    check = replace4(check, old[1], new[1]);
    check = replace4(check, old[2], new[2]);
    replace4(check, old[3], new[3])
}

/// Checksum of a 20-byte IPv4 header (without options) held in registers.
#[inline(always)]
pub fn ipv4_header(words: &[u16; 10]) -> u16 {
    let mut sum: u64 = 0;
    let mut i = 0;
    while i < 10 {
        sum += words[i] as u64;
        i += 1;
    }
    !fold(sum)
}
