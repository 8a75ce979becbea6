//! A library version as a [`Stateful`] plugin: each method is one call of
//! the matching ABI entry point, its request encoded and its reply decoded
//! with [`reload_abi::wire`] (total decoders: garbage is a typed
//! [`DylibError::Garbage`], never a panic). The schema and resources were
//! read once, at link.

use reload_abi::wire;

use super::{DylibError, DylibPlugin};
use crate::{BoxError, Resource, Stateful};

fn garbage(entry: &'static str) -> impl FnOnce(wire::WireError) -> DylibError {
    move |source| DylibError::Garbage { entry, source }
}

impl Stateful for DylibPlugin {
    fn schema(&self) -> u32 {
        self.schema
    }

    fn save(&self) -> Result<Option<Vec<u8>>, BoxError> {
        let reply = self.shared(|d| d.save, "save", &[])?;
        let saved = wire::decode_saved(&reply).map_err(garbage("save"))?;
        Ok(saved.map(<[u8]>::to_vec))
    }

    fn migrate(&self, from: u32, state: Vec<u8>) -> Result<(u32, Vec<u8>), BoxError> {
        let request = wire::encode_at_schema(from, &state);
        let reply = self.shared(|d| d.migrate, "migrate", &request)?;
        let (to, state) = wire::decode_at_schema(&reply).map_err(garbage("migrate"))?;
        Ok((to, state.to_vec()))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        self.exclusive(|d| d.restore, "restore", state)?;
        Ok(())
    }

    fn resources(&self) -> Vec<Resource> {
        self.resources.clone()
    }

    fn persist(&self, resource: &str) -> Result<Vec<u8>, BoxError> {
        Ok(self.shared(|d| d.persist, "persist", &wire::encode_name(resource))?)
    }

    fn checkpoint(&self, resource: &str) -> Result<u64, BoxError> {
        let reply = self.shared(|d| d.checkpoint, "checkpoint", &wire::encode_name(resource))?;
        Ok(wire::decode_position(&reply).map_err(garbage("checkpoint"))?)
    }

    fn check_compat(&self, old: &Resource, persisted: &[u8]) -> Result<(), BoxError> {
        let request = wire::encode_compat(&old.into(), persisted);
        self.shared(|d| d.check_compat, "check_compat", &request)?;
        Ok(())
    }

    fn open(&mut self, resource: &str, persisted: &[u8]) -> Result<(), BoxError> {
        let request = wire::encode_named(resource, persisted);
        self.exclusive(|d| d.open, "open", &request)?;
        Ok(())
    }

    fn resume(&mut self, resource: &str, position: u64) -> Result<(), BoxError> {
        let request = wire::encode_named_position(resource, position);
        self.exclusive(|d| d.resume, "resume", &request)?;
        Ok(())
    }

    fn close(&mut self, resource: &str) {
        // `close` reports nothing: a failure here has nowhere to go, and
        // the reload it undoes has failed already.
        let _ = self.exclusive(|d| d.close, "close", &wire::encode_name(resource));
    }
}
