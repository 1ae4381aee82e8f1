//! The screen: the linear framebuffer the boot loader set up (multiboot2's
//! framebuffer tag; GRUB sets the mode its `gfxmode` names) with a text
//! console drawn on it (`kernel_core::console::text`).
//!
//! Under PVH there is no framebuffer from the loader, and the console is
//! the serial port alone: programming a Bochs/QEMU VGA found on PCI
//! would need the PCI layer, which this does not reach into.

use super::{phys_to_virt, DIRECT_MAP_SIZE};
use kernel_core::console::text::{Geometry, Rgb, TextConsole};
use spin::Mutex;

struct Screen {
    console: TextConsole,
    /// The framebuffer's bytes (`pitch * height`), through the direct map.
    pixels: &'static mut [u8],
}

static SCREEN: Mutex<Option<Screen>> = Mutex::new(None);

/// Takes over the framebuffer at physical `address` laid out as
/// `geometry`, clears it and puts the cursor top left. An error says why
/// it cannot be used.
pub fn init(address: u64, geometry: Geometry) -> Result<(usize, usize), &'static str> {
    let len = geometry
        .pitch
        .checked_mul(geometry.height)
        .ok_or("its size overflows")?;
    let end = address
        .checked_add(len as u64)
        .ok_or("its address overflows")?;
    if address == 0 || end > DIRECT_MAP_SIZE {
        return Err("it lies outside the direct map (above 4 GiB)");
    }
    let mut console = TextConsole::new(geometry, len)?;
    // SAFETY: `address..end` is inside the direct map (checked above) and
    // is the framebuffer the boot loader described, which is device memory
    // that no allocator hands out (it is not in the usable memory map);
    // this slice, kept under `SCREEN`'s lock, is its only user.
    let pixels = unsafe { core::slice::from_raw_parts_mut(phys_to_virt(address) as *mut u8, len) };
    console.clear(pixels);
    let size = console.size();
    x86_64::instructions::interrupts::without_interrupts(|| {
        *SCREEN.lock() = Some(Screen { console, pixels });
    });
    Ok(size)
}

/// Draws `bytes` at the cursor in `colour` (`None`: the default; escape
/// sequences in `bytes` may change it). Does nothing without a screen.
pub fn write(colour: Option<Rgb>, bytes: &[u8]) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        if let Some(screen) = SCREEN.lock().as_mut() {
            draw(screen, colour, bytes);
        }
    });
}

fn draw(screen: &mut Screen, colour: Option<Rgb>, bytes: &[u8]) {
    if colour.is_some() {
        screen.console.set_fg(colour);
    }
    screen.console.write(screen.pixels, bytes);
    if colour.is_some() {
        screen.console.set_fg(None);
    }
}

/// For the panic path: draws unless the screen is held (by the CPU that
/// panicked, perhaps), in which case it gives up rather than wait.
pub fn emergency_write(colour: Option<Rgb>, bytes: &[u8]) {
    if let Some(mut guard) = SCREEN.try_lock() {
        if let Some(screen) = guard.as_mut() {
            draw(screen, colour, bytes);
        }
    }
}
