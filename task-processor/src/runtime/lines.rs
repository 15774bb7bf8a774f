//! Reading lines from a child without trusting it to end them: a line longer than the cap is
//! reported as too long as soon as it passes the cap and never buffered whole.
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// One line, or the fact that it was longer than the cap.
#[derive(Debug, PartialEq)]
pub enum Line {
    /// The line without its newline (lossy UTF-8).
    Text(String),
    /// Longer than the cap; its bytes were discarded.
    TooLong,
}

/// Lines of at most `max` bytes from `inner`.
pub struct CappedLines<R> {
    inner: R,
    max: usize,
    /// Inside a line already reported as too long: discard up to its newline.
    skipping: bool,
}

impl<R: AsyncBufRead + Unpin> CappedLines<R> {
    /// Wraps a buffered reader.
    pub fn new(inner: R, max: usize) -> Self {
        CappedLines {
            inner,
            max,
            skipping: false,
        }
    }

    /// The next line; [`Line::TooLong`] as soon as a line passes the cap (the rest of it is
    /// discarded by the next call); `None` at the end of the stream.
    pub async fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        let mut buf = Vec::new();
        loop {
            let chunk = self.inner.fill_buf().await?;
            if chunk.is_empty() {
                let text = String::from_utf8_lossy(&buf).into_owned();
                return Ok((!buf.is_empty()).then_some(Line::Text(text)));
            }
            let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            let used = take + usize::from(done);
            if self.skipping {
                self.inner.consume(used);
                self.skipping = !done;
                continue;
            }
            if buf.len() + take > self.max {
                self.inner.consume(used);
                self.skipping = !done;
                return Ok(Some(Line::TooLong));
            }
            buf.extend_from_slice(&chunk[..take]);
            self.inner.consume(used);
            if done {
                return Ok(Some(Line::Text(String::from_utf8_lossy(&buf).into_owned())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_lines_are_skipped_not_buffered() {
        let mut input = b"short\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 100_000));
        input.extend(b"\nafter\nlast");
        let mut lines = CappedLines::new(tokio::io::BufReader::new(&input[..]), 1000);
        assert_eq!(
            lines.next_line().await.unwrap(),
            Some(Line::Text("short".into()))
        );
        assert_eq!(lines.next_line().await.unwrap(), Some(Line::TooLong));
        assert_eq!(
            lines.next_line().await.unwrap(),
            Some(Line::Text("after".into()))
        );
        assert_eq!(
            lines.next_line().await.unwrap(),
            Some(Line::Text("last".into()))
        );
        assert_eq!(lines.next_line().await.unwrap(), None);
    }
}
