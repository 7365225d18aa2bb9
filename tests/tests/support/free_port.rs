//! Free TCP ports for tests, below the kernel's ephemeral range.

/// A TCP port on 127.0.0.1 that nothing listens on now, for a test's own server (bound later)
/// or as a port where nothing answers.
pub fn free_port() -> u16 {
    // Below Linux's ephemeral range (32768 and up by default), and never the same port twice
    // in one process. A port the kernel hands out for `bind(0)` and released lies in that
    // range, where any outgoing connection on the machine may take it as its local port before
    // the caller's server binds it (a chaos run's proxy once found its port taken so), where a
    // client retrying a connection to it can be given that very port and connect to itself,
    // and where the kernel may hand the same released port to two tests of one binary (a
    // "Redis down at start" test once got answers on its closed port, most likely from the
    // private Redis another test of its binary had just started there). Listeners are the
    // only competition here.
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id() % 12_000;
    for _ in 0..12_000 {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + ((offset + step) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 between 20000 and 31999");
}
