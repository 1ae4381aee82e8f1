//! The PS/2 keyboard behind the i8042 controller (ports 0x60/0x64), ISA
//! IRQ 1. Scancodes (set 1: the controller translates) are decoded with
//! `pc-keyboard`'s US layout into the bytes a terminal sends: characters
//! as UTF-8, Ctrl+letter as control bytes (Ctrl-C is 0x03), arrows and
//! friends as VT100 escape sequences.
//!
//! Every wait on the controller is bounded: a machine without one (the
//! status port reads 0xff) is detected and left alone.

use pc_keyboard::{
    layouts::Us104Key, DecodedKey, HandleControl, KeyCode, PS2Keyboard, ScancodeSet1,
};
use spin::Mutex;
use x86_64::instructions::port::Port;

/// The ISA IRQ of the keyboard.
pub const KEYBOARD_IRQ: u8 = 1;

const DATA: u16 = 0x60;
const STATUS_COMMAND: u16 = 0x64;
const STATUS_OUTPUT_FULL: u8 = 0x01;
const STATUS_INPUT_FULL: u8 = 0x02;
/// The byte in the output buffer came from the second (mouse) port.
const STATUS_AUX: u8 = 0x20;
const SPINS: u32 = 100_000;

static DECODER: Mutex<Option<PS2Keyboard<Us104Key, ScancodeSet1>>> = Mutex::new(None);

fn inb(port: u16) -> u8 {
    // SAFETY: the i8042's ports are owned by this driver; reading them only
    // affects the controller (reading DATA takes a byte from it).
    unsafe { Port::<u8>::new(port).read() }
}

fn outb(port: u16, value: u8) {
    // SAFETY: as in `inb`.
    unsafe { Port::<u8>::new(port).write(value) }
}

/// Waits (boundedly) until the controller takes a byte, then writes it.
fn send(port: u16, value: u8) -> Result<(), &'static str> {
    for _ in 0..SPINS {
        if inb(STATUS_COMMAND) & STATUS_INPUT_FULL == 0 {
            outb(port, value);
            return Ok(());
        }
        core::hint::spin_loop();
    }
    Err("the i8042 does not take commands")
}

/// Waits (boundedly) for a byte from the controller.
fn receive() -> Result<u8, &'static str> {
    for _ in 0..SPINS {
        if inb(STATUS_COMMAND) & STATUS_OUTPUT_FULL != 0 {
            return Ok(inb(DATA));
        }
        core::hint::spin_loop();
    }
    Err("the i8042 does not answer")
}

/// Sets up the controller: the first port's interrupt on with scancode
/// translation, the second (mouse) port off. Interrupts must be routed
/// afterwards. An error says why the keyboard is not used.
pub fn init() -> Result<(), &'static str> {
    if inb(STATUS_COMMAND) == 0xff {
        return Err("no i8042 controller");
    }
    send(STATUS_COMMAND, 0xAD)?; // disable port 1
    send(STATUS_COMMAND, 0xA7)?; // disable port 2
                                 // Drop whatever was waiting.
    for _ in 0..16 {
        if inb(STATUS_COMMAND) & STATUS_OUTPUT_FULL == 0 {
            break;
        }
        inb(DATA);
    }
    send(STATUS_COMMAND, 0x20)?; // read the configuration byte
    let config = receive()?;
    // Port 1 interrupt on, port 2 interrupt off, port 2 clock off,
    // translation to set 1 on.
    let config = (config | 0x01 | 0x40 | 0x20) & !0x02;
    send(STATUS_COMMAND, 0x60)?;
    send(DATA, config)?;
    send(STATUS_COMMAND, 0xAE)?; // enable port 1
    *DECODER.lock() = Some(PS2Keyboard::new(
        ScancodeSet1::new(),
        Us104Key,
        HandleControl::MapLettersToUnicode,
    ));
    Ok(())
}

/// Takes the keyboard's waiting scancodes and hands the bytes they type to
/// `out`. Runs in the keyboard's interrupt handler (or a poll).
pub fn drain(out: &mut impl FnMut(&[u8])) {
    for _ in 0..64 {
        let status = inb(STATUS_COMMAND);
        if status & STATUS_OUTPUT_FULL == 0 || status == 0xff {
            return;
        }
        let byte = inb(DATA);
        if status & STATUS_AUX != 0 {
            continue;
        }
        let mut decoder = DECODER.lock();
        let Some(keyboard) = decoder.as_mut() else {
            continue;
        };
        let Ok(Some(event)) = keyboard.add_byte(byte) else {
            continue;
        };
        match keyboard.process_keyevent(event) {
            Some(DecodedKey::Unicode(c)) => {
                let mut utf8 = [0u8; 4];
                out(c.encode_utf8(&mut utf8).as_bytes());
            }
            Some(DecodedKey::RawKey(code)) => {
                if let Some(sequence) = escape_sequence(code) {
                    out(sequence);
                }
            }
            None => {}
        }
    }
}

/// What a VT100 terminal sends for a key that has no character.
fn escape_sequence(code: KeyCode) -> Option<&'static [u8]> {
    Some(match code {
        KeyCode::ArrowUp => b"\x1b[A",
        KeyCode::ArrowDown => b"\x1b[B",
        KeyCode::ArrowRight => b"\x1b[C",
        KeyCode::ArrowLeft => b"\x1b[D",
        KeyCode::Home => b"\x1b[H",
        KeyCode::End => b"\x1b[F",
        KeyCode::Delete => b"\x1b[3~",
        _ => return None,
    })
}
