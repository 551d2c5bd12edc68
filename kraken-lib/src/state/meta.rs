//! Settings: small named values stored durably (token hashes, the epoch,
//! the orchestrator's id).

use redb::Durability;

use super::{State, StateError, META};

impl State {
    /// A stored setting.
    ///
    /// # Errors
    /// [`StateError`] when the database cannot be read.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StateError> {
        let read = self.shared.db.begin_read().map_err(|e| self.db_err()(e.into()))?;
        let table = read.open_table(META).map_err(|e| self.db_err()(e.into()))?;
        let v = table.get(key).map_err(|e| self.db_err()(e.into()))?;
        Ok(v.map(|v| v.value().to_string()))
    }

    /// Stores a setting durably.
    ///
    /// # Errors
    /// [`StateError`] when it could not be stored.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StateError> {
        let _writer = self.writer();
        self.write(Durability::Immediate, |txn| {
            txn.open_table(META)?.insert(key, value)?;
            Ok(())
        })
    }

    /// Removes a setting durably (nothing happens when there is none).
    ///
    /// # Errors
    /// [`StateError`] when the change could not be stored.
    pub fn remove_meta(&self, key: &str) -> Result<(), StateError> {
        let _writer = self.writer();
        self.write(Durability::Immediate, |txn| {
            txn.open_table(META)?.remove(key)?;
            Ok(())
        })
    }
}
