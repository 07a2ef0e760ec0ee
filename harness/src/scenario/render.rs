//! [`Scenario`] -> canonical TOML, through the file schema (`file.rs`,
//! `model.rs`) and the `toml` crate: every key written out (defaults too),
//! values in canonical units. A run writes this next to its report as the
//! exact scenario it played (with the seed it picked), so the run can be
//! repeated with `harness run <that file>`. Parsing the output gives back
//! an equal `Scenario` for every scenario the parser accepts.

use super::file::*;
use super::model::*;

pub fn render_scenario(scenario: &Scenario) -> String {
    match toml::to_string(&ScenarioFile::from(scenario)) {
        Ok(text) => format!("# Canonical form of the scenario, as run.\n{text}"),
        // The file structs hold only strings, integers, floats, booleans,
        // tables and arrays of them, which TOML can always represent.
        Err(err) => unreachable!("a scenario always renders as TOML: {err}"),
    }
}

impl From<&Scenario> for ScenarioFile {
    fn from(scenario: &Scenario) -> Self {
        ScenarioFile {
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
            faults: scenario.faults.iter().map(fault_file).collect(),
            intruders: (scenario.intruders != Default::default())
                .then(|| scenario.intruders.clone()),
        }
    }
}

fn servers(servers: &ServersSpec, protocol: crate::client::protocol::Protocol) -> ServersFile {
    let positive = |duration| Some(Positive(Dur(duration)));
    match servers {
        ServersSpec::Spawn {
            count,
            sync_interval,
            heartbeat_interval,
            extra_args,
            command: None,
        } => ServersFile {
            protocol: Some(protocol),
            spawn: Some(Count(*count)),
            sync_interval: positive(*sync_interval),
            heartbeat_interval: positive(*heartbeat_interval),
            extra_args: Some(extra_args.clone()),
            ..ServersFile::default()
        },
        ServersSpec::Spawn {
            count,
            command: Some(command),
            ..
        } => ServersFile {
            protocol: Some(protocol),
            command: Some(command.argv.iter().cloned().map(CommandArg).collect()),
            instances: Some(Count(*count)),
            url: Some(CommandUrl(command.url.clone())),
            ready_http: match &command.ready {
                ReadyProbe::Tcp => None,
                ReadyProbe::Http { path } => Some(HttpPath(path.clone())),
            },
            ready_timeout: positive(command.ready_timeout),
            ..ServersFile::default()
        },
        ServersSpec::External { targets } => ServersFile {
            protocol: Some(protocol),
            targets: Some(targets.iter().cloned().map(WsUrl).collect()),
            ..ServersFile::default()
        },
    }
}

fn fault_file(fault: &FaultSpec) -> FaultFile {
    let mut file = FaultFile {
        kind: fault.kind.file_name(),
        at: Some(Dur(fault.at)),
        duration: Some(Dur(fault.duration)),
        server: None,
        link: fault.kind.link(),
        latency: None,
        jitter: None,
        rate: None,
        share: None,
        drop: None,
    };
    match &fault.kind {
        FaultKind::ServerKill { server } | FaultKind::ServerRestart { server } => {
            file.server = Some(*server)
        }
        FaultKind::Latency {
            latency, jitter, ..
        } => {
            file.latency = Some(Positive(Dur(*latency)));
            file.jitter = Some(Dur(*jitter));
        }
        FaultKind::Bandwidth { bytes_per_s, .. } => {
            file.rate = Some(PositiveByteRate(ByteRate(*bytes_per_s)))
        }
        FaultKind::ReconnectStorm { share, drop } => {
            file.share = Some(StormShare(Share(*share)));
            file.drop = Some(*drop);
        }
        _ => {}
    }
    file
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
