//! Table tests: each operator against message values (both scopes), and each limit with the
//! exact error text, including the key it names.

use serde_json::{Value, json};
use switchyard_filter::{Attributes, MatcherBuilder, Policy, Scope, reference};

/// Match `policy` against a body in body scope with the compiled matcher, insisting the
/// reference agrees.
fn body_match(policy: Value, body: &str) -> bool {
    let p = Policy::parse(&policy).unwrap_or_else(|e| panic!("{policy}: {e}"));
    let mut b = MatcherBuilder::new();
    b.add(1, &p, Scope::MessageBody).unwrap();
    let mut out = Vec::new();
    b.build()
        .matches(body.as_bytes(), &Attributes::new(), &mut out);
    let got = out == [1];
    assert_eq!(
        got,
        reference::matches(&p, Scope::MessageBody, body.as_bytes(), &Attributes::new()),
        "{policy} vs {body}"
    );
    got
}

fn attr_match(policy: Value, attrs: Value) -> bool {
    let p = Policy::parse(&policy).unwrap();
    let a = Attributes::from_sns_json(&attrs).unwrap();
    let got = p.matches(Scope::MessageAttributes, b"", &a);
    assert_eq!(
        got,
        reference::matches_attributes(&p, &a),
        "{policy} vs {attrs}"
    );
    got
}

#[test]
fn operators_on_bodies() {
    let cases: &[(Value, &str, bool)] = &[
        (json!({"k": ["v"]}), r#"{"k": "v"}"#, true),
        (json!({"k": ["v"]}), r#"{"k": "V"}"#, false),
        (json!({"k": ["v"]}), r#"{"k": ["a", "v"]}"#, true),
        (json!({"k": ["v"]}), r#"{"k": [["a"], [["v"]]]}"#, true),
        (json!({"k": [5]}), r#"{"k": "5"}"#, false),
        (json!({"k": ["5"]}), r#"{"k": 5}"#, false),
        (json!({"k": [5]}), r#"{"k": 5.0}"#, true),
        (json!({"k": [5]}), r#"{"k": 5e0}"#, true),
        (json!({"k": [301.5]}), r#"{"k": 3015e-1}"#, true),
        (json!({"k": [true]}), r#"{"k": true}"#, true),
        (json!({"k": [true]}), r#"{"k": "true"}"#, false),
        (json!({"k": [null]}), r#"{"k": null}"#, true),
        (json!({"k": [null]}), r#"{}"#, false),
        (json!({"k": [{"prefix": "ab"}]}), r#"{"k": "abc"}"#, true),
        (json!({"k": [{"prefix": "ab"}]}), r#"{"k": "cab"}"#, false),
        (json!({"k": [{"prefix": "1"}]}), r#"{"k": 12}"#, false),
        (json!({"k": [{"suffix": "bc"}]}), r#"{"k": "abc"}"#, true),
        (json!({"k": [{"suffix": "bc"}]}), r#"{"k": "bca"}"#, false),
        (
            json!({"k": [{"equals-ignore-case": "ÉTÉ"}]}),
            r#"{"k": "été"}"#,
            true,
        ),
        (
            json!({"k": [{"equals-ignore-case": "abc"}]}),
            r#"{"k": "abd"}"#,
            false,
        ),
        (
            json!({"k": [{"wildcard": "a*c"}]}),
            r#"{"k": "abbc"}"#,
            true,
        ),
        (
            json!({"k": [{"wildcard": "a*c"}]}),
            r#"{"k": "abcd"}"#,
            false,
        ),
        (
            json!({"k": [{"numeric": ["<", 0]}]}),
            r#"{"k": -0.5}"#,
            true,
        ),
        (
            json!({"k": [{"numeric": [">", 0, "<=", 5]}]}),
            r#"{"k": 5}"#,
            true,
        ),
        (
            json!({"k": [{"numeric": [">", 0, "<=", 5]}]}),
            r#"{"k": 0}"#,
            false,
        ),
        (
            json!({"k": [{"numeric": [">=", 0, "<", 5]}]}),
            r#"{"k": "3"}"#,
            false,
        ),
        (
            json!({"k": [{"numeric": ["=", 1e9]}]}),
            r#"{"k": 1000000000}"#,
            true,
        ),
        (
            json!({"k": [{"cidr": "10.0.0.0/8"}]}),
            r#"{"k": "10.200.0.1"}"#,
            true,
        ),
        (
            json!({"k": [{"cidr": "2001:db8::/32"}]}),
            r#"{"k": "2001:db8:1::1"}"#,
            true,
        ),
        (
            json!({"k": [{"cidr": "2001:db8::/32"}]}),
            r#"{"k": "10.0.0.1"}"#,
            false,
        ),
        (json!({"k": [{"exists": true}]}), r#"{"k": null}"#, false),
        (json!({"k": [{"exists": true}]}), r#"{"k": []}"#, false),
        (json!({"k": [{"exists": true}]}), r#"{"k": ""}"#, true),
        (
            json!({"k": [{"exists": true}]}),
            r#"{"k": {"x": 1}}"#,
            false,
        ),
        (json!({"k": [{"exists": false}]}), r#"{"k": null}"#, true),
        (json!({"k": [{"exists": false}]}), r#"{}"#, true),
        (json!({"k": [{"anything-but": "v"}]}), r#"{"k": "w"}"#, true),
        (json!({"k": [{"anything-but": "v"}]}), r#"{"k": 1}"#, true),
        (
            json!({"k": [{"anything-but": "v"}]}),
            r#"{"k": null}"#,
            false,
        ),
        (json!({"k": [{"anything-but": "v"}]}), r#"{}"#, false),
        (
            json!({"k": [{"anything-but": [1, 2]}]}),
            r#"{"k": 2.0}"#,
            false,
        ),
        (
            json!({"k": [{"anything-but": {"prefix": "a"}}]}),
            r#"{"k": "ba"}"#,
            true,
        ),
        (
            json!({"k": [{"anything-but": {"prefix": "a"}}]}),
            r#"{"k": 1}"#,
            false,
        ),
        (
            json!({"k": [{"anything-but": {"suffix": "a"}}]}),
            r#"{"k": "ba"}"#,
            false,
        ),
        (
            json!({"k": [{"anything-but": {"equals-ignore-case": "a"}}]}),
            r#"{"k": "A"}"#,
            false,
        ),
        (
            json!({"k": [{"anything-but": {"wildcard": "a*"}}]}),
            r#"{"k": "ba"}"#,
            true,
        ),
        (json!({"a": {"b": ["v"]}}), r#"{"a.b": "v"}"#, true),
        (json!({"a.b": ["v"]}), r#"{"a": {"b": "v"}}"#, true),
        (
            json!({"a": {"b": ["v"]}}),
            r#"{"a": [{"b": "x"}, {"b": "v"}]}"#,
            true,
        ),
        (
            json!({"a": {"b": ["v"]}}),
            r#"{"a": {"b": {"c": "v"}}}"#,
            false,
        ),
        (
            json!({"a": ["v"], "b": ["w"]}),
            r#"{"a": "v", "b": "w"}"#,
            true,
        ),
        (json!({"a": ["v"], "b": ["w"]}), r#"{"a": "v"}"#, false),
        (
            json!({"$or": [{"a": ["v"]}, {"b": ["w"]}]}),
            r#"{"b": "w"}"#,
            true,
        ),
        (
            json!({"$or": [{"a": ["v"]}, {"b": ["w"]}]}),
            r#"{"c": "w"}"#,
            false,
        ),
        (json!({"$or": ["v"]}), r#"{"$or": "v"}"#, true),
        (json!({"k": ["a\"b"]}), r#"{"k": "a\"b"}"#, true),
        (json!({"k": ["é"]}), r#"{"k": "\u00e9"}"#, true),
        (json!({"k": ["v"]}), r#"["k", "v"]"#, false),
        (json!({"k": ["v"]}), r#"{"k": "v"} trailing"#, false),
        (json!({"k": ["v"]}), r#"{"k": "v", "z": [1, 2,]}"#, false),
        (
            json!({"k": ["v"]}),
            "{\"k\": \"v\", \"z\": \"\u{1}\"}",
            false,
        ),
        (json!({}), r#"not json at all"#, true),
    ];
    for (p, body, want) in cases {
        assert_eq!(body_match(p.clone(), body), *want, "{p} vs {body}");
    }
}

#[test]
fn operators_on_attributes() {
    let s = |v: &str| json!({"k": {"Type": "String", "Value": v}});
    let n = |v: &str| json!({"k": {"Type": "Number", "Value": v}});
    let arr = |v: &str| json!({"k": {"Type": "String.Array", "Value": v}});
    let cases: Vec<(Value, Value, bool)> = vec![
        (json!({"k": ["v"]}), s("v"), true),
        (json!({"k": [5]}), s("5"), false),
        (json!({"k": [5]}), n("5.0"), true),
        (json!({"k": [{"numeric": [">", 1]}]}), n("1e1"), true),
        (json!({"k": ["5"]}), n("5"), false),
        (json!({"k": ["b"]}), arr(r#"["a", "b"]"#), true),
        (
            json!({"k": [{"anything-but": "a"}]}),
            arr(r#"["a", "b"]"#),
            true,
        ),
        (
            json!({"k": [{"anything-but": "a"}]}),
            arr(r#"["a"]"#),
            false,
        ),
        (json!({"k": [true]}), arr("[true]"), true),
        (
            json!({"k": [{"exists": true}]}),
            json!({"k": {"Type": "Binary", "Value": "AAE="}}),
            true,
        ),
        (
            json!({"k": ["AAE="]}),
            json!({"k": {"Type": "Binary", "Value": "AAE="}}),
            false,
        ),
        (json!({"k": [{"exists": false}]}), json!({}), false),
        (json!({"k": [{"exists": false}]}), s("v"), false),
        (
            json!({"k": [{"exists": false}]}),
            json!({"j": {"Type": "String", "Value": "v"}}),
            true,
        ),
        (
            json!({"a.b": ["v"]}),
            json!({"a.b": {"Type": "String", "Value": "v"}}),
            true,
        ),
    ];
    for (p, a, want) in cases {
        assert_eq!(attr_match(p.clone(), a.clone()), want, "{p} vs {a}");
    }
}

#[test]
fn limits_and_malformed_policies_are_refused_with_the_key_and_rule() {
    let six: Value = (0..6)
        .map(|i| (format!("k{i}"), json!(["v"])))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let many: Vec<Value> = (0..151).map(|i| json!(i)).collect();
    let cases: Vec<(Value, &str)> = vec![
        (
            six,
            r#"invalid filter policy: key "k5": Filter policy can not have more than 5 keys"#,
        ),
        (
            json!({"k": many}),
            r#"invalid filter policy: key "k": Filter policy is too complex: 151 combinations, at most 150"#,
        ),
        (
            json!({"a": {"b": {"c": ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"]}}, "d": {"e": ["1", "2", "3"]}}),
            r#"invalid filter policy: key "d.e": Filter policy is too complex: 180 combinations, at most 150"#,
        ),
        (
            json!({"k": []}),
            r#"invalid filter policy: key "k": Empty arrays are not allowed"#,
        ),
        (
            json!({"k": "v"}),
            r#"invalid filter policy: key "k": "k" must be an object or an array"#,
        ),
        (
            json!([1]),
            "invalid filter policy: Filter policy must be a JSON object",
        ),
        (
            json!({"k": [[1]]}),
            r#"invalid filter policy: key "k": Match value must be String, number, true, false, or null"#,
        ),
        (
            json!({"k": [{"prefix": "a", "suffix": "b"}]}),
            r#"invalid filter policy: key "k": Only one key allowed in match expression"#,
        ),
        (
            json!({"k": [{"regexp": "a"}]}),
            r#"invalid filter policy: key "k": Unrecognized match type regexp"#,
        ),
        (
            json!({"k": [{"prefix": 1}]}),
            r#"invalid filter policy: key "k": prefix match pattern must be a string"#,
        ),
        (
            json!({"k": [{"exists": "yes"}]}),
            r#"invalid filter policy: key "k": exists match pattern must be either true or false."#,
        ),
        (
            json!({"k": [{"numeric": 5}]}),
            r#"invalid filter policy: key "k": Value of numeric must be an array."#,
        ),
        (
            json!({"k": [{"numeric": []}]}),
            r#"invalid filter policy: key "k": Invalid member in numeric match: ]"#,
        ),
        (
            json!({"price": [{"numeric": [50, "<=", "100"]}]}),
            r#"invalid filter policy: key "price": Invalid member in numeric match: 50"#,
        ),
        (
            json!({"price": [{"numeric": ["0"]}]}),
            r#"invalid filter policy: key "price": Unrecognized numeric range operator: 0"#,
        ),
        (
            json!({"price": [{"numeric": ["=", "x"]}]}),
            r#"invalid filter policy: key "price": Value of equals must be numeric"#,
        ),
        (
            json!({"price": [{"numeric": [">", 50, "<=", "100"]}]}),
            r#"invalid filter policy: key "price": Value of <= must be numeric"#,
        ),
        (
            json!({"price": [{"numeric": ["<", 50, ">", 10]}]}),
            r#"invalid filter policy: key "price": Too many elements in numeric expression"#,
        ),
        (
            json!({"price": [{"numeric": [">", 50, 7, 10]}]}),
            r#"invalid filter policy: key "price": Bad value in numeric range: 7"#,
        ),
        (
            json!({"price": [{"numeric": [">", 50, ">", 10]}]}),
            r#"invalid filter policy: key "price": Bad numeric range operator: >"#,
        ),
        (
            json!({"price": [{"numeric": [">", 50, "<", 10]}]}),
            r#"invalid filter policy: key "price": Bottom must be less than top"#,
        ),
        (
            json!({"price": [{"numeric": [">", 5, "<", 10, "<", 20]}]}),
            r#"invalid filter policy: key "price": Too many terms in numeric range expression"#,
        ),
        (
            json!({"price": [{"numeric": [">", 1e10]}]}),
            r#"invalid filter policy: key "price": Value must be between -1.0E9 and 1.0E9, inclusive: 10000000000.0"#,
        ),
        (
            json!({"k": [{"anything-but": {"numeric": [">", 1]}}]}),
            r#"invalid filter policy: key "k": Unsupported anything-but pattern: numeric"#,
        ),
        (
            json!({"k": [{"anything-but": [true]}]}),
            r#"invalid filter policy: key "k": Inside anything but list, start|null|boolean is not supported."#,
        ),
        (
            json!({"k": [{"anything-but": []}]}),
            r#"invalid filter policy: key "k": Empty arrays are not allowed"#,
        ),
        (
            json!({"k": [{"cidr": "10.0.0.1"}]}),
            r#"invalid filter policy: key "k": Malformed CIDR, one '/' required"#,
        ),
        (
            json!({"k": [{"cidr": "10.0.0.1/x"}]}),
            r#"invalid filter policy: key "k": Malformed CIDR, mask bits must be an integer"#,
        ),
        (
            json!({"k": [{"cidr": "10.0.0.1/40"}]}),
            r#"invalid filter policy: key "k": Malformed CIDR, mask bits must be between 0 and 32"#,
        ),
        (
            json!({"k": [{"cidr": "10.0.0/8"}]}),
            r#"invalid filter policy: key "k": Nonstandard IP address: 10.0.0"#,
        ),
        (
            json!({"k": [{"wildcard": "a**b"}]}),
            r#"invalid filter policy: key "k": Consecutive wildcard characters at pos 2"#,
        ),
        (
            json!({"k": [{"wildcard": "a\\b"}]}),
            r#"invalid filter policy: key "k": Invalid escape character at pos 1"#,
        ),
        (
            json!({"k": [{"wildcard": "*a*b*c*d*e*f"}]}),
            r#"invalid filter policy: key "k": Rule is too complex - try using fewer wildcard characters (6, at most 5 per value)"#,
        ),
        (
            json!({"a": {"b": []}}),
            r#"invalid filter policy: key "a.b": Empty arrays are not allowed"#,
        ),
    ];
    for (p, want) in cases {
        let e = Policy::parse(&p).unwrap_err();
        assert_eq!(e.to_string(), want, "{p}");
    }
    let big = format!(r#"{{"k": ["{}"]}}"#, "x".repeat(256 * 1024));
    assert_eq!(
        Policy::parse_str(&big).unwrap_err().to_string(),
        "invalid filter policy: Filter policy is too large: 262155 bytes, at most 262144"
    );
    let e =
        Policy::parse_scoped(&json!({"a": {"b": ["v"]}}), Scope::MessageAttributes).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid filter policy: Filter policy scope MessageAttributes does not support nested filter policy"
    );
    assert_eq!(
        e.aws_message(),
        "Invalid parameter: FilterPolicy: Filter policy scope MessageAttributes does not support nested filter policy"
    );
    assert!(
        Policy::parse_str("{")
            .unwrap_err()
            .to_string()
            .starts_with("invalid filter policy: Filter policy is not valid JSON: ")
    );
}

#[test]
fn documented_limits_are_accepted_at_the_edge() {
    let five: Value = (0..5)
        .map(|i| (format!("k{i}"), json!(["v"])))
        .collect::<serde_json::Map<_, _>>()
        .into();
    assert!(Policy::parse(&five).is_ok());
    let many: Vec<Value> = (0..150).map(|i| json!(i)).collect();
    assert!(Policy::parse(&json!({"k": many})).is_ok());
    assert!(Policy::parse(&json!({"k": [{"numeric": [">=", -1e9, "<=", 1e9]}]})).is_ok());
    assert!(Policy::parse(&json!({"k": [1e9, -1e9]})).is_ok());
}

#[test]
fn scope_parses_from_its_sns_spelling() {
    assert_eq!("MessageBody".parse::<Scope>().unwrap(), Scope::MessageBody);
    assert_eq!(
        "MessageAttributes".parse::<Scope>().unwrap(),
        Scope::MessageAttributes
    );
    assert_eq!(
        "body".parse::<Scope>().unwrap_err().to_string(),
        r#"unknown filter policy scope "body": expected MessageAttributes or MessageBody"#
    );
}

#[test]
fn many_policies_in_one_matcher_report_each_match_once() {
    let mut b = MatcherBuilder::new();
    for i in 0..1000u32 {
        let p = Policy::parse(&json!({"k": [format!("v{}", i % 10)], "j": [{"exists": true}]}))
            .unwrap();
        b.add(i, &p, Scope::MessageBody).unwrap();
    }
    let m = b.build();
    let mut out = Vec::new();
    m.matches(
        br#"{"k": ["v3", "v3"], "j": 1}"#,
        &Attributes::new(),
        &mut out,
    );
    out.sort_unstable();
    assert_eq!(out, (0..1000).filter(|i| i % 10 == 3).collect::<Vec<u32>>());
}

#[test]
fn a_string_array_that_is_not_an_array_is_accepted_as_sns_accepts_it() {
    let sa = |value: &str| json!({"k": {"Type": "String.Array", "Value": value}});
    // A JSON scalar matches as that one value.
    assert!(attr_match(json!({"k": ["v"]}), sa(r#""v""#)));
    assert!(attr_match(json!({"k": [5]}), sa("5")));
    assert!(attr_match(json!({"k": [{"numeric": [">", 1]}]}), sa("5")));
    assert!(!attr_match(json!({"k": ["w"]}), sa(r#""v""#)));
    // Text that is not JSON, or a JSON object, matches nothing (as an empty array: no
    // value to match, nothing for `exists` to find).
    for value in ["not json", r#"{"a": 1}"#] {
        assert!(
            !attr_match(json!({"k": ["not json"]}), sa(value)),
            "{value}"
        );
        assert!(
            !attr_match(json!({"k": [{"prefix": "n"}]}), sa(value)),
            "{value}"
        );
        assert!(
            !attr_match(json!({"k": [{"anything-but": "x"}]}), sa(value)),
            "{value}"
        );
        assert!(
            !attr_match(json!({"k": [{"exists": true}]}), sa(value)),
            "{value}"
        );
        assert!(
            attr_match(json!({"other": [{"exists": false}]}), sa(value)),
            "{value}"
        );
    }
}

#[test]
fn numbers_beyond_a_billion_make_a_policy_invalid_exact_values_too() {
    for policy in [
        json!({"k": [1_000_000_001]}),
        json!({"k": [-1.5e9]}),
        json!({"k": [{"anything-but": 2e9}]}),
        json!({"k": [{"anything-but": [1, 5e9]}]}),
        json!({"k": [{"numeric": ["=", 1e10]}]}),
    ] {
        let e = Policy::parse(&policy).unwrap_err().to_string();
        assert!(
            e.contains("Value must be between -1.0E9 and 1.0E9, inclusive"),
            "{policy}: {e}"
        );
    }
    for policy in [
        json!({"k": [1_000_000_000]}),
        json!({"k": [-1e9]}),
        json!({"k": ["5e10"]}),
    ] {
        assert!(Policy::parse(&policy).is_ok(), "{policy}");
    }
}
