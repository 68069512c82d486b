//! What an unauthenticated connection may send: `[limits] pre_auth_bytes` and
//! `pre_auth_stanzas`. Before SASL succeeds nobody is accountable for the traffic, and
//! the negotiation timeout alone would let a client send as fast as it can for 30 s
//! (registration forms, SASL attempts, whitespace). Counted across stream restarts
//! (STARTTLS), dropped once authenticated.

use crate::config::Limits;
use crate::stanza::{StreamError, StreamErrorCondition};

#[derive(Debug)]
pub(crate) struct PreAuthBudget {
    bytes_left: Option<u64>,
    stanzas_left: Option<u64>,
}

impl PreAuthBudget {
    /// `None` when both limits are off.
    pub fn from_limits(limits: &Limits) -> Option<Self> {
        let nonzero = |v: u64| (v > 0).then_some(v);
        let budget = PreAuthBudget {
            bytes_left: nonzero(limits.pre_auth_bytes),
            stanzas_left: nonzero(limits.pre_auth_stanzas),
        };
        (budget.bytes_left.is_some() || budget.stanzas_left.is_some()).then_some(budget)
    }

    /// `n` more bytes arrived.
    pub fn take_bytes(&mut self, n: usize) -> Result<(), StreamError> {
        take(&mut self.bytes_left, n as u64, "bytes")
    }

    /// One more top-level element (stanza, SASL or STARTTLS element) arrived.
    pub fn take_stanza(&mut self) -> Result<(), StreamError> {
        take(&mut self.stanzas_left, 1, "elements")
    }
}

fn take(left: &mut Option<u64>, n: u64, what: &str) -> Result<(), StreamError> {
    let Some(remaining) = left else {
        return Ok(());
    };
    match remaining.checked_sub(n) {
        Some(rest) => {
            *remaining = rest;
            Ok(())
        }
        None => Err(StreamError::with_text(
            StreamErrorCondition::PolicyViolation,
            format!("too many {what} before authentication"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_runs_out_exactly_at_the_limit() {
        let limits = Limits {
            pre_auth_bytes: 100,
            pre_auth_stanzas: 2,
            ..Limits::default()
        };
        let mut budget = PreAuthBudget::from_limits(&limits).expect("limits on");
        assert!(budget.take_bytes(60).is_ok());
        assert!(budget.take_bytes(40).is_ok());
        let err = budget.take_bytes(1).expect_err("101st byte");
        assert_eq!(err.condition, StreamErrorCondition::PolicyViolation);
        assert!(budget.take_stanza().is_ok());
        assert!(budget.take_stanza().is_ok());
        assert!(budget.take_stanza().is_err());
        let off = Limits {
            pre_auth_bytes: 0,
            pre_auth_stanzas: 0,
            ..Limits::default()
        };
        assert!(PreAuthBudget::from_limits(&off).is_none());
    }
}
