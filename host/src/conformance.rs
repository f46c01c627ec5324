//! Conformance vectors: cases of (key record, identity, request, policy
//! configuration) with the decision a policy must give. `keyhost policy test`
//! runs a component against a vector file; the foreign hosts in
//! `tests/foreign/` read the same file, so every host and every language is
//! held to one list.
//!
//! The format is JSON. A case's `key`, `identity`, `request` and `config`
//! objects are merged field by field over the file's `defaults`, and those
//! over a policy's own defaults when `keyhost policy test --defaults` gives
//! them ([`Defaults::load`]).

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::check::CheckRequest;
use crate::iam::{IamId, KeyKind};
use crate::policy::contract::{CONTRACT, CONTRACT_PACKAGE, Summary};
use crate::policy::{Policy, PolicyFault};
use crate::registry::{Identity, KeyHash, KeyRecord};
use crate::time::Timestamp;
use crate::verdict::{Decision, DenyCode};

/// A vector file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorFile {
    /// The contract the cases are written for, as `keyhost:policy@VERSION`.
    pub contract: String,
    /// What the file is, for people.
    #[serde(default)]
    pub about: String,
    /// The fields every case starts from.
    #[serde(default)]
    defaults: Defaults,
    cases: Vec<Entry>,
}

/// The fields every case starts from: a vector file's `defaults`, or a
/// policy's own, laid over them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    #[serde(default)]
    config: Map<String, Value>,
    #[serde(default)]
    key: Map<String, Value>,
    #[serde(default)]
    identity: Map<String, Value>,
    #[serde(default)]
    request: Map<String, Value>,
}

impl Defaults {
    /// Reads a policy's own defaults: a file shaped like a vector file's
    /// `defaults`, `{"defaults": {...}}`, with any of `config`, `key`,
    /// `identity` and `request`, each holding the fields it sets.
    pub fn load(path: &Path) -> Result<Defaults> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct OwnDefaults {
            defaults: Defaults,
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read defaults {}", path.display()))?;
        let own: OwnDefaults = serde_json::from_str(&text).with_context(|| {
            format!(
                "defaults {} are not valid: expected {{\"defaults\": {{...}}}} with any of `config`, `key`, `identity` and `request`",
                path.display()
            )
        })?;
        Ok(own.defaults)
    }

    /// These defaults with `over`'s fields laid on top, object by object.
    fn overlaid_with(&self, over: &Defaults) -> Defaults {
        Defaults {
            config: merged(&self.config, &over.config),
            key: merged(&self.key, &over.key),
            identity: merged(&self.identity, &over.identity),
            request: merged(&self.request, &over.request),
        }
    }
}

/// A case as written, or the defaults: each object holds only the fields it
/// sets.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    #[serde(default)]
    name: String,
    /// The rule the case exercises, for people.
    #[serde(default)]
    rule: String,
    #[serde(default)]
    config: Map<String, Value>,
    #[serde(default)]
    key: Map<String, Value>,
    #[serde(default)]
    identity: Map<String, Value>,
    #[serde(default)]
    request: Map<String, Value>,
    expect: Option<Expected>,
}

/// The decision a case expects. Messages are for people and differ between
/// policies, so a case compares them only when it gives `message_contains`,
/// and an allow's info pairs only when it gives `info`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case", deny_unknown_fields)]
pub enum Expected {
    /// The policy must allow with exactly these info pairs.
    Allow {
        /// The info pairs, all of them, in order.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        info: Option<Vec<(String, String)>>,
    },
    /// The policy must deny with this code.
    Deny {
        /// The deny code.
        code: VectorCode,
        /// A part of the message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_contains: Option<String>,
    },
    /// The policy's `configure` must refuse the case's settings.
    ConfigureError {
        /// A part of the message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_contains: Option<String>,
    },
}

/// A deny code as vectors spell it: the stable snake_case name keyhost
/// prints (`wrong_service`). The WIT's kebab-case spelling is refused with
/// the name to write instead, so a vector cannot fail for its spelling alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct VectorCode(pub DenyCode);

impl TryFrom<String> for VectorCode {
    type Error = String;

    fn try_from(name: String) -> Result<VectorCode, String> {
        if let Some(code) = DenyCode::from_name(&name) {
            return Ok(VectorCode(code));
        }
        if let Some(code) = DenyCode::from_name(&name.replace('-', "_")) {
            return Err(format!(
                "deny code {name:?} is the WIT's spelling; vectors write {:?}",
                code.as_str()
            ));
        }
        let names: Vec<&str> = DenyCode::ALL.iter().map(|code| code.as_str()).collect();
        Err(format!(
            "deny code {name:?} is not one of {}",
            names.join(", ")
        ))
    }
}

impl From<VectorCode> for String {
    fn from(code: VectorCode) -> String {
        code.0.as_str().to_string()
    }
}

impl std::fmt::Display for VectorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// What a policy answered, in the JSON form every host prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Outcome {
    /// The policy allowed.
    Allow {
        /// The info pairs.
        info: Vec<(String, String)>,
    },
    /// The policy denied.
    Deny {
        /// The deny code.
        code: String,
        /// Its message.
        message: String,
    },
    /// `configure` refused the settings.
    ConfigureError {
        /// Its message.
        message: String,
    },
}

impl Outcome {
    fn matches(&self, expected: &Expected) -> bool {
        let mentions = |message: &str, part: &Option<String>| {
            part.as_deref().is_none_or(|part| message.contains(part))
        };
        match (self, expected) {
            (Outcome::Allow { info }, Expected::Allow { info: want }) => {
                want.as_ref().is_none_or(|want| want == info)
            }
            (
                Outcome::Deny { code, message },
                Expected::Deny {
                    code: want,
                    message_contains,
                },
            ) => code == want.0.as_str() && mentions(message, message_contains),
            (
                Outcome::ConfigureError { message },
                Expected::ConfigureError { message_contains },
            ) => mentions(message, message_contains),
            _ => false,
        }
    }
}

/// One case, ready to run.
pub struct Case {
    /// The case's name.
    pub name: String,
    /// The rule it exercises.
    pub rule: String,
    config: Vec<(String, String)>,
    key: KeyRecord,
    identity: Identity,
    request: CheckRequest,
    /// What the policy must answer.
    pub expect: Expected,
}

/// One case's result.
#[derive(Debug, Serialize)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// The rule it exercises.
    pub rule: String,
    /// Whether the policy answered as expected.
    pub passed: bool,
    /// What it should have answered.
    pub expected: Expected,
    /// What it answered.
    pub decision: Outcome,
}

impl VectorFile {
    /// Reads and checks a vector file.
    pub fn load(path: &Path) -> Result<VectorFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read vectors {}", path.display()))?;
        let file: VectorFile = serde_json::from_str(&text)
            .with_context(|| format!("vectors {} are not valid", path.display()))?;
        file.check_contract()
            .with_context(|| format!("vectors {}", path.display()))?;
        Ok(file)
    }

    fn check_contract(&self) -> Result<()> {
        let version = self
            .contract
            .strip_prefix(CONTRACT_PACKAGE)
            .and_then(|rest| rest.strip_prefix('@'))
            .with_context(|| {
                format!(
                    "`contract` is {:?}; expected {CONTRACT_PACKAGE}@VERSION",
                    self.contract
                )
            })?;
        let summary = Summary {
            contract_version: Some(version.to_string()),
            exports: Vec::new(),
            imports: Vec::new(),
        };
        // The records are the same in every version keyhost speaks, so
        // vectors of any of them run against a policy of any of them.
        summary
            .spoken_version()
            .map(|_| ())
            .with_context(|| format!("they are written for {}, not {CONTRACT}", self.contract))
    }

    /// The cases with the defaults merged in, or the first one that is not
    /// valid, named.
    pub fn cases(&self) -> Result<Vec<Case>> {
        self.cases_over(&Defaults::default())
    }

    /// The cases with the file's defaults, then `own`'s, merged in: the
    /// file's cases run under a policy's own defaults (its settings, the
    /// service it narrows to).
    pub fn cases_over(&self, own: &Defaults) -> Result<Vec<Case>> {
        let defaults = self.defaults.overlaid_with(own);
        self.cases
            .iter()
            .enumerate()
            .map(|(index, raw)| {
                case(&defaults, raw).with_context(|| format!("case {} ({:?})", index + 1, raw.name))
            })
            .collect()
    }
}

fn case(defaults: &Defaults, raw: &Entry) -> Result<Case> {
    let expect = raw.expect.clone().context("the case has no `expect`")?;
    let config = merged(&defaults.config, &raw.config)
        .into_iter()
        .map(|(name, value)| match value {
            Value::String(text) => Ok((name, text)),
            other => bail!("config.{name} is {other}; config values are strings"),
        })
        .collect::<Result<_>>()?;
    let key: VectorKey = part(&defaults.key, &raw.key, "key")?;
    let identity: VectorIdentity = part(&defaults.identity, &raw.identity, "identity")?;
    let request: VectorRequest = part(&defaults.request, &raw.request, "request")?;
    Ok(Case {
        name: raw.name.clone(),
        rule: raw.rule.clone(),
        config,
        key: key.into_record()?,
        identity: identity.into_identity()?,
        request: request.into_request(),
        expect,
    })
}

/// Runs every case on a fresh instance of `policy`, as keyhost would:
/// `configure` with the case's settings, then `validate`.
pub fn run(policy: &Policy, cases: &[Case]) -> Vec<CaseResult> {
    cases
        .iter()
        .map(|case| {
            let decision = outcome(policy, case);
            CaseResult {
                name: case.name.clone(),
                rule: case.rule.clone(),
                passed: decision.matches(&case.expect),
                expected: case.expect.clone(),
                decision,
            }
        })
        .collect()
}

fn outcome(policy: &Policy, case: &Case) -> Outcome {
    // Each case runs alone, on this thread.
    futures_executor::block_on(outcome_of(policy, case))
}

async fn outcome_of(policy: &Policy, case: &Case) -> Outcome {
    let policy_error = |reason: String| Outcome::Deny {
        code: DenyCode::PolicyError.as_str().to_string(),
        message: reason,
    };
    let mut instance = match policy.instantiate(&case.config).await {
        Ok(instance) => instance,
        Err(fault) => {
            return match fault {
                PolicyFault::RefusedConfiguration { message, .. } => {
                    Outcome::ConfigureError { message }
                }
                other => policy_error(other.reason()),
            };
        }
    };
    let now = case.request.now.expect("vectors give the time");
    match instance
        .validate(&case.key, &case.identity, &case.request, now)
        .await
    {
        Ok(Decision::Allow(info)) => Outcome::Allow { info },
        Ok(Decision::Deny { code, message }) => Outcome::Deny {
            code: code.as_str().to_string(),
            message,
        },
        Err(fault) => policy_error(fault.reason()),
    }
}

fn merged(defaults: &Map<String, Value>, overrides: &Map<String, Value>) -> Map<String, Value> {
    let mut all = defaults.clone();
    all.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
    all
}

fn part<T: for<'de> Deserialize<'de>>(
    defaults: &Map<String, Value>,
    overrides: &Map<String, Value>,
    what: &str,
) -> Result<T> {
    serde_json::from_value(Value::Object(merged(defaults, overrides)))
        .with_context(|| format!("{what} is not valid"))
}

/// A vector's key record. keyhost passes only records a registry can hold,
/// so the vector is read into one, and the same code as a check makes the
/// contract's records from it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VectorKey {
    id: String,
    name: String,
    kind: String,
    owner: String,
    service: Option<String>,
    scopes: Vec<String>,
    allowed_ips: Vec<String>,
    created_at: i64,
    expires_at: Option<i64>,
    disabled: bool,
    leaked: bool,
    locked: bool,
}

fn parse_iam_id(field: &str, text: &str) -> Result<IamId> {
    text.parse()
        .map_err(|e| anyhow::anyhow!("{field} {text:?} is not an IAM id: {e}"))
}

impl VectorKey {
    fn into_record(self) -> Result<KeyRecord> {
        let kind = KeyKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == self.kind)
            .with_context(|| {
                format!(
                    "key.kind {:?} is not one of user, service-id, classic-infrastructure, service-specific",
                    self.kind
                )
            })?;
        Ok(KeyRecord {
            id: self.id,
            name: self.name,
            kind,
            owner: parse_iam_id("key.owner", &self.owner)?,
            service: self.service,
            description: String::new(),
            scopes: self.scopes,
            allowed_ips: self.allowed_ips,
            hash: KeyHash([0; 32]),
            created_at: Timestamp(self.created_at),
            updated_at: Timestamp(self.created_at),
            expires_at: self.expires_at.map(Timestamp),
            locked: self.locked,
            disabled: self.disabled,
            leaked: self.leaked,
            rate_limit: None,
            retired: Vec::new(),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VectorIdentity {
    iam_id: String,
    kind: String,
    owner: Option<String>,
    scopes: Vec<String>,
}

impl VectorIdentity {
    fn into_identity(self) -> Result<Identity> {
        let iam_id = parse_iam_id("identity.iam_id", &self.iam_id)?;
        if iam_id.kind().as_str() != self.kind {
            bail!(
                "identity.kind {:?} does not match identity.iam_id {:?} (a {})",
                self.kind,
                self.iam_id,
                iam_id.kind().as_str()
            );
        }
        Ok(Identity {
            iam_id,
            owner: self
                .owner
                .map(|owner| parse_iam_id("identity.owner", &owner))
                .transpose()?,
            scopes: self.scopes,
            created_at: Timestamp(0),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VectorRequest {
    service: Option<String>,
    scope: Option<String>,
    source_ip: Option<String>,
    method: Option<String>,
    path: Option<String>,
    attributes: Vec<(String, String)>,
    now: i64,
}

impl VectorRequest {
    fn into_request(self) -> CheckRequest {
        CheckRequest {
            service: self.service,
            scope: self.scope,
            source_ip: self.source_ip,
            method: self.method,
            path: self.path,
            attributes: self.attributes,
            now: Some(Timestamp(self.now)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(cases: &str) -> VectorFile {
        let text = format!(
            r#"{{"contract": "{CONTRACT}",
                "defaults": {{
                  "key": {{"id": "k", "name": "n", "kind": "user", "owner": "user:a",
                           "service": null, "scopes": [], "allowed_ips": [], "created_at": 0,
                           "expires_at": null, "disabled": false, "leaked": false, "locked": false}},
                  "identity": {{"iam_id": "user:a", "kind": "user", "owner": null, "scopes": []}},
                  "request": {{"service": null, "scope": null, "source_ip": null, "method": null,
                               "path": null, "attributes": [], "now": 5}}
                }},
                "cases": {cases}}}"#
        );
        let file: VectorFile = serde_json::from_str(&text).unwrap();
        file.check_contract().unwrap();
        file
    }

    #[test]
    fn a_case_overrides_the_defaults_field_by_field() {
        let f = file(
            r#"[{"name": "x", "key": {"disabled": true}, "request": {"now": 9},
                 "config": {"a": "b"}, "expect": {"decision": "deny", "code": "disabled"}}]"#,
        );
        let cases = f.cases().unwrap();
        assert!(cases[0].key.disabled);
        assert_eq!(cases[0].key.owner.as_str(), "user:a");
        assert_eq!(cases[0].request.now, Some(Timestamp(9)));
        assert_eq!(cases[0].config, vec![("a".to_string(), "b".to_string())]);
        assert_eq!(
            cases[0].expect,
            Expected::Deny {
                code: VectorCode(DenyCode::Disabled),
                message_contains: None,
            }
        );
    }

    #[test]
    fn a_bad_case_is_named_with_the_field() {
        let f = file(
            r#"[{"name": "bad kind", "key": {"kind": "root"}, "expect": {"decision": "allow"}}]"#,
        );
        let error = format!("{:#}", f.cases().err().unwrap());
        assert!(error.contains("case 1 (\"bad kind\")"), "{error}");
        assert!(error.contains("key.kind \"root\""), "{error}");
        let f = file(
            r#"[{"name": "typo", "key": {"disabld": true}, "expect": {"decision": "allow"}}]"#,
        );
        let error = format!("{:#}", f.cases().err().unwrap());
        assert!(error.contains("disabld"), "{error}");
    }

    #[test]
    fn a_deny_code_in_the_wits_spelling_is_refused_with_the_one_to_write() {
        let text = format!(
            r#"{{"contract": "{CONTRACT}", "cases": [{{"name": "n",
                "expect": {{"decision": "deny", "code": "wrong-service"}}}}]}}"#
        );
        let error = serde_json::from_str::<VectorFile>(&text)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("\"wrong-service\" is the WIT's spelling"),
            "{error}"
        );
        assert!(error.contains("vectors write \"wrong_service\""), "{error}");
        let text = text.replace("wrong-service", "wrong_servise");
        let error = serde_json::from_str::<VectorFile>(&text)
            .unwrap_err()
            .to_string();
        assert!(error.contains("\"wrong_servise\" is not one of"), "{error}");
        assert!(error.contains("insufficient_scope"), "{error}");
    }

    #[test]
    fn a_policys_own_defaults_sit_between_the_files_and_each_case() {
        let f = file(
            r#"[{"name": "plain", "expect": {"decision": "allow"}},
                {"name": "own", "request": {"service": "mine"}, "config": {"c": "case"},
                 "expect": {"decision": "allow"}}]"#,
        );
        let own: Defaults = serde_json::from_str(
            r#"{"config": {"c": "own", "d": "own"}, "request": {"service": "databases"}}"#,
        )
        .unwrap();
        let cases = f.cases_over(&own).unwrap();
        assert_eq!(cases[0].request.service.as_deref(), Some("databases"));
        // The file's defaults still fill what the policy's leave out.
        assert_eq!(cases[0].request.now, Some(Timestamp(5)));
        assert_eq!(cases[0].key.owner.as_str(), "user:a");
        assert_eq!(cases[1].request.service.as_deref(), Some("mine"));
        assert_eq!(
            cases[1].config,
            vec![("c".into(), "case".into()), ("d".into(), "own".into())]
        );
        let typo = serde_json::from_str::<Defaults>(r#"{"requests": {}}"#).unwrap_err();
        assert!(typo.to_string().contains("requests"), "{typo}");
    }

    #[test]
    fn vectors_for_another_major_version_are_refused() {
        let text = r#"{"contract": "keyhost:policy@9.0.0", "cases": []}"#;
        let file: VectorFile = serde_json::from_str(text).unwrap();
        let error = format!("{:#}", file.check_contract().unwrap_err());
        assert!(error.contains("keyhost:policy@9.0.0"), "{error}");
    }

    #[test]
    fn outcomes_print_in_the_shared_json_form() {
        let deny = Outcome::Deny {
            code: "expired".into(),
            message: "m".into(),
        };
        assert_eq!(
            serde_json::to_string(&deny).unwrap(),
            r#"{"decision":"deny","code":"expired","message":"m"}"#
        );
        let allow = Outcome::Allow {
            info: vec![("k".into(), "v".into())],
        };
        assert_eq!(
            serde_json::to_string(&allow).unwrap(),
            r#"{"decision":"allow","info":[["k","v"]]}"#
        );
        assert!(deny.matches(&Expected::Deny {
            code: VectorCode(DenyCode::Expired),
            message_contains: None,
        }));
        assert!(!deny.matches(&Expected::Allow { info: None }));
    }

    #[test]
    fn cases_may_assert_info_pairs_and_message_parts() {
        let f = file(
            r#"[{"name": "a", "expect": {"decision": "allow", "info": [["granted", "read"]]}},
                {"name": "d", "expect": {"decision": "deny", "code": "expired", "message_contains": "expired at"}}]"#,
        );
        let cases = f.cases().unwrap();
        let allow = |info: &[(&str, &str)]| Outcome::Allow {
            info: info
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        };
        assert!(allow(&[("granted", "read")]).matches(&cases[0].expect));
        assert!(!allow(&[]).matches(&cases[0].expect));
        let deny = |message: &str| Outcome::Deny {
            code: "expired".into(),
            message: message.into(),
        };
        assert!(deny("the key expired at noon").matches(&cases[1].expect));
        assert!(!deny("the key is old").matches(&cases[1].expect));
    }
}
