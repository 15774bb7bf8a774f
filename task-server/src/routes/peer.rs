//! Whether the client of a request is still connected. A long-poll that outlives its client (a
//! processor stopped or killed while it waited) must not be granted a task: nobody would run it,
//! and it would sit out its lease. actix-web does not cancel a pending handler when the client
//! goes away, so each connection's socket is recorded when it opens ([`on_connect`]) and peeked
//! before a grant: end-of-stream or a reset means the client is gone.
use std::any::Any;
use std::os::fd::{AsRawFd, RawFd};

use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use actix_web::HttpRequest;
use nix::errno::Errno;
use nix::sys::socket::{recv, MsgFlags};

/// The socket of a connection. Valid while a request of that connection is being handled: the
/// connection (which owns the socket) outlives its requests' handlers.
#[derive(Debug, Clone, Copy)]
struct PeerSocket(RawFd);

/// Records the socket of each new connection (plain TCP or TLS).
pub fn on_connect(conn: &dyn Any, ext: &mut Extensions) {
    type Tls = actix_tls::accept::rustls_0_23::TlsStream<TcpStream>;
    let fd = match (conn.downcast_ref::<TcpStream>(), conn.downcast_ref::<Tls>()) {
        (Some(tcp), _) => tcp.as_raw_fd(),
        (_, Some(tls)) => tls.get_ref().0.as_raw_fd(),
        _ => return,
    };
    ext.insert(PeerSocket(fd));
}

/// The client of one request, as far as its connection tells.
#[derive(Debug, Clone, Copy, Default)]
pub struct Peer(Option<PeerSocket>);

impl Peer {
    /// The client of `req` (one whose socket was not recorded counts as connected).
    pub fn of(req: &HttpRequest) -> Peer {
        Peer(req.conn_data::<PeerSocket>().copied())
    }

    /// Whether the client closed or reset the connection. A client that sent more (a
    /// pipelined request, TLS records) counts as connected.
    pub fn gone(&self) -> bool {
        let Some(PeerSocket(fd)) = self.0 else {
            return false;
        };
        let mut byte = [0u8; 1];
        match recv(fd, &mut byte, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT) {
            Ok(0) => true,
            Ok(_) => false,
            Err(Errno::EAGAIN | Errno::EINTR) => false,
            Err(_) => true,
        }
    }
}
