//! The snapshot and settings `keyhost gate build` baked in, read from the
//! data component: the settings once per instance, the snapshot by
//! positioned reads (a binary search touches a few dozen bytes per probe).

use anyhow::{Context, Result};
use keyhost_core::gate::GateSettings;
use keyhost_core::snapshot::{ReadAt, Snapshot};

use crate::keyhost::gate::data;

/// The snapshot, read through the data component's exports.
pub struct DataComponent;

impl ReadAt for DataComponent {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let len = u32::try_from(buf.len()).context("read too large")?;
        let bytes = data::snapshot(offset, len);
        anyhow::ensure!(bytes.len() == buf.len(), "the snapshot is truncated");
        buf.copy_from_slice(&bytes);
        Ok(())
    }

    fn size(&self) -> Result<u64> {
        Ok(data::snapshot_len())
    }
}

/// The snapshot, opened (its header checked) once per instance.
pub fn snapshot() -> Result<&'static Snapshot<DataComponent>, String> {
    static SNAPSHOT: std::sync::OnceLock<Result<Snapshot<DataComponent>, String>> =
        std::sync::OnceLock::new();
    SNAPSHOT
        .get_or_init(|| Snapshot::open(DataComponent).map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(Clone::clone)
}

/// The settings, parsed once per instance.
pub fn settings() -> Result<&'static GateSettings, String> {
    static SETTINGS: std::sync::OnceLock<Result<GateSettings, String>> = std::sync::OnceLock::new();
    SETTINGS
        .get_or_init(|| {
            serde_json::from_slice(&data::settings())
                .map_err(|e| format!("the gate's settings are corrupt: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}
