//! A deprovision that overtakes a Kubernetes provision on another host.

use super::*;

/// Deletes a namespace when dropped (also when the test fails).
struct NamespaceGuard<'k>(&'k Kube, String);

impl Drop for NamespaceGuard<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .raw("DELETE", &format!("/api/v1/namespaces/{}", self.1), None);
    }
}

/// A deprovision that arrives (on another host) while the provision's first step is still
/// applying manifests must not tear down only what exists at that moment: it is refused
/// with 422 ConcurrencyError until the step has finished, then deletes everything.
#[test]
fn a_deprovision_racing_a_kubernetes_provision_leaves_no_object_behind() {
    let _serial = serial();
    let c = cluster();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let options = Options {
        catalog: Some(catalog_dir(dir.path(), true)),
        runtime_config: Some(runtime_config(dir.path(), &redis.url(), Some(c))),
        ..Options::default()
    }
    .env("SPIN_VARIABLE_KUBERNETES_API_URL", &c.api_url)
    .env("SPIN_VARIABLE_KUBERNETES_TOKEN", &c.admin_token);
    let hosts = start_hosts(2, &options);
    let plan = hosts[0].catalog().plan_named("cache").expect("cache plan");
    let k = c.admin();
    let ns = format!("e2e-so-{}", &new_id()[..8]);
    k.create_namespace(&ns);
    let _cleanup = NamespaceGuard(&k, ns.clone());
    let info = KubeInfo {
        plan: "cache".into(),
        namespace: ns.clone(),
    };
    let mut leaks = Vec::new();
    for delay in (0..=150).step_by(10) {
        let iid = new_id();
        let body = kube_body(&plan, Some(&ns), json!({}));
        let (provision, deprovision) = thread::scope(|s| {
            let p = s.spawn(|| hosts[0].provision(&iid, &body, true));
            thread::sleep(Duration::from_millis(delay));
            let d = hosts[1].deprovision(&iid, &plan, true);
            (p.join().unwrap(), d)
        });
        provision.expect(202);
        // Too early (no record yet: 410), or while the provision's step is still applying
        // (422 ConcurrencyError): deprovision again, as a platform would.
        let mut deprovision = deprovision;
        let retry_until = Instant::now() + Duration::from_secs(40);
        while matches!(deprovision.status, 410 | 422) && Instant::now() < retry_until {
            thread::sleep(Duration::from_millis(100));
            deprovision = hosts[1].deprovision(&iid, &plan, true);
        }
        let op = deprovision.expect(202).operation();
        let waited = Instant::now();
        let end = hosts[0].wait_instance_operation(&iid, &op);
        let waited = waited.elapsed();
        assert!(
            end.status == 410 || end.json["state"] == "succeeded",
            "{}",
            end.body
        );
        hosts[1]
            .instance_last_operation(&iid, Some(&op))
            .expect(410);
        thread::sleep(Duration::from_secs(1));
        let left: BTreeMap<_, _> = instance_objects(&k, &iid, &info)
            .into_iter()
            .filter(|(_, names)| !names.is_empty())
            .collect();
        eprintln!(
            "deprovision {delay} ms after provision: deleted after {waited:?}, objects left {left:?}"
        );
        if !left.is_empty() {
            leaks.push(format!(
                "deprovision sent {delay} ms after the provision, which ended as {}, yet {left:?} remain",
                end.body
            ));
        }
    }
    assert!(
        leaks.is_empty(),
        "objects of deprovisioned instances remain:\n{}",
        leaks.join("\n")
    );
}
