//! Lines of standard input, one record each; ends at end of input.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncBufReadExt;

use crate::error::{Error, Result};
use crate::runner::{Output, Shutdown};

/// Lines sent per batch at most.
const BATCH_LINES_MAX: usize = 1000;
/// A batch is sent when no line arrived for this long.
const LINGER: Duration = Duration::from_millis(100);

/// Reads stdin until its end or `shutdown`.
pub async fn run(
    key_separator: Option<&str>,
    output: &Output,
    mut shutdown: Shutdown,
) -> Result<()> {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut batch = Vec::new();
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout(LINGER, lines.next_line()) => next,
            _ = shutdown.changed() => break,
        };
        match next {
            Ok(Ok(Some(line))) => {
                batch.push(split(&line, key_separator));
                if batch.len() >= BATCH_LINES_MAX {
                    output.send_all(None, std::mem::take(&mut batch)).await?;
                }
            }
            Ok(Ok(None)) => break,
            Ok(Err(e)) => return Err(Error::io("read stdin", e)),
            Err(_) if !batch.is_empty() => {
                output.send_all(None, std::mem::take(&mut batch)).await?;
            }
            Err(_) => {}
        }
    }
    output.send_all(None, batch).await?;
    Ok(())
}

fn split(line: &str, separator: Option<&str>) -> (Option<Bytes>, Bytes) {
    match separator.and_then(|s| line.split_once(s)) {
        Some((key, value)) => (
            Some(Bytes::from(key.to_string())),
            Bytes::from(value.to_string()),
        ),
        None => (None, Bytes::from(line.to_string())),
    }
}
