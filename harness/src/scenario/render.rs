//! [`Scenario`] -> canonical TOML, through the file schema (`file.rs`) and
//! the `toml` crate: every key written out (defaults too), values in
//! canonical units. A run writes this next to its report as the exact
//! scenario it played (with the seed it picked), so the run can be
//! repeated with `harness run <that file>`. Parsing the output gives back
//! an equal `Scenario` for every scenario the parser accepts.

use std::time::Duration;

use toml::Spanned;

use super::file::*;
use super::model::*;

pub fn render_scenario(scenario: &Scenario) -> String {
    let file = ScenarioFile::from(scenario);
    match toml::to_string(&file) {
        Ok(text) => format!("# Canonical form of the scenario, as run.\n{text}"),
        // The file structs hold only strings, integers, floats, booleans,
        // tables and arrays of them, which TOML can always represent.
        Err(err) => unreachable!("a scenario always renders as TOML: {err}"),
    }
}

/// Rendered values carry no position.
fn at<T>(value: T) -> Spanned<T> {
    Spanned::new(0..0, value)
}

fn duration(value: Duration) -> Option<Spanned<Dur>> {
    Some(at(Dur(value)))
}

fn positive(value: Duration) -> Positive {
    Positive(Dur(value))
}

fn permission(allowed: bool) -> Option<Permission> {
    Some(if allowed {
        Permission::Allowed
    } else {
        Permission::Forbidden
    })
}

impl From<&Scenario> for ScenarioFile {
    fn from(scenario: &Scenario) -> Self {
        let (servers, population) = (&scenario.servers, &scenario.population);
        let (churn, thresholds, expect) = (&scenario.churn, &scenario.thresholds, &scenario.expect);
        ScenarioFile {
            name: DirName(scenario.name.clone()),
            seed: scenario.seed,
            duration: positive(scenario.duration),
            ramp_up: duration(scenario.ramp_up),
            drain_timeout: Some(positive(scenario.drain_timeout)),
            redis: Some(RedisFile {
                provider: Some(at(scenario.redis.provider)),
                url: scenario.redis.url.clone().map(|url| at(RedisUrl(url))),
                image: scenario.redis.image.clone().map(ImageName),
                persistence: Some(scenario.redis.persistence),
            }),
            servers: Some(at(match servers {
                ServersSpec::Spawn {
                    count,
                    sync_interval,
                    heartbeat_interval,
                    extra_args,
                    command: None,
                } => ServersFile {
                    protocol: Some(scenario.protocol),
                    spawn: Some(Count(*count)),
                    targets: None,
                    sync_interval: Some(positive(*sync_interval)),
                    heartbeat_interval: Some(positive(*heartbeat_interval)),
                    extra_args: Some(extra_args.clone()),
                    ..ServersFile::default()
                },
                ServersSpec::Spawn {
                    count,
                    command: Some(command),
                    ..
                } => ServersFile {
                    command: Some(at(command.argv.iter().cloned().map(at).collect())),
                    instances: Some(Count(*count)),
                    url: Some(at(command.url.clone())),
                    ready_http: match &command.ready {
                        ReadyProbe::Tcp => None,
                        ReadyProbe::Http { path } => Some(at(path.clone())),
                    },
                    ready_timeout: Some(positive(command.ready_timeout)),
                    ..ServersFile::default()
                },
                ServersSpec::External { targets } => ServersFile {
                    protocol: Some(scenario.protocol),
                    spawn: None,
                    targets: Some(at(targets
                        .iter()
                        .map(|url| at(WsUrl(url.clone())))
                        .collect())),
                    ..ServersFile::default()
                },
            })),
            population: Some(at(PopulationFile {
                users: Count(population.users),
                devices_per_user: Some(Count(population.devices_per_user)),
                conversations: Count(population.conversations),
                members_per_conversation: at(Count(population.members_per_conversation)),
            })),
            traffic: Some(at(TrafficFile {
                send_rate: PositiveRate(Rate(scenario.traffic.send_rate_per_s)),
                body_size: Some(BodySize(Size(scenario.traffic.body_bytes))),
            })),
            churn: Some(ChurnFile {
                enabled: Some(churn.enabled),
                online: Some(at(dist(&churn.online))),
                offline: Some(at(dist(&churn.offline))),
                abrupt_share: Some(Share(churn.abrupt_share)),
                reset_share: Some(Share(churn.reset_share)),
                client_cursor_share: Some(Share(churn.client_cursor_share)),
            }),
            thresholds: Some(ThresholdsFile {
                min_delivery_rate: thresholds
                    .min_delivery_rate_per_s
                    .map(|rate| PositiveRate(Rate(rate))),
                latency: thresholds
                    .latency
                    .iter()
                    .map(|threshold| {
                        at(LatencyFile {
                            metric: threshold.metric,
                            percentile: at(Pct(threshold.percentile.0)),
                            max: positive(threshold.max),
                        })
                    })
                    .collect(),
            }),
            expect: Some(ExpectFile {
                no_loss: Some(expect.no_loss),
                no_duplicates: Some(expect.no_duplicates),
                order: Some(expect.order),
                stored_cursor_redelivery: permission(expect.allow_stored_cursor_redelivery),
                lost_ack: permission(expect.allow_lost_ack),
            }),
            stages: scenario
                .stages
                .iter()
                .map(|stage| {
                    at(StageFile {
                        duration: positive(stage.duration),
                        send_rate: stage.send_rate_per_s.map(Rate),
                        online: stage.online_share.map(Share),
                    })
                })
                .collect(),
            faults: scenario
                .faults
                .iter()
                .map(|fault| at(fault_file(fault)))
                .collect(),
            intruders: super::intruders::render(&scenario.intruders),
        }
    }
}

fn dist(dist: &DurationDist) -> DistFile {
    let empty = |name| DistFile {
        dist: at(name),
        value: None,
        min: None,
        max: None,
        mean: None,
    };
    match dist {
        DurationDist::Fixed { value } => DistFile {
            value: duration(*value),
            ..empty(DistName::Fixed)
        },
        DurationDist::Uniform { min, max } => DistFile {
            min: duration(*min),
            max: duration(*max),
            ..empty(DistName::Uniform)
        },
        DurationDist::Exponential { mean } => DistFile {
            mean: duration(*mean),
            ..empty(DistName::Exponential)
        },
    }
}

fn fault_file(fault: &FaultSpec) -> FaultFile {
    let mut file = FaultFile {
        kind: at(fault.kind.file_name()),
        at: duration(fault.at),
        duration: duration(fault.duration),
        server: None,
        link: fault.kind.link().map(at),
        latency: None,
        jitter: None,
        rate: None,
        share: None,
        drop: None,
    };
    match &fault.kind {
        FaultKind::ServerKill { server } | FaultKind::ServerRestart { server } => {
            file.server = Some(at(*server))
        }
        FaultKind::Latency {
            latency, jitter, ..
        } => {
            file.latency = Some(positive(*latency));
            file.jitter = duration(*jitter);
        }
        FaultKind::Bandwidth { bytes_per_s, .. } => {
            file.rate = Some(at(ByteRate(*bytes_per_s)));
        }
        FaultKind::ReconnectStorm { share, drop } => {
            file.share = Some(at(Share(*share)));
            file.drop = Some(*drop);
        }
        _ => {}
    }
    file
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
