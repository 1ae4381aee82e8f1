//! A small harness for test programs that run inside the kernel.
//!
//! Output, one block per case:
//!
//! ```text
//! === Title ===
//!
//! [TEST] case name
//!   detail lines printed by the case
//!   [PASS]
//!
//! === Title Complete ===
//! 12 passed, 0 failed
//! ```
//!
//! A case is a closure returning [`TestResult`]. The `check*` macros return
//! a failure naming the file and line; `?` on a [`Errno`] result does too.

use crate::sys;
use abi::errno::Errno;
use abi::SysInfo;
use alloc::format;
use alloc::string::String;
use core::fmt;
use core::panic::Location;

/// Why a case did not pass.
#[derive(Debug)]
pub enum Outcome {
    /// The feature under test is broken; the text says where and how.
    Fail(String),
    /// The case could not run here; the text says why.
    Skip(String),
}

/// What a case returns.
pub type TestResult = Result<(), Outcome>;

/// A named case, for tables of cases run with [`TestRun::cases`].
pub type Case = (&'static str, fn() -> TestResult);

impl From<Errno> for Outcome {
    /// An unexpected error from `?`, located at the `?`.
    #[track_caller]
    fn from(errno: Errno) -> Self {
        let at = Location::caller();
        fail_at(
            at.file(),
            at.line(),
            format_args!("unexpected error {errno}"),
        )
    }
}

/// A failure located at `file:line`. Used by the macros.
pub fn fail_at(file: &str, line: u32, message: fmt::Arguments<'_>) -> Outcome {
    Outcome::Fail(format!("{file}:{line}: {message}"))
}

/// A skip with a formatted reason. Used by [`skip!`](crate::skip).
pub fn skip_because(reason: fmt::Arguments<'_>) -> Outcome {
    Outcome::Skip(format!("{reason}"))
}

/// Counts the cases of one titled run and prints their results.
pub struct TestRun {
    title: &'static str,
    passed: u32,
    failed: u32,
    skipped: u32,
}

impl TestRun {
    /// Starts a run, printing its title.
    pub fn new(title: &'static str) -> Self {
        crate::println!("=== {title} ===");
        crate::println!();
        TestRun {
            title,
            passed: 0,
            failed: 0,
            skipped: 0,
        }
    }

    /// Runs one case and prints its outcome.
    pub fn case(&mut self, name: &str, case: impl FnOnce() -> TestResult) {
        crate::println!("[TEST] {name}");
        match case() {
            Ok(()) => {
                self.passed += 1;
                crate::println!("  [PASS]");
            }
            Err(Outcome::Fail(reason)) => {
                self.failed += 1;
                crate::println!("  [FAIL] {reason}");
            }
            Err(Outcome::Skip(reason)) => {
                self.skipped += 1;
                crate::println!("  [SKIP] {reason}");
            }
        }
        crate::println!();
    }

    /// Runs each case of a table in order.
    pub fn cases(&mut self, cases: &[Case]) {
        for &(name, case) in cases {
            self.case(name, case);
        }
    }

    /// Prints the totals; true when no case failed.
    pub fn finish(self) -> bool {
        crate::println!("=== {} Complete ===", self.title);
        crate::println!(
            "{}",
            Summary {
                passed: self.passed,
                failed: self.failed,
                skipped: self.skipped
            }
        );
        self.failed == 0
    }
}

/// The totals line: `N passed, N failed`, plus `, N skipped` if any were.
struct Summary {
    passed: u32,
    failed: u32,
    skipped: u32,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} passed, {} failed", self.passed, self.failed)?;
        if self.skipped > 0 {
            write!(f, ", {} skipped", self.skipped)?;
        }
        Ok(())
    }
}

/// Prints an indented detail line inside a case.
#[macro_export]
macro_rules! detail {
    ($($arg:tt)*) => { $crate::println!("  {}", format_args!($($arg)*)) };
}

/// Fails the case at this line with a formatted message.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err($crate::test::fail_at(file!(), line!(), format_args!($($arg)*)))
    };
}

/// Skips the case with a formatted reason.
#[macro_export]
macro_rules! skip {
    ($($arg:tt)*) => {
        return Err($crate::test::skip_because(format_args!($($arg)*)))
    };
}

/// Fails the case unless `cond` holds: `check!(cond)` or `check!(cond, "fmt", args..)`.
#[macro_export]
macro_rules! check {
    ($cond:expr $(,)?) => {
        $crate::check!($cond, "check failed: {}", stringify!($cond))
    };
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            $crate::fail!($($msg)+);
        }
    };
}

/// Fails the case unless `left == right`, showing both values.
#[macro_export]
macro_rules! check_eq {
    ($left:expr, $right:expr $(,)?) => {
        match (&$left, &$right) {
            (left, right) => {
                if *left != *right {
                    $crate::fail!(
                        "{} == {} failed: {:?} != {:?}",
                        stringify!($left),
                        stringify!($right),
                        left,
                        right
                    );
                }
            }
        }
    };
}

/// Fails the case unless `result` is `Err(e)` with the [`Errno`] `e`
/// matching the pattern, such as `EFAULT` or `EFAULT | EINVAL` (constants
/// from `abi::errno`). An optional format string after the pattern says what was
/// called; by default the failure quotes the expression.
#[macro_export]
macro_rules! check_err {
    ($result:expr, $errno:pat $(,)?) => {
        $crate::check_err!($result, $errno, "{}", stringify!($result))
    };
    ($result:expr, $errno:pat, $($context:tt)+) => {
        match $result {
            Err($errno) => {}
            other => $crate::fail!(
                "{}: expected Err({}), got {:?}",
                format_args!($($context)+),
                stringify!($errno),
                other
            ),
        }
    };
}

/// How much the kernel heap may grow over a leak check's runs (slab
/// caches, a table reaching a new capacity); a leaked ring or task is far
/// more.
pub const HEAP_SLACK: u64 = 8 * 1024;

/// Lets the kernel finish any deferred clean-up, then reads the counters.
///
/// A reaped child's last reference (its kernel stack, its task) may still
/// be dropped on the CPU it last ran on, a moment after `wait` returned:
/// with several CPUs the counters are read until two readings 1 ms apart
/// agree (at most 100 times), so the figures compared are at rest.
pub fn settle() -> Result<SysInfo, Errno> {
    let counters = |i: &SysInfo| (i.free_frames, i.heap_used, i.tasks);
    let mut last = sys::sysinfo()?;
    for _ in 0..100 {
        for _ in 0..4 {
            sys::yield_now()?;
        }
        sys::sleep_ns(1_000_000)?;
        let now = sys::sysinfo()?;
        if counters(&now) == counters(&last) {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_mentions_skips_only_when_there_are_some() {
        let line = |passed, failed, skipped| {
            format!(
                "{}",
                Summary {
                    passed,
                    failed,
                    skipped
                }
            )
        };
        assert_eq!(line(3, 1, 0), "3 passed, 1 failed");
        assert_eq!(line(3, 0, 2), "3 passed, 0 failed, 2 skipped");
    }

    fn checks(value: u32, result: Result<u64, Errno>) -> TestResult {
        crate::check!(value > 1, "value {} too small", value);
        crate::check_eq!(value, 5);
        crate::check_err!(result, abi::errno::EFAULT | abi::errno::EINVAL);
        Ok(())
    }

    fn failure(result: TestResult) -> String {
        match result {
            Err(Outcome::Fail(reason)) => reason,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn check_macros_pass_and_fail_with_locations() {
        let efault = Err(abi::errno::EFAULT);
        assert!(checks(5, efault).is_ok());
        assert!(checks(5, Err(abi::errno::EINVAL)).is_ok());
        let with_context = || -> TestResult {
            crate::check_err!(Ok::<u64, Errno>(1), abi::errno::EBADF, "fd {}", 7);
            Ok(())
        };
        assert!(
            failure(with_context()).ends_with("fd 7: expected Err(abi::errno::EBADF), got Ok(1)")
        );
        assert!(failure(checks(1, efault)).ends_with("value 1 too small"));
        assert!(failure(checks(4, efault)).contains("value == 5 failed: 4 != 5"));
        let got = failure(checks(5, Ok(3)));
        assert!(got.starts_with(file!()), "{got}");
        assert!(
            got.contains("expected Err(abi::errno::EFAULT | abi::errno::EINVAL), got Ok(3)"),
            "{got}"
        );
    }

    #[test]
    fn question_mark_on_errno_fails_at_the_question_mark() {
        fn case() -> TestResult {
            Err(abi::errno::ENOENT)?;
            Ok(())
        }
        let line = line!() - 3;
        assert_eq!(
            failure(case()),
            format!("{}:{line}: unexpected error ENOENT", file!())
        );
    }
}
