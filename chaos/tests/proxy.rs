//! The fault proxy against a real TCP server: an echo server on this host, and PostgreSQL.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use waybill_chaos::{FaultProxy, ProxyFault};

/// An echo server on a free port.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 1024];
                while let Ok(n) = socket.read(&mut buffer).await {
                    if n == 0 || socket.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

async fn proxy() -> FaultProxy {
    FaultProxy::start("127.0.0.1:0".parse().unwrap(), echo_server().await)
        .await
        .unwrap()
}

/// Sends `text` and reads the echo, within `within`.
async fn round_trip(
    stream: &mut TcpStream,
    text: &[u8],
    within: Duration,
) -> std::io::Result<Vec<u8>> {
    stream.write_all(text).await?;
    let mut echoed = vec![0u8; text.len()];
    tokio::time::timeout(within, stream.read_exact(&mut echoed))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no echo"))??;
    Ok(echoed)
}

const SOON: Duration = Duration::from_secs(2);

#[tokio::test]
async fn a_healthy_proxy_forwards_both_ways() {
    let proxy = proxy().await;
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(
        round_trip(&mut client, b"hello", SOON).await.unwrap(),
        b"hello"
    );
    assert_eq!(proxy.counters().forwarded, 1);
    assert_eq!(proxy.counters().bytes, 10);
}

#[tokio::test]
async fn a_cut_resets_open_connections_and_new_ones_go_through() {
    let proxy = proxy().await;
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    round_trip(&mut client, b"one", SOON).await.unwrap();
    assert_eq!(proxy.cut(), 1);
    let after = round_trip(&mut client, b"two", SOON).await;
    assert!(after.is_err(), "the connection is gone: {after:?}");
    let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(
        round_trip(&mut fresh, b"three", SOON).await.unwrap(),
        b"three"
    );
    assert_eq!(proxy.counters().cut, 1);
}

#[tokio::test]
async fn refuse_resets_new_connections_until_healed() {
    let proxy = proxy().await;
    let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
    // Accepted by the proxy (not only by the kernel) before the fault.
    round_trip(&mut open, b"first", SOON).await.unwrap();
    proxy.set(ProxyFault::Refuse);
    let mut refused = TcpStream::connect(proxy.addr()).await.unwrap();
    let error = round_trip(&mut refused, b"x", SOON).await.unwrap_err();
    assert!(
        matches!(
            error.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::BrokenPipe
        ),
        "{error:?}"
    );
    // The connection open before the fault still works.
    assert_eq!(
        round_trip(&mut open, b"still", SOON).await.unwrap(),
        b"still"
    );
    assert!(proxy.counters().refused >= 1);
    proxy.heal();
    let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(
        round_trip(&mut fresh, b"back", SOON).await.unwrap(),
        b"back"
    );
}

#[tokio::test]
async fn a_black_hole_answers_nothing_then_delivers_what_it_held() {
    let proxy = proxy().await;
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    round_trip(&mut client, b"before", SOON).await.unwrap();
    proxy.set(ProxyFault::BlackHole);
    let held = round_trip(&mut client, b"held", Duration::from_millis(500)).await;
    assert_eq!(held.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
    // A connection made during the black hole is accepted and gets nothing either.
    let mut during = TcpStream::connect(proxy.addr()).await.unwrap();
    let silent = round_trip(&mut during, b"hi", Duration::from_millis(300)).await;
    assert_eq!(silent.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
    proxy.heal();
    let mut rest = vec![0u8; 4];
    tokio::time::timeout(SOON, client.read_exact(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&rest, b"held", "held bytes flow once healed");
    let mut late = vec![0u8; 2];
    tokio::time::timeout(SOON, during.read_exact(&mut late))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&late, b"hi");
    assert!(proxy.counters().held >= 1);
}

#[tokio::test]
async fn latency_delays_each_direction() {
    let proxy = proxy().await;
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    round_trip(&mut client, b"warm", SOON).await.unwrap();
    proxy.set(ProxyFault::Latency(Duration::from_millis(200)));
    let started = Instant::now();
    round_trip(&mut client, b"slow", SOON).await.unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400),
        "two delayed hops: {took:?}"
    );
    proxy.heal();
    let started = Instant::now();
    round_trip(&mut client, b"fast", SOON).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(200));
}

#[tokio::test]
async fn half_close_ends_the_servers_side_and_keeps_the_clients() {
    let proxy = proxy().await;
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    round_trip(&mut client, b"before", SOON).await.unwrap();
    proxy.set(ProxyFault::HalfClose);
    let mut buffer = [0u8; 8];
    let n = tokio::time::timeout(SOON, client.read(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "the client reads end of stream");
    // Its writes are still accepted (they reach the server, whose echo has nowhere to go).
    client.write_all(b"after").await.unwrap();
    assert_eq!(proxy.counters().half_closed, 1);
}

#[tokio::test]
async fn a_taken_port_is_refused_with_a_clear_error() {
    let first = proxy().await;
    let error = FaultProxy::start(first.addr(), echo_server().await)
        .await
        .err()
        .expect("the port is taken");
    let text = error.to_string();
    assert!(
        text.contains(&first.addr().to_string()) && text.contains("is the port taken"),
        "{text}"
    );
}

#[tokio::test]
async fn a_cut_breaks_a_postgres_session_and_the_pool_reconnects_after() {
    let upstream: SocketAddr = "127.0.0.1:5432".parse().unwrap();
    if TcpStream::connect(upstream).await.is_err() {
        panic!(
            "PostgreSQL is not running on 127.0.0.1:5432: start it (see the README's test command)"
        );
    }
    let proxy = FaultProxy::start("127.0.0.1:0".parse().unwrap(), upstream)
        .await
        .unwrap();
    let url = format!(
        "postgres://postgres@{}/postgres?sslmode=disable",
        proxy.addr()
    );
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(2))
        .connect(&url)
        .await
        .unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(one, 1);
    proxy.set(ProxyFault::Refuse);
    assert_eq!(proxy.cut(), 1, "the pool's one connection");
    assert!(sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(&pool)
        .await
        .is_err());
    assert!(sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(&pool)
        .await
        .is_err());
    proxy.heal();
    let back: i32 = sqlx::query_scalar("SELECT 2")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(back, 2);
}
