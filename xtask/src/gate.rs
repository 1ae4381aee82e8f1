//! The instruction-count regression gate: a test boot (configuration key
//! `icount_gate = "NAME"`) runs the bench program under QEMU's
//! deterministic mode (`-icount shift=0,sleep=off -seed 1 -rtc
//! base=...,clock=vm`, [`crate::qemu::Emulation::Icount`]), where a
//! case's ns/op is guest instructions per op and the same from run to run
//! and machine to machine, and compares each case with the figure recorded
//! in `configs/NAME.baseline`. A case more than [`TOLERANCE`] above its
//! figure fails the boot: a regression gate on a number that does not
//! drift, never a timing assertion. Updating a figure is a reviewed change
//! with its reason in the commit.
//!
//! Baseline format: one `CASE INSTRUCTIONS` pair per line; `#` starts a
//! comment.

use crate::bench::{parse_bench_log, CaseOutcome};

/// How far above its recorded figure a case may go.
pub const TOLERANCE: f64 = 0.10;

/// The recorded figures: `(case, instructions per op)`.
pub fn parse_baseline(text: &str) -> Result<Vec<(String, f64)>, String> {
    let mut figures = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(case), Some(value), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!("line {}: want `CASE INSTRUCTIONS`", number + 1));
        };
        let value: f64 = value
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v > 0.0)
            .ok_or_else(|| format!("line {}: `{value}` is not a positive number", number + 1))?;
        if figures.iter().any(|(known, _)| known == case) {
            return Err(format!("line {}: {case} recorded twice", number + 1));
        }
        figures.push((case.to_string(), value));
    }
    if figures.is_empty() {
        return Err("no figures".into());
    }
    Ok(figures)
}

/// Compares the bench log of a deterministic boot with the recorded
/// figures: every recorded case must have been measured, at most
/// [`TOLERANCE`] above its figure. Returns a line per case either way.
pub fn check(baseline: &[(String, f64)], log: &str) -> Result<Vec<String>, String> {
    let parsed = parse_bench_log(log);
    if let Some(panic) = parsed.panic {
        return Err(format!("panic: {panic}"));
    }
    if !parsed.done {
        return Err("no `BENCH DONE` line".into());
    }
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    for (case, recorded) in baseline {
        let measured = parsed.cases.iter().find(|c| &c.case == case);
        match measured.map(|c| &c.outcome) {
            Some(CaseOutcome::Measured { ns_per_op, .. }) => {
                let limit = recorded * (1.0 + TOLERANCE);
                let change = (ns_per_op / recorded - 1.0) * 100.0;
                let line = format!(
                    "{case}: {ns_per_op:.1} instructions/op (recorded {recorded:.1}, {change:+.1}%, limit {limit:.1})"
                );
                if *ns_per_op > limit {
                    failures.push(line.clone());
                }
                lines.push(line);
            }
            Some(CaseOutcome::Skipped(why)) => failures.push(format!("{case}: skipped ({why})")),
            None => failures.push(format!("{case}: not measured")),
        }
    }
    if failures.is_empty() {
        Ok(lines)
    } else {
        Err(format!(
            "above the recorded figures: {}",
            failures.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "BENCH START\r\n\
        BENCH case=nop_b32 ops=20000 ns_per_op=250.0 cycles_per_op=250\r\n\
        BENCH case=read4k_b32 ops=2016 ns_per_op=1342.0 cycles_per_op=1342\n\
        BENCH case=sqpoll_b1 skipped=ENOSYS\n\
        BENCH DONE\n";

    #[test]
    fn baselines_parse_and_refuse_nonsense() {
        let figures =
            parse_baseline("# comment\nnop_b32 240 # why\n\nread4k_b32 1300.5\n").unwrap();
        assert_eq!(
            figures,
            [
                ("nop_b32".to_string(), 240.0),
                ("read4k_b32".to_string(), 1300.5)
            ]
        );
        assert!(parse_baseline("").is_err());
        assert!(parse_baseline("nop_b32").is_err());
        assert!(parse_baseline("nop_b32 x").is_err());
        assert!(parse_baseline("nop_b32 -1").is_err());
        assert!(parse_baseline("nop_b32 1 2").is_err());
        assert!(parse_baseline("a 1\na 2").is_err());
    }

    #[test]
    fn within_ten_percent_passes_above_fails() {
        let ok = parse_baseline("nop_b32 240\nread4k_b32 1300").unwrap();
        let lines = check(&ok, LOG).unwrap();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains("+4.2%"), "{lines:?}");
        // 250 > 220 * 1.1 = 242.
        let tight = parse_baseline("nop_b32 220\nread4k_b32 1300").unwrap();
        let err = check(&tight, LOG).unwrap_err();
        assert!(
            err.contains("nop_b32") && !err.contains("read4k_b32"),
            "{err}"
        );
        // A recorded case that did not run, or was skipped, fails.
        let missing = parse_baseline("nop_b1 800").unwrap();
        assert!(check(&missing, LOG).unwrap_err().contains("not measured"));
        let skipped = parse_baseline("sqpoll_b1 800").unwrap();
        assert!(check(&skipped, LOG).unwrap_err().contains("skipped"));
        // No BENCH DONE: the run did not finish.
        assert!(check(
            &ok,
            "BENCH case=nop_b32 ops=1 ns_per_op=1 cycles_per_op=1\n"
        )
        .is_err());
    }
}
