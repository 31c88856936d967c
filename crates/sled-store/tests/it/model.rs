//! A model-based property test of the embedded log, in the manner of sled's own: a
//! plain in-memory model beside the real store on disk, random operations including
//! restarts, and the same answers from both.

use std::collections::HashMap;

use behalf_log::conformance::request_with_body;
use behalf_log::{AppendRefused, EventLog, ExpectedVersion};
use behalf_sled_store::{OpenOptions, SledLog};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Append { stream: u8, expected: Exp, command: Cmd, events: usize },
    Restart,
    ReadStream { stream: u8, from: u64 },
    ReadAll { after: u64, limit: usize },
}

#[derive(Clone, Debug)]
enum Exp {
    Any,
    Right,
    Wrong(u64),
}

#[derive(Clone, Debug)]
enum Cmd {
    New,
    /// Reuse the n-th command sent so far, with the same body or another.
    Reuse(usize, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..4, prop_oneof![Just(Exp::Any), Just(Exp::Right), (0u64..6).prop_map(Exp::Wrong)],
              prop_oneof![4 => Just(Cmd::New), 1 => (0usize..50, any::<bool>()).prop_map(|(i, s)| Cmd::Reuse(i, s))], 1usize..4)
            .prop_map(|(stream, expected, command, events)| Op::Append { stream, expected, command, events }),
        1 => Just(Op::Restart),
        2 => (0u8..4, 0u64..8).prop_map(|(stream, from)| Op::ReadStream { stream, from }),
        2 => (0u64..30, 1usize..10).prop_map(|(after, limit)| Op::ReadAll { after, limit }),
    ]
}

/// What the model keeps of a commit.
#[derive(Clone, Debug, PartialEq)]
struct M {
    position: u64,
    stream: String,
    first_version: u64,
    events: usize,
    command: String,
    body: String,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn log_matches_model(ops in prop::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let mut log = Some(SledLog::open(dir.path(), OpenOptions::default()).unwrap().0);
            let mut model: Vec<M> = Vec::new();
            let mut commands: Vec<(String, String)> = Vec::new();
            let mut versions: HashMap<String, u64> = HashMap::new();
            for op in ops {
                let l = log.as_ref().unwrap();
                match op {
                    Op::Restart => {
                        drop(log.take());
                        log = Some(SledLog::open(dir.path(), OpenOptions::default()).unwrap().0);
                        prop_assert_eq!(log.as_ref().unwrap().head().await.unwrap(), model.len() as u64);
                    }
                    Op::Append { stream, expected, command, events } => {
                        let stream = format!("ticket-{stream}");
                        let current = versions.get(&stream).copied().unwrap_or(0);
                        let (cmd, body) = match command {
                            Cmd::Reuse(i, same) if !commands.is_empty() => {
                                let (c, b) = commands[i % commands.len()].clone();
                                (c, if same { b } else { format!("{b}-other") })
                            }
                            Cmd::Reuse(..) | Cmd::New => {
                                let c = format!("cmd-{}", commands.len());
                                (c.clone(), format!("body-{c}"))
                            }
                        };
                        let exp = match expected {
                            Exp::Any => ExpectedVersion::Any,
                            Exp::Right => ExpectedVersion::Exact(current),
                            Exp::Wrong(v) => ExpectedVersion::Exact(v),
                        };
                        let got = l.append(request_with_body(&stream, exp, &cmd, events, &body)).await.unwrap();
                        // The model's answer: R26 first, then R27.
                        let want = if let Some(first) = model.iter().find(|m| m.command == cmd) {
                            if first.body == body {
                                Ok((first.position, first.first_version, true))
                            } else {
                                Err(AppendRefused::KeyReused { position: first.position })
                            }
                        } else if matches!(exp, ExpectedVersion::Exact(v) if v != current) {
                            Err(AppendRefused::Conflict { expected: exp, actual: current })
                        } else {
                            let m = M { position: model.len() as u64 + 1, stream: stream.clone(), first_version: current + 1, events, command: cmd.clone(), body: body.clone() };
                            versions.insert(stream.clone(), current + events as u64);
                            commands.push((cmd.clone(), body.clone()));
                            model.push(m.clone());
                            Ok((m.position, m.first_version, false))
                        };
                        prop_assert_eq!(got.map(|a| (a.position, a.first_version, a.duplicate)), want);
                    }
                    Op::ReadStream { stream, from } => {
                        let stream = format!("ticket-{stream}");
                        let got: Vec<u64> = l.read_stream(&behalf_domain::StreamId(stream.clone()), from).await.unwrap().iter().map(|c| c.position).collect();
                        let want: Vec<u64> = model.iter().filter(|m| m.stream == stream && m.first_version + m.events as u64 > from).map(|m| m.position).collect();
                        prop_assert_eq!(got, want);
                    }
                    Op::ReadAll { after, limit } => {
                        let got: Vec<(u64, String, u64, usize)> = l.read_all(after, limit).await.unwrap().iter()
                            .map(|c| (c.position, c.stream.0.clone(), c.first_version, c.events.len())).collect();
                        let want: Vec<(u64, String, u64, usize)> = model.iter().filter(|m| m.position > after).take(limit)
                            .map(|m| (m.position, m.stream.clone(), m.first_version, m.events)).collect();
                        prop_assert_eq!(got, want);
                    }
                }
            }
            let report = log.as_ref().unwrap().verify().await.unwrap();
            prop_assert_eq!((report.verified, report.first_bad), (model.len() as u64, None));
            Ok(())
        })?;
    }
}
