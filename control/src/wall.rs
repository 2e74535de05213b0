//! The wall clock as the replicated state records it.

/// Wall clock, ms since the Unix epoch (event times).
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
