//! HAProxy configuration files: what `ballast check -f haproxy.cfg` reads and the L7 proxy
//! runs from.
pub mod model;
pub mod parse;
mod resolve;
pub mod tls;
pub mod tokenize;
pub mod units;

pub use model::L7Config;
pub use parse::{parse, parse_files, Diag, Level, Parsed};

#[cfg(test)]
mod tests;
