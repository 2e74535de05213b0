//! ballast on one device: the XDP loader and map sync, Maglev, config, stats, control.
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod haproxy;
pub mod l4config;
pub mod l7;
pub mod maglev;
pub mod neighbours;
pub mod plan;
pub mod proxy;
pub mod testkit;
