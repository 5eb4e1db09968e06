//! The function runtime end to end, with real components built from `guests/`:
//! example handlers, limits (trap, deadline, memory), the sandbox, buffered
//! publishes, batches, load-time checks, the compiled-component cache, hot
//! swapping and concurrency.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard::runtime::{
    AttributeValue, Body, Event, Function, FunctionLimits, FunctionRegistry, InvokeError, Level,
    LoadError, LogSource, MAX_BATCH_EVENTS, MAX_PUBLISHES_PER_INVOCATION, Publish, PublishGate,
    Runtime, RuntimeConfig,
};

use crate::guests;

/// Instance slots of a test runtime: enough for the concurrency tests, small
/// enough that many test runtimes fit side by side.
const TEST_INSTANCES: u32 = 8;

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        max_instances: TEST_INSTANCES,
        ..RuntimeConfig::default()
    })
    .expect("runtime starts")
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

fn load(runtime: &Runtime, guest: &str, config: &[(&str, &str)]) -> Function {
    load_with(runtime, guest, FunctionLimits::default(), config)
}

fn load_with(
    runtime: &Runtime,
    guest: &str,
    limits: FunctionLimits,
    config: &[(&str, &str)],
) -> Function {
    runtime
        .load(guest, &guests::bytes(guest), limits, env(config))
        .unwrap_or_else(|error| panic!("loading {guest}: {error}"))
}

fn event(id: &str, body: &str) -> Event {
    Event {
        id: id.into(),
        topic: "orders".into(),
        subscription: "test".into(),
        attributes: Vec::new(),
        body: Body::Text(body.into()),
        published_at_ms: 1_700_000_000_000,
        receive_count: 1,
    }
}

fn order(id: &str, total: f64, country: &str) -> Event {
    event(
        id,
        &format!(
            r#"{{"order_id":"{id}","customer_email":"ada@example.com","total":{total},"country":"{country}","items":2}}"#
        ),
    )
}

fn messages(logs: &[switchyard::runtime::LogLine]) -> Vec<&str> {
    logs.iter().map(|line| line.message.as_str()).collect()
}

fn text(publish: &Publish) -> &str {
    match &publish.body {
        Body::Text(text) => text,
        Body::Bytes(_) => panic!("expected a text body"),
    }
}

#[tokio::test]
async fn email_confirms_an_order_and_logs_it() {
    let email = load(&runtime(), "email", &[("sender", "shop@example.com")]);
    let invocation = email.invoke(order("o-1", 20.0, "DE")).await;
    assert_eq!(invocation.outcome, Ok(()));
    assert_eq!(
        messages(&invocation.logs),
        ["email from shop@example.com to ada@example.com: order o-1 is confirmed"]
    );
    assert_eq!(invocation.logs[0].level, Level::Info);
    assert!(invocation.published.is_empty());
}

#[tokio::test]
async fn a_handler_error_is_reported_with_its_retryability() {
    let email = load(&runtime(), "email", &[]);
    let invocation = email.invoke(event("o-2", r#"{"order_id":"o-2"}"#)).await;
    let error = invocation.outcome.unwrap_err();
    assert_eq!(
        error,
        InvokeError::Handler {
            retryable: false,
            message: "order event o-2 has no customer_email".into()
        }
    );
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn shipping_prints_a_label_that_becomes_a_log_line() {
    let shipping = load(&runtime(), "shipping", &[("warehouse", "berlin")]);
    let invocation = shipping.invoke(order("o-3", 20.0, "FR")).await;
    assert_eq!(invocation.outcome, Ok(()));
    assert_eq!(
        messages(&invocation.logs),
        [
            "label: order o-3, 2 item(s), berlin -> FR",
            "shipment of order o-3 prepared at berlin"
        ]
    );
    assert_eq!(invocation.logs[0].source, LogSource::Stdout);
    assert_eq!(invocation.logs[1].source, LogSource::Log);
}

#[tokio::test]
async fn fraud_flags_an_order_above_the_configured_total() {
    let fraud = load(&runtime(), "fraud", &[("max_total", "500")]);
    let invocation = fraud.invoke(order("o-4", 750.0, "DE")).await;
    assert_eq!(invocation.outcome, Ok(()));
    assert_eq!(invocation.published.len(), 1);
    let flagged = &invocation.published[0];
    assert_eq!(flagged.topic, "order_flagged");
    assert!(
        text(flagged).contains(r#""order_id":"o-4""#),
        "{}",
        text(flagged)
    );
    assert_eq!(flagged.attributes[0].name, "reason");
    assert_eq!(
        flagged.attributes[0].value,
        AttributeValue::String("total 750 is above 500".into())
    );
}

#[tokio::test]
async fn fraud_flags_an_order_from_a_blocked_country() {
    let fraud = load(&runtime(), "fraud", &[("blocked_countries", "KP, XX")]);
    let invocation = fraud.invoke(order("o-5", 10.0, "XX")).await;
    assert_eq!(invocation.outcome, Ok(()));
    assert_eq!(invocation.published.len(), 1);
    assert_eq!(
        invocation.published[0].attributes[0].value,
        AttributeValue::String("country XX is blocked".into())
    );
}

#[tokio::test]
async fn fraud_publishes_nothing_for_a_normal_order() {
    let fraud = load(&runtime(), "fraud", &[("blocked_countries", "XX")]);
    let invocation = fraud.invoke(order("o-6", 10.0, "DE")).await;
    assert_eq!(invocation.outcome, Ok(()));
    assert!(invocation.published.is_empty());
    assert_eq!(messages(&invocation.logs), ["order o-6 looks fine"]);
}

#[tokio::test]
async fn a_panicking_guest_traps_and_its_panic_message_is_logged() {
    let trap = load(&runtime(), "trap", &[]);
    let invocation = trap.invoke(event("e-1", "x")).await;
    match invocation.outcome {
        Err(InvokeError::Trap(message)) => assert!(message.contains("unreachable"), "{message}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    assert!(
        invocation
            .logs
            .iter()
            .any(|line| line.source == LogSource::Stderr
                && line.message.contains("trap guest refuses event e-1")),
        "{:?}",
        invocation.logs
    );
}

#[tokio::test]
async fn a_spinning_guest_times_out_at_its_deadline() {
    let timeout = Duration::from_millis(50);
    let limits = FunctionLimits {
        timeout,
        ..FunctionLimits::default()
    };
    let spin = load_with(&runtime(), "spin", limits, &[]);
    let invocation = spin.invoke(event("e-2", "x")).await;
    assert_eq!(invocation.outcome, Err(InvokeError::Timeout(timeout)));
    assert!(invocation.duration >= timeout, "{:?}", invocation.duration);
    // Generous for a loaded machine; a missing deadline would never return.
    assert!(
        invocation.duration < timeout * 20,
        "{:?}",
        invocation.duration
    );
}

#[tokio::test]
async fn a_guest_blocked_in_a_host_call_times_out_too() {
    let timeout = Duration::from_millis(50);
    let limits = FunctionLimits {
        timeout,
        ..FunctionLimits::default()
    };
    let spin = load_with(&runtime(), "spin", limits, &[]);
    let invocation = spin.invoke(event("e-sleep", "sleep")).await;
    assert_eq!(invocation.outcome, Err(InvokeError::Timeout(timeout)));
    assert!(
        invocation.duration < timeout * 20,
        "{:?}",
        invocation.duration
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_spinning_guest_leaves_the_executor_free_for_other_tasks() {
    let timeout = Duration::from_millis(200);
    let limits = FunctionLimits {
        timeout,
        ..FunctionLimits::default()
    };
    let spin = load_with(&runtime(), "spin", limits, &[]);
    // On a single-threaded executor the other task can only run if the
    // spinning guest yields.
    let other = tokio::spawn(async { Instant::now() });
    let invocation = spin.invoke(event("e-3", "x")).await;
    let finished = Instant::now();
    let other_ran_at = other.await.unwrap();
    assert_eq!(invocation.outcome, Err(InvokeError::Timeout(timeout)));
    assert!(
        finished.duration_since(other_ran_at) >= timeout / 2,
        "the other task waited for the guest"
    );
}

#[tokio::test]
async fn a_memory_hog_runs_out_of_memory_at_its_limit() {
    let limits = FunctionLimits {
        memory_bytes: 16 << 20,
        ..FunctionLimits::default()
    };
    let memhog = load_with(&runtime(), "memhog", limits, &[]);
    let invocation = memhog.invoke(event("e-4", "x")).await;
    assert_eq!(
        invocation.outcome,
        Err(InvokeError::OutOfMemory {
            limit_bytes: 16 << 20
        })
    );
    assert!(invocation.outcome.unwrap_err().is_retryable());
}

#[tokio::test]
async fn the_memory_cap_is_exact_to_the_page() {
    const LIMIT: usize = 8 << 20;
    let limits = FunctionLimits {
        memory_bytes: LIMIT,
        ..FunctionLimits::default()
    };
    let memhog = load_with(&runtime(), "memhog", limits, &[]);
    let at_cap = memhog.invoke(event("e-1", &format!("grow:{LIMIT}"))).await;
    assert_eq!(
        at_cap.outcome,
        Ok(()),
        "growing to exactly the cap succeeds"
    );
    let page_over = memhog
        .invoke(event("e-2", &format!("grow:{}", LIMIT + (64 << 10))))
        .await;
    assert_eq!(
        page_over.outcome,
        Err(InvokeError::OutOfMemory { limit_bytes: LIMIT })
    );
}

#[tokio::test]
async fn stack_overflows_are_traps_and_the_function_runs_on() {
    let memhog = load(&runtime(), "memhog", &[]);
    // The WebAssembly call stack, bounded by the engine, and the stack a Rust guest
    // keeps in its linear memory, which runs into the memory's start.
    for (how, says) in [("recurse", "stack"), ("recurse-frames", "out of bounds")] {
        let overflow = memhog.invoke(event("e-1", how)).await;
        match &overflow.outcome {
            Err(InvokeError::Trap(message)) => assert!(message.contains(says), "{how}: {message}"),
            other => panic!("{how}: a stack overflow is a trap, not {other:?}"),
        }
        let after = memhog
            .invoke(event("e-2", &format!("grow:{}", 4 << 20)))
            .await;
        assert_eq!(
            after.outcome,
            Ok(()),
            "after {how}, the next invocation runs normally"
        );
    }
}

/// A hand-written guest with one table of `initial` elements: `handle` grows it by the
/// event's receive count and answers `fatal("table.grow refused")` when the growth fails.
fn table_guest(initial: u64) -> Vec<u8> {
    guests::hand_written(&format!(
        r#"(module
  (memory (export "memory") 1)
  (table $table {initial} funcref)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 64) "table.grow refused")
  (func (export "cabi_realloc")
    (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $at i32)
    (local.set $at (i32.and
      (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
      (i32.sub (i32.const 0) (local.get $align))))
    (global.set $heap (i32.add (local.get $at) (local.get $size)))
    (if (i32.gt_u (global.get $heap) (i32.shl (memory.size) (i32.const 16)))
      (then (if (i32.eq
          (memory.grow (i32.add (i32.const 1) (i32.shr_u
            (i32.sub (global.get $heap) (i32.shl (memory.size) (i32.const 16)))
            (i32.const 16))))
          (i32.const -1))
        (then unreachable))))
    (local.get $at))
  (func (export "handle")
    (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i64) (param $grow i32) (result i32)
    (if (i32.eq (table.grow $table (ref.null func) (local.get $grow)) (i32.const -1))
      (then
        (i32.store8 (i32.const 16) (i32.const 1))
        (i32.store8 (i32.const 20) (i32.const 1))
        (i32.store (i32.const 24) (i32.const 64))
        (i32.store (i32.const 28) (i32.const 18))
        (return (i32.const 16))))
    (i32.store8 (i32.const 16) (i32.const 0))
    (i32.const 16))
  (func (export "handle-batch") (param i32 i32) (result i32)
    (i64.store (i32.const 32) (i64.const 0))
    (i32.const 32)))"#
    ))
}

fn load_table_guest(runtime: &Runtime, initial: u64) -> Result<Function, LoadError> {
    runtime.load(
        "tables",
        &table_guest(initial),
        FunctionLimits::default(),
        BTreeMap::new(),
    )
}

fn growing_by(id: &str, elements: u32) -> Event {
    Event {
        receive_count: elements,
        ..event(id, "grow the table")
    }
}

#[tokio::test]
async fn a_table_grown_past_its_bound_is_refused_and_the_function_runs_on() {
    let runtime = runtime();
    let function = load_table_guest(&runtime, 1).expect("a one-element table loads");
    let small = function.invoke(growing_by("e-1", 1_000)).await;
    assert_eq!(
        small.outcome,
        Ok(()),
        "a table of a thousand elements grows"
    );
    // A billion function references: 8 GB if it were allowed.
    let huge = function.invoke(growing_by("e-2", 1_000_000_000)).await;
    assert_eq!(
        huge.outcome,
        Err(InvokeError::Handler {
            retryable: false,
            message: "table.grow refused".into()
        }),
        "the growth fails inside the guest, which sees it and answers"
    );
    let after = function.invoke(growing_by("e-3", 1_000)).await;
    assert_eq!(after.outcome, Ok(()), "the next invocation runs normally");
}

#[tokio::test]
async fn a_component_whose_table_cannot_fit_is_refused_at_load() {
    let runtime = runtime();
    let refused = load_table_guest(&runtime, 100_000_000)
        .expect_err("a table of a hundred million elements is refused");
    let message = refused.to_string();
    assert!(message.contains("table"), "{message}");
    // The runtime is unharmed: a component that fits loads and runs beside it.
    let fits = load_table_guest(&runtime, 1).expect("a one-element table loads");
    assert_eq!(fits.invoke(growing_by("e-1", 10)).await.outcome, Ok(()));
}

#[tokio::test]
async fn sandbox_escapes_are_denied_and_the_host_carries_on() {
    let runtime = runtime();
    let escape = load(&runtime, "escape", &[]);
    let invocation = escape.invoke(event("e-5", "x")).await;
    assert_eq!(invocation.outcome, Ok(()), "logs: {:?}", invocation.logs);
    for what in ["file", "directory", "socket", "dns", "env"] {
        assert!(
            invocation
                .logs
                .iter()
                .any(|line| line.message.starts_with(&format!("{what}: denied"))),
            "{what} not denied: {:?}",
            invocation.logs
        );
    }
    let email = load(&runtime, "email", &[]);
    assert_eq!(email.invoke(order("o-7", 1.0, "DE")).await.outcome, Ok(()));
}

#[tokio::test]
async fn publishes_are_returned_when_the_invocation_succeeds() {
    let publisher = load(&runtime(), "publisher", &[("topic", "audit")]);
    let invocation = publisher.invoke(event("e-6", r#"{"count":3}"#)).await;
    assert_eq!(invocation.outcome, Ok(()));
    let bodies: Vec<&str> = invocation.published.iter().map(text).collect();
    assert_eq!(bodies, ["e-6:0", "e-6:1", "e-6:2"]);
    assert!(
        invocation
            .published
            .iter()
            .all(|publish| publish.topic == "audit")
    );
    assert_eq!(
        invocation.published[2].attributes[0].value,
        AttributeValue::Number("2".into())
    );
    assert_eq!(invocation.discarded_publishes, 0);
}

#[tokio::test]
async fn publishes_are_discarded_when_the_invocation_fails() {
    let publisher = load(&runtime(), "publisher", &[]);
    let invocation = publisher
        .invoke(event("e-7", r#"{"count":3,"fail":true}"#))
        .await;
    assert_eq!(
        invocation.outcome,
        Err(InvokeError::Handler {
            retryable: true,
            message: "event e-7 asked to fail".into()
        })
    );
    assert!(invocation.published.is_empty());
    assert_eq!(invocation.discarded_publishes, 3);
}

#[tokio::test]
async fn publishes_past_the_per_invocation_limit_are_refused_to_the_guest() {
    let publisher = load(&runtime(), "publisher", &[]);
    let asked = MAX_PUBLISHES_PER_INVOCATION + 10;
    let invocation = publisher
        .invoke(event("e-8", &format!(r#"{{"count":{asked}}}"#)))
        .await;
    assert_eq!(invocation.outcome, Ok(()));
    assert_eq!(invocation.published.len(), MAX_PUBLISHES_PER_INVOCATION);
    assert!(
        messages(&invocation.logs).contains(
            &format!("published {MAX_PUBLISHES_PER_INVOCATION} of {asked}, refused 10").as_str()
        ),
        "{:?}",
        invocation.logs
    );
}

struct KnownTopics(&'static [&'static str]);

impl PublishGate for KnownTopics {
    fn check(&self, _function: &str, publish: &Publish) -> Result<(), String> {
        if self.0.contains(&publish.topic.as_str()) {
            Ok(())
        } else {
            Err(format!("topic {} does not exist", publish.topic))
        }
    }
}

#[tokio::test]
async fn the_publish_gate_refuses_an_unknown_topic_to_the_guest_at_once() {
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: TEST_INSTANCES,
        publish_gate: Arc::new(KnownTopics(&["order_flagged"])),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let fraud = load(&runtime, "fraud", &[("flagged_topic", "nowhere")]);
    let invocation = fraud.invoke(order("o-8", 5000.0, "DE")).await;
    assert_eq!(
        invocation.outcome,
        Err(InvokeError::Handler {
            retryable: false,
            message: "cannot publish to nowhere: topic nowhere does not exist".into()
        })
    );
    let fraud = load(&runtime, "fraud", &[]);
    assert_eq!(
        fraud
            .invoke(order("o-9", 5000.0, "DE"))
            .await
            .published
            .len(),
        1
    );
}

#[tokio::test]
async fn a_batch_reports_exactly_the_failing_items() {
    let batch = load(&runtime(), "batch", &[]);
    let bodies = ["ok", "fail-retry", "ok", "fail-fatal", "ok"];
    let events = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| event(&format!("b-{i}"), body))
        .collect();
    let invocation = batch.invoke_batch(events).await;
    let failures = invocation.outcome.unwrap();
    let summary: Vec<(usize, &str, bool)> = failures
        .iter()
        .map(|f| (f.index, f.event_id.as_str(), f.retryable))
        .collect();
    assert_eq!(summary, [(1, "b-1", true), (3, "b-3", false)]);
    assert_eq!(failures[1].message, "item b-3 is poison");
}

#[tokio::test]
async fn a_batch_of_publishers_returns_every_items_publishes() {
    let publisher = load(&runtime(), "publisher", &[]);
    let events = (0..100)
        .map(|i| event(&format!("p-{i}"), r#"{"count":1}"#))
        .collect();
    let invocation = publisher.invoke_batch(events).await;
    assert_eq!(invocation.outcome, Ok(Vec::new()));
    assert_eq!(invocation.published.len(), 100);
    assert_eq!(text(&invocation.published[99]), "p-99:0");
}

#[tokio::test]
async fn a_trap_fails_the_whole_batch() {
    let trap = load(&runtime(), "trap", &[]);
    let invocation = trap
        .invoke_batch(vec![event("t-0", "x"), event("t-1", "y")])
        .await;
    assert!(
        matches!(invocation.outcome, Err(InvokeError::Trap(_))),
        "{:?}",
        invocation.outcome
    );
}

#[tokio::test]
async fn a_batch_over_the_limit_is_refused_without_running_the_guest() {
    let batch = load(&runtime(), "batch", &[]);
    let events = (0..=MAX_BATCH_EVENTS)
        .map(|i| event(&i.to_string(), "ok"))
        .collect();
    let invocation = batch.invoke_batch(events).await;
    let error = invocation.outcome.unwrap_err();
    assert_eq!(
        error,
        InvokeError::BatchTooLarge {
            len: MAX_BATCH_EVENTS + 1,
            max: MAX_BATCH_EVENTS
        }
    );
    assert!(!error.is_retryable());
}

#[test]
fn a_component_importing_an_unsupported_interface_is_refused_naming_it() {
    let component =
        wat::parse_str(r#"(component (import "wasi:http/incoming-handler@0.2.0" (instance)))"#)
            .expect("valid component text");
    let error = runtime()
        .load(
            "http",
            &component,
            FunctionLimits::default(),
            BTreeMap::new(),
        )
        .unwrap_err();
    match error {
        LoadError::UnsupportedImport { import, .. } => {
            assert_eq!(import, "wasi:http/incoming-handler@0.2.0")
        }
        other => panic!("expected an unsupported import, got {other}"),
    }
}

#[test]
fn a_component_importing_the_host_interface_with_wrong_types_is_refused() {
    let component = wat::parse_str(
        r#"(component (import "switchyard:handler/host@0.1.0" (instance (export "log" (func (param "x" u32))))))"#,
    )
    .expect("valid component text");
    let error = runtime()
        .load(
            "wrong",
            &component,
            FunctionLimits::default(),
            BTreeMap::new(),
        )
        .unwrap_err();
    match error {
        LoadError::IncompatibleImports { reason, .. } => {
            assert!(reason.contains("log"), "{reason}")
        }
        other => panic!("expected incompatible imports, got {other}"),
    }
}

#[test]
fn a_component_whose_initial_memory_exceeds_its_cap_is_refused_at_load() {
    // 300 pages of 64 KiB: 18.75 MiB, over a 16 MiB cap.
    let component = wat::parse_str(
        "(component (core module $m (memory 300)) (core instance (instantiate $m)))",
    )
    .expect("valid component text");
    let limits = FunctionLimits {
        memory_bytes: 16 << 20,
        ..FunctionLimits::default()
    };
    let error = runtime()
        .load("big", &component, limits, BTreeMap::new())
        .unwrap_err();
    assert!(matches!(error, LoadError::TooLarge { .. }), "{error}");
}

#[test]
fn a_component_with_more_memories_than_a_pool_slot_holds_is_refused_at_load() {
    let component = wat::parse_str(
        "(component (core module $m (memory 1))
           (core instance (instantiate $m)) (core instance (instantiate $m)) (core instance (instantiate $m)))",
    )
    .expect("valid component text");
    let error = runtime()
        .load(
            "big",
            &component,
            FunctionLimits::default(),
            BTreeMap::new(),
        )
        .unwrap_err();
    assert!(matches!(error, LoadError::Compile { .. }), "{error}");
}

#[test]
fn a_component_without_the_handler_exports_is_refused() {
    let component = wat::parse_str("(component)").expect("valid component text");
    let error = runtime()
        .load(
            "empty",
            &component,
            FunctionLimits::default(),
            BTreeMap::new(),
        )
        .unwrap_err();
    assert!(matches!(error, LoadError::NotAHandler { .. }), "{error}");
}

#[test]
fn a_core_module_is_refused_as_not_a_component() {
    let module = wat::parse_str("(module)").expect("valid module text");
    let error = runtime()
        .load("core", &module, FunctionLimits::default(), BTreeMap::new())
        .unwrap_err();
    assert!(matches!(error, LoadError::NotAComponent { .. }), "{error}");
}

#[test]
fn limits_beyond_the_runtime_maximum_are_refused() {
    let limits = FunctionLimits {
        memory_bytes: usize::MAX,
        concurrency: 0,
        ..FunctionLimits::default()
    };
    let error = runtime()
        .load("email", &guests::bytes("email"), limits, BTreeMap::new())
        .unwrap_err();
    match error {
        LoadError::InvalidLimits { reason, .. } => {
            assert!(
                reason.contains("memory") && reason.contains("concurrency"),
                "{reason}"
            )
        }
        other => panic!("expected invalid limits, got {other}"),
    }
}

fn cached_runtime(dir: &std::path::Path) -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.to_path_buf()),
        max_instances: TEST_INSTANCES,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn a_restarted_runtime_loads_from_the_disk_cache_without_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = guests::bytes("email");

    let first = cached_runtime(dir.path());
    let compiled = first
        .load("email", &bytes, FunctionLimits::default(), BTreeMap::new())
        .unwrap();
    assert!(!compiled.from_cache());
    assert_eq!(
        (first.cache_stats().hits, first.cache_stats().misses),
        (0, 1)
    );
    drop((compiled, first));

    let restarted = cached_runtime(dir.path());
    let cached = restarted
        .load("email", &bytes, FunctionLimits::default(), BTreeMap::new())
        .unwrap();
    assert!(cached.from_cache());
    let stats = restarted.cache_stats();
    assert_eq!((stats.hits, stats.misses, stats.rejected), (1, 0, 0));
    assert_eq!(
        cached.invoke(order("o-10", 1.0, "DE")).await.outcome,
        Ok(())
    );
}

#[tokio::test]
async fn a_corrupt_cache_entry_is_recompiled_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = guests::bytes("email");
    cached_runtime(dir.path())
        .load("email", &bytes, FunctionLimits::default(), BTreeMap::new())
        .unwrap();
    let artifact = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|ext| ext == "cwasm"))
        .expect("an artifact was cached");
    let mut contents = std::fs::read(&artifact).unwrap();
    let middle = contents.len() / 2;
    contents[middle] ^= 0xff;
    std::fs::write(&artifact, contents).unwrap();

    let restarted = cached_runtime(dir.path());
    let function = restarted
        .load("email", &bytes, FunctionLimits::default(), BTreeMap::new())
        .unwrap();
    assert!(!function.from_cache());
    assert_eq!(restarted.cache_stats().rejected, 1);
    assert_eq!(
        function.invoke(order("o-11", 1.0, "DE")).await.outcome,
        Ok(())
    );

    let again = cached_runtime(dir.path());
    again
        .load("email", &bytes, FunctionLimits::default(), BTreeMap::new())
        .unwrap();
    assert_eq!(
        again.cache_stats().hits,
        1,
        "the recompiled entry replaced the corrupt one"
    );
}

#[tokio::test]
async fn a_hot_swap_changes_new_invocations_while_old_ones_keep_their_module() {
    let runtime = runtime();
    let registry = FunctionRegistry::new();
    let load_as = |guest: &str| {
        runtime
            .load(
                "orders",
                &guests::bytes(guest),
                FunctionLimits::default(),
                BTreeMap::new(),
            )
            .unwrap()
    };
    registry.insert("orders", load_as("email"));
    let before = registry.get("orders").unwrap();
    assert_eq!(
        before.invoke(order("o-12", 1.0, "DE")).await.outcome,
        Ok(())
    );

    let replaced = registry
        .insert("orders", load_as("trap"))
        .expect("the email module was deployed");
    let after = registry.get("orders").unwrap();
    assert!(matches!(
        after.invoke(order("o-13", 1.0, "DE")).await.outcome,
        Err(InvokeError::Trap(_))
    ));
    // A holder of the old function (an invocation in flight) still runs the old module.
    assert!(Arc::ptr_eq(&before, &replaced));
    assert_eq!(
        before.invoke(order("o-14", 1.0, "DE")).await.outcome,
        Ok(())
    );
    assert_eq!(registry.names(), ["orders"]);
}

#[tokio::test(flavor = "current_thread")]
async fn an_invocation_in_flight_during_a_hot_swap_finishes_on_the_old_module() {
    let runtime = runtime();
    let registry = FunctionRegistry::new();
    // The old module sleeps in a host call until this deadline: it stays in
    // flight without using the CPU, and only the old module can time out.
    let timeout = Duration::from_secs(1);
    let limits = FunctionLimits {
        timeout,
        ..FunctionLimits::default()
    };
    registry.insert(
        "orders",
        runtime
            .load("orders", &guests::bytes("spin"), limits, BTreeMap::new())
            .unwrap(),
    );
    let email = runtime
        .load(
            "orders",
            &guests::bytes("email"),
            FunctionLimits::default(),
            BTreeMap::new(),
        )
        .unwrap();

    let old = registry.get("orders").unwrap();
    let in_flight = tokio::spawn(async move { old.invoke(event("slow", "sleep")).await });
    // Let the old module start; it returns control once it blocks in its sleep.
    tokio::task::yield_now().await;
    assert!(
        !in_flight.is_finished(),
        "the old invocation is in flight during the swap"
    );

    registry.insert("orders", email);
    let new = registry
        .get("orders")
        .unwrap()
        .invoke(order("o-15", 1.0, "DE"))
        .await;
    assert_eq!(new.outcome, Ok(()));
    assert_eq!(
        in_flight.await.unwrap().outcome,
        Err(InvokeError::Timeout(timeout))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_concurrent_invocations_than_permits_all_complete() {
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: 2,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let limits = FunctionLimits {
        concurrency: 2,
        ..FunctionLimits::default()
    };
    let email = Arc::new(load_with(&runtime, "email", limits, &[]));
    let mut invocations = tokio::task::JoinSet::new();
    for i in 0..32 {
        let email = email.clone();
        invocations.spawn(async move { email.invoke(order(&format!("c-{i}"), 1.0, "DE")).await });
    }
    let mut completed = 0;
    while let Some(invocation) = invocations.join_next().await {
        assert_eq!(invocation.unwrap().outcome, Ok(()));
        completed += 1;
    }
    assert_eq!(completed, 32);
}
