//! `heat-pipeline publish`: reading Heat results from files and publishing them.

use std::time::{SystemTime, UNIX_EPOCH};

use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use serde::de::IgnoredAny;

use crate::amqp::{self, PublishError, Topology};
use crate::message::HeatResult;
use crate::stages::StageName;

/// One JSON document of an input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// `file:line` of the document's first byte, for error messages.
    pub origin: String,
    /// The document's bytes exactly as in the file.
    pub body: Vec<u8>,
}

/// Why an input file could not be published.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{origin}: invalid JSON: {detail}")]
    Syntax { origin: String, detail: String },
    #[error("{origin}: not a Heat result: {detail}")]
    Invalid { origin: String, detail: String },
    #[error("{file}: no JSON document found")]
    Empty { file: String },
}

/// Splits `content` into its JSON documents: one document, or several one after another
/// (JSON lines). The bytes of each are kept as they are, so numbers and key order reach the
/// pipeline untouched.
pub fn split_documents(file: &str, content: &[u8]) -> Result<Vec<Document>, InputError> {
    let mut documents = Vec::new();
    let mut stream = serde_json::Deserializer::from_slice(content).into_iter::<IgnoredAny>();
    // The line of each document's first byte, counted on from the previous document's (a
    // count from the file's start for each would make a large JSON-lines file quadratic).
    let mut line = Line::default();
    loop {
        let start = stream.byte_offset();
        match stream.next() {
            None => break,
            Some(Ok(_)) => {
                let end = stream.byte_offset();
                let skipped = content[start..end]
                    .iter()
                    .take_while(|b| b.is_ascii_whitespace())
                    .count();
                let begin = start + skipped;
                documents.push(Document {
                    origin: format!("{file}:{}", line.at(content, begin)),
                    body: content[begin..end].to_vec(),
                });
            }
            Some(Err(e)) => {
                return Err(InputError::Syntax {
                    origin: format!("{file}:{}", e.line()),
                    detail: e.to_string(),
                })
            }
        }
    }
    if documents.is_empty() {
        return Err(InputError::Empty {
            file: file.to_string(),
        });
    }
    Ok(documents)
}

/// A line count that moves forward through one file.
#[derive(Default)]
struct Line {
    offset: usize,
    newlines: usize,
}

impl Line {
    /// The line (from 1) of the byte at `offset`, which is at or after the last one asked.
    fn at(&mut self, content: &[u8], offset: usize) -> usize {
        self.newlines += content[self.offset..offset]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        self.offset = offset;
        self.newlines + 1
    }
}

/// Checks that each document is a Heat result the capture stage will accept.
pub fn validate(documents: &[Document]) -> Result<(), InputError> {
    for document in documents {
        HeatResult::decode(&document.body).map_err(|r| InputError::Invalid {
            origin: document.origin.clone(),
            detail: r.to_string(),
        })?;
    }
    Ok(())
}

/// Publishes `documents` to the input exchange, persistent and mandatory, and waits for
/// every confirm. Returns how many the broker confirmed; `on_confirmed` is told each time one
/// more is (the command's progress bar).
pub async fn publish(
    url: &amqp::AmqpConfig,
    topology: &Topology,
    documents: &[Document],
    mut on_confirmed: impl FnMut(usize),
) -> Result<usize, PublishError> {
    let (connection, _node) = amqp::connect(url, "publish").await?;
    let channel = amqp::confirm_channel(&connection).await?;
    topology.declare(&channel).await?;
    let mut confirmed = 0;
    for document in documents {
        amqp::publish_confirmed(
            &channel,
            topology.input_exchange(),
            StageName::Capture.routing_key(),
            &document.body,
            input_properties(),
        )
        .await?;
        confirmed += 1;
        on_confirmed(confirmed);
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(confirmed)
}

/// Properties of an input message: JSON, and the publish time (ms since the epoch) from
/// which end-to-end latency is measured.
pub fn input_properties() -> BasicProperties {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut headers = FieldTable::default();
    headers.insert("x-published-at-ms".into(), AMQPValue::LongLongInt(now_ms));
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_timestamp(now_ms as u64 / 1000)
        .with_headers(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_one_pretty_document_and_json_lines() {
        let pretty = b"{\n  \"a\": 1\n}\n";
        let docs = split_documents("f.json", pretty).unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].body, b"{\n  \"a\": 1\n}");

        let lines = b"{\"a\": 1}\n\n{\"b\": 2.50}\n";
        let docs = split_documents("f.jsonl", lines).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].body, b"{\"b\": 2.50}");
        assert_eq!(docs[1].origin, "f.jsonl:3");
    }

    #[test]
    fn each_document_is_named_by_its_first_line() {
        let content = b"{\n  \"a\": 1\n}\n\n  {\"b\":\n2}{\"c\": 3}\n\n\n{\"d\": 4}";
        let origins: Vec<String> = split_documents("f", content)
            .unwrap()
            .into_iter()
            .map(|d| d.origin)
            .collect();
        assert_eq!(origins, ["f:1", "f:5", "f:6", "f:9"]);
    }

    #[test]
    fn names_the_file_and_line_of_bad_json() {
        let err = split_documents("in.jsonl", b"{\"a\": 1}\n{\"b\": }\n").unwrap_err();
        assert!(
            err.to_string().starts_with("in.jsonl:2: invalid JSON"),
            "{err}"
        );
        assert!(matches!(
            split_documents("e", b"  \n"),
            Err(InputError::Empty { .. })
        ));
    }

    #[test]
    fn validation_names_the_document() {
        let docs = split_documents("x.jsonl", b"{\"job\": 1}\n").unwrap();
        let err = validate(&docs).unwrap_err().to_string();
        assert!(
            err.starts_with("x.jsonl:1: not a Heat result: invalid_message: job"),
            "{err}"
        );
    }
}
