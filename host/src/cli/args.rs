//! The command line, as clap parses it: the CLI contract of docs/src/design.md.

use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand};

use clap::builder::{PossibleValuesParser, TypedValueParser};

use crate::counters::OnStateError;
use crate::iam::{IamId, KeyKind};
use crate::registry::LeakAction;

/// A parser for a domain enum from its `names`, which `--help` lists.
fn one_of<T>(names: &'static [&'static str]) -> impl TypedValueParser<Value = T>
where
    T: FromStr<Err = String> + Clone + Send + Sync + 'static,
{
    PossibleValuesParser::new(names).map(|name| {
        name.parse()
            .unwrap_or_else(|e: String| unreachable!("a listed name parses: {e}"))
    })
}

#[derive(Debug, Parser)]
#[command(
    name = "keyhost",
    version,
    about = "API keys in a TOML registry, checked by a WebAssembly policy",
    long_about = "keyhost manages API keys in a TOML registry and checks them. The decision on a \
                  presented key is made by a policy compiled to a WebAssembly component; the \
                  default policy is built in, and --policy FILE.wasm swaps it.\n\n\
                  Exit codes: 0 success or allow; 1 denied or refused by a rule; 2 error."
)]
/// The `keyhost` command line.
pub struct Cli {
    /// The registry file.
    #[arg(
        long,
        global = true,
        env = "KEYHOST_REGISTRY",
        default_value = "keys.toml"
    )]
    pub registry: PathBuf,

    /// Print exactly one JSON object on stdout.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    /// The command to run.
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an empty registry (mode 0600); refuses to overwrite one.
    Init(InitArgs),
    /// Add, list or remove users and service IDs.
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// Create a key and print its secret, once.
    Create(CreateArgs),
    /// List keys (never secrets or hashes).
    List(ListArgs),
    /// Show one key (never its secret or hash).
    Show(KeyIdArgs),
    /// Lock a key against change and deletion; it still authenticates.
    Lock(ActorKeyArgs),
    /// Unlock a locked key.
    Unlock(ActorKeyArgs),
    /// Disable a key: it stops authenticating until enabled.
    Disable(ActorKeyArgs),
    /// Enable a disabled key (a leaked key is rotated first).
    Enable(ActorKeyArgs),
    /// Delete a key.
    Delete(ActorKeyArgs),
    /// Give a key a new secret and print it, once; the secret it replaces
    /// works on for --grace, and every older one stops. Rotating a leaked key
    /// clears the leak.
    Rotate(RotateArgs),
    /// End a rotated-out secret's grace period now.
    EndGrace(ActorKeyArgs),
    /// Report a key as leaked by hand; the registry's action_when_leaked
    /// (none, disable or delete) follows, as for scan --mark-leaked.
    Leak(ActorKeyArgs),
    /// Change a key's name, description, scopes, expiry or allowed IPs.
    Update(UpdateArgs),
    /// Check a key read from stdin or KEYHOST_KEY (never from the command line).
    Check(CheckArgs),
    /// Import keys made elsewhere, from a CSV (AWS API Gateway's columns) or
    /// JSON (Unkey's migration shape) file of secrets or their SHA-256.
    /// Nothing is written unless every row is good (or --skip-bad).
    Import(ImportArgs),
    /// The registry's rules over every identity's keys (as IBM Cloud's
    /// account settings): who may create keys, their longest lifetime, a
    /// required expiry, the addresses every key is used from.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Reports on the registry: the keys and identities gone unused.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Find keys in files (or stdin) by prefix and checksum.
    Scan(ScanArgs),
    /// The HTTP auth service for proxies, with a management API and hot reload.
    Serve(ServeArgs),
    /// Look inside a policy component, or run conformance vectors against it.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The keys that sign access tokens (keyhost serve's POST /identity/token).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Build keyhost's whole check into one component for wasi:http proxy
    /// hosts (wasmtime serve, jco serve, Spin, wasmCloud).
    #[command(subcommand)]
    Gate(GateCommand),
    /// Write the registry's snapshot (hashes and records, never a secret),
    /// the form the gate and the proxy filters read, or inspect one.
    Snapshot(SnapshotArgs),
    /// Write what Envoy (proxy-wasm) or Traefik (http-wasm) needs to check
    /// keys inside the proxy: the filter, and its configuration with the
    /// registry's snapshot (hashes and records, never a secret).
    #[command(subcommand)]
    Export(ExportCommand),
    /// Credentials for replicas: proxy filters that fetch the registry's
    /// snapshot from keyhost serve (GET /v1/snapshot). Not user keys: they
    /// read the snapshot and nothing else.
    #[command(subcommand)]
    Replica(ReplicaCommand),
    /// Run a walkthrough on a throwaway registry: create keys, check them.
    Demo,
}

#[derive(Debug, Subcommand)]
pub enum GateCommand {
    /// Compose the gate, a policy and a snapshot of the registry into one
    /// wasi:http component that hands allowed requests to --app (an app
    /// component composed behind it) or --upstream (a URL).
    /// The snapshot holds hashes and records, never a secret; a registry
    /// change means building and deploying the gate again.
    Build(GateBuildArgs),
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub command: Option<SnapshotCommand>,
    /// Where to write the snapshot (mode 0600: it holds the keys' hashes).
    #[arg(short, long, required = true)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Print a snapshot's registry revision, key count and checksum state;
    /// exit 1 when it is damaged (truncated, padded or any byte changed).
    Inspect(SnapshotInspectArgs),
}

#[derive(Debug, Args)]
pub struct SnapshotInspectArgs {
    /// The snapshot file.
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct GateBuildArgs {
    /// Where to write the composed component.
    #[arg(short, long)]
    pub output: PathBuf,
    /// The policy component; the built-in default when unset.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    #[command(flatten)]
    pub checking: CheckingArgs,
    /// Hand allowed requests to this app component (it exports
    /// wasi:http/incoming-handler), composed behind the gate.
    #[arg(
        long,
        value_name = "APP.wasm",
        required_unless_present = "upstream",
        conflicts_with = "upstream"
    )]
    pub app: Option<PathBuf>,
    /// Forward allowed requests to this URL (http:// or https://), the
    /// request's own path appended.
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Write the proxy-wasm filter for Envoy (--wasm) and its plugin
    /// configuration (--config): the snapshot inline, or fetched live from
    /// keyhost serve through an Envoy cluster (--live CLUSTER).
    Envoy(EnvoyExportArgs),
    /// Write the http-wasm plugin for Traefik (--plugins DIR, as
    /// plugins-local) and a dynamic configuration file defining the
    /// middleware with the snapshot inline (--config FILE). With --watch,
    /// rewrite the file on every registry change; Traefik reloads it.
    Traefik(TraefikExportArgs),
}

/// What every request through a gate or filter is checked for.
#[derive(Debug, Args)]
pub struct CheckingArgs {
    /// The service every request through it is for.
    #[arg(long)]
    pub service: Option<String>,
    /// The scope every request through it needs.
    #[arg(long)]
    pub scope: Option<String>,
    /// Trust this header's last entry as the client's address (set it only
    /// when a proxy in front writes it and a client cannot). Without it, the
    /// address is the peer the proxy took the request from: Envoy's and
    /// Traefik's own word; a gate has none (wasi:http does not give it), so
    /// keys with an IP allow-list are refused there.
    #[arg(long, value_name = "HEADER")]
    pub client_ip_header: Option<String>,
    /// Headers that carry the key, in order (Authorization is read as
    /// `Bearer KEY`); Authorization and X-API-Key when unset.
    #[arg(long = "key-header", value_name = "HEADER")]
    pub key_headers: Vec<String>,
}

impl CheckingArgs {
    /// The settings, validated: header names lowercase.
    pub fn into_checking(self) -> anyhow::Result<keyhost_core::request::Checking> {
        let checking = keyhost_core::request::Checking {
            service: self.service,
            scope: self.scope,
            client_ip_header: self.client_ip_header.map(|h| h.to_ascii_lowercase()),
            key_headers: self
                .key_headers
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        };
        checking
            .validate()
            .map_err(|e| anyhow::anyhow!("--key-header or --client-ip-header: {e}"))?;
        Ok(checking)
    }
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["wasm", "config"])))]
pub struct EnvoyExportArgs {
    /// Where to write the filter module (the default policy built in).
    #[arg(long, value_name = "FILE.wasm")]
    pub wasm: Option<PathBuf>,
    /// Where to write the plugin configuration (JSON, for the filter's
    /// `configuration` StringValue).
    #[arg(long, value_name = "FILE.json")]
    pub config: Option<PathBuf>,
    /// Fetch snapshots live from keyhost serve through this Envoy cluster
    /// (with a replica credential in the Envoy process's
    /// KEYHOST_REPLICA_CREDENTIAL); without it, the snapshot goes inline.
    #[arg(long, value_name = "CLUSTER")]
    pub live: Option<String>,
    /// Take Envoy's `source.address` as the client's address (with no
    /// --client-ip-header). Only when Envoy's connection manager has
    /// `use_remote_address: true`: otherwise Envoy takes that address from
    /// X-Forwarded-For, which a client writes.
    #[arg(long)]
    pub trust_source_address: bool,
    #[command(flatten)]
    pub checking: CheckingArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["plugins", "config"])))]
pub struct TraefikExportArgs {
    /// Write the plugin here as Traefik's plugins-local folder
    /// (DIR/src/keyhost/plugin.wasm and .traefik.yml).
    #[arg(long, value_name = "DIR")]
    pub plugins: Option<PathBuf>,
    /// A plugin built from a policy of one's own (cargo build --target
    /// wasm32-wasip1 --features keyhost-policy-sdk/http-wasm) instead of
    /// the built-in default.
    #[arg(long, value_name = "FILE.wasm", requires = "plugins")]
    pub filter: Option<PathBuf>,
    /// Write the dynamic configuration that defines the middleware here
    /// (a .yml file for Traefik's file provider).
    #[arg(long, value_name = "FILE.yml")]
    pub config: Option<PathBuf>,
    /// The middleware's name in Traefik.
    #[arg(long, default_value = "keyhost")]
    pub middleware: String,
    /// Keep running, and rewrite --config within a second of every
    /// registry change.
    #[arg(long, requires = "config")]
    pub watch: bool,
    #[command(flatten)]
    pub checking: CheckingArgs,
}

#[derive(Debug, Subcommand)]
pub enum ReplicaCommand {
    /// Make a replica credential and print it, once (keyhost keeps its
    /// SHA-256 in REGISTRY.replicas.json).
    Add {
        /// A name for it: the proxy or site that will use it.
        name: String,
    },
    /// List replica credentials (names and dates, never a secret).
    List,
    /// Revoke a replica credential: its next fetch is refused.
    Revoke {
        /// Its name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print a component's contract version, exports and imports, and whether
    /// this keyhost would load it (exit 2 if it would not).
    Inspect {
        /// The policy component (.wasm).
        file: PathBuf,
    },
    /// Run conformance vectors (JSON) against a component and report each
    /// failure (exit 1 if any case fails).
    Test {
        /// The policy component (.wasm).
        file: PathBuf,
        /// The vector file, for example tests/vectors/default-policy.json.
        vectors: PathBuf,
        /// A JSON file `{"defaults": {...}}` whose `config`, `key`,
        /// `identity` and `request` fields are laid over the vector file's
        /// defaults: the default vectors under a policy's own settings (each
        /// case's own fields still win).
        #[arg(long, value_name = "FILE")]
        defaults: Option<PathBuf>,
    },
    /// Show or change the registry's [policy.config]: the settings the
    /// policy's `configure` gets.
    #[command(subcommand)]
    Config(PolicyConfigCommand),
    /// Write a new policy project to start from, in Rust, JavaScript or
    /// Python: keyhost's default rules, the contract, a build with pinned
    /// tool versions, and the default vectors.
    New {
        /// The folder to create; it must not exist.
        dir: PathBuf,
        /// The language of the policy.
        #[arg(long, value_enum, default_value = "rust")]
        lang: PolicyLanguage,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum PolicyLanguage {
    /// A crate built with wit-bindgen (`cargo build --release --target
    /// wasm32-wasip2`).
    Rust,
    /// A module built with componentize-js (`./build.sh`, Node.js 20+).
    #[value(alias = "javascript")]
    Js,
    /// A module built with componentize-py (`./build.sh`, python3).
    Python,
}

impl PolicyLanguage {
    /// The language's name, as `--lang` takes it.
    pub fn name(self) -> &'static str {
        match self {
            PolicyLanguage::Rust => "rust",
            PolicyLanguage::Js => "js",
            PolicyLanguage::Python => "python",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum PolicyConfigCommand {
    /// Print the settings.
    Show,
    /// Set NAME to VALUE: a TOML value (90, true, ["a", "b"]), or else a string.
    Set {
        name: String,
        value: String,
        /// Take VALUE as a string even if it reads as another TOML value.
        #[arg(long)]
        string: bool,
    },
    /// Remove the setting NAME.
    Unset { name: String },
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The first part of every secret of this registry (lowercase letters and digits).
    #[arg(long, default_value = crate::registry::DEFAULT_PREFIX)]
    pub prefix: String,
    /// What marking a key as leaked does.
    #[arg(long, default_value = "none", value_parser = one_of::<LeakAction>(&LeakAction::NAMES))]
    pub action_when_leaked: LeakAction,
    /// The most keys one identity may hold.
    #[arg(long, default_value_t = crate::registry::DEFAULT_MAX_KEYS_PER_IDENTITY)]
    pub max_keys_per_identity: u32,
    /// Refuse (428) a change to a key through the management API that does
    /// not say which version it changes (If-Match); the CLI's own changes
    /// take --if-match as they like.
    #[arg(long)]
    pub require_if_match: bool,
    /// From how many keys on a write of keys alone (create, rotate,
    /// disable, delete...) goes to the changes file beside the registry
    /// rather than rewrite it whole.
    #[arg(long, default_value_t = crate::registry::DEFAULT_CHANGES_FROM_KEYS)]
    pub changes_from_keys: u32,
}

#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Add a user (user:NAME) or a service ID (service-id:NAME --owner user:NAME).
    Add {
        /// user:NAME or service-id:NAME.
        iam_id: IamId,
        /// The user who owns a service ID.
        #[arg(long)]
        owner: Option<IamId>,
        /// A scope (access right) of the identity; repeat for more.
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
    /// Change an identity's scopes: --scope replaces them all; --add-scope
    /// and --remove-scope change them one by one.
    Update {
        /// user:NAME or service-id:NAME.
        iam_id: IamId,
        /// The identity's scopes, replacing the current ones; repeat for more.
        #[arg(long = "scope", conflicts_with_all = ["add_scopes", "remove_scopes", "no_scopes"])]
        scopes: Vec<String>,
        /// Add a scope; repeat for more.
        #[arg(long = "add-scope")]
        add_scopes: Vec<String>,
        /// Remove a scope; repeat for more.
        #[arg(long = "remove-scope")]
        remove_scopes: Vec<String>,
        /// Remove every scope.
        #[arg(long, conflicts_with_all = ["add_scopes", "remove_scopes"])]
        no_scopes: bool,
        /// Change the identity only if it is still this version: the
        /// entity_tag `identity list --json` gave (or * for any version).
        #[arg(long, value_name = "TAG")]
        if_match: Option<String>,
    },
    /// List identities.
    List,
    /// Remove an identity and delete its keys.
    Remove {
        /// user:NAME or service-id:NAME.
        iam_id: IamId,
        /// Remove the identity only if it is still this version: the
        /// entity_tag `identity list --json` gave (or * for any version).
        #[arg(long, value_name = "TAG")]
        if_match: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The user creating the key: the key's owner, or the owner of the service ID.
    #[arg(long = "as")]
    pub actor: IamId,
    /// A name for the key.
    #[arg(long)]
    pub name: String,
    /// The kind of key (default: user for a user, service-id for a service ID).
    #[arg(long, value_parser = one_of::<KeyKind>(&KeyKind::NAMES))]
    pub kind: Option<KeyKind>,
    /// Create the key for this service ID (or user) instead of the actor.
    #[arg(long = "for")]
    pub for_identity: Option<IamId>,
    /// The one service a service-specific key is bound to.
    #[arg(long)]
    pub service: Option<String>,
    /// Narrow the identity's scopes to these; repeat for more.
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// Expiry: a duration (30s, 15m, 24h, 90d) or an RFC 3339 time.
    #[arg(long)]
    pub expires: Option<String>,
    /// Allow only these source addresses (CIDR); repeat for more.
    #[arg(long = "allow-ip")]
    pub allowed_ips: Vec<String>,
    /// A description.
    #[arg(long, default_value = "")]
    pub description: String,
    /// Lock the key at creation.
    #[arg(long)]
    pub lock: bool,
    /// At most this many requests, enforced by `keyhost serve` (100/min, 10/s, 5/30s).
    #[arg(long)]
    pub rate_limit: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only the keys of this identity.
    #[arg(long)]
    pub owner: Option<IamId>,
    #[command(flatten)]
    pub usage: UsageArgs,
}

#[derive(Debug, Args)]
pub struct KeyIdArgs {
    /// The key's id (kid_...).
    pub id: String,
    #[command(flatten)]
    pub usage: UsageArgs,
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Print the rules in force.
    Show,
    /// Set a rule: create_keys USER..., max_key_lifetime DURATION,
    /// require_expiry true|false, allowed_ips CIDR..., require_if_match
    /// true|false. A rule holds for every key written from then on; setting
    /// allowed_ips gives it to every key that has no addresses of its own,
    /// and is refused while a key's own addresses reach outside it.
    Set {
        /// The rule.
        rule: RuleName,
        /// Its value (several for create_keys and allowed_ips).
        #[arg(required = true)]
        values: Vec<String>,
    },
    /// Lift a rule. Keys keep what it gave them (their addresses).
    Unset {
        /// The rule.
        rule: RuleName,
    },
}

/// The rules, by their names in `[rules]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RuleName {
    /// Only these users may create keys.
    #[value(name = "create_keys")]
    CreateKeys,
    /// The longest a key may live.
    #[value(name = "max_key_lifetime")]
    MaxKeyLifetime,
    /// Every key must expire.
    #[value(name = "require_expiry")]
    RequireExpiry,
    /// The addresses every key is used from.
    #[value(name = "allowed_ips")]
    AllowedIps,
    /// API changes must send If-Match.
    #[value(name = "require_if_match")]
    RequireIfMatch,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The user importing: the keys' owner, or the owner of the service ID.
    #[arg(long = "as")]
    pub actor: IamId,
    /// The service ID the keys are for (the user's own by default).
    #[arg(long = "for")]
    pub for_identity: Option<IamId>,
    /// The file; - for stdin. It holds secrets: delete it once imported.
    pub file: PathBuf,
    /// The file's form (by default, its extension's: .csv or .json).
    #[arg(long, value_enum)]
    pub format: Option<crate::import::Format>,
    /// Import the good rows and say which were skipped, instead of
    /// importing nothing when a row is bad.
    #[arg(long)]
    pub skip_bad: bool,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// The keys and identities `keyhost serve` has not let through for a
    /// period: a key or identity at least that old whose last use (any of
    /// its keys', for an identity) is older, or that was never used.
    Inactive(InactiveArgs),
}

#[derive(Debug, Args)]
pub struct InactiveArgs {
    /// How long unused: a duration such as 720h or 90d.
    #[arg(long = "for", value_name = "DURATION", default_value = crate::activity::DEFAULT_PERIOD)]
    pub period: String,
    #[command(flatten)]
    pub usage: UsageArgs,
}

/// Where `list`, `show` and `report` read usage from.
#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Read usage from the replicas' shared state (redis://HOST:PORT[/DB])
    /// rather than the usage file beside the registry.
    #[arg(long, env = "KEYHOST_STATE")]
    pub state: Option<String>,
}

#[derive(Debug, Args)]
pub struct ActorKeyArgs {
    /// The key's id (kid_...).
    pub id: String,
    /// The user acting: the key's owner.
    #[arg(long = "as")]
    pub actor: IamId,
    /// Change the key only if it is still this version: the entity_tag
    /// `show --json` gave (or * for any version). Another writer's change
    /// in between makes this one refused, with nothing written.
    #[arg(long, value_name = "TAG")]
    pub if_match: Option<String>,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub key: ActorKeyArgs,
    /// How long the old secret keeps working (30s, 15m, 24h); without it the old secret stops at once.
    #[arg(long)]
    pub grace: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub key: ActorKeyArgs,
    /// A new name.
    #[arg(long)]
    pub name: Option<String>,
    /// A new description.
    #[arg(long)]
    pub description: Option<String>,
    /// Replace the key's scopes with these; repeat for more.
    #[arg(long = "scope", conflicts_with = "all_scopes")]
    pub scopes: Vec<String>,
    /// Give the key all of its identity's scopes.
    #[arg(long)]
    pub all_scopes: bool,
    /// A new expiry (30s, 15m, 24h, 90d, RFC 3339), or `never`.
    #[arg(long)]
    pub expires: Option<String>,
    /// Replace the allowed addresses with these CIDRs; repeat for more.
    #[arg(long = "allow-ip", conflicts_with = "any_ip")]
    pub allowed_ips: Vec<String>,
    /// Allow any source address.
    #[arg(long)]
    pub any_ip: bool,
    /// A new rate limit (100/min, 10/s, 5/30s), or `none`.
    #[arg(long)]
    pub rate_limit: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The service the key is presented to.
    #[arg(long)]
    pub service: Option<String>,
    /// The scope the request needs.
    #[arg(long)]
    pub scope: Option<String>,
    /// The caller's IP address.
    #[arg(long)]
    pub ip: Option<String>,
    /// The HTTP method of the original request.
    #[arg(long)]
    pub method: Option<String>,
    /// The path of the original request.
    #[arg(long)]
    pub path: Option<String>,
    /// An extra attribute for the policy, NAME=VALUE; repeat for more.
    #[arg(long = "attr", value_parser = parse_attribute)]
    pub attributes: Vec<(String, String)>,
    /// A policy component to use instead of the built-in default.
    #[arg(long)]
    pub policy: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Files or folders to scan; stdin when none is given.
    pub paths: Vec<PathBuf>,
    /// Mark each key found as leaked and apply the registry's action_when_leaked.
    #[arg(long)]
    pub mark_leaked: bool,
}

fn parse_attribute(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME=VALUE"))?;
    Ok((name.to_string(), value.to_string()))
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on (loopback by default; port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// A policy component to use instead of the built-in default; a new file there is swapped in live.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Check every key for this service (otherwise the service header says).
    #[arg(long)]
    pub service: Option<String>,
    /// Headers that carry the key, in order (Authorization is read as `Bearer KEY`).
    #[arg(long = "key-header", default_values = ["authorization", "x-api-key"])]
    pub key_headers: Vec<axum::http::HeaderName>,
    /// The header naming the service, when --service is not given.
    #[arg(long, default_value = "x-keyhost-service")]
    pub service_header: axum::http::HeaderName,
    /// The header naming the scope a request needs.
    #[arg(long, default_value = "x-keyhost-scope")]
    pub scope_header: axum::http::HeaderName,
    /// Append one JSON line per decision to this file (never a secret).
    #[arg(long)]
    pub decision_log: Option<PathBuf>,
    /// How often usage counts are written to the state file beside the registry.
    #[arg(long, default_value = "5s", value_parser = crate::time::parse_duration)]
    pub usage_flush: std::time::Duration,
    /// A proxy (CIDR or address) whose forwarding headers are believed:
    /// X-Forwarded-For, X-Real-IP, X-Forwarded-Method/-Uri and
    /// X-Original-Method/-URI. Repeat for more. From any other peer they are
    /// ignored. Default: none.
    #[arg(long = "trusted-proxy", value_parser = parse_net)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// How long a client has to send a request's headers (and how long a
    /// kept-alive connection may sit idle).
    #[arg(long, default_value = "10s", value_parser = crate::time::parse_duration)]
    pub header_timeout: std::time::Duration,
    /// How long a request may take; a management write that cannot commit
    /// within it is not made.
    #[arg(long, default_value = "10s", value_parser = crate::time::parse_duration)]
    pub request_timeout: std::time::Duration,
    /// The most connections open at once (lowered to fit the open-file
    /// limit); past it a connection is answered 503 and closed.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// How long a shutdown (SIGTERM) waits for requests in flight.
    #[arg(long, default_value = "5s", value_parser = crate::time::parse_duration)]
    pub shutdown_timeout: std::time::Duration,
    /// Share rate limits and usage with other replicas in Redis or Valkey:
    /// redis://HOST:PORT[/DB]. Without it, they live in this process.
    #[arg(long, env = "KEYHOST_STATE")]
    pub state: Option<String>,
    /// How long a call to the shared state may take before it counts as failed.
    #[arg(long, default_value = "100ms", value_parser = crate::time::parse_duration)]
    pub state_timeout: std::time::Duration,
    /// What a rate limit does when the shared state cannot be reached: open
    /// (allow; the key is still checked) or closed (deny as rate_limited).
    #[arg(long, default_value = "open", value_parser = one_of::<OnStateError>(&OnStateError::NAMES))]
    pub on_state_error: OnStateError,
    /// The replica that takes management writes (its base URL); this one
    /// then answers writes with a redirect there and takes none itself.
    #[arg(long)]
    pub primary: Option<String>,
    /// How long an access token from POST /identity/token lives (at most
    /// until its key expires).
    #[arg(long, default_value = "1h", value_parser = crate::time::parse_duration)]
    pub token_ttl: std::time::Duration,
    /// A Host name to answer for (repeat for more; '*' for any). A serve on
    /// loopback answers local names only (localhost, IP literals, one-label
    /// names such as an nginx upstream's) and any other with 421, so that a
    /// web page cannot reach it through DNS rebinding; beyond loopback, any
    /// name unless this is given. /auth answers whatever the Host.
    #[arg(long = "allowed-host", value_name = "NAME")]
    pub allowed_hosts: Vec<String>,
    /// GitHub's secret scanning key set, saved as its API gives it
    /// (GET https://api.github.com/meta/public_keys/secret_scanning), read
    /// at each alert: POST /v1/leaks/github takes GitHub's alerts signed
    /// with a current key of it. Without it, no alert is taken.
    #[arg(long, value_name = "FILE")]
    pub github_keys: Option<PathBuf>,
}

/// `keyhost token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a new key to sign access tokens. The old one verifies the tokens
    /// it signed until --overlap has passed (set it to serve's --token-ttl or
    /// more); serve takes the new key at once.
    RotateSigningKey {
        /// How long the previous key keeps verifying.
        #[arg(long, default_value = "1h", value_parser = crate::time::parse_duration)]
        overlap: std::time::Duration,
    },
    /// Print the public keys that verify tokens (a JWKS), as GET /identity/keys does.
    Keys,
}

fn parse_net(text: &str) -> Result<ipnet::IpNet, String> {
    crate::net::parse_cidr(text)
}
