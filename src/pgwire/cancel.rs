//! CancelRequest: a client opens a second connection and names the backend
//! (pid and secret key from BackendKeyData) whose running query to stop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// The running query of each connection, by backend pid.
#[derive(Default)]
pub struct CancelRegistry {
    backends: Mutex<HashMap<i32, Backend>>,
}

struct Backend {
    secret: i32,
    current: Arc<Mutex<CancellationToken>>,
}

impl CancelRegistry {
    /// Registers a connection; the returned handle deregisters on drop.
    pub fn register(self: &Arc<Self>, pid: i32, secret: i32) -> CancelHandle {
        let current = Arc::new(Mutex::new(CancellationToken::new()));
        if let Ok(mut backends) = self.backends.lock() {
            backends.insert(
                pid,
                Backend {
                    secret,
                    current: current.clone(),
                },
            );
        }
        CancelHandle {
            registry: self.clone(),
            pid,
            current,
        }
    }

    /// Cancels what the backend is running, if the secret matches.
    /// Returns whether a backend was found.
    pub fn cancel(&self, pid: i32, secret: &pgwire::messages::startup::SecretKey) -> bool {
        let Ok(backends) = self.backends.lock() else {
            return false;
        };
        match backends.get(&pid) {
            Some(backend)
                if secret.eq_value(&pgwire::messages::startup::SecretKey::I32(backend.secret)) =>
            {
                if let Ok(token) = backend.current.lock() {
                    token.cancel();
                }
                true
            }
            _ => false,
        }
    }
}

/// A connection's registration.
pub struct CancelHandle {
    registry: Arc<CancelRegistry>,
    pid: i32,
    current: Arc<Mutex<CancellationToken>>,
}

impl CancelHandle {
    /// A fresh token for the statement about to run: a cancel that arrived
    /// while the connection was idle does not affect it.
    pub fn start_statement(&self) -> CancellationToken {
        let token = CancellationToken::new();
        if let Ok(mut current) = self.current.lock() {
            *current = token.clone();
        }
        token
    }
}

impl Drop for CancelHandle {
    fn drop(&mut self) {
        if let Ok(mut backends) = self.registry.backends.lock() {
            backends.remove(&self.pid);
        }
    }
}
