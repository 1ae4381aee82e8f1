//! The console's input side: one queue fed by the PS/2 keyboard and by
//! COM1, through the line discipline (`kernel_core::console::ldisc`), read
//! by fd 0.
//!
//! Input arrives by interrupt: ISA IRQ 1 (keyboard) and IRQ 4 (COM1),
//! routed through the I/O APIC to vectors of `arch::irq`. On a machine
//! where they cannot be routed (no MADT or no I/O APIC) the timer tick
//! polls both devices instead ([`poll`]).
//!
//! Readers:
//! - [`read`] blocks the calling task (it sleeps on a wait queue) until
//!   the line discipline has a line (cooked) or bytes (raw); Ctrl-C or a
//!   kill request ends the wait with `EINTR`.
//! - [`try_read`] never blocks, and [`on_input`] registers a one-shot
//!   callback run from the input interrupt when input becomes readable:
//!   together what a ring READ on fd 0 needs to complete later as a
//!   pending op instead of blocking its `enter`. (Wiring that op is the
//!   ring engine's part; it is not done here.)
//!
//! Ctrl-C in cooked mode kills the foreground process, if one is named
//! ([`set_foreground`]) and alive, with `abi::status::INTERRUPTED`: the
//! request is recorded on its task and carried out when it next returns
//! to user mode; a wait on the console or a sleep ends at once for it.
//! Otherwise the current or next [`read`] returns `EINTR`.

use crate::arch::serial::{SerialPort, COM1_IRQ};
use crate::arch::{apic, ioapic, irq, keyboard};
use crate::task::{self, Tid, WaitQueue};
use abi::errno::{Errno, EINTR, ENOMEM};
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use kernel_core::console::ldisc::{LineDiscipline, Mode};
use spin::Mutex;
use x86_64::instructions::interrupts;

/// A callback run once, from an input interrupt, when input is readable.
pub type InputWaker = Box<dyn FnOnce() + Send>;

static LDISC: Mutex<LineDiscipline> = Mutex::new(LineDiscipline::new());
static READERS: WaitQueue = WaitQueue::new();
/// Wakers waiting for input, each with the process it reads for.
static WAKERS: Mutex<Vec<(Tid, InputWaker)>> = Mutex::new(Vec::new());
/// Ctrl-C was pressed with no foreground process and no read has
/// returned `EINTR` for it yet: the current or next read does.
static INTERRUPT_PENDING: AtomicBool = AtomicBool::new(false);
/// The process Ctrl-C kills (`abi::console::NO_FOREGROUND`: none).
static FOREGROUND: AtomicU64 = AtomicU64::new(abi::console::NO_FOREGROUND);
/// Input devices are polled from the timer tick (no routed interrupts).
static POLLED: AtomicBool = AtomicBool::new(false);

/// Sets up the input devices and routes their interrupts to the boot CPU
/// (the caller). Devices whose interrupt cannot be routed are polled.
pub fn init() {
    let keyboard = match keyboard::init() {
        Ok(()) => true,
        Err(why) => {
            log::warn!("console: no PS/2 keyboard: {why}");
            false
        }
    };
    let serial = SerialPort::present();
    let here = apic::id();
    let mut polled = false;
    if keyboard {
        polled |= !route(keyboard::KEYBOARD_IRQ, here, "keyboard", poll_keyboard);
    }
    if serial {
        polled |= !route(COM1_IRQ, here, "COM1", poll_serial);
        SerialPort::new().enable_receive_interrupt();
    }
    if polled {
        log::warn!(
            "console: input devices without a routed interrupt are polled on the timer tick"
        );
        POLLED.store(true, Ordering::Release);
    }
}

/// Routes ISA `irq` to a fresh vector running `handler`; false if it
/// cannot be (the device is then polled).
fn route(irq_line: u8, apic_id: u8, name: &str, handler: fn()) -> bool {
    let Some(vector) = irq::allocate(1) else {
        log::warn!("console: no interrupt vector left for the {name}");
        return false;
    };
    irq::register(vector, Arc::new(handler));
    match ioapic::route_isa(irq_line, vector, apic_id) {
        Ok(()) => true,
        Err(why) => {
            log::warn!("console: {name} interrupt not routed: {why}");
            irq::release(vector);
            false
        }
    }
}

fn poll_keyboard() {
    keyboard::drain(&mut |bytes| {
        for &b in bytes {
            input(b);
        }
    });
}

fn poll_serial() {
    let mut port = SerialPort::new();
    // Bounded: a stuck "data ready" bit cannot hold the CPU.
    for _ in 0..64 {
        match port.try_receive() {
            // A serial terminal sends DEL for backspace and CR for Enter;
            // the line discipline takes both.
            Some(b) => input(b),
            None => break,
        }
    }
}

/// Polls the input devices if they have no interrupt (from the timer
/// tick; cheap when they do).
pub fn poll() {
    if POLLED.load(Ordering::Relaxed) {
        poll_keyboard();
        poll_serial();
    }
}

/// One byte of input from any device, in interrupt context.
fn input(byte: u8) {
    let effect = interrupts::without_interrupts(|| {
        LDISC
            .lock()
            .input(byte, &mut |echo| crate::logger::write_bytes(echo))
    });
    if effect.interrupt {
        let pid = FOREGROUND.load(Ordering::Acquire);
        match task::find_user(pid) {
            Some(target) if pid != abi::console::NO_FOREGROUND => {
                task::request_kill(&target, abi::status::INTERRUPTED);
            }
            _ => {
                INTERRUPT_PENDING.store(true, Ordering::Release);
                READERS.wake_all();
            }
        }
    }
    if effect.readable {
        READERS.wake_all();
        let wakers = interrupts::without_interrupts(|| core::mem::take(&mut *WAKERS.lock()));
        for (_, waker) in wakers {
            waker();
        }
    }
}

/// Reads console input into `buf`, sleeping until there is some: a line
/// (or its first `buf.len()` bytes) in cooked mode, the bytes there are in
/// raw mode; 0 at end of file (Ctrl-D on an empty line). `EINTR` if the
/// task is asked to end while it waits, or for a Ctrl-C that killed no
/// foreground process, pressed while it waits or since the last read (so
/// that a shell between two reads still sees it).
pub fn read(buf: &mut [u8]) -> Result<usize, Errno> {
    READERS.wait_until(|| {
        if task::pending_kill().is_some() || INTERRUPT_PENDING.swap(false, Ordering::AcqRel) {
            return Some(Err(EINTR));
        }
        try_read(buf).map(Ok)
    })
}

/// Reads console input into `buf` if there is some now (as [`read`]);
/// `None` if a reader would have to wait.
pub fn try_read(buf: &mut [u8]) -> Option<usize> {
    interrupts::without_interrupts(|| LDISC.lock().read(buf))
}

/// Whether a read would find something now (a line in cooked mode, a byte
/// in raw mode, or end of file).
pub fn readable() -> bool {
    interrupts::without_interrupts(|| LDISC.lock().readable())
}

/// Runs `waker` once, from the input interrupt, when input is next
/// readable, or at once if it is now. `ENOMEM` if it cannot be kept.
/// The waker runs with interrupts off, in an interrupt handler or in the
/// caller: it must not sleep, and should only queue work (complete a
/// pending ring op, wake a thread) that then calls [`try_read`], which
/// may find nothing if another reader was faster.
///
/// `pid` is the process the read is for: when it ends, its wakers are
/// dropped unrun ([`process_ended`]), so nothing writes its memory after.
pub fn on_input(pid: Tid, waker: InputWaker) -> Result<(), Errno> {
    let now = interrupts::without_interrupts(|| -> Result<Option<InputWaker>, Errno> {
        // Checked under the wakers' lock, after which the interrupt
        // handler (which takes the line discipline first, then this
        // lock) will find the waker: no input is missed in between.
        let mut wakers = WAKERS.lock();
        if LDISC.lock().readable() {
            return Ok(Some(waker));
        }
        wakers.try_reserve(1).map_err(|_| ENOMEM)?;
        wakers.push((pid, waker));
        Ok(None)
    })?;
    if let Some(waker) = now {
        waker();
    }
    Ok(())
}

/// The process that last switched the console to raw mode (0: none).
static RAW_OWNER: AtomicU64 = AtomicU64::new(0);

/// Switches the line discipline to `mode` for process `pid`; returns the
/// previous mode. If `pid` goes raw and ends without switching back, the
/// console goes back to cooked ([`process_ended`]).
pub fn set_mode(pid: Tid, mode: Mode) -> Mode {
    RAW_OWNER.store(if mode == Mode::Raw { pid } else { 0 }, Ordering::Release);
    let (old, readable) = interrupts::without_interrupts(|| {
        let mut ldisc = LDISC.lock();
        let old = ldisc.set_mode(mode);
        (old, ldisc.readable())
    });
    if readable {
        READERS.wake_all();
    }
    old
}

/// Names the process Ctrl-C kills (`abi::console::NO_FOREGROUND`: none).
pub fn set_foreground(pid: Tid) {
    FOREGROUND.store(pid, Ordering::Release);
}

/// Process `pid` has ended: the console forgets it as the foreground and
/// leaves the raw mode it set, so that a program killed in raw mode does
/// not leave its shell a raw console.
pub fn process_ended(pid: Tid) {
    // Its pending ring reads go unrun (dropping them releases what they
    // pinned); run outside the lock.
    let dropped: Vec<(Tid, InputWaker)> = interrupts::without_interrupts(|| {
        let mut wakers = WAKERS.lock();
        let (mine, rest) = core::mem::take(&mut *wakers)
            .into_iter()
            .partition(|(owner, _)| *owner == pid);
        *wakers = rest;
        mine
    });
    drop(dropped);
    let _ = FOREGROUND.compare_exchange(
        pid,
        abi::console::NO_FOREGROUND,
        Ordering::AcqRel,
        Ordering::Acquire,
    );
    if RAW_OWNER
        .compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        set_mode(0, Mode::Cooked);
    }
}
