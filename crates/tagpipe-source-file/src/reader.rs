//! Reading NDJSON into events, in chunks, until the input ends or shutdown is asked for.

use std::sync::Arc;

use serde_json::Value;
use tagpipe_core::{BoxError, Event, RequestContext, SourceContext};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};

/// Limits on what one line may hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadLimits {
    pub max_line_bytes: usize,
}

/// Events handed to the pipelines at once.
const CHUNK: usize = 256;

/// Reads `input` line by line and sends each JSON object line as an event. Events go out in
/// chunks, but never wait for more input: whatever is read is sent once the buffer runs dry.
pub(crate) async fn read_ndjson<R: AsyncRead + Unpin>(
    mut input: BufReader<R>,
    limits: ReadLimits,
    cx: SourceContext,
) -> Result<(), BoxError> {
    let context = Arc::new(RequestContext::detached());
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut line = Vec::new();
    let mut line_no = 0u64;
    let (mut accepted, mut rejected) = (0u64, 0u64);
    let received = tagpipe_core::telemetry::received(&cx.id, "ndjson");
    loop {
        line.clear();
        let read = tokio::select! {
            biased;
            () = cx.shutdown.cancelled() => break,
            read = read_line(&mut input, &mut line, limits.max_line_bytes) => read?,
        };
        let Some(too_long) = read else { break };
        line_no += 1;
        if too_long {
            rejected += 1;
            tracing::warn!(source = %cx.id, line = line_no, max = limits.max_line_bytes, "line too long: skipped");
            continue;
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Value>(text) {
            Ok(Value::Object(data)) => {
                accepted += 1;
                received.increment(1);
                chunk.push(Event::new(data.into(), context.clone()));
            }
            Ok(other) => {
                rejected += 1;
                tracing::warn!(source = %cx.id, line = line_no, kind = kind(&other), "not a JSON object: skipped");
            }
            Err(error) => {
                rejected += 1;
                tracing::warn!(source = %cx.id, line = line_no, %error, "invalid JSON: skipped");
            }
        }
        if chunk.len() >= CHUNK || (!chunk.is_empty() && input.buffer().is_empty()) {
            cx.output.send_all(std::mem::take(&mut chunk)).await;
        }
    }
    if !chunk.is_empty() {
        cx.output.send_all(chunk).await;
    }
    tracing::info!(source = %cx.id, accepted, rejected, "input finished");
    Ok(())
}

/// Reads one line into `line` (without the newline). `None` at the end of input;
/// `Some(true)` when the line was longer than `max` (its content is discarded).
async fn read_line<R: AsyncBufRead + Unpin>(
    input: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<bool>> {
    let mut too_long = false;
    let mut any = false;
    loop {
        let buf = input.fill_buf().await?;
        if buf.is_empty() {
            return Ok(any.then_some(too_long));
        }
        any = true;
        let (part, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if !too_long {
            if line.len() + part.len() > max {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(part);
            }
        }
        let consumed = done.unwrap_or(part.len());
        input.consume(consumed);
        if done.is_some() {
            return Ok(Some(too_long));
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_lines_and_flags_overlong_ones() {
        let data: &[u8] = b"{\"a\":1}\n\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n{\"b\":2}";
        let mut input = tokio::io::BufReader::with_capacity(4, data);
        let mut line = Vec::new();
        let mut seen = Vec::new();
        while let Some(too_long) = read_line(&mut input, &mut line, 16).await.unwrap() {
            seen.push((String::from_utf8(line.clone()).unwrap(), too_long));
            line.clear();
        }
        assert_eq!(
            seen,
            [
                ("{\"a\":1}".to_owned(), false),
                (String::new(), false),
                (String::new(), true),
                ("{\"b\":2}".to_owned(), false)
            ]
        );
    }
}
