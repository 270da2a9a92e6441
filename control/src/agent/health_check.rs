//! Health check node ports of `externalTrafficPolicy: Local` services, answered as kube-proxy
//! answers them, so cloud load balancers send a service's traffic only to nodes that have one
//! of its endpoints.
//!
//! One listener per `healthCheckNodePort` on the node IP. The port is not steered, so the
//! kernel delivers the probe to us. Any request gets
//! `{"service":{"namespace":..,"name":..},"localEndpoints":N,"serviceProxyHealthy":true}`,
//! status 200 when N > 0, else 503 (kube-proxy's `pkg/proxy/healthcheck/service_health.go`),
//! with N as read when the answer is written.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Longest request read (the probe is one small GET).
const MAX_REQUEST: usize = 8 * 1024;
/// A prober that sends nothing is dropped after this.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What one port answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub namespace: String,
    pub name: String,
    pub local_endpoints: usize,
}

impl Answer {
    /// From the compiler's report entry (`namespace/name`, local ready endpoints).
    pub fn new(service: &str, local_endpoints: usize) -> Answer {
        let (namespace, name) = service.split_once('/').unwrap_or(("", service));
        Answer {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            local_endpoints,
        }
    }

    /// The whole HTTP response.
    pub fn response(&self) -> Vec<u8> {
        let body = json!({
            "service": {"namespace": self.namespace, "name": self.name},
            "localEndpoints": self.local_endpoints,
            "serviceProxyHealthy": true,
        })
        .to_string();
        let status = if self.local_endpoints > 0 {
            "200 OK"
        } else {
            "503 Service Unavailable"
        };
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n\
             X-Load-Balancing-Endpoint-Weight: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.local_endpoints,
            body.len()
        )
        .into_bytes()
    }
}

struct Server {
    answer: watch::Sender<Answer>,
    task: JoinHandle<()>,
}

/// The listeners, one per health check node port.
pub struct HealthChecks {
    ip: Ipv4Addr,
    servers: BTreeMap<u16, Server>,
}

impl std::fmt::Debug for HealthChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthChecks")
            .field("ip", &self.ip)
            .field("ports", &self.servers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl HealthChecks {
    /// Listeners will bind `ip`.
    pub fn new(ip: Ipv4Addr) -> Self {
        HealthChecks {
            ip,
            servers: BTreeMap::new(),
        }
    }

    /// Serve exactly `wanted` (port, `namespace/name`, local endpoints): close the ports no
    /// longer listed, open the new ones, update the answers. A port that cannot be bound is
    /// logged and tried again at the next sync. Call inside the tokio runtime.
    pub fn sync(&mut self, wanted: &[(u16, String, usize)]) {
        let wanted: BTreeMap<u16, Answer> = wanted
            .iter()
            .map(|(port, svc, n)| (*port, Answer::new(svc, *n)))
            .collect();
        self.servers.retain(|port, server| {
            let keep = wanted.contains_key(port);
            if !keep {
                server.task.abort();
                tracing::info!(port, "health check node port closed");
            }
            keep
        });
        for (port, answer) in wanted {
            if let Some(server) = self.servers.get(&port) {
                server.answer.send_if_modified(|a| {
                    let changed = *a != answer;
                    *a = answer.clone();
                    changed
                });
                continue;
            }
            match self.bind(port) {
                Ok(listener) => {
                    tracing::info!(
                        port,
                        service = %format!("{}/{}", answer.namespace, answer.name),
                        "health check node port open"
                    );
                    let (tx, rx) = watch::channel(answer);
                    let task = tokio::spawn(serve(listener, rx));
                    self.servers.insert(port, Server { answer: tx, task });
                }
                Err(e) => tracing::warn!(port, "health check node port on {}: {e}", self.ip),
            }
        }
    }

    fn bind(&self, port: u16) -> std::io::Result<TcpListener> {
        let listener = std::net::TcpListener::bind(SocketAddr::from((self.ip, port)))?;
        listener.set_nonblocking(true)?;
        TcpListener::from_std(listener)
    }

    /// The ports served now.
    pub fn ports(&self) -> Vec<u16> {
        self.servers.keys().copied().collect()
    }
}

impl Drop for HealthChecks {
    fn drop(&mut self) {
        for s in self.servers.values() {
            s.task.abort();
        }
    }
}

async fn serve(listener: TcpListener, answer: watch::Receiver<Answer>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(answer_one(stream, answer.clone()));
            }
            Err(e) => {
                tracing::debug!("health check accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Read the request head (its content does not matter), then answer.
async fn answer_one(mut stream: TcpStream, answer: watch::Receiver<Answer>) {
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    let read = async {
        while len < buf.len() {
            match stream.read(&mut buf[len..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => len += n,
            }
            if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    };
    if tokio::time::timeout(READ_TIMEOUT, read).await.is_err() {
        return;
    }
    let response = answer.borrow().response();
    let _ = stream.write_all(&response).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn answers_like_kube_proxy() {
        let r = String::from_utf8(Answer::new("default/web", 2).response()).unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.ends_with(
            r#"{"service":{"namespace":"default","name":"web"},"localEndpoints":2,"serviceProxyHealthy":true}"#
        ));
        let r = String::from_utf8(Answer::new("default/web", 0).response()).unwrap();
        assert!(r.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{r}");
        assert!(r.contains(r#""localEndpoints":0"#));
    }

    async fn get(port: u16) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[tokio::test]
    async fn follows_the_report() {
        let mut hc = HealthChecks::new(Ipv4Addr::LOCALHOST);
        let port = free_port();
        hc.sync(&[(port, "ns/web".into(), 0)]);
        assert_eq!(hc.ports(), [port]);
        assert!(get(port).await.starts_with("HTTP/1.1 503"));
        hc.sync(&[(port, "ns/web".into(), 3)]);
        let r = get(port).await;
        assert!(
            r.starts_with("HTTP/1.1 200") && r.contains(r#""localEndpoints":3"#),
            "{r}"
        );
        hc.sync(&[]);
        assert!(hc.ports().is_empty());
        // The listener is gone once its task has been aborted (at the next poll).
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());
    }
}
