//! What a `bind ... ssl` line accepts, from its options and `ssl-default-bind-options`
//! / `ssl-default-bind-ciphers` / `ssl-default-bind-ciphersuites`, decided as HAProxy
//! (with OpenSSL) decides it, then narrowed to what rustls offers: TLS 1.2 and 1.3 and
//! nine cipher suites. The result is never broader than what the configuration allows; a
//! configuration that leaves nothing ballast can serve is an error (an ALERT).
//!
//! Pure: the proxy turns a [`TlsPolicy`] into a rustls configuration.

/// Protocol versions, oldest first (HAProxy's names: `SSLv3`, `TLSv1.0` .. `TLSv1.3`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    Ssl3,
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

impl TlsVersion {
    pub const ALL: [TlsVersion; 5] =
        [TlsVersion::Ssl3, TlsVersion::Tls10, TlsVersion::Tls11, TlsVersion::Tls12, TlsVersion::Tls13];

    pub fn parse(s: &str) -> Option<TlsVersion> {
        Some(match s {
            "SSLv3" => TlsVersion::Ssl3,
            "TLSv1.0" => TlsVersion::Tls10,
            "TLSv1.1" => TlsVersion::Tls11,
            "TLSv1.2" => TlsVersion::Tls12,
            "TLSv1.3" => TlsVersion::Tls13,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Ssl3 => "SSLv3",
            TlsVersion::Tls10 => "TLSv1.0",
            TlsVersion::Tls11 => "TLSv1.1",
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        }
    }

    /// The suffix of `no-tlsv12`, `force-tlsv13` and the like.
    fn option_suffix(self) -> &'static str {
        match self {
            TlsVersion::Ssl3 => "sslv3",
            TlsVersion::Tls10 => "tlsv10",
            TlsVersion::Tls11 => "tlsv11",
            TlsVersion::Tls12 => "tlsv12",
            TlsVersion::Tls13 => "tlsv13",
        }
    }

    /// The versions rustls speaks.
    pub fn offered(self) -> bool {
        self >= TlsVersion::Tls12
    }
}

/// A cipher suite ballast can offer (rustls with aws-lc-rs), in its default order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Suite {
    Tls13Aes256GcmSha384,
    Tls13Aes128GcmSha256,
    Tls13Chacha20Poly1305Sha256,
    EcdheEcdsaAes256GcmSha384,
    EcdheEcdsaAes128GcmSha256,
    EcdheEcdsaChacha20Poly1305,
    EcdheRsaAes256GcmSha384,
    EcdheRsaAes128GcmSha256,
    EcdheRsaChacha20Poly1305,
}

impl Suite {
    pub const TLS13: [Suite; 3] =
        [Suite::Tls13Aes256GcmSha384, Suite::Tls13Aes128GcmSha256, Suite::Tls13Chacha20Poly1305Sha256];
    pub const TLS12: [Suite; 6] = [
        Suite::EcdheEcdsaAes256GcmSha384,
        Suite::EcdheEcdsaAes128GcmSha256,
        Suite::EcdheEcdsaChacha20Poly1305,
        Suite::EcdheRsaAes256GcmSha384,
        Suite::EcdheRsaAes128GcmSha256,
        Suite::EcdheRsaChacha20Poly1305,
    ];

    /// The IANA name (what rustls and TLS 1.3's `ciphersuites` use).
    pub fn iana(self) -> &'static str {
        match self {
            Suite::Tls13Aes256GcmSha384 => "TLS_AES_256_GCM_SHA384",
            Suite::Tls13Aes128GcmSha256 => "TLS_AES_128_GCM_SHA256",
            Suite::Tls13Chacha20Poly1305Sha256 => "TLS_CHACHA20_POLY1305_SHA256",
            Suite::EcdheEcdsaAes256GcmSha384 => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            Suite::EcdheEcdsaAes128GcmSha256 => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            Suite::EcdheEcdsaChacha20Poly1305 => "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            Suite::EcdheRsaAes256GcmSha384 => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            Suite::EcdheRsaAes128GcmSha256 => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            Suite::EcdheRsaChacha20Poly1305 => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        }
    }

    /// OpenSSL's name of a TLS 1.2 suite (what `ciphers` lists).
    fn openssl(self) -> &'static str {
        match self {
            Suite::EcdheEcdsaAes256GcmSha384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
            Suite::EcdheEcdsaAes128GcmSha256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
            Suite::EcdheEcdsaChacha20Poly1305 => "ECDHE-ECDSA-CHACHA20-POLY1305",
            Suite::EcdheRsaAes256GcmSha384 => "ECDHE-RSA-AES256-GCM-SHA384",
            Suite::EcdheRsaAes128GcmSha256 => "ECDHE-RSA-AES128-GCM-SHA256",
            Suite::EcdheRsaChacha20Poly1305 => "ECDHE-RSA-CHACHA20-POLY1305",
            s => s.iana(),
        }
    }

    /// Whether an OpenSSL cipher-string element (`kECDHE`, `aRSA`, `AESGCM`, a suite
    /// name, ...) selects this TLS 1.2 suite. Elements naming what no suite here has
    /// (static RSA key exchange, DHE, CBC, RC4, MD5, PSK, ...) select nothing.
    fn matches(self, element: &str) -> bool {
        let ecdsa = matches!(
            self,
            Suite::EcdheEcdsaAes256GcmSha384
                | Suite::EcdheEcdsaAes128GcmSha256
                | Suite::EcdheEcdsaChacha20Poly1305
        );
        let aes256 = matches!(self, Suite::EcdheEcdsaAes256GcmSha384 | Suite::EcdheRsaAes256GcmSha384);
        let aes128 = matches!(self, Suite::EcdheEcdsaAes128GcmSha256 | Suite::EcdheRsaAes128GcmSha256);
        let chacha = matches!(self, Suite::EcdheEcdsaChacha20Poly1305 | Suite::EcdheRsaChacha20Poly1305);
        match element {
            "ALL" | "DEFAULT" | "HIGH" | "TLSv1.2" | "kECDHE" | "ECDHE" | "EECDH" | "kEECDH" | "ECDH" => true,
            "aECDSA" | "ECDSA" => ecdsa,
            "aRSA" => !ecdsa,
            "AESGCM" | "AES" => aes128 || aes256,
            "AES128" => aes128,
            "AES256" => aes256,
            "CHACHA20" => chacha,
            name => name == self.openssl() || name == self.iana(),
        }
    }
}

/// Names of TLS 1.3 suites OpenSSL knows that rustls does not offer: listing them is not
/// an error, they are just not offered.
const TLS13_NOT_OFFERED: [&str; 2] = ["TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"];

/// Key exchange groups ballast can offer, by the names `curves` / `ecdhe` take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Group {
    X25519,
    P256,
    P384,
}

impl Group {
    fn parse(s: &str) -> Option<Group> {
        Some(match s {
            "X25519" | "x25519" => Group::X25519,
            "P-256" | "prime256v1" | "secp256r1" => Group::P256,
            "P-384" | "secp384r1" => Group::P384,
            _ => return None,
        })
    }
}

/// TLS options as written on a bind line or in `ssl-default-bind-*` (unset = not said).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    pub min: Option<TlsVersion>,
    pub max: Option<TlsVersion>,
    /// `no-sslv3`, `no-tlsv10`, ...
    pub disabled: Vec<TlsVersion>,
    /// `force-tlsv12` and the like (deprecated in HAProxy, still honoured).
    pub forced: Option<TlsVersion>,
    /// `ciphers` (TLS 1.2 and below; an OpenSSL cipher string).
    pub ciphers: Option<String>,
    /// `ciphersuites` (TLS 1.3).
    pub ciphersuites: Option<String>,
    /// `curves` / `ecdhe`.
    pub curves: Option<String>,
    pub no_tls_tickets: bool,
    pub prefer_client_ciphers: bool,
    pub strict_sni: bool,
}

impl TlsOptions {
    /// Takes one flag option (`no-tlsv11`, `force-tlsv13`, `no-tls-tickets`, ...); false
    /// when `word` is none of them.
    pub fn flag(&mut self, word: &str) -> bool {
        for v in TlsVersion::ALL {
            if word.strip_prefix("no-") == Some(v.option_suffix()) {
                self.disabled.push(v);
                return true;
            }
            if word.strip_prefix("force-") == Some(v.option_suffix()) {
                self.forced = Some(v);
                return true;
            }
        }
        match word {
            "no-tls-tickets" => self.no_tls_tickets = true,
            "prefer-client-ciphers" => self.prefer_client_ciphers = true,
            "strict-sni" => self.strict_sni = true,
            _ => return false,
        }
        true
    }

    /// Takes one option with a value (`ssl-min-ver V`, `ssl-max-ver V`, `ciphers S`,
    /// `ciphersuites S`, `curves L`, `ecdhe C`): Ok(false) when `word` is none of them.
    pub fn with_value(&mut self, word: &str, value: &str) -> Result<bool, String> {
        let version = || {
            TlsVersion::parse(value).ok_or_else(|| {
                format!("'{word}': unknown version '{value}' (SSLv3, TLSv1.0, TLSv1.1, TLSv1.2, TLSv1.3)")
            })
        };
        match word {
            "ssl-min-ver" => self.min = Some(version()?),
            "ssl-max-ver" => self.max = Some(version()?),
            "ciphers" => self.ciphers = Some(value.to_string()),
            "ciphersuites" => self.ciphersuites = Some(value.to_string()),
            "curves" | "ecdhe" => self.curves = Some(value.to_string()),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// This bind line's options over the defaults: what the line says wins, flags add up.
    pub fn over(&self, defaults: &TlsOptions) -> TlsOptions {
        let mut disabled = defaults.disabled.clone();
        disabled.extend(&self.disabled);
        TlsOptions {
            min: self.min.or(defaults.min),
            max: self.max.or(defaults.max),
            disabled,
            forced: self.forced.or(defaults.forced),
            ciphers: self.ciphers.clone().or_else(|| defaults.ciphers.clone()),
            ciphersuites: self.ciphersuites.clone().or_else(|| defaults.ciphersuites.clone()),
            curves: self.curves.clone().or_else(|| defaults.curves.clone()),
            no_tls_tickets: self.no_tls_tickets || defaults.no_tls_tickets,
            prefer_client_ciphers: self.prefer_client_ciphers || defaults.prefer_client_ciphers,
            strict_sni: self.strict_sni || defaults.strict_sni,
        }
    }
}

/// What a TLS listener serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPolicy {
    /// The versions served (1.2 and/or 1.3).
    pub versions: Vec<TlsVersion>,
    /// The suites served, in the server's order of preference.
    pub suites: Vec<Suite>,
    /// The key exchange groups, in order; empty = rustls's defaults.
    pub groups: Vec<Group>,
    pub tickets: bool,
    /// Follow the client's order of suites instead of ours.
    pub prefer_client_ciphers: bool,
    /// Refuse a handshake whose SNI matches no certificate.
    pub strict_sni: bool,
}

/// The policy and what the operator should know about it (warnings), or why nothing can
/// be served (an error).
pub fn resolve(o: &TlsOptions) -> Result<(TlsPolicy, Vec<String>), String> {
    let mut warnings = Vec::new();
    // HAProxy 2.2+ defaults to TLSv1.2 as the minimum.
    let min = o.min.unwrap_or(TlsVersion::Tls12);
    let max = o.max.unwrap_or(TlsVersion::Tls13);
    let enabled: Vec<TlsVersion> = match o.forced {
        Some(v) => vec![v],
        None => TlsVersion::ALL
            .into_iter()
            .filter(|v| *v >= min && *v <= max && !o.disabled.contains(v))
            .collect(),
    };
    let versions: Vec<TlsVersion> = enabled.iter().copied().filter(|v| v.offered()).collect();
    let old: Vec<&str> = enabled.iter().filter(|v| !v.offered()).map(|v| v.name()).collect();
    if !old.is_empty() {
        warnings.push(format!(
            "{} enabled by the configuration but not offered: ballast speaks TLSv1.2 and TLSv1.3 only",
            old.join(", ")
        ));
    }
    if versions.is_empty() {
        return Err(format!(
            "no TLS version left to serve: the configuration allows {} and ballast speaks TLSv1.2 and TLSv1.3 only",
            if enabled.is_empty() { "none".to_string() } else { old.join(", ") }
        ));
    }
    let mut suites = Vec::new();
    if versions.contains(&TlsVersion::Tls13) {
        let tls13 = match &o.ciphersuites {
            Some(list) => tls13_suites(list)?,
            None => Suite::TLS13.to_vec(),
        };
        suites.extend(tls13);
    }
    if versions.contains(&TlsVersion::Tls12) {
        let tls12 = match &o.ciphers {
            Some(s) => openssl_cipher_list(s),
            None => Suite::TLS12.to_vec(),
        };
        if tls12.is_empty() {
            return Err(format!(
                "'ciphers {}' selects no TLSv1.2 suite ballast offers ({})",
                o.ciphers.as_deref().unwrap_or(""),
                Suite::TLS12.iter().map(|s| s.openssl()).collect::<Vec<_>>().join(":")
            ));
        }
        suites.extend(tls12);
    }
    let groups = match &o.curves {
        Some(list) => {
            let mut groups = Vec::new();
            for name in list.split(':').filter(|n| !n.is_empty()) {
                match Group::parse(name) {
                    Some(g) if !groups.contains(&g) => groups.push(g),
                    Some(_) => {}
                    None => warnings.push(format!("curve '{name}' is not offered by ballast, left out")),
                }
            }
            if groups.is_empty() {
                return Err(format!("'curves {list}' names no group ballast offers (X25519, P-256, P-384)"));
            }
            groups
        }
        None => Vec::new(),
    };
    let policy = TlsPolicy {
        versions,
        suites,
        groups,
        tickets: !o.no_tls_tickets,
        prefer_client_ciphers: o.prefer_client_ciphers,
        strict_sni: o.strict_sni,
    };
    Ok((policy, warnings))
}

/// TLS 1.3 suites from a `ciphersuites` list, in its order (OpenSSL refuses unknown names).
fn tls13_suites(list: &str) -> Result<Vec<Suite>, String> {
    let mut out = Vec::new();
    for name in list.split(':').filter(|n| !n.is_empty()) {
        match Suite::TLS13.into_iter().find(|s| s.iana() == name) {
            Some(s) if !out.contains(&s) => out.push(s),
            Some(_) => {}
            None if TLS13_NOT_OFFERED.contains(&name) => {}
            None => return Err(format!("'ciphersuites': unknown TLSv1.3 suite '{name}'")),
        }
    }
    if out.is_empty() {
        return Err(format!(
            "'ciphersuites {list}' selects no TLSv1.3 suite ballast offers ({})",
            Suite::TLS13.iter().map(|s| s.iana()).collect::<Vec<_>>().join(":")
        ));
    }
    Ok(out)
}

/// The TLS 1.2 suites an OpenSSL cipher string selects, in order, as OpenSSL evaluates
/// it: `A` appends what A selects, `!A` removes it for good, `-A` removes it (a later
/// element may add it back), `+A` moves it to the end, `A+B` selects what both select,
/// `@STRENGTH` / `@SECLEVEL=n` change nothing here. Elements that select nothing here
/// (suites rustls does not have) are skipped, as OpenSSL skips unknown names.
pub fn openssl_cipher_list(s: &str) -> Vec<Suite> {
    let mut list: Vec<Suite> = Vec::new();
    let mut killed: Vec<Suite> = Vec::new();
    for token in s.split([':', ',', ' ']).filter(|t| !t.is_empty()) {
        if token.starts_with('@') {
            continue;
        }
        let (op, body) = match token.as_bytes()[0] {
            b'!' | b'-' | b'+' => (token.as_bytes()[0], &token[1..]),
            _ => (b'=', token),
        };
        let selected: Vec<Suite> =
            Suite::TLS12.into_iter().filter(|suite| body.split('+').all(|e| suite.matches(e))).collect();
        match op {
            b'!' => {
                list.retain(|x| !selected.contains(x));
                killed.extend(&selected);
            }
            b'-' => list.retain(|x| !selected.contains(x)),
            b'+' => {
                let moved: Vec<Suite> = list.iter().copied().filter(|x| selected.contains(x)).collect();
                list.retain(|x| !selected.contains(x));
                list.extend(moved);
            }
            _ => {
                for x in selected {
                    if !killed.contains(&x) && !list.contains(&x) {
                        list.push(x);
                    }
                }
            }
        }
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(words: &[&str]) -> TlsOptions {
        let mut o = TlsOptions::default();
        let mut i = 0;
        while i < words.len() {
            if !o.flag(words[i]) {
                assert!(o.with_value(words[i], words[i + 1]).unwrap(), "{}", words[i]);
                i += 1;
            }
            i += 1;
        }
        o
    }

    fn versions(words: &[&str]) -> Result<Vec<&'static str>, String> {
        resolve(&opts(words)).map(|(p, _)| p.versions.iter().map(|v| v.name()).collect())
    }

    #[test]
    fn versions_as_haproxy_decides_them() {
        assert_eq!(versions(&[]).unwrap(), ["TLSv1.2", "TLSv1.3"]);
        assert_eq!(versions(&["ssl-min-ver", "TLSv1.3"]).unwrap(), ["TLSv1.3"]);
        assert_eq!(versions(&["ssl-max-ver", "TLSv1.2"]).unwrap(), ["TLSv1.2"]);
        assert_eq!(versions(&["no-tlsv12"]).unwrap(), ["TLSv1.3"]);
        assert_eq!(versions(&["no-tlsv13"]).unwrap(), ["TLSv1.2"]);
        assert_eq!(versions(&["force-tlsv12"]).unwrap(), ["TLSv1.2"]);
        assert_eq!(versions(&["ssl-min-ver", "TLSv1.0"]).unwrap(), ["TLSv1.2", "TLSv1.3"]);
        let (_, warnings) = resolve(&opts(&["ssl-min-ver", "TLSv1.0"])).unwrap();
        assert!(warnings[0].contains("TLSv1.0, TLSv1.1"), "{warnings:?}");
        assert!(versions(&["ssl-max-ver", "TLSv1.1"]).unwrap_err().contains("TLSv1.2 and TLSv1.3 only"));
        assert!(versions(&["no-tlsv12", "no-tlsv13"]).is_err());
        assert!(opts(&[]).with_value("ssl-min-ver", "TLSv9").is_err());
    }

    #[test]
    fn bind_options_over_the_defaults() {
        let defaults =
            opts(&["ssl-min-ver", "TLSv1.3", "no-tls-tickets", "ciphers", "ECDHE-RSA-AES128-GCM-SHA256"]);
        let line = opts(&["ssl-min-ver", "TLSv1.2"]);
        let (p, _) = resolve(&line.over(&defaults)).unwrap();
        assert_eq!(p.versions, [TlsVersion::Tls12, TlsVersion::Tls13]);
        assert!(!p.tickets);
        assert_eq!(p.suites[3..], [Suite::EcdheRsaAes128GcmSha256]);
    }

    #[test]
    fn openssl_cipher_strings() {
        use Suite::*;
        // Mozilla's "intermediate" list: the DHE suites are not offered, the order is kept.
        let moz = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384";
        assert_eq!(
            openssl_cipher_list(moz),
            [
                EcdheEcdsaAes128GcmSha256,
                EcdheRsaAes128GcmSha256,
                EcdheEcdsaAes256GcmSha384,
                EcdheRsaAes256GcmSha384,
                EcdheEcdsaChacha20Poly1305,
                EcdheRsaChacha20Poly1305
            ]
        );
        assert_eq!(openssl_cipher_list("HIGH:!aNULL:!MD5"), Suite::TLS12);
        assert_eq!(
            openssl_cipher_list("ECDHE+AESGCM:!AES256"),
            [EcdheEcdsaAes128GcmSha256, EcdheRsaAes128GcmSha256]
        );
        assert_eq!(
            openssl_cipher_list("ALL:!CHACHA20:!aECDSA:+AES128"),
            [EcdheRsaAes256GcmSha384, EcdheRsaAes128GcmSha256]
        );
        assert_eq!(
            openssl_cipher_list("ALL:-ECDSA:ECDHE-ECDSA-CHACHA20-POLY1305")[3],
            EcdheEcdsaChacha20Poly1305
        );
        assert_eq!(openssl_cipher_list("ALL:!ECDSA:ECDHE-ECDSA-CHACHA20-POLY1305").len(), 3, "! is for good");
        // Static RSA key exchange, CBC, RC4: nothing here.
        assert!(openssl_cipher_list("AES128-SHA:RC4-MD5:RSA").is_empty());
        assert!(resolve(&opts(&["ciphers", "AES128-SHA"])).unwrap_err().contains("selects no TLSv1.2 suite"));
        // TLS 1.3 only: the TLS 1.2 list does not matter.
        assert!(resolve(&opts(&["ssl-min-ver", "TLSv1.3", "ciphers", "AES128-SHA"])).is_ok());
    }

    #[test]
    fn tls13_suites_and_groups() {
        let (p, _) =
            resolve(&opts(&["ciphersuites", "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_CCM_SHA256"])).unwrap();
        assert_eq!(p.suites[0], Suite::Tls13Chacha20Poly1305Sha256);
        assert_eq!(p.suites.len(), 1 + 6);
        assert!(resolve(&opts(&["ciphersuites", "TLS_NOPE"])).is_err());
        assert!(resolve(&opts(&["ciphersuites", "TLS_AES_128_CCM_SHA256"])).is_err());
        let (p, w) = resolve(&opts(&["curves", "X25519:brainpoolP256r1:prime256v1"])).unwrap();
        assert_eq!(p.groups, [Group::X25519, Group::P256]);
        assert_eq!(w.len(), 1);
        assert!(resolve(&opts(&["curves", "brainpoolP256r1"])).is_err());
    }
}
