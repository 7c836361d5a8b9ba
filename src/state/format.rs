//! The bytes of a stored state document: a JSON envelope
//!
//! ```json
//! { "format_version": 4, "lineage": "…", "serial": 7, "environment": "prod",
//!   "resources": { "<address>": { … } }, "checksum": "xxh3-128:<hex>" }
//! ```
//!
//! The checksum is the XXH3-128 of the document's canonical serialization without the
//! `checksum` member: compact JSON, object members sorted by key at every level, with
//! each record's `attributes` standing as the string `xxh3-128:<hex>` of their compact
//! text, members in their recorded order ([`StoredAttributes`]). It does not depend on
//! whitespace, so a file reformatted by hand still loads, nor on member order outside
//! the attributes; any changed value does not load. Inside the attributes the order is
//! kept, and is a change: a provider may render from it (the Kubernetes provider's
//! manifests and their digests follow the order of Helm values), so attributes sorted by
//! a tool (`jq -S`) would otherwise load and then plan as changed. Neither writing nor
//! checking a file builds the attributes' values.
//!
//! Before format version 4 the attributes were hashed in place (the whole document's
//! canonical serialization); before version 3 with SHA-256 (`sha256:<hex>`). Both are
//! still verified as such.
//!
//! Loading reads `format_version` first: a newer version is refused (its checksum or
//! layout may differ), an older one is verified and then migrated step by step to
//! [`FORMAT_VERSION`].

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use xxhash_rust::xxh3::Xxh3;

use super::parse::{ParsedRecord, ParsedState};
use super::{Error, FORMAT_VERSION, ResourceState, StateDocument, StoredAttributes};
use crate::vocabulary::ResourceAddr;

const CHECKSUM_KEY: &str = "checksum";
const XXH3_PREFIX: &str = "xxh3-128:";
const SHA256_PREFIX: &str = "sha256:";

/// A document as stored, before it is read into [`StateDocument`].
type Envelope = Map<String, Value>;

/// One migration step: turns a document of version `from` into version `from + 1`. It
/// is given the document's members except its records (`resources`): every step so
/// far changes none. A step that must change records gets them too, as it is written.
#[derive(Clone, Copy)]
struct Migration {
    from: u32,
    migrate: fn(Envelope) -> Result<Envelope, String>,
}

/// Every migration step, oldest first. When the layout changes, bump [`FORMAT_VERSION`]
/// and add the step here.
const MIGRATIONS: &[Migration] = &[
    Migration {
        from: 1,
        migrate: v1_to_v2,
    },
    Migration {
        from: 2,
        migrate: v2_to_v3,
    },
    Migration {
        from: 3,
        migrate: v3_to_v4,
    },
];

/// Version 2 adds `machines`, the identity (address, Proxmox node, VM ID) of every
/// machine. A version-1 document has none recorded: they are adopted from its VMs' and
/// machine configs' attributes on the first run (`graph::machines`), so nothing changes
/// here. The version is bumped anyway so that an older infraflux refuses the document
/// rather than reading it and writing it back without the identities.
fn v1_to_v2(envelope: Envelope) -> Result<Envelope, String> {
    Ok(envelope)
}

/// Version 3 records a value taken whole from another resource's outputs by reference
/// (`by_reference`), and leaves out attributes a schema says are never recorded (a
/// rendered machine config). A version-2 record holds full copies, which still read the
/// same: each is recorded anew when its resource is next applied. The version is bumped
/// so that an older infraflux, which would hand a marker to a provider, refuses it.
fn v2_to_v3(envelope: Envelope) -> Result<Envelope, String> {
    Ok(envelope)
}

/// Version 4 changes only the checksum: a record's attributes enter it as their own
/// digest. The file was verified as its version wrote it; nothing else changes. The
/// version is bumped so that an older infraflux refuses the document rather than
/// calling it damaged.
fn v3_to_v4(envelope: Envelope) -> Result<Envelope, String> {
    Ok(envelope)
}

/// The file contents for a document: pretty JSON (readable, diffable) with its checksum.
/// Always written in the current [`FORMAT_VERSION`].
pub fn encode(document: &StateDocument) -> Result<Vec<u8>, Error> {
    let failed =
        |e: serde_json::Error| Error::Other(format!("cannot serialize the state document: {e}"));
    let header = header(document).map_err(failed)?;
    let fields: Vec<(String, Value)> = document
        .resources
        .iter()
        .map(|(address, record)| Ok((address.to_string(), record_fields(record)?)))
        .collect::<Result<_, serde_json::Error>>()
        .map_err(failed)?;
    let mut records: Vec<CanonicalRecord> = fields
        .iter()
        .zip(document.resources.values())
        .map(|((key, fields), record)| CanonicalRecord {
            key,
            body: CanonicalBody::Fields {
                fields,
                attributes: Some(&record.attributes),
            },
        })
        .collect();
    // The canonical order is the text's, which need not be the addresses' own.
    records.sort_unstable_by(|a, b| a.key.cmp(b.key));
    let mut hashing = Hashing::new(Algorithm::Xxh3);
    write_canonical_state(&header, Some(&records), Hashed::Text, &mut hashing);
    let checksum = hashing.finish();
    let written = Written {
        header: &header,
        resources: &document.resources,
        checksum: &checksum,
    };
    let mut bytes = serde_json::to_vec_pretty(&written).map_err(failed)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The document's members but its records, in the order they are written (`resources`
/// among them, empty, to keep its place).
fn header(document: &StateDocument) -> Result<Envelope, serde_json::Error> {
    // Every member named: a new one is a compile error here until it is written too.
    let StateDocument {
        format_version: _,
        lineage,
        serial,
        environment,
        resources: _,
        machines,
        promotion,
    } = document;
    let shell = StateDocument {
        format_version: FORMAT_VERSION,
        lineage: *lineage,
        serial: *serial,
        environment: environment.clone(),
        resources: Default::default(),
        machines: machines.clone(),
        promotion: promotion.clone(),
    };
    match serde_json::to_value(&shell)? {
        Value::Object(header) => Ok(header),
        _ => unreachable!("a struct serializes to an object"),
    }
}

/// A record's members but its attributes, as serde writes them.
fn record_fields(record: &ResourceState) -> Result<Value, serde_json::Error> {
    let ResourceState {
        kind,
        provider,
        id,
        attributes: _,
        sensitive,
        dependencies,
        status,
    } = record;
    let shell = ResourceState {
        kind: kind.clone(),
        provider: provider.clone(),
        id: id.clone(),
        attributes: StoredAttributes::empty(),
        sensitive: sensitive.clone(),
        dependencies: dependencies.clone(),
        status: *status,
    };
    let mut fields = serde_json::to_value(&shell)?;
    if let Value::Object(members) = &mut fields {
        members.remove("attributes");
    }
    Ok(fields)
}

/// The file as written: the header's members in their order, the records at
/// `resources`' place, the checksum last.
struct Written<'a> {
    header: &'a Envelope,
    resources: &'a std::collections::BTreeMap<ResourceAddr, ResourceState>,
    checksum: &'a str,
}

impl serde::Serialize for Written<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.header.len() + 1))?;
        for (key, value) in self.header {
            if key == "resources" {
                map.serialize_entry(key, self.resources)?;
            } else {
                map.serialize_entry(key, value)?;
            }
        }
        map.serialize_entry(CHECKSUM_KEY, self.checksum)?;
        map.end()
    }
}

/// A document from file contents: parse, check the version, verify the checksum,
/// migrate. `path` names the file in errors.
pub fn decode(bytes: &[u8], path: &str) -> Result<StateDocument, Error> {
    let corrupt = |reason: String, source: Option<serde_json::Error>| Error::Corrupt {
        path: path.to_string(),
        reason,
        source,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(corrupt("the file is empty".to_string(), None));
    }
    let parsed = super::parse::state_from_slice(bytes, crate::cores::available(), read_record)
        .map_err(|e| corrupt("it is not valid JSON".to_string(), Some(e)))?;
    let Some(ParsedState {
        header: mut envelope,
        records,
    }) = parsed
    else {
        return Err(corrupt("it is not a JSON object".to_string(), None));
    };
    let version = match envelope.get("format_version") {
        Some(Value::Number(n)) => n.as_u64(),
        _ => None,
    }
    .ok_or_else(|| {
        corrupt(
            "`format_version` is missing or not a number".to_string(),
            None,
        )
    })?;
    if version > u64::from(FORMAT_VERSION) {
        return Err(Error::UnsupportedVersion {
            path: path.to_string(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let stored = match envelope.remove(CHECKSUM_KEY) {
        Some(Value::String(s)) => s,
        Some(_) => return Err(corrupt("`checksum` is not a string".to_string(), None)),
        None => return Err(corrupt("`checksum` is missing".to_string(), None)),
    };
    let algorithm = if stored.starts_with(XXH3_PREFIX) {
        Algorithm::Xxh3
    } else if stored.starts_with(SHA256_PREFIX) {
        Algorithm::Sha256
    } else {
        return Err(corrupt(
            format!(
                "unknown checksum algorithm in `{stored}` (expected {XXH3_PREFIX}<hex>, or {SHA256_PREFIX}<hex> before format version 3)"
            ),
            None,
        ));
    };
    let records = records.map(last_of_each_address);
    let actual = {
        let canonical = records.as_deref().map(CanonicalRecord::of_read);
        let hashed = if version >= 4 {
            Hashed::Text
        } else {
            Hashed::InPlace
        };
        let mut hashing = Hashing::new(algorithm);
        write_canonical_state(&envelope, canonical.as_deref(), hashed, &mut hashing);
        hashing.finish()
    };
    if stored != actual {
        return Err(corrupt(
            format!(
                "checksum mismatch: the file says {stored}, its contents hash to {actual} (edited by hand or damaged)"
            ),
            None,
        ));
    }
    // The version fits in u32: it is at most FORMAT_VERSION.
    let envelope = migrate(envelope, version as u32).map_err(|reason| corrupt(reason, None))?;
    into_document(envelope, records).map_err(|e| {
        corrupt(
            "its contents do not match the state format".to_string(),
            Some(e),
        )
    })
}

/// Records sorted by their text, an address given more than once keeping its last
/// record (as a JSON object keeps a repeated member's last value).
fn last_of_each_address<R>(mut records: Vec<(String, R)>) -> Vec<(String, R)> {
    // Stable: a repeated address's records stay in file order.
    records.sort_by(|a, b| a.0.cmp(&b.0));
    let mut kept: Vec<(String, R)> = Vec::with_capacity(records.len());
    for record in records {
        match kept.last_mut() {
            Some(last) if last.0 == record.0 => *last = record,
            _ => kept.push(record),
        }
    }
    kept
}

/// A record of a file being read, made ready on the thread that parsed it: the
/// checksum's part of it and its conversion to a [`ResourceState`] were a fifth of
/// reading a fleet's state, on one core, after the records' parse on all of them
/// (issue 15).
enum ReadRecord {
    /// Of the format's shape: an object whose attributes are an object.
    Shaped {
        /// Its canonical serialization with its attributes' value left out: they stand
        /// at `attributes_at`, as the file's version hashes them.
        canonical: Box<[u8]>,
        attributes_at: usize,
        /// XXH3-128 of the attributes' text (how version 4 on hashes them).
        text_digest: u128,
        /// The record read, or why it does not read (told only once the checksum
        /// holds), with its attributes kept for a checksum of an older version.
        read: Result<(ResourceAddr, ResourceState), (serde_json::Error, StoredAttributes)>,
    },
    /// Anything else, kept as parsed: the checksum and the conversion's error are
    /// made of it as they always were.
    Unshaped(ParsedRecord),
}

/// `record` (at `key`) made ready to check and to read (see [`ReadRecord`]).
fn read_record(key: &str, record: ParsedRecord) -> ReadRecord {
    let ParsedRecord {
        fields: Value::Object(mut fields),
        attributes: Some(attributes),
    } = record
    else {
        return ReadRecord::Unshaped(record);
    };
    let mut canonical = Vec::new();
    let mut attributes_at = 0;
    write_record_around(&fields, &mut canonical, |out| attributes_at = out.len());
    let text_digest = xxhash_rust::xxh3::xxh3_128(attributes.text().as_bytes());
    let address = match serde_json::from_value::<ResourceAddr>(Value::String(key.to_string())) {
        Ok(address) => address,
        Err(e) => {
            return ReadRecord::Shaped {
                canonical: canonical.into_boxed_slice(),
                attributes_at,
                text_digest,
                read: Err((e, attributes)),
            };
        }
    };
    fields.insert("attributes".to_string(), Value::Object(Map::new()));
    let read = match serde_json::from_value::<ResourceState>(Value::Object(fields)) {
        Ok(mut state) => {
            state.attributes = attributes;
            Ok((address, state))
        }
        Err(e) => Err((e, attributes)),
    };
    ReadRecord::Shaped {
        canonical: canonical.into_boxed_slice(),
        attributes_at,
        text_digest,
        read,
    }
}

/// The document from its envelope (migrated) and its records (each key once). The
/// first record that does not read, in key order, is the error.
fn into_document(
    mut envelope: Envelope,
    records: Option<Vec<(String, ReadRecord)>>,
) -> Result<StateDocument, serde_json::Error> {
    let Some(records) = records else {
        // `resources` missing or not a map: serde says what is wrong.
        return serde_json::from_value(Value::Object(envelope));
    };
    envelope.insert("resources".to_string(), Value::Object(Map::new()));
    let mut document: StateDocument = serde_json::from_value(Value::Object(envelope))?;
    for (key, record) in records {
        let (address, state) = match record {
            ReadRecord::Shaped { read, .. } => read.map_err(|(e, _)| e)?,
            ReadRecord::Unshaped(ParsedRecord { fields, .. }) => {
                // Not an object, or attributes that are not: serde says what is wrong.
                let address: ResourceAddr = serde_json::from_value(Value::String(key))?;
                (address, serde_json::from_value(fields)?)
            }
        };
        document.resources.insert(address, state);
    }
    Ok(document)
}

/// One record as the checksum reads it: its text key and the rest.
struct CanonicalRecord<'a> {
    key: &'a str,
    body: CanonicalBody<'a>,
}

enum CanonicalBody<'a> {
    /// Its members but the attributes, and the attributes.
    Fields {
        fields: &'a Value,
        attributes: Option<&'a StoredAttributes>,
    },
    /// Written already but for the attributes' value (a [`ReadRecord::Shaped`]).
    Written {
        canonical: &'a [u8],
        attributes_at: usize,
        text_digest: u128,
        attributes: &'a StoredAttributes,
    },
}

impl<'a> CanonicalRecord<'a> {
    /// Parsed records (in key order, each key once: [`last_of_each_address`]).
    fn of(records: &'a [(String, ParsedRecord)]) -> Vec<Self> {
        records
            .iter()
            .map(|(key, record)| CanonicalRecord {
                key,
                body: CanonicalBody::Fields {
                    fields: &record.fields,
                    attributes: record.attributes.as_ref(),
                },
            })
            .collect()
    }

    /// Records being read (in key order, each key once).
    fn of_read(records: &'a [(String, ReadRecord)]) -> Vec<Self> {
        records
            .iter()
            .map(|(key, record)| CanonicalRecord {
                key,
                body: match record {
                    ReadRecord::Shaped {
                        canonical,
                        attributes_at,
                        text_digest,
                        read,
                    } => CanonicalBody::Written {
                        canonical,
                        attributes_at: *attributes_at,
                        text_digest: *text_digest,
                        attributes: match read {
                            Ok((_, state)) => &state.attributes,
                            Err((_, attributes)) => attributes,
                        },
                    },
                    ReadRecord::Unshaped(record) => CanonicalBody::Fields {
                        fields: &record.fields,
                        attributes: record.attributes.as_ref(),
                    },
                },
            })
            .collect()
    }
}

/// How a record's attributes enter the checksum.
#[derive(Clone, Copy)]
enum Hashed {
    /// As the string `xxh3-128:<hex>` of their compact text, members in their recorded
    /// order (version 4 on).
    Text,
    /// As their canonical serialization (before version 4).
    InPlace,
}

/// The canonical serialization of a document: `header`'s members, with `records` (in
/// key order, each key once) as `resources` when given.
fn write_canonical_state<W: std::io::Write>(
    header: &Envelope,
    records: Option<&[CanonicalRecord]>,
    hashed: Hashed,
    out: &mut W,
) {
    let mut keys: Vec<&str> = header
        .keys()
        .map(String::as_str)
        .filter(|key| records.is_none() || *key != "resources")
        .collect();
    if records.is_some() {
        keys.push("resources");
    }
    keys.sort_unstable();
    write_object(
        keys.into_iter().map(|key| (key, key)),
        out,
        |key, out| match records {
            Some(records) if key == "resources" => write_object(
                records.iter().map(|record| (record.key, record)),
                out,
                |record, out| write_canonical_record(record, hashed, out),
            ),
            _ => write_canonical(&header[key], out),
        },
    );
}

/// A record's canonical serialization, its attributes as `hashed` says.
fn write_canonical_record<W: std::io::Write>(
    record: &CanonicalRecord,
    hashed: Hashed,
    out: &mut W,
) {
    match record.body {
        CanonicalBody::Fields {
            fields: Value::Object(fields),
            attributes: Some(attributes),
        } => write_record_around(fields, out, |out| write_attributes(attributes, hashed, out)),
        CanonicalBody::Fields { fields, .. } => write_canonical(fields, out),
        CanonicalBody::Written {
            canonical,
            attributes_at,
            text_digest,
            attributes,
        } => {
            let (before, after) = canonical.split_at(attributes_at);
            push(out, before);
            match hashed {
                Hashed::Text => push_text_digest(out, text_digest),
                Hashed::InPlace => write_attributes(attributes, hashed, out),
            }
            push(out, after);
        }
    }
}

/// A record's members, `fields` and its attributes, in canonical order, the attributes'
/// value written by `attributes`.
fn write_record_around<W: std::io::Write>(
    fields: &Map<String, Value>,
    out: &mut W,
    mut attributes: impl FnMut(&mut W),
) {
    let mut keys: Vec<&str> = fields.keys().map(String::as_str).collect();
    keys.push("attributes");
    keys.sort_unstable();
    write_object(keys.into_iter().map(|key| (key, key)), out, |key, out| {
        if key == "attributes" {
            attributes(out)
        } else {
            write_canonical(&fields[key], out)
        }
    });
}

/// A record's attributes' value as `hashed` says.
fn write_attributes<W: std::io::Write>(attributes: &StoredAttributes, hashed: Hashed, out: &mut W) {
    match hashed {
        Hashed::Text => push_text_digest(
            out,
            xxhash_rust::xxh3::xxh3_128(attributes.text().as_bytes()),
        ),
        // Parsed again: a file of an older version is checked so on every read
        // until it is next written (in the current version).
        Hashed::InPlace => write_canonical_object(&attributes.parse(), out),
    }
}

/// The checksum of `envelope` (which must not hold the checksum itself), as the current
/// [`FORMAT_VERSION`] defines it (see the module documentation). Public for tools and
/// tests that write a document by hand.
pub fn checksum(envelope: &Map<String, Value>) -> String {
    let mut header = envelope.clone();
    let records = match header.remove("resources") {
        Some(Value::Object(resources)) => Some(last_of_each_address(
            resources
                .into_iter()
                .map(|(key, fields)| (key, super::parse::record(fields)))
                .collect(),
        )),
        Some(other) => {
            header.insert("resources".to_string(), other);
            None
        }
        None => None,
    };
    let canonical = records.as_deref().map(CanonicalRecord::of);
    let mut hashing = Hashing::new(Algorithm::Xxh3);
    write_canonical_state(&header, canonical.as_deref(), Hashed::Text, &mut hashing);
    hashing.finish()
}

/// `xxh3-128:<hex>` of the whole canonical serialization of `envelope`: the checksum of
/// documents of version 3 (still verified; public for tools and tests that write one).
pub fn version_3_checksum(envelope: &Map<String, Value>) -> String {
    let mut canonical = Hashing::new(Algorithm::Xxh3);
    write_canonical_object(envelope, &mut canonical);
    canonical.finish()
}

/// `sha256:<hex>` of the same: the checksum of documents written before version 3
/// (still verified; public for tools and tests that write such a document).
pub fn sha256_checksum(envelope: &Map<String, Value>) -> String {
    let mut canonical = Hashing::new(Algorithm::Sha256);
    write_canonical_object(envelope, &mut canonical);
    canonical.finish()
}

/// `xxh3-128:<hex>` of `value`'s canonical serialization (`by_reference`'s digests).
pub(crate) fn canonical_digest(value: &Value) -> String {
    let mut canonical = Hashing::new(Algorithm::Xxh3);
    write_canonical(value, &mut canonical);
    canonical.finish()
}

/// XXH3-128 of `map`'s canonical serialization (a record's attributes' digest).
pub(super) fn canonical_object_hash(map: &Map<String, Value>) -> u128 {
    let mut hasher = Xxh3Writer(Xxh3::new());
    write_canonical_object(map, &mut hasher);
    hasher.0.digest128()
}

/// Feeds an XXH3 hasher as it is written to (small inputs: no buffer in between).
struct Xxh3Writer(Xxh3);

impl std::io::Write for Xxh3Writer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How a checksum is made. XXH3-128 since version 3: a checksum tells a damaged or
/// hand-edited file from the one written (anyone who edits a file can compute either
/// digest again; an encrypted state is authenticated by age), and SHA-256 of the
/// canonical serialization was a twentieth of reading a fleet's state.
#[derive(Clone, Copy)]
enum Algorithm {
    Xxh3,
    Sha256,
}

/// The canonical serialization hashed as it is written, never held whole (the state
/// of 100,000 resources serializes to about 100 MB).
struct Hashing {
    hasher: Hasher,
    pending: Vec<u8>,
}

enum Hasher {
    Xxh3(Box<Xxh3>),
    Sha256(Sha256),
}

impl Hashing {
    const PIECE: usize = 64 * 1024;

    fn new(algorithm: Algorithm) -> Self {
        Hashing {
            hasher: match algorithm {
                Algorithm::Xxh3 => Hasher::Xxh3(Box::default()),
                Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            },
            // Grown as needed: most digests (`by_reference`'s) are of a few KiB.
            pending: Vec::new(),
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= Self::PIECE {
            self.flush_pending();
        }
    }

    fn flush_pending(&mut self) {
        match &mut self.hasher {
            Hasher::Xxh3(hasher) => hasher.update(&self.pending),
            Hasher::Sha256(hasher) => hasher.update(&self.pending),
        }
        self.pending.clear();
    }

    /// `<algorithm>:<hex>`.
    fn finish(mut self) -> String {
        self.flush_pending();
        match self.hasher {
            Hasher::Xxh3(hasher) => format!("{XXH3_PREFIX}{:032x}", hasher.digest128()),
            Hasher::Sha256(hasher) => format!("{SHA256_PREFIX}{}", hex::encode(hasher.finalize())),
        }
    }
}

impl std::io::Write for Hashing {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.push(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `value`'s canonical serialization (compact, object members sorted by key at every
/// level) into `out`, which hashes it (the checksum here, `by_reference`'s digests).
fn write_canonical(value: &Value, out: &mut impl std::io::Write) {
    match value {
        Value::Object(map) => write_canonical_object(map, out),
        Value::Array(items) => {
            push(out, b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    push(out, b",");
                }
                write_canonical(item, out);
            }
            push(out, b"]");
        }
        scalar => push_json(out, scalar),
    }
}

/// The attributes' value for [`Hashed::Text`]: `"xxh3-128:<hex>"` of their text's digest.
fn push_text_digest(out: &mut impl std::io::Write, digest: u128) {
    push_json(out, &format!("{XXH3_PREFIX}{digest:032x}"));
}

/// Bytes into a hasher, whose writes never fail.
fn push(out: &mut impl std::io::Write, bytes: &[u8]) {
    let _ = out.write_all(bytes);
}

/// `value` as compact JSON into a hasher (a string or a scalar: nothing that can fail).
fn push_json(out: &mut impl std::io::Write, value: &(impl serde::Serialize + ?Sized)) {
    let _ = serde_json::to_writer(out, value);
}

fn write_canonical_object<W: std::io::Write>(map: &Map<String, Value>, out: &mut W) {
    let mut members: Vec<(&str, &Value)> = map.iter().map(|(k, v)| (k.as_str(), v)).collect();
    members.sort_unstable_by(|a, b| a.0.cmp(b.0));
    write_object(members, out, |value, out| write_canonical(value, out));
}

/// An object of `members` (already in the order wanted), each value written by `value`.
fn write_object<'k, T, W: std::io::Write>(
    members: impl IntoIterator<Item = (&'k str, T)>,
    out: &mut W,
    mut value: impl FnMut(T, &mut W),
) {
    push(out, b"{");
    for (i, (key, member)) in members.into_iter().enumerate() {
        if i > 0 {
            push(out, b",");
        }
        push_json(out, key);
        push(out, b":");
        value(member, out);
    }
    push(out, b"}");
}

/// Bring an envelope of version `from` to [`FORMAT_VERSION`].
fn migrate(envelope: Envelope, from: u32) -> Result<Envelope, String> {
    migrate_with(envelope, from, MIGRATIONS)
}

fn migrate_with(
    mut envelope: Envelope,
    from: u32,
    steps: &[Migration],
) -> Result<Envelope, String> {
    let mut version = from;
    while version < FORMAT_VERSION {
        let step = steps
            .iter()
            .find(|m| m.from == version)
            .ok_or_else(|| format!("format version {version} is unknown"))?;
        envelope = (step.migrate)(envelope)
            .map_err(|reason| format!("cannot migrate from format version {version}: {reason}"))?;
        version += 1;
        envelope.insert("format_version".to_string(), Value::from(version));
    }
    Ok(envelope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ResourceState, ResourceStatus};
    use crate::vocabulary::ResourceAddr;
    use serde_json::json;

    fn document() -> StateDocument {
        let mut doc = StateDocument::new("dev");
        doc.serial = 3;
        let Value::Object(attributes) = json!({"name": "cp-1", "cores": 4, "ratio": 0.1}) else {
            unreachable!()
        };
        doc.resources.insert(
            ResourceAddr::new("dev", "workload", "proxmox_vm", "cp-1"),
            ResourceState {
                kind: "proxmox_vm".into(),
                provider: "proxmox".into(),
                id: Some("101".into()),
                attributes: attributes.into(),
                sensitive: vec![],
                dependencies: vec![],
                status: ResourceStatus::Ready,
            },
        );
        doc
    }

    #[test]
    fn checksum_ignores_layout_but_not_values() {
        let document = document();
        let bytes = encode(&document).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        // Same values, other member order and whitespace: still valid.
        let value: Value = serde_json::from_str(&text).unwrap();
        let compact = serde_json::to_string(&value).unwrap();
        assert_eq!(decode(compact.as_bytes(), "x").unwrap(), document);
        let mut reordered: Vec<(String, Value)> =
            value.as_object().unwrap().clone().into_iter().collect();
        reordered.reverse();
        let reordered: Map<String, Value> = reordered.into_iter().collect();
        let reordered = serde_json::to_string(&reordered).unwrap();
        assert_eq!(decode(reordered.as_bytes(), "x").unwrap(), document);
        // One value changed: refused.
        let tampered = text.replace("\"cores\": 4", "\"cores\": 5");
        assert_ne!(tampered, text);
        let error = decode(tampered.as_bytes(), "x").unwrap_err();
        assert!(
            matches!(&error, Error::Corrupt { reason, .. } if reason.contains("checksum mismatch")),
            "{error}"
        );
    }

    /// The checksum written is the one [`checksum`] defines on the whole document as a
    /// value (as tools may compute it): the attributes' digests held are those of their
    /// values. Also with an address given twice in the file.
    #[test]
    fn the_checksum_written_is_that_of_the_whole_document_as_a_value() {
        let mut document = document();
        let Value::Object(attributes) = json!({
            "z": {"b": [1, {"y": null, "x": "q\"uote"}], "a": 1.25},
            "a": "first", "m": {}, "unicode": "é✓"
        }) else {
            unreachable!()
        };
        let mut second = document.resources.values().next().unwrap().clone();
        second.attributes = attributes.into();
        second.dependencies = vec![ResourceAddr::new("dev", "workload", "proxmox_vm", "cp-1")];
        // Addresses whose text sorts otherwise than the addresses do.
        for name in ["cp-10", "cp-1a", "cp_1", "cp-1.x"] {
            document.resources.insert(
                ResourceAddr::new("dev", "workload", "proxmox_vm", name),
                second.clone(),
            );
        }
        let bytes = encode(&document).unwrap();
        let Value::Object(mut envelope) = serde_json::from_slice(&bytes).unwrap() else {
            unreachable!()
        };
        let Some(Value::String(written)) = envelope.remove(CHECKSUM_KEY) else {
            unreachable!()
        };
        assert_eq!(written, checksum(&envelope));
        assert_eq!(decode(&bytes, "x").unwrap(), document);
        // The same address twice: the last record is the one read, and hashed.
        let text = String::from_utf8(bytes).unwrap();
        let first = "\"dev/workload/proxmox_vm.cp-1\": {";
        let doubled = text.replacen(
            first,
            &format!("{first}\"kind\": \"ignored\", \"provider\": \"p\", \"id\": null, \"attributes\": {{}}, \"status\": \"ready\"}},\n    {first}"),
            1,
        );
        assert_ne!(doubled, text);
        assert_eq!(decode(doubled.as_bytes(), "x").unwrap(), document);
    }

    /// The order of a record's attributes is kept and checked (a provider may render
    /// from it); the order of everything else is not.
    #[test]
    fn attributes_reordered_in_the_file_are_a_change() {
        let document = document();
        let text = String::from_utf8(encode(&document).unwrap()).unwrap();
        let mut value: Value = serde_json::from_str(&text).unwrap();
        let record = value["resources"]
            .as_object_mut()
            .unwrap()
            .values_mut()
            .next()
            .unwrap()
            .as_object_mut()
            .unwrap();
        // The record's own members reversed: still the same document.
        let reversed: Map<String, Value> = record.clone().into_iter().rev().collect();
        *record = reversed;
        let reordered = serde_json::to_string_pretty(&value).unwrap();
        assert_eq!(decode(reordered.as_bytes(), "x").unwrap(), document);
        // Its attributes sorted (as `jq -S` would): refused.
        let attributes = value["resources"]
            .as_object_mut()
            .unwrap()
            .values_mut()
            .next()
            .unwrap()["attributes"]
            .as_object_mut()
            .unwrap();
        let mut sorted: Vec<(String, Value)> = attributes.clone().into_iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let sorted: Map<String, Value> = sorted.into_iter().collect();
        assert_ne!(
            serde_json::to_string(&sorted).unwrap(),
            serde_json::to_string(attributes).unwrap()
        );
        *attributes = sorted;
        let resorted = serde_json::to_string_pretty(&value).unwrap();
        let error = decode(resorted.as_bytes(), "x").unwrap_err();
        assert!(error.to_string().contains("checksum mismatch"), "{error}");
    }

    #[test]
    fn newer_versions_are_refused_before_the_checksum_is_read() {
        let text = r#"{"format_version": 5, "checksum": "blake3:whatever"}"#;
        let error = decode(text.as_bytes(), "s.json").unwrap_err();
        assert!(
            matches!(
                error,
                Error::UnsupportedVersion {
                    found: 5,
                    supported: 4,
                    ..
                }
            ),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .contains("newer than this infraflux supports")
        );
    }

    #[test]
    fn unknown_old_versions_are_corrupt() {
        let mut envelope = Map::new();
        envelope.insert("format_version".into(), json!(0));
        let checksum = checksum(&envelope);
        envelope.insert(CHECKSUM_KEY.into(), json!(checksum));
        let text = serde_json::to_string(&envelope).unwrap();
        let error = decode(text.as_bytes(), "s.json").unwrap_err();
        assert!(
            error.to_string().contains("format version 0 is unknown"),
            "{error}"
        );
    }

    #[test]
    fn migrations_run_in_order_up_to_the_current_version() {
        // A pretend version 0 that called `serial` `generation`.
        fn rename_generation(
            mut envelope: Map<String, Value>,
        ) -> Result<Map<String, Value>, String> {
            let generation = envelope.remove("generation").ok_or("no `generation`")?;
            envelope.insert("serial".into(), generation);
            Ok(envelope)
        }
        // Before the real steps, whichever they are.
        let steps: Vec<Migration> = std::iter::once(Migration {
            from: 0,
            migrate: rename_generation,
        })
        .chain(MIGRATIONS.iter().copied())
        .collect();
        let mut v0 = Map::new();
        v0.insert("format_version".into(), json!(0));
        v0.insert("generation".into(), json!(7));
        let v1 = migrate_with(v0.clone(), 0, &steps).unwrap();
        assert_eq!(v1.get("serial"), Some(&json!(7)));
        assert_eq!(v1.get("format_version"), Some(&json!(FORMAT_VERSION)));
        assert!(!v1.contains_key("generation"));
        v0.remove("generation");
        let error = migrate_with(v0, 0, &steps).unwrap_err();
        assert!(
            error.contains("from format version 0: no `generation`"),
            "{error}"
        );
        // The current version needs no step.
        let current = Map::new();
        assert_eq!(
            migrate_with(current.clone(), FORMAT_VERSION, &[]).unwrap(),
            current
        );
    }

    #[test]
    fn a_version_1_document_loads_with_no_identities_recorded() {
        let original = document();
        let mut envelope = match serde_json::to_value(&original).unwrap() {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        envelope.remove("machines");
        envelope.insert("format_version".into(), json!(1));
        // As version 1 wrote it: a SHA-256 checksum.
        let sum = sha256_checksum(&envelope);
        envelope.insert(CHECKSUM_KEY.into(), json!(sum));
        let loaded = decode(
            serde_json::to_string(&envelope).unwrap().as_bytes(),
            "s.json",
        )
        .unwrap();
        assert_eq!(loaded, original);
        assert!(loaded.machines.is_empty());
        // Written back in the current version.
        let written: Value = serde_json::from_slice(&encode(&loaded).unwrap()).unwrap();
        assert_eq!(written["format_version"], json!(FORMAT_VERSION));
    }

    #[test]
    fn a_sha256_checksum_from_before_version_3_is_verified_and_written_anew() {
        let original = document();
        let mut envelope = match serde_json::to_value(&original).unwrap() {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        envelope.insert("format_version".into(), json!(2));
        let sum = sha256_checksum(&envelope);
        assert!(sum.starts_with("sha256:") && sum.len() == 7 + 64);
        let mut tampered = envelope.clone();
        envelope.insert(CHECKSUM_KEY.into(), json!(sum));
        let text = serde_json::to_string(&envelope).unwrap();
        assert_eq!(decode(text.as_bytes(), "s.json").unwrap(), original);
        tampered.insert("serial".into(), json!(original.serial + 1));
        tampered.insert(CHECKSUM_KEY.into(), json!(sum));
        let error = decode(
            serde_json::to_string(&tampered).unwrap().as_bytes(),
            "s.json",
        )
        .unwrap_err();
        assert!(error.to_string().contains("checksum mismatch"), "{error}");
        // An XXH3 checksum is not mistaken for one: the same document with its digest
        // under the other name is refused.
        let mut renamed = envelope.clone();
        let digest = checksum(&{
            let mut e = envelope.clone();
            e.remove(CHECKSUM_KEY);
            e
        });
        renamed.insert(
            CHECKSUM_KEY.into(),
            json!(digest.replace("xxh3-128:", "sha256:")),
        );
        assert!(
            decode(
                serde_json::to_string(&renamed).unwrap().as_bytes(),
                "s.json"
            )
            .is_err()
        );
        // Written back with XXH3.
        let written: Value = serde_json::from_slice(&encode(&original).unwrap()).unwrap();
        let written = written[CHECKSUM_KEY].as_str().unwrap();
        assert!(
            written.starts_with("xxh3-128:") && written.len() == 9 + 32,
            "{written}"
        );
    }

    /// A version-3 file (attributes hashed in place) is verified as that version
    /// defined its checksum, and its attributes are checked as they are: the digests of
    /// version 4 do not stand in for them. Written back, it is version 4.
    #[test]
    fn a_version_3_checksum_is_verified_with_the_attributes_in_place() {
        let original = document();
        let mut envelope = match serde_json::to_value(&original).unwrap() {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        envelope.insert("format_version".into(), json!(3));
        let sum = version_3_checksum(&envelope);
        assert_ne!(sum, checksum(&envelope), "the definitions differ");
        let mut signed = envelope.clone();
        signed.insert(CHECKSUM_KEY.into(), json!(sum));
        let text = serde_json::to_string_pretty(&signed).unwrap();
        assert_eq!(decode(text.as_bytes(), "s.json").unwrap(), original);
        // An attribute changed: refused, as it was by version 3.
        let tampered = text.replace("\"cores\": 4", "\"cores\": 5");
        assert_ne!(tampered, text);
        let error = decode(tampered.as_bytes(), "s.json").unwrap_err();
        assert!(error.to_string().contains("checksum mismatch"), "{error}");
        // Version 4's checksum on a version-3 file: refused.
        signed.insert(CHECKSUM_KEY.into(), json!(checksum(&envelope)));
        let error =
            decode(serde_json::to_string(&signed).unwrap().as_bytes(), "s.json").unwrap_err();
        assert!(error.to_string().contains("checksum mismatch"), "{error}");
        // Written back in the current version, with its checksum.
        let written: Value = serde_json::from_slice(&encode(&original).unwrap()).unwrap();
        assert_eq!(written["format_version"], json!(FORMAT_VERSION));
        let mut unsigned = written.as_object().unwrap().clone();
        let stored = unsigned.remove(CHECKSUM_KEY).unwrap();
        assert_eq!(stored, json!(checksum(&unsigned)));
    }

    /// Resources are read one by one (their attributes moved, not rebuilt); what does
    /// not match the format is still refused, and every field read as the derive reads it.
    #[test]
    fn resources_that_do_not_match_the_format_are_refused_one_by_one() {
        let original = document();
        let valid = serde_json::to_value(&original).unwrap();
        let address = original.resources.keys().next().unwrap().to_string();
        // Signed as the current version does, or as version 3 did (each record's
        // attributes hashed in place: a record that does not read still enters the
        // checksum whole).
        let signed_as = |version: u32, damage: &dyn Fn(&mut Value)| {
            let mut envelope = valid.clone();
            damage(&mut envelope);
            let Value::Object(mut envelope) = envelope else {
                unreachable!()
            };
            let sum = if version == 3 {
                envelope.insert("format_version".into(), json!(3));
                version_3_checksum(&envelope)
            } else {
                checksum(&envelope)
            };
            envelope.insert(CHECKSUM_KEY.into(), json!(sum));
            decode(
                serde_json::to_string(&envelope).unwrap().as_bytes(),
                "s.json",
            )
        };
        let damaged = |damage: &dyn Fn(&mut Value)| {
            let current = signed_as(FORMAT_VERSION, damage);
            let version_3 = signed_as(3, damage);
            assert_eq!(
                current.as_ref().map_err(ToString::to_string),
                version_3.as_ref().map_err(ToString::to_string)
            );
            current
        };
        assert_eq!(damaged(&|_| {}).unwrap(), original);
        type Damage<'a> = dyn Fn(&mut Value) + 'a;
        let refusals: [(&str, &Damage<'_>); 6] = [
            ("attributes not a map", &|v| {
                v["resources"][&address]["attributes"] = json!([1])
            }),
            ("attributes missing", &|v| {
                v["resources"][&address]
                    .as_object_mut()
                    .unwrap()
                    .remove("attributes");
            }),
            ("kind missing", &|v| {
                v["resources"][&address]
                    .as_object_mut()
                    .unwrap()
                    .remove("kind");
            }),
            ("resource not a map", &|v| {
                v["resources"][&address] = json!("x")
            }),
            ("address unreadable", &|v| {
                let resource = v["resources"][&address].clone();
                v["resources"] = json!({"not an address": resource});
            }),
            ("resources not a map", &|v| v["resources"] = json!([])),
        ];
        for (what, damage) in refusals {
            let error = damaged(damage).unwrap_err();
            assert!(
                matches!(&error, Error::Corrupt { reason, source: Some(_), .. } if reason.contains("do not match the state format")),
                "{what}: {error}"
            );
        }
    }

    /// Records are read on several threads, but what is reported is as on one: of two
    /// bad records, the first in key order; a bad record at an address given again
    /// later is the later one's to answer for.
    #[test]
    fn of_several_bad_records_the_first_in_key_order_is_refused() {
        let mut original = document();
        let first = original.resources.keys().next().unwrap().clone();
        let second = ResourceAddr::new("dev", "workload", "proxmox_vm", "cp-2");
        let record = original.resources[&first].clone();
        original.resources.insert(second.clone(), record);
        // The records in file order (an address may come twice), signed as what they
        // read as (the last record of each address).
        let signed = |records: &[(&ResourceAddr, Value)]| {
            let mut envelope = match serde_json::to_value(&original).unwrap() {
                Value::Object(map) => map,
                _ => unreachable!(),
            };
            let read: Map<String, Value> = records
                .iter()
                .map(|(address, fields)| (address.to_string(), fields.clone()))
                .collect();
            envelope.insert("resources".into(), Value::Object(read.clone()));
            envelope.insert(CHECKSUM_KEY.into(), json!(checksum(&envelope)));
            let in_file: Vec<String> = records
                .iter()
                .map(|(address, fields)| format!("{}:{fields}", json!(address.to_string())))
                .collect();
            serde_json::to_string(&envelope).unwrap().replace(
                &serde_json::to_string(&Value::Object(read)).unwrap(),
                &format!("{{{}}}", in_file.join(",")),
            )
        };
        let good =
            |address: &ResourceAddr| serde_json::to_value(&original.resources[address]).unwrap();
        let bad = |address: &ResourceAddr, missing: &str| {
            let mut fields = good(address);
            fields.as_object_mut().unwrap().remove(missing);
            fields
        };
        // The second address's record comes first in the file; the first address's
        // error is the one told.
        let text = signed(&[
            (&second, bad(&second, "provider")),
            (&first, bad(&first, "kind")),
        ]);
        let error = decode(text.as_bytes(), "s.json").unwrap_err();
        let Error::Corrupt {
            source: Some(source),
            ..
        } = &error
        else {
            panic!("{error}")
        };
        assert!(source.to_string().contains("`kind`"), "{source}");
        // A bad record given again, good, later: the document reads.
        let text = signed(&[
            (&first, bad(&first, "kind")),
            (&second, good(&second)),
            (&first, good(&first)),
        ]);
        assert!(text.matches("cp-1").count() >= 2, "{text}");
        assert_eq!(decode(text.as_bytes(), "s.json").unwrap(), original);
    }

    #[test]
    fn malformed_files_are_corrupt_with_a_reason() {
        for (text, reason) in [
            ("", "empty"),
            ("{\"format_version\": 1, \"serial\"", "not valid JSON"),
            ("[1]", "not a JSON object"),
            ("{\"serial\": 1}", "format_version"),
            ("{\"format_version\": 1}", "`checksum` is missing"),
            (
                "{\"format_version\": 1, \"checksum\": \"md5:x\"}",
                "unknown checksum algorithm",
            ),
        ] {
            let error = decode(text.as_bytes(), "s.json").unwrap_err();
            assert!(
                matches!(&error, Error::Corrupt { reason: r, .. } if r.contains(reason)),
                "{text}: {error}"
            );
        }
        // Valid checksum over something that is not a state document.
        let mut envelope = Map::new();
        envelope.insert("format_version".into(), json!(1));
        envelope.insert("serial".into(), json!("seven"));
        let sum = checksum(&envelope);
        envelope.insert(CHECKSUM_KEY.into(), json!(sum));
        let error = decode(
            serde_json::to_string(&envelope).unwrap().as_bytes(),
            "s.json",
        )
        .unwrap_err();
        assert!(
            matches!(&error, Error::Corrupt { reason, source: Some(_), .. } if reason.contains("do not match the state format")),
            "{error}"
        );
    }
}
