//! The shards a relay holds: leased from the database, renewed, given back on shutdown.

use std::time::Instant;

use tokio::sync::Mutex;
use tracing::{info, warn};

use super::config::RelayConfig;
use crate::error::OutboxError;
use crate::store::RelayStore;

/// The relay's current leases and when they lapse.
#[derive(Default)]
pub(crate) struct Leases {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    owned: Vec<i64>,
    /// Local time before which the leases certainly still hold (measured from the start of
    /// the round that renewed them, so the database's expiry is later).
    valid_until: Option<Instant>,
    refreshed_at: Option<Instant>,
}

impl Leases {
    /// The shards held now; renews first when a third of the lease time has passed.
    ///
    /// A relay that cannot renew stops publishing once its leases may have lapsed.
    pub async fn current(
        &self,
        store: &dyn RelayStore,
        config: &RelayConfig,
    ) -> Result<Vec<i64>, OutboxError> {
        {
            let state = self.state.lock().await;
            if let (Some(at), Some(until)) = (state.refreshed_at, state.valid_until) {
                if at.elapsed() < config.lease_ttl / 3 && Instant::now() < until {
                    return Ok(state.owned.clone());
                }
            }
        }
        self.refresh(store, config).await
    }

    /// Runs one lease round now.
    pub async fn refresh(
        &self,
        store: &dyn RelayStore,
        config: &RelayConfig,
    ) -> Result<Vec<i64>, OutboxError> {
        let mut state = self.state.lock().await;
        let started = Instant::now();
        match store
            .lease_round(&config.name, config.shard_count, config.lease_ttl)
            .await
        {
            Ok(owned) => {
                if owned != state.owned {
                    info!(relay = %config.name, shards = ?owned, "shard leases changed");
                }
                state.owned.clone_from(&owned);
                state.valid_until = Some(started + config.lease_ttl);
                state.refreshed_at = Some(started);
                Ok(owned)
            }
            Err(e) => {
                if state
                    .valid_until
                    .is_some_and(|until| Instant::now() >= until)
                {
                    state.owned.clear();
                }
                Err(e)
            }
        }
    }

    /// Renews every third of the lease time, forever; failures are logged and retried.
    pub async fn keep(&self, store: &dyn RelayStore, config: &RelayConfig) {
        loop {
            tokio::time::sleep(config.lease_ttl / 3).await;
            if let Err(e) = self.refresh(store, config).await {
                warn!(error = %e, "shard lease renewal failed");
            }
        }
    }

    /// Gives every lease back so that other relays take the shards at once.
    pub async fn release(&self, store: &dyn RelayStore, config: &RelayConfig) {
        let mut state = self.state.lock().await;
        state.owned.clear();
        state.valid_until = None;
        state.refreshed_at = None;
        if let Err(e) = store.release_leases(&config.name).await {
            warn!(error = %e, "could not release shard leases; they lapse after the lease time");
        }
    }

    /// `Ok` while the last lease round is recent enough that the leases it took still hold
    /// (whether or not it won any shard); else why not.
    pub async fn round_current(&self) -> Result<(), &'static str> {
        let state = self.state.lock().await;
        match state.valid_until {
            Some(until) if Instant::now() < until => Ok(()),
            Some(_) => Err("no shard lease round succeeded within the lease time"),
            None => Err("no shard lease round has succeeded yet"),
        }
    }

    /// How many shards are held now (0 while leases may have lapsed).
    pub async fn owned_count(&self) -> usize {
        let state = self.state.lock().await;
        match state.valid_until {
            Some(until) if Instant::now() < until => state.owned.len(),
            _ => 0,
        }
    }
}
