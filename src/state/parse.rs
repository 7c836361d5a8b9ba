//! JSON text → [`serde_json::Value`], with every object built at its final size.
//!
//! `serde_json`'s own parser inserts an object's members one by one into a map that
//! starts empty (JSON does not say how many members follow): a state record's twenty
//! attributes grow its map four times, each time moving its members and rehashing its
//! index. At fleet scale that growth was a tenth of reading the state (issue 15). Here
//! the members are gathered first and the map is made once, at its size. The values
//! are the same as `serde_json::from_slice`'s (a property test holds them to it).
//!
//! A state document's records are parsed on every core, and each record's attributes
//! turned into the text the document holds them as ([`StoredAttributes`]) right there:
//! a fleet's state is never held parsed whole.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

use super::StoredAttributes;

/// Parse `bytes` as one JSON value, as `serde_json::from_slice` would.
pub fn from_slice(bytes: &[u8]) -> serde_json::Result<Value> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = ValueSeed.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// A state document as parsed: its records apart, each as the thread that parsed it
/// made it (from a [`ParsedRecord`]).
#[derive(Debug)]
pub struct ParsedState<R> {
    /// The top-level members but `resources` (which stays here when it is not an
    /// object).
    pub header: Map<String, Value>,
    /// The members of `resources`, in file order (a repeated address more than once).
    pub records: Option<Vec<(String, R)>>,
}

/// One record of a state document.
#[derive(Debug)]
pub struct ParsedRecord {
    /// The record without its attributes (or with them, when they are not an object).
    pub fields: Value,
    /// The attributes, when they are an object.
    pub attributes: Option<StoredAttributes>,
}

/// A state document's text parsed: `None` when it is JSON but not an object. The
/// records (the members of the top-level object's `resources`) are parsed on up to
/// `threads` threads. Each is first only scanned where it stands in the file, so a
/// syntax error is reported at its line and column; then each record's text is parsed
/// on its own, its attributes made [`StoredAttributes`], and the record handed to
/// `prepare` (with its key) there: what the reader does with each record is done on
/// every core too.
pub fn state_from_slice<R, F>(
    bytes: &[u8],
    threads: usize,
    prepare: F,
) -> serde_json::Result<Option<ParsedState<R>>>
where
    R: Send,
    F: Fn(&str, ParsedRecord) -> R + Sync,
{
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let state = deserializer.deserialize_any(StateVisitor(Reading {
        threads,
        prepare: &prepare,
    }))?;
    deserializer.end()?;
    Ok(state)
}

/// Fewer records than this are parsed on one thread.
const RECORDS_WORTH_THREADS: usize = 1024;

/// From this many records on, the threads take short runs of them in turn
/// ([`crate::cores::map_runs_balanced`]) rather than one run each: at 100,000 records
/// that took 0.2 s off the parse (the threads finish together) for 10 MiB more peak
/// memory; at 10,000 it saved about 10 ms, and 4 plans in 10 peaked 7 MiB higher.
const RECORDS_BALANCED: usize = 32 * 1024;

struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        // JSON text has no NaN or infinity: every float it holds is a number.
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(ValueSeed)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut members: Vec<(String, Value)> = Vec::new();
        while let Some(key) = access.next_key::<String>()? {
            let value = access.next_value_seed(ValueSeed)?;
            members.push((key, value));
        }
        let mut map = Map::with_capacity(members.len());
        // A repeated key keeps its first place and its last value, as serde_json does.
        map.extend(members);
        Ok(Value::Object(map))
    }
}

/// Forwards every kind of value but an object to [`ValueVisitor`], and says what it made.
macro_rules! forward_to_value {
    ($wrap:expr) => {
        fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<Self::Value, E> {
            ValueVisitor.visit_bool(value).map($wrap)
        }
        fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Self::Value, E> {
            ValueVisitor.visit_i64(value).map($wrap)
        }
        fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Self::Value, E> {
            ValueVisitor.visit_u64(value).map($wrap)
        }
        fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Self::Value, E> {
            ValueVisitor.visit_f64(value).map($wrap)
        }
        fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Self::Value, E> {
            ValueVisitor.visit_str(value).map($wrap)
        }
        fn visit_string<E: serde::de::Error>(self, value: String) -> Result<Self::Value, E> {
            ValueVisitor.visit_string(value).map($wrap)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            ValueVisitor.visit_unit().map($wrap)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            ValueVisitor.visit_none().map($wrap)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            ValueVisitor.visit_seq(seq).map($wrap)
        }
    };
}

/// How a document's records are read: on up to `threads` threads, each record handed
/// to `prepare`.
struct Reading<'p, F> {
    threads: usize,
    prepare: &'p F,
}

impl<F> Clone for Reading<'_, F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F> Copy for Reading<'_, F> {}

/// The top level of a state document.
struct StateVisitor<'p, F>(Reading<'p, F>);

impl<'de, R, F> Visitor<'de> for StateVisitor<'_, F>
where
    R: Send,
    F: Fn(&str, ParsedRecord) -> R + Sync,
{
    type Value = Option<ParsedState<R>>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a state document")
    }

    forward_to_value!(|_| None);

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut members: Vec<(String, Value)> = Vec::new();
        let mut records = None;
        while let Some(key) = access.next_key::<String>()? {
            if key == "resources" {
                match access.next_value_seed(ResourcesSeed(self.0))? {
                    Resources::Records(parsed) => records = Some(parsed),
                    Resources::Other(value) => {
                        records = None;
                        members.push((key, value));
                    }
                }
                continue;
            }
            members.push((key, access.next_value_seed(ValueSeed)?));
        }
        if records.is_some() {
            // The last `resources` wins, as for any repeated key.
            members.retain(|(key, _)| key != "resources");
        }
        let mut header = Map::with_capacity(members.len());
        header.extend(members);
        Ok(Some(ParsedState { header, records }))
    }
}

enum Resources<R> {
    Records(Vec<(String, R)>),
    /// Not an object: the document is refused when read (`format`).
    Other(Value),
}

struct ResourcesSeed<'p, F>(Reading<'p, F>);

impl<'de, R, F> DeserializeSeed<'de> for ResourcesSeed<'_, F>
where
    R: Send,
    F: Fn(&str, ParsedRecord) -> R + Sync,
{
    type Value = Resources<R>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Resources<R>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, R, F> Visitor<'de> for ResourcesSeed<'_, F>
where
    R: Send,
    F: Fn(&str, ParsedRecord) -> R + Sync,
{
    type Value = Resources<R>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a state's resources")
    }

    forward_to_value!(Resources::Other);

    fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Resources<R>, A::Error> {
        records(access, self.0.threads, self.0.prepare).map(Resources::Records)
    }
}

/// A state's records: scanned here, in the file, then parsed and prepared on up to
/// `threads` threads, one record at a time each.
fn records<'de, A, R, F>(
    mut access: A,
    threads: usize,
    prepare: &F,
) -> Result<Vec<(String, R)>, A::Error>
where
    A: MapAccess<'de>,
    R: Send,
    F: Fn(&str, ParsedRecord) -> R + Sync,
{
    let mut scanned: Vec<(String, &'de RawValue)> = Vec::new();
    while let Some(key) = access.next_key::<String>()? {
        scanned.push((key, access.next_value::<&'de RawValue>()?));
    }
    let threads = if scanned.len() < RECORDS_WORTH_THREADS {
        1
    } else {
        threads
    };
    let work = |run: &[(String, &RawValue)]| {
        run.iter()
            .map(|(key, text)| parse_record(text.get()).map(|parsed| prepare(key, parsed)))
            .collect()
    };
    let parsed = if scanned.len() < RECORDS_BALANCED {
        crate::cores::map_runs(&scanned, threads, work)
    } else {
        crate::cores::map_runs_balanced(&scanned, threads, work)
    };
    let mut records = Vec::with_capacity(scanned.len());
    for ((key, _), parsed) in scanned.into_iter().zip(parsed) {
        // The text was scanned as JSON already: a record parses.
        records.push((key, parsed.map_err(serde::de::Error::custom)?));
    }
    Ok(records)
}

/// One record's text parsed: its members but the attributes into values, the attributes
/// (an object) straight into their compact text ([`StoredAttributes::from_text`]),
/// never built as values here.
fn parse_record(text: &str) -> serde_json::Result<ParsedRecord> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = deserializer.deserialize_any(RecordVisitor)?;
    deserializer.end()?;
    match parsed {
        Some((fields, attributes)) => Ok(ParsedRecord {
            fields: Value::Object(fields),
            attributes: Some(StoredAttributes::from_text(attributes.get())?),
        }),
        // Not an object, attributes missing, given twice or not an object: split as
        // the whole value says.
        None => from_slice(text.as_bytes()).map(record),
    }
}

/// A record whose attributes are given once, as an object: its other members, and the
/// attributes' text.
struct RecordVisitor;

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = Option<(Map<String, Value>, &'de RawValue)>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a state record")
    }

    forward_to_value!(|_| None);

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut members: Vec<(String, Value)> = Vec::new();
        let mut attributes: Option<&'de RawValue> = None;
        let mut once = true;
        while let Some(key) = access.next_key::<String>()? {
            if key == "attributes" {
                once &= attributes.is_none();
                attributes = Some(access.next_value()?);
            } else {
                members.push((key, access.next_value_seed(ValueSeed)?));
            }
        }
        let Some(attributes) = attributes.filter(|a| once && a.get().starts_with('{')) else {
            return Ok(None);
        };
        let mut fields = Map::with_capacity(members.len());
        // A repeated key keeps its first place and its last value, as serde_json does.
        fields.extend(members);
        Ok(Some((fields, attributes)))
    }
}

/// A record's value split: its attributes held as text, the rest as it is.
pub(super) fn record(mut fields: Value) -> ParsedRecord {
    let mut attributes = None;
    if let Value::Object(members) = &mut fields
        && let Some(Value::Object(found)) = members.get("attributes")
    {
        attributes = Some(StoredAttributes::new(found));
        members.remove("attributes");
    }
    ParsedRecord { fields, attributes }
}

#[cfg(test)]
pub(super) mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Any JSON value: strings and keys drawn from the regular expressions given.
    pub(in crate::state) fn json_values(
        strings: &'static str,
        keys: &'static str,
    ) -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1000i64..1000).prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            strings.prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::vec((keys, inner), 0..10)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn parses_what_serde_json_parses_to_the_same_value_in_the_same_order(value in json_values(".{0,12}", "[a-e]{0,3}")) {
            for text in [serde_json::to_vec(&value).unwrap(), serde_json::to_vec_pretty(&value).unwrap()] {
                let ours = from_slice(&text).unwrap();
                let theirs: Value = serde_json::from_slice(&text).unwrap();
                prop_assert_eq!(&ours, &theirs);
                // Member order too (maps compare without it).
                prop_assert_eq!(serde_json::to_string(&ours).unwrap(), serde_json::to_string(&theirs).unwrap());
            }
        }
    }

    #[test]
    fn repeated_keys_and_bad_text_are_handled_as_serde_json_does() {
        let text = br#"{"a": 1, "b": 2, "a": 3}"#;
        let ours = from_slice(text).unwrap();
        let theirs: Value = serde_json::from_slice(text).unwrap();
        assert_eq!(
            serde_json::to_string(&ours).unwrap(),
            serde_json::to_string(&theirs).unwrap()
        );
        for bad in [&b"{"[..], b"[1,]", b"{} trailing", b"", b"nan"] {
            assert!(from_slice(bad).is_err(), "{:?}", std::str::from_utf8(bad));
        }
        // Deep nesting is refused, not a stack overflow.
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(from_slice(deep.as_bytes()).is_err());
    }

    /// A state with a fleet's records (more than one thread's worth, one key twice).
    fn state_text(records: usize) -> String {
        let mut resources: Vec<String> = (0..records)
            .map(|i| {
                format!(
                    r#""dev/c{i:04}/vm.n": {{"kind": "vm", "attributes": {{"cores": {i}, "name": "n\"{i}", "tags": [1.5, null, true], "nested": {{"b": 1, "a": 2}}}}}}"#
                )
            })
            .collect();
        resources.push(r#""dev/c0001/vm.n": {"kind": "again"}"#.to_string());
        format!(
            "{{\"format_version\": 3, \"resources\": {{\n{}\n}}, \"machines\": {{\"x\": 1}}}}",
            resources.join(",\n")
        )
    }

    fn as_parsed(_: &str, record: ParsedRecord) -> ParsedRecord {
        record
    }

    /// The document `parsed` holds, as one value (a repeated address's last record).
    fn as_value(parsed: ParsedState<ParsedRecord>) -> Value {
        let mut document = parsed.header;
        let mut resources = Map::new();
        for (address, record) in parsed.records.unwrap() {
            let mut fields = record.fields;
            if let Some(attributes) = record.attributes {
                fields["attributes"] = Value::Object(attributes.parse());
            }
            resources.insert(address, fields);
        }
        document.insert("resources".into(), Value::Object(resources));
        Value::Object(document)
    }

    #[test]
    fn a_states_records_parse_the_same_on_several_threads() {
        let text = state_text(3000);
        let alone = from_slice(text.as_bytes()).unwrap();
        for threads in [1, 2, 4] {
            let parsed = state_from_slice(text.as_bytes(), threads, as_parsed)
                .unwrap()
                .unwrap();
            let records = parsed.records.as_ref().unwrap();
            // Every record in file order, the repeated address twice.
            assert_eq!(records.len(), 3001);
            assert_eq!(records[1].0, "dev/c0001/vm.n");
            assert_eq!(records[3000].0, "dev/c0001/vm.n");
            // Attributes held as their text, in their order; a record without any keeps
            // none.
            assert_eq!(
                records[7].1.attributes.as_ref().unwrap().text(),
                r#"{"cores":7,"name":"n\"7","tags":[1.5,null,true],"nested":{"b":1,"a":2}}"#
            );
            assert!(records[3000].1.attributes.is_none());
            assert_eq!(as_value(parsed), alone);
        }
        // Enough records for short runs taken in turn: the same, in file order.
        let many = state_text(RECORDS_BALANCED);
        let parsed = state_from_slice(many.as_bytes(), 2, as_parsed)
            .unwrap()
            .unwrap();
        let keys: Vec<&str> = parsed
            .records
            .as_ref()
            .unwrap()
            .iter()
            .map(|(key, _)| key.as_str())
            .collect();
        assert_eq!(
            keys[RECORDS_BALANCED - 1],
            format!("dev/c{:04}/vm.n", RECORDS_BALANCED - 1)
        );
        assert_eq!(keys[RECORDS_BALANCED], "dev/c0001/vm.n");
        assert_eq!(as_value(parsed), from_slice(many.as_bytes()).unwrap());
        assert_eq!(alone["resources"]["dev/c0001/vm.n"]["kind"], "again");
        assert_eq!(alone["resources"].as_object().unwrap().len(), 3000);
        // Not an object, or resources that are not: told apart.
        assert!(
            state_from_slice(b"[1, {}]", 2, as_parsed)
                .unwrap()
                .is_none()
        );
        let odd = state_from_slice(br#"{"resources": [1], "serial": 2}"#, 2, as_parsed)
            .unwrap()
            .unwrap();
        assert!(odd.records.is_none());
        assert_eq!(odd.header["resources"], serde_json::json!([1]));
    }

    #[test]
    fn a_bad_record_is_reported_where_it_stands_in_the_file() {
        let text = state_text(2000).replace(
            r#""dev/c1500/vm.n": {"kind": "vm","#,
            r#""dev/c1500/vm.n": {"kind": "vm",,"#,
        );
        let alone = from_slice(text.as_bytes()).unwrap_err();
        let threaded = state_from_slice(text.as_bytes(), 2, as_parsed).unwrap_err();
        assert_eq!(threaded.to_string(), alone.to_string());
        assert_eq!(threaded.line(), 1502);
    }

    #[test]
    fn a_records_attributes_become_the_text_serde_json_writes_however_spelled() {
        for text in [
            // As InfraFlux writes it: compacted without parsing.
            "{\n  \"kind\": \"vm\",\n  \"attributes\": {\n    \"name\": \"cp \\\"1\\\"\",\n    \"cores\": 4,\n    \"tags\": [\n      \"a\"\n    ]\n  },\n  \"status\": \"ready\"\n}",
            // Spelled otherwise (a float, an escape, a repeated key): parsed and written.
            r#"{"kind": "vm", "attributes": {"ratio": 1.50, "name": "\u00e9\/", "a": 1, "a": 2}}"#,
            // Attributes given twice, or not an object: the record as the whole says.
            r#"{"attributes": {"a": 1}, "kind": "vm", "attributes": {"b": 2}}"#,
            r#"{"kind": "vm", "attributes": [1]}"#,
            r#"{"kind": "vm"}"#,
            r#"[1, 2]"#,
        ] {
            let ours = parse_record(text).unwrap();
            let whole = record(from_slice(text.as_bytes()).unwrap());
            assert_eq!(ours.fields, whole.fields, "{text}");
            assert_eq!(
                ours.attributes.as_ref().map(StoredAttributes::text),
                whole.attributes.as_ref().map(StoredAttributes::text),
                "{text}"
            );
        }
    }

    #[test]
    fn attributes_nested_past_serde_jsons_limit_are_refused_as_before() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let text = format!(r#"{{"kind": "vm", "attributes": {{"a": {deep}}}}}"#);
        assert!(from_slice(text.as_bytes()).is_err());
        assert!(parse_record(&text).is_err());
    }
}
