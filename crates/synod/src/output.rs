//! Command output on stdout. A reader that goes away early (`synod
//! status | head -3`) ends the command quietly, as it ends a Unix tool,
//! instead of `println!`'s panic. (Rust ignores SIGPIPE; turning it back
//! on would also kill a client whose connection to a node breaks.)

use std::io::{ErrorKind, Write};

/// Print one line of command output, as `println!` does.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}
pub(crate) use say;

/// Print `text` without a newline, as `print!` does.
pub(crate) fn text(text: &str) {
    written(std::io::stdout().lock().write_all(text.as_bytes()));
}

/// Print `text` and a newline.
pub(crate) fn line(text: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    written(
        stdout
            .write_fmt(text)
            .and_then(|()| stdout.write_all(b"\n")),
    );
}

fn written(result: std::io::Result<()>) {
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("synod: cannot write to standard output: {e}");
            std::process::exit(1);
        }
    }
}
