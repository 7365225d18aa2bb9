//! waybill-bench: throughput figures measured in one run, printed with ratios against the raw
//! path of the same broker.
//!
//! `cargo run --release -p waybill-bench -- [processor] [--messages N]`
//!
//! - `processor`: the consumer runtime over the in-memory broker with a trivial handler, against
//!   a raw receive-and-ack loop on the same broker, in `Unordered` and `PerKey` (1,000 keys)
//!   modes, with and without the in-memory idempotency store.

mod processor_bench;

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut suite = "processor".to_owned();
    let mut messages = 300_000usize;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--messages" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => messages = n,
                _ => {
                    eprintln!("--messages needs a positive number");
                    return ExitCode::FAILURE;
                }
            },
            "processor" => suite = arg,
            "-h" | "--help" => {
                println!("usage: waybill-bench [processor] [--messages N]");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other:?}; try --help");
                return ExitCode::FAILURE;
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match suite.as_str() {
        "processor" => runtime.block_on(processor_bench::run(messages)),
        _ => unreachable!("suite names are checked above"),
    }
    ExitCode::SUCCESS
}
