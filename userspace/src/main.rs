fn main() {
    let bytes = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ballast"));
    let mut ebpf = aya::Ebpf::load(bytes).unwrap();
    for name in ["ballast_lb", "ballast_decap", "ballast_pass"] {
        let p: &mut aya::programs::Xdp = ebpf.program_mut(name).unwrap().try_into().unwrap();
        match p.load() { Ok(()) => println!("{name} loaded"), Err(e) => println!("{name}: {e:?}") }
    }
}
