//! HAProxy's session termination state, the `%tsc` field of its logs: which side or event
//! ended the session (first letter) and in which phase it was (second letter). The HTTP
//! log adds two cookie letters, which ballast logs as `--`.

use std::fmt;

/// What ended the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Ended normally (`-`).
    Normal,
    /// The client aborted or closed (`C`).
    ClientAbort,
    /// The client timed out (`c`).
    ClientTimeout,
    /// The server aborted, refused or answered badly (`S`).
    ServerAbort,
    /// The server timed out (`s`).
    ServerTimeout,
    /// The proxy refused the session, e.g. a malformed request or a `deny` rule (`P`).
    Proxy,
    /// The proxy answered the request itself: a `return` or a `redirect` (`L`).
    Local,
}

/// The phase the session was in when it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Ended normally (`-`).
    Normal,
    /// Waiting for the client's request (`R`).
    Request,
    /// Waiting in a queue for a server slot (`Q`).
    Queue,
    /// Connecting to the server (`C`).
    Connect,
    /// Waiting for the server's response headers (`H`).
    Headers,
    /// Transferring data (`D`).
    Data,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Termination {
    pub cause: Cause,
    pub phase: Phase,
}

impl Termination {
    pub const NORMAL: Termination = Termination::new(Cause::Normal, Phase::Normal);

    pub const fn new(cause: Cause, phase: Phase) -> Termination {
        Termination { cause, phase }
    }

    /// The two letters, as HAProxy's TCP log shows them.
    pub fn letters(self) -> [char; 2] {
        let cause = match self.cause {
            Cause::Normal => '-',
            Cause::ClientAbort => 'C',
            Cause::ClientTimeout => 'c',
            Cause::ServerAbort => 'S',
            Cause::ServerTimeout => 's',
            Cause::Proxy => 'P',
            Cause::Local => 'L',
        };
        let phase = match self.phase {
            Phase::Normal => '-',
            Phase::Request => 'R',
            Phase::Queue => 'Q',
            Phase::Connect => 'C',
            Phase::Headers => 'H',
            Phase::Data => 'D',
        };
        [cause, phase]
    }

    /// The HTTP log's four letters: the two of the state, then the persistence cookie's
    /// two, which ballast does not report (`--`).
    pub fn http(self) -> HttpTermination {
        HttpTermination(self)
    }
}

/// Two letters, as in HAProxy's TCP log.
impl fmt::Display for Termination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b] = self.letters();
        write!(f, "{a}{b}")
    }
}

/// A termination state shown with the HTTP log's cookie letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpTermination(pub Termination);

impl fmt::Display for HttpTermination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}--", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_haproxys_letters() {
        assert_eq!(Termination::NORMAL.to_string(), "--");
        assert_eq!(Termination::new(Cause::ClientTimeout, Phase::Request).http().to_string(), "cR--");
        assert_eq!(Termination::new(Cause::ServerAbort, Phase::Connect).to_string(), "SC");
        assert_eq!(Termination::new(Cause::ServerTimeout, Phase::Queue).to_string(), "sQ");
        assert_eq!(Termination::new(Cause::Proxy, Phase::Headers).http().to_string(), "PH--");
        assert_eq!(Termination::new(Cause::ClientAbort, Phase::Data).http().to_string(), "CD--");
    }
}
