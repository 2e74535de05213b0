// Builds the XDP programs (ebpf/ballast-ebpf) for bpfel-unknown-none with the nightly
// toolchain and bpf-linker, when the `dataplane` feature (the loader) is on. Without it
// the crate is its pure part only and needs neither.
fn main() {
    #[cfg(feature = "dataplane")]
    {
        use aya_build::{Package, Toolchain};
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../ebpf/ballast-ebpf");
        if let Err(e) = aya_build::build_ebpf(
            [Package { name: "ballast-ebpf", root_dir: root, ..Default::default() }],
            Toolchain::default(),
        ) {
            panic!("building the eBPF programs: {e:#}");
        }
    }
}
