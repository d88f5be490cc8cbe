//! A store that first answers what another handler call saw (its recorded reads), then
//! asks the store below: a shadow run's candidate, called after the live plugin's entry
//! was committed, sees the state the live plugin saw rather than what its commit wrote.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::model::{Bytes, Read, StateError, Store};

/// `reads` (what a call saw) over `below`.
pub struct SeenFirst {
    pub reads: Vec<Read>,
    pub below: Arc<dyn Store>,
}

impl SeenFirst {
    fn string(&self, key: &str) -> Option<Option<Bytes>> {
        self.reads.iter().find_map(|read| match read {
            Read::Str { key: k, seen } if k == key => Some(seen.clone()),
            _ => None,
        })
    }

    fn field(&self, key: &str, field: &str) -> Option<Option<Bytes>> {
        self.reads.iter().find_map(|read| match read {
            Read::Field {
                key: k,
                field: f,
                seen,
            } if k == key && f == field => Some(seen.clone()),
            Read::Hash { key: k, seen } if k == key => Some(seen.get(field).cloned()),
            _ => None,
        })
    }

    fn hash(&self, key: &str) -> Option<BTreeMap<String, Bytes>> {
        self.reads.iter().find_map(|read| match read {
            Read::Hash { key: k, seen } if k == key => Some(seen.clone()),
            _ => None,
        })
    }
}

impl Store for SeenFirst {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StateError>> {
        match self.string(key) {
            Some(seen) => Box::pin(async move { Ok(seen) }),
            None => self.below.get(key),
        }
    }

    fn hget<'a>(
        &'a self,
        key: &'a str,
        field: &'a str,
    ) -> BoxFuture<'a, Result<Option<Bytes>, StateError>> {
        match self.field(key, field) {
            Some(seen) => Box::pin(async move { Ok(seen) }),
            None => self.below.hget(key, field),
        }
    }

    fn hgetall<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, Bytes>, StateError>> {
        match self.hash(key) {
            Some(seen) => Box::pin(async move { Ok(seen) }),
            None => self.below.hgetall(key),
        }
    }
}
