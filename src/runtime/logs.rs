//! Log lines of one invocation: the guest's `log` calls and its standard output
//! and error, collected in one bounded buffer in the order they happened.
//!
//! Bounds: [`MAX_LOG_LINES_PER_INVOCATION`] lines of at most
//! [`MAX_LOG_LINE_BYTES`] each; what does not fit is counted, not kept, so a
//! chatty guest cannot exhaust host memory. Writes to stdout and stderr never
//! fail (a guest's `println!` must not panic because the host stopped
//! listening).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::limits::{MAX_LOG_LINE_BYTES, MAX_LOG_LINES_PER_INVOCATION};
use super::types::{Level, LogLine, LogSource};

/// Largest write permit handed to the guest for stdout/stderr. Writes are
/// absorbed at once, so this only sizes the guest's chunks.
const STREAM_WRITE_PERMIT: usize = 64 << 10;

/// Marker appended to a truncated line.
const TRUNCATED: &str = " …[truncated]";

/// The lines of one invocation.
#[derive(Debug, Default)]
pub(crate) struct LogBuffer {
    lines: Vec<LogLine>,
    dropped: usize,
    stdout: PartialLine,
    stderr: PartialLine,
}

/// The unfinished last line of an output stream.
#[derive(Debug, Default)]
struct PartialLine {
    bytes: Vec<u8>,
    /// The line outgrew [`MAX_LOG_LINE_BYTES`]: the rest of it is skipped.
    truncated: bool,
}

impl LogBuffer {
    /// Records one line, truncated to [`MAX_LOG_LINE_BYTES`]; counts it as
    /// dropped when the invocation already has its maximum of lines.
    pub(crate) fn push(&mut self, level: Level, source: LogSource, mut message: String) {
        if self.lines.len() >= MAX_LOG_LINES_PER_INVOCATION {
            self.dropped += 1;
            return;
        }
        if message.len() > MAX_LOG_LINE_BYTES {
            message.truncate(message.floor_char_boundary(MAX_LOG_LINE_BYTES));
            message.push_str(TRUNCATED);
        }
        self.lines.push(LogLine {
            level,
            source,
            message,
        });
    }

    /// Appends output of the guest's stdout or stderr; every completed line
    /// becomes a log line.
    pub(crate) fn write(&mut self, source: LogSource, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (chunk, complete) = match bytes.iter().position(|&b| b == b'\n') {
                Some(end) => (&bytes[..end], true),
                None => (bytes, false),
            };
            bytes = &bytes[(chunk.len() + usize::from(complete))..];
            let partial = self.partial(source);
            let room = MAX_LOG_LINE_BYTES.saturating_sub(partial.bytes.len());
            if chunk.len() > room {
                partial.truncated = true;
            }
            partial
                .bytes
                .extend_from_slice(&chunk[..chunk.len().min(room)]);
            if complete {
                self.end_line(source);
            }
        }
    }

    /// Ends the invocation: unfinished output lines are kept as lines.
    /// Returns the lines and how many were dropped.
    pub(crate) fn finish(mut self) -> (Vec<LogLine>, usize) {
        for source in [LogSource::Stdout, LogSource::Stderr] {
            if !self.partial(source).bytes.is_empty() {
                self.end_line(source);
            }
        }
        (self.lines, self.dropped)
    }

    fn partial(&mut self, source: LogSource) -> &mut PartialLine {
        match source {
            LogSource::Stderr => &mut self.stderr,
            LogSource::Stdout | LogSource::Log | LogSource::Host => &mut self.stdout,
        }
    }

    fn end_line(&mut self, source: LogSource) {
        let partial = std::mem::take(self.partial(source));
        let mut message = String::from_utf8_lossy(&partial.bytes).into_owned();
        if partial.truncated {
            message.push_str(TRUNCATED);
        }
        let level = if source == LogSource::Stderr {
            Level::Warn
        } else {
            Level::Info
        };
        self.push(level, source, message);
    }
}

/// The log buffer shared by the store (for `log` calls) and the two output
/// streams. Only locked for the duration of a copy; never across an await.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedLogs(Arc<Mutex<LogBuffer>>);

impl SharedLogs {
    pub(crate) fn lock(&self) -> MutexGuard<'_, LogBuffer> {
        // A panic while holding the lock can only come from a bug in this
        // module; the buffer is still consistent, so keep using it.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the buffer out at the end of an invocation.
    pub(crate) fn take(&self) -> LogBuffer {
        std::mem::take(&mut *self.lock())
    }

    /// A stdout or stderr stream writing into this buffer.
    pub(crate) fn stream(&self, source: LogSource) -> CaptureStream {
        CaptureStream {
            logs: self.clone(),
            source,
        }
    }
}

/// A guest's stdout or stderr: turns its output into log lines.
#[derive(Debug, Clone)]
pub(crate) struct CaptureStream {
    logs: SharedLogs,
    source: LogSource,
}

impl IsTerminal for CaptureStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CaptureStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for CaptureStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.logs.lock().write(self.source, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(STREAM_WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CaptureStream {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CaptureStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.logs.lock().write(self.source, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(lines: &[LogLine]) -> Vec<&str> {
        lines.iter().map(|line| line.message.as_str()).collect()
    }

    #[test]
    fn output_is_split_into_lines_across_writes() {
        let mut logs = LogBuffer::default();
        logs.write(LogSource::Stdout, b"hel");
        logs.write(LogSource::Stdout, b"lo\nwor");
        logs.write(LogSource::Stdout, b"ld\n\nlast");
        let (lines, dropped) = logs.finish();
        assert_eq!(messages(&lines), ["hello", "world", "", "last"]);
        assert_eq!(dropped, 0);
        assert!(lines.iter().all(|line| line.level == Level::Info));
    }

    #[test]
    fn stderr_lines_are_warnings_and_keep_their_order() {
        let mut logs = LogBuffer::default();
        logs.push(Level::Debug, LogSource::Log, "first".into());
        logs.write(LogSource::Stderr, b"second\n");
        let (lines, _) = logs.finish();
        assert_eq!(messages(&lines), ["first", "second"]);
        assert_eq!(lines[1].level, Level::Warn);
        assert_eq!(lines[1].source, LogSource::Stderr);
    }

    #[test]
    fn lines_past_the_limit_are_counted_not_kept() {
        let mut logs = LogBuffer::default();
        for n in 0..MAX_LOG_LINES_PER_INVOCATION + 5 {
            logs.push(Level::Info, LogSource::Log, n.to_string());
        }
        let (lines, dropped) = logs.finish();
        assert_eq!(lines.len(), MAX_LOG_LINES_PER_INVOCATION);
        assert_eq!(dropped, 5);
    }

    #[test]
    fn long_lines_are_truncated_at_a_character_boundary() {
        let mut logs = LogBuffer::default();
        logs.push(Level::Info, LogSource::Log, "é".repeat(MAX_LOG_LINE_BYTES));
        logs.write(LogSource::Stdout, &vec![b'x'; MAX_LOG_LINE_BYTES * 3]);
        logs.write(LogSource::Stdout, b"\nnext\n");
        let (lines, _) = logs.finish();
        assert_eq!(lines.len(), 3);
        for line in &lines[..2] {
            assert!(line.message.ends_with(TRUNCATED));
            assert!(line.message.len() <= MAX_LOG_LINE_BYTES + TRUNCATED.len());
        }
        assert_eq!(lines[2].message, "next");
    }
}
