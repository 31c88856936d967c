//! Stored bytes are a protocol. A commit is one MessagePack record with named fields;
//! each event inside it is its own MessagePack document (named fields) tagged with its
//! type and schema version, so an old event can be upcast on read without touching
//! the rest of the commit. Each record holds the SHA-256 of the record before it: the
//! hash chain that makes the log tamper-evident.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use behalf_domain::{CommandId, Event, Principal, StreamId, Timestamp};

use crate::LogError;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The hash "before" the first commit.
pub const GENESIS: Hash = [0; 32];

/// Version of the commit record layout itself.
pub const RECORD_FORMAT: u16 = 1;

/// One event as stored: type, schema version and its own MessagePack document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema: u16,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// One commit as stored: every event of one command, atomically.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRecord {
    pub format: u16,
    pub position: u64,
    pub stream: StreamId,
    /// Stream version of the first event; the others follow densely.
    pub first_version: u64,
    pub command_id: CommandId,
    /// Digest of the request body, for R26's "same body" check.
    #[serde(with = "serde_bytes")]
    pub request_hash: Vec<u8>,
    pub at: Timestamp,
    pub actor: Principal,
    pub correlation_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    #[serde(with = "serde_bytes")]
    pub prev_hash: Vec<u8>,
    pub events: Vec<StoredEvent>,
}

/// SHA-256 of bytes.
pub fn sha256(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

/// Encodes one event with named fields.
pub fn encode_event(event: &Event) -> Result<StoredEvent, LogError> {
    Ok(StoredEvent {
        event_type: event.type_name().to_owned(),
        schema: current_schema(event.type_name()),
        payload: rmp_serde::to_vec_named(event)
            .map_err(|e| LogError::Codec(format!("encode {}: {e}", event.type_name())))?,
    })
}

/// An upcaster lifts one stored schema version of one event type to the next.
pub struct Upcaster {
    pub event_type: &'static str,
    pub from_schema: u16,
    pub upcast: fn(rmpv::Value) -> Result<rmpv::Value, String>,
}

/// Every upcaster of this build, oldest first. Empty while every type is at schema 1;
/// a breaking change to an event adds its upcaster here and freezes the old shape in a
/// golden fixture (`tests/golden/`).
pub const UPCASTERS: &[Upcaster] = &[];

/// Decodes a stored event, upcasting older schema versions through `upcasters`.
pub fn decode_event_with(stored: &StoredEvent, upcasters: &[Upcaster]) -> Result<Event, LogError> {
    let current = schema_in(&stored.event_type, upcasters);
    let what = || format!("{} v{}", stored.event_type, stored.schema);
    if stored.schema == current {
        return rmp_serde::from_slice(&stored.payload).map_err(|e| LogError::Codec(format!("decode {}: {e}", what())));
    }
    if stored.schema > current || stored.schema == 0 {
        return Err(LogError::Codec(format!("{} is not a schema this build knows (current {current})", what())));
    }
    let mut value: rmpv::Value =
        rmp_serde::from_slice(&stored.payload).map_err(|e| LogError::Codec(format!("decode {}: {e}", what())))?;
    for schema in stored.schema..current {
        let step = upcasters
            .iter()
            .find(|u| u.event_type == stored.event_type && u.from_schema == schema)
            .ok_or_else(|| LogError::Codec(format!("no upcaster for {} v{schema}", stored.event_type)))?;
        value = (step.upcast)(value)
            .map_err(|e| LogError::Codec(format!("upcast {} v{schema}: {e}", stored.event_type)))?;
    }
    rmpv::ext::from_value(value).map_err(|e| LogError::Codec(format!("decode upcast {}: {e}", what())))
}

/// Decodes a stored event with this build's upcasters.
pub fn decode_event(stored: &StoredEvent) -> Result<Event, LogError> {
    decode_event_with(stored, UPCASTERS)
}

fn schema_in(event_type: &str, upcasters: &[Upcaster]) -> u16 {
    1 + upcasters.iter().filter(|u| u.event_type == event_type).count() as u16
}

/// The schema version this build writes for an event type: 1 plus the number of
/// upcasters registered for it.
pub fn current_schema(event_type: &str) -> u16 {
    schema_in(event_type, UPCASTERS)
}

pub fn encode_record(record: &CommitRecord) -> Result<Vec<u8>, LogError> {
    rmp_serde::to_vec_named(record).map_err(|e| LogError::Codec(format!("encode commit {}: {e}", record.position)))
}

pub fn decode_record(bytes: &[u8]) -> Result<CommitRecord, LogError> {
    let r: CommitRecord = rmp_serde::from_slice(bytes).map_err(|e| LogError::Codec(format!("decode commit: {e}")))?;
    if r.format != RECORD_FORMAT {
        return Err(LogError::Codec(format!("unknown commit record format {}", r.format)));
    }
    if r.prev_hash.len() != 32 {
        return Err(LogError::Codec("commit record's previous hash is not 32 bytes".into()));
    }
    Ok(r)
}

/// Hex, for messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
