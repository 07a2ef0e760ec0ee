//! `[servers] command`: what a valid one becomes, and every rule that
//! rejects one, pointing at the line:column and key.

use std::time::Duration;

use super::validate::{assert_error, with_tail};
use crate::scenario::model::*;
use crate::scenario::parse_scenario;

#[test]
fn a_command_server_with_every_key() {
    let text = with_tail(
        "[servers]
command = [\"node\", \"server.js\", \"--port\", \"{port}\", \"--redis\", \"{redis_url}\"]
instances = 2
url = \"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket\"
ready_http = \"/healthz\"
ready_timeout = \"5s\"
",
    );
    let scenario = parse_scenario(&text, "t.toml").unwrap();
    let ServersSpec::Spawn { count, command, .. } = scenario.servers else {
        panic!("a command spawns servers");
    };
    assert_eq!(count, 2);
    assert_eq!(
        command,
        Some(ServerCommand {
            argv: [
                "node",
                "server.js",
                "--port",
                "{port}",
                "--redis",
                "{redis_url}"
            ]
            .map(String::from)
            .to_vec(),
            url: "ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket".into(),
            ready: ReadyProbe::Http {
                path: "/healthz".into()
            },
            ready_timeout: Duration::from_secs(5),
        })
    );
}

#[test]
fn a_command_alone_gets_one_instance_a_tcp_probe_and_the_default_url() {
    let text = with_tail("[servers]\ncommand = [\"my-server\"]\n");
    let scenario = parse_scenario(&text, "t.toml").unwrap();
    let ServersSpec::Spawn {
        count,
        command: Some(command),
        ..
    } = scenario.servers
    else {
        panic!("a command spawns servers");
    };
    assert_eq!(count, 1);
    assert_eq!(command.ready, ReadyProbe::Tcp);
    assert_eq!(command.url, "ws://127.0.0.1:{port}/ws");
    assert_eq!(command.ready_timeout, Duration::from_secs(20));
}

#[test]
fn command_rules() {
    assert_error(
        &with_tail("[servers]\ncommand = []\n"),
        10,
        11,
        "servers.command",
        "must name a program",
    );
    assert_error(
        &with_tail("[servers]\ncommand = [\"srv\", \"--port={prot}\"]\n"),
        10,
        19,
        "servers.command[1]",
        "unknown placeholder {prot}",
    );
    assert_error(
        &with_tail("[servers]\ncommand = [\"srv\"]\nspawn = 2\n"),
        11,
        1,
        "servers.spawn",
        "write instances = N",
    );
    assert_error(
        &with_tail("[servers]\ncommand = [\"srv\"]\nextra_args = [\"-v\"]\n"),
        11,
        1,
        "servers.extra_args",
        "only applies to the reference server",
    );
    assert_error(
        &with_tail("[servers]\ncommand = [\"srv\"]\ntargets = [\"ws://127.0.0.1:9/ws\"]\n"),
        11,
        1,
        "servers.targets",
        "cannot be combined with command",
    );
    assert_error(
        &with_tail("[servers]\ncommand = [\"srv\"]\nurl = \"ws://localhost:9000/ws\"\n"),
        11,
        7,
        "servers.url",
        "with a {port} placeholder",
    );
    assert_error(
        &with_tail("[servers]\ncommand = [\"srv\"]\nready_http = \"healthz\"\n"),
        11,
        14,
        "servers.ready_http",
        "is not an HTTP path",
    );
    assert_error(
        &with_tail("[servers]\ncommand = [\"srv\"]\ninstances = 0\n"),
        11,
        13,
        "servers.instances",
        "must be at least 1",
    );
    assert_error(
        &with_tail("[servers]\nspawn = 2\nready_timeout = \"5s\"\n"),
        11,
        1,
        "servers.ready_timeout",
        "only applies to servers started with command",
    );
}

#[test]
fn server_faults_count_command_instances() {
    let text = with_tail(
        "[servers]
command = [\"srv\"]
instances = 2
[[faults]]
kind = \"server_kill\"
at = \"1s\"
duration = \"1s\"
server = 2
",
    );
    assert_error(
        &text,
        16,
        10,
        "faults[0].server",
        "there is no server 2 (servers.instances = 2)",
    );
    let valid = text.replace("server = 2", "server = 1");
    parse_scenario(&valid, "t.toml").expect("server 1 of 2 instances");
}

#[test]
fn placeholders_are_filled_and_unknown_ones_named() {
    let values = [("port", "9000"), ("redis_url", "redis://r:1")];
    assert_eq!(
        fill_placeholders("--listen=127.0.0.1:{port} {redis_url}", &values),
        Ok("--listen=127.0.0.1:9000 redis://r:1".to_string())
    );
    assert_eq!(
        fill_placeholders("{host}:{port}", &values),
        Err("{host}".into())
    );
    assert_eq!(fill_placeholders("json {", &values), Err("{".into()));
}
