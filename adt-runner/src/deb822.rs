//! deb822 control files (debian/control, debian/tests/control, .dsc) read
//! the way autopkgtest reads them: `#` comments dropped, continuation lines
//! joined, field names compared case-insensitively.
//!
//! One deliberate difference: python-debian, which autopkgtest uses, reads
//! on past what is not deb822 (a duplicate field keeps its last value; a
//! line without a colon, a leading continuation line, a field name with a
//! blank are ignored or end the file). Here each is a syntax error naming
//! the file, stanza and line, and the package is erroneous (exit 12), as a
//! malformed control file must be: such a file is a packaging bug, and a
//! test that silently does not run (or runs with the wrong Depends) is
//! worse than an error.
//!
//! Not for: the meaning of any field; that is `dep8` (test stanzas) and
//! `deps` (dependency fields).

use std::fmt;

/// One stanza (paragraph) of a control file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stanza {
    /// 1-based position of the stanza in its file.
    pub number: usize,
    /// 1-based line on which the stanza starts.
    pub line: usize,
    /// Fields in file order, names as written.
    pub fields: Vec<(String, String)>,
}

impl Stanza {
    /// The value of `name`, compared case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the stanza has `name`.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets `name` to `value`, replacing an existing value.
    pub fn set(&mut self, name: &str, value: String) {
        match self
            .fields
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            Some((_, v)) => *v = value,
            None => self.fields.push((name.to_string(), value)),
        }
    }
}

/// A control file that is not deb822.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// The file, as the user should find it (e.g. `debian/tests/control`).
    pub file: String,
    /// 1-based stanza number.
    pub stanza: usize,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: stanza {}, line {}: {}",
            self.file, self.stanza, self.line, self.message
        )
    }
}

impl std::error::Error for SyntaxError {}

/// `string.capwords` of Python: each whitespace-separated word gets an upper
/// case first letter and lower case rest. autopkgtest names fields this way
/// in its messages (`Test-Command` is reported as `Test-command`).
pub fn capwords(s: &str) -> String {
    s.split_whitespace()
        .map(|w| {
            let mut chars = w.chars();
            match chars.next() {
                Some(c) => c
                    .to_uppercase()
                    .chain(chars.flat_map(char::to_lowercase))
                    .collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<String>>()
        .join(" ")
}

/// Drops comments the way autopkgtest does: a line starting with `#` goes;
/// elsewhere `#` starts a comment, and a line left blank by that goes too
/// (so that it does not end the stanza).
fn strip_comment(line: &str) -> Option<&str> {
    if line.starts_with('#') {
        return None;
    }
    match line.find('#') {
        Some(i) if line[..i].trim().is_empty() => None,
        Some(i) => Some(&line[..i]),
        None => Some(line),
    }
}

struct Parser {
    file: String,
    stanzas: Vec<Stanza>,
    current: Option<Stanza>,
}

impl Parser {
    fn error(&self, line: usize, message: String) -> SyntaxError {
        let stanza = self
            .current
            .as_ref()
            .map_or(self.stanzas.len() + 1, |s| s.number);
        SyntaxError {
            file: self.file.clone(),
            stanza,
            line,
            message,
        }
    }

    fn finish_stanza(&mut self) {
        if let Some(s) = self.current.take() {
            self.stanzas.push(s);
        }
    }

    fn continuation(&mut self, lineno: usize, line: &str) -> Result<(), SyntaxError> {
        let Some(last) = self.current.as_mut().and_then(|s| s.fields.last_mut()) else {
            return Err(self.error(
                lineno,
                "continuation line outside of a field (lines starting with a space continue the previous field)".into(),
            ));
        };
        last.1.push_str(line.trim_end());
        Ok(())
    }

    fn field(&mut self, lineno: usize, line: &str) -> Result<(), SyntaxError> {
        let Some((name, value)) = line.split_once(':') else {
            return Err(self.error(
                lineno,
                format!(
                    "malformed line {:?}: expected \"Field: value\"",
                    line.trim_end()
                ),
            ));
        };
        let name = name.trim_end();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(self.error(lineno, format!("malformed field name {name:?}")));
        }
        let number = self.stanzas.len() + 1;
        let stanza = self.current.get_or_insert_with(|| Stanza {
            number,
            line: lineno,
            fields: Vec::new(),
        });
        if stanza.has(name) {
            let message = format!("field {} given twice", capwords(name));
            return Err(self.error(lineno, message));
        }
        stanza
            .fields
            .push((name.to_string(), value.trim().to_string()));
        Ok(())
    }
}

/// Parses `text` (the content of `file`) into stanzas.
///
/// Values of multi-line fields are joined the way autopkgtest joins them:
/// line breaks removed, continuation lines keep their leading blank, then
/// double blanks become single ones.
pub fn parse(file: &str, text: &str) -> Result<Vec<Stanza>, SyntaxError> {
    let mut p = Parser {
        file: file.to_string(),
        stanzas: Vec::new(),
        current: None,
    };
    for (i, raw) in text.lines().enumerate() {
        let lineno = i + 1;
        let Some(line) = strip_comment(raw) else {
            continue;
        };
        if line.trim().is_empty() {
            p.finish_stanza();
        } else if line.starts_with([' ', '\t']) {
            p.continuation(lineno, line)?;
        } else {
            p.field(lineno, line)?;
        }
    }
    p.finish_stanza();
    for s in &mut p.stanzas {
        for (_, v) in &mut s.fields {
            *v = v.replace("  ", " ");
        }
    }
    Ok(p.stanzas)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stanzas_are_split_on_blank_lines_and_numbered() {
        let s = parse("c", "A: 1\nB: 2\n\n\nC: 3\n").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].get("a"), Some("1"));
        assert_eq!(s[0].get("B"), Some("2"));
        assert_eq!((s[1].number, s[1].line), (2, 5));
        assert_eq!(s[1].get("c"), Some("3"));
    }

    #[test]
    fn continuation_lines_join_like_autopkgtest() {
        let s = parse("c", "Depends: a,\n  b,\n\tc\n").unwrap();
        // "a," + "  b," + "\tc", then double blanks halved
        assert_eq!(s[0].get("Depends"), Some("a, b,\tc"));
    }

    #[test]
    fn comments_are_dropped_without_breaking_continuations() {
        let text = "# head\nTests: a # trailing\n # only a comment\n b\nDepends: x\n";
        let s = parse("c", text).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].get("Tests"), Some("a b"));
        assert_eq!(s[0].get("Depends"), Some("x"));
    }

    #[test]
    fn whitespace_only_lines_separate_stanzas() {
        let s = parse("c", "A: 1\n   \t\nB: 2\n").unwrap();
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn a_line_without_colon_names_file_stanza_and_line() {
        let e = parse("debian/tests/control", "Tests: a\n\nTests: b\nbogus line\n").unwrap_err();
        assert_eq!((e.stanza, e.line), (2, 4));
        let msg = e.to_string();
        assert!(
            msg.starts_with("debian/tests/control: stanza 2, line 4:"),
            "{msg}"
        );
        assert!(msg.contains("bogus line"), "{msg}");
    }

    #[test]
    fn a_leading_continuation_line_is_an_error() {
        let e = parse("f", " x\n").unwrap_err();
        assert_eq!((e.stanza, e.line), (1, 1));
        assert!(e.message.contains("continuation"));
    }

    #[test]
    fn a_field_given_twice_is_an_error_naming_it() {
        let e = parse("f", "Tests: a\ntests: b\n").unwrap_err();
        assert!(e.message.contains("Tests given twice"), "{}", e.message);
    }

    #[test]
    fn empty_values_are_kept() {
        let s = parse("f", "Test-Command: true\nDepends:\n").unwrap();
        assert_eq!(s[0].get("depends"), Some(""));
    }

    #[test]
    fn capwords_matches_python() {
        assert_eq!(capwords("Test-Command"), "Test-command");
        assert_eq!(capwords("XS-Foo"), "Xs-foo");
        assert_eq!(capwords("tests-DIRECTORY"), "Tests-directory");
    }
}
