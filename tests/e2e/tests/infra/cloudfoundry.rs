//! Cloud Foundry registration (`infra/cloudfoundry/register.sh`).

use super::*;

/// A `cf` that records every call (CF_BROKER_PASSWORD, then the arguments, tab-separated)
/// and lists `$FAKE_CF_EXISTING` as an existing broker.
const FAKE_CF: &str = r#"#!/bin/sh
{
  printf '%s' "${CF_BROKER_PASSWORD-<unset>}"
  for arg in "$@"; do printf '\t%s' "$arg"; done
  printf '\n'
} >> "$FAKE_CF_LOG"
if [ "$1" = service-brokers ]; then
  echo "Getting service brokers as admin..."
  echo
  echo "name                url"
  if [ -n "$FAKE_CF_EXISTING" ]; then echo "$FAKE_CF_EXISTING   https://old.example.com"; fi
fi
exit 0
"#;

struct CfRun {
    status: std::process::ExitStatus,
    output: String,
    /// `(CF_BROKER_PASSWORD, args)` of every `cf` call.
    calls: Vec<(String, Vec<String>)>,
}

fn register(password: &str, existing: &str, args: &[&str]) -> CfRun {
    let dir = tempdir();
    let cf = write(dir.path(), "cf", FAKE_CF);
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&cf, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let log = dir.path().join("calls");
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(infra("cloudfoundry/register.sh"))
        .args(args)
        .env("PATH", path)
        .env("BROKER_PASSWORD", password)
        .env_remove("BROKER_USERNAME")
        .env_remove("CF_BROKER_PASSWORD")
        .env_remove("CF")
        .env("FAKE_CF_LOG", &log)
        .env("FAKE_CF_EXISTING", existing)
        .output()
        .expect("run register.sh");
    let calls = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let mut fields = line.split('\t').map(str::to_string);
            let password = fields.next().unwrap_or_default();
            (password, fields.collect())
        })
        .collect();
    CfRun {
        status: out.status,
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        calls,
    }
}

impl CfRun {
    fn commands(&self) -> Vec<Vec<&str>> {
        self.calls
            .iter()
            .map(|(_, args)| args.iter().map(String::as_str).collect())
            .collect()
    }
}

#[test]
fn register_sh_creates_or_updates_the_broker_and_enables_every_service() {
    let b = Broker::start();
    let url = b.base();
    let services: Vec<String> = b
        .catalog()
        .services()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert!(services.len() >= 3, "{services:?}");
    let enables = |extra: &[&str]| -> Vec<Vec<String>> {
        services
            .iter()
            .map(|s| {
                let mut call = vec!["enable-service-access".to_string(), s.clone()];
                call.extend(["-b", "spin-osb"].iter().map(|a| a.to_string()));
                call.extend(extra.iter().map(|a| a.to_string()));
                call
            })
            .collect()
    };
    let as_strings =
        |run: &CfRun| -> Vec<Vec<String>> { run.calls.iter().map(|(_, a)| a.clone()).collect() };

    // A new broker (another broker's name only starts the same way).
    let run = register(&b.password, "spin-osb-old", &[&url]);
    assert!(run.status.success(), "{}", run.output);
    let mut expected = vec![
        vec!["service-brokers".to_string()],
        ["create-service-broker", "spin-osb", "broker", &url]
            .map(String::from)
            .to_vec(),
    ];
    expected.extend(enables(&[]));
    assert_eq!(as_strings(&run), expected, "{}", run.output);
    for (password, args) in &run.calls {
        assert_eq!(
            password, &b.password,
            "cf reads the password from CF_BROKER_PASSWORD"
        );
        assert!(
            !args.contains(&b.password),
            "never on a command line: {args:?}"
        );
    }

    // The update path: the broker exists, its catalog is re-read, access enabled again.
    let run = register(
        &b.password,
        "spin-osb",
        &["--org", "acme", &format!("{url}/")],
    );
    assert!(run.status.success(), "{}", run.output);
    let mut expected = vec![
        vec!["service-brokers".to_string()],
        ["update-service-broker", "spin-osb", "broker", &url]
            .map(String::from)
            .to_vec(),
    ];
    expected.extend(enables(&["-o", "acme"]));
    assert_eq!(as_strings(&run), expected, "{}", run.output);

    // Space-scoped: the plans are visible in the space; service access does not apply.
    let run = register(
        &b.password,
        "",
        &["--space-scoped", "--name", "my-osb", &url],
    );
    assert!(run.status.success(), "{}", run.output);
    assert_eq!(
        run.commands(),
        vec![
            vec!["service-brokers"],
            vec![
                "create-service-broker",
                "my-osb",
                "broker",
                &url,
                "--space-scoped"
            ],
        ],
        "{}",
        run.output
    );

    // A wrong password stops before anything is registered.
    let run = register("wrong", "", &[&url]);
    assert!(!run.status.success(), "{}", run.output);
    assert!(run.calls.is_empty(), "no cf call: {:?}", run.commands());
    assert!(
        run.output.contains("check the URL and the credentials"),
        "{}",
        run.output
    );
}
