//! HAProxy's log lines for HTTP (`option httplog`), and the pieces the TCP log shares
//! (the date, timers, retries).
use std::{net::SocketAddr, sync::atomic::Ordering::Relaxed, time::Instant};

use ballast_l7::termination::Termination;

use crate::{
    body_pump::ClientGone,
    state::{FrontendRt, Shared},
};

/// What the log line needs to know about how a request went. Timers are in ms, None
/// for a step never reached (logged as -1, as HAProxy does).
pub(crate) struct Outcome {
    pub backend: String,
    pub server: String,
    pub status: u16,
    /// %TR. Not measured: 0 once the head is whole (None: it never was, `<BADREQ>`).
    pub t_request: Option<u128>,
    pub t_queue: Option<u128>,
    pub t_connect_resp: Option<u128>,
    pub retries: u32,
    /// A retry went to another server (`option redispatch`).
    pub redispatched: bool,
    pub termination: Termination,
    /// Counted as the frontend's request error (ereq): a bad request or request body.
    pub request_error: bool,
}

impl Outcome {
    /// A request whose head was read whole, before routing.
    pub fn new(frontend: &str) -> Outcome {
        Outcome {
            backend: frontend.to_string(),
            server: "<NOSRV>".into(),
            status: 0,
            t_request: Some(0),
            t_queue: None,
            t_connect_resp: None,
            retries: 0,
            redispatched: false,
            termination: Termination::NORMAL,
            request_error: false,
        }
    }

    /// The client ended the request early: HAProxy's state for it (see
    /// `ClientGone::termination`), and whether it is a request error.
    pub fn client_gone(&mut self, gone: ClientGone, response_started: bool) {
        self.termination = gone.termination(response_started);
        self.request_error = gone.is_request_error();
    }
}

/// A log timer: ms, or -1 for a step never reached (as HAProxy logs them).
pub(crate) fn log_ms(t: Option<u128>) -> String {
    t.map_or_else(|| "-1".to_string(), |v| v.to_string())
}

/// Writes one `option httplog` line.
pub(crate) fn log_request(
    shared: &Shared,
    fe: &FrontendRt,
    peer: SocketAddr,
    start: Instant,
    out: &Outcome,
    bytes: &str,
    line: &str,
) {
    // HAProxy's httplog: %ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc
    // %ac/%fc/%bc/%sc/%rc %sq/%bq %{+Q}r (no captures; %Tc is folded into %Tr: it is -1
    // like an absent value).
    let fe_conns = fe.counters.scur.load(Relaxed);
    let (be_conns, srv_conns) = shared
        .backends
        .get(&out.backend)
        .map(|b| {
            let s =
                b.servers.iter().find(|s| s.cfg.name == out.server).map(|s| s.counters.scur.load(Relaxed));
            (b.counters.scur.load(Relaxed), s.unwrap_or(0))
        })
        .unwrap_or((0, 0));
    log::info!(
        target: "ballast::httplog",
        "{}:{} [{}] {} {}/{} {}/{}/-1/{}/{} {} {} - - {} {}/{}/{}/{}/{} 0/0 \"{}\"",
        peer.ip(),
        peer.port(),
        httplog_date(std::time::SystemTime::now()),
        fe.cfg.name,
        out.backend,
        out.server,
        log_ms(out.t_request),
        log_ms(out.t_queue),
        log_ms(out.t_connect_resp),
        start.elapsed().as_millis(),
        out.status,
        bytes,
        out.termination.http(),
        fe_conns,
        fe_conns,
        be_conns,
        srv_conns,
        log_retries(out.retries, out.redispatched),
        line
    );
}

/// `22/Nov/2026:01:30:00.123` (UTC), HAProxy's %tr.
pub fn httplog_date(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86400) as i64, secs % 86400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02}.{:03}",
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// `%rc` of a log line: the retries, `+` first once the request was redispatched.
pub(crate) fn log_retries(retries: u32, redispatched: bool) -> String {
    if redispatched {
        format!("+{retries}")
    } else {
        retries.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::httplog_date;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn httplog_dates() {
        assert_eq!(httplog_date(UNIX_EPOCH), "01/Jan/1970:00:00:00.000");
        // 2009-02-06 12:14:14.655, HAProxy's documentation example.
        assert_eq!(
            httplog_date(UNIX_EPOCH + Duration::from_millis(1_233_922_454_655)),
            "06/Feb/2009:12:14:14.655"
        );
        assert_eq!(httplog_date(UNIX_EPOCH + Duration::from_secs(1_795_310_868)), "22/Nov/2026:01:27:48.000");
        assert_eq!(httplog_date(UNIX_EPOCH + Duration::from_secs(951_782_400)), "29/Feb/2000:00:00:00.000");
    }
}
