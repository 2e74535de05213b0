//! Splitting one line of an HAProxy configuration into words, as HAProxy does: blanks
//! separate words, `#` starts a comment, `"..."` keeps blanks and `#`, `'...'` is taken
//! literally, and a backslash escapes the next character.

#[derive(Debug, PartialEq, Eq)]
pub enum TokenizeError {
    UnterminatedQuote(char),
    TrailingBackslash,
}

impl std::fmt::Display for TokenizeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenizeError::UnterminatedQuote(q) => write!(f, "unmatched quote ({q})"),
            TokenizeError::TrailingBackslash => write!(f, "line ends with a backslash"),
        }
    }
}

pub fn words(line: &str) -> Result<Vec<String>, TokenizeError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '#' => break,
            '\\' => {
                let n = chars.next().ok_or(TokenizeError::TrailingBackslash)?;
                cur.push(n);
                in_word = true;
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return Err(TokenizeError::UnterminatedQuote('"')),
                        Some('"') => break,
                        Some('\\') => cur.push(chars.next().ok_or(TokenizeError::TrailingBackslash)?),
                        Some(x) => cur.push(x),
                    }
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return Err(TokenizeError::UnterminatedQuote('\'')),
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                    }
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_haproxy() {
        assert_eq!(
            words("  server  apach01 192.168.56.254:80 maxconn 32").unwrap(),
            ["server", "apach01", "192.168.56.254:80", "maxconn", "32"]
        );
        assert_eq!(words("\tlog 127.0.0.1   local0 # comment").unwrap(), ["log", "127.0.0.1", "local0"]);
        assert_eq!(words("#log loghost    local0 info").unwrap(), Vec::<String>::new());
        assert_eq!(
            words(r#"http-check expect string "up # ok""#).unwrap(),
            ["http-check", "expect", "string", "up # ok"]
        );
        assert_eq!(words(r"option httpchk GET /a\ b").unwrap(), ["option", "httpchk", "GET", "/a b"]);
        assert_eq!(words("stats realm 'Ha \\Proxy'").unwrap(), ["stats", "realm", "Ha \\Proxy"]);
        assert_eq!(words("a\"b c\"d").unwrap(), ["ab cd"]);
    }

    #[test]
    fn reports_broken_quoting() {
        assert_eq!(words("a \"b"), Err(TokenizeError::UnterminatedQuote('"')));
        assert_eq!(words("a 'b"), Err(TokenizeError::UnterminatedQuote('\'')));
        assert_eq!(words("a \\"), Err(TokenizeError::TrailingBackslash));
    }
}
