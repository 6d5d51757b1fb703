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
