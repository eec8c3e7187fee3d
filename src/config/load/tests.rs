//! Loading real files: YAML errors with line and column, paths resolved against the config
//! file, and every example file in the repository.

use std::fs;
use std::path::Path;

use super::*;

const MAP: &str = "shards: [{name: s0, primary: 'postgres://u@h/d'}]\n";
const CONFIG: &str =
    "users: [{name: app, password: app}]\ndatabases: [{name: app, shard_map: maps/m.yaml}]\n";

/// A temp dir holding `shardgate.yaml` with `config` and `maps/m.yaml` with `map`.
fn write_files(config: &str, map: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("maps")).unwrap();
    fs::write(dir.path().join("maps/m.yaml"), map).unwrap();
    let file = dir.path().join("shardgate.yaml");
    fs::write(&file, config).unwrap();
    (dir, file)
}

fn load_problems(config: &str, map: &str) -> Vec<Problem> {
    let (_dir, file) = write_files(config, map);
    match load_config(&file) {
        Err(ConfigError::Invalid(problems)) => problems,
        other => panic!("expected problems, got {other:?}"),
    }
}

#[test]
fn loads_a_config_and_its_shard_map_relative_to_the_config_dir() {
    let (dir, file) = write_files(CONFIG, MAP);
    let config = load_config(&file).unwrap();
    let database = config.database("app").unwrap();
    assert_eq!(database.shard_map_path, dir.path().join("maps/m.yaml"));
    assert_eq!(database.shard_map.shards[0].name, "s0");
}

#[test]
fn unknown_top_level_key_is_reported_with_line_and_column() {
    let problems = load_problems(&format!("{CONFIG}lisen: 0.0.0.0:6432\n"), MAP);
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].path, "");
    assert!(
        problems[0]
            .message
            .starts_with("unknown field `lisen`, expected one of `listen`")
    );
    assert!(
        problems[0].message.ends_with("(line 3, column 1)"),
        "{}",
        problems[0].message
    );
}

#[test]
fn unknown_nested_key_is_reported_at_its_parent_path() {
    let config = "users:\n  - name: app\n    passwd: x\ndatabases: []\n";
    let problems = load_problems(config, MAP);
    assert_eq!(problems[0].path, "users[0]");
    let message = &problems[0].message;
    assert!(message.starts_with("unknown field `passwd`"), "{message}");
    assert!(message.ends_with("(line 3, column 5)"), "{message}");
}

#[test]
fn wrong_types_and_missing_keys_keep_their_path() {
    let problems = load_problems(&format!("{CONFIG}pool:\n  size: -1\n"), MAP);
    assert_eq!(problems[0].path, "pool.size");
    let message = "invalid type: integer `-1`, expected u32 (line 4, column 9)";
    assert_eq!(problems[0].message, message);
    let missing = load_problems("users: []\n", MAP);
    assert_eq!(missing[0].path, "");
    assert!(
        missing[0].message.starts_with("missing field `databases`"),
        "{missing:?}"
    );
}

#[test]
fn syntax_errors_name_the_line() {
    let problems = load_problems("users: [\n  {name: a\ndatabases: x\n", MAP);
    assert_eq!(problems.len(), 1);
    let message = &problems[0].message;
    assert!(
        message.starts_with("did not find expected ',' or '}' (line 3, column 10)"),
        "{message}"
    );
}

#[test]
fn shard_map_problems_name_the_shard_map_file() {
    let map = "shards:\n  - name: s0\n    primary: nope\n";
    let (dir, file) = write_files(CONFIG, map);
    let Err(ConfigError::Invalid(problems)) = load_config(&file) else {
        panic!("expected problems");
    };
    assert_eq!(problems[0].file, dir.path().join("maps/m.yaml"));
    assert_eq!(problems[0].path, "shards[0].primary");
    let unknown = load_problems(CONFIG, "shards: []\nviews: []\n");
    assert!(unknown[0].file.ends_with("maps/m.yaml"), "{unknown:?}");
    assert!(
        unknown[0].message.ends_with("(line 2, column 1)"),
        "{unknown:?}"
    );
}

#[test]
fn missing_files_are_problems_except_the_config_itself() {
    let config = format!("{CONFIG}tls: {{cert: missing.crt, key: maps/m.yaml}}\n")
        .replace("maps/m.yaml}]", "maps/gone.yaml}]");
    let problems = load_problems(&config, MAP);
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["databases[0].shard_map", "tls.cert"]);
    assert!(
        problems[0].message.starts_with("cannot read "),
        "{problems:?}"
    );
    let missing = load_config(Path::new("/nonexistent/shardgate.yaml"));
    assert!(matches!(missing, Err(ConfigError::Read { .. })));
}

#[test]
fn problems_render_one_line_each() {
    let problem = |path: &str| Problem {
        file: PathBuf::from("config/shardgate.yaml"),
        path: path.to_owned(),
        message: "must be at least 1".to_owned(),
    };
    let rendered = render_problems(&[problem("pool.size"), problem("")]);
    let expected = "config/shardgate.yaml: pool.size: must be at least 1\n\
                    config/shardgate.yaml: must be at least 1\n";
    assert_eq!(rendered, expected);
    assert_eq!(render_problems(&[]), "");
}

/// Every shipped file must load: the examples are documentation, and documentation that does
/// not validate is wrong.
#[test]
fn every_shipped_config_and_shard_map_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for (dir, load) in [
        ("config", check_config as fn(&Path)),
        ("shard-maps", check_map),
    ] {
        for entry in fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path
                .extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
            {
                load(&path);
                checked += 1;
            }
        }
    }
    assert!(checked >= 3, "found only {checked} files");
}

fn check_config(path: &Path) {
    match load_config(path) {
        Ok(config) => assert!(!config.databases.is_empty()),
        Err(ConfigError::Invalid(problems)) => panic!("{}", render_problems(&problems)),
        Err(error) => panic!("{error}"),
    }
}

fn check_map(path: &Path) {
    match load_shard_map(path) {
        Ok(map) => assert!(!map.shards.is_empty() && !map.tables.is_empty()),
        Err(ConfigError::Invalid(problems)) => panic!("{}", render_problems(&problems)),
        Err(error) => panic!("{error}"),
    }
}
