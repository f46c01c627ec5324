//! What one policy instance may hold, in total. wasmtime's `StoreLimits`
//! bounds each linear memory and each table on its own, so a component with
//! sixteen memories could hold sixteen times the memory limit. This budget
//! counts every memory and every table of the store against one sum.

use wasmtime::{ResourceLimiter, Result, bail};

/// The most core and component instances, tables and memories a policy
/// instance may create. A Rust policy needs a handful; a CPython one,
/// linked from many modules, a few dozen instances.
pub(super) const MAX_INSTANCES: usize = 64;
pub(super) const MAX_TABLES: usize = 64;
pub(super) const MAX_MEMORIES: usize = 16;

/// The bytes of linear memory and the table elements left to a store.
pub struct InstanceBudget {
    memory_limit: usize,
    memory_left: usize,
    table_elements_left: usize,
}

impl InstanceBudget {
    pub fn new(memory_bytes: usize, table_elements: usize) -> InstanceBudget {
        InstanceBudget {
            memory_limit: memory_bytes,
            memory_left: memory_bytes,
            table_elements_left: table_elements,
        }
    }
}

impl ResourceLimiter for InstanceBudget {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool> {
        let more = desired.saturating_sub(current);
        if more > self.memory_left {
            // An error rather than a refused growth: the call traps at once
            // with this reason, instead of an allocator's abort.
            bail!(
                "the policy's memories would exceed {} MiB in all",
                self.memory_limit >> 20
            );
        }
        self.memory_left -= more;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool> {
        let more = desired.saturating_sub(current);
        if more > self.table_elements_left {
            bail!("the policy's tables would exceed their elements in all");
        }
        self.table_elements_left -= more;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_of_every_memory_counts_against_one_sum() {
        let mut budget = InstanceBudget::new(64 << 20, 10);
        // Two memories of 40 MiB: the first fits, the second does not.
        assert!(budget.memory_growing(0, 40 << 20, None).unwrap());
        assert!(budget.memory_growing(0, 40 << 20, None).is_err());
        assert!(budget.memory_growing(40 << 20, 64 << 20, None).unwrap());
        assert!(budget.memory_growing(0, 1, None).is_err());
        assert!(budget.table_growing(0, 10, None).unwrap());
        assert!(budget.table_growing(0, 1, None).is_err());
    }
}
