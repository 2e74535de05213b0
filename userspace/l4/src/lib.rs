//! ballast's L4 plane in userspace: the L4 config, Maglev tables and the planner that
//! turns a config into map writes (pure), and, with the `dataplane` feature, the XDP
//! loader that executes them (aya), the neighbour warmer and the admin socket of
//! `ballast lb`.
pub mod config;
pub mod maglev;
pub mod plan;

#[cfg(feature = "dataplane")]
pub mod admin_socket;
#[cfg(feature = "dataplane")]
pub mod dataplane;
#[cfg(feature = "dataplane")]
pub mod neighbours;
