//! Kernel command lines: kernel parameters, then `--` and the first
//! program's arguments.
//!
//! The kernel reads parameters up to the first `--` word and hands every
//! word after it to the first process (README, "Boot parameters"). A
//! configuration's `cmdline` often has both parts (`init=tests log=info --
//! mode=direct`), so anything the runner adds must land on the right side
//! of that `--`: a kernel parameter written after it reaches the program as
//! an argument and the kernel never sees it.

use std::fmt;

/// A kernel command line, split at its first `--` word.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cmdline {
    /// Kernel parameters, in order.
    params: Vec<String>,
    /// The first program's arguments.
    args: Vec<String>,
}

impl Cmdline {
    /// Splits `text` into words and those at its first `--`.
    pub fn parse(text: &str) -> Cmdline {
        let mut words = text.split_whitespace().map(str::to_string);
        let params = words.by_ref().take_while(|word| word != "--").collect();
        Cmdline {
            params,
            args: words.collect(),
        }
    }

    /// Adds kernel parameters (whitespace-separated words, no `--`). A
    /// `key=value` word replaces the parameter with the same key, where it
    /// stands, so that the kernel does not warn about a key given twice;
    /// any other word is appended.
    pub fn set_params(&mut self, text: &str) {
        for word in text.split_whitespace() {
            let key = param_key(word);
            let same_key = |param: &String| key.is_some() && param_key(param) == key;
            match self.params.iter().position(same_key) {
                Some(first) => {
                    self.params[first] = word.to_string();
                    let later = self.params.split_off(first + 1);
                    self.params
                        .extend(later.into_iter().filter(|param| !same_key(param)));
                }
                None => self.params.push(word.to_string()),
            }
        }
    }

    /// Replaces the program's arguments with the words of `args`.
    pub fn replace_args(&mut self, args: &[String]) {
        self.args.clear();
        self.extend_args(args);
    }

    /// Appends the words of `args` to the program's arguments.
    pub fn extend_args(&mut self, args: &[String]) {
        let words = args.iter().flat_map(|arg| arg.split_whitespace());
        self.args.extend(words.map(str::to_string));
    }
}

/// `key` of a `key=value` word; `None` for a word without `=` or with
/// nothing before it.
fn param_key(word: &str) -> Option<&str> {
    word.split_once('=')
        .map(|(key, _)| key)
        .filter(|key| !key.is_empty())
}

/// The parameters, then ` -- ` and the arguments if there are any.
impl fmt::Display for Cmdline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words = self.params.iter().map(String::as_str).collect::<Vec<_>>();
        if !self.args.is_empty() {
            words.push("--");
            words.extend(self.args.iter().map(String::as_str));
        }
        f.write_str(&words.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|word| word.to_string()).collect()
    }

    #[test]
    fn parse_splits_at_the_first_separator() {
        let cmdline = Cmdline::parse("  init=tests  log=info -- mode=direct -- x ");
        assert_eq!(cmdline.params, ["init=tests", "log=info"]);
        assert_eq!(cmdline.args, ["mode=direct", "--", "x"]);
        assert_eq!(
            cmdline.to_string(),
            "init=tests log=info -- mode=direct -- x"
        );
        assert_eq!(Cmdline::parse("").to_string(), "");
        assert_eq!(Cmdline::parse("a --").to_string(), "a");
        assert_eq!(Cmdline::parse("-- a").to_string(), "-- a");
    }

    #[test]
    fn parameters_go_before_the_separator() {
        let mut cmdline = Cmdline::parse("init=ring_tests log=info -- mode=direct");
        cmdline.set_params("init=hello quiet");
        assert_eq!(
            cmdline.to_string(),
            "init=hello log=info quiet -- mode=direct"
        );
    }

    #[test]
    fn a_parameter_replaces_every_word_with_its_key() {
        let mut cmdline = Cmdline::parse("log=warn init=a log=info =x syscall=");
        cmdline.set_params("log=debug =y syscall=ring");
        assert_eq!(cmdline.to_string(), "log=debug init=a =x syscall=ring =y");
    }

    #[test]
    fn arguments_are_replaced_or_extended() {
        let mut cmdline = Cmdline::parse("init=tests -- mode=direct");
        cmdline.replace_args(&strings(&["mode=ring  x", "y"]));
        assert_eq!(cmdline.to_string(), "init=tests -- mode=ring x y");
        cmdline.extend_args(&strings(&["z"]));
        assert_eq!(cmdline.to_string(), "init=tests -- mode=ring x y z");
        cmdline.replace_args(&[]);
        assert_eq!(cmdline.to_string(), "init=tests");

        let mut cmdline = Cmdline::parse("init=bench log=warn");
        cmdline.extend_args(&strings(&["ops=1"]));
        assert_eq!(cmdline.to_string(), "init=bench log=warn -- ops=1");
    }
}
