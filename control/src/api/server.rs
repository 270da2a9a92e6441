//! [`ApiServer`]: a Unix socket, one thread accepting, a short-lived thread per connection.
//! Requests are rare (a pod start or stop, an operator's inspect), so threads are simpler than
//! an async server and keep the handler synchronous — pod attachment binds AF_XDP sockets,
//! which must happen in the agent's network namespace, where these threads are.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::protocol::{Request, Response};

/// Largest request accepted (a request is a few hundred bytes).
const MAX_REQUEST: u64 = 64 * 1024;

/// What the server calls; an `Err` is sent to the client as `{"error": ...}`.
pub trait ApiHandler: Send + Sync + 'static {
    fn handle(&self, request: Request) -> Result<serde_json::Value, String>;

    /// [`Request::Capture`]: a writer of the capture (pcapng), run after the answer line; or
    /// why there is none.
    fn capture(
        &self,
        _iface: Option<&str>,
        _count: u64,
        _seconds: u64,
    ) -> Result<CaptureWriter, String> {
        Err("this agent does not capture".into())
    }
}

/// Writes a capture to the client; returns when it is done or the client is gone.
pub type CaptureWriter = Box<dyn FnOnce(&mut dyn Write) -> std::io::Result<()> + Send>;

/// A listening API socket. Dropping it stops accepting and removes the socket file.
#[derive(Debug)]
pub struct ApiServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ApiServer {
    /// Bind `path` (creating its directory; replacing a stale socket of a dead agent) and
    /// serve until dropped.
    pub fn start(path: &Path, handler: Arc<dyn ApiHandler>) -> std::io::Result<ApiServer> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if path.exists() {
            // A live agent answers; a stale file from a killed one does not.
            if UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("{}: another agent is serving it", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("kxdp-api".into())
            .spawn(move || accept_loop(&listener, handler, &s))?;
        Ok(ApiServer {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(listener: &UnixListener, handler: Arc<dyn ApiHandler>, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, _)) => {
                let h = Arc::clone(&handler);
                let spawned = std::thread::Builder::new()
                    .name("kxdp-api-conn".into())
                    .spawn(move || {
                        if let Err(e) = serve(stream, h.as_ref()) {
                            tracing::debug!("api connection: {e}");
                        }
                    });
                if let Err(e) = spawned {
                    tracing::warn!("api: cannot spawn a connection thread: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                tracing::warn!("api accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn serve(stream: UnixStream, handler: &dyn ApiHandler) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = String::new();
    BufReader::new(std::io::Read::take(&stream, MAX_REQUEST)).read_line(&mut line)?;
    let response = match serde_json::from_str::<Request>(line.trim()) {
        Ok(Request::Capture {
            iface,
            count,
            seconds,
        }) => match handler.capture(iface.as_deref(), count, seconds) {
            Ok(writer) => {
                let mut out = serde_json::to_vec(&Response::Ok(serde_json::json!({
                    "format": "pcapng"
                })))
                .map_err(std::io::Error::other)?;
                out.push(b'\n');
                (&stream).write_all(&out)?;
                stream.set_write_timeout(Some(Duration::from_secs(10)))?;
                let mut w = std::io::BufWriter::new(&stream);
                writer(&mut w)?;
                return w.flush();
            }
            Err(e) => Response::Error(e),
        },
        Ok(req) => {
            tracing::debug!(?req, "api request");
            match handler.handle(req) {
                Ok(v) => Response::Ok(v),
                Err(e) => Response::Error(e),
            }
        }
        Err(e) => Response::Error(format!("bad request: {e}")),
    };
    let mut out = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
    out.push(b'\n');
    (&stream).write_all(&out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::api::client::{ApiClient, ClientError};
    use crate::api::protocol::InspectWhat;

    struct Echo;

    impl ApiHandler for Echo {
        fn handle(&self, request: Request) -> Result<serde_json::Value, String> {
            match request {
                Request::NodeInfo => Ok(serde_json::json!({"node": "a"})),
                Request::DetachPod { id } => Err(format!("no pod {id}")),
                other => Ok(serde_json::to_value(format!("{other:?}")).unwrap()),
            }
        }
    }

    fn socket_path(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("kxdp-api-{tag}-{}/kxdp.sock", std::process::id()))
    }

    #[test]
    fn answers_errors_and_cleans_up() {
        let path = socket_path("a");
        let server = ApiServer::start(&path, Arc::new(Echo)).unwrap();
        let client = ApiClient::new(&path);
        assert_eq!(
            client.call(&Request::NodeInfo).unwrap(),
            serde_json::json!({"node": "a"})
        );
        let err = client
            .call(&Request::DetachPod { id: "x".into() })
            .unwrap_err();
        assert!(
            matches!(err, ClientError::Refused(ref m) if m == "no pod x"),
            "{err}"
        );
        let v = client
            .call(&Request::Inspect {
                what: InspectWhat::Stats,
            })
            .unwrap();
        assert!(v.as_str().unwrap().contains("Stats"));
        // A second agent on the same socket is refused while the first one serves.
        assert!(ApiServer::start(&path, Arc::new(Echo)).is_err());
        drop(server);
        assert!(!path.exists(), "socket removed");
        let err = client.call(&Request::NodeInfo).unwrap_err();
        assert!(err.to_string().contains("is the agent running"), "{err}");
    }

    #[test]
    fn a_stale_socket_file_is_replaced_and_garbage_is_answered() {
        let path = socket_path("b");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap()); // left behind
        let _server = ApiServer::start(&path, Arc::new(Echo)).unwrap();
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(b"{not json\n").unwrap();
        let mut answer = String::new();
        BufReader::new(&s).read_line(&mut answer).unwrap();
        assert!(answer.starts_with(r#"{"error":"bad request"#), "{answer}");
    }
}
