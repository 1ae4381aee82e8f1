//! Device interrupt vectors: allocation and dispatch.
//!
//! Vectors [`DEVICE_VECTOR_FIRST`]..=[`DEVICE_VECTOR_LAST`] each have a stub
//! in the IDT (see `idt.rs`). A driver allocates vectors with [`allocate`],
//! points its device at them (an MSI-X table entry, an IOAPIC redirection
//! entry) and installs a handler with [`register`]. The vector alone names
//! the handler: the IDT is shared by all CPUs, so a device may target any
//! CPU's local APIC with the same vector.
//!
//! Handlers run with interrupts off on the CPU that took the interrupt,
//! before the local APIC's end-of-interrupt; they must not sleep or take a
//! lock that a thread holds with interrupts on.

use super::idt::{DEVICE_VECTOR_FIRST, DEVICE_VECTOR_LAST};
use alloc::sync::Arc;
use spin::RwLock;

/// What runs when a device vector fires.
pub type Handler = Arc<dyn Fn() + Send + Sync>;

const COUNT: usize = (DEVICE_VECTOR_LAST - DEVICE_VECTOR_FIRST + 1) as usize;

struct Table {
    used: [bool; COUNT],
    handlers: [Option<Handler>; COUNT],
}

static TABLE: RwLock<Table> = RwLock::new(Table {
    used: [false; COUNT],
    handlers: [const { None }; COUNT],
});

/// Runs `f` with the table write-locked and interrupts off, so that a
/// handler on this CPU cannot spin on the read lock we hold.
fn with_table_mut<R>(f: impl FnOnce(&mut Table) -> R) -> R {
    x86_64::instructions::interrupts::without_interrupts(|| f(&mut TABLE.write()))
}

fn index(vector: u8) -> Option<usize> {
    (DEVICE_VECTOR_FIRST..=DEVICE_VECTOR_LAST)
        .contains(&vector)
        .then(|| usize::from(vector - DEVICE_VECTOR_FIRST))
}

/// Reserves `count` consecutive free vectors and returns the first (MSI
/// with several vectors needs them consecutive and aligned to the count,
/// which this gives for powers of two). `None` when no such run is free.
pub fn allocate(count: usize) -> Option<u8> {
    if count == 0 || count > COUNT {
        return None;
    }
    let align = count.next_power_of_two();
    with_table_mut(|table| {
        let mut start = 0;
        while start + count <= COUNT {
            let first = usize::from(DEVICE_VECTOR_FIRST) + start;
            if first % align != 0 {
                start += 1;
                continue;
            }
            if table.used[start..start + count].iter().all(|used| !used) {
                table.used[start..start + count].fill(true);
                return u8::try_from(first).ok();
            }
            start += 1;
        }
        None
    })
}

/// Installs `handler` for an allocated `vector` (replacing any earlier
/// one). Returns false for a vector that is not an allocated device vector.
pub fn register(vector: u8, handler: Handler) -> bool {
    let Some(i) = index(vector) else {
        return false;
    };
    with_table_mut(|table| {
        if !table.used[i] {
            return false;
        }
        table.handlers[i] = Some(handler);
        true
    })
}

/// Removes the handler of `vector` and frees it. The device must no longer
/// raise it.
pub fn release(vector: u8) {
    if let Some(i) = index(vector) {
        let old = with_table_mut(|table| {
            table.used[i] = false;
            table.handlers[i].take()
        });
        drop(old);
    }
}

/// Whether `vector` is in the device range.
pub fn is_device(vector: u64) -> bool {
    (u64::from(DEVICE_VECTOR_FIRST)..=u64::from(DEVICE_VECTOR_LAST)).contains(&vector)
}

/// Runs the handler of device `vector`, if any. Returns whether one ran.
pub fn dispatch(vector: u8) -> bool {
    let Some(i) = index(vector) else {
        return false;
    };
    // Clone the handler out so that it runs without the table locked.
    let handler = TABLE.read().handlers[i].clone();
    match handler {
        Some(handler) => {
            handler();
            true
        }
        None => false,
    }
}
