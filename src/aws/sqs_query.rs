//! SQS over the query protocol, which clients built before SQS's JSON protocol (boto3
//! before 1.34.90, the JavaScript SDK v2, older Java and .NET SDKs) still send: a form
//! is read into the JSON protocol's request, answered by the same handlers ([`super::sqs`]),
//! and the answer written back as the query protocol's XML. Nothing is answered here that
//! the JSON protocol does not answer.

use super::query::{Form, Xml, error_response};
use super::sqs::{self, SqsError};
use super::{Context, Door};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

const NAMESPACE: &str = "http://queue.amazonaws.com/doc/2012-11-05/";

/// Members that are integers in SQS's model; the JSON handlers want them as numbers.
const INTEGERS: [&str; 6] = [
    "DelaySeconds",
    "MaxNumberOfMessages",
    "VisibilityTimeout",
    "WaitTimeSeconds",
    "MaxResults",
    "MaxNumberOfMessagesPerSecond",
];

/// The flattened lists of SQS's query model and their JSON protocol names.
const LISTS: [(&str, &str); 4] = [
    ("AttributeName", "AttributeNames"),
    ("MessageAttributeName", "MessageAttributeNames"),
    ("MessageSystemAttributeName", "MessageSystemAttributeNames"),
    ("TagKey", "TagKeys"),
];

/// The flattened maps of SQS's query model of text to text: their name, the names of an
/// entry's key and value, and their JSON protocol name.
const MAPS: [(&str, &str, &str, &str); 2] = [
    ("Attribute", "Name", "Value", "Attributes"),
    ("Tag", "Key", "Value", "Tags"),
];

/// The batch entries' names in the query model.
const BATCH_ENTRIES: [&str; 3] = [
    "SendMessageBatchRequestEntry",
    "DeleteMessageBatchRequestEntry",
    "ChangeMessageVisibilityBatchRequestEntry",
];

/// Answers one SQS query-protocol request. `queue_url` is the URL the request was
/// POSTed to when that was a queue's own (older SDKs send a queue's requests there).
pub(super) async fn query(
    s: &Door<'_>,
    cx: &Context,
    form: &Form,
    queue_url: Option<String>,
) -> Response {
    let action = form.get("Action").unwrap_or_default();
    let mut request = request_json(form);
    if let Some(url) = queue_url {
        request.entry("QueueUrl").or_insert(Value::String(url));
    }
    match sqs::run(s, cx, action, sqs::Input::Value(Value::Object(request))).await {
        Ok(answer) => (
            [(header::CONTENT_TYPE, "text/xml")],
            answer_xml(action, &answer),
        )
            .into_response(),
        Err(e) => error_xml(e),
    }
}

pub(super) fn error_xml(e: SqsError) -> Response {
    let (status, code, message) = e.parts();
    let body = error_response(
        NAMESPACE,
        !status.is_server_error(),
        code,
        message,
        &uuid::Uuid::now_v7().to_string(),
    );
    (status, [(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

/// The JSON protocol's request for a query-protocol form.
fn request_json(form: &Form) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in form.scalars() {
        if key == "Action" || key == "Version" {
            continue;
        }
        let json = match value.parse::<u64>() {
            Ok(n) if INTEGERS.contains(&key) => Value::from(n),
            _ => Value::String(value.to_string()),
        };
        out.insert(key.to_string(), json);
    }
    for (query, key, value, json) in MAPS {
        let pairs: Map<String, Value> = form
            .map(query, key, value)
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        if !pairs.is_empty() {
            out.insert(json.into(), Value::Object(pairs));
        }
    }
    for (query, json) in LISTS {
        let items = form.list(query);
        if !items.is_empty() {
            out.insert(json.into(), items.into());
        }
    }
    let message_attributes: Map<String, Value> = form
        .structure_map("MessageAttribute")
        .into_iter()
        .map(|(name, value)| {
            let fields = value
                .scalars()
                .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                .collect();
            (name, Value::Object(fields))
        })
        .collect();
    if !message_attributes.is_empty() {
        out.insert(
            "MessageAttributes".into(),
            Value::Object(message_attributes),
        );
    }
    for prefix in BATCH_ENTRIES {
        let entries: Vec<Value> = form
            .structures(prefix)
            .iter()
            .map(|entry| Value::Object(request_json(entry)))
            .collect();
        if !entries.is_empty() {
            out.insert("Entries".into(), entries.into());
        }
    }
    out
}

/// The query protocol's XML for a JSON protocol answer.
fn answer_xml(action: &str, answer: &Value) -> String {
    let mut xml = Xml::response(action, NAMESPACE);
    if let Value::Object(members) = answer {
        write_members(&mut xml, action, members);
    }
    xml.finish(action, &uuid::Uuid::now_v7().to_string())
}

/// Writes members as SQS's query model names them: its lists and maps are flattened
/// (`<QueueUrl>` repeated, `<Attribute><Name/><Value/></Attribute>` repeated).
fn write_members(xml: &mut Xml, action: &str, members: &Map<String, Value>) {
    for (key, value) in members {
        match (key.as_str(), value) {
            ("QueueUrls" | "queueUrls", Value::Array(urls)) => {
                for url in urls {
                    xml.text("QueueUrl", url.as_str().unwrap_or_default());
                }
            }
            ("Attributes", Value::Object(attributes)) => {
                for (name, value) in attributes {
                    xml.open("Attribute")
                        .text("Name", name)
                        .text("Value", &scalar(value))
                        .close("Attribute");
                }
            }
            ("Tags", Value::Object(tags)) => {
                for (key, value) in tags {
                    xml.open("Tag")
                        .text("Key", key)
                        .text("Value", &scalar(value))
                        .close("Tag");
                }
            }
            ("MessageAttributes", Value::Object(attributes)) => {
                for (name, value) in attributes {
                    xml.open("MessageAttribute")
                        .text("Name", name)
                        .open("Value");
                    if let Value::Object(fields) = value {
                        write_members(xml, action, fields);
                    }
                    xml.close("Value").close("MessageAttribute");
                }
            }
            ("Messages", Value::Array(messages)) => {
                for message in messages {
                    xml.open("Message");
                    if let Value::Object(fields) = message {
                        write_members(xml, action, fields);
                    }
                    xml.close("Message");
                }
            }
            ("Results", Value::Array(entries)) => {
                let tag = format!("{action}ResultEntry");
                for entry in entries {
                    xml.open(&tag);
                    if let Value::Object(fields) = entry {
                        write_members(xml, action, fields);
                    }
                    xml.close(&tag);
                }
            }
            ("Successful" | "Failed", Value::Array(entries)) => {
                let tag = if key == "Failed" {
                    "BatchResultErrorEntry".to_string()
                } else {
                    format!("{action}ResultEntry")
                };
                for entry in entries {
                    xml.open(&tag);
                    if let Value::Object(fields) = entry {
                        write_members(xml, action, fields);
                    }
                    xml.close(&tag);
                }
            }
            (_, Value::Null) => {}
            (_, value) => {
                xml.text(key, &scalar(value));
            }
        }
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_form_reads_as_the_json_protocol_request() {
        let form = Form::parse(
            b"Action=SendMessageBatch&Version=2012-11-05&QueueUrl=http%3A%2F%2Fh%2F0%2Fq\
              &SendMessageBatchRequestEntry.1.Id=a&SendMessageBatchRequestEntry.1.MessageBody=hi\
              &SendMessageBatchRequestEntry.1.DelaySeconds=5\
              &SendMessageBatchRequestEntry.1.MessageAttribute.1.Name=k\
              &SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.DataType=String\
              &SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.StringValue=v\
              &SendMessageBatchRequestEntry.2.Id=b&SendMessageBatchRequestEntry.2.MessageBody=42",
        );
        assert_eq!(
            Value::Object(request_json(&form)),
            json!({
                "QueueUrl": "http://h/0/q",
                "Entries": [
                    {"Id": "a", "MessageBody": "hi", "DelaySeconds": 5,
                     "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}}},
                    {"Id": "b", "MessageBody": "42"}
                ]
            })
        );
        let receive = Form::parse(
            b"Action=ReceiveMessage&AttributeName.1=All&MessageAttributeName.1=k&WaitTimeSeconds=x",
        );
        assert_eq!(
            Value::Object(request_json(&receive)),
            json!({"AttributeNames": ["All"], "MessageAttributeNames": ["k"], "WaitTimeSeconds": "x"})
        );
    }

    #[test]
    fn an_answer_is_written_with_the_flattened_lists_of_the_query_model() {
        let xml = answer_xml(
            "ReceiveMessage",
            &json!({"Messages": [{
                "MessageId": "m", "Body": "<b>",
                "Attributes": {"SentTimestamp": "1"},
                "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}}
            }]}),
        );
        assert!(xml.contains("<ReceiveMessageResult><Message>"), "{xml}");
        assert!(xml.contains("<Attribute><Name>SentTimestamp</Name><Value>1</Value></Attribute>"));
        assert!(xml.contains("<Body>&lt;b&gt;</Body>"));
        assert!(xml.contains(
            "<MessageAttribute><Name>k</Name><Value><DataType>String</DataType><StringValue>v</StringValue></Value></MessageAttribute>"
        ));
        let batch = answer_xml(
            "DeleteMessageBatch",
            &json!({"Successful": [{"Id": "a"}], "Failed": [{"Id": "b", "Code": "X", "SenderFault": true}]}),
        );
        assert!(
            batch.contains(
                "<DeleteMessageBatchResultEntry><Id>a</Id></DeleteMessageBatchResultEntry>"
            )
        );
        assert!(batch.contains("<BatchResultErrorEntry><Code>X</Code><Id>b</Id><SenderFault>true</SenderFault></BatchResultErrorEntry>"));
        let list = answer_xml("ListQueues", &json!({"QueueUrls": ["u1", "u2"]}));
        assert!(list.contains(
            "<ListQueuesResult><QueueUrl>u1</QueueUrl><QueueUrl>u2</QueueUrl></ListQueuesResult>"
        ));
    }
}
