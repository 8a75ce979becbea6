//! `job`: the SQL host's background job (reload-sqlite's job protocol): each
//! tick returns the SQL that logs it, with the version that ran it. A tick
//! on a version already shut down fails (the host counts failures: 0).
#![allow(missing_docs)]

use std::sync::atomic::{AtomicBool, Ordering};

include!("../../shared/version.rs");

pub struct Job {
    shut: AtomicBool,
}

impl reload_abi::Plugin for Job {
    fn new() -> Self {
        Job {
            shut: AtomicBool::new(false),
        }
    }

    fn call(&self, input: &[u8]) -> Result<Vec<u8>, String> {
        if self.shut.load(Ordering::Acquire) {
            return Err(format!("job {VERSION} ticked after its shutdown"));
        }
        let tick = match input {
            [b'T', rest @ ..] => {
                u64::from_le_bytes(rest.try_into().map_err(|_| "T takes 8 bytes")?)
            }
            _ => return Err("job answers T only".to_owned()),
        };
        Ok(format!("INSERT INTO job_log(tick, version) VALUES ({tick}, '{VERSION}')").into_bytes())
    }

    fn shutdown(&mut self) -> Result<(), String> {
        self.shut.store(true, Ordering::Release);
        Ok(())
    }
}

export!(Job, "job", ["tick"]);
