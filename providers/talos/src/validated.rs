//! Secrets bundles already validated in this process. Every machine config of a cluster
//! carries its cluster's bundle, and [`ClusterSecrets::from_attributes`] parses all of
//! its PEM blocks (one an RSA-4096 key) to check them: done per machine config, that was
//! ~5% of the CPU of a steady plan at fleet scale (issue 15). It is a pure function of
//! the attribute map, so an equal map gets the result for the first one: the bundle
//! itself, or its encoding for the renderers, shared.

use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use crate::config::EncodedSecrets;
use crate::error::Result;
use crate::secrets::ClusterSecrets;

/// Bundles kept (one per cluster being planned; clusters' machine configs may be planned
/// interleaved). Past it the oldest is forgotten: a miss only costs a validation.
const KEPT: usize = 64;

/// A bundle's attributes, and the secrets they hold, encoded.
type Kept = (Map<String, Value>, Arc<EncodedSecrets>);

static VALIDATED: Mutex<Vec<Kept>> = Mutex::new(Vec::new());

/// [`ClusterSecrets::from_attributes`], validated once per distinct bundle. Errors are
/// not kept: an invalid bundle is checked (and reported) each time.
pub fn secrets_of(attributes: &Map<String, Value>) -> Result<ClusterSecrets> {
    encoded_secrets_of(attributes).map(|encoded| encoded.raw().clone())
}

/// [`secrets_of`], encoded as the machine configs hold it, shared.
pub fn encoded_secrets_of(attributes: &Map<String, Value>) -> Result<Arc<EncodedSecrets>> {
    {
        let kept = VALIDATED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, encoded)) = kept.iter().find(|(seen, _)| seen == attributes) {
            return Ok(encoded.clone());
        }
    }
    let encoded = Arc::new(EncodedSecrets::new(&ClusterSecrets::from_attributes(
        attributes,
    )?));
    let mut kept = VALIDATED.lock().unwrap_or_else(|e| e.into_inner());
    if kept.len() == KEPT {
        kept.remove(0);
    }
    kept.push((attributes.clone(), encoded.clone()));
    Ok(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_equal_bundle_gets_the_same_secrets_and_a_bad_one_its_error_every_time() {
        let attributes = crate::test_support::secrets().to_attributes();
        let first = secrets_of(&attributes).unwrap();
        assert!(first == ClusterSecrets::from_attributes(&attributes).unwrap());
        assert!(secrets_of(&attributes.clone()).unwrap() == first);
        // Encoded once: every machine config of the cluster shares it.
        let encoded = encoded_secrets_of(&attributes).unwrap();
        assert!(Arc::ptr_eq(
            &encoded,
            &encoded_secrets_of(&attributes.clone()).unwrap()
        ));
        assert!(*encoded.raw() == first);

        let mut bad = attributes.clone();
        bad.insert(
            crate::secrets::attribute::BOOTSTRAP_TOKEN.into(),
            Value::String("not a token".into()),
        );
        for _ in 0..2 {
            assert!(secrets_of(&bad).is_err());
        }
        // One changed value is another bundle, validated on its own.
        let mut other = attributes.clone();
        other.insert(
            crate::secrets::attribute::CLUSTER_ID.into(),
            Value::String("another".into()),
        );
        assert!(secrets_of(&other).unwrap().cluster_id == "another");
    }
}
