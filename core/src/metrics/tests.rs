use super::*;
use crate::env::TestEnv;
use crate::kv::MemoryKv;
use crate::outbound::MapConfig;

#[test]
fn series_keys_keep_any_label_value() {
    let labels = [("plan_id", "a/b?c=d&e f"), ("service_id", "ünï")];
    let key = series_key(names::STARTED, &labels);
    let (name, parsed) = parse_series_key(&key).unwrap();
    assert_eq!(name, names::STARTED);
    assert_eq!(
        parsed,
        vec![
            ("plan_id".to_string(), "a/b?c=d&e f".to_string()),
            ("service_id".to_string(), "ünï".to_string())
        ]
    );
}

#[test]
fn a_counter_is_registered_once_however_often_it_grows() {
    let kv = MemoryKv::default();
    let env = TestEnv::at(1_000);
    let metrics = Metrics::new(&kv, &env, &MapConfig::default());
    for _ in 0..5 {
        metrics.backend_failure("kubernetes", OperationKind::Provision, true);
    }
    metrics.backend_failure("kubernetes", OperationKind::Provision, false);
    assert_eq!(series_index().len(&kv).unwrap(), 2);
    let key = series_key(
        names::BACKEND_FAILURES,
        &[
            ("backend", "kubernetes"),
            ("kind", "provision"),
            ("failure", "transient"),
        ],
    );
    assert_eq!(kv.get(&key).unwrap().as_deref(), Some(&b"5"[..]));
}

#[test]
fn counting_can_be_turned_off() {
    let kv = MemoryKv::default();
    let env = TestEnv::at(1_000);
    let off = MapConfig([("metrics".to_string(), "off".to_string())].into());
    Metrics::new(&kv, &env, &off).backend_failure("bosh", OperationKind::Update, true);
    assert!(kv.keys().is_empty());
}

#[test]
fn a_store_failure_is_logged_not_raised() {
    let kv = MemoryKv::default();
    let env = TestEnv::at(1_000);
    kv.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    Metrics::new(&kv, &env, &MapConfig::default()).backend_failure(
        "bosh",
        OperationKind::Update,
        true,
    );
    assert!(env.log.lock().unwrap()[0].starts_with("metrics not counted"));
}
