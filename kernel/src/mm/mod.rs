//! Memory management: physical frames, the kernel heap, and frames shared
//! with user space.

pub mod frames;
pub mod heap;
pub mod shared;
