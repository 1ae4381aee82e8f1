//! Memory management: physical frames and the kernel heap.

pub mod frames;
pub mod heap;
