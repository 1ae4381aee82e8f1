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
//! A case may also carry a goal, `goal=MAX`: a ceiling it must stay
//! under whatever its recorded figure (a performance goal of an issue, as
//! a multiple of what Linux 6.1 counts for the same case under the same
//! flags, which is as deterministic as our own figure). With a goal a case
//! fails above the lower of the two limits, so a goal met by a narrow
//! margin cannot be lost inside the tolerance.
//!
//! Baseline format: one `CASE INSTRUCTIONS [goal=MAX]` line per case; `#`
//! starts a comment.

use crate::bench::{parse_bench_log, CaseOutcome};

/// How far above its recorded figure a case may go.
pub const TOLERANCE: f64 = 0.10;

/// One recorded case.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub case: String,
    /// Instructions per op as recorded.
    pub recorded: f64,
    /// The goal's ceiling, if the case has one.
    pub goal: Option<f64>,
}

impl Figure {
    /// The most the case may count: the recorded figure plus
    /// [`TOLERANCE`], or the goal if that is lower.
    pub fn limit(&self) -> f64 {
        let limit = self.recorded * (1.0 + TOLERANCE);
        self.goal.map_or(limit, |goal| goal.min(limit))
    }
}

/// The recorded figures.
pub fn parse_baseline(text: &str) -> Result<Vec<Figure>, String> {
    let mut figures: Vec<Figure> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let number = number + 1;
        let positive = |text: &str| -> Result<f64, String> {
            text.parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v > 0.0)
                .ok_or_else(|| format!("line {number}: `{text}` is not a positive number"))
        };
        let mut words = line.split_whitespace();
        let (Some(case), Some(value)) = (words.next(), words.next()) else {
            return Err(format!(
                "line {number}: want `CASE INSTRUCTIONS [goal=MAX]`"
            ));
        };
        let recorded = positive(value)?;
        let goal = match (words.next(), words.next()) {
            (None, _) => None,
            (Some(word), None) => match word.strip_prefix("goal=") {
                Some(max) => Some(positive(max)?),
                None => return Err(format!("line {number}: `{word}` is not `goal=MAX`")),
            },
            (Some(_), Some(_)) => {
                return Err(format!(
                    "line {number}: want `CASE INSTRUCTIONS [goal=MAX]`"
                ))
            }
        };
        if goal.is_some_and(|goal| goal < recorded) {
            return Err(format!(
                "line {number}: {case} is recorded at {recorded}, above its goal"
            ));
        }
        if figures.iter().any(|known| known.case == case) {
            return Err(format!("line {number}: {case} recorded twice"));
        }
        figures.push(Figure {
            case: case.to_string(),
            recorded,
            goal,
        });
    }
    if figures.is_empty() {
        return Err("no figures".into());
    }
    Ok(figures)
}

/// Compares the bench log of a deterministic boot with the recorded
/// figures: every recorded case must have been measured, at most
/// [`TOLERANCE`] above its figure and under its goal. Returns a line per
/// case either way.
pub fn check(baseline: &[Figure], log: &str) -> Result<Vec<String>, String> {
    let parsed = parse_bench_log(log);
    if let Some(panic) = parsed.panic {
        return Err(format!("panic: {panic}"));
    }
    if !parsed.done {
        return Err("no `BENCH DONE` line".into());
    }
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    for figure in baseline {
        let (case, recorded) = (&figure.case, figure.recorded);
        let measured = parsed.cases.iter().find(|c| &c.case == case);
        match measured.map(|c| &c.outcome) {
            Some(CaseOutcome::Measured { ns_per_op, .. }) => {
                let limit = figure.limit();
                let change = (ns_per_op / recorded - 1.0) * 100.0;
                let goal = figure
                    .goal
                    .map_or_else(String::new, |goal| format!(", goal {goal:.1}"));
                let line = format!(
                    "{case}: {ns_per_op:.1} instructions/op (recorded {recorded:.1}, {change:+.1}%, limit {limit:.1}{goal})"
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
            parse_baseline("# comment\nnop_b32 240 # why\n\nread4k_b32 1300.5 goal=1400\n")
                .unwrap();
        assert_eq!(
            figures,
            [
                Figure {
                    case: "nop_b32".to_string(),
                    recorded: 240.0,
                    goal: None
                },
                Figure {
                    case: "read4k_b32".to_string(),
                    recorded: 1300.5,
                    goal: Some(1400.0)
                }
            ]
        );
        assert!(parse_baseline("").is_err());
        assert!(parse_baseline("nop_b32").is_err());
        assert!(parse_baseline("nop_b32 x").is_err());
        assert!(parse_baseline("nop_b32 -1").is_err());
        assert!(parse_baseline("nop_b32 1 2").is_err());
        assert!(parse_baseline("a 1\na 2").is_err());
        assert!(parse_baseline("nop_b32 1 max=2").is_err());
        assert!(parse_baseline("nop_b32 1 goal=x").is_err());
        assert!(parse_baseline("nop_b32 1 goal=2 3").is_err());
        // A figure recorded above its own goal is a mistake.
        assert!(parse_baseline("nop_b32 3 goal=2").is_err());
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
        // A goal under the tolerance's limit is the limit: 250 is within
        // 10% of 240 but above a goal of 245.
        let goal = parse_baseline("nop_b32 240 goal=245\nread4k_b32 1300").unwrap();
        let err = check(&goal, LOG).unwrap_err();
        assert!(
            err.contains("nop_b32") && err.contains("goal 245.0"),
            "{err}"
        );
        let loose = parse_baseline("nop_b32 240 goal=300\nread4k_b32 1300").unwrap();
        let lines = check(&loose, LOG).unwrap();
        assert!(lines[0].contains("limit 264.0, goal 300.0"), "{lines:?}");
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
