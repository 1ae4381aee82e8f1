//! Process entry, the argument list and the panic handler.
//!
//! The kernel jumps to [`_start`] with `rsp` 16-byte aligned, the argument
//! count in `rdi`, a pointer to that many [`abi::Arg`]s in `rsi` and a
//! pointer to the [`abi::StartInfo`] in `rdx`. `_start` calls [`start`],
//! which hands the `StartInfo` to [`crate::sysring`] (the syscall mode and
//! the system ring), wraps the arguments in [`Args`], runs the program's `main`
//! (declared with [`entry!`](crate::entry)) and exits with its return value.

use abi::Arg;
use core::iter::Map;
use core::slice;

/// The arguments a program was started with; argument 0 is its name.
///
/// The strings live in the program's memory (the kernel copies them onto the
/// top of the stack before entry) for the whole life of the process.
#[derive(Clone, Copy)]
pub struct Args {
    /// Invariant: every entry describes `len` readable bytes at `ptr` that
    /// nothing writes while the process runs.
    argv: &'static [Arg],
}

/// Iterator over the arguments as byte strings.
pub type ArgsIter = Map<slice::Iter<'static, Arg>, fn(&'static Arg) -> &'static [u8]>;

impl Args {
    /// Number of arguments, including the program name.
    pub fn len(&self) -> usize {
        self.argv.len()
    }

    /// Whether there are no arguments at all (not even a program name).
    pub fn is_empty(&self) -> bool {
        self.argv.is_empty()
    }

    /// Argument `index` as bytes.
    pub fn get(&self, index: usize) -> Option<&'static [u8]> {
        self.argv.get(index).map(bytes)
    }

    /// Argument `index` as text, or `None` if it is missing or not UTF-8.
    pub fn get_str(&self, index: usize) -> Option<&'static str> {
        self.get(index)
            .and_then(|arg| core::str::from_utf8(arg).ok())
    }

    /// All arguments as bytes.
    pub fn iter(&self) -> ArgsIter {
        self.argv
            .iter()
            .map(bytes as fn(&'static Arg) -> &'static [u8])
    }

    /// All arguments as text; an argument that is not UTF-8 reads as `"\u{FFFD}"`.
    pub fn iter_str(&self) -> impl Iterator<Item = &'static str> {
        self.iter()
            .map(|arg| core::str::from_utf8(arg).unwrap_or("\u{FFFD}"))
    }
}

impl IntoIterator for Args {
    type Item = &'static [u8];
    type IntoIter = ArgsIter;

    fn into_iter(self) -> ArgsIter {
        self.iter()
    }
}

fn bytes(arg: &'static Arg) -> &'static [u8] {
    if arg.len == 0 {
        return &[];
    }
    // SAFETY: `Args` only holds entries the kernel handed to `start`, each
    // naming `len` bytes of mapped, initialised user memory that stay valid
    // and unwritten for the life of the process (the entry contract).
    unsafe { slice::from_raw_parts(arg.ptr as *const u8, arg.len as usize) }
}

/// Declares `main` as the program's entry: `fn main(args: Args) -> i32`.
///
/// The return value becomes the exit code. Use it once, at the crate root of
/// a `#![no_std] #![no_main]` binary: `libuser::entry!(main);`
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        /// Called by `libuser`'s `start` with the program's arguments.
        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub fn __libuser_main(args: $crate::Args) -> i32 {
            let main: fn($crate::Args) -> i32 = $main;
            main(args)
        }

        // Refers to `_start` from the binary itself, so the linker always
        // pulls it out of `libuser` whatever the linker script says.
        #[used]
        static __LIBUSER_ENTRY: unsafe extern "C" fn() -> ! = $crate::rt::_start;
    };
}

/// The process entry point the kernel jumps to.
///
/// # Safety
///
/// Only the kernel may enter here, as described in the module docs: `rsp`
/// 16-byte aligned, `rdi` = argc, `rsi` = pointer to argc valid `Arg`s,
/// `rdx` = pointer to a valid `StartInfo` (or null).
#[cfg(not(test))]
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _start() -> ! {
    core::arch::naked_asm!(
        // A zero frame pointer ends any backtrace here.
        "xor ebp, ebp",
        // rsp % 16 == 0 before the call, as the SysV ABI wants; argc, argv
        // and the StartInfo are already in rdi, rsi and rdx, the first
        // three argument registers.
        "call {start}",
        "ud2",
        start = sym start,
    )
}

#[cfg(not(test))]
extern "C" fn start(argc: u64, argv: *const Arg, info: *const abi::StartInfo) -> ! {
    // SAFETY: the kernel passes a pointer to an initialised `StartInfo` in
    // the stack page (or null); it is read once, before anything else.
    crate::sysring::init(unsafe { info.as_ref() });
    let argv: &'static [Arg] = if argc == 0 || argv.is_null() {
        &[]
    } else {
        // SAFETY: the kernel passes `argc` initialised `Arg`s at `argv`, in
        // memory that stays mapped for the life of the process.
        unsafe { slice::from_raw_parts(argv, argc as usize) }
    };
    unsafe extern "Rust" {
        fn __libuser_main(args: Args) -> i32;
    }
    // SAFETY: `entry!` defines `__libuser_main` with exactly this signature;
    // a binary without it fails to link.
    let code = unsafe { __libuser_main(Args { argv }) };
    crate::sys::exit(code)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    match info.location() {
        Some(at) => crate::eprintln!(
            "panicked at {}:{}: {}",
            at.file(),
            at.line(),
            info.message()
        ),
        None => crate::eprintln!("panicked: {}", info.message()),
    }
    crate::sys::exit(101)
}
