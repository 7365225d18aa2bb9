//! Every handled message runs inside a `waybill.handle` span that carries its id and trace id.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use waybill_core::{
    handler_fn, IncomingMessage, MemoryBroker, Message, Processor, Publisher, TraceParent,
};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_events_carry_the_message_id_and_trace_id() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_global_default(subscriber);

    let broker = MemoryBroker::new();
    let sub = broker.subscriber("t", "g").unwrap();
    let trace = TraceParent::new_root(true);
    let message = Message::new("x").with_trace_parent(&trace);
    let id = message.id();
    broker.publisher().publish("t", message).await.unwrap();
    let handler = handler_fn(|_m: IncomingMessage| async {
        tracing::info!("inside the handler");
        Ok(())
    });
    let running = Processor::builder("g")
        .at_least_once_effects()
        .build()
        .unwrap()
        .start(sub, handler);
    for _ in 0..200 {
        if running.counters().handled == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    running.shutdown().await.unwrap();
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("inside the handler"))
        .unwrap_or_else(|| panic!("handler event missing from:\n{log}"));
    assert!(line.contains("waybill.handle"), "{line}");
    assert!(line.contains(&id.to_string()), "{line}");
    assert!(line.contains(&trace.trace_id()), "{line}");
}
