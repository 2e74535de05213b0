//! The gossip key ring, like Consul's `encrypt` key and `consul keyring`: AES-GCM keys of
//! 16, 24 or 32 bytes given as base64; one primary key seals outgoing packets; every
//! installed key is tried on incoming ones, so a rotation (install everywhere, then use,
//! then remove the old key) never splits the cluster.
//!
//! Packet: `[version 1][nonce 12][ciphertext][tag 16]`, the version byte also bound as
//! additional data. Without any key, packets are `[0][plaintext]`, and an agent with keys
//! drops those (and the other way round): mixed clusters never silently half-work.
use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_128_GCM, AES_192_GCM, AES_256_GCM, NONCE_LEN};

const SEALED: u8 = 1;
const PLAIN: u8 = 0;
/// Bytes a sealed packet adds: version, nonce, tag.
pub const OVERHEAD: usize = 1 + NONCE_LEN + 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key is not valid base64: {0}")]
    Base64(String),
    #[error("key must be 16, 24 or 32 bytes, got {0}")]
    Length(usize),
    #[error("key is not installed")]
    NotInstalled,
    #[error("removing the primary key is not allowed; use another key first")]
    RemovePrimary,
    #[error("the key ring is empty: encryption is off on this agent")]
    Disabled,
    #[error("cannot keep the key ring on disk: {0}")]
    Persist(String),
    #[error("no randomness for a new key")]
    Random,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Dropped {
    #[error("empty packet")]
    Empty,
    #[error("sealed packet but this agent has no key")]
    UnexpectedSealed,
    #[error("plaintext packet but this agent requires encryption")]
    UnexpectedPlain,
    #[error("no installed key opens the packet")]
    NoKey,
    #[error("unknown packet version")]
    Version,
}

fn rpc_token_for(key: &[u8]) -> String {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    crate::b64::encode(aws_lc_rs::hmac::sign(&k, b"ballast internal rpc v1").as_ref())
}

pub fn decode_key(b64: &str) -> Result<Vec<u8>, KeyError> {
    let k = crate::b64::decode(b64.trim()).map_err(|e| KeyError::Base64(e.to_string()))?;
    match k.len() {
        16 | 24 | 32 => Ok(k),
        n => Err(KeyError::Length(n)),
    }
}

/// A new 32-byte key (AES-256-GCM), base64, for `encrypt` (`ballast keygen`).
pub fn generate_key() -> Result<String, KeyError> {
    let mut k = [0u8; 32];
    aws_lc_rs::rand::fill(&mut k).map_err(|_| KeyError::Random)?;
    Ok(crate::b64::encode(&k))
}

struct Key {
    raw: Vec<u8>,
    aead: RandomizedNonceKey,
}

impl Key {
    fn new(raw: Vec<u8>) -> Result<Key, KeyError> {
        let alg = match raw.len() {
            16 => &AES_128_GCM,
            24 => &AES_192_GCM,
            32 => &AES_256_GCM,
            n => return Err(KeyError::Length(n)),
        };
        let aead = RandomizedNonceKey::new(alg, &raw).map_err(|_| KeyError::Length(raw.len()))?;
        Ok(Key { raw, aead })
    }
}

/// Installed keys, primary first.
#[derive(Default)]
pub struct Keyring {
    keys: Vec<Key>,
}

impl Keyring {
    /// `keys`: base64, the first is primary. Empty = encryption off.
    pub fn new(keys: &[String]) -> Result<Keyring, KeyError> {
        let mut r = Keyring::default();
        for k in keys {
            r.install(k)?;
        }
        Ok(r)
    }

    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Base64 keys, primary first.
    pub fn list(&self) -> Vec<String> {
        self.keys.iter().map(|k| crate::b64::encode(&k.raw)).collect()
    }

    pub fn primary(&self) -> Option<String> {
        self.keys.first().map(|k| crate::b64::encode(&k.raw))
    }

    /// Adds a key (not primary unless it is the first). Installing twice is a no-op.
    pub fn install(&mut self, b64: &str) -> Result<(), KeyError> {
        let raw = decode_key(b64)?;
        if !self.keys.iter().any(|k| k.raw == raw) {
            self.keys.push(Key::new(raw)?);
        }
        Ok(())
    }

    /// Makes an installed key the primary.
    pub fn use_key(&mut self, b64: &str) -> Result<(), KeyError> {
        let raw = decode_key(b64)?;
        let i = self.keys.iter().position(|k| k.raw == raw).ok_or(KeyError::NotInstalled)?;
        let k = self.keys.remove(i);
        self.keys.insert(0, k);
        Ok(())
    }

    pub fn remove(&mut self, b64: &str) -> Result<(), KeyError> {
        let raw = decode_key(b64)?;
        let i = self.keys.iter().position(|k| k.raw == raw).ok_or(KeyError::NotInstalled)?;
        if i == 0 {
            return Err(KeyError::RemovePrimary);
        }
        self.keys.remove(i);
        Ok(())
    }

    /// The token servers put on internal (Raft, join, keyring) requests: an HMAC of a
    /// fixed label under the primary key. None when encryption is off.
    pub fn rpc_token(&self) -> Option<String> {
        self.keys.first().map(|k| rpc_token_for(&k.raw))
    }

    /// Whether `token` was made with any installed key (so a rotation never locks a
    /// server out). With no key every request passes, as gossip does.
    pub fn rpc_token_valid(&self, token: Option<&str>) -> bool {
        if self.keys.is_empty() {
            return true;
        }
        let Some(t) = token else { return false };
        self.keys.iter().any(|k| {
            aws_lc_rs::constant_time::verify_slices_are_equal(rpc_token_for(&k.raw).as_bytes(), t.as_bytes())
                .is_ok()
        })
    }

    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let Some(k) = self.keys.first() else {
            let mut out = Vec::with_capacity(plain.len() + 1);
            out.push(PLAIN);
            out.extend_from_slice(plain);
            return out;
        };
        let mut body = plain.to_vec();
        match k.aead.seal_in_place_append_tag(Aad::from([SEALED]), &mut body) {
            Ok(nonce) => {
                let mut out = Vec::with_capacity(OVERHEAD + plain.len());
                out.push(SEALED);
                out.extend_from_slice(nonce.as_ref());
                out.extend_from_slice(&body);
                out
            }
            // Sealing only fails on a broken RNG; an empty packet is dropped by peers.
            Err(_) => Vec::new(),
        }
    }

    pub fn open(&self, pkt: &[u8]) -> Result<Vec<u8>, Dropped> {
        match (pkt.first(), self.enabled()) {
            (None, _) => Err(Dropped::Empty),
            (Some(&PLAIN), false) => Ok(pkt[1..].to_vec()),
            (Some(&PLAIN), true) => Err(Dropped::UnexpectedPlain),
            (Some(&SEALED), false) => Err(Dropped::UnexpectedSealed),
            (Some(&SEALED), true) => {
                if pkt.len() < OVERHEAD {
                    return Err(Dropped::NoKey);
                }
                let mut nonce = [0u8; NONCE_LEN];
                nonce.copy_from_slice(&pkt[1..1 + NONCE_LEN]);
                for k in &self.keys {
                    let mut buf = pkt[1 + NONCE_LEN..].to_vec();
                    if let Ok(plain) = k.aead.open_in_place(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from([SEALED]),
                        &mut buf,
                    ) {
                        let n = plain.len();
                        buf.truncate(n);
                        return Ok(buf);
                    }
                }
                Err(Dropped::NoKey)
            }
            (Some(_), _) => Err(Dropped::Version),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "op+bPRe2ZDynNu2m7V8o1BdFp0L1swlvxzDqOiRWwP0="; // seed 002's key
    const K2: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K16: &str = "AAECAwQFBgcICQoLDA0ODw==";

    #[test]
    fn seal_open_and_rotation() {
        let a = Keyring::new(&[K1.into()]).unwrap();
        let mut b = Keyring::new(&[K1.into()]).unwrap();
        let p = a.seal(b"hello");
        assert_eq!(p.len(), 5 + OVERHEAD);
        assert_eq!(b.open(&p).unwrap(), b"hello");
        // Rotation: b installs K2 and uses it; a (only K1) cannot read b's packets
        // until it installs K2; b still reads a's K1 packets meanwhile.
        b.install(K2).unwrap();
        b.use_key(K2).unwrap();
        assert_eq!(b.primary().as_deref(), Some(K2));
        assert_eq!(b.open(&a.seal(b"x")).unwrap(), b"x");
        assert_eq!(a.open(&b.seal(b"y")), Err(Dropped::NoKey));
        assert_eq!(b.remove(K2), Err(KeyError::RemovePrimary));
        b.remove(K1).unwrap();
        assert_eq!(b.open(&a.seal(b"x")), Err(Dropped::NoKey));
        assert_eq!(b.list(), vec![K2.to_string()]);
        let c = Keyring::new(&[K16.into()]).unwrap();
        assert_eq!(c.open(&c.seal(b"z")).unwrap(), b"z");
    }

    #[test]
    fn rpc_tokens_follow_the_ring() {
        let mut a = Keyring::new(&[K1.into()]).unwrap();
        let b = Keyring::new(&[K2.into()]).unwrap();
        let t1 = a.rpc_token().unwrap();
        assert!(a.rpc_token_valid(Some(&t1)));
        assert!(!a.rpc_token_valid(None));
        assert!(!a.rpc_token_valid(Some("forged")));
        assert!(!a.rpc_token_valid(b.rpc_token().as_deref()));
        a.install(K2).unwrap();
        assert!(a.rpc_token_valid(b.rpc_token().as_deref()));
        assert!(Keyring::default().rpc_token_valid(None));
        assert_eq!(Keyring::default().rpc_token(), None);
    }

    #[test]
    fn bad_packets_and_keys() {
        let on = Keyring::new(&[K1.into()]).unwrap();
        let off = Keyring::default();
        assert_eq!(on.open(&off.seal(b"x")), Err(Dropped::UnexpectedPlain));
        assert_eq!(off.open(&on.seal(b"x")), Err(Dropped::UnexpectedSealed));
        assert_eq!(off.open(&off.seal(b"x")).unwrap(), b"x");
        assert_eq!(on.open(&[]), Err(Dropped::Empty));
        assert_eq!(on.open(&[1, 2, 3]), Err(Dropped::NoKey));
        assert_eq!(on.open(&[9, 2, 3]), Err(Dropped::Version));
        let mut tampered = on.seal(b"hello");
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(on.open(&tampered), Err(Dropped::NoKey));
        assert_eq!(decode_key("AAEC"), Err(KeyError::Length(3)));
        assert!(matches!(decode_key("!!"), Err(KeyError::Base64(_))));
        let mut r = Keyring::default();
        assert_eq!(r.use_key(K1), Err(KeyError::NotInstalled));
        // Random garbage never panics.
        let mut x: u32 = 7;
        for n in 0..2000 {
            let pkt: Vec<u8> = (0..(n % 64))
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = on.open(&pkt);
            let _ = off.open(&pkt);
        }
    }
}
