//! Durable files: length- and CRC-framed records for the log, and small files replaced
//! atomically (write a temporary, fsync, rename, fsync the directory).
use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    path::Path,
};

/// `[len u32 LE][crc32 u32 LE][payload]`.
pub fn frame(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Splits `buf` into record payloads. Stops at the first incomplete or corrupt record
/// and says where the good part ends: a crash mid-append leaves a torn tail that was
/// never acknowledged, so it is cut off. [`corrupt_before_end`] tells a torn tail from
/// damage in the middle, which must not be cut.
pub fn unframe(buf: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while buf.len() - at >= 8 {
        let len = u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        let crc = u32::from_le_bytes([buf[at + 4], buf[at + 5], buf[at + 6], buf[at + 7]]);
        let Some(end) = (at + 8).checked_add(len).filter(|e| *e <= buf.len()) else { break };
        let payload = &buf[at + 8..end];
        if crc32fast::hash(payload) != crc {
            break;
        }
        out.push(payload);
        at = end;
    }
    (out, at)
}

/// True when the bad record at `good` ends before the end of `buf` (it is complete and
/// its checksum fails, with more data after it): damage inside the log, not a torn
/// append. Cutting there would drop acknowledged entries.
pub fn corrupt_before_end(buf: &[u8], good: usize) -> bool {
    let rest = &buf[good..];
    if rest.len() < 8 {
        return false;
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    8usize.checked_add(len).is_some_and(|end| end < rest.len())
}

/// Replaces `path` with `data` so that a crash leaves either the old or the new file.
pub fn replace(path: &Path, data: &[u8], durable: bool) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
    }
    fs::rename(&tmp, path)?;
    if durable {
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
    }
    Ok(())
}

/// Reads `path`, None if it does not exist.
pub fn read_opt(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_torn_tails_are_cut() {
        let mut buf = Vec::new();
        frame(b"one", &mut buf);
        frame(b"", &mut buf);
        frame(b"three", &mut buf);
        let (recs, end) = unframe(&buf);
        assert_eq!(recs, vec![&b"one"[..], b"", b"three"]);
        assert_eq!(end, buf.len());
        // Torn at every possible byte: a prefix of the records, never garbage.
        for cut in 0..buf.len() {
            let (recs, end) = unframe(&buf[..cut]);
            assert!(end <= cut);
            assert!(recs.len() <= 3);
        }
        // A flipped bit stops the read at that record.
        let mut bad = buf.clone();
        bad[8 + 3 + 8 + 8 + 1] ^= 1;
        let (recs, _) = unframe(&bad);
        assert_eq!(recs, vec![&b"one"[..], b""]);
        // Damage in the last record looks like a torn append; in the first one it is
        // damage with acknowledged records after it.
        assert!(!corrupt_before_end(&bad, 8 + 3 + 8));
        assert!(!corrupt_before_end(&buf[..buf.len() - 2], 8 + 3 + 8));
        let mut first = buf.clone();
        first[9] ^= 1;
        assert_eq!(unframe(&first).1, 0);
        assert!(corrupt_before_end(&first, 0));
        // A huge length does not overflow.
        let (recs, end) = unframe(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1]);
        assert!(recs.is_empty() && end == 0);
    }
}
