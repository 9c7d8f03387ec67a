use super::*;
use serde_json::json;

fn ctx() -> TemplateContext {
    TemplateContext::new(
        "11111111-2222-3333-4444-555555555555",
        SecretSeed::new(b"seed-one"),
    )
    .with_service("svc-id", "svc")
    .with_plan("plan-id", "small")
}

const INJECTION: &str = "x\n  evil: true\n---\nkind: Secret";

#[test]
fn text_without_template_syntax_renders_to_itself() {
    let template = json!({
        "plain": "https://x.example/{id}/}}\n",
        "list": ["a } b", "%}", 3],
        "templated": "{{ instance_id }}",
        "comment": "a{# gone #}b",
    });
    let rendered = render_value(&template, &ctx()).unwrap();
    assert_eq!(rendered["plain"], json!("https://x.example/{id}/}}\n"));
    assert_eq!(rendered["list"], json!(["a } b", "%}", 3]));
    assert_eq!(
        rendered["templated"],
        json!("11111111-2222-3333-4444-555555555555")
    );
    assert_eq!(rendered["comment"], json!("ab"));
    assert_eq!(
        render_str("no { syntax }\n", &ctx()).unwrap(),
        "no { syntax }\n"
    );
}

#[test]
fn an_injection_attempt_in_leaf_mode_stays_one_string() {
    let ctx = ctx().with_parameters(json!({ "name": INJECTION }));
    let out = render_value(&json!({ "a": { "b": ["{{ parameters.name }}"] } }), &ctx).unwrap();
    assert_eq!(out, json!({ "a": { "b": [INJECTION] } }));
}

#[test]
fn an_injection_attempt_in_manifest_mode_is_the_literal_value() {
    let ctx = ctx().with_parameters(json!({ "name": INJECTION }));
    let docs = render_yaml_documents(
        "kind: ConfigMap\ndata:\n  plain: {{ parameters.name }}\n  quoted: \"{{ parameters.name }}\"\n  single: '{{ parameters.name }}'\n  inline: pre-{{ parameters.name }}-post\n  block: |\n    {{ parameters.name }}\n  {{ parameters.name }}: key\n",
        &ctx,
    )
    .unwrap();
    assert_eq!(docs.len(), 1, "{docs:?}");
    let data = &docs[0]["data"];
    assert_eq!(data["plain"], INJECTION);
    assert_eq!(data["quoted"], INJECTION);
    assert_eq!(data["single"], INJECTION);
    assert_eq!(data["inline"], format!("pre-{INJECTION}-post"));
    assert_eq!(data["block"], format!("{INJECTION}\n"));
    assert_eq!(data[INJECTION], "key");
    assert!(docs[0].get("evil").is_none() && data.get("evil").is_none());
    assert_eq!(data.as_object().unwrap().len(), 6);
}

#[test]
fn manifest_values_keep_their_types() {
    let ctx = ctx().with_parameters(json!({
        "replicas": 3, "ratio": 0.5, "on": true, "labels": { "a": "b" }, "digits": "5"
    }));
    let docs = render_yaml_documents(
        "replicas: {{ parameters.replicas }}\nratio: {{ parameters.ratio }}\non: {{ parameters.on }}\nquoted: \"{{ parameters.replicas }}\"\nlabels: {{ parameters.labels }}\ndigits: {{ parameters.digits }}\nnothing: {{ none }}\nname: redis-{{ instance_id[:8] }}\n",
        &ctx,
    )
    .unwrap();
    assert_eq!(
        docs[0],
        json!({
            "replicas": 3, "ratio": 0.5, "on": true, "quoted": "3",
            "labels": { "a": "b" }, "digits": "5", "nothing": null,
            "name": "redis-11111111"
        })
    );
}

#[test]
fn a_manifest_has_as_many_documents_as_it_renders() {
    let docs = render_yaml_documents(
        "a: 1\n---\n{% if false %}b: 2{% endif %}\n---\nc: {{ plan.name }}\n",
        &ctx(),
    )
    .unwrap();
    assert_eq!(docs, vec![json!({ "a": 1 }), json!({ "c": "small" })]);
}

#[test]
fn a_manifest_that_renders_invalid_yaml_says_so() {
    let error = render_yaml_documents("a: [1\n", &ctx()).unwrap_err();
    assert!(error.to_string().contains("not valid YAML"), "{error}");
}

#[test]
fn reserved_characters_in_a_manifest_source_are_refused() {
    let error = render_yaml_documents("a: \u{E000}0\u{E001}\n", &ctx()).unwrap_err();
    assert!(error.to_string().contains("reserved"), "{error}");
}

#[test]
fn secret_is_stable_for_the_same_seed_and_name() {
    let a = render_str("{{ secret('password') }}", &ctx()).unwrap();
    let b = render_str("{{ secret('password') }}", &ctx()).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len(), DEFAULT_SECRET_LENGTH);
    assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
}

#[test]
fn secret_differs_across_seeds_names_and_lengths() {
    let base = render_str("{{ secret('password') }}", &ctx()).unwrap();
    let other_name = render_str("{{ secret('admin') }}", &ctx()).unwrap();
    let other_seed = TemplateContext::new("x", SecretSeed::new(b"seed-two"));
    let other_seed = render_str("{{ secret('password') }}", &other_seed).unwrap();
    let longer = render_str("{{ secret('password', 48) }}", &ctx()).unwrap();
    assert_ne!(base, other_name);
    assert_ne!(base, other_seed);
    assert_eq!(longer.len(), 48);
    assert!(!longer.starts_with(&base));
}

#[test]
fn secret_refuses_a_short_length() {
    let error = render_str("{{ secret('p', 4) }}", &ctx()).unwrap_err();
    assert!(error.to_string().contains("length must be"), "{error}");
}

#[test]
fn uuid_is_stable_and_well_formed() {
    let a = render_str("{{ uuid('db') }}", &ctx()).unwrap();
    assert_eq!(a, render_str("{{ uuid('db') }}", &ctx()).unwrap());
    assert_ne!(a, render_str("{{ uuid('other') }}", &ctx()).unwrap());
    let parts: Vec<_> = a.split('-').map(str::len).collect();
    assert_eq!(parts, [8, 4, 4, 4, 12]);
    assert_eq!(&a[14..15], "4");
}

#[test]
fn the_seed_is_not_visible_to_templates() {
    let out = render_str("{{ secret }}", &ctx()).unwrap();
    assert!(!out.contains("seed-one"), "{out}");
}

#[test]
fn an_undefined_variable_is_an_error_naming_it() {
    let error = render_str("x{{ binding_id }}", &ctx()).unwrap_err();
    assert!(error.to_string().contains("binding_id"), "{error}");
    let error = render_str("{{ parameters.missing.deeper }}", &ctx()).unwrap_err();
    assert!(error.to_string().contains("missing"), "{error}");
}

#[test]
fn default_covers_a_missing_parameter() {
    let out = render_str("{{ parameters.host | default('localhost') }}", &ctx()).unwrap();
    assert_eq!(out, "localhost");
    let out = render_str(
        "{% if parameters.host is defined %}x{% else %}y{% endif %}",
        &ctx(),
    )
    .unwrap();
    assert_eq!(out, "y");
}

#[test]
fn context_helpers_are_present_only_when_the_context_has_them() {
    let cf = ctx().with_context(
        json!({ "platform": "cloudfoundry", "organization_guid": "org", "space_guid": "space" }),
    );
    assert_eq!(
        render_str("{{ organization_guid }}/{{ space_guid }}", &cf).unwrap(),
        "org/space"
    );
    let k8s = ctx().with_context(json!({ "platform": "kubernetes", "namespace": "ns" }));
    assert_eq!(
        render_str("{{ namespace }} {{ context.platform }}", &k8s).unwrap(),
        "ns kubernetes"
    );
    let error = render_str("{{ namespace }}", &cf).unwrap_err();
    assert!(
        error.to_string().contains("`namespace` is undefined"),
        "{error}"
    );
}

#[test]
fn check_refuses_a_syntax_error_with_its_line() {
    let error = check_template("ok\n{{ unclosed", Scope::INSTANCE).unwrap_err();
    assert!(error.to_string().contains("syntax error"), "{error}");
    assert!(error.to_string().contains("line 2"), "{error}");
}

#[test]
fn check_refuses_variables_outside_the_scope() {
    let error = check_template("{{ binding_id }}", Scope::INSTANCE).unwrap_err();
    assert!(error.to_string().contains("`binding_id`"), "{error}");
    assert!(check_template("{{ binding_id }}", Scope::BINDING).is_ok());
    let error = check_template("{{ instance_idd }}", Scope::BINDING).unwrap_err();
    assert!(error.to_string().contains("`instance_idd`"), "{error}");
}

#[test]
fn check_accepts_globals_loops_and_set() {
    let source = "{% set n = 1 %}{% for i in range(3) %}{{ i }}{% endfor %}{{ n }}{{ secret('a') | b64encode }}{{ uuid('b') | urlencode }}";
    check_template(source, Scope::INSTANCE).unwrap();
    check_manifest(source, Scope::INSTANCE).unwrap();
}

#[test]
fn there_is_no_file_loader() {
    let error = render_str("{% include 'secrets.txt' %}", &ctx()).unwrap_err();
    assert!(error.to_string().contains("include"), "{error}");
}

#[test]
fn a_leaf_error_names_the_leaf() {
    let error = render_value(&json!({ "db": { "password": "{{ nope() }}" } }), &ctx()).unwrap_err();
    assert!(error.to_string().starts_with("db.password: "), "{error}");
}

#[test]
fn non_string_leaves_are_kept() {
    let out = render_value(&json!({ "port": 6379, "tls": false, "n": null }), &ctx()).unwrap();
    assert_eq!(out, json!({ "port": 6379, "tls": false, "n": null }));
}
