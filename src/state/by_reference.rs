//! Attributes recorded by reference: a value that is another resource's outputs (a
//! machine config's `secrets` is its cluster's `talos_secrets`) is recorded as where it
//! came from, not copied.
//!
//! A fleet's state held each cluster's secrets bundle once per machine config: 3,245
//! copies, a third of a 10,000-resource state file, and as many plaintext copies of the
//! cluster's PKI when no key is configured. The record is now a marker
//!
//! ```json
//! { "$infraflux": "recorded", "address": "prod/mgmt/talos_secrets.cluster",
//!   "attributes": ["admin_crt", …], "digest": "xxh3-128:…" }
//! ```
//!
//! naming the resource, the attributes of it the value held, and a digest of the value.
//! Whoever reads a record for a provider or to compare it ([`StateDocument::resolve`])
//! gets the value back from the referenced resource's record. When that record no longer
//! holds the same value (it changed since, or is gone), the digest tells: the resolved
//! attributes are *stale*, and the plan treats the resource as changed.
//!
//! Only a whole reference to outputs (`infraflux_provider::OUTPUTS`) is recorded so:
//! the value is an object of the target's own attributes, which its record keeps. A
//! reference to one attribute is a short value, cheaper copied than referred to.

use std::borrow::Cow;

use infraflux_provider::{Attributes, OUTPUTS, is_unknown, reference_target};
use serde_json::{Map, Value};

use super::format::canonical_digest;
use super::{ResourceState, StateDocument, StoredAttributes};
use crate::vocabulary::ResourceAddr;

/// The marker's key, the same as the provider contract's markers (unknown values,
/// references): no configuration value is mistaken for one.
const KEY: &str = "$infraflux";
const KIND: &str = "recorded";

/// A parsed marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedReference<'a> {
    pub address: &'a str,
    pub attributes: Vec<&'a str>,
    pub digest: &'a str,
}

/// The marker in `value`, if it is one.
pub fn recorded_reference(value: &Value) -> Option<RecordedReference<'_>> {
    let object = value.as_object()?;
    if object.len() != 4 || object.get(KEY)?.as_str()? != KIND {
        return None;
    }
    Some(RecordedReference {
        address: object.get("address")?.as_str()?,
        attributes: object
            .get("attributes")?
            .as_array()?
            .iter()
            .map(Value::as_str)
            .collect::<Option<_>>()?,
        digest: object.get("digest")?.as_str()?,
    })
}

fn marker(address: &str, attributes: Vec<Value>, digest: String) -> Value {
    let mut object = Map::with_capacity(4);
    object.insert(KEY.into(), KIND.into());
    object.insert("address".into(), address.into());
    object.insert("attributes".into(), Value::Array(attributes));
    object.insert("digest".into(), digest.into());
    Value::Object(object)
}

/// `xxh3-128:<hex>` of `value`'s canonical serialization (compact, members sorted, as
/// the state checksum's): it does not depend on member order. Not cryptographic, and it
/// need not be: it tells a changed value from the recorded one.
pub fn digest(value: &Value) -> String {
    canonical_digest(value)
}

/// Record by reference what `desired` (the configuration, references unresolved)
/// takes whole from another resource's outputs: each such attribute of `attributes`
/// (what is about to be recorded) becomes a marker. Values not known, or not an object,
/// stay as they are.
pub fn record_by_reference(desired: &Attributes, attributes: &mut Attributes) {
    for (name, wanted) in desired {
        let Some((address, OUTPUTS)) = reference_target(wanted) else {
            continue;
        };
        let Some(value) = attributes.get_mut(name) else {
            continue;
        };
        let Value::Object(outputs) = &*value else {
            continue;
        };
        if is_unknown(value) {
            continue;
        }
        // Canonical, as state's own addresses are written (`state rm` and `state mv`
        // find the markers that refer to a record by its address).
        let address = address
            .parse::<ResourceAddr>()
            .map_or_else(|_| address.to_string(), |a| a.to_string());
        let names = outputs.keys().map(|k| Value::String(k.clone())).collect();
        *value = marker(&address, names, digest(value));
    }
}

impl StateDocument {
    /// After a refresh: the attributes a provider read back from a record's resolved
    /// `recorded` attributes, with each value it gave back as it was given (or as it
    /// was recorded) put back as its marker. So an unchanged resource reads as no
    /// drift, and a marker that is stale stays one (a provider that echoes its prior
    /// read no new value; the plan still updates the resource).
    pub fn rerecord(&self, found: &mut Attributes, recorded: &Attributes) {
        for (name, value) in recorded {
            let Some(reference) = recorded_reference(value) else {
                continue;
            };
            let Some(read) = found.get(name) else {
                continue;
            };
            if digest(read) == reference.digest
                || self.referenced(&reference).as_ref() == Some(read)
            {
                found.insert(name.clone(), value.clone());
            }
        }
    }
}

/// The value a marker stands for, from the referenced resource's `attributes`.
fn referenced_in(attributes: &Attributes, reference: &RecordedReference<'_>) -> Option<Value> {
    let mut value = Map::with_capacity(reference.attributes.len());
    for name in &reference.attributes {
        value.insert((*name).to_string(), attributes.get(*name)?.clone());
    }
    Some(Value::Object(value))
}

/// What markers resolved to, for the next record holding the same one: each of a
/// cluster's machine configs holds its secrets' marker, and each resolved it by parsing
/// and digesting the same bundle again (a twentieth of a steady fleet plan). Kept for
/// one piece of a plan, while the records it reads do not change: reads kept across a
/// change of the document (`set_record`, in apply) would answer for the old one.
#[derive(Debug, Default)]
pub struct MarkerReads(std::collections::HashMap<MarkerKey, (Option<Value>, bool)>);

/// A marker as [`MarkerReads`] tells them apart: its address, digest and names.
type MarkerKey = (String, String, Vec<String>);

impl MarkerReads {
    /// The value `reference` stands for now (`None`: its resource or an attribute of
    /// it is gone), and whether that is not the value recorded (stale).
    fn resolve(
        &mut self,
        document: &StateDocument,
        reference: &RecordedReference<'_>,
    ) -> (Option<Value>, bool) {
        let key = (
            reference.address.to_string(),
            reference.digest.to_string(),
            reference.attributes.iter().map(|n| n.to_string()).collect(),
        );
        let (found, stale) = self.0.entry(key).or_insert_with(|| {
            let found = document.referenced(reference);
            let stale = found
                .as_ref()
                .is_none_or(|found| digest(found) != reference.digest);
            (found, stale)
        });
        (found.clone(), *stale)
    }
}

/// A record's attributes with every marker resolved.
#[derive(Debug)]
pub struct Resolved<'a> {
    pub attributes: Cow<'a, Attributes>,
    /// A marker's resource no longer holds the value recorded (changed since, or gone):
    /// its attribute holds what the resource has now, or is missing when it is gone.
    pub stale: bool,
}

impl StateDocument {
    /// `attributes` (of one of this document's records) with each attribute recorded by
    /// reference resolved from the referenced record. Borrowed when there is none.
    pub fn resolve<'a>(&self, attributes: &'a Attributes) -> Resolved<'a> {
        if !attributes
            .values()
            .any(|value| recorded_reference(value).is_some())
        {
            return Resolved {
                attributes: Cow::Borrowed(attributes),
                stale: false,
            };
        }
        self.resolve_owned(attributes.clone())
    }

    /// A record's attributes as held, parsed and resolved ([`Self::resolve`]).
    pub fn resolve_stored(&self, attributes: &StoredAttributes) -> Resolved<'static> {
        self.resolve_owned(attributes.parse())
    }

    /// [`Self::resolve`] of attributes owned already.
    pub fn resolve_owned(&self, attributes: Attributes) -> Resolved<'static> {
        self.resolve_owned_with(attributes, &mut MarkerReads::default())
    }

    /// [`Self::resolve_owned`], taking what `reads` resolved before for the same
    /// markers and keeping what it resolves now.
    pub fn resolve_owned_with(
        &self,
        mut attributes: Attributes,
        reads: &mut MarkerReads,
    ) -> Resolved<'static> {
        let mut stale = false;
        let mut gone = Vec::new();
        for (name, value) in attributes.iter_mut() {
            let Some(reference) = recorded_reference(value) else {
                continue;
            };
            let (found, changed) = reads.resolve(self, &reference);
            stale |= changed;
            match found {
                Some(found) => *value = found,
                None => gone.push(name.clone()),
            }
        }
        for name in gone {
            attributes.shift_remove(&name);
        }
        Resolved {
            attributes: Cow::Owned(attributes),
            stale,
        }
    }

    /// The value a marker stands for, from its resource's record as it is now.
    fn referenced(&self, reference: &RecordedReference<'_>) -> Option<Value> {
        let address: ResourceAddr = reference.address.parse().ok()?;
        let record = self.resources.get(&address)?;
        referenced_in(&record.attributes.only(&reference.attributes), reference)
    }

    /// Record `record` for `address`, or forget `address` with `None`. First, every
    /// marker that refers to it and would no longer resolve to what it recorded
    /// becomes a copy of that value: a machine config keeps the secrets it was applied
    /// with (the identity its node still trusts) until it is applied again, and is
    /// recorded by reference then.
    pub fn set_record(&mut self, address: &ResourceAddr, record: Option<ResourceState>) {
        let next = record.as_ref().map(|r| &r.attributes);
        let copies = self.copies_of_references_to(address, |reference| match next {
            None => true,
            Some(attributes) => referenced_in(&attributes.only(&reference.attributes), reference)
                .is_none_or(|value| digest(&value) != reference.digest),
        });
        self.keep_copies(copies);
        match record {
            Some(record) => {
                self.resources.insert(address.clone(), record);
            }
            None => {
                self.resources.remove(address);
            }
        }
    }

    /// Before `address` leaves the document (`state rm`): every marker that refers to
    /// it (and is not stale already) is replaced by its value, so the records holding
    /// one keep what they recorded.
    pub(crate) fn copy_references_to(&mut self, address: &ResourceAddr) {
        let copies = self.copies_of_references_to(address, |_| true);
        self.keep_copies(copies);
    }

    /// (holder, attribute, value now) of each marker referring to `address` that
    /// `wanted` says to copy. A marker that is stale
    /// already is left as it is: its value is not the one recorded.
    fn copies_of_references_to(
        &self,
        address: &ResourceAddr,
        wanted: impl Fn(&RecordedReference<'_>) -> bool,
    ) -> Vec<(ResourceAddr, String, Value)> {
        let Some(target) = self.resources.get(address) else {
            return Vec::new();
        };
        let text = address.to_string();
        let needle = marker_text(&text);
        let mut copies = Vec::new();
        // Only the records whose text holds such a marker are read.
        for (holder, record) in self
            .resources
            .iter()
            .filter(|(_, r)| r.attributes.mentions(&needle))
        {
            for (name, value) in record.attributes.parse() {
                if let Some(reference) = recorded_reference(&value)
                    && reference.address == text
                    && let Some(copy) =
                        referenced_in(&target.attributes.only(&reference.attributes), &reference)
                    && digest(&copy) == reference.digest
                    && wanted(&reference)
                {
                    copies.push((holder.clone(), name, copy));
                }
            }
        }
        copies
    }

    fn keep_copies(&mut self, copies: Vec<(ResourceAddr, String, Value)>) {
        for (holder, name, copy) in copies {
            if let Some(record) = self.resources.get_mut(&holder) {
                record
                    .attributes
                    .edit(|attributes| attributes.insert(name, copy));
            }
        }
    }

    /// After `from` was renamed `to` (`state mv`): markers follow it.
    pub(crate) fn move_references(&mut self, from: &ResourceAddr, to: &ResourceAddr) {
        let from = from.to_string();
        let needle = marker_text(&from);
        let to = Value::String(to.to_string());
        for record in self.resources.values_mut() {
            if !record.attributes.mentions(&needle) {
                continue;
            }
            record.attributes.edit(|attributes| {
                for value in attributes.values_mut() {
                    if recorded_reference(value).is_some_and(|r| r.address == from)
                        && let Value::Object(marker) = value
                    {
                        marker.insert("address".into(), to.clone());
                    }
                }
            });
        }
    }
}

/// Whether `attributes` may hold a marker (a cheap test before parsing them: every
/// marker's text holds its kind).
pub fn may_hold_markers(attributes: &StoredAttributes) -> bool {
    attributes.mentions(&Value::from(KIND).to_string())
}

/// What a record's text holds when one of its markers refers to `address`: the address
/// as a JSON string. A cheap test before parsing; a record that holds it for another
/// reason is parsed for nothing.
fn marker_text(address: &str) -> String {
    Value::from(address).to_string()
}

#[cfg(test)]
mod tests {
    use infraflux_provider::{reference, unknown};
    use serde_json::json;

    use super::*;
    use crate::state::{ResourceState, ResourceStatus};

    const SECRETS: &str = "dev/w/talos_secrets.cluster";
    const CONFIG: &str = "dev/w/talos_machine_config.cp-1";

    fn attributes(value: Value) -> Attributes {
        value.as_object().unwrap().clone()
    }

    fn record(attributes: Attributes) -> ResourceState {
        ResourceState {
            kind: "thing".into(),
            provider: "mock".into(),
            id: Some("1".into()),
            attributes: attributes.into(),
            sensitive: vec!["secrets".into()],
            dependencies: Vec::new(),
            status: ResourceStatus::Ready,
        }
    }

    fn bundle() -> Value {
        json!({"admin_crt": "CRT", "admin_key": "KEY", "os_ca_crt": "CA"})
    }

    /// State with the secrets and a machine config that took the bundle whole (by
    /// reference) and its hostname from configuration.
    fn document() -> StateDocument {
        let desired = attributes(json!({
            "hostname": "cp-1",
            "secrets": reference(SECRETS, OUTPUTS),
        }));
        let mut config = attributes(json!({"hostname": "cp-1", "secrets": bundle()}));
        record_by_reference(&desired, &mut config);
        let mut secrets = bundle().as_object().unwrap().clone();
        secrets.insert("cluster_name".into(), json!("w"));
        let mut document = StateDocument::new("dev");
        for (address, attributes) in [(SECRETS, secrets), (CONFIG, config)] {
            document
                .resources
                .insert(address.parse().unwrap(), record(attributes));
        }
        document
    }

    /// The secrets' record, to change behind `set_record`'s back.
    fn secrets_of(document: &mut StateDocument) -> &mut StoredAttributes {
        let address: ResourceAddr = SECRETS.parse().unwrap();
        &mut document.resources.get_mut(&address).unwrap().attributes
    }

    fn config(document: &StateDocument) -> Attributes {
        document.resources[&CONFIG.parse::<ResourceAddr>().unwrap()]
            .attributes
            .parse()
    }

    #[test]
    fn an_outputs_value_is_recorded_as_its_reference_and_resolved_to_it_again() {
        let document = document();
        let recorded = config(&document);
        assert_eq!(recorded["hostname"], json!("cp-1"));
        let marker = recorded_reference(&recorded["secrets"]).expect("recorded by reference");
        assert_eq!(marker.address, SECRETS);
        assert_eq!(
            marker.attributes,
            vec!["admin_crt", "admin_key", "os_ca_crt"]
        );
        // No secret in the record.
        assert!(!serde_json::to_string(&recorded).unwrap().contains("KEY"));
        let resolved = document.resolve(&recorded);
        assert!(!resolved.stale);
        assert_eq!(
            *resolved.attributes,
            attributes(json!({"hostname": "cp-1", "secrets": bundle()}))
        );
    }

    #[test]
    fn only_a_known_whole_outputs_reference_is_recorded_so() {
        let desired = attributes(json!({
            "one": reference(SECRETS, "admin_crt"),
            "later": reference(SECRETS, OUTPUTS),
            "scalar": reference(SECRETS, OUTPUTS),
            "given": {"a": 1},
        }));
        let mut recorded = attributes(json!({
            "one": {"not": "an outputs reference"},
            "later": unknown(),
            "scalar": "text",
            "given": {"a": 1},
        }));
        let before = recorded.clone();
        record_by_reference(&desired, &mut recorded);
        assert_eq!(recorded, before);
    }

    #[test]
    fn a_changed_or_removed_target_makes_the_record_stale() {
        let mut document = document();
        let secrets: ResourceAddr = SECRETS.parse().unwrap();
        secrets_of(&mut document).edit(|a| a.insert("admin_key".into(), json!("ROTATED")));
        let resolved = document.resolve_owned(config(&document));
        assert!(resolved.stale);
        assert_eq!(
            resolved.attributes["secrets"]["admin_key"],
            json!("ROTATED")
        );
        // An attribute the value held, gone from the target: stale too.
        secrets_of(&mut document).edit(|a| a.remove("os_ca_crt"));
        let resolved = document.resolve_owned(config(&document));
        assert!(resolved.stale && !resolved.attributes.contains_key("secrets"));
        document.resources.remove(&secrets);
        let resolved = document.resolve_owned(config(&document));
        assert!(resolved.stale && !resolved.attributes.contains_key("secrets"));
    }

    /// Issue 15: records holding the same marker, resolved with the reads kept between
    /// them (a plan's piece), resolve as each would alone: fresh, stale, gone.
    #[test]
    fn markers_resolved_once_resolve_every_record_holding_them_alike() {
        let mut document = document();
        let mut reads = MarkerReads::default();
        let fresh = document.resolve_owned(config(&document));
        for _ in 0..2 {
            let kept = document.resolve_owned_with(config(&document), &mut reads);
            assert_eq!(
                (kept.stale, &kept.attributes),
                (fresh.stale, &fresh.attributes)
            );
        }
        // The same attributes of the same record, recorded with other values (a node
        // applied with an older bundle): its own answer, stale.
        let mut other = config(&document);
        let names = ["admin_crt", "admin_key", "os_ca_crt"]
            .map(Value::from)
            .to_vec();
        let old = json!({"admin_crt": "OLD", "admin_key": "KEY", "os_ca_crt": "CA"});
        other.insert("secrets".into(), marker(SECRETS, names, digest(&old)));
        let alone = document.resolve_owned(other.clone());
        let kept = document.resolve_owned_with(other, &mut reads);
        assert!(alone.stale && kept.stale);
        assert_eq!(kept.attributes, alone.attributes);
        assert_eq!(kept.attributes["secrets"], bundle());
        // Fewer names, with the digest of the whole bundle (a marker no plan writes):
        // its own answer, not the whole bundle's.
        let mut fewer_names = config(&document);
        let fewer = vec![json!("admin_crt")];
        fewer_names.insert("secrets".into(), marker(SECRETS, fewer, digest(&bundle())));
        let alone = document.resolve_owned(fewer_names.clone());
        let kept = document.resolve_owned_with(fewer_names, &mut reads);
        assert!(alone.stale && kept.stale);
        assert_eq!(kept.attributes["secrets"], json!({"admin_crt": "CRT"}));
        // And the reads of another marker, names but not values alike, leave it be.
        let mut other_names = config(&document);
        let fewer = vec![json!("admin_crt")];
        let crt = json!({"admin_crt": "CRT"});
        other_names.insert("secrets".into(), marker(SECRETS, fewer, digest(&crt)));
        let kept = document.resolve_owned_with(other_names, &mut reads);
        assert!(!kept.stale);
        assert_eq!(kept.attributes["secrets"], crt);
        // Gone for one reader, gone for the next (state does not change in a plan: a
        // fresh set of reads for the changed document).
        document
            .resources
            .remove(&SECRETS.parse::<ResourceAddr>().unwrap());
        let mut reads = MarkerReads::default();
        for _ in 0..2 {
            let kept = document.resolve_owned_with(config(&document), &mut reads);
            assert!(kept.stale && !kept.attributes.contains_key("secrets"));
        }
    }

    #[test]
    fn other_attributes_of_the_target_do_not_matter() {
        let mut document = document();
        secrets_of(&mut document).edit(|a| a.insert("cluster_name".into(), json!("renamed")));
        assert!(!document.resolve_owned(config(&document)).stale);
    }

    #[test]
    fn a_refreshed_value_still_the_recorded_one_is_its_marker_again() {
        let document = document();
        let recorded = config(&document);
        let mut found = document.resolve(&recorded).attributes.into_owned();
        found.insert("hostname".into(), json!("renamed-on-the-node"));
        document.rerecord(&mut found, &recorded);
        assert_eq!(found["secrets"], recorded["secrets"]);
        assert_eq!(found["hostname"], json!("renamed-on-the-node"));
        // A value read back otherwise stays what was read.
        let mut other = found.clone();
        other.insert("secrets".into(), json!({"admin_crt": "OTHER"}));
        document.rerecord(&mut other, &recorded);
        assert_eq!(other["secrets"], json!({"admin_crt": "OTHER"}));
    }

    #[test]
    fn a_stale_value_echoed_back_by_a_refresh_stays_a_stale_marker() {
        let mut document = document();
        // Changed behind set_record's back (a hand edit): the marker is stale.
        secrets_of(&mut document).edit(|a| a.insert("admin_key".into(), json!("EDITED")));
        let recorded = config(&document);
        let mut found = document.resolve(&recorded).attributes.into_owned();
        document.rerecord(&mut found, &recorded);
        assert_eq!(found["secrets"], recorded["secrets"]);
        assert!(document.resolve(&found).stale);
    }

    #[test]
    fn a_changed_or_removed_target_leaves_its_old_value_to_the_records_that_took_it() {
        let mut document = document();
        let secrets: ResourceAddr = SECRETS.parse().unwrap();
        let mut rotated = document.resources[&secrets].clone();
        rotated
            .attributes
            .edit(|a| a.insert("admin_key".into(), json!("ROTATED")));
        // Another attribute of it changed: the marker still holds.
        let mut renamed = document.resources[&secrets].clone();
        renamed
            .attributes
            .edit(|a| a.insert("cluster_name".into(), json!("renamed")));
        document.set_record(&secrets, Some(renamed));
        assert!(recorded_reference(&config(&document)["secrets"]).is_some());
        // The value it took changed: the config keeps what it was applied with.
        document.set_record(&secrets, Some(rotated));
        assert_eq!(config(&document)["secrets"], bundle());
        assert!(!document.resolve_owned(config(&document)).stale);

        let mut document = self::document();
        document.set_record(&secrets, None);
        assert_eq!(config(&document)["secrets"], bundle());
    }

    #[test]
    fn the_digest_ignores_member_order_but_not_values() {
        let a = json!({"x": 1, "y": {"p": "q", "r": [1, 2]}});
        let b = json!({"y": {"r": [1, 2], "p": "q"}, "x": 1});
        assert_eq!(digest(&a), digest(&b));
        assert_ne!(
            digest(&a),
            digest(&json!({"x": 1, "y": {"p": "q", "r": [2, 1]}}))
        );
    }

    #[test]
    fn removing_the_target_copies_it_into_its_references_and_moving_it_follows() {
        let mut document = document();
        let secrets: ResourceAddr = SECRETS.parse().unwrap();
        let moved: ResourceAddr = "dev/w/talos_secrets.renamed".parse().unwrap();
        document.move_resource(&secrets, &moved).unwrap();
        let marker = recorded_reference(&config(&document)["secrets"])
            .unwrap()
            .address
            .to_string();
        assert_eq!(marker, moved.to_string());
        assert!(!document.resolve_owned(config(&document)).stale);
        document.remove_resources(&[moved]).unwrap();
        assert_eq!(config(&document)["secrets"], bundle());
    }
}
