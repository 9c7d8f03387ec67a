//! `infra/spin/*.toml` and the runtime config of `infra/kubernetes/secrets.example.yaml`.

use super::*;

fn broker_with_runtime_config(config: PathBuf) -> Broker {
    Broker::start_with_options(Options {
        runtime_config: Some(config),
        ..Options::default()
    })
}

#[test]
fn the_sqlite_runtime_config_keeps_the_state_at_its_path() {
    let dir = tempdir();
    let state = dir.path().join("var-lib-spin-osb");
    std::fs::create_dir(&state).unwrap();
    let file = infra("spin/runtime-config-sqlite.toml");
    let text = substitute(
        &read(&file),
        &[("/var/lib/spin-osb", state.to_str().unwrap())],
        "runtime-config-sqlite.toml",
    );
    let b = broker_with_runtime_config(write(dir.path(), "runtime-config.toml", &text));
    let iid = provision_sync(&b);
    let db = state.join("sqlite_key_value.db");
    assert!(
        sqlite_has_key(&db, &instance_key(&iid)),
        "the instance is stored in {}",
        db.display()
    );
    assert!(
        b.instance_record_keys(&iid).is_empty(),
        "and not in the default <state-dir> store"
    );
}

#[test]
fn the_redis_runtime_config_keeps_the_state_in_redis() {
    let file = infra("spin/runtime-config-redis.toml");
    let original = read(&file);
    // The file's own URL shape (password, database) is kept: only the address changes,
    // and the server gets the placeholder password.
    let redis = RedisServer::start_with_password("CHANGE-ME");
    let dir = tempdir();
    let address = format!("127.0.0.1:{}", redis.port());
    let text = substitute(
        &original,
        &[("redis.example.internal:6379", &address)],
        "runtime-config-redis.toml",
    );
    assert!(text.contains(&format!("redis://:CHANGE-ME@{address}/0")));
    let b = broker_with_runtime_config(write(dir.path(), "runtime-config.toml", &text));
    let iid = provision_sync(&b);
    let record = redis.command(&format!("GET {}", instance_key(&iid)));
    assert!(
        record.contains(&iid),
        "the instance record is in Redis: {record:?}"
    );
    assert!(b.instance_record_keys(&iid).is_empty(), "not in SQLite");
}

#[test]
fn the_client_tls_runtime_config_is_accepted_with_the_bosh_entry_enabled() {
    let c = cluster();
    let file = infra("spin/runtime-config-kubernetes-tls.toml");
    let original = read(&file);
    // Every component that calls a backend is listed, and only those.
    for component in KUBE_COMPONENTS {
        assert!(
            original.contains(&format!("\"{component}\"")),
            "{component} is missing from {}",
            file.display()
        );
    }
    // Uncomment the example entry of a second cluster and the BOSH director's (their lines
    // are commented as `#key`).
    let uncommented: String = original
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if !rest.starts_with([' ', '#']) && !rest.is_empty() => rest,
            _ => line,
        })
        .map(|line| format!("{line}\n"))
        .collect();
    assert_eq!(
        uncommented
            .lines()
            .filter(|l| *l == "[[client_tls]]")
            .count(),
        3,
        "the Kubernetes entry and the (commented) second-cluster and BOSH director entries"
    );
    let ca = c.ca_file.to_str().unwrap();
    let text = substitute(
        &uncommented,
        &[
            ("/etc/spin-osb/kube-ca.pem", ca),
            ("/etc/spin-osb/east-ca.pem", ca),
            ("/etc/spin-osb/bosh-director-ca.pem", ca),
        ],
        "runtime-config-kubernetes-tls.toml",
    );
    let dir = tempdir();
    let b = broker_with_runtime_config(write(dir.path(), "runtime-config.toml", &text));
    b.get("/v2/catalog").expect(200);
    provision_sync(&b);
}

#[test]
fn the_runtime_config_secret_for_spinkube_is_accepted() {
    let docs = yaml_docs(&infra("kubernetes/secrets.example.yaml"));
    let secret = docs
        .iter()
        .find(|d| d["metadata"]["name"] == "spin-osb-runtime-config")
        .expect("Secret spin-osb-runtime-config");
    let original = secret["stringData"]["runtime-config.toml"]
        .as_str()
        .expect("key runtime-config.toml (the key SpinKube mounts)");
    let redis = RedisServer::start_with_password("CHANGE-ME");
    let address = format!("127.0.0.1:{}", redis.port());
    let c = cluster();
    let text = substitute(
        original,
        &[
            ("redis.spin-osb.svc.cluster.local:6379", &address),
            ("/etc/spin-osb/kube-ca.pem", c.ca_file.to_str().unwrap()),
        ],
        "secrets.example.yaml's runtime-config.toml",
    );
    let dir = tempdir();
    let b = broker_with_runtime_config(write(dir.path(), "runtime-config.toml", &text));
    let iid = provision_sync(&b);
    assert!(redis
        .command(&format!("GET {}", instance_key(&iid)))
        .contains(&iid));
}
