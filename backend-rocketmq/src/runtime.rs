//! The process-wide client runtime every RocketMQ client of this crate runs on.

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use rocketmq_client_rust::{
    ClientOptions, ClientRuntime, ClientRuntimeConfig, DefaultLitePullConsumer,
    DefaultLitePullConsumerBuilder, TelemetryHandle,
};
use rocketmq_runtime::RuntimeOwner;
use waybill_core::BrokerError;

use crate::config::RocketConfig;

static SHARED: OnceLock<Result<Arc<ClientRuntime>, String>> = OnceLock::new();

/// The shared `ClientRuntime`, created on first use.
///
/// rocketmq-client-rust runs its background work (route updates, heartbeats, pulls,
/// rebalancing, offset persistence, transaction check-backs) on a runtime it owns. One is
/// created per process and lives until the process exits: dropping a Tokio runtime inside
/// another one's context panics, and the clients of this crate may be dropped anywhere.
pub(crate) fn client_runtime() -> Result<Arc<ClientRuntime>, BrokerError> {
    SHARED
        .get_or_init(|| {
            let owner = RuntimeOwner::new().map_err(|e| format!("{e:?}"))?;
            let runtime = ClientRuntime::try_new(
                owner.root_context().component("waybill-rocketmq"),
                ClientRuntimeConfig::default(),
                TelemetryHandle::noop(),
            )
            .map_err(|e| format!("{e:?}"));
            // The owner's Tokio runtime must outlive every client; it is kept for the
            // process's lifetime on purpose.
            std::mem::forget(owner);
            runtime
        })
        .clone()
        .map_err(|e| BrokerError::permanent("rocketmq runtime", e))
}

/// A pull consumer's builder for `group` on `config`'s cluster, on the shared runtime, with
/// the connection's security, offsets committed only when told to and pulls of the
/// configured batch size; the caller sets where to start and the timeouts.
pub(crate) fn pull_consumer(
    config: &RocketConfig,
    group: &str,
) -> Result<DefaultLitePullConsumerBuilder, BrokerError> {
    let mut builder = DefaultLitePullConsumer::builder(client_runtime()?)
        .client_options(ClientOptions::legacy(config.client_config()))
        .use_tls(config.security.uses_tls());
    if let Some(hook) = config.security.rpc_hook() {
        builder = builder.rpc_hook(hook);
    }
    Ok(builder
        .consumer_group(group)
        .name_server_addr(config.name_server.as_str())
        .auto_commit(false)
        .pull_batch_size(config.pull_batch_size))
}

/// The future returned by this crate's async operations: boxed, `Send`, and opaque to the
/// compiler's auto-trait inference.
///
/// Proving a future that holds rocketmq-client types `Send` takes more than the compiler's
/// default recursion limit (the client's types nest deeply). An `async fn` would hand its
/// caller an opaque future whose `Send` proof the caller's crate redoes, walking those types
/// again; a `dyn Future + Send` carries the proof with it, so applications never need to
/// raise their recursion limit.
pub type RocketFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Boxes a future that holds rocketmq-client types; this crate raises its recursion limit
/// and proves it `Send` once, here (see [`RocketFuture`]).
pub(crate) fn boxed<'a, T>(future: impl Future<Output = T> + Send + 'a) -> RocketFuture<'a, T> {
    Box::pin(future)
}

/// A rocketmq-client handle whose `Send`/`Sync` proof stays in this crate.
///
/// For the reason given on [`boxed`], a struct that held a client handle directly would make
/// every future of the application that holds the struct across an `.await` hit the
/// compiler's recursion limit. The handle is kept behind `dyn Any + Send + Sync` instead.
pub(crate) struct Erased<T> {
    inner: Arc<dyn Any + Send + Sync>,
    _type: PhantomData<fn() -> T>,
}

impl<T: Any + Send + Sync> Erased<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            inner: Arc::new(value),
            _type: PhantomData,
        }
    }

    /// The handle.
    pub(crate) fn get(&self) -> &T {
        self.inner.downcast_ref().expect("an Erased<T> holds a T")
    }

    /// A shared owner of the handle.
    pub(crate) fn shared(&self) -> Arc<T> {
        Arc::clone(&self.inner)
            .downcast()
            .unwrap_or_else(|_| unreachable!("an Erased<T> holds a T"))
    }
}

impl<T> Clone for Erased<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            _type: PhantomData,
        }
    }
}
