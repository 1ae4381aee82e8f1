//! Links every user program with `linker.ld`: a static executable at the
//! fixed user image base, each segment on its own pages. The ELFs keep
//! their debug information (line tables) for the runner's symbolizer and
//! gdb; `cargo xtask` strips it from the copies it packs into the initrd.
//!
//! The base is `abi::layout::USER_IMAGE_BASE`, the kernel's number; it
//! reaches the linker script as the symbol `USER_IMAGE_BASE` (`--defsym`),
//! so the script does not repeat it.

use abi::layout::USER_IMAGE_BASE;

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=--defsym=USER_IMAGE_BASE={USER_IMAGE_BASE:#x}");
    println!("cargo:rustc-link-arg-bins=-T{manifest_dir}/linker.ld");
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=build.rs");
}
