//! A TCP proxy on the loopback between workers and the test server, whose
//! client side the tests can cut while the server side stays open: the worker
//! sees its connections fail, while the server's sessions go on (a statement
//! blocked on a lock still commits when the lock is released), as when a
//! network path breaks one way.

use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running proxy.
pub struct Proxy {
    /// `host:port` to connect to instead of the server.
    pub addr: std::net::SocketAddr,
    cut: watch::Sender<u64>,
    task: JoinHandle<()>,
    /// The server-side sockets of cut connections, kept open on purpose.
    kept: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Listens on 127.0.0.1 and forwards every connection to `server`.
    pub async fn start(server: std::net::SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (cut, cuts) = watch::channel(0u64);
        let kept = Arc::new(Mutex::new(Vec::new()));
        let kept_by_task = kept.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let Ok(upstream) = TcpStream::connect(server).await else {
                    continue;
                };
                tokio::spawn(forward(
                    client,
                    upstream,
                    cuts.clone(),
                    kept_by_task.clone(),
                ));
            }
        });
        Proxy {
            addr,
            cut,
            task,
            kept,
        }
    }

    /// Closes the client side of every connection open now; their server
    /// sides stay open (and unread) until the proxy is dropped.
    pub fn cut_clients(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.kept.lock().expect("kept sockets").clear();
    }
}

async fn forward(
    mut client: TcpStream,
    mut upstream: TcpStream,
    mut cuts: watch::Receiver<u64>,
    kept: Arc<Mutex<Vec<TcpStream>>>,
) {
    cuts.borrow_and_update();
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        _ = cuts.changed() => {
            let _ = client.shutdown().await;
            drop(client);
            kept.lock().expect("kept sockets").push(upstream);
        }
    }
}
