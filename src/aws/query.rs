//! AWS's query protocol: a form-encoded request (`Action=Publish&TopicArn=…&
//! MessageAttributes.entry.1.Name=…`) answered in XML. SNS speaks it; so did SQS before
//! its JSON protocol.
//!
//! [`Form`] reads the flattened lists and maps of a request back into their parts;
//! [`Xml`] writes an answer, escaping every text it is given.

use std::collections::BTreeMap;
use std::fmt::Write;

/// A query-protocol request's parameters.
#[derive(Debug, Default)]
pub struct Form {
    params: BTreeMap<String, String>,
}

impl Form {
    /// Parses a form-encoded body; a later duplicate of a key wins, as AWS's parsers do.
    pub fn parse(body: &[u8]) -> Form {
        Form {
            params: form_urlencoded::parse(body).into_owned().collect(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    /// Parameters whose names have no dots: the request's plain members.
    pub fn scalars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params
            .iter()
            .filter(|(k, _)| !k.contains('.'))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The values of a list, `PREFIX.1`, `PREFIX.2`, …, in index order (`PREFIX` is
    /// `NAME.member` for most lists, `NAME` alone for SQS's flattened ones).
    pub fn list(&self, prefix: &str) -> Vec<String> {
        self.indexed(prefix)
            .into_values()
            .filter_map(|mut part| part.remove(""))
            .collect()
    }

    /// The entries of a list of structures, `PREFIX.N.FIELD`, each as its own form of
    /// `FIELD`s, in index order.
    pub fn structures(&self, prefix: &str) -> Vec<Form> {
        self.indexed(prefix)
            .into_values()
            .map(|params| Form { params })
            .collect()
    }

    /// The pairs of a map, `PREFIX.N.KEY` and `PREFIX.N.VALUE`, in index order (`PREFIX`
    /// is `NAME.entry` for SNS's maps, `NAME` alone for SQS's flattened ones). An entry
    /// without its key is left out; without its value, the value is "".
    pub fn map(&self, prefix: &str, key: &str, value: &str) -> Vec<(String, String)> {
        self.indexed(prefix)
            .into_values()
            .filter_map(|mut part| {
                let k = part.remove(key)?;
                Some((k, part.remove(value).unwrap_or_default()))
            })
            .collect()
    }

    /// The entries of a map whose values are structures (`PREFIX.N.Name` and
    /// `PREFIX.N.Value.FIELD`), each as its name and a form of its `FIELD`s.
    pub fn structure_map(&self, prefix: &str) -> Vec<(String, Form)> {
        self.indexed(prefix)
            .into_values()
            .filter_map(|mut part| {
                let name = part.remove("Name")?;
                let params = part
                    .into_iter()
                    .filter_map(|(k, v)| Some((k.strip_prefix("Value.")?.to_string(), v)))
                    .collect();
                Some((name, Form { params }))
            })
            .collect()
    }

    /// Keys `PREFIX.N` and `PREFIX.N.REST`, grouped by `N` (a positive integer) with
    /// `REST` as the key ("" for `PREFIX.N` itself), in order of `N`.
    fn indexed(&self, prefix: &str) -> BTreeMap<u32, BTreeMap<String, String>> {
        let mut out: BTreeMap<u32, BTreeMap<String, String>> = BTreeMap::new();
        let start = format!("{prefix}.");
        for (key, value) in self.params.range(start.clone()..) {
            let Some(rest) = key.strip_prefix(&start) else {
                break;
            };
            let (index, field) = rest.split_once('.').unwrap_or((rest, ""));
            if let Ok(n) = index.parse::<u32>()
                && n > 0
            {
                out.entry(n)
                    .or_default()
                    .insert(field.to_string(), value.clone());
            }
        }
        out
    }
}

/// An XML answer being written. Element names are the caller's constants; every text
/// is escaped.
pub struct Xml {
    out: String,
}

impl Xml {
    /// `<ACTIONResponse xmlns=NAMESPACE><ACTIONResult>` opened.
    pub fn response(action: &str, namespace: &str) -> Xml {
        let mut out = String::with_capacity(512);
        let _ = write!(
            out,
            r#"<?xml version="1.0" encoding="UTF-8"?><{action}Response xmlns="{namespace}"><{action}Result>"#
        );
        Xml { out }
    }

    pub fn open(&mut self, tag: &str) -> &mut Self {
        let _ = write!(self.out, "<{tag}>");
        self
    }

    pub fn close(&mut self, tag: &str) -> &mut Self {
        let _ = write!(self.out, "</{tag}>");
        self
    }

    /// `<TAG>text</TAG>`.
    pub fn text(&mut self, tag: &str, text: &str) -> &mut Self {
        self.open(tag);
        escape_into(&mut self.out, text);
        self.close(tag)
    }

    /// A map as the query protocol writes one: `<TAG><entry><key>…</key><value>…</value></entry>…</TAG>`.
    pub fn entries<'a>(
        &mut self,
        tag: &str,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> &mut Self {
        self.open(tag);
        for (k, v) in pairs {
            self.open("entry")
                .text("key", k)
                .text("value", v)
                .close("entry");
        }
        self.close(tag)
    }

    /// Closes the result and the response, with the request id AWS sends in its metadata.
    pub fn finish(mut self, action: &str, request_id: &str) -> String {
        let _ = write!(self.out, "</{action}Result><ResponseMetadata><RequestId>");
        escape_into(&mut self.out, request_id);
        let _ = write!(
            self.out,
            "</RequestId></ResponseMetadata></{action}Response>"
        );
        self.out
    }
}

/// An `ErrorResponse` as the query protocol sends it.
pub fn error_response(
    namespace: &str,
    sender_fault: bool,
    code: &str,
    message: &str,
    request_id: &str,
) -> String {
    let mut out = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><ErrorResponse xmlns="{namespace}"><Error><Type>{}</Type><Code>"#,
        if sender_fault { "Sender" } else { "Receiver" }
    );
    escape_into(&mut out, code);
    out.push_str("</Code><Message>");
    escape_into(&mut out, message);
    out.push_str("</Message></Error><RequestId>");
    escape_into(&mut out, request_id);
    out.push_str("</RequestId></ErrorResponse>");
    out
}

/// The answer to a query-protocol request for a service this server does not serve,
/// or one it cannot tell.
pub fn unsupported_service(service: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = error_response(
        "http://queue.amazonaws.com/doc/2012-11-05/",
        true,
        "InvalidAction",
        &format!(
            "the query protocol of service {service:?} is not served here; SNS (Version 2010-03-31) and SQS (Version 2012-11-05) are"
        ),
        &uuid::Uuid::now_v7().to_string(),
    );
    (
        axum::http::StatusCode::BAD_REQUEST,
        [(axum::http::header::CONTENT_TYPE, "text/xml")],
        body,
    )
        .into_response()
}

/// Appends `text` with XML's five special characters escaped, and the control
/// characters XML 1.0 cannot carry (a message may hold them) as character references,
/// which the SDKs' parsers read back.
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {
                let _ = write!(out, "&#x{:X};", c as u32);
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_maps_and_structures_come_back_in_index_order() {
        let form = Form::parse(
            b"Action=X&Attributes.entry.1.key=K1&Attributes.entry.1.value=V%201\
              &Attributes.entry.2.key=K2\
              &MessageAttributes.entry.1.Name=n&MessageAttributes.entry.1.Value.DataType=String\
              &MessageAttributes.entry.1.Value.StringValue=s%26t\
              &Entries.member.10.Id=ten&Entries.member.2.Id=two&Entries.member.0.Id=bad\
              &Entries.member.1.Id=one&Entries.member.1.Message=m1",
        );
        assert_eq!(form.get("Action"), Some("X"));
        assert_eq!(
            form.map("Attributes.entry", "key", "value"),
            [("K1".into(), "V 1".into()), ("K2".into(), String::new())]
        );
        let attrs = form.structure_map("MessageAttributes.entry");
        assert_eq!(attrs.len(), 1);
        assert_eq!(attrs[0].0, "n");
        assert_eq!(attrs[0].1.get("DataType"), Some("String"));
        assert_eq!(attrs[0].1.get("StringValue"), Some("s&t"));
        let entries = form.structures("Entries.member");
        let ids: Vec<_> = entries.iter().map(|e| e.get("Id").unwrap()).collect();
        assert_eq!(ids, ["one", "two", "ten"]);
        assert_eq!(entries[0].get("Message"), Some("m1"));
        assert!(form.structures("Missing").is_empty());
        let sqs = Form::parse(
            b"AttributeName.2=B&AttributeName.1=A&Attribute.1.Name=N&Attribute.1.Value=V",
        );
        assert_eq!(sqs.list("AttributeName"), ["A", "B"]);
        assert_eq!(
            sqs.map("Attribute", "Name", "Value"),
            [("N".into(), "V".into())]
        );
        let scalars: Vec<_> = form.scalars().collect();
        assert_eq!(scalars, [("Action", "X")]);
    }

    #[test]
    fn text_is_escaped_so_any_message_survives() {
        let mut xml = Xml::response("Publish", "ns");
        xml.text("MessageId", "<a & 'b'>\"\r\u{1}\n");
        let out = xml.finish("Publish", "r-1");
        assert!(
            out.contains("<MessageId>&lt;a &amp; &apos;b&apos;&gt;&quot;&#xD;&#x1;\n</MessageId>"),
            "{out}"
        );
        assert!(out.ends_with(
            "</PublishResult><ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></PublishResponse>"
        ));
        let e = error_response("ns", true, "NotFound", "Topic <x>", "r");
        assert!(e.contains(
            "<Type>Sender</Type><Code>NotFound</Code><Message>Topic &lt;x&gt;</Message>"
        ));
    }
}
