//! The harness's ceiling server answers 204 and exits normally at SIGTERM (so an instrumented
//! build writes its profile: `scripts/build-pgo.sh`).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use tagpipe_loadtest::process::{StopOnDrop, free_port, stop};

/// The status line of a `GET` to `addr`, once the server answers.
fn status_line(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /g/collect?v=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    reply.lines().next().map(str::to_owned)
}

#[test]
fn the_ceiling_answers_204_and_exits_normally_at_sigterm() {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // Stopped however the test ends (it runs until SIGTERM).
    let mut ceiling = StopOnDrop(
        Command::new(env!("CARGO_BIN_EXE_tagpipe-loadtest"))
            .args(["ceiling", "--listen", &addr.to_string()])
            .spawn()
            .expect("the harness starts"),
    );
    let since = Instant::now();
    let line = loop {
        if let Some(line) = status_line(addr) {
            break line;
        }
        if let Ok(Some(status)) = ceiling.0.try_wait() {
            panic!("the ceiling exited before answering: {status:?}");
        }
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "the ceiling never answered"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(line, "HTTP/1.1 204 No Content");
    let status = stop(&mut ceiling.0, Duration::from_secs(30)).expect("stopped");
    assert!(status.success(), "exited normally at SIGTERM: {status:?}");
}
