//! The consumer's effect: the billing books, one entry per order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use waybill_core::{handler_fn, Handler, IncomingMessage};

use super::orders::amount;

/// The billing books. Applying an order twice would show as a second amount on the same order.
#[derive(Clone, Default)]
pub struct Books {
    entries: Arc<Mutex<HashMap<String, Vec<u64>>>>,
}

impl Books {
    /// The handler that applies orders to these books.
    pub fn handler(&self) -> impl Handler {
        let books = self.clone();
        handler_fn(move |m: IncomingMessage| {
            let books = books.clone();
            async move {
                let amount = amount(m.message().payload())?;
                let order = m.message().key().unwrap_or_default().to_owned();
                books.lock().entry(order).or_default().push(amount);
                Ok(())
            }
        })
    }

    /// Orders with at least one entry.
    pub fn orders(&self) -> u64 {
        self.lock().len() as u64
    }

    /// Orders applied more than once (must be zero).
    pub fn applied_twice(&self) -> u64 {
        self.lock().values().filter(|v| v.len() > 1).count() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<u64>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}
