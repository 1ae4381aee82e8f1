//! The first instructions: two 32-bit entry points (multiboot2 from GRUB,
//! PVH from `qemu -kernel`), the switch to long mode on boot page tables, and
//! the jump to the higher-half Rust entry.
//!
//! Boot page tables (in `.boot.data`, identity addressed):
//! - PML4[0]   -> identity map of the first 4 GiB (only for the jump; the
//!   kernel address spaces built later leave it out),
//! - PML4[256] -> the same 4 GiB at [`super::PHYS_OFFSET`] (the direct map),
//! - PML4[511] -> PDPT[510] -> the first 1 GiB at `0xffff_ffff_8000_0000`,
//!   where the kernel is linked.
//!
//! All with 2 MiB pages. The Rust entry gets the boot protocol's magic in
//! `edi` and the physical address of its boot information in `esi`.

use core::arch::global_asm;

/// Multiboot2 bootloader magic, as found in `eax` at entry.
pub const MULTIBOOT2_MAGIC: u32 = 0x36d7_6289;
/// PVH start-info magic (`hvm_start_info::magic`).
pub const PVH_MAGIC: u32 = 0x336e_c578;

global_asm!(
    r#"
    .section .multiboot2_header, "a"
    .balign 8
mb2_header_start:
    .long 0xe85250d6                /* magic */
    .long 0                         /* architecture: i386 protected mode */
    .long mb2_header_end - mb2_header_start
    .long -(0xe85250d6 + 0 + (mb2_header_end - mb2_header_start))
    /* framebuffer tag (optional): a linear 1024x768, 32 bits per pixel,
       for the screen console; grub.cfg's gfxpayload=keep agrees */
    .balign 8
    .short 5
    .short 1
    .long 20
    .long 1024
    .long 768
    .long 32
    /* end tag */
    .balign 8
    .short 0
    .short 0
    .long 8
mb2_header_end:

    .section .note.pvh, "a"
    .balign 4
    .long 4                         /* namesz */
    .long 8                         /* descsz */
    .long 18                        /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .quad _start_pvh

    .section .boot.text, "ax"
    .code32
    .global _start_multiboot2
_start_multiboot2:
    cli
    mov edi, eax                    /* multiboot2 magic */
    mov esi, ebx                    /* multiboot2 information (physical) */
    jmp 2f

    .global _start_pvh
_start_pvh:
    cli
    mov edi, {pvh_magic}
    mov esi, ebx                    /* hvm_start_info (physical) */

2:
    mov esp, offset boot_stack32_top
    /* Enable PAE. */
    mov eax, cr4
    or eax, (1 << 5)
    mov cr4, eax
    mov eax, offset boot_pml4
    mov cr3, eax
    /* EFER: long mode enable, no-execute enable. */
    mov ecx, 0xC0000080
    rdmsr
    or eax, (1 << 8) | (1 << 11)
    wrmsr
    /* Paging on, write protect in ring 0, protected mode stays on. */
    mov eax, cr0
    or eax, (1 << 31) | (1 << 16) | 1
    mov cr0, eax
    lgdt [boot_gdt_ptr]
    push 0x08
    mov eax, offset boot_long_mode
    push eax
    retf

    .code64
boot_long_mode:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    movabs rsp, offset {stack} + {stack_size}
    xor ebp, ebp
    movabs rax, offset kernel_boot_entry
    call rax
4:
    hlt
    jmp 4b

    .section .boot.data, "aw"
    .balign 4096
    .global boot_pml4
boot_pml4:
    .quad boot_pdpt_low + 0x3
    .fill 255, 8, 0
    .quad boot_pdpt_low + 0x3
    .fill 254, 8, 0
    .quad boot_pdpt_high + 0x3
    .global boot_pdpt_low
boot_pdpt_low:
    .quad boot_pd + 0x3
    .quad boot_pd + 0x1000 + 0x3
    .quad boot_pd + 0x2000 + 0x3
    .quad boot_pd + 0x3000 + 0x3
    .fill 508, 8, 0
boot_pdpt_high:
    .fill 510, 8, 0
    .quad boot_pd + 0x3
    .quad 0
boot_pd:
    .set i, 0
    .rept 2048
    .quad (i << 21) | 0x83
    .set i, i + 1
    .endr

    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF        /* 0x08: 64-bit kernel code */
    .quad 0x00CF92000000FFFF        /* 0x10: kernel data */
boot_gdt_ptr:
    .short boot_gdt_ptr - boot_gdt - 1
    .long boot_gdt

    .balign 16
    .fill 256, 1, 0
boot_stack32_top:
    .text
    "#,
    pvh_magic = const PVH_MAGIC,
    stack = sym super::cpu::BOOT_STACK,
    stack_size = const super::cpu::BOOT_STACK_SIZE,
);
