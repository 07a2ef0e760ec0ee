//! [`Scenario`] -> canonical TOML, through the file schema (`file.rs`,
//! `model.rs`) and the `toml` crate: every key written out (defaults too),
//! values in canonical units. A run writes this next to its report as the
//! exact scenario it played (with the seed it picked), so the run can be
//! repeated with `harness run <that file>`. Parsing the output gives back
//! an equal `Scenario` for every scenario the parser accepts.

use super::file::*;
use super::model::*;

pub fn render_scenario(scenario: &Scenario) -> String {
    let file = ScenarioFile {
        name: DirName(scenario.name.clone()),
        seed: scenario.seed,
        duration: Positive(Dur(scenario.duration)),
        ramp_up: Some(Dur(scenario.ramp_up)),
        drain_timeout: Some(Positive(Dur(scenario.drain_timeout))),
        redis: scenario.redis.clone(),
        servers: servers(&scenario.servers, scenario.protocol),
        population: Some(scenario.population.clone()),
        traffic: Some(scenario.traffic.clone()),
        churn: Some(scenario.churn.clone()),
        thresholds: scenario.thresholds.clone(),
        expect: scenario.expect.clone(),
        stages: scenario.stages.clone(),
        faults: scenario.faults.iter().map(fault).collect(),
        intruders: (scenario.intruders != Default::default()).then(|| scenario.intruders.clone()),
    };
    match toml::to_string(&file) {
        Ok(text) => format!("# Canonical form of the scenario, as run.\n{text}"),
        // The file structs hold only strings, integers, floats, booleans,
        // tables and arrays of them, which TOML can always represent.
        Err(err) => unreachable!("a scenario always renders as TOML: {err}"),
    }
}

fn servers(spec: &ServersSpec, protocol: crate::client::protocol::Protocol) -> ServersFile {
    let positive = |duration| Some(Positive(Dur(duration)));
    let mut file = ServersFile {
        protocol: Some(protocol),
        ..ServersFile::default()
    };
    match spec {
        ServersSpec::Spawn {
            count,
            command: Some(command),
            ..
        } => {
            file.command = Some(command.argv.iter().cloned().map(CommandArg).collect());
            file.instances = Some(Count(*count));
            file.url = Some(CommandUrl(command.url.clone()));
            if let ReadyProbe::Http { path } = &command.ready {
                file.ready_http = Some(HttpPath(path.clone()));
            }
            file.ready_timeout = positive(command.ready_timeout);
        }
        ServersSpec::Spawn {
            count,
            sync_interval,
            heartbeat_interval,
            extra_args,
            command: None,
        } => {
            file.spawn = Some(Count(*count));
            file.sync_interval = positive(*sync_interval);
            file.heartbeat_interval = positive(*heartbeat_interval);
            file.extra_args = Some(extra_args.clone());
        }
        ServersSpec::External { targets } => {
            file.targets = Some(targets.iter().cloned().map(WsUrl).collect())
        }
    }
    file
}

fn fault(fault: &FaultSpec) -> FaultFile {
    let mut file = FaultFile {
        kind: fault.kind.file_name(),
        at: Some(Dur(fault.at)),
        duration: Some(Dur(fault.duration)),
        link: fault.kind.link(),
        ..FaultFile::default()
    };
    match fault.kind {
        FaultKind::ServerKill { server } | FaultKind::ServerRestart { server } => {
            file.server = Some(server)
        }
        FaultKind::Latency {
            latency, jitter, ..
        } => (file.latency, file.jitter) = (Some(Positive(Dur(latency))), Some(Dur(jitter))),
        FaultKind::Bandwidth { bytes_per_s, .. } => {
            file.rate = Some(PositiveByteRate(ByteRate(bytes_per_s)))
        }
        FaultKind::ReconnectStorm { share, drop } => {
            (file.share, file.drop) = (Some(StormShare(Share(share))), Some(drop))
        }
        _ => {}
    }
    file
}
