//! The runtime API's `show servers state [<backend>]`: HAProxy 2.6's format (the one its
//! `server-state-file` holds), one line per server with the numeric states HAProxy uses,
//! so scripts written against HAProxy's socket read ballast's the same way.
use std::sync::atomic::Ordering::Relaxed;

use super::state::{Admin, ServerRt, Shared};

const HEADER: &str = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n";

/// HAProxy's `enum healthcheck_status` for a check result as ballast words it (the first
/// word of the check description); 1 (INI) before any check ran.
fn check_status(word: &str) -> u8 {
    match word {
        "SOCKERR" => 5,
        "L4OK" => 6,
        "L4TOUT" => 7,
        "L4CON" => 8,
        "L6OK" => 9,
        "L6TOUT" => 10,
        "L6RSP" => 11,
        "L7TOUT" => 12,
        "L7RSP" => 13,
        "L7OK" => 15,
        "L7OKC" => 16,
        "L7STS" => 17,
        _ => 1,
    }
}

/// HAProxy's `CHK_RES_*`: 0 unknown (no check ran), 2 failed, 3 passed, 4 conditionally.
fn check_result(word: &str) -> u8 {
    match word {
        "" => 0,
        "L4OK" | "L6OK" | "L7OK" => 3,
        "L7OKC" => 4,
        _ => 2,
    }
}

fn line(be_id: usize, backend: &str, id: u32, s: &ServerRt) -> String {
    let admin = s.admin();
    let maint = s.cfg.disabled || admin == Admin::Maint;
    let last = if s.cfg.check && !s.cfg.disabled {
        s.last_check.lock().map(|c| c.split_whitespace().next().unwrap_or("").to_string()).unwrap_or_default()
    } else {
        String::new()
    };
    let health = s.health.lock().map(|h| (h.health(), h.status().starts_with("UP"))).unwrap_or((0, true));
    // Running unless in maintenance or (checked) down; a server going down is still up.
    let op_state = if maint || (s.cfg.check && !health.1) { 0 } else { 2 };
    // SRV_ADMF_*: FMAINT 0x01, CMAINT 0x04 (disabled in the config, which forces it too),
    // FDRAIN 0x08.
    let admin_state = if s.cfg.disabled {
        5
    } else {
        match admin {
            Admin::Maint => 1,
            Admin::Drain => 8,
            Admin::Ready => 0,
        }
    };
    // A server in maintenance has health 0; one without a check counts as risen.
    let check_health = if maint {
        0
    } else if s.cfg.check {
        health.0
    } else {
        s.cfg.rise
    };
    // CHK_ST_CONFIGURED|ENABLED (6) with a check, PAUSED (8) while in maintenance; a
    // server disabled in the config without a check is paused too, one put in maintenance
    // at run time without a check is not.
    let check_state = match (s.cfg.check, maint) {
        (true, true) => 14,
        (true, false) => 6,
        (false, _) if s.cfg.disabled => 8,
        (false, _) => 0,
    };
    let since = s.last_change.lock().map(|t| t.elapsed().as_secs()).unwrap_or(0);
    format!(
        "{be_id} {backend} {id} {} {} {op_state} {admin_state} {} {} {since} {} {} {check_health} {check_state} 0 0 {} {} {} - 0 0 - - 0\n",
        s.cfg.name,
        s.cfg.addr.ip(),
        s.weight.load(Relaxed),
        s.cfg.weight,
        check_status(&last),
        check_result(&last),
        u8::from(s.cfg.id.is_some()),
        s.cfg.host.as_deref().unwrap_or("-"),
        s.cfg.addr.port(),
    )
}

/// The answer to `show servers state [backend]`.
pub fn show(shared: &Shared, backend: Option<&str>) -> String {
    if backend.is_some_and(|b| !shared.backends.contains_key(b)) {
        return "Can't find backend.\n".into();
    }
    let mut out = String::from(HEADER);
    for (i, name) in shared.order.iter().enumerate() {
        if backend.is_some_and(|b| b != name) {
            continue;
        }
        let Some(be) = shared.backends.get(name) else { continue };
        let explicit: Vec<Option<u32>> = be.servers.iter().map(|s| s.cfg.id).collect();
        let ids = ballast_l7::hashing::server_ids(&explicit);
        for (s, id) in be.servers.iter().zip(ids) {
            out.push_str(&line(i + shared.first_iid, name, id, s));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_words_map_to_haproxys_numbers() {
        assert_eq!([check_status("L4OK"), check_status("L4CON"), check_status("L7OK"), check_status("")], [6, 8, 15, 1]);
        assert_eq!([check_result(""), check_result("L7OK"), check_result("L7STS"), check_result("L4TOUT")], [0, 3, 2, 2]);
    }
}
