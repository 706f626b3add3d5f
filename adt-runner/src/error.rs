//! The three ways a run ends early, as autopkgtest classifies them:
//! erroneous package (12), testbed failure (16), other error (20).
//!
//! Not for: test failures, which are verdicts (`verdict`).

use crate::ssh::SshError;
use crate::testbed::TestbedError;
use crate::verdict::{BADPKG, ERROR, TESTBED};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// autopkgtest's `BadPackageError`.
    #[error("{0}")]
    BadPkg(String),
    /// autopkgtest's `TestbedFailure`.
    #[error("{0}")]
    Testbed(String),
    /// autopkgtest's `AutopkgtestError`.
    #[error("{0}")]
    Error(String),
}

impl RunError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::BadPkg(_) => BADPKG,
            RunError::Testbed(_) => TESTBED,
            RunError::Error(_) => ERROR,
        }
    }
}

impl From<SshError> for RunError {
    fn from(e: SshError) -> Self {
        match e {
            SshError::Interrupted(_) => RunError::Error(e.to_string()),
            e => RunError::Testbed(e.to_string()),
        }
    }
}

impl From<TestbedError> for RunError {
    fn from(e: TestbedError) -> Self {
        RunError::Testbed(e.to_string())
    }
}
