//! Links every user program with `linker.ld`: a static executable at the
//! fixed user image base, each segment on its own pages, without debug info.

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{manifest_dir}/linker.ld");
    // Debug info would make every program ~1 MiB of initrd; symbols stay.
    println!("cargo:rustc-link-arg-bins=--strip-debug");
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=build.rs");
}
