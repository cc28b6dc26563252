//! Placement through the real server: the io_uring outbox that sends
//! protocol threads' replies, and serving with pinning and io_uring off.
//!
//! This test binary has its own harness (libtest-mimic) so that what this
//! machine cannot exercise shows as ignored in the summary, not as a pass:
//! the outbox tests need a kernel (and seccomp profile) whose io_uring can
//! send, which `placement::outbox::available` probes.

mod common;

use std::time::Duration;

use common::TestServer;
use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    let args = Arguments::from_args();
    #[cfg(target_os = "linux")]
    let io_uring = featuredb::placement::outbox::available();
    #[cfg(not(target_os = "linux"))]
    let io_uring = false;
    if !io_uring {
        eprintln!("io_uring cannot send here: the outbox tests are ignored");
    }
    let needs_io_uring = |trial: Trial| trial.with_ignored_flag(!io_uring);
    let mut trials = vec![Trial::test(
        "lookups_are_served_with_pinning_and_io_uring_off",
        lookups_are_served_with_pinning_and_io_uring_off,
    )];
    #[cfg(target_os = "linux")]
    trials.extend([
        needs_io_uring(Trial::test(
            "outbox_queued_replies_reach_their_sockets",
            outbox::queued_replies_reach_their_sockets,
        )),
        needs_io_uring(Trial::test(
            "outbox_what_a_socket_does_not_take_is_left_to_the_connection",
            outbox::what_a_socket_does_not_take_is_left_to_the_connection,
        )),
        needs_io_uring(Trial::test(
            "lookup_replies_a_socket_cannot_take_at_once_arrive_whole",
            lookup_replies_a_socket_cannot_take_at_once_arrive_whole,
        )),
    ]);
    #[cfg(not(target_os = "linux"))]
    let _ = needs_io_uring;
    libtest_mimic::run(&args, trials).exit();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A view of 100 documents of 3000 bytes each, refreshed online.
async fn documents(server: &TestServer) {
    let setup = server.client().await;
    setup
        .batch_execute(
            "CREATE TABLE docs (id bigint, ts timestamptz, body text);
             INSERT INTO docs SELECT v, TIMESTAMPTZ '2024-01-01 00:00:00+00',
                 repeat(chr(65 + (v % 26)::int), 3000)
               FROM generate_series(1, 100) AS t(v);
             CREATE FEATURE VIEW doc_features KEY (id) TIMESTAMP ts ONLINE
               AS SELECT id, ts, body FROM docs;
             REFRESH FEATURE VIEW doc_features;",
        )
        .await
        .unwrap();
}

/// The server's log without terminal colours.
fn plain_log(server: &TestServer) -> String {
    let log = server.log_text();
    let mut plain = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An escape sequence: `ESC [ … m`.
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

fn letter_of(id: i64) -> char {
    char::from(b'A' + (id % 26) as u8)
}

/// Both machine-level choices off: connections are still served on
/// protocol threads, and the server says how it places them.
fn lookups_are_served_with_pinning_and_io_uring_off() -> Result<(), Failed> {
    runtime().block_on(async {
        let temp = tempfile::tempdir().unwrap();
        let server = TestServer::start_with(
            &temp.path().join("data"),
            &[
                ("FEATUREDB_PROTOCOL_THREADS", "2"),
                ("FEATUREDB_PIN_PROTOCOL_THREADS", "off"),
                ("FEATUREDB_IO_URING", "off"),
            ],
        );
        documents(&server).await;
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(server.client().await);
        }
        for (i, client) in clients.iter().enumerate() {
            let lookup = client
                .prepare("SELECT body FROM doc_features WHERE id = $1")
                .await
                .unwrap();
            for id in [i as i64 + 1, i as i64 + 50] {
                let body: String = client.query_one(&lookup, &[&id]).await.unwrap().get(0);
                assert_eq!(body, letter_of(id).to_string().repeat(3000));
            }
        }
        let log = plain_log(&server);
        assert!(
            log.contains("protocol_threads=2 pinned=false io_uring=false"),
            "the server logs how it places connections:\n{log}"
        );
        assert!(!log.contains("through io_uring"));
    });
    Ok(())
}

/// Replies a socket does not take at once are left to the connection's own
/// write (`placement/outbox.rs`): the bytes must arrive whole and in order.
/// A raw client pipelines many lookups without reading, so the socket fills
/// up (checked by hand: the fallback is taken), then reads every reply.
#[cfg(target_os = "linux")]
fn lookup_replies_a_socket_cannot_take_at_once_arrive_whole() -> Result<(), Failed> {
    use std::io::Write;

    runtime().block_on(async {
        let temp = tempfile::tempdir().unwrap();
        let server = TestServer::start_with(
            &temp.path().join("data"),
            &[("FEATUREDB_PROTOCOL_THREADS", "2")],
        );
        documents(&server).await;
        let port = server.port;
        tokio::task::spawn_blocking(move || {
            let message = |tag: u8, body: &[u8]| {
                let mut out = vec![tag];
                out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
                out.extend_from_slice(body);
                out
            };
            let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let mut startup = 196608i32.to_be_bytes().to_vec();
            startup.extend_from_slice(b"user\0test\0database\0featuredb\0\0");
            let mut first = ((startup.len() + 4) as i32).to_be_bytes().to_vec();
            first.extend_from_slice(&startup);
            first.extend(message(
                b'P',
                b"s\0SELECT body FROM doc_features WHERE id = $1\0\0\0",
            ));
            first.extend(message(b'S', b""));
            socket.write_all(&first).unwrap();
            let mut replies = Replies::new(socket.try_clone().unwrap());
            replies.until_ready();
            replies.until_ready();
            // 2000 lookups (~6 MB of replies) written before any is read.
            let mut requests = Vec::new();
            for i in 0..2000 {
                let id = (i % 100 + 1).to_string();
                let mut bind = b"\0s\0\0\0\0\x01".to_vec();
                bind.extend_from_slice(&(id.len() as i32).to_be_bytes());
                bind.extend_from_slice(id.as_bytes());
                bind.extend_from_slice(b"\0\0");
                requests.extend(message(b'B', &bind));
                requests.extend(message(b'E', b"\0\0\0\0\0"));
                requests.extend(message(b'S', b""));
            }
            let mut writer = socket;
            let writing = std::thread::spawn(move || writer.write_all(&requests).unwrap());
            std::thread::sleep(Duration::from_millis(500));
            for i in 0..2000 {
                let rows = replies.until_ready();
                let letter = letter_of(i % 100 + 1);
                assert_eq!(rows, vec![letter.to_string().repeat(3000)], "reply {i}");
            }
            writing.join().unwrap();
        })
        .await
        .unwrap();
        // What this test is about ran: the replies went through the outbox.
        let log = plain_log(&server);
        assert!(
            log.contains("sends its replies through io_uring"),
            "the protocol threads did not use io_uring:\n{log}"
        );
    });
    Ok(())
}

/// Reads backend messages from a raw connection.
#[cfg(target_os = "linux")]
struct Replies {
    socket: std::net::TcpStream,
}

#[cfg(target_os = "linux")]
impl Replies {
    fn new(socket: std::net::TcpStream) -> Self {
        Self { socket }
    }

    /// The text of each DataRow's first column until ReadyForQuery; an
    /// ErrorResponse fails the test.
    fn until_ready(&mut self) -> Vec<String> {
        use std::io::Read;
        let mut rows = Vec::new();
        loop {
            let mut header = [0u8; 5];
            self.socket.read_exact(&mut header).unwrap();
            let len = i32::from_be_bytes(header[1..].try_into().unwrap()) as usize - 4;
            let mut body = vec![0u8; len];
            self.socket.read_exact(&mut body).unwrap();
            match header[0] {
                b'Z' => return rows,
                b'E' => panic!("error: {}", String::from_utf8_lossy(&body)),
                b'D' => {
                    let value_len = i32::from_be_bytes(body[2..6].try_into().unwrap()) as usize;
                    rows.push(String::from_utf8(body[6..6 + value_len].to_vec()).unwrap());
                }
                _ => {}
            }
        }
    }
}

/// The outbox on a protocol-thread-like event loop of the test's own.
#[cfg(target_os = "linux")]
mod outbox {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use bytes::Bytes;
    use featuredb::placement::outbox::{Outbox, Sent, current, serve};
    use libtest_mimic::Failed;

    /// Runs `test` on a current-thread event loop whose outbox serves.
    fn on_outbox_thread(test: impl AsyncFnOnce(&'static Outbox)) -> Result<(), Failed> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let local = tokio::task::LocalSet::new();
            local
                .run_until(async {
                    tokio::task::spawn_local(serve());
                    tokio::task::yield_now().await;
                    let outbox = current().ok_or("io_uring was probed usable, yet no outbox")?;
                    test(outbox).await;
                    Ok(())
                })
                .await
        })
    }

    pub fn queued_replies_reach_their_sockets() -> Result<(), Failed> {
        on_outbox_thread(async |outbox| {
            let pairs: Vec<_> = (0..3).map(|_| UnixStream::pair().unwrap()).collect();
            let waits: Vec<_> = pairs
                .iter()
                .enumerate()
                .map(|(i, (ours, _))| {
                    outbox.queue(ours.as_raw_fd(), Bytes::from(format!("reply {i}")))
                })
                .collect();
            for (i, wait) in waits.into_iter().enumerate() {
                assert_eq!(wait.await.unwrap(), Sent::Bytes(7));
                let mut got = [0u8; 7];
                (&pairs[i].1).read_exact(&mut got).unwrap();
                assert_eq!(got, format!("reply {i}").as_bytes());
            }
        })
    }

    pub fn what_a_socket_does_not_take_is_left_to_the_connection() -> Result<(), Failed> {
        on_outbox_thread(async |outbox| {
            // A peer that has gone: the send fails and takes nothing.
            let (ours, theirs) = UnixStream::pair().unwrap();
            drop(theirs);
            let sent = outbox
                .queue(ours.as_raw_fd(), Bytes::from_static(b"x"))
                .await;
            assert_eq!(sent.unwrap(), Sent::Bytes(0));
            // A peer that does not read: the buffer takes only part of it.
            let (ours, _theirs) = UnixStream::pair().unwrap();
            let big = Bytes::from(vec![7u8; 64 << 20]);
            let sent = outbox.queue(ours.as_raw_fd(), big.clone()).await;
            match sent.unwrap() {
                Sent::Bytes(n) => assert!(n < big.len(), "{n} bytes sent"),
                Sent::Lost => panic!("a completed send is never lost"),
            }
        })
    }
}
