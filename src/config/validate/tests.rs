//! One test per config rule: each asserts the YAML path and the message an operator sees,
//! written as `path: message`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::config::raw::RawShardMap;
use crate::config::{ClientAuthMethod, UserSecret};

const USERS: &str = "users: [{name: app, password: app}]\n";
const DATABASES: &str = "databases: [{name: app, shard_map: maps/app.yaml}]\n";

/// A one-shard map for any path, so config rules are tested without files.
fn fake_map(_: &Path) -> Result<ShardMap, ConfigError> {
    let raw = serde_yaml::from_str("shards: [{name: s0, primary: 'postgres://u@h/d'}]").unwrap();
    shard_map(&raw, Path::new("map.yaml")).map_err(ConfigError::Invalid)
}

fn validate_with(yaml: &str, load_map: MapLoader<'_>) -> Result<Config, Vec<Problem>> {
    let raw: RawConfig = serde_yaml::from_str(yaml).expect("test YAML parses");
    config(&raw, Path::new("cfg/shardgate.yaml"), load_map)
}

fn validate(yaml: &str) -> Result<Config, Vec<Problem>> {
    validate_with(yaml, &mut fake_map)
}

/// Every problem in a config made of valid `users` and `databases` plus `extra`.
fn problems(extra: &str) -> Vec<String> {
    problems_in(&format!("{USERS}{DATABASES}{extra}"))
}

/// Every problem in `yaml`, as `path: message`.
fn problems_in(yaml: &str) -> Vec<String> {
    let found = validate(yaml).expect_err("config should be invalid");
    found
        .iter()
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect()
}

/// `yaml` with its `users` section replaced.
fn with_users(users: &str) -> String {
    format!("users: [{users}]\n{DATABASES}")
}

#[test]
fn minimal_config_gets_defaults() {
    let config = validate(&format!("{USERS}{DATABASES}")).unwrap();
    assert_eq!(config.listen.to_string(), "127.0.0.1:6432");
    assert_eq!(config.auth_method, ClientAuthMethod::ScramSha256);
    assert_eq!(config.users[0].secret, UserSecret::Password("app".into()));
    assert!(config.tls.is_none());
    assert_eq!(config.pool.size, 20);
    assert_eq!(config.pool.checkout_timeout, Duration::from_secs(5));
    assert_eq!(config.pool.idle_timeout, Some(Duration::from_secs(600)));
    assert_eq!(config.pool.max_lifetime, Some(Duration::from_secs(3600)));
    assert_eq!(config.limits.max_message_bytes, 64 << 20);
    assert_eq!(config.limits.startup_timeout, Duration::from_secs(10));
    assert_eq!(config.log.level, "info");
    let database = config.database("app").unwrap();
    assert_eq!(database.shard_map_path, PathBuf::from("cfg/maps/app.yaml"));
    assert!(config.database("other").is_none());
    assert!(config.user("app").is_some() && config.user("root").is_none());
}

#[test]
fn listen_must_be_an_ip_socket_address() {
    let found = problems("listen: localhost:6432\n");
    let expected = "listen: \"localhost:6432\" is not an IP address and port such as \
                    127.0.0.1:6432 (host names are not resolved)";
    assert_eq!(found, [expected]);
}

#[test]
fn users_need_unique_non_empty_names() {
    let yaml =
        with_users("{name: a, password: x}, {name: '', password: x}, {name: a, password: y}");
    let expected = [
        "users[1].name: user name must not be empty",
        "users[2].name: duplicate user name \"a\" (first used at users[0].name)",
    ];
    assert_eq!(problems_in(&yaml), expected);
    let none = problems_in(&format!("users: []\n{DATABASES}"));
    assert_eq!(none, ["users: at least one user is required"]);
}

#[test]
fn scram_needs_a_password_or_verifier() {
    let missing = problems_in(&with_users("{name: a}"));
    let expected = "users[0]: needs a password or scram_verifier (auth.method is scram-sha-256)";
    assert_eq!(missing, [expected]);
    let md5 = problems_in(&with_users(&format!(
        "{{name: a, md5: md5{}}}",
        "0".repeat(32)
    )));
    let expected = "users[0].md5: an md5 hash cannot answer scram-sha-256 authentication; \
                    give a password or scram_verifier";
    assert_eq!(md5, [expected]);
}

#[test]
fn scram_verifier_format_is_checked() {
    let yaml = with_users("{name: a, scram_verifier: 'SCRAM-SHA-256$4096:c2FsdA==$a:b'}");
    let expected =
        "users[0].scram_verifier: SCRAM verifier StoredKey is not valid, non-empty base64";
    assert_eq!(problems_in(&yaml), [expected]);
    let shape = problems_in(&with_users("{name: a, scram_verifier: 'md5abc'}"));
    assert!(shape[0].starts_with("users[0].scram_verifier: SCRAM verifier must look like"));
}

#[test]
fn md5_needs_a_password_or_hash_in_md5_format() {
    let md5 = |users: &str| format!("auth: {{method: md5}}\n{}", with_users(users));
    let expected = "users[0]: needs a password or md5 hash (auth.method is md5)";
    assert_eq!(problems_in(&md5("{name: a}")), [expected]);
    let expected = "users[0].md5: md5 hash must be `md5` followed by 32 hex digits \
                    (as in pg_authid.rolpassword)";
    assert_eq!(problems_in(&md5("{name: a, md5: md5abc}")), [expected]);
    let expected = "users[0].scram_verifier: a SCRAM verifier cannot answer md5 \
                    authentication; give a password or md5 hash";
    assert_eq!(
        problems_in(&md5("{name: a, scram_verifier: x}")),
        [expected]
    );
    let upper = md5(&format!("{{name: a, md5: md5{}}}", "A".repeat(32)));
    let secret = &validate(&upper).unwrap().users[0].secret;
    assert_eq!(
        *secret,
        UserSecret::Md5Hash(format!("md5{}", "a".repeat(32)))
    );
}

#[test]
fn a_user_gives_at_most_one_non_empty_secret() {
    let two = problems_in(&with_users("{name: a, password: x, md5: y}"));
    assert_eq!(
        two,
        ["users[0]: give only one of password, scram_verifier, md5"]
    );
    let empty = problems_in(&with_users("{name: a, password: ''}"));
    assert_eq!(empty, ["users[0].password: must not be empty"]);
}

#[test]
fn trust_allows_users_without_a_secret() {
    let users = with_users("{name: a}, {name: b, password: p}");
    let config = validate(&format!("auth: {{method: trust}}\n{users}")).unwrap();
    assert_eq!(config.auth_method, ClientAuthMethod::Trust);
    assert_eq!(config.users[0].secret, UserSecret::None);
    assert_eq!(config.users[1].secret, UserSecret::Password("p".into()));
}

#[test]
fn tls_paths_are_relative_to_the_config_file() {
    let yaml = format!("{USERS}{DATABASES}tls: {{cert: c.pem, key: /abs/k.pem}}\n");
    let tls = validate(&yaml).unwrap().tls.unwrap();
    assert_eq!(tls.cert, PathBuf::from("cfg/c.pem"));
    assert_eq!(tls.key, PathBuf::from("/abs/k.pem"));
    let empty = problems("tls: {cert: '', key: k.pem}\n");
    assert_eq!(empty, ["tls.cert: file path must not be empty"]);
}

#[test]
fn pool_size_is_at_least_one_and_min_idle_at_most_size() {
    let found = problems("pool: {size: 0, min_idle: 2, max_prepared_statements: 0}\n");
    let expected = [
        "pool.size: must be at least 1",
        "pool.min_idle: 2 is more than pool.size (0)",
        "pool.max_prepared_statements: must be at least 1",
    ];
    assert_eq!(found, expected);
    let idle = problems("pool: {size: 5, min_idle: 6}\n");
    assert_eq!(idle, ["pool.min_idle: 6 is more than pool.size (5)"]);
}

#[test]
fn durations_must_parse_and_be_positive() {
    let found = problems("pool: {checkout_timeout: 5x, connect_timeout: 0s, idle_timeout: 0ms}\n");
    let expected = [
        "pool.checkout_timeout: duration \"5x\" has unknown unit \"x\"; use ms, s, m or h",
        "pool.connect_timeout: must be greater than 0",
        "pool.idle_timeout: must be greater than 0 (use null to turn it off)",
    ];
    assert_eq!(found, expected);
    let bare = problems("limits: {startup_timeout: 10}\n");
    let expected = "limits.startup_timeout: duration \"10\" has no unit; write it as 10ms, \
                    10s, 10m or 10h";
    assert_eq!(bare, [expected]);
}

#[test]
fn null_turns_optional_timeouts_off() {
    let yaml = format!("{USERS}{DATABASES}pool: {{idle_timeout: null, max_lifetime: 90m}}\n");
    let config = validate(&yaml).unwrap();
    assert_eq!(config.pool.idle_timeout, None);
    assert_eq!(config.pool.max_lifetime, Some(Duration::from_secs(5400)));
}

#[test]
fn limits_have_minimums() {
    let found = problems("limits: {max_message_bytes: 1023, max_client_connections: 0}\n");
    let expected = [
        "limits.max_message_bytes: 1023 is below the minimum of 1024 bytes",
        "limits.max_client_connections: must be at least 1",
    ];
    assert_eq!(found, expected);
}

#[test]
fn log_level_must_be_a_filter_directive() {
    let found = problems("log: {level: 'shardgate=loud'}\n");
    let expected = "log.level: \"shardgate=loud\" is not a tracing filter directive: ";
    assert!(found[0].starts_with(expected), "{found:?}");
    let empty = problems("log: {level: ''}\n");
    assert_eq!(empty, ["log.level: must not be empty (try `info`)"]);
    let json = format!("{USERS}{DATABASES}log: {{format: json, level: 'info,shardgate=debug'}}\n");
    assert_eq!(validate(&json).unwrap().log.format, LogFormat::Json);
}

#[test]
fn databases_need_unique_names_and_a_shard_map() {
    let yaml =
        format!("{USERS}databases: [{{name: a, shard_map: m}}, {{name: a, shard_map: ''}}]\n");
    let expected = [
        "databases[1].name: duplicate database name \"a\" (first used at databases[0].name)",
        "databases[1].shard_map: file path must not be empty",
    ];
    assert_eq!(problems_in(&yaml), expected);
    let none = problems_in(&format!("{USERS}databases: []\n"));
    assert_eq!(none, ["databases: at least one database is required"]);
}

#[test]
fn shard_map_problems_keep_their_own_file() {
    let databases = ["ok", "gone", "bad"].map(|n| format!("{{name: {n}, shard_map: {n}.yaml}}"));
    let yaml = format!("{USERS}databases: [{}]\n", databases.join(", "));
    let mut load_map = |path: &Path| match path.to_str() {
        Some("cfg/ok.yaml") => fake_map(path),
        Some("cfg/gone.yaml") => Err(ConfigError::Read {
            file: path.to_owned(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        }),
        _ => shard_map(&RawShardMap::default(), path).map_err(ConfigError::Invalid),
    };
    let found = validate_with(&yaml, &mut load_map).unwrap_err();
    let rendered: Vec<String> = found.iter().map(ToString::to_string).collect();
    let expected = [
        "cfg/shardgate.yaml: databases[1].shard_map: cannot read cfg/gone.yaml: entity not found",
        "cfg/bad.yaml: shards: at least one shard is required",
    ];
    assert_eq!(rendered, expected);
}

#[test]
fn every_problem_is_reported_at_once() {
    let yaml = "listen: nowhere\nusers: [{name: ''}]\ndatabases: []\npool: {size: 0}\n";
    let paths: Vec<String> = problems_in(yaml)
        .into_iter()
        .map(|line| line.split(": ").next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        paths,
        [
            "listen",
            "users[0].name",
            "users[0]",
            "pool.size",
            "databases"
        ]
    );
}

/// The map `yaml` validated, or its problems as `path: message`.
fn shard_map_of(yaml: &str) -> Result<ShardMap, Vec<String>> {
    let raw: RawShardMap = serde_yaml::from_str(yaml).expect("test YAML parses");
    shard_map(&raw, Path::new("map.yaml")).map_err(|found| {
        found
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect()
    })
}

#[test]
fn reads_are_causal_by_default_and_a_shard_overrides_the_map_field_by_field() {
    use crate::config::{Consistency, DEFAULT_CAUSAL_WAIT, ReadsFrom};
    let map = shard_map_of("shards: [{name: s0, primary: 'postgres://u@h/d'}]").unwrap();
    let s0 = &map.shards[0];
    assert_eq!(
        (s0.reads, s0.consistency),
        (ReadsFrom::Replica, Consistency::Causal)
    );
    assert_eq!(s0.causal_wait, DEFAULT_CAUSAL_WAIT);
    let map = shard_map_of(
        "reads: {consistency: session, causal_wait: 10ms}\n\
         shards:\n\
         - {name: s0, primary: 'postgres://u@h/d'}\n\
         - {name: s1, primary: 'postgres://u@h/e', reads: primary}\n\
         - {name: s2, primary: 'postgres://u@h/f', reads: {consistency: eventual}}\n\
         - {name: s3, primary: 'postgres://u@h/g', reads: {consistency: global}}\n",
    )
    .unwrap();
    let [s0, s1, s2, s3] = &map.shards[..] else {
        panic!("four shards");
    };
    assert_eq!(s3.consistency, Consistency::Global);
    assert_eq!(
        (s0.reads, s0.consistency),
        (ReadsFrom::Replica, Consistency::Session)
    );
    assert_eq!(
        (s1.reads, s1.consistency),
        (ReadsFrom::Primary, Consistency::Session)
    );
    assert_eq!(s2.consistency, Consistency::Eventual);
    assert!(
        [s0, s1, s2]
            .iter()
            .all(|s| s.causal_wait == Duration::from_millis(10))
    );
}

#[test]
fn a_bad_causal_wait_is_named_where_it_was_written() {
    let map = "reads: {causal_wait: 5x}\nshards: [{name: s0, primary: 'postgres://u@h/d'}]";
    let found = shard_map_of(map).unwrap_err();
    assert!(
        found.iter().any(|p| p.starts_with("reads.causal_wait:")),
        "{found:?}"
    );
    let bad = "reads: {consistency: strong}\nshards: [{name: s0, primary: 'postgres://u@h/d'}]";
    assert!(serde_yaml::from_str::<RawShardMap>(bad).is_err());
}

#[test]
fn a_fleet_is_a_short_plain_name_and_defaults_to_default() {
    let config = validate(&format!("{USERS}{DATABASES}")).unwrap();
    assert_eq!(config.fleet.as_deref(), Some("default"));
    let config = validate(&format!("{USERS}{DATABASES}fleet: eu-west_2\n")).unwrap();
    assert_eq!(config.fleet.as_deref(), Some("eu-west_2"));
    let message = "fleet: must be 1 to 63 letters, digits, '_' or '-'";
    for bad in ["''", "'a b'", "'x;drop'", &"f".repeat(64)] {
        assert_eq!(problems(&format!("fleet: {bad}\n")), [message], "{bad}");
    }
}

#[test]
fn a_fleet_lease_lasts_ten_seconds_unless_set_and_null_takes_none() {
    let config = validate(&format!("{USERS}{DATABASES}")).unwrap();
    assert_eq!(config.fleet_lease, Some(Duration::from_secs(10)));
    let config = validate(&format!("{USERS}{DATABASES}fleet_lease: 3s\n")).unwrap();
    assert_eq!(config.fleet_lease, Some(Duration::from_secs(3)));
    let config = validate(&format!("{USERS}{DATABASES}fleet_lease: null\n")).unwrap();
    assert_eq!(config.fleet_lease, None);
    let short = "fleet_lease: must be at least 2s (renewals take a round trip; null: no lease)";
    assert_eq!(problems("fleet_lease: 500ms\n"), [short]);
    let zero = "fleet_lease: must be greater than 0 (use null to turn it off)";
    assert_eq!(problems("fleet_lease: 0s\n"), [zero]);
}
