//! What the tiler can be invoked with, parsed into typed work: SQS batches whose
//! bodies are S3 notifications (or the tiler's own continuation messages), and plain
//! S3 events (direct trigger or a manual `cargo lambda invoke`).

use aws_lambda_events::event::sqs::SqsEvent;
use percent_encoding::percent_decode_str;
use serde::Deserialize;
pub use sphinx_core::ingest::{Continuation, CONTINUATION_VERSION};

/// `eventSource` of an SQS record.
const SQS_SOURCE: &str = "aws:sqs";
/// `eventSource` of an S3 record.
const S3_SOURCE: &str = "aws:s3";
/// `Event` of the test message S3 sends when a notification is configured.
const S3_TEST_EVENT: &str = "s3:TestEvent";

/// A payload the tiler cannot use.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("invocation payload is neither an SQS nor an S3 event: {0}")]
    UnknownPayload(String),
    #[error(
        "message body is neither an S3 notification, an S3 test event nor a continuation: {0}"
    )]
    UnknownBody(String),
    #[error("S3 record without {0}")]
    MissingField(&'static str),
    #[error("object key {0:?} is not valid URL-encoded UTF-8")]
    BadKey(String),
}

/// One uploaded object named by an S3 notification record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    /// The decoded key (`my+scan.pdf` in the notification is `my scan.pdf`).
    pub key: String,
}

/// What one ingest-queue message asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum IngestMessage {
    /// Objects created (usually one per message).
    Uploads(Vec<ObjectRef>),
    /// The test event S3 sends on setup: acknowledged and ignored.
    TestEvent,
    /// Later pages of a long document.
    Continuation(Continuation),
}

/// One SQS message of a batch, with its id for `batchItemFailures`.
#[derive(Clone, Debug)]
pub struct SqsItem {
    pub message_id: String,
    pub body: String,
}

/// A whole invocation payload.
#[derive(Debug)]
pub enum Invocation {
    Sqs(Vec<SqsItem>),
    S3(Vec<ObjectRef>),
}

impl Invocation {
    /// Tells an SQS batch from a plain S3 event by the records' `eventSource`.
    pub fn parse(payload: serde_json::Value) -> Result<Self, EventError> {
        let source = payload
            .get("Records")
            .and_then(|r| r.get(0))
            .and_then(|r| r.get("eventSource"))
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .to_string();
        match source.as_str() {
            SQS_SOURCE => {
                let event: SqsEvent = serde_json::from_value(payload)
                    .map_err(|e| EventError::UnknownPayload(e.to_string()))?;
                Ok(Invocation::Sqs(
                    event
                        .records
                        .into_iter()
                        .map(|m| SqsItem {
                            message_id: m.message_id.unwrap_or_default(),
                            body: m.body.unwrap_or_default(),
                        })
                        .collect(),
                ))
            }
            S3_SOURCE => {
                let event: S3Event = serde_json::from_value(payload)
                    .map_err(|e| EventError::UnknownPayload(e.to_string()))?;
                Ok(Invocation::S3(objects(event)?))
            }
            _ => Err(EventError::UnknownPayload(short(&payload.to_string()))),
        }
    }
}

/// Parses the body of an ingest-queue message.
pub fn parse_body(body: &str) -> Result<IngestMessage, EventError> {
    let value: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| EventError::UnknownBody(format!("{e}: {}", short(body))))?;
    if value.get("Event").and_then(|e| e.as_str()) == Some(S3_TEST_EVENT) {
        return Ok(IngestMessage::TestEvent);
    }
    if value.get("sphinx_continuation").is_some() {
        let c: Continuation =
            serde_json::from_value(value).map_err(|e| EventError::UnknownBody(e.to_string()))?;
        if c.sphinx_continuation != CONTINUATION_VERSION {
            return Err(EventError::UnknownBody(format!(
                "continuation schema version {} (this build reads {CONTINUATION_VERSION})",
                c.sphinx_continuation
            )));
        }
        return Ok(IngestMessage::Continuation(c));
    }
    if value.get("Records").is_some() {
        let event: S3Event =
            serde_json::from_value(value).map_err(|e| EventError::UnknownBody(e.to_string()))?;
        return Ok(IngestMessage::Uploads(objects(event)?));
    }
    Err(EventError::UnknownBody(short(body)))
}

/// The part of an S3 event notification the tiler reads. Parsed leniently (only
/// bucket and key are required) so S3-compatible stores' notifications work too.
#[derive(Debug, Deserialize)]
struct S3Event {
    #[serde(rename = "Records")]
    records: Vec<S3Record>,
}

#[derive(Debug, Deserialize)]
struct S3Record {
    s3: Option<S3Entity>,
}

#[derive(Debug, Deserialize)]
struct S3Entity {
    bucket: Option<Named>,
    object: Option<Keyed>,
}

#[derive(Debug, Deserialize)]
struct Named {
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Keyed {
    key: Option<String>,
}

fn objects(event: S3Event) -> Result<Vec<ObjectRef>, EventError> {
    event
        .records
        .into_iter()
        .map(|r| {
            let s3 = r.s3.ok_or(EventError::MissingField("s3"))?;
            let bucket = s3
                .bucket
                .and_then(|b| b.name)
                .ok_or(EventError::MissingField("s3.bucket.name"))?;
            let raw = s3
                .object
                .and_then(|o| o.key)
                .ok_or(EventError::MissingField("s3.object.key"))?;
            Ok(ObjectRef {
                bucket,
                key: decode_key(&raw)?,
            })
        })
        .collect()
}

/// Decodes a key as S3 notifications encode it: form encoding, `+` for space.
pub fn decode_key(raw: &str) -> Result<String, EventError> {
    percent_decode_str(&raw.replace('+', " "))
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| EventError::BadKey(raw.to_string()))
}

fn short(s: &str) -> String {
    /// Enough of a bad payload to recognise it in a log line.
    const SHOWN: usize = 200;
    s.chars().take(SHOWN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sphinx_core::job::Task;

    #[test]
    fn keys_are_form_decoded() {
        assert_eq!(
            decode_key("inbox/my+scan%281%29.pdf").unwrap(),
            "inbox/my scan(1).pdf"
        );
        assert_eq!(decode_key("inbox/a%2Bb.pdf").unwrap(), "inbox/a+b.pdf");
        assert_eq!(decode_key("inbox/caf%C3%A9.pdf").unwrap(), "inbox/café.pdf");
        assert!(decode_key("inbox/%FF.pdf").is_err());
    }

    #[test]
    fn bodies_are_recognised() {
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-26T00:00:00.000Z","Bucket":"b","RequestId":"r","HostId":"h"}"#;
        assert_eq!(parse_body(test).unwrap(), IngestMessage::TestEvent);
        assert!(matches!(
            parse_body("not json"),
            Err(EventError::UnknownBody(_))
        ));
        assert!(matches!(
            parse_body(r#"{"hello":1}"#),
            Err(EventError::UnknownBody(_))
        ));
        let c = Continuation {
            sphinx_continuation: CONTINUATION_VERSION,
            bucket: "b".into(),
            key: "inbox/a.pdf".into(),
            doc_id: "d".into(),
            start: 2,
            end: 4,
            page_count: 4,
            tasks: vec![Task::Ocr],
        };
        let body = serde_json::to_string(&c).unwrap();
        assert_eq!(parse_body(&body).unwrap(), IngestMessage::Continuation(c));
    }
}
