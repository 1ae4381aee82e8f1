//! Architecture doorway. Only x86_64 exists; another architecture would
//! provide the same names.

mod x86_64;
pub use self::x86_64::*;
