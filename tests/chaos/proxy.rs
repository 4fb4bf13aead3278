//! A TCP relay on 127.0.0.1 that can be partitioned: while partitioned it moves no bytes in
//! either direction (connections hang and time out, as behind a broken network link), and it
//! relays again once healed. A global is pointed at it through a node's `advertise` address.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

pub(crate) struct Proxy {
    addr: SocketAddr,
    blocked: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Relays connections on a free port to `upstream`.
    pub(crate) fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the proxy");
        Proxy::on(listener, upstream)
    }

    fn on(listener: TcpListener, upstream: SocketAddr) -> Proxy {
        let addr = listener.local_addr().expect("proxy address");
        let blocked = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (blocked.clone(), stop.clone());
        let accept = thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Acquire) {
                    return;
                }
                let Ok(client) = conn else { continue };
                let (b, s) = (b.clone(), s.clone());
                thread::spawn(move || relay(client, upstream, b, s));
            }
        });
        Proxy { addr, blocked, stop, accept: Some(accept) }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on nothing passes.
    pub(crate) fn partition(&self) {
        self.blocked.store(true, Ordering::Release);
    }

    pub(crate) fn heal(&self) {
        self.blocked.store(false, Ordering::Release);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.blocked.store(false, Ordering::Release);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn relay(client: TcpStream, upstream: SocketAddr, blocked: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    // A connection opened during a partition waits, like a SYN that gets no answer.
    while blocked.load(Ordering::Acquire) && !stop.load(Ordering::Acquire) {
        thread::sleep(Duration::from_millis(20));
    }
    let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(2)) else { return };
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else { return };
    let (b2, st2) = (blocked.clone(), stop.clone());
    let up = thread::spawn(move || pump(client, server, blocked, stop));
    pump(s2, c2, b2, st2);
    let _ = up.join();
}

/// Copies `from` → `to` while not blocked; ends at EOF or an error on either side.
fn pump(mut from: TcpStream, mut to: TcpStream, blocked: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if stop.load(Ordering::Acquire) {
            break;
        }
        if blocked.load(Ordering::Acquire) {
            thread::sleep(Duration::from_millis(20));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}
