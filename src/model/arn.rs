//! Amazon Resource Names of Switchyard's resources, as the AWS protocols and SNS
//! notifications show them: account [`ACCOUNT_ID`], the region the client named.

/// The account id in every ARN and queue URL, as AWS's local tools use.
pub const ACCOUNT_ID: &str = "000000000000";

/// The region of a request that names none.
pub const DEFAULT_REGION: &str = "us-east-1";

/// `arn:aws:sns:REGION:ACCOUNT:TOPIC`.
pub fn topic_arn(region: &str, topic: &str) -> String {
    format!("arn:aws:sns:{region}:{ACCOUNT_ID}:{topic}")
}

/// `arn:aws:sns:REGION:ACCOUNT:TOPIC:SUBSCRIPTION`.
pub fn subscription_arn(region: &str, topic: &str, subscription: &str) -> String {
    format!("arn:aws:sns:{region}:{ACCOUNT_ID}:{topic}:{subscription}")
}

/// `arn:aws:sqs:REGION:ACCOUNT:QUEUE`.
pub fn queue_arn(region: &str, queue: &str) -> String {
    format!("arn:aws:sqs:{region}:{ACCOUNT_ID}:{queue}")
}

/// `arn:aws:kinesis:REGION:ACCOUNT:stream/STREAM`.
pub fn stream_arn(region: &str, stream: &str) -> String {
    format!("arn:aws:kinesis:{region}:{ACCOUNT_ID}:stream/{stream}")
}

/// `arn:aws:lambda:REGION:ACCOUNT:function:FUNCTION`.
pub fn function_arn(region: &str, function: &str) -> String {
    format!("arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{function}")
}

/// An ARN's parts: `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`, the resource
/// being everything after the fifth colon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arn<'a> {
    pub service: &'a str,
    pub region: &'a str,
    pub resource: &'a str,
}

impl<'a> Arn<'a> {
    pub fn parse(arn: &'a str) -> Option<Arn<'a>> {
        let mut parts = arn.splitn(6, ':');
        let (Some("arn"), Some(_partition), Some(service), Some(region), Some(_account)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let resource = parts.next().filter(|r| !r.is_empty())?;
        Some(Arn {
            service,
            region,
            resource,
        })
    }

    /// The resource of an ARN of `service`.
    pub fn resource_of(arn: &'a str, service: &str) -> Option<&'a str> {
        Arn::parse(arn)
            .filter(|a| a.service == service)
            .map(|a| a.resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_parse_back_to_their_parts() {
        let arn = subscription_arn("eu-west-1", "orders", "s-1");
        assert_eq!(
            Arn::parse(&arn),
            Some(Arn {
                service: "sns",
                region: "eu-west-1",
                resource: "orders:s-1"
            })
        );
        assert_eq!(
            Arn::resource_of(&queue_arn("us-east-1", "q"), "sqs"),
            Some("q")
        );
        assert_eq!(Arn::resource_of(&queue_arn("us-east-1", "q"), "sns"), None);
        assert_eq!(
            Arn::resource_of(&function_arn("us-east-1", "f"), "lambda"),
            Some("function:f")
        );
        for bad in ["", "arn:aws:sqs:r:a:", "arn:aws:sqs", "urn:aws:sqs:r:a:q"] {
            assert_eq!(Arn::parse(bad), None, "{bad}");
        }
    }
}
