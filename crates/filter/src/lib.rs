//! SNS subscription filter policies: parse, validate, compile, match.
