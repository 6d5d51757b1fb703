//! Standard output for results, summaries and metric lines. A reader may close it early
//! (`sphinx run docs/ --out r | head`); `println!` then panics after the work is done and
//! stored, with a backtrace and exit status 101. Here a closed pipe only ends the output.

use std::fmt::Display;
use std::io::{ErrorKind, Write};

/// Writes `text` and a newline to stdout. A closed pipe is not an error of the command;
/// any other write error is.
pub fn line(text: impl Display) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// `text` with its control characters escaped (`\n`, `\u{1b}`), for a summary line that
/// names files: a file name may hold a newline, which would split its line, or a terminal
/// escape sequence.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(
            printable("scan\n\u{1b}[31mröd.pdf"),
            "scan\\n\\u{1b}[31mröd.pdf"
        );
        assert_eq!(printable("plain name.pdf"), "plain name.pdf");
    }
}
