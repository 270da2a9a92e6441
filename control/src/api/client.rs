//! [`ApiClient`]: one request per connection, with a timeout, for `kxdp-cni` and
//! `kxdp inspect`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::protocol::{Request, Response};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The agent is not running (or not listening on this path).
    #[error("cannot reach the kxdp agent at {path}: {source} (is the agent running?)")]
    Unreachable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The connection broke or timed out mid-request.
    #[error("talking to the kxdp agent at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The agent answered with an error.
    #[error("the kxdp agent refused: {0}")]
    Refused(String),
    /// The answer did not parse.
    #[error("unexpected answer from the kxdp agent: {0}")]
    Protocol(String),
}

/// A client of the agent's local API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    path: PathBuf,
    timeout: Duration,
}

impl ApiClient {
    pub fn new(path: &Path) -> Self {
        ApiClient {
            path: path.to_path_buf(),
            timeout: Duration::from_secs(30),
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Send one request and return the `ok` value.
    pub fn call(&self, request: &Request) -> Result<serde_json::Value, ClientError> {
        let stream =
            UnixStream::connect(&self.path).map_err(|source| ClientError::Unreachable {
                path: self.path.clone(),
                source,
            })?;
        let io = |source| ClientError::Io {
            path: self.path.clone(),
            source,
        };
        stream.set_read_timeout(Some(self.timeout)).map_err(io)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(io)?;
        let mut line =
            serde_json::to_vec(request).map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push(b'\n');
        (&stream).write_all(&line).map_err(io)?;
        let mut answer = String::new();
        BufReader::new(&stream).read_line(&mut answer).map_err(io)?;
        match serde_json::from_str::<Response>(answer.trim()) {
            Ok(Response::Ok(v)) => Ok(v),
            Ok(Response::Error(e)) => Err(ClientError::Refused(e)),
            Err(e) => Err(ClientError::Protocol(format!("{e}: {answer:?}"))),
        }
    }

    /// Send a request and decode the `ok` value as `T`.
    pub fn call_as<T: DeserializeOwned>(&self, request: &Request) -> Result<T, ClientError> {
        let v = self.call(request)?;
        serde_json::from_value(v).map_err(|e| ClientError::Protocol(e.to_string()))
    }
}
