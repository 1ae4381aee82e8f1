//! QEMU's `isa-debug-exit` device: how the kernel ends a test boot, and how
//! the build runner reads the verdict from QEMU's exit status.
//!
//! The runner boots QEMU with `-device isa-debug-exit,iobase=0xf4,iosize=0x04`
//! ([`PORT`], [`PORT_SIZE`]). A 32-bit write of `v` to the port makes QEMU
//! exit at once with status [`qemu_status`]`(v)` = `(v << 1) | 1`. The two
//! values the kernel writes give 33 and 35, which cannot be mistaken for
//! QEMU's own statuses (0 when the guest powered off normally, 1 for an
//! error of QEMU's), so any other status means the guest never reported.
//! On a machine without the device the write does nothing.

/// The I/O port of the device (`iobase=`).
pub const PORT: u16 = 0xf4;
/// Bytes the device decodes (`iosize=`): the values are written as `u32`.
pub const PORT_SIZE: u16 = 4;
/// Written when the boot succeeded: QEMU exits with [`QEMU_SUCCESS`].
pub const SUCCESS: u32 = 0x10;
/// Written when the boot failed (a test failed, the kernel panicked): QEMU
/// exits with [`QEMU_FAILURE`].
pub const FAILURE: u32 = 0x11;

/// QEMU's exit status after the guest wrote `value` to [`PORT`]. A parent
/// process sees its low 8 bits, so only values below 0x80 are told apart.
pub const fn qemu_status(value: u32) -> i32 {
    ((value << 1) | 1) as i32
}

/// QEMU's exit status for [`SUCCESS`]: 33.
pub const QEMU_SUCCESS: i32 = qemu_status(SUCCESS);
/// QEMU's exit status for [`FAILURE`]: 35.
pub const QEMU_FAILURE: i32 = qemu_status(FAILURE);

const _: () = assert!(QEMU_SUCCESS == 33 && QEMU_FAILURE == 35);
