#![no_std]
// The programs are the `ballast` binary target; this empty library only lets
// userspace/build.rs name this crate as a build-dependency (so cargo rebuilds on change).
