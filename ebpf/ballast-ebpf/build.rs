// Rebuild when bpf-linker changes: it is what links this crate for the BPF target.
fn main() {
    if let Ok(path) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
