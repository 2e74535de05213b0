//! ballast on one device: the XDP loader and map sync, Maglev, config, stats, control.
pub mod l4config;
pub mod maglev;
pub mod plan;
