//! `promtier up`'s one writer to stderr: the children's log lines and `up`'s own messages go
//! through it, and on a terminal it keeps a block of status lines (one per node) at the bottom,
//! redrawn in place under each new log line (ANSI: cursor up, clear to the end of the screen).
//! One lock around every write, so a log line and a redraw never tear each other.

use std::io::Write;

use parking_lot::Mutex;

/// Moves the cursor up `n` lines, to column 1, and clears from there to the end of the screen.
fn erase(out: &mut String, n: usize) {
    if n > 0 {
        out.push_str(&format!("\x1b[{n}A\r\x1b[J"));
    }
}

/// Where the output goes and what is drawn at its bottom.
pub(crate) struct Console {
    inner: Mutex<Inner>,
}

struct Inner {
    /// Draw the status block (stderr is a terminal and the block is wanted).
    live: bool,
    /// The status block, one line per node.
    status: Vec<String>,
    /// Lines of it on screen now.
    drawn: usize,
}

impl Inner {
    /// The status block, without wrapping (a line wider than the terminal is cut, so the block
    /// keeps its height and the cursor-up count stays right).
    fn draw(&mut self, out: &mut String) {
        if !self.live || self.status.is_empty() {
            return;
        }
        out.push_str("\x1b[?7l");
        for l in &self.status {
            out.push_str(l);
            out.push('\n');
        }
        out.push_str("\x1b[?7h");
        self.drawn = self.status.len();
    }

    fn erase(&mut self, out: &mut String) {
        erase(out, self.drawn);
        self.drawn = 0;
    }
}

impl Console {
    /// A console drawing the live status block when `live` (stderr is a terminal), plain lines
    /// otherwise.
    pub(crate) fn new(live: bool) -> Console {
        Console { inner: Mutex::new(Inner { live, status: Vec::new(), drawn: 0 }) }
    }

    /// Whether the status block is drawn (else status changes are printed as plain lines).
    pub(crate) fn live(&self) -> bool {
        self.inner.lock().live
    }

    /// Prints `line` above the status block.
    pub(crate) fn line(&self, line: &str) {
        let mut g = self.inner.lock();
        let mut out = String::with_capacity(line.len() + 64);
        g.erase(&mut out);
        out.push_str(line);
        out.push('\n');
        g.draw(&mut out);
        write_stderr(&out);
    }

    /// Replaces the status block and redraws it.
    pub(crate) fn set_status(&self, lines: Vec<String>) {
        let mut g = self.inner.lock();
        if !g.live {
            return;
        }
        let mut out = String::new();
        g.erase(&mut out);
        g.status = lines;
        g.draw(&mut out);
        write_stderr(&out);
    }

    /// Erases the status block and stops drawing it (the nodes are stopping).
    pub(crate) fn finish(&self) {
        let mut g = self.inner.lock();
        let mut out = String::new();
        g.erase(&mut out);
        g.live = false;
        g.status.clear();
        write_stderr(&out);
    }
}

/// Writes `s` in one call; a closed stderr is not worth failing the supervisor for.
fn write_stderr(s: &str) {
    if s.is_empty() {
        return;
    }
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(s.as_bytes());
    let _ = e.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_goes_above_the_redrawn_block() {
        let mut inner = Inner { live: true, status: vec!["a ready".into(), "b starting".into()], drawn: 0 };
        let mut out = String::new();
        inner.draw(&mut out);
        assert_eq!(out, "\x1b[?7la ready\nb starting\n\x1b[?7h");
        let mut out = String::new();
        inner.erase(&mut out);
        out.push_str("log\n");
        inner.draw(&mut out);
        assert_eq!(out, "\x1b[2A\r\x1b[Jlog\n\x1b[?7la ready\nb starting\n\x1b[?7h");
    }

    #[test]
    fn plain_output_has_no_escapes() {
        let mut inner = Inner { live: false, status: vec!["a ready".into()], drawn: 0 };
        let mut out = String::new();
        inner.erase(&mut out);
        inner.draw(&mut out);
        assert!(out.is_empty());
    }
}
