//! Writes too heavy to run on the async worker, remembered per database.
//!
//! A write runs right on the async worker (see `connection`): the shop's
//! writes take tens of microseconds, and moving each to another thread cost
//! a thread hand-over per statement, with the database's write turn held
//! all the while. A write cannot be interrupted and run again elsewhere the
//! way a read can (an interrupted write inside a transaction rolls the whole
//! transaction back), so one that outruns the inline budget finishes where
//! it is, once, and its SQL text is remembered here: from then on that
//! statement runs in `block_in_place`, off the worker's other tasks.
use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

/// Statements remembered per database. A guest generating endless distinct
/// heavy statements cannot grow the host's memory past this; once full,
/// new ones are not remembered (each still runs to completion).
const MAX_REMEMBERED: usize = 256;

#[derive(Default)]
pub struct HeavyWrites {
    statements: Mutex<HashSet<String>>,
}

impl HeavyWrites {
    /// Whether `sql` outran the inline budget before.
    pub fn contains(&self, sql: &str) -> bool {
        self.statements.lock().unwrap_or_else(PoisonError::into_inner).contains(sql)
    }

    /// Remembers that `sql` outran the inline budget.
    pub fn remember(&self, sql: &str) {
        let mut statements = self.statements.lock().unwrap_or_else(PoisonError::into_inner);
        if statements.len() < MAX_REMEMBERED {
            statements.insert(sql.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_up_to_its_bound() {
        let heavy = HeavyWrites::default();
        assert!(!heavy.contains("DELETE FROM t"));
        heavy.remember("DELETE FROM t");
        assert!(heavy.contains("DELETE FROM t"));
        for i in 0..MAX_REMEMBERED * 2 {
            heavy.remember(&format!("DELETE FROM t WHERE x = {i}"));
        }
        assert_eq!(heavy.statements.lock().unwrap().len(), MAX_REMEMBERED);
        assert!(heavy.contains("DELETE FROM t"), "what was remembered stays");
    }
}
