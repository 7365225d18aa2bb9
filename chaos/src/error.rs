//! What can stop a chaos run before it gives a verdict.

/// Why a scenario could not be run (as opposed to a run whose verdict found violations).
///
/// Every variant is raised before the first message is sent, except [`ChaosError::Database`]
/// when the ledger cannot be read at the end; faults that fail in the middle of a run do not
/// raise an error but mark the verdict incomplete.
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// The scenario file cannot be read, is not valid TOML, or names something unknown.
    #[error("scenario: {0}")]
    Scenario(String),
    /// A fault proxy cannot listen where the scenario says.
    #[error("fault proxy: {0}")]
    Proxy(String),
    /// The scenario's database cannot be reached or its tables cannot be created.
    #[error("database: {0}")]
    Database(String),
    /// The broker cannot be reached.
    #[error("broker: {0}")]
    Broker(String),
    /// A role (relay or consumer) or a fault command cannot be started at all.
    #[error("{0}")]
    Process(String),
    /// The verdict or the timeline cannot be written.
    #[error("output: {0}")]
    Output(String),
}
