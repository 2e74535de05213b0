// Builds the XDP programs (ebpf/ballast-ebpf) for bpfel-unknown-none with the nightly
// toolchain and bpf-linker; `AYA_BUILD_SKIP=1` skips it for host-only builds.
use aya_build::{Package, Toolchain};

fn main() -> aya_build::Result<()> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../ebpf/ballast-ebpf");
    aya_build::build_ebpf(
        [Package { name: "ballast-ebpf", root_dir: root, ..Default::default() }],
        Toolchain::default(),
    )
}
