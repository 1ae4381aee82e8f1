//! The life of a user process: creation from an ELF in the file system,
//! its first entry, exit with full release of what the process held (in
//! that order: rings, files, address space), and parent/child waiting.
//!
//! # Bounds on spawning
//! A spawn is refused before anything is allocated when the parent has
//! [`CHILDREN_MAX`] children (running or unreaped) or the kernel its most
//! live tasks (`task::TaskSlot`): `EAGAIN`, as Linux's `fork`. It is
//! refused with `ENOMEM` when the process would need frames kept for the
//! kernel heap (`mm::frames`): asked for the whole spawn up front
//! ([`spawn_frames`]), and again frame by frame. Every table the new
//! process enters (its parent's children, the scheduler's) grows
//! fallibly before the process is made, so the allocations that cannot
//! fail (`Arc::new` of the process and the task, their names, the console
//! handle: a few hundred bytes) come after the frames were found free and
//! are the heap's to serve from the reserve. What remains: on several
//! CPUs, spawns checked at once may together dip into the reserve by what
//! their heap objects need, and the image is read whole into the heap
//! (bounded by the file system's size) before its frames are counted.

use crate::arch::gdt::{USER_CODE, USER_DATA};
use crate::arch::idt::TrapFrame;
use crate::arch::paging::{AddressSpace, PageFlags};
use crate::block::InFlight;
use crate::fs::FileHandle;
use crate::mm::frames;
use crate::process::{Process, UserTask};
use crate::task::{current, forget, schedule, State, Task, TaskSlot, WaitQueue};
use crate::usercopy;
use abi::errno;
use abi::errno::Errno;
use abi::layout::{PAGE_SIZE, USER_STACK_BOTTOM, USER_STACK_TOP};
use abi::syscall::limits::CHILDREN_MAX;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::AtomicBool;
use hashbrown::HashMap;
use kernel_core::elf::{self, SegmentFlags};
use kernel_core::fs::FdTable;
use kernel_core::ring::SyscallMode;
use spin::Mutex;
use x86_64::instructions::interrupts;

/// Frames a process of `image_pages` pages needs besides them: its user
/// stack and kernel stack, its page tables (the top one, three levels
/// down to the image and to the stack, one more table per 2 MiB) and a
/// few for the heap records of its process and task.
fn spawn_frames(image_pages: u64) -> u64 {
    let stack = (USER_STACK_TOP - USER_STACK_BOTTOM) / PAGE_SIZE;
    let kernel_stack = crate::arch::context::KERNEL_STACK_SIZE as u64 / PAGE_SIZE;
    let tables = 1 + 2 * 3 + (image_pages + stack) / 512;
    let records = 2;
    image_pages + stack + kernel_stack + tables + records
}

/// Starts the program `name` from the file system with `args` (argv[0]
/// included) as a child of `parent` (or as init when `None`). `EAGAIN` if
/// `parent` has [`CHILDREN_MAX`] children or the kernel its most tasks,
/// `ENOMEM` if memory is short (see the module docs).
pub fn spawn(
    name: &str,
    args: &[&[u8]],
    parent: Option<&Arc<Task>>,
    mode: SyscallMode,
) -> Result<Arc<Task>, Errno> {
    // The bounds, before anything is allocated. Only the parent's own task
    // adds to its children (here, in its syscall), so the room made here
    // is still there at the end.
    if let Some(parent) = parent {
        let mut children = parent.process().children.lock();
        if children.len() >= CHILDREN_MAX {
            return Err(errno::EAGAIN);
        }
        children.try_reserve(1).map_err(|_| errno::ENOMEM)?;
    }
    let slot = TaskSlot::take()?;
    // The image is read whole, then loaded: room for both.
    let file_pages = crate::fs::file_size(name)?.div_ceil(PAGE_SIZE);
    frames::headroom(file_pages + spawn_frames(0))?;
    let image = crate::fs::read_whole(name)?;
    let exec = elf::parse_exec(&image).map_err(|e| e.errno())?;
    frames::headroom(spawn_frames(exec.total_pages()))?;
    let mut space = AddressSpace::new()?;
    for segment in &exec.segments {
        load_segment(&mut space, &image, segment)?;
    }
    drop(image);
    let (rsp, argv, start_info) = build_stack(&mut space, args, mode)?;

    let mut files = FdTable::new();
    let console: FileHandle = Arc::new(crate::fs::File::Console);
    for fd in 0..3 {
        files
            .insert_at(fd, console.clone())
            .map_err(|e| e.errno())?;
    }
    let process = Process {
        root: space.root(),
        address_space: Mutex::new(Some(space)),
        files: Mutex::new(files),
        pinned: Mutex::new(HashMap::new()),
        parent: Mutex::new(parent.map(Arc::downgrade)),
        children: Mutex::new(Vec::new()),
        child_exited: WaitQueue::new(),
        exit_status: Mutex::new(None),
        mode,
        start_info,
        is_init: parent.is_none(),
        io: Arc::new(InFlight::default()),
        uses_devices: AtomicBool::new(false),
    };
    let frame = TrapFrame {
        rip: exec.entry,
        cs: u64::from(USER_CODE),
        rflags: 0x202, // IF set
        rsp,
        ss: u64::from(USER_DATA),
        rdi: args.len() as u64,
        rsi: argv,
        rdx: start_info,
        ..TrapFrame::default()
    };
    let root = process.page_table_root();
    let task = Task::new_user(
        slot,
        name,
        Arc::new(process),
        root,
        frame,
        first_entry,
        exited,
    )?;

    if let Some(parent) = parent {
        // Room was made above: this does not allocate.
        parent.process().children.lock().push(task.clone());
    }
    crate::task::start(task.clone());
    Ok(task)
}

/// Maps one ELF segment, page by page, copying its file bytes.
fn load_segment(
    space: &mut AddressSpace,
    image: &[u8],
    segment: &elf::Segment,
) -> Result<(), Errno> {
    let (first_page, pages) = segment.page_range();
    let mut flags = PageFlags::empty();
    if segment.flags.contains(SegmentFlags::WRITE) {
        flags |= PageFlags::WRITABLE;
    }
    if !segment.flags.contains(SegmentFlags::EXEC) {
        flags |= PageFlags::NO_EXECUTE;
    }
    let file_start = segment.vaddr;
    let file_end = segment.vaddr + segment.file_size;
    for i in 0..pages {
        let page = first_page + i * PAGE_SIZE;
        // Bytes of this page that come from the file (`src..src + len` is
        // inside `image`: checked by `parse_exec`).
        let from = page.max(file_start);
        let to = (page + PAGE_SIZE).min(file_end);
        let (offset, bytes) = if from < to {
            let src = (segment.file_offset + (from - segment.vaddr)) as usize;
            let len = (to - from) as usize;
            ((from - page) as usize, &image[src..src + len])
        } else {
            (0, &[][..])
        };
        let frame = frames::alloc_filled(offset, bytes).ok_or(errno::ENOMEM)?;
        if let Err(e) = space.map_user(page, frame, flags) {
            frames::free(frame);
            return Err(e);
        }
    }
    Ok(())
}

/// Maps the user stack and writes the arguments at its top, then the
/// `abi::StartInfo` (only `mode` filled in yet) below them. Returns the
/// initial stack pointer, the address of the `Arg` array and that of the
/// `StartInfo`.
fn build_stack(
    space: &mut AddressSpace,
    args: &[&[u8]],
    mode: SyscallMode,
) -> Result<(u64, u64, u64), Errno> {
    let mut page = USER_STACK_BOTTOM;
    while page < USER_STACK_TOP {
        let frame = frames::alloc_zeroed().ok_or(errno::ENOMEM)?;
        if let Err(e) = space.map_user(page, frame, PageFlags::WRITABLE | PageFlags::NO_EXECUTE) {
            frames::free(frame);
            return Err(e);
        }
        page += PAGE_SIZE;
    }
    // Strings first, from the top down, then the aligned Arg array.
    let mut top = USER_STACK_TOP;
    let mut descriptors = Vec::new();
    descriptors
        .try_reserve_exact(args.len())
        .map_err(|_| errno::ENOMEM)?;
    for arg in args {
        top -= arg.len() as u64;
        usercopy::UserSlice::new(top, arg.len() as u64)?.write_from(space, arg)?;
        descriptors.push(abi::Arg {
            ptr: top,
            len: arg.len() as u64,
        });
    }
    top &= !15;
    let array_bytes = (descriptors.len() * core::mem::size_of::<abi::Arg>()) as u64;
    top -= array_bytes;
    top &= !15;
    let argv = top;
    for (i, d) in descriptors.iter().enumerate() {
        let at = argv + (i * core::mem::size_of::<abi::Arg>()) as u64;
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&d.ptr.to_le_bytes());
        bytes[8..].copy_from_slice(&d.len.to_le_bytes());
        usercopy::UserSlice::new(at, 16)?.write_from(space, &bytes)?;
    }
    let info = (argv - core::mem::size_of::<abi::StartInfo>() as u64) & !15;
    let start = abi::StartInfo {
        mode: mode_value(mode),
        ..abi::StartInfo::default()
    };
    usercopy::write_value(space, info, &start)?;
    Ok((info, argv, info))
}

/// The `abi::syscall::mode` value of `mode`.
pub fn mode_value(mode: SyscallMode) -> u64 {
    match mode {
        SyscallMode::Direct => abi::syscall::mode::DIRECT,
        SyscallMode::RingBased => abi::syscall::mode::RING_BASED,
    }
}

/// Runs in the kernel, on the new process's own stack and page tables,
/// right before it first enters user mode (the start of a user task, at
/// its first switch). In `RingBased` mode it sets up the process's system ring
/// and describes it in the process's `StartInfo`; a process that cannot
/// get one ends before it runs, with [`abi::status::NO_SYSTEM_RING`].
fn first_entry() {
    let me = current();
    let process = me.process();
    if process.mode != SyscallMode::RingBased {
        return;
    }
    let made = crate::rings::setup_system_ring().and_then(|(backend, ring)| {
        let info = abi::StartInfo {
            mode: abi::syscall::mode::RING_BASED,
            backend,
            ring_addr: ring.addr,
            sq_entries: ring.sq_entries,
            cq_entries: ring.cq_entries,
        };
        process.with_address_space(|space| usercopy::write_value(space, process.start_info, &info))
    });
    if let Err(errno) = made {
        log::error!(
            "process {} ({}): cannot set up its system ring: {}; ending it",
            me.id,
            me.name,
            errno
        );
        drop(me);
        exit_current(abi::status::NO_SYSTEM_RING);
    }
}

/// Ends the current process with `status`, releasing its address space,
/// files and rings, and wakes its parent. Never returns.
pub fn exit_current(status: i32) -> ! {
    interrupts::disable();
    let me = current();
    let process = me.process();
    crate::rings::teardown(me.id);
    // Taken out whole (nothing allocated), closed outside the lock.
    let files = core::mem::take(&mut *process.files.lock());
    drop(files);
    let pinned = core::mem::take(&mut *process.pinned.lock());
    drop(pinned);
    // The console forgets it (foreground, raw mode) and drops its pending
    // ring reads of fd 0, which hold its pages.
    crate::console::process_ended(me.id);
    // A device may still write the process's frames: they go only once
    // its I/O in flight is done (with rings and files gone, none starts).
    let idle = process.io.count() == 0 || {
        interrupts::enable();
        let idle = process.io.wait_idle(crate::block::EXIT_IO_TIMEOUT_NS);
        interrupts::disable();
        idle
    };
    let space = process.address_space.lock().take();
    if idle {
        drop(space);
    } else {
        log::error!(
            "process {}: {} device I/O still in flight after {} s; its memory is leaked, not freed under the device",
            me.id,
            process.io.count(),
            crate::block::EXIT_IO_TIMEOUT_NS / 1_000_000_000
        );
        core::mem::forget(space);
    }
    *process.exit_status.lock() = Some(status);

    // Children: zombies are dropped now, live ones become orphans that
    // are forgotten when they end.
    let children = core::mem::take(&mut *process.children.lock());
    for child in children {
        *child.process().parent.lock() = None;
        if child.state() == State::Zombie {
            forget(child.id);
        }
    }

    if process.is_init {
        shutdown(status);
    }
    // The parent learns of it in `exited`, once this task is off its CPU.
    me.set_state(State::Zombie);
    drop(me);
    schedule();
    unreachable!("an exited process was scheduled");
}

/// A process that ended is off its CPU: wake its parent to reap it, or, an
/// orphan, forget it.
fn exited(task: Arc<Task>) {
    let parent = task
        .process()
        .parent
        .lock()
        .as_ref()
        .and_then(Weak::upgrade);
    match parent {
        Some(parent) => {
            parent.process().child_exited.wake_all();
        }
        None => forget(task.id),
    }
}

/// Ends the machine (init's end, or the `poweroff` call): success when
/// `code` is 0.
pub fn shutdown(code: i32) -> ! {
    // The disks' file systems are written back and marked clean first
    // (this sleeps for the file-system worker).
    crate::fs::unmount_disks();
    interrupts::disable();
    log::info!(
        "shutdown: exit code {code}; task switches per CPU {:?}",
        crate::task::switches_per_cpu()
    );
    crate::arch::cpu::exit_machine(code == 0)
}

/// Waits for a child (`pid`, or any when `pid == -1`) to end and reaps it.
/// Returns its pid and exit status.
pub fn wait_child(pid: i64) -> Result<(u64, i32), Errno> {
    let me = current();
    let process = me.process();
    {
        let children = process.children.lock();
        let any = children.iter().any(|c| pid == -1 || c.id as i64 == pid);
        if !any {
            return Err(errno::ECHILD);
        }
    }
    let child = process.child_exited.wait_until(|| {
        let mut children = process.children.lock();
        let index = children.iter().position(|c| {
            (pid == -1 || c.id as i64 == pid) && c.state() == State::Zombie && !c.on_cpu()
        })?;
        Some(children.swap_remove(index))
    });
    forget(child.id);
    let status = child.process().exit_status.lock().unwrap_or(0);
    Ok((child.id, status))
}
