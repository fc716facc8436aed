//! The command line as an operator meets it, through the binary: one way to name a
//! resource (`PATH/ID`), exit codes in every command's `--help`, errors in one line with
//! the setting to check, and `audit`'s warnings for a scan of the wrong keys and its
//! finding for dead letters with no record behind them.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;

use serde_json::Value;

use crate::helpers::process::{command, run, Ran};
use crate::helpers::{assert_contains, heat_result, TestPipeline};
use heat_pipeline::stages::StageName;

/// Runs the binary off the runtime's threads (in-process stages keep running).
async fn run_bin(mut command: Command) -> Ran {
    tokio::task::spawn_blocking(move || run(&mut command))
        .await
        .unwrap()
}

/// `pipeline`'s command `args` with `overrides` in its environment.
fn with_env(pipeline: &TestPipeline, args: &[&str], overrides: &[(&str, &str)]) -> Command {
    let mut command = pipeline.command(args);
    for (name, value) in overrides {
        command.env(name, value);
    }
    command
}

/// Runs `args` with `overrides` and returns the one line the command wrote as it failed:
/// exit 1, `error: ` and nothing else on stderr, said once, with nothing of a gRPC status or
/// of lapin's wording.
async fn error_line(pipeline: &TestPipeline, args: &[&str], overrides: &[(&str, &str)]) -> String {
    let ran = run_bin(with_env(pipeline, args, overrides)).await;
    assert_eq!(ran.status.code(), Some(1), "{ran:?}");
    let line = ran.stderr.trim_end();
    assert!(!line.contains('\n'), "more than one line:\n{line}");
    assert!(line.starts_with("error: "), "{line}");
    for noise in [
        "grpc",
        "tonic",
        "source:",
        "IO error",
        "Parsing Error",
        "ParserErrors",
    ] {
        assert!(!line.contains(noise), "{noise:?} in: {line}");
    }
    line.to_string()
}

#[test]
fn a_resource_is_named_path_slash_id_and_nothing_else() {
    let refused = |args: &[&str], says: &str| {
        let ran = run(&mut command(&[], args));
        assert_eq!(ran.status.code(), Some(2), "{args:?}: {ran:?}");
        assert!(ran.stderr.contains(says), "{args:?}: {}", ran.stderr);
        assert!(ran.stdout.is_empty(), "{args:?}: {}", ran.stdout);
    };
    let no_slash = "\"ports\" has no \"/\": name a resource as PATH/ID";
    refused(&["show", "ports"], no_slash);
    // The form before PATH/ID is refused with the same words, not "unexpected argument".
    refused(&["show", "ports", "23464cbc"], no_slash);
    refused(
        &["show", "ports/a", "b"],
        "show takes one resource, as PATH/ID",
    );
    refused(&["show", "ports/a/b"], "is not PATH/ID");
    refused(&["show", "/a"], "is not PATH/ID");
    refused(&["reconcile", "ports"], no_slash);
    refused(
        &["reconcile", "--dry-run", "ports/a", "ports/"],
        "is not PATH/ID",
    );
}

#[tokio::test]
async fn show_prints_a_resource_as_text_or_json_and_exits_3_for_none() {
    let pipeline = TestPipeline::new("cli-show").await;
    let keys = &pipeline.keys;
    let record = br#"{"stack_id": "s", "tenant_id": "t", "stack_status": "CREATE_COMPLETE", "output": [], "status_reason": "ok", "id": "port:r1"}"#;
    let mut kv = pipeline.etcd.kv_client();
    kv.put(keys.heat_stack("ports", "r1"), &record[..], None)
        .await
        .unwrap();
    kv.put(
        keys.heat_stack_order("ports", "r1"),
        r#"{"version":2,"phase":"final"}"#,
        None,
    )
    .await
    .unwrap();

    let ran = run_bin(pipeline.command(&["show", "ports/r1", "--format", "json"])).await;
    assert_eq!(ran.status.code(), Some(0), "{ran:?}");
    let shown: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(shown["resource"], "ports/r1");
    let records = shown["records"].as_array().unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0]["name"], "heat_stacks");
    assert_eq!(
        records[0]["value"].as_str().unwrap().as_bytes(),
        record,
        "the stored text as it is"
    );
    assert_eq!(records[0]["lineage"]["version"], 2);
    assert_eq!(records[2]["value"], Value::Null);

    let text = run_bin(pipeline.command(&["show", "ports/r1"])).await;
    assert_eq!(text.status.code(), Some(0), "{text:?}");
    assert!(text.stdout.starts_with("heat_stacks: "), "{}", text.stdout);

    let none = run_bin(pipeline.command(&["show", "ports/nothing-here"])).await;
    assert_eq!(none.status.code(), Some(3), "{none:?}");
    assert_contains(&none.stderr, "ports/nothing-here: no record in etcd");
    pipeline.stop().await;
}

#[test]
fn every_command_documents_its_exit_codes_and_sets_the_shared_settings_apart() {
    let help = |args: &[&str]| {
        let ran = run(&mut command(&[], args));
        assert!(ran.status.success(), "{args:?}: {ran:?}");
        ran.stdout
    };
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["show", "--help"],
            &[
                "0  at least one record",
                "1  etcd could not be read",
                "3  none of the three records",
            ],
        ),
        (
            &["status", "--help"],
            &["0  every queue", "1  a queue is missing"],
        ),
        (
            &["audit", "--help"],
            &[
                "0  no finding",
                "1  at least one finding",
                "2  the scan could not run",
            ],
        ),
        (
            &["reconcile", "--help"],
            &[
                "0  every resource was re-driven",
                "1  a resource cannot be re-driven",
            ],
        ),
        (
            &["run", "--help"],
            &["0  stopped by SIGTERM or SIGINT", "1  refused to start"],
        ),
        (&["publish", "--help"], &["0  every message was confirmed"]),
        (&["seal", "--help"], &["0  sealed"]),
        (&["healthcheck", "--help"], &["0  the process answered 200"]),
    ];
    for (args, codes) in cases {
        let text = help(args);
        assert!(text.contains("\nExit codes:\n"), "{args:?}:\n{text}");
        assert!(
            text.contains("  2  the command line is wrong"),
            "{args:?}:\n{text}"
        );
        for code in *codes {
            assert!(text.contains(code), "{args:?} lacks {code:?}:\n{text}");
        }
    }
    // The settings every command shares come under their own headings, after the
    // command's own options.
    let show = help(&["show", "--help"]);
    let at = |needle: &str| {
        show.find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{show}"))
    };
    assert!(at("--format") < at("\nConnection:\n"), "{show}");
    assert!(at("\nConnection:\n") < at("--etcd-endpoints"), "{show}");
    assert!(at("\nNaming:\n") < at("--etcd-key-prefix"), "{show}");
    assert!(
        at("\nTLS and credentials:\n") < at("--etcd-ca-file"),
        "{show}"
    );
    let options = &show[at("\nOptions:\n")..at("\nConnection:\n")];
    assert!(!options.contains("--amqp-url"), "{options}");
    assert!(!options.contains("--pipeline-name"), "{options}");
}

#[tokio::test]
async fn a_service_that_cannot_be_reached_is_one_line_naming_the_setting() {
    let pipeline = TestPipeline::new("cli-errors").await;

    // etcd not answering (nothing listens on port 1): no gRPC dump.
    let closed_etcd = [
        ("ETCD_ENDPOINTS", "http://127.0.0.1:1"),
        ("ETCD_TIMEOUT", "2s"),
    ];
    for args in [&["show", "ports/x"][..], &["reconcile", "ports/x"]] {
        assert_eq!(
            error_line(&pipeline, args, &closed_etcd).await,
            "error: etcd at http://127.0.0.1:1 is not answering (connection refused); check \
             ETCD_ENDPOINTS",
            "{args:?}"
        );
    }

    // The broker's port as ETCD_ENDPOINTS: something answers, but not as etcd.
    let broker = pipeline.services.amqp_url.split_once('@').unwrap().1;
    let broker = broker.split_once('/').unwrap().0;
    let broker_as_etcd = format!("http://{broker}");
    let line = error_line(
        &pipeline,
        &["show", "ports/x"],
        &[("ETCD_ENDPOINTS", &broker_as_etcd), ("ETCD_TIMEOUT", "2s")],
    )
    .await;
    // Which line depends on who is faster: the broker closing the connection, or the
    // client reading the broker's reply as HTTP/2.
    let not_etcd = format!(
        "error: {broker_as_etcd} did not answer as etcd (it does not speak HTTP/2 gRPC); check \
         ETCD_ENDPOINTS"
    );
    let closed = format!(
        "error: {broker_as_etcd} closed the connection without answering (is etcd there, and \
         up?); check ETCD_ENDPOINTS"
    );
    assert!(line == not_etcd || line == closed, "{line}");

    // The broker not answering: the same line from each command, however many layers the
    // error came through.
    let closed_broker = [("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")];
    for args in [
        &["status"][..],
        &["publish", "examples/heat_result.port.json"],
        &["reconcile", "ports/x"],
        &["seal"],
    ] {
        assert_eq!(
            error_line(&pipeline, args, &closed_broker).await,
            "error: RabbitMQ at amqp://guest:****@127.0.0.1:1/%2f is not answering (connection \
             refused); check AMQP_URL",
            "{args:?}"
        );
    }

    // etcd's port as AMQP_URL: it accepts the connection and keeps silent.
    let etcd = pipeline.services.etcd_endpoints[0].trim_start_matches("http://");
    let etcd_as_amqp = format!("amqp://guest:guest@{etcd}/%2f");
    let line = error_line(&pipeline, &["status"], &[("AMQP_URL", &etcd_as_amqp)]).await;
    let expected = format!(
        "error: amqp://guest:****@{etcd}/%2f did not answer as an AMQP broker (no AMQP handshake \
         within 4s: another service, or a paused broker); check AMQP_URL"
    );
    assert_eq!(line, expected);

    // A port that answers, but in HTTP: no parser's debug output.
    let http = TcpListener::bind("127.0.0.1:0").unwrap();
    let http_addr = http.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in http.incoming() {
            let Ok(mut stream) = stream else { return };
            let _ = stream.read(&mut [0; 64]);
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let http_as_amqp = format!("amqp://guest:guest@{http_addr}/%2f");
    assert_eq!(
        error_line(&pipeline, &["status"], &[("AMQP_URL", &http_as_amqp)]).await,
        format!(
            "error: amqp://guest:****@{http_addr}/%2f did not answer as an AMQP broker (its \
             answer is not an AMQP frame); check AMQP_URL"
        )
    );

    // A wrong password: the broker's refusal, as `run` says it.
    let url = &pipeline.services.amqp_url;
    let (scheme, rest) = url.split_once("://").unwrap();
    let (_, host) = rest.split_once('@').unwrap();
    let wrong = format!("{scheme}://guest:wrong-password@{host}");
    let expected = format!(
        "error: RabbitMQ at {scheme}://guest:****@{host} refused the login: check the user and \
         password of AMQP_URL (or AMQP_PASSWORD_FILE)"
    );
    for args in [
        &["status"][..],
        &["publish", "examples/heat_result.port.json"],
    ] {
        let line = error_line(&pipeline, args, &[("AMQP_URL", &wrong)]).await;
        assert_eq!(line, expected, "{args:?}");
    }
    pipeline.stop().await;
}

#[tokio::test]
async fn audit_warns_of_a_prefix_without_its_slash_and_of_no_key_where_the_pipeline_ran() {
    let pipeline = TestPipeline::new("cli-prefix").await;
    let unslashed = pipeline.prefix.trim_start_matches('/').to_string();
    let ran = run_bin(with_env(
        &pipeline,
        &["audit", "--no-dead-letters"],
        &[("ETCD_KEY_PREFIX", &unslashed)],
    ))
    .await;
    assert_eq!(ran.status.code(), Some(0), "{ran:?}");
    assert_contains(
        &ran.stderr,
        &format!("warning: ETCD_KEY_PREFIX {unslashed:?} does not start with \"/\""),
    );
    assert_contains(&ran.stderr, &format!("did you mean \"/{unslashed}\"?"));

    // The pipeline's queues exist (the test declared them) and no key is under the prefix.
    let elsewhere = format!("{}-elsewhere", pipeline.prefix);
    let ran = run_bin(with_env(
        &pipeline,
        &["audit"],
        &[("ETCD_KEY_PREFIX", &elsewhere)],
    ))
    .await;
    assert_eq!(ran.status.code(), Some(0), "{ran:?}");
    assert_contains(
        &ran.stderr,
        &format!(
            "warning: no key under ETCD_KEY_PREFIX {elsewhere:?} (API v2.0), yet the queues of \
             pipeline {:?} exist: is ETCD_KEY_PREFIX (or ETCD_API_VERSION) right?",
            pipeline.name
        ),
    );
    // Progress bars stay off a stderr that is not a terminal.
    assert!(!ran.stderr.contains('\u{1b}'), "{:?}", ran.stderr);

    // A pipeline that never ran: nothing to warn about.
    let never = run_bin(with_env(
        &pipeline,
        &["audit"],
        &[("PIPELINE_NAME", &format!("{}-never", pipeline.name))],
    ))
    .await;
    assert_eq!(never.status.code(), Some(0), "{never:?}");
    assert!(!never.stderr.contains("warning"), "{}", never.stderr);
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_reports_dead_letters_whose_resource_has_no_record() {
    let mut pipeline = TestPipeline::new("cli-dead-only").await;
    pipeline.start_stages(2).await;
    // capture refuses it (a create cannot end in UPDATE_COMPLETE): nothing reaches etcd.
    pipeline
        .publish(&heat_result(
            "create",
            "refused",
            1,
            "UPDATE_COMPLETE",
            "ok",
        ))
        .await;
    let dead = pipeline.topology.dead_queue(StageName::Capture);
    pipeline
        .wait_any_ready(&dead, "capture never dead-lettered it")
        .await;

    let ran = run_bin(pipeline.command(&["audit", "--format", "json", "--older-than", "0s"])).await;
    assert_eq!(ran.status.code(), Some(1), "{ran:?}");
    let findings: Vec<Value> = ran
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let finding = &findings[0];
    assert_eq!(finding["problem"], "dead_letter_only");
    assert_eq!(
        (&finding["path"], &finding["id"]),
        (&"ports".into(), &"refused".into())
    );
    assert_eq!(
        finding["key"],
        pipeline.keys.heat_stack("ports", "refused").as_str()
    );
    assert_eq!(finding["dead_letter"]["stage"], "capture");
    assert_eq!(finding["dead_letter"]["class"], "status_mismatch");
    // The letter is left where it was.
    assert_eq!(pipeline.ready_count(&dead).await, 1);

    let table = run_bin(pipeline.command(&["audit"])).await;
    assert_eq!(table.status.code(), Some(1), "{table:?}");
    let row = table.stdout.lines().nth(1).unwrap_or_default();
    assert!(
        row.starts_with("dead_letter_only  ports"),
        "{}",
        table.stdout
    );
    assert!(row.contains("status_mismatch"), "{row}");
    pipeline.stop().await;
}
