//! The operator API through HTTP against `spin-osb up`: its own credentials (refused
//! entirely while unset), listing with filters and pages, one instance with its bindings,
//! and never a secret.

use spin_osb_e2e::{new_id, Broker, Options, Resp};

const OPERATOR_PASSWORD: &str = "operator-e2e-password";

fn broker() -> Broker {
    Broker::start_with_options(
        Options::default().env("SPIN_VARIABLE_OPERATOR_PASSWORD", OPERATOR_PASSWORD),
    )
}

fn operator(b: &Broker, path: &str) -> Resp {
    b.operator_request("GET", path, OPERATOR_PASSWORD).send()
}

fn ids(listing: &Resp) -> Vec<String> {
    listing.json["instances"]
        .as_array()
        .unwrap_or_else(|| panic!("no instances: {}", listing.body))
        .iter()
        .map(|i| i["instance_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn operators_list_and_inspect_instances_with_their_own_credentials() {
    let b = broker();
    let plans = b.plans();
    let sync = &plans.sync;
    // Whatever finding the plans left behind comes first.
    let mut expected = ids(&operator(&b, "/operator/instances").expect(200));
    let mut created = Vec::new();
    for _ in 0..3 {
        let iid = new_id();
        b.provision(
            &iid,
            &sync.provision_body(sync.provision_parameters()),
            false,
        )
        .expect(201);
        created.push(iid);
    }
    expected.extend(created.iter().cloned());
    let bound = &created[0];
    let bid = new_id();
    let binding = b
        .bind(bound, &bid, &sync.bind_body(sync.bind_parameters()), false)
        .expect(201);
    b.deprovision(&created[2], sync, false).expect(200);
    let ours = |listing: &Resp| -> Vec<String> {
        ids(listing)
            .into_iter()
            .filter(|id| created.contains(id))
            .collect()
    };

    // Listing: oldest first, in pages of at most `limit`, filtered.
    let all = operator(&b, "/operator/instances").expect(200);
    assert_eq!(ids(&all), expected, "{}", all.body);
    let mut paged = Vec::new();
    let mut path = "/operator/instances?limit=2".to_string();
    loop {
        let page = operator(&b, &path).expect(200);
        assert!(ids(&page).len() <= 2, "{}", page.body);
        paged.extend(ids(&page));
        match page.json["next"].as_str() {
            Some(next) => path = format!("/operator/instances?limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(paged, expected);
    let ready = operator(&b, "/operator/instances?status=ready").expect(200);
    assert_eq!(ours(&ready), created[..2]);
    let by_plan = operator(
        &b,
        &format!(
            "/operator/instances?plan_id={}&status=deleted",
            sync.plan_id
        ),
    )
    .expect(200);
    assert_eq!(ours(&by_plan), created[2..]);
    assert!(ids(&by_plan).iter().all(|id| !created[..2].contains(id)));

    // One instance: history and bindings, never a secret.
    let shown = operator(&b, &format!("/operator/instances/{bound}")).expect(200);
    assert_eq!(shown.json["bindings"][0]["binding_id"], bid.as_str());
    assert_eq!(shown.json["bindings"][0]["status"], "ready");
    for (name, secret) in binding.json["credentials"].as_object().unwrap() {
        // Ids are not secrets (the sync plan's credentials carry the instance id).
        let not_an_id = |s: &&str| *s != bound.as_str() && *s != bid.as_str();
        if let Some(secret) = secret.as_str().filter(|s| s.len() >= 8).filter(not_an_id) {
            assert!(
                !shown.body.contains(secret),
                "credential {name} leaks: {}",
                shown.body
            );
        }
    }
    operator(&b, "/operator/instances/no-such-instance").expect(404);

    // Its own credentials only.
    let platform = b.request("GET", "/operator/instances").version(None).send();
    assert_eq!(platform.status, 401, "{}", platform.body);
    let anonymous = b
        .request("GET", "/operator/instances")
        .no_auth()
        .version(None)
        .send();
    assert_eq!(anonymous.status, 401);
    // And the platform's API does not answer the operator's credentials.
    let catalog = b
        .request("GET", "/v2/catalog")
        .auth("operator", OPERATOR_PASSWORD)
        .send();
    assert_eq!(catalog.status, 401);
}

#[test]
fn without_an_operator_password_the_operator_api_refuses_everything() {
    let b = Broker::start();
    let r = b
        .request("GET", "/operator/instances")
        .auth("operator", "")
        .version(None)
        .send();
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.json["description"]
            .as_str()
            .is_some_and(|d| d.contains("operator_password")),
        "{}",
        r.body
    );
}
