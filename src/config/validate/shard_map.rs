//! Validation of a shard-map file: shards, their backend URIs and the default shard.
//!
//! Part of the config stage. Owns the rules that make a [`ShardMap`] safe to route with:
//! every shard named once, every URI parsed, no two shards on the same backend database, a
//! default shard that exists. Pure: it is handed the parsed file and never reads one.

use std::collections::HashMap;
use std::path::Path;

use super::Problems;
use crate::config::raw::{RawConsistency, RawReads, RawReadsFrom, RawShard, RawShardMap};
use crate::config::{
    BackendUri, Consistency, DEFAULT_CAUSAL_WAIT, Problem, ReadsFrom, Shard, ShardId, ShardMap,
};

/// Validates a shard map read from `file`.
pub(in crate::config) fn shard_map(
    raw: &RawShardMap,
    file: &Path,
) -> Result<ShardMap, Vec<Problem>> {
    let mut problems = Problems::new(file);
    if raw.shards.is_empty() {
        problems.add("shards", "at least one shard is required");
    }
    let mut names = HashMap::new();
    let mut shards = Vec::with_capacity(raw.shards.len());
    for (i, shard) in raw.shards.iter().enumerate() {
        problems.unique_name(
            &mut names,
            format!("shards[{i}].name"),
            &shard.name,
            "shard",
        );
        shards.extend(validate_shard(shard, i, raw.reads.as_ref(), &mut problems));
    }
    check_distinct_backends(&shards, &mut problems);
    let default_shard = default_shard(raw, &mut problems);
    let tables = super::tables::tables(&raw.tables, &shards, &mut problems);
    problems.finish(ShardMap {
        shards,
        default_shard: default_shard.unwrap_or(ShardId(0)),
        tables,
    })
}

fn validate_shard(
    raw: &RawShard,
    index: usize,
    map_reads: Option<&RawReads>,
    problems: &mut Problems,
) -> Option<Shard> {
    let path = format!("shards[{index}]");
    let map = map_reads
        .cloned()
        .map(RawReads::settings)
        .unwrap_or_default();
    let own = raw
        .reads
        .clone()
        .map(RawReads::settings)
        .unwrap_or_default();
    let causal_wait = match (&own.causal_wait, &map.causal_wait) {
        (Some(text), _) => problems.check(&format!("{path}.reads.causal_wait"), text.parse()),
        (None, Some(text)) => problems.check("reads.causal_wait", text.parse()),
        (None, None) => Some(DEFAULT_CAUSAL_WAIT),
    };
    let Ok(id) = u32::try_from(index) else {
        problems.add(path, "too many shards");
        return None;
    };
    let primary = backend(problems, format!("{path}.primary"), &raw.primary);
    let replicas: Vec<Option<BackendUri>> = (raw.replicas.iter().enumerate())
        .map(|(j, uri)| backend(problems, format!("{path}.replicas[{j}]"), uri))
        .collect();
    Some(Shard {
        id: ShardId(id),
        name: raw.name.clone(),
        primary: primary?,
        replicas: replicas.into_iter().collect::<Option<_>>()?,
        reads: match own.from.or(map.from) {
            Some(RawReadsFrom::Primary) => ReadsFrom::Primary,
            Some(RawReadsFrom::Replica) | None => ReadsFrom::Replica,
        },
        consistency: match own.consistency.or(map.consistency) {
            Some(RawConsistency::Causal) | None => Consistency::Causal,
            Some(RawConsistency::Session) => Consistency::Session,
            Some(RawConsistency::Eventual) => Consistency::Eventual,
            Some(RawConsistency::Global) => Consistency::Global,
        },
        causal_wait: causal_wait?,
    })
}

fn backend(problems: &mut Problems, path: String, text: &str) -> Option<BackendUri> {
    problems.check(&path, BackendUri::parse(text))
}

/// Two shards (or a shard and a replica) naming the same server and database would mix data
/// that the map says lives apart; `localhost` vs `127.0.0.1` is not caught.
fn check_distinct_backends(shards: &[Shard], problems: &mut Problems) {
    let mut seen: HashMap<(&str, u16, &str), String> = HashMap::new();
    for shard in shards {
        let index = shard.id.0;
        let replicas = shard.replicas.iter().enumerate();
        let paths = std::iter::once((format!("shards[{index}].primary"), &shard.primary))
            .chain(replicas.map(|(j, uri)| (format!("shards[{index}].replicas[{j}]"), uri)));
        for (path, uri) in paths {
            let key = (uri.host.as_str(), uri.port, uri.database.as_str());
            if let Some(first) = seen.get(&key) {
                problems.add(path, format!("{uri} is already used by {first}"));
            } else {
                seen.insert(key, path);
            }
        }
    }
}

fn default_shard(raw: &RawShardMap, problems: &mut Problems) -> Option<ShardId> {
    let Some(name) = &raw.default_shard else {
        return Some(ShardId(0));
    };
    let found = raw.shards.iter().position(|shard| &shard.name == name);
    let id = found
        .and_then(|index| u32::try_from(index).ok())
        .map(ShardId);
    if id.is_none() {
        problems.add("default_shard", format!("no shard is named {name:?}"));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UriError;

    /// The map, or every problem as `path: message`.
    fn validate(yaml: &str) -> Result<ShardMap, Vec<String>> {
        let raw: RawShardMap = serde_yaml::from_str(yaml).expect("test YAML parses");
        let found = shard_map(&raw, Path::new("map.yaml"));
        found.map_err(|problems| {
            let lines = problems
                .iter()
                .map(|p| format!("{}: {}", p.path, p.message));
            lines.collect()
        })
    }

    const TWO_SHARDS: &str = "shards:\n\
        - {name: s0, primary: 'postgres://u:p@h:5433/d', replicas: ['postgres://u@h:5434/d']}\n\
        - {name: s1, primary: 'postgres://u@h:5435/d'}\n";

    #[test]
    fn shards_get_ids_in_file_order_and_the_first_is_the_default() {
        let map = validate(TWO_SHARDS).unwrap();
        assert_eq!(map.default_shard, ShardId(0));
        assert_eq!(map.shard(ShardId(1)).name, "s1");
        assert_eq!(map.shard_by_name("s1").unwrap().id, ShardId(1));
        assert_eq!(map.shard(ShardId(0)).replicas[0].port, 5434);
        assert!(map.shard(ShardId(1)).replicas.is_empty());
        assert!(map.shard_by_name("s9").is_none());
    }

    #[test]
    fn default_shard_must_name_a_shard() {
        let map = validate(&format!("{TWO_SHARDS}default_shard: s1\n")).unwrap();
        assert_eq!(map.default_shard, ShardId(1));
        let missing = validate(&format!("{TWO_SHARDS}default_shard: s9\n")).unwrap_err();
        assert_eq!(missing, ["default_shard: no shard is named \"s9\""]);
    }

    #[test]
    fn a_map_needs_shards_with_unique_non_empty_names() {
        let none = validate("default_shard: s0\n").unwrap_err();
        let expected = [
            "shards: at least one shard is required",
            "default_shard: no shard is named \"s0\"",
        ];
        assert_eq!(none, expected);
        let shards = ["a", "''", "a"].iter().enumerate();
        let shards =
            shards.map(|(i, name)| format!("{{name: {name}, primary: 'postgres://u@h/{i}'}}"));
        let yaml = format!("shards: [{}]\n", shards.collect::<Vec<_>>().join(", "));
        let expected = [
            "shards[1].name: shard name must not be empty",
            "shards[2].name: duplicate shard name \"a\" (first used at shards[0].name)",
        ];
        assert_eq!(validate(&yaml).unwrap_err(), expected);
    }

    #[test]
    fn every_uri_must_parse() {
        let yaml = "shards: [{name: a, primary: 'mysql://u@h/d', \
                    replicas: ['postgres://u@h/r', 'postgres://u@h:x/r']}]\n";
        let expected = [
            format!("shards[0].primary: {}", UriError::Scheme),
            format!("shards[0].replicas[1]: {}", UriError::Port("x".into())),
        ];
        assert_eq!(validate(yaml).unwrap_err(), expected);
    }

    #[test]
    fn two_shards_cannot_share_a_backend_database() {
        let yaml = "shards: [{name: a, primary: 'postgres://u@h:1/d'}, \
                    {name: b, primary: 'postgres://v:pw@h:2/d', \
                     replicas: ['postgres://w@h:1/d']}]\n";
        let expected =
            "shards[1].replicas[0]: postgres://w@h:1/d is already used by shards[0].primary";
        assert_eq!(validate(yaml).unwrap_err(), [expected]);
    }
}
