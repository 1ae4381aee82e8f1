//! Memory management: physical frames, the kernel heap, frames shared
//! with user space, and DMA buffers shared with devices.

#[allow(
    dead_code,
    reason = "the DMA API for drivers; each driver uses part of it"
)]
pub mod dma;
pub mod frames;
pub mod heap;
pub mod shared;
