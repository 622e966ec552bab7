//! Tenants this process found usable a moment ago, so the door need not read the registry
//! for every request to a tenant whose file is already open here.
//!
//! A remembered tenant is taken as usable only while all of these hold: this process has
//! suspended or deleted no tenant since (every such change calls [`Standing::forget`]), the
//! identity epoch file is unchanged (the CLI replaces it after its tenant commands), and the
//! registry was read less than [`RECHECK_US`] ago. Only "usable" is remembered: a refusal
//! is always read again, so a resumed tenant is usable at once.

use crate::ids::TenantId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

/// How long a registry read vouches for a tenant at most.
pub const RECHECK_US: i64 = 10_000_000;
/// Remembered tenants at most; past it the memory starts over.
const MAX_TENANTS: usize = 100_000;

/// When and under which epoch a registry read found a tenant usable.
#[derive(Clone, Copy)]
struct Seen {
    at_us: i64,
    epoch: u64,
}

/// What a registry read was made under, taken before it: a change that lands while it runs
/// moves the generation, and the read's finding is then not kept.
#[derive(Clone, Copy)]
pub struct Mark {
    generation: u64,
    at_us: i64,
    epoch: u64,
}

#[derive(Default)]
pub struct Standing {
    seen: RwLock<HashMap<TenantId, Seen>>,
    generation: AtomicU64,
}

impl Standing {
    /// Taken before reading the registry, with the clock and epoch of that moment.
    pub fn mark(&self, now_us: i64, epoch: u64) -> Mark {
        Mark {
            generation: self.generation.load(Ordering::Acquire),
            at_us: now_us,
            epoch,
        }
    }

    /// Whether `id` was found usable recently enough, under `epoch`.
    pub fn usable(&self, id: &TenantId, now_us: i64, epoch: u64) -> bool {
        let Ok(seen) = self.seen.read() else {
            return false;
        };
        seen.get(id)
            .is_some_and(|s| s.epoch == epoch && now_us >= s.at_us && now_us - s.at_us < RECHECK_US)
    }

    /// Remembers that the registry read begun at `mark` found `id` usable, unless a tenant
    /// changed in this process since.
    pub fn found_usable(&self, id: &TenantId, mark: Mark) {
        let Ok(mut seen) = self.seen.write() else {
            return;
        };
        // Checked under the lock `forget` takes too: a change is either seen here, or its
        // `forget` runs after this insert and removes it.
        if self.generation.load(Ordering::Acquire) != mark.generation {
            return;
        }
        if seen.len() >= MAX_TENANTS {
            seen.clear();
        }
        seen.insert(
            id.clone(),
            Seen {
                at_us: mark.at_us,
                epoch: mark.epoch,
            },
        );
    }

    /// After a tenant was suspended or deleted here (or an attempt to, which may have
    /// landed): the next use reads the registry.
    pub fn forget(&self, id: &TenantId) {
        // Moved before the lock is taken: a finding kept before this is removed below, and
        // one kept after sees the new generation.
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut seen) = self.seen.write() {
            seen.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(c: char) -> TenantId {
        TenantId::parse(&c.to_string().repeat(32)).unwrap()
    }

    #[test]
    fn a_finding_holds_for_its_epoch_and_a_while_only() {
        let s = Standing::default();
        let t = id('a');
        assert!(!s.usable(&t, 0, 7), "nothing is known before a read");
        s.found_usable(&t, s.mark(1_000, 7));
        assert!(s.usable(&t, 1_000, 7));
        assert!(s.usable(&t, 1_000 + RECHECK_US - 1, 7));
        assert!(!s.usable(&t, 1_000 + RECHECK_US, 7), "too old");
        assert!(!s.usable(&t, 1_000, 8), "the epoch moved");
        assert!(!s.usable(&t, 999, 7), "a clock that went back");
        assert!(!s.usable(&id('b'), 1_000, 7), "another tenant");
    }

    #[test]
    fn a_change_here_undoes_findings_and_reads_under_way() {
        let s = Standing::default();
        let t = id('a');
        s.found_usable(&t, s.mark(1_000, 7));
        s.forget(&t);
        assert!(!s.usable(&t, 1_000, 7), "forgotten at once");
        // A read that began before the change must not bring the old finding back.
        let before = s.mark(2_000, 7);
        s.forget(&t);
        s.found_usable(&t, before);
        assert!(!s.usable(&t, 2_000, 7));
        // A read begun after it is kept.
        s.found_usable(&t, s.mark(3_000, 7));
        assert!(s.usable(&t, 3_000, 7));
    }
}
