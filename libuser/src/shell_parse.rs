//! The command language of `sh`, as pure logic (tested on the host).
//!
//! A line is words separated by blanks. Quoting works as in a POSIX shell,
//! reduced to what this system needs:
//! - `'...'` keeps everything literally;
//! - `"..."` keeps everything but `\"`, `\\`, `\$` and `$?`;
//! - `\x` outside quotes is a literal `x`;
//! - `$?` (unquoted or in double quotes) is the status of the last command;
//! - `> FILE` sends standard output to FILE (created or emptied), `>> FILE`
//!   appends; the file name may follow without a blank (`>out`), and the
//!   redirection may stand anywhere among the words;
//! - a `&` at the end runs the command in the background;
//! - `#` at the start of a word begins a comment.
//!
//! Operators only count unquoted: `'>'` and `"&"` are plain words.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Where a command's standard output goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    pub path: String,
    /// `>>`: append instead of truncating.
    pub append: bool,
}

/// One parsed command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Command {
    /// The words, `words[0]` being the command's name; never empty.
    pub words: Vec<String>,
    /// `> FILE` or `>> FILE`, if given.
    pub redirect: Option<Redirect>,
    /// A trailing `&`.
    pub background: bool,
}

/// Why a line could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// A quote was opened and not closed.
    UnclosedQuote(char),
    /// `>` or `>>` without a file name after it.
    MissingRedirectTarget,
    /// More than one output redirection.
    TwoRedirects,
    /// Something after the `&`, or a `&` in the middle.
    MisplacedAmpersand,
    /// A redirection or `&` with no command.
    NoCommand,
    /// A `\` at the very end of the line.
    TrailingBackslash,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::UnclosedQuote(q) => write!(f, "unclosed {q}"),
            ParseError::MissingRedirectTarget => f.write_str("missing file name after >"),
            ParseError::TwoRedirects => f.write_str("only one output redirection is allowed"),
            ParseError::MisplacedAmpersand => f.write_str("& may only end a command"),
            ParseError::NoCommand => f.write_str("no command"),
            ParseError::TrailingBackslash => f.write_str("\\ at the end of the line"),
        }
    }
}

/// A lexical token: a word, or an unquoted operator.
#[derive(Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Redirect { append: bool },
    Ampersand,
}

/// Parses `line`; `last_status` is what `$?` expands to. `Ok(None)` for a
/// line with no command (blank, or only a comment).
pub fn parse(line: &str, last_status: i32) -> Result<Option<Command>, ParseError> {
    let tokens = tokenize(line, last_status)?;
    let mut command = Command::default();
    let mut tokens = tokens.into_iter().peekable();
    while let Some(token) = tokens.next() {
        match token {
            Token::Word(word) => command.words.push(word),
            Token::Redirect { append } => {
                let Some(Token::Word(path)) = tokens.next() else {
                    return Err(ParseError::MissingRedirectTarget);
                };
                if command.redirect.is_some() {
                    return Err(ParseError::TwoRedirects);
                }
                command.redirect = Some(Redirect { path, append });
            }
            Token::Ampersand => {
                if tokens.peek().is_some() {
                    return Err(ParseError::MisplacedAmpersand);
                }
                command.background = true;
            }
        }
    }
    if command.words.is_empty() {
        if command.redirect.is_some() || command.background {
            return Err(ParseError::NoCommand);
        }
        return Ok(None);
    }
    Ok(Some(command))
}

fn tokenize(line: &str, last_status: i32) -> Result<Vec<Token>, ParseError> {
    let mut tokens = Vec::new();
    let mut chars = line.chars().peekable();
    // The word being built, and whether one has started (`''` is a word).
    let mut word = String::new();
    let mut in_word = false;
    let status = || alloc::format!("{last_status}");
    macro_rules! end_word {
        () => {
            if in_word {
                tokens.push(Token::Word(core::mem::take(&mut word)));
                in_word = false;
            }
        };
    }
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' | '\n' => end_word!(),
            '#' if !in_word => break,
            '>' => {
                end_word!();
                let append = chars.next_if_eq(&'>').is_some();
                tokens.push(Token::Redirect { append });
            }
            '&' => {
                end_word!();
                tokens.push(Token::Ampersand);
            }
            '\\' => {
                let escaped = chars.next().ok_or(ParseError::TrailingBackslash)?;
                word.push(escaped);
                in_word = true;
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(ParseError::UnclosedQuote('\'')),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.peek() {
                            Some(&next @ ('"' | '\\' | '$')) => {
                                chars.next();
                                word.push(next);
                            }
                            _ => word.push('\\'),
                        },
                        Some('$') if chars.next_if_eq(&'?').is_some() => word.push_str(&status()),
                        Some(c) => word.push(c),
                        None => return Err(ParseError::UnclosedQuote('"')),
                    }
                }
            }
            '$' if chars.next_if_eq(&'?').is_some() => {
                word.push_str(&status());
                in_word = true;
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        tokens.push(Token::Word(word));
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn words(line: &str) -> Vec<String> {
        parse(line, 0).unwrap().unwrap().words
    }

    #[test]
    fn blanks_separate_words() {
        assert_eq!(words("ls"), ["ls"]);
        assert_eq!(words("  cat   a\tb  "), ["cat", "a", "b"]);
        assert_eq!(parse("", 0), Ok(None));
        assert_eq!(parse("   \t ", 0), Ok(None));
        assert_eq!(parse("# just a comment", 0), Ok(None));
        assert_eq!(words("echo a#b # comment"), ["echo", "a#b"]);
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(words("echo 'a  b' \"c d\""), ["echo", "a  b", "c d"]);
        assert_eq!(words("echo ''"), ["echo", ""]);
        assert_eq!(words("echo a'b'\"c\"d"), ["echo", "abcd"]);
        assert_eq!(words(r#"echo "say \"hi\" \n""#), ["echo", r#"say "hi" \n"#]);
        assert_eq!(words(r"echo a\ b \> \&"), ["echo", "a b", ">", "&"]);
        assert_eq!(words("echo '$?' '>' '&'"), ["echo", "$?", ">", "&"]);
        assert_eq!(parse("echo 'open", 0), Err(ParseError::UnclosedQuote('\'')));
        assert_eq!(parse("echo \"open", 0), Err(ParseError::UnclosedQuote('"')));
        assert_eq!(parse("echo \\", 0), Err(ParseError::TrailingBackslash));
    }

    #[test]
    fn last_status_expands() {
        let cmd = parse("echo $? \"[$?]\" x$?y \\$?", 42).unwrap().unwrap();
        assert_eq!(cmd.words, ["echo", "42", "[42]", "x42y", "$?"]);
        assert_eq!(words("echo $ $x"), ["echo", "$", "$x"]);
        let cmd = parse("echo $?", -3).unwrap().unwrap();
        assert_eq!(cmd.words[1], "-3");
    }

    #[test]
    fn redirections() {
        let cmd = parse("echo hi > out.txt", 0).unwrap().unwrap();
        assert_eq!(cmd.words, ["echo", "hi"]);
        assert_eq!(
            cmd.redirect,
            Some(Redirect {
                path: "out.txt".to_string(),
                append: false
            })
        );
        let cmd = parse("echo hi>>log", 0).unwrap().unwrap();
        assert_eq!(cmd.words, ["echo", "hi"]);
        assert_eq!(
            cmd.redirect,
            Some(Redirect {
                path: "log".to_string(),
                append: true
            })
        );
        let cmd = parse(">f echo a b", 0).unwrap().unwrap();
        assert_eq!(cmd.words, ["echo", "a", "b"]);
        assert_eq!(cmd.redirect.unwrap().path, "f");
        let cmd = parse("echo x > 'my file'", 0).unwrap().unwrap();
        assert_eq!(cmd.redirect.unwrap().path, "my file");
        assert_eq!(parse("echo >", 0), Err(ParseError::MissingRedirectTarget));
        assert_eq!(
            parse("echo > > f", 0),
            Err(ParseError::MissingRedirectTarget)
        );
        assert_eq!(parse("echo >a >b", 0), Err(ParseError::TwoRedirects));
        assert_eq!(parse("> f", 0), Err(ParseError::NoCommand));
    }

    #[test]
    fn background() {
        let cmd = parse("spin 3 &", 0).unwrap().unwrap();
        assert!(cmd.background);
        assert_eq!(cmd.words, ["spin", "3"]);
        let cmd = parse("spin&", 0).unwrap().unwrap();
        assert!(cmd.background);
        let cmd = parse("echo a > f &", 0).unwrap().unwrap();
        assert!(cmd.background);
        assert_eq!(cmd.redirect.unwrap().path, "f");
        assert!(!parse("spin", 0).unwrap().unwrap().background);
        assert_eq!(parse("a & b", 0), Err(ParseError::MisplacedAmpersand));
        assert_eq!(parse("&", 0), Err(ParseError::NoCommand));
        assert_eq!(parse("echo a&&", 0), Err(ParseError::MisplacedAmpersand));
        assert_eq!(words("echo a\"&\"b"), vec!["echo", "a&b"]);
    }
}
