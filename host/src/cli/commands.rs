//! One function per command. Each reads or updates the registry through
//! the library and returns a [`Report`]; none prints by itself.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;

use super::Report;
use super::args::{
    ActorKeyArgs, Cli, Command, CreateArgs, IdentityCommand, ImportArgs, InactiveArgs, InitArgs,
    ListArgs, ReportCommand, RotateArgs, RuleName, RulesCommand, ScanArgs, ServeArgs, UpdateArgs,
    UsageArgs,
};
use crate::activity::{InactiveReport, Period};
use crate::counters::{OnStateError, RedisCounters};
use crate::iam::IamId;
use crate::import;
use crate::key_format::{self, Secret};
use crate::lifecycle::{self, KeyChanges, NewIdentity, NewKey, Precondition, StateChange};
use crate::progress::Progress;
use crate::registry::{KeyRecord, LeakAction, Registry, RegistryFile, Touches};
use crate::scan::{REPLICA_CREDENTIAL, Scanner};
use crate::serve::ServeOptions;
use crate::time::{self, Timestamp};
use crate::usage::{self, Usage};
use crate::views::{IdentityView, IssuedSecret, KeyView};

pub fn run(cli: Cli) -> Result<Report> {
    let file = RegistryFile::new(&cli.registry).keeping_snapshots(crate::side_files::cache_root());
    let file = &file;
    let now = Timestamp::now();
    match cli.command {
        Command::Init(args) => init(file, args),
        Command::Identity(command) => identity(file, command, now),
        Command::Create(args) => create(file, args, now),
        Command::List(args) => list(file, args, now),
        Command::Show(args) => show(file, &args.id, &args.usage, now),
        Command::Lock(args) => change_state(file, args, StateChange::Lock, now),
        Command::Unlock(args) => change_state(file, args, StateChange::Unlock, now),
        Command::Disable(args) => change_state(file, args, StateChange::Disable, now),
        Command::Enable(args) => change_state(file, args, StateChange::Enable, now),
        Command::Delete(args) => delete(file, args),
        Command::Rotate(args) => rotate(file, args, now),
        Command::EndGrace(args) => end_grace(file, args, now),
        Command::Leak(args) => leak(file, args, now),
        Command::Update(args) => update(file, args, now),
        Command::Check(args) => super::check::check(file, args, now),
        Command::Report(ReportCommand::Inactive(args)) => inactive(file, args, now),
        Command::Import(args) => import(file, args, now),
        Command::Rules(command) => rules(file, command, now),
        Command::Scan(args) => scan(file, args, now),
        Command::Serve(args) => serve(&cli.registry, args),
        Command::Policy(command) => super::policy::run(command, file),
        Command::Token(command) => super::check::token(file, command, now),
        Command::Gate(command) => super::gate::run(command, file),
        Command::Snapshot(args) => super::snapshot::run(args, file),
        Command::Export(command) => super::export::run(command, file),
        Command::Replica(command) => super::export::replica(command, file, now),
        Command::Demo => crate::demo::run(),
    }
}

fn serve(registry: &Path, args: ServeArgs) -> Result<Report> {
    let mut options = ServeOptions::new(registry.to_path_buf(), args.listen);
    options.policy = args.policy;
    options.auth.service = args.service;
    options.auth.key_headers = args.key_headers;
    options.auth.service_header = args.service_header;
    options.auth.scope_header = args.scope_header;
    options.decision_log = args.decision_log;
    options.usage_flush = args.usage_flush;
    options.auth.trusted_proxies = args.trusted_proxies;
    options.request_timeout = args.request_timeout;
    options.connections.header_timeout = args.header_timeout;
    options.connections.max_connections = args.max_connections;
    options.connections.shutdown_timeout = args.shutdown_timeout;
    options.state = args.state;
    options.state_timeout = args.state_timeout;
    options.on_state_error = args.on_state_error;
    options.primary = args.primary;
    options.token_ttl = args.token_ttl;
    options.github_keys = args.github_keys;
    // A wrong --allowed-host is said before anything starts.
    options.allowed_hosts = crate::serve::AllowedHosts::new(args.listen, &args.allowed_hosts)
        .map_err(anyhow::Error::msg)?;
    crate::serve::run(options)?;
    Ok(Report::new(json!({ "stopped": true }), ""))
}

fn init(file: &RegistryFile, args: InitArgs) -> Result<Report> {
    key_format::validate_prefix(&args.prefix).map_err(|e| anyhow::anyhow!("--prefix: {e}"))?;
    let mut registry = Registry::new(&args.prefix);
    registry.action_when_leaked = args.action_when_leaked;
    registry.max_keys_per_identity = args.max_keys_per_identity;
    registry.rules.require_if_match = args.require_if_match;
    registry.changes_from_keys = args.changes_from_keys;
    file.create(&registry)?;
    let path = file.path().display().to_string();
    Ok(Report::new(
        json!({ "registry": path, "prefix": registry.prefix, "revision": registry.revision }),
        format!("created registry {path} (prefix {})", registry.prefix),
    ))
}

fn identity(file: &RegistryFile, command: IdentityCommand, now: Timestamp) -> Result<Report> {
    match command {
        IdentityCommand::Add {
            iam_id,
            owner,
            scopes,
        } => {
            let new = NewIdentity {
                iam_id,
                owner,
                scopes,
            };
            let (identity, revision) =
                file.update(|registry| Ok(lifecycle::add_identity(registry, new, now)?))?;
            let view = IdentityView::of(&identity);
            let text = format!("added {} {}", view.kind, view.iam_id);
            Ok(Report::new(
                json!({ "identity": view, "revision": revision }),
                text,
            ))
        }
        IdentityCommand::Update {
            iam_id,
            scopes,
            add_scopes,
            remove_scopes,
            no_scopes,
            if_match: tag,
        } => {
            let precondition = if_match(tag.as_deref())?;
            let replace = no_scopes || !scopes.is_empty();
            if !replace && add_scopes.is_empty() && remove_scopes.is_empty() {
                anyhow::bail!(
                    "nothing to change: give --scope, --add-scope, --remove-scope or --no-scopes"
                );
            }
            let ((identity, narrowed), revision) = file.update(|registry| {
                let current = registry
                    .identity(&iam_id)
                    .ok_or_else(|| lifecycle::unknown("identity", &iam_id))?;
                let mut next = if replace {
                    scopes
                } else {
                    current.scopes.clone()
                };
                for scope in add_scopes {
                    if !next.contains(&scope) {
                        next.push(scope);
                    }
                }
                next.retain(|scope| !remove_scopes.contains(scope));
                Ok(lifecycle::on_identity(
                    registry,
                    &iam_id,
                    &precondition,
                    |registry| lifecycle::set_identity_scopes(registry, &iam_id, next),
                )?)
            })?;
            let view = IdentityView::of(&identity);
            let mut report = Report::new(
                json!({ "identity": view, "revision": revision, "keys_narrowed": narrowed }),
                format!("updated {} scopes={}", view.iam_id, view.scopes.join(",")),
            );
            if !narrowed.is_empty() {
                report = report.with_note(format!(
                    "these keys name scopes {} no longer has, which stop working now: {}",
                    view.iam_id,
                    narrowed.join(", ")
                ));
            }
            Ok(report)
        }
        IdentityCommand::List => {
            let registry = file.load()?;
            let views: Vec<IdentityView> =
                registry.identities.iter().map(IdentityView::of).collect();
            let text = views
                .iter()
                .map(|v| {
                    let owner = v
                        .owner
                        .as_deref()
                        .map(|o| format!(" owner={o}"))
                        .unwrap_or_default();
                    format!(
                        "{:<32} {:<10}{owner} scopes={}",
                        v.iam_id,
                        v.kind,
                        v.scopes.join(",")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            Ok(Report::new(
                json!({ "identities": views, "revision": registry.revision }),
                text,
            ))
        }
        IdentityCommand::Remove {
            iam_id,
            if_match: tag,
        } => {
            let precondition = if_match(tag.as_deref())?;
            let (deleted, revision) = file.update(|registry| {
                Ok(lifecycle::on_identity(
                    registry,
                    &iam_id,
                    &precondition,
                    |registry| lifecycle::remove_identity(registry, &iam_id),
                )?)
            })?;
            let text = format!("removed {iam_id} and {} key(s)", deleted.len());
            Ok(Report::new(
                json!({ "removed": iam_id.to_string(), "deleted_keys": deleted, "revision": revision }),
                text,
            ))
        }
    }
}

fn create(file: &RegistryFile, args: CreateArgs, now: Timestamp) -> Result<Report> {
    let expires_at = args
        .expires
        .as_deref()
        .map(|text| time::parse_when(text, now).map_err(|e| anyhow::anyhow!("--expires: {e}")))
        .transpose()?;
    let new = NewKey {
        for_identity: args.for_identity,
        name: args.name,
        kind: args.kind,
        service: args.service,
        scopes: args.scopes,
        expires_at,
        allowed_ips: args.allowed_ips,
        description: args.description,
        lock: args.lock,
        rate_limit: args.rate_limit,
    };
    let target = new
        .for_identity
        .clone()
        .unwrap_or_else(|| args.actor.clone());
    let ((record, secret), revision) =
        file.update_keys(&args.actor, Touches::KeysOf(target), |registry| {
            Ok(lifecycle::create_key(registry, &args.actor, new, now)?)
        })?;
    Ok(secret_report("created", &record, &secret, revision, now))
}

/// The one report that carries a secret: after create or rotate.
fn secret_report(
    verb: &str,
    record: &KeyRecord,
    secret: &Secret,
    revision: u64,
    now: Timestamp,
) -> Report {
    Report::new(
        serde_json::to_value(IssuedSecret::of(record, secret, revision, now))
            .expect("an answer serializes"),
        secret.expose(),
    )
    .with_note(format!(
        "{verb} {} key {} for {}. This is the only time the secret is shown; keyhost keeps only its SHA-256.",
        record.kind, record.id, record.owner
    ))
}

/// What `keyhost serve` recorded of the use of these keys: from the
/// replicas' shared state, or from the usage file (a bad file only warns).
fn load_usage(
    file: &RegistryFile,
    from: &UsageArgs,
    key_ids: &[&str],
) -> Result<BTreeMap<String, Usage>> {
    let Some(url) = &from.state else {
        return Ok(
            usage::load(&crate::side_files::usage_path(file.path())).unwrap_or_else(|e| {
                tracing::warn!("{e:#}");
                BTreeMap::new()
            }),
        );
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let timeout = std::time::Duration::from_secs(2);
    let shared =
        RedisCounters::connect(url, runtime.handle().clone(), timeout, OnStateError::Open)?;
    let usage = shared.usage_of(key_ids);
    if let Some(problem) = shared.problem() {
        anyhow::bail!("cannot read usage from the shared state: {problem}");
    }
    Ok(usage)
}

fn list(file: &RegistryFile, args: ListArgs, now: Timestamp) -> Result<Report> {
    let registry = file.load()?;
    let keys: Vec<&KeyRecord> = registry
        .keys
        .iter()
        .filter(|key| args.owner.as_ref().is_none_or(|owner| &key.owner == owner))
        .collect();
    let ids: Vec<&str> = keys.iter().map(|key| key.id.as_str()).collect();
    let usage = load_usage(file, &args.usage, &ids)?;
    let views: Vec<KeyView> = keys
        .iter()
        .map(|key| KeyView::of(key, now).with_usage(usage.get(&key.id)))
        .collect();
    let text = views
        .iter()
        .map(KeyView::summary)
        .collect::<Vec<_>>()
        .join("\n");
    Ok(Report::new(
        json!({ "keys": views, "revision": registry.revision }),
        text,
    ))
}

fn rules(file: &RegistryFile, command: RulesCommand, now: Timestamp) -> Result<Report> {
    // A change hands back the rules it made, with no second read.
    let set = |change| {
        file.update(|registry| {
            let given = lifecycle::set_rule(registry, change, now)?;
            Ok((registry.rules.clone(), given))
        })
    };
    let ((rules, given), revision) = match command {
        RulesCommand::Show => {
            let registry = file.load()?;
            ((registry.rules, Vec::new()), registry.revision)
        }
        RulesCommand::Set { rule, values } => set(rule_change(rule, Some(&values))?)?,
        RulesCommand::Unset { rule } => set(rule_change(rule, None)?)?,
    };
    let rules = &rules;
    let or_none = |set: bool, shown: String| if set { shown } else { "(none)".to_string() };
    let mut lines = vec![
        format!(
            "create_keys:      {}",
            rules
                .create_keys
                .as_ref()
                .map_or("(any user)".to_string(), |users| {
                    users
                        .iter()
                        .map(IamId::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
        ),
        format!(
            "max_key_lifetime: {}",
            or_none(
                rules.max_key_lifetime.is_some(),
                json!(rules.max_key_lifetime)
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            )
        ),
        format!("require_expiry:   {}", rules.require_expiry),
        format!(
            "allowed_ips:      {}",
            or_none(!rules.allowed_ips.is_empty(), rules.allowed_ips.join(", "))
        ),
        format!("require_if_match: {}", rules.require_if_match),
    ];
    if !given.is_empty() {
        lines.push(format!(
            "gave the allowed addresses to {} key(s) that had none",
            given.len()
        ));
    }
    Ok(Report::new(
        json!({ "rules": rules, "keys_given_addresses": given, "revision": revision }),
        lines.join("\n"),
    ))
}

/// The change `rule set` (with `values`) or `rule unset` (without) makes.
fn rule_change(rule: RuleName, values: Option<&[String]>) -> Result<lifecycle::RuleChange> {
    use lifecycle::RuleChange;
    let one = |values: &[String]| -> Result<String> {
        match values {
            [value] => Ok(value.clone()),
            _ => anyhow::bail!("{} takes one value", rule_name(rule)),
        }
    };
    let flag = |values: &[String]| -> Result<bool> {
        match one(values)?.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => anyhow::bail!("{}: {other:?} is not true or false", rule_name(rule)),
        }
    };
    Ok(match (rule, values) {
        (RuleName::CreateKeys, Some(values)) => RuleChange::CreateKeys(Some(
            values
                .iter()
                .map(|user| {
                    user.parse::<IamId>()
                        .map_err(|e| anyhow::anyhow!("create_keys: {e}"))
                })
                .collect::<Result<_>>()?,
        )),
        (RuleName::CreateKeys, None) => RuleChange::CreateKeys(None),
        (RuleName::MaxKeyLifetime, Some(values)) => RuleChange::MaxKeyLifetime(Some(
            crate::registry::Lifetime::parse(&one(values)?)
                .map_err(|e| anyhow::anyhow!("max_key_lifetime: {e}"))?,
        )),
        (RuleName::MaxKeyLifetime, None) => RuleChange::MaxKeyLifetime(None),
        (RuleName::RequireExpiry, values) => {
            RuleChange::RequireExpiry(values.map(flag).transpose()?.unwrap_or(false))
        }
        (RuleName::RequireIfMatch, values) => {
            RuleChange::RequireIfMatch(values.map(flag).transpose()?.unwrap_or(false))
        }
        (RuleName::AllowedIps, values) => {
            RuleChange::AllowedIps(values.map(<[String]>::to_vec).unwrap_or_default())
        }
    })
}

fn rule_name(rule: RuleName) -> String {
    use clap::ValueEnum;
    rule.to_possible_value()
        .map_or_else(String::new, |value| value.get_name().to_string())
}

fn import(file: &RegistryFile, args: ImportArgs, now: Timestamp) -> Result<Report> {
    let path = args.file.display().to_string();
    let format = args
        .format
        .or_else(|| import::Format::of_path(&args.file))
        .ok_or_else(|| {
            anyhow::anyhow!("{path}: give --format csv or --format json (the name does not end in .csv or .json)")
        })?;
    let text = if path == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read stdin")?
    } else {
        std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {path}"))?
    };
    let (rows, mut skipped) =
        import::read(&text, format, now).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    if !skipped.is_empty() && !args.skip_bad {
        let listed: Vec<String> = skipped.iter().map(|bad| format!("  {bad}")).collect();
        anyhow::bail!(
            "{path}: {} of its rows cannot be imported, so none was (--skip-bad imports the others):\n{}",
            skipped.len(),
            listed.join("\n")
        );
    }
    let plaintext = rows.iter().any(|row| row.plaintext);
    let mut imported = Vec::new();
    let mut revision = None;
    if !rows.is_empty() {
        let progress = Progress::keys("importing keys", rows.len());
        let (refused, written) = file.update(|registry| {
            let mut refused = Vec::new();
            for (done, row) in rows.into_iter().enumerate() {
                let new = NewKey {
                    for_identity: args.for_identity.clone(),
                    name: row.name,
                    description: row.description,
                    scopes: row.scopes,
                    expires_at: row.expires_at,
                    ..NewKey::default()
                };
                match lifecycle::import_key(registry, &args.actor, new, row.hash, row.enabled, now)
                {
                    Ok(record) => imported.push((row.at, record)),
                    Err(why) if args.skip_bad => refused.push(import::Bad {
                        at: row.at,
                        reason: why.to_string(),
                    }),
                    Err(why) => {
                        return Err(anyhow::Error::from(why)
                            .context(format!("{path}, {}: nothing was imported", row.at)));
                    }
                }
                progress.set(done + 1);
            }
            Ok(refused)
        })?;
        progress.finish();
        skipped.extend(refused);
        revision = Some(written);
    }
    let mut lines = vec![format!("imported {} keys from {path}", imported.len())];
    lines.extend(
        imported.iter().map(|(at, record)| {
            format!("  {at}: {} {} ({})", record.id, record.name, record.owner)
        }),
    );
    lines.extend(skipped.iter().map(|bad| format!("skipped {bad}")));
    let imported: Vec<_> = imported
        .iter()
        .map(|(at, record)| json!({ "at": at, "id": record.id, "name": record.name, "owner": record.owner }))
        .collect();
    let mut report = Report::new(
        json!({ "imported": imported, "skipped": skipped, "revision": revision }),
        lines.join("\n"),
    );
    if plaintext {
        report = report.with_note(format!(
            "{path} holds the secrets themselves: delete it now that keyhost keeps their hashes"
        ));
    }
    Ok(report)
}

fn inactive(file: &RegistryFile, args: InactiveArgs, now: Timestamp) -> Result<Report> {
    let period = Period::parse(&args.period).map_err(|why| anyhow::anyhow!("--for: {why}"))?;
    let registry = file.load()?;
    let keys: Vec<&KeyRecord> = registry.keys.iter().collect();
    let ids: Vec<&str> = keys.iter().map(|key| key.id.as_str()).collect();
    let usage = load_usage(file, &args.usage, &ids)?;
    let report = InactiveReport::of(&registry.identities, &keys, &usage, &period, now);
    let text = report.text();
    Ok(Report::new(
        serde_json::to_value(&report).expect("a report serializes"),
        text,
    ))
}

fn show(file: &RegistryFile, id: &str, from: &UsageArgs, now: Timestamp) -> Result<Report> {
    let registry = file.load()?;
    let key = registry
        .key(id)
        .ok_or_else(|| lifecycle::unknown("key id", id))
        .with_context(|| format!("registry {}", file.path().display()))?;
    let usage = load_usage(file, from, &[key.id.as_str()])?;
    let view = KeyView::of(key, now).with_usage(usage.get(&key.id));
    let text = view.details();
    Ok(Report::new(
        json!({ "key": view, "revision": registry.revision }),
        text,
    ))
}

fn key_report(verb: &str, record: &KeyRecord, revision: u64, now: Timestamp) -> Report {
    let view = KeyView::of(record, now);
    let text = format!("{verb} {} ({})", record.id, view.state);
    Report::new(json!({ "key": view, "revision": revision }), text)
}

/// A change to the key `args` names, made only if it stands as
/// `--if-match` asks (checked under the registry's lock, in the write).
fn key_write<T>(
    file: &RegistryFile,
    args: &ActorKeyArgs,
    change: impl FnOnce(&mut Registry) -> lifecycle::Result<T>,
) -> Result<(T, u64)> {
    let precondition = if_match(args.if_match.as_deref())?;
    file.update_keys(&args.actor, Touches::Key(args.id.clone()), |registry| {
        Ok(lifecycle::on_key(
            registry,
            &args.id,
            &precondition,
            change,
        )?)
    })
}

/// `--if-match`, read.
fn if_match(given: Option<&str>) -> Result<Precondition> {
    given.map_or(Ok(Precondition::None), |text| {
        Precondition::parse(text).map_err(|why| anyhow::anyhow!("--if-match: {why}"))
    })
}

fn change_state(
    file: &RegistryFile,
    args: ActorKeyArgs,
    change: StateChange,
    now: Timestamp,
) -> Result<Report> {
    let (record, revision) = key_write(file, &args, |registry| {
        lifecycle::change_state(registry, &args.id, &args.actor, change, now)
    })?;
    let verb = match change {
        StateChange::Lock => "locked",
        StateChange::Unlock => "unlocked",
        StateChange::Disable => "disabled",
        StateChange::Enable => "enabled",
    };
    Ok(key_report(verb, &record, revision, now))
}

fn end_grace(file: &RegistryFile, args: ActorKeyArgs, now: Timestamp) -> Result<Report> {
    let (record, revision) = key_write(file, &args, |registry| {
        lifecycle::end_grace(registry, &args.id, &args.actor, now)
    })?;
    Ok(key_report(
        "ended the grace period of",
        &record,
        revision,
        now,
    ))
}

fn leak(file: &RegistryFile, args: ActorKeyArgs, now: Timestamp) -> Result<Report> {
    let (action, revision) = key_write(file, &args, |registry| {
        lifecycle::report_leak(registry, &args.id, &args.actor, now)
    })?;
    let action = match action {
        LeakAction::None => "none",
        LeakAction::Disable => "disable",
        LeakAction::Delete => "delete",
    };
    Ok(Report::new(
        json!({ "leaked": args.id, "action_when_leaked": action, "revision": revision }),
        format!(
            "marked {} as leaked (action_when_leaked = {action})",
            args.id
        ),
    ))
}

fn delete(file: &RegistryFile, args: ActorKeyArgs) -> Result<Report> {
    let (record, revision) = key_write(file, &args, |registry| {
        lifecycle::delete_key(registry, &args.id, &args.actor)
    })?;
    Ok(Report::new(
        json!({ "deleted": record.id, "revision": revision }),
        format!("deleted {}", record.id),
    ))
}

fn rotate(file: &RegistryFile, args: RotateArgs, now: Timestamp) -> Result<Report> {
    let grace = args
        .grace
        .as_deref()
        .map(|text| time::parse_duration(text).map_err(|e| anyhow::anyhow!("--grace: {e}")))
        .transpose()?;
    let ((record, secret), revision) = key_write(file, &args.key, |registry| {
        lifecycle::rotate_key(registry, &args.key.id, &args.key.actor, grace, now)
    })?;
    Ok(secret_report("rotated", &record, &secret, revision, now))
}

fn update(file: &RegistryFile, args: UpdateArgs, now: Timestamp) -> Result<Report> {
    let expires_at = match args.expires.as_deref() {
        None => None,
        Some("never") => Some(None),
        Some(text) => Some(Some(
            time::parse_when(text, now).map_err(|e| anyhow::anyhow!("--expires: {e}"))?,
        )),
    };
    let changes = KeyChanges {
        name: args.name,
        description: args.description,
        scopes: if args.all_scopes {
            Some(Vec::new())
        } else {
            Some(args.scopes).filter(|s| !s.is_empty())
        },
        expires_at,
        allowed_ips: if args.any_ip {
            Some(Vec::new())
        } else {
            Some(args.allowed_ips).filter(|ips| !ips.is_empty())
        },
        rate_limit: args
            .rate_limit
            .map(|limit| Some(limit).filter(|l| l != "none")),
    };
    let (record, revision) = key_write(file, &args.key, |registry| {
        lifecycle::update_key(registry, &args.key.id, &args.key.actor, changes, now)
    })?;
    Ok(key_report("updated", &record, revision, now))
}

fn scan(file: &RegistryFile, args: ScanArgs, now: Timestamp) -> Result<Report> {
    let registry = file.load()?;
    // A replicas file that cannot be read costs the scan its replica
    // credentials' names, not the scan.
    let replicas = crate::replicas::list(file.path()).unwrap_or_else(|e| {
        tracing::warn!("replica credentials will not be named: {e:#}");
        Vec::new()
    });
    let scanner = Scanner::new(&registry, replicas);
    let mut skipped = Vec::new();
    let findings = if args.paths.is_empty() {
        scanner.scan_reader("<stdin>", std::io::stdin().lock())?
    } else {
        let show_progress = std::io::stderr().is_terminal();
        let mut files = 0usize;
        let mut progress = |_: &Path| {
            files += 1;
            if show_progress && files.is_multiple_of(500) {
                eprint!("\rscanned {files} files");
            }
        };
        let scan = scanner.scan_paths(&args.paths, &mut progress)?;
        if show_progress && files >= 500 {
            eprintln!("\rscanned {files} files");
        }
        skipped = scan.skipped;
        scan.findings
    };
    let mut revision = registry.revision;
    let mut marked = Vec::new();
    if args.mark_leaked {
        let mut ids: Vec<String> = findings.iter().filter_map(|f| f.key_id.clone()).collect();
        ids.sort();
        ids.dedup();
        if !ids.is_empty() {
            let (actions, new_revision) = file.update(|registry| {
                let mut actions = Vec::new();
                for id in &ids {
                    // A key deleted since the scan read the registry is skipped.
                    if registry.key(id).is_some() {
                        actions.push((id.clone(), lifecycle::mark_leaked(registry, id, now)?));
                    }
                }
                Ok(actions)
            })?;
            revision = new_revision;
            marked = actions;
        }
    }
    let text = findings
        .iter()
        .map(|f| match (&f.key_id, &f.replica) {
            (Some(id), _) => format!("{}:{}: key {id} ({})", f.file, f.line, f.kind),
            (None, Some(name)) => format!(
                "{}:{}: replica credential {name:?} (revoke it: keyhost replica revoke {name})",
                f.file, f.line
            ),
            (None, None) if f.kind == REPLICA_CREDENTIAL => format!(
                "{}:{}: a replica credential that is not this registry's",
                f.file, f.line
            ),
            (None, None) => format!(
                "{}:{}: a {} key that is not in this registry",
                f.file, f.line, f.kind
            ),
        })
        .chain(marked.iter().map(|(id, action)| {
            format!(
                "marked {id} as leaked (action_when_leaked = {})",
                json!(action).as_str().unwrap_or("")
            )
        }))
        .collect::<Vec<_>>()
        .join("\n");
    let marked_json: Vec<_> = marked
        .iter()
        .map(|(id, action)| json!({ "key_id": id, "action": action }))
        .collect();
    Ok(Report::new(
        json!({ "findings": findings, "marked": marked_json, "skipped": skipped, "revision": revision }),
        text,
    ))
}
