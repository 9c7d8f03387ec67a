//! `infra/kubernetes/`: what the API stores, what it refuses, and what `rbac.yaml` grants.

use super::*;

#[test]
fn every_manifest_of_infra_kubernetes_is_accepted_and_stored_as_written() {
    let manifests = applied();
    let k = cluster().admin();
    let mut kinds: Vec<&str> = manifests.iter().map(Manifest::kind).collect();
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterServiceBroker",
            "Namespace",
            "Secret",
            "Service",
            "ServiceAccount",
            "SpinApp"
        ]
    );
    for m in manifests {
        assert!(
            m.object["metadata"]["labels"]["app.kubernetes.io/name"] == "spin-osb",
            "{} carries app.kubernetes.io/name=spin-osb",
            m.what()
        );
    }

    // The references between the objects hold.
    let app = &find(manifests, "SpinApp", "spin-osb").object;
    let namespace = app["metadata"]["namespace"].as_str().unwrap();
    let secret_key = |name: &str, key: &str| {
        let secret = find(manifests, "Secret", name);
        assert_eq!(secret.object["metadata"]["namespace"], namespace);
        if secret.object["type"] == "kubernetes.io/service-account-token" {
            assert_eq!(key, "token", "the token controller fills `token`");
        } else {
            assert!(
                secret.object["stringData"].get(key).is_some(),
                "Secret {name} has key {key}"
            );
        }
    };
    let mut variables: Vec<&str> = Vec::new();
    for variable in app["spec"]["variables"].as_array().unwrap() {
        variables.push(variable["name"].as_str().unwrap());
        if let Some(r) = variable["valueFrom"]["secretKeyRef"].as_object() {
            secret_key(r["name"].as_str().unwrap(), r["key"].as_str().unwrap());
        }
    }
    // The variables spin.toml declares (the required password among them).
    let manifest = read(&repo_root().join("spin.toml"));
    for variable in &variables {
        assert!(
            manifest.contains(&format!("\n{variable} = ")),
            "spin.toml declares variable {variable}"
        );
    }
    // ... and every variable spin.toml requires is given.
    let required: Vec<&str> = manifest
        .split("\n[variables]\n")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("spin.toml [variables]")
        .lines()
        .filter(|l| l.contains("required = true"))
        .filter_map(|l| l.split_once(" = ").map(|(name, _)| name.trim()))
        .collect();
    assert!(required.contains(&"broker_password"), "{required:?}");
    for variable in &required {
        assert!(
            variables.contains(variable),
            "the SpinApp sets required variable {variable}"
        );
    }
    assert!(variables.contains(&"kubernetes_token"));
    secret_key(
        app["spec"]["runtimeConfig"]["loadFromSecret"]
            .as_str()
            .unwrap(),
        "runtime-config.toml",
    );
    // The mounted CA is the cluster's (kube-controller-manager publishes kube-root-ca.crt).
    let volume = &app["spec"]["volumes"][0];
    let config_map = volume["configMap"]["name"].as_str().unwrap();
    let live = eventually("the root CA ConfigMap", WAIT, || {
        k.get(&format!(
            "/api/v1/namespaces/{namespace}/configmaps/{config_map}"
        ))
    });
    let key = volume["configMap"]["items"][0]["key"].as_str().unwrap();
    assert_eq!(
        live["data"][key].as_str().map(str::trim),
        Some(read(&cluster().ca_file).trim()),
        "{config_map}/{key} is the CA of the API server"
    );
    let mounted = format!(
        "{}/{}",
        app["spec"]["volumeMounts"][0]["mountPath"]
            .as_str()
            .unwrap(),
        volume["configMap"]["items"][0]["path"].as_str().unwrap()
    );
    let runtime_config = find(manifests, "Secret", "spin-osb-runtime-config").object["stringData"]
        ["runtime-config.toml"]
        .as_str()
        .unwrap();
    assert!(
        runtime_config.contains(&format!("ca_roots_file = \"{mounted}\"")),
        "the runtime config trusts the mounted CA {mounted}"
    );
    // The Service selects the SpinApp's pods.
    let service = &find(manifests, "Service", "spin-osb-broker").object;
    for (label, value) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&app["spec"]["podLabels"][label], value, "podLabels.{label}");
    }
    // Service Catalog authenticates with the broker's own credentials.
    let broker = &find(manifests, "ClusterServiceBroker", "spin-osb").object;
    let secret_ref = &broker["spec"]["authInfo"]["basic"]["secretRef"];
    assert_eq!(secret_ref["namespace"], namespace);
    let auth = find(manifests, "Secret", secret_ref["name"].as_str().unwrap());
    assert_eq!(auth.object["type"], "kubernetes.io/basic-auth");
    for variable in app["spec"]["variables"].as_array().unwrap() {
        if variable["name"] == "broker_password" {
            assert_eq!(variable["valueFrom"]["secretKeyRef"]["name"], auth.name());
        }
    }
    assert!(broker["spec"]["url"]
        .as_str()
        .unwrap()
        .starts_with(&format!(
            "http://{}.{namespace}.svc",
            service["metadata"]["name"].as_str().unwrap()
        )));
    // The binding names the ServiceAccount whose token the SpinApp uses.
    let binding = &find(manifests, "ClusterRoleBinding", "spin-osb-broker").object;
    let subject = &binding["subjects"][0];
    let account = find(
        manifests,
        "ServiceAccount",
        subject["name"].as_str().unwrap(),
    );
    assert_eq!(
        account.object["metadata"]["namespace"],
        subject["namespace"]
    );
    let token_secret = manifests
        .iter()
        .find(|m| m.object["type"] == "kubernetes.io/service-account-token")
        .unwrap();
    assert_eq!(
        token_secret.object["metadata"]["annotations"]["kubernetes.io/service-account.name"],
        account.name()
    );
    assert!(!service_account_token(&k).is_empty());
}

/// A field the CRD's structural schema does not declare never reaches storage: the
/// server-side apply of kube-apiserver 1.20 either refuses it (500 "field not declared in
/// schema", as for `spec.authinfo`) or prunes it silently (as for a scalar `spec.replica`).
/// A pruned typo would go unnoticed but for the exact-storage check of [`apply_exactly`],
/// which every manifest passes. Type errors and missing required fields are refused (422).
#[test]
fn a_misspelt_field_in_a_custom_resource_is_caught() {
    let manifests = applied();
    let k = cluster().admin();
    for (kind, name, typo_path, typo_value) in [
        ("SpinApp", "spin-osb", "replica", json!(3)),
        (
            "ClusterServiceBroker",
            "spin-osb",
            "authinfo",
            json!({"basic": {}}),
        ),
    ] {
        let original = find(manifests, kind, name);
        let mut typo = original.clone();
        let copy = format!("{name}-typo-{}", &new_id()[..8]);
        typo.object["metadata"]["name"] = json!(copy);
        typo.object["spec"][typo_path] = typo_value;
        typo.path = api_path(&k, &typo.object, "typo");
        let (status, stored) = apply_raw(&k, &typo.path, &typo.object);
        match status {
            // Refused outright: 1.20's server-side apply cannot build a typed patch for
            // some undeclared fields (500 "field not declared in schema"); newer servers
            // with strict field validation answer 400/422.
            400 | 422 | 500 => assert!(
                stored.to_string().contains(typo_path),
                "{kind}: refused for the undeclared field: {stored}"
            ),
            // Or accepted with the field pruned.
            200 | 201 => {
                assert!(
                    stored["spec"].get(typo_path).is_none(),
                    "{kind}: an undeclared field is never stored: {stored}"
                );
                let problem = missing(&as_stored(&typo.object), &stored, "")
                    .expect("the exact-storage check reports the dropped field");
                assert!(problem.contains(typo_path), "{problem}");
                k.delete(&typo.path);
            }
            other => panic!("{kind}: unexpected {other}: {stored}"),
        }
    }

    // A misspelt required field and a wrong type are refused (422).
    let app = find(manifests, "SpinApp", "spin-osb");
    for (label, edit) in [
        ("imag instead of image", ("imag", Some("image"))),
        ("replicas as a string", ("replicas", None)),
    ] {
        let mut bad = app.clone();
        bad.object["metadata"]["name"] = json!(format!("spin-osb-bad-{}", &new_id()[..8]));
        let spec = bad.object["spec"].as_object_mut().unwrap();
        match edit {
            (new, Some(old)) => {
                let value = spec.remove(old).unwrap();
                spec.insert(new.to_string(), value);
            }
            (field, None) => {
                spec.insert(field.to_string(), json!("two"));
            }
        }
        bad.path = api_path(&k, &bad.object, label);
        let (status, body) = apply_raw(&k, &bad.path, &bad.object);
        assert_eq!(status, 422, "{label}: {body}");
    }
    let broker = find(manifests, "ClusterServiceBroker", "spin-osb");
    let mut bad = broker.clone();
    bad.object["metadata"]["name"] = json!(format!("spin-osb-bad-{}", &new_id()[..8]));
    bad.object["spec"]["relistBehavior"] = json!("Sometimes");
    bad.path = api_path(&k, &bad.object, "relistBehavior");
    let (status, body) = apply_raw(&k, &bad.path, &bad.object);
    assert_eq!(status, 422, "an unknown relistBehavior: {body}");
}

/// The broker with rbac.yaml's grants (the real ServiceAccount token) and the shipped
/// client-TLS runtime config runs every Kubernetes plan of the default catalog through its
/// whole life; the same token can do nothing else worth having.
#[test]
fn rbac_yaml_is_enough_for_the_default_catalogs_kubernetes_plans_and_grants_no_more() {
    applied();
    let c = cluster();
    let admin = c.admin();
    let token = service_account_token(&admin);

    let dir = tempdir();
    let text = substitute(
        &read(&infra("spin/runtime-config-kubernetes-tls.toml")),
        &[
            ("\"kubernetes.default.svc\"", "\"127.0.0.1\""),
            ("/etc/spin-osb/kube-ca.pem", c.ca_file.to_str().unwrap()),
        ],
        "runtime-config-kubernetes-tls.toml",
    );
    let b = Broker::start_with_options(
        Options {
            runtime_config: Some(write(dir.path(), "runtime-config.toml", &text)),
            ..Options::default()
        }
        .env("SPIN_VARIABLE_KUBERNETES_API_URL", c.api_url.as_str())
        .env("SPIN_VARIABLE_KUBERNETES_TOKEN", token.as_str()),
    );

    // Every shipped Kubernetes plan: Deployment and StatefulSet kinds alike.
    let catalog = b.catalog();
    for (service, name) in [("redis", "small"), ("redis", "ha"), ("postgresql", "small")] {
        let plan = plan_of(&catalog, service, name);
        let what = format!("{service}/{name}");
        let iid = new_id();
        let ns = format!("osb-{iid}");
        let context = json!({"platform": "kubernetes", "clusterid": "e2e"});
        let body = json!({"service_id": plan.service_id, "plan_id": plan.plan_id,
            "organization_guid": "e2e", "space_guid": "default", "context": context});
        let op = b.provision(&iid, &body, true).expect(202).operation();
        let done = eventually(&format!("{what}: the provision to finish"), WAIT, || {
            admin.make_pods_ready(&ns);
            let resp = b.instance_last_operation(&iid, Some(&op));
            assert_eq!(resp.status, 200, "{what}: {}", resp.body);
            (resp.json["state"] != "in progress").then_some(resp.json)
        });
        assert_eq!(done["state"], "succeeded", "{what}: {done}");

        let bid = new_id();
        let bind_body = json!({"service_id": plan.service_id, "plan_id": plan.plan_id});
        let bound = b.bind(&iid, &bid, &bind_body, false).expect(201);
        let credentials = &bound.json["credentials"];
        assert!(
            credentials["host"]
                .as_str()
                .unwrap_or_default()
                .contains(&ns),
            "{what}: {credentials}"
        );
        assert!(credentials["password"]
            .as_str()
            .is_some_and(|p| p.len() >= 32));
        b.unbind(&iid, &bid, &plan, false).expect(200);

        let op = b.deprovision(&iid, &plan, true).expect(202).operation();
        let last = b.wait_instance_operation(&iid, &op);
        assert!(
            last.status == 410 || last.json["state"] == "succeeded",
            "{what}: {}",
            last.body
        );
        assert_eq!(b.instance_last_operation(&iid, Some(&op)).status, 410);
        assert!(
            admin.get(&format!("/api/v1/namespaces/{ns}")).is_none(),
            "{what}: the instance namespace is gone"
        );
    }
    assert!(!b.output.text().contains(&token), "tokens are never logged");

    // Nothing beyond the four verbs on the five kinds.
    let broker = Kube::new(&c.api_url, &c.ca_file, &token);
    let configmap = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe"}});
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "spin-osb-escalate"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "spin-osb", "namespace": "spin-osb"}]
    });
    for (method, path, body) in [
        ("GET", "/api/v1/nodes", None),
        ("GET", "/api/v1/namespaces", None),
        ("GET", "/api/v1/secrets", None),
        ("GET", "/api/v1/namespaces/kube-system/secrets", None),
        ("GET", "/api/v1/namespaces/spin-osb/pods", None),
        (
            "GET",
            "/apis/apps/v1/namespaces/kube-system/deployments",
            None,
        ),
        (
            "GET",
            "/api/v1/namespaces/kube-system/configmaps/kube-root-ca.crt",
            None,
        ),
        (
            "POST",
            "/api/v1/namespaces/spin-osb/configmaps",
            Some(("application/json", configmap)),
        ),
        (
            "PUT",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/spin-osb-escalate",
            Some(("application/json", binding)),
        ),
        (
            "PATCH",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/spin-osb-broker",
            Some(("application/merge-patch+json", json!({"rules": []}))),
        ),
    ] {
        let (status, answer) = broker
            .raw(method, path, body)
            .expect("the API is reachable");
        assert_eq!(status, 403, "{method} {path} must be forbidden: {answer}");
    }
}
