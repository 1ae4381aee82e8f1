//! The safe side of interrupts and exceptions.
//!
//! A CPU exception in user mode ends only the process that caused it, with
//! a message naming the fault and the address; in kernel mode it is a bug
//! and panics with the registers.

use crate::arch::idt::{
    exception_name, TrapFrame, RESCHEDULE_VECTOR, SPURIOUS_VECTOR, TIMER_VECTOR,
};
use crate::arch::{apic, irq};
use crate::task;

const PAGE_FAULT: u64 = 14;

fn fault_address() -> u64 {
    x86_64::registers::control::Cr2::read_raw()
}

/// Called by the assembly entry with the saved registers.
pub fn dispatch(frame: &mut TrapFrame) {
    match frame.vector {
        v if v == u64::from(TIMER_VECTOR) => {
            apic::eoi();
            // Where the layers meet: the scheduler's sleepers and the ring
            // timeouts share the tick, then the running task is preempted.
            let now = crate::time::now_ns();
            task::tick(now);
            crate::rings::tick(now);
            crate::console::poll();
            task::schedule();
        }
        v if v == u64::from(RESCHEDULE_VECTOR) => {
            apic::eoi();
            task::reschedule_ipi();
        }
        v if v == u64::from(SPURIOUS_VECTOR) => {}
        v if irq::is_device(v) => {
            if !irq::dispatch(v as u8) {
                log::warn!("interrupt on vector {v} with no handler");
            }
            apic::eoi();
        }
        v if v < 32 => exception(frame),
        v => log::warn!("unexpected interrupt vector {v}"),
    }
    // A process asked to end (Ctrl-C on the console) ends on its way back
    // to user mode; a spinning one is met here by the timer tick.
    if frame.is_from_user() {
        if let Some(status) = task::pending_kill() {
            crate::lifecycle::exit_current(status);
        }
    }
}

fn exception(frame: &mut TrapFrame) {
    let name = exception_name(frame.vector);
    if frame.is_from_user() {
        let me = task::current();
        if frame.vector == PAGE_FAULT {
            let access = if frame.error_code & 2 != 0 {
                "write"
            } else if frame.error_code & 16 != 0 {
                "execute"
            } else {
                "read"
            };
            log::warn!(
                "process {} ({}) killed: {name} ({access}) at {:#x}, rip {:#x}",
                me.id,
                me.name,
                fault_address(),
                frame.rip
            );
        } else {
            log::warn!(
                "process {} ({}) killed: {name} at rip {:#x} (error {:#x})",
                me.id,
                me.name,
                frame.rip,
                frame.error_code
            );
        }
        drop(me);
        crate::lifecycle::exit_current(abi::status::KILLED_BASE + frame.vector as i32);
    }
    let cr2 = if frame.vector == PAGE_FAULT {
        fault_address()
    } else {
        0
    };
    panic!(
        "{name} in kernel mode at rip {:#x} (error {:#x}, cr2 {cr2:#x})\n{frame:#x?}",
        frame.rip, frame.error_code
    );
}
