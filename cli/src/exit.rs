//! How a command ends: the message printed on stderr and the documented exit code.

use std::fmt;
use std::process::ExitCode;

/// Why a command did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// Exit code 1: an operation failed (a server unreachable or refusing, a database error).
    Failed(String),
    /// Exit code 2: invalid usage or settings (clap's own usage errors exit 2 as well).
    Usage(String),
    /// Exit code 3: the filter matched nothing, so nothing was changed.
    NothingMatched(String),
    /// Exit code 4: a check found a setting that can lose confirmed messages (a preflight
    /// FAIL).
    CheckFailed(String),
    /// Exit code 5: a chaos run could not finish what its scenario asked (a fault command
    /// failed, the producer gave up), so its verdict proves nothing.
    Incomplete(String),
}

impl Failure {
    /// The process exit code of this failure.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Self::Failed(_) => 1,
            Self::Usage(_) => 2,
            Self::NothingMatched(_) => 3,
            Self::CheckFailed(_) => 4,
            Self::Incomplete(_) => 5,
        })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed(m)
            | Self::Usage(m)
            | Self::NothingMatched(m)
            | Self::CheckFailed(m)
            | Self::Incomplete(m) => f.write_str(m),
        }
    }
}

/// Errors of operations (database, broker) are failures of exit code 1.
impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self::Failed(message)
    }
}

/// What a command returns.
pub type Outcome = Result<(), Failure>;
