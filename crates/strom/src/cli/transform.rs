//! `strom transform create|list|delete`: in-broker transforms, managed over the broker's HTTP
//! side (`POST/GET /transforms`, `DELETE /transforms/NAME`) with a tiny HTTP/1.1 client.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{print_json, print_table, Format, GlobalArgs};

/// How long one HTTP exchange may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest response accepted.
const RESPONSE_SIZE_MAX_BYTES: usize = 16 * 1024 * 1024;

/// `strom transform ...`.
#[derive(Debug, Args)]
pub struct TransformArgs {
    /// The broker's HTTP address (`strom server --http-addr`), host:port or http://host:port.
    #[arg(
        long,
        global = true,
        env = "STROM_HTTP",
        default_value = "127.0.0.1:9644"
    )]
    http: String,
    #[command(subcommand)]
    command: TransformCommand,
}

#[derive(Debug, Subcommand)]
enum TransformCommand {
    /// Create a transform from INPUT to OUTPUT
    ///
    /// The server reads INPUT, applies the steps and writes OUTPUT, and keeps doing so across
    /// restarts. Delivery is at-least-once: after a crash the last uncommitted batch is
    /// written again.
    ///
    /// Each --step is one JSON object with a "type": filter (field + one of equals,
    /// not_equals, in, exists, gt, lt), mask (fields, with), hash (fields), drop (fields),
    /// route (field, topics, default), header (name, value or from_field).
    ///
    /// Examples:
    ///   strom transform create trades --input game-events --output trades-clean \
    ///       --step '{"type":"filter","field":"$.type","equals":"trade"}' \
    ///       --step '{"type":"hash","fields":["$.ip"]}'
    ///   strom transform create copy --input a --output b
    ///   strom transform create clean --input raw --output clean --steps-file steps.json
    ///   STROM_HTTP=broker1:9644 strom transform create ...
    #[command(verbatim_doc_comment)]
    Create {
        /// Transform name (topic-name rules: letters, digits, '.', '_', '-').
        name: String,
        /// Topic to read (created with the broker's defaults if missing and auto-creation is on).
        #[arg(long)]
        input: String,
        /// Topic to write.
        #[arg(long)]
        output: String,
        /// One step as a JSON object; repeat for more, applied in order.
        #[arg(long = "step", value_name = "JSON", conflicts_with = "steps_file")]
        steps: Vec<String>,
        /// A file holding the steps as a JSON array.
        #[arg(long, value_name = "FILE")]
        steps_file: Option<PathBuf>,
    },
    /// List transforms with their topics, steps and progress
    ///
    /// Examples:
    ///   strom transform list
    ///   strom transform list --format json
    #[command(verbatim_doc_comment)]
    List,
    /// Delete a transform
    ///
    /// Its pipeline stops after committing the batch in hand. Its consumer group
    /// (__transform-NAME) keeps its offsets, so re-creating it resumes there.
    ///
    /// Examples:
    ///   strom transform delete trades
    #[command(verbatim_doc_comment)]
    Delete {
        /// Transform name.
        name: String,
    },
}

/// Runs `strom transform ...`.
pub async fn run(global: &GlobalArgs, args: TransformArgs) -> anyhow::Result<()> {
    let http = HttpTarget::parse(&args.http)?;
    match args.command {
        TransformCommand::Create {
            name,
            input,
            output,
            steps,
            steps_file,
        } => {
            let steps = read_steps(&steps, steps_file.as_deref())?;
            let body = json!({ "name": name, "input": input, "output": output, "steps": steps });
            let created = http.call("POST", "/transforms", Some(&body)).await?;
            if global.format == Format::Json {
                print_json(&created);
            } else {
                println!(
                    "created transform {name}: {input} -> {output} ({} step(s), group {})",
                    steps.as_array().map_or(0, Vec::len),
                    created["group"].as_str().unwrap_or("-")
                );
            }
            Ok(())
        }
        TransformCommand::List => {
            let listed = http.call("GET", "/transforms", None).await?;
            if global.format == Format::Json {
                print_json(&listed);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = listed["transforms"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|t| {
                    let status = &t["status"];
                    let number = |key: &str| {
                        status[key]
                            .as_i64()
                            .map_or_else(|| "-".to_string(), |n| n.to_string())
                    };
                    let steps = t["steps"]
                        .as_array()
                        .map(|steps| {
                            steps
                                .iter()
                                .map(|s| s["type"].as_str().unwrap_or("?"))
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| "-".to_string());
                    vec![
                        text(&t["name"]),
                        text(&t["input"]),
                        text(&t["output"]),
                        status["state"].as_str().unwrap_or("-").to_string(),
                        number("records_in"),
                        number("records_out"),
                        number("records_filtered"),
                        number("lag"),
                        steps,
                    ]
                })
                .collect();
            print_table(
                &[
                    "NAME", "INPUT", "OUTPUT", "STATE", "IN", "OUT", "FILTERED", "LAG", "STEPS",
                ],
                &rows,
            );
            Ok(())
        }
        TransformCommand::Delete { name } => {
            let deleted = http
                .call("DELETE", &format!("/transforms/{name}"), None)
                .await?;
            if global.format == Format::Json {
                print_json(&deleted);
            } else {
                println!("deleted transform {name}");
            }
            Ok(())
        }
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or("-").to_string()
}

/// The steps as a JSON array, from `--step` objects or a `--steps-file` array.
fn read_steps(steps: &[String], file: Option<&std::path::Path>) -> anyhow::Result<Value> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let value: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        if !value.is_array() {
            bail!(
                "{} must hold a JSON array of steps, e.g. [{{\"type\":\"hash\",\"fields\":[\"$.ip\"]}}]",
                path.display()
            );
        }
        return Ok(value);
    }
    let mut parsed = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        let value: Value = serde_json::from_str(step)
            .with_context(|| format!("--step #{} is not JSON: {step}", i + 1))?;
        if !value.is_object() {
            bail!(
                "--step #{} must be a JSON object like {{\"type\":\"hash\",\"fields\":[\"$.ip\"]}}, not {step}",
                i + 1
            );
        }
        parsed.push(value);
    }
    Ok(Value::Array(parsed))
}

/// Where the broker's HTTP side listens.
struct HttpTarget {
    /// host:port.
    authority: String,
}

impl HttpTarget {
    fn parse(text: &str) -> anyhow::Result<HttpTarget> {
        let trimmed = text.trim().trim_end_matches('/');
        if trimmed.starts_with("https://") {
            bail!("--http {text}: https is not supported; give host:port of `strom server --http-addr`");
        }
        let authority = trimmed.strip_prefix("http://").unwrap_or(trimmed);
        if authority.is_empty() || authority.contains('/') {
            bail!("--http {text}: expected host:port, e.g. 127.0.0.1:9644");
        }
        let authority = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else {
            format!("{authority}:9644")
        };
        Ok(HttpTarget { authority })
    }

    fn url(&self) -> String {
        format!("http://{}", self.authority)
    }

    /// Sends one request and returns the JSON body of a 2xx answer; otherwise an error with
    /// the server's message.
    async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let (status, body) = tokio::time::timeout(HTTP_TIMEOUT, self.exchange(method, path, body))
            .await
            .with_context(|| {
                format!(
                    "{method} {}{path} timed out after {HTTP_TIMEOUT:?}",
                    self.url()
                )
            })??;
        let value: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).trim().to_string()));
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let message = value["error"]
            .as_str()
            .map(str::to_string)
            .or_else(|| value.as_str().map(str::to_string))
            .unwrap_or_else(|| value.to_string());
        match status {
            404 if message.is_empty() => bail!(
                "{} has no {path}: is it a strom server with in-broker transforms?",
                self.url()
            ),
            _ => bail!("{message} (HTTP {status})"),
        }
    }

    async fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let mut stream = TcpStream::connect(&self.authority).await.with_context(|| {
            format!(
                "cannot reach {}: is strom server running with --http-addr?",
                self.url()
            )
        })?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: strom-cli\r\nAccept: application/json\r\nConnection: close\r\n",
            self.authority
        );
        if method == "POST" || !body.is_empty() {
            request.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        request.push_str("\r\n");
        request.push_str(&body);
        stream
            .write_all(request.as_bytes())
            .await
            .with_context(|| format!("sending to {}", self.url()))?;
        let mut response = Vec::new();
        (&mut stream)
            .take(RESPONSE_SIZE_MAX_BYTES as u64 + 1)
            .read_to_end(&mut response)
            .await
            .with_context(|| format!("reading the answer of {}", self.url()))?;
        if response.len() > RESPONSE_SIZE_MAX_BYTES {
            bail!(
                "the answer of {} is larger than {RESPONSE_SIZE_MAX_BYTES} bytes",
                self.url()
            );
        }
        parse_response(&response).with_context(|| format!("bad HTTP answer from {}", self.url()))
    }
}

/// Splits an HTTP/1.1 response into its status and body (de-chunked).
fn parse_response(response: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = std::str::from_utf8(&response[..split]).context("headers are not UTF-8")?;
    let body = &response[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        bail!("status line {status_line:?}");
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("status line {status_line:?}"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        }
    }
    if chunked {
        return Ok((status, dechunk(body)?));
    }
    let body = match length {
        Some(n) if n <= body.len() => body[..n].to_vec(),
        Some(n) => bail!("body is {} bytes, Content-Length says {n}", body.len()),
        None => body.to_vec(),
    };
    Ok((status, body))
}

fn dechunk(mut body: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("chunk size line")?;
        let size_text = std::str::from_utf8(&body[..line_end]).context("chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("chunk size {size_text:?}"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_with_length_and_chunks_parse() {
        let plain = b"HTTP/1.1 409 Conflict\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"error\":1}";
        assert_eq!(
            parse_response(plain).unwrap(),
            (409, b"{\"error\":1}".to_vec())
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (200, b"abcde".to_vec()));
        assert!(parse_response(b"garbage").is_err());
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_err());
    }

    #[test]
    fn http_targets_and_steps() {
        assert_eq!(HttpTarget::parse("http://h:1/").unwrap().authority, "h:1");
        assert_eq!(HttpTarget::parse("h").unwrap().authority, "h:9644");
        assert!(HttpTarget::parse("https://h:1").is_err());
        let steps =
            read_steps(&[r#"{"type":"hash","fields":["$.ip"]}"#.to_string()], None).unwrap();
        assert_eq!(steps[0]["type"], "hash");
        assert!(read_steps(&["[1]".to_string()], None).is_err());
        assert!(read_steps(&["{".to_string()], None).is_err());
    }
}
