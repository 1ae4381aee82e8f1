//! User pointers are claims. [`UserSlice`] is the one checked type through
//! which the kernel reads or writes user memory.
//!
//! A slice is accepted only if it lies wholly in the user half without
//! overflow. A copy first walks the page tables for every page it touches
//! (present, user, and writable for writes) and only then copies, through
//! the direct map, so a bad page anywhere in the range gives `EFAULT` with
//! nothing copied, and the kernel never takes a fault on user memory.

use crate::arch::paging::{AddressSpace, PageFlags};
use crate::arch::phys_to_virt;
use abi::errno::Errno;
use abi::errno::EFAULT;
use abi::layout::{PAGE_SIZE, USER_END};
use alloc::vec::Vec;

/// A range of user memory `[addr, addr + len)` that passed the range check.
#[derive(Clone, Copy, Debug)]
pub struct UserSlice {
    addr: u64,
    len: u64,
}

impl UserSlice {
    /// Checks that the range is inside the user half.
    pub fn new(addr: u64, len: u64) -> Result<Self, Errno> {
        let end = addr.checked_add(len).ok_or(EFAULT)?;
        if end > USER_END {
            return Err(EFAULT);
        }
        Ok(Self { addr, len })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// The range without its first `n` bytes.
    pub fn skip(&self, n: u64) -> Self {
        let n = n.min(self.len);
        Self {
            addr: self.addr + n,
            len: self.len - n,
        }
    }

    /// The first `len` bytes (`len <= self.len()`).
    pub fn prefix(&self, len: u64) -> Self {
        Self {
            addr: self.addr,
            len: len.min(self.len),
        }
    }

    /// Walks the range page by page, calling `f(physical address, length)`
    /// for each piece; stops at the first page that is not mapped for user
    /// access (and writable when `write`).
    fn walk(
        &self,
        space: &AddressSpace,
        write: bool,
        mut f: impl FnMut(u64, usize),
    ) -> Result<(), Errno> {
        let mut addr = self.addr;
        let end = self.addr + self.len;
        while addr < end {
            let page = addr & !(PAGE_SIZE - 1);
            let (frame, flags) = space.translate(page).ok_or(EFAULT)?;
            if !flags.contains(PageFlags::USER) || (write && !flags.contains(PageFlags::WRITABLE)) {
                return Err(EFAULT);
            }
            let take = (page + PAGE_SIZE).min(end) - addr;
            f(frame + (addr - page), take as usize);
            addr += take;
        }
        Ok(())
    }

    /// Checks that every page of the range is mapped for user access (and
    /// writable when `write`), without copying.
    pub fn check(&self, space: &AddressSpace, write: bool) -> Result<(), Errno> {
        self.walk(space, write, |_, _| {})
    }

    /// Copies the user bytes into `dst` (whose length must equal `len`).
    /// Nothing is copied unless the whole range is readable.
    pub fn read_into(&self, space: &AddressSpace, dst: &mut [u8]) -> Result<(), Errno> {
        assert_eq!(
            dst.len() as u64,
            self.len,
            "UserSlice::read_into length mismatch"
        );
        self.check(space, false)?;
        let mut done = 0;
        self.walk(space, false, |phys, len| {
            // SAFETY: `phys..phys+len` lies in a mapped user frame (checked
            // by `walk`), which the direct map covers; `dst` has room for
            // `len` more bytes (the lengths add up to `self.len`).
            unsafe {
                core::ptr::copy_nonoverlapping(
                    phys_to_virt(phys) as *const u8,
                    dst[done..].as_mut_ptr(),
                    len,
                );
            }
            done += len;
        })
    }

    /// Copies the user bytes into a new vector, refusing more than `max`.
    pub fn read_vec(&self, space: &AddressSpace, max: u64) -> Result<Vec<u8>, Errno> {
        if self.len > max {
            return Err(abi::errno::EINVAL);
        }
        let mut buf = alloc::vec![0u8; self.len as usize];
        self.read_into(space, &mut buf)?;
        Ok(buf)
    }

    /// Copies `src` (whose length must equal `len`) into user memory.
    /// Nothing is written unless the whole range is writable.
    pub fn write_from(&self, space: &AddressSpace, src: &[u8]) -> Result<(), Errno> {
        assert_eq!(
            src.len() as u64,
            self.len,
            "UserSlice::write_from length mismatch"
        );
        self.check(space, true)?;
        let mut done = 0;
        self.walk(space, true, |phys, len| {
            // SAFETY: `phys..phys+len` lies in a mapped, writable user frame
            // (checked by `walk`) in the direct map; `src` holds `len` more
            // bytes.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    src[done..].as_ptr(),
                    phys_to_virt(phys) as *mut u8,
                    len,
                );
            }
            done += len;
        })
    }
}

/// Plain-old-data types that may be copied to and from user memory as bytes.
///
/// # Safety
/// Every bit pattern must be a valid value and the type must have no padding.
pub unsafe trait Pod: Copy + Default {}
// SAFETY: `#[repr(C)]` structs of u64 fields, no padding.
unsafe impl Pod for abi::Arg {}
// SAFETY: as above.
unsafe impl Pod for abi::SysInfo {}
// SAFETY: as above.
unsafe impl Pod for abi::FileStat {}
// SAFETY: `#[repr(C)]`: three u64, two u32 and a byte array, 48 bytes
// with no padding (checked by the size assertion in `abi`).
unsafe impl Pod for abi::TaskInfo {}
// SAFETY: `#[repr(C)]`, three `u64`s and two `u32`s, no padding.
unsafe impl Pod for abi::StartInfo {}
// SAFETY: a plain integer.
unsafe impl Pod for i32 {}

/// Reads one `T` from user memory.
pub fn read_value<T: Pod>(space: &AddressSpace, addr: u64) -> Result<T, Errno> {
    let mut value = T::default();
    // SAFETY: `T: Pod` has no padding, so it may be viewed as bytes, and any
    // bytes written into it form a valid `T`.
    let bytes = unsafe {
        core::slice::from_raw_parts_mut(&mut value as *mut T as *mut u8, core::mem::size_of::<T>())
    };
    UserSlice::new(addr, bytes.len() as u64)?.read_into(space, bytes)?;
    Ok(value)
}

/// Writes one `T` to user memory.
pub fn write_value<T: Pod>(space: &AddressSpace, addr: u64, value: &T) -> Result<(), Errno> {
    // SAFETY: `T: Pod` has no padding, so all its bytes are initialised.
    let bytes = unsafe {
        core::slice::from_raw_parts(value as *const T as *const u8, core::mem::size_of::<T>())
    };
    UserSlice::new(addr, bytes.len() as u64)?.write_from(space, bytes)
}
