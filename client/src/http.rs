//! Bounded HTTP reads: every HTTP GET made by `kt` (a witness's gossip URL) and `kt-audit`
//! (tiles, the HTTP checkpoint) goes through [`get_bounded`], which refuses an answer as soon as
//! it is larger than its caller's limit and gives up after a total timeout
//! (`docs/operations.md`, "HTTP reads").
//!
//! A server (or anything on the path) can otherwise make a reader hold an endless body in memory,
//! or wait forever on a connection that never answers.

use std::time::Duration;

use thiserror::Error;

/// Longest wait for a TCP (and TLS) connection to an HTTP server.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait for one whole answer: connecting, the headers and the last byte of the body.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The bounds of one kind of HTTP read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest body accepted, in bytes.
    pub max_bytes: u64,
    /// See [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// See [`DEFAULT_TIMEOUT`].
    pub timeout: Duration,
}

impl HttpLimits {
    /// `max_bytes` with the default timeouts.
    pub const fn new(max_bytes: u64) -> Self {
        HttpLimits {
            max_bytes,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// A client builder with the connect timeout, for [`crate::TlsOptions::http_client`]. The
    /// total timeout is [`get_bounded`]'s, whatever client it is given (so one client serves
    /// reads of different limits).
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder().connect_timeout(self.connect_timeout)
    }

    /// These limits with another total timeout.
    pub const fn with_timeout(self, timeout: Duration) -> Self {
        HttpLimits { timeout, ..self }
    }
}

/// Why a bounded HTTP read failed. Nothing read is kept.
#[derive(Debug, Error)]
pub enum HttpError {
    #[error("GET {url}: {reason}")]
    Request { url: String, reason: String },
    #[error("GET {url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("GET {url}: the answer declares {length} bytes (Content-Length), more than the limit of {limit}; refused")]
    DeclaredTooLarge {
        url: String,
        length: u64,
        limit: u64,
    },
    #[error("GET {url}: the answer passed the limit of {limit} bytes; refused")]
    TooLarge { url: String, limit: u64 },
    #[error("GET {url}: no complete answer within {} ms; gave up", .timeout.as_millis())]
    Timeout { url: String, timeout: Duration },
}

/// GETs `url` with `client` and returns its body, or `None` for `404 Not Found`. Refused: a
/// `Content-Length` above `limits.max_bytes` (before reading any of the body), a body that
/// passes `limits.max_bytes` (as soon as it does: it is read chunk by chunk, so at most the
/// limit plus one chunk is ever held), any other status than 200–299 and 404, and an answer
/// that is not complete within `limits.timeout`.
pub async fn get_bounded(
    client: &reqwest::Client,
    url: &str,
    limits: &HttpLimits,
) -> Result<Option<Vec<u8>>, HttpError> {
    match tokio::time::timeout(limits.timeout, read(client, url, limits)).await {
        Ok(result) => result,
        Err(_) => Err(HttpError::Timeout {
            url: url.to_owned(),
            timeout: limits.timeout,
        }),
    }
}

async fn read(
    client: &reqwest::Client,
    url: &str,
    limits: &HttpLimits,
) -> Result<Option<Vec<u8>>, HttpError> {
    let limit = limits.max_bytes;
    let failed = |e: reqwest::Error| {
        if e.is_timeout() {
            // The client's own timeout (`HttpLimits::client_builder`).
            HttpError::Timeout {
                url: url.to_owned(),
                timeout: limits.timeout,
            }
        } else {
            HttpError::Request {
                url: url.to_owned(),
                reason: error_chain(&e),
            }
        }
    };
    let mut resp = client.get(url).send().await.map_err(failed)?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !resp.status().is_success() {
        return Err(HttpError::Status {
            url: url.to_owned(),
            status: resp.status().as_u16(),
        });
    }
    if let Some(length) = resp.content_length().filter(|&l| l > limit) {
        return Err(HttpError::DeclaredTooLarge {
            url: url.to_owned(),
            length,
            limit,
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(failed)? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(HttpError::TooLarge {
                url: url.to_owned(),
                limit,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// reqwest's errors say "error sending request"; the reason is in their sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    //! A hostile HTTP server on 127.0.0.1: an endless body (with a lying or no Content-Length),
    //! a huge declared length, and a server that accepts and never answers.

    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[derive(Clone, Copy)]
    enum Hostile {
        /// `Content-Length` is not sent; the body never ends.
        EndlessChunked,
        /// A `Content-Length` within the limit, then far more bytes than it declared.
        EndlessUnderDeclared,
        /// Declares 1 GiB (and would send it).
        DeclaresHuge,
        /// Accepts the connection and says nothing.
        Silent,
        /// An honest small answer.
        Honest,
    }

    /// Serves `hostile` to every connection; counts the body bytes it managed to write.
    async fn serve(hostile: Hostile) -> (String, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/checkpoint", listener.local_addr().unwrap());
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut request = [0u8; 1024];
                    let _ = sock.read(&mut request).await;
                    let head: &[u8] = match hostile {
                        Hostile::EndlessChunked => {
                            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        }
                        Hostile::EndlessUnderDeclared => {
                            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
                        }
                        Hostile::DeclaresHuge => {
                            b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n"
                        }
                        Hostile::Honest => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                        Hostile::Silent => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                    };
                    if sock.write_all(head).await.is_err() {
                        return;
                    }
                    let block = vec![b'x'; 16 * 1024];
                    let chunk = [
                        format!("{:x}\r\n", block.len()).into_bytes(),
                        block.clone(),
                        b"\r\n".to_vec(),
                    ]
                    .concat();
                    loop {
                        let out = match hostile {
                            Hostile::EndlessChunked => &chunk,
                            Hostile::EndlessUnderDeclared | Hostile::DeclaresHuge => &block,
                            _ => return,
                        };
                        if sock.write_all(out).await.is_err() {
                            return;
                        }
                        counter.fetch_add(block.len() as u64, Ordering::Relaxed);
                    }
                });
            }
        });
        (url, sent)
    }

    fn limits() -> HttpLimits {
        HttpLimits {
            max_bytes: 64 * 1024,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
        }
    }

    async fn get(url: &str, limits: &HttpLimits) -> Result<Option<Vec<u8>>, HttpError> {
        let client = limits.client_builder().build().unwrap();
        // The bound on how long a refusal may take: generous, only "it did not hang".
        tokio::time::timeout(Duration::from_secs(30), get_bounded(&client, url, limits))
            .await
            .expect("get_bounded returned instead of hanging")
    }

    #[tokio::test]
    async fn an_endless_body_is_refused_at_the_limit() {
        let (url, sent) = serve(Hostile::EndlessChunked).await;
        // A long total timeout: the byte limit must stop it, not the clock.
        let limits = HttpLimits {
            timeout: Duration::from_secs(25),
            ..limits()
        };
        let err = get(&url, &limits).await.unwrap_err();
        assert!(
            matches!(err, HttpError::TooLarge { limit: 65536, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("65536 bytes"), "{err}");
        // The reader stopped reading: the server could not push much more than the limit (plus
        // what the kernel's socket buffers hold).
        tokio::time::sleep(Duration::from_millis(200)).await;
        let n = sent.load(Ordering::Relaxed);
        assert!(n < 16 * 1024 * 1024, "the server sent {n} bytes");
    }

    #[tokio::test]
    async fn a_body_longer_than_its_declared_length_is_cut_at_the_declared_length() {
        // hyper stops at the declared length; the rest is never read as body.
        let (url, _) = serve(Hostile::EndlessUnderDeclared).await;
        let body = get(&url, &limits()).await.unwrap().unwrap();
        assert_eq!(body.len(), 100);
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_up_front() {
        let (url, _) = serve(Hostile::DeclaresHuge).await;
        let err = get(&url, &limits()).await.unwrap_err();
        assert!(
            matches!(
                err,
                HttpError::DeclaredTooLarge {
                    length: 1_073_741_824,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        let (url, _) = serve(Hostile::Silent).await;
        let err = get(&url, &limits()).await.unwrap_err();
        assert!(matches!(err, HttpError::Timeout { .. }), "{err}");
        // The same with a client that has no timeout of its own: get_bounded's holds.
        let client = reqwest::Client::new();
        let err = tokio::time::timeout(
            Duration::from_secs(30),
            get_bounded(&client, &url, &limits()),
        )
        .await
        .expect("returned instead of hanging")
        .unwrap_err();
        assert!(matches!(err, HttpError::Timeout { .. }), "{err}");
    }

    #[tokio::test]
    async fn an_honest_answer_is_read() {
        let (url, _) = serve(Hostile::Honest).await;
        assert_eq!(get(&url, &limits()).await.unwrap().unwrap(), b"hello");
    }
}
