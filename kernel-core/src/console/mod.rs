//! The console's machine-independent parts: the line discipline between
//! input and the readers of fd 0 ([`ldisc`]), and the text console drawn
//! on a framebuffer ([`text`]).

pub mod ldisc;
pub mod text;
