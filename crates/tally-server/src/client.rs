//! A minimal HTTP/1.1 client over one keep-alive connection, for `tally load-test` and the tests
//! of the server and the command line (loopback only): HTTP knowledge, so it lives here. Not a
//! general client: no TLS, no redirects.

use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub struct Conn {
    stream: BufReader<TcpStream>,
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn err(m: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, m.into())
}

const TIMEOUT: Duration = Duration::from_secs(10);

impl Conn {
    pub async fn connect(addr: &str) -> std::io::Result<Conn> {
        let s = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| err("connect timed out"))??;
        s.set_nodelay(true)?;
        Ok(Conn {
            stream: BufReader::new(s),
        })
    }

    /// Sends one request and reads the whole response (10 s limit).
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        tokio::time::timeout(TIMEOUT, self.request_inner(method, path, headers, body))
            .await
            .map_err(|_| err("request timed out"))?
    }

    async fn request_inner(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
        let mut has_len = false;
        for (k, v) in headers {
            has_len |= k.eq_ignore_ascii_case("content-length");
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !has_len && (!body.is_empty() || method == "POST") {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let s = self.stream.get_mut();
        s.write_all(req.as_bytes()).await?;
        // A server may answer (e.g. 413) and close before reading the whole body: keep the
        // write error, but read the answer if there is one.
        let written = match s.write_all(body).await {
            Ok(()) => s.flush().await,
            Err(e) => Err(e),
        };
        let mut line = String::new();
        match self.stream.read_line(&mut line).await {
            Ok(0) | Err(_) if written.is_err() => return Err(written.unwrap_err()),
            Ok(0) => return Err(err("connection closed")),
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| err(format!("bad status line '{}'", line.trim_end())))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                return Err(err("connection closed in headers"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if let Some(len) = get("content-length") {
            let n: usize = len.parse().map_err(|_| err("bad content-length"))?;
            body.resize(n, 0);
            self.stream.read_exact(&mut body).await?;
        } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                line.clear();
                self.stream.read_line(&mut line).await?;
                let n = usize::from_str_radix(line.trim(), 16).map_err(|_| err("bad chunk"))?;
                let mut chunk = vec![0; n + 2];
                self.stream.read_exact(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}
