//! What a record keeps of a map file, and where a recorded map may connect.

use super::*;

const FILE: &str = "
shards:
  - name: s0
    primary: postgres://app:s%40cret@10.0.0.1:5432/app
    replicas: [postgres://app:s%40cret@10.0.0.2:5432/app]
  - name: s1
    primary: postgres://app:other@10.0.0.3:5432/app
tables:
  users: {strategy: hash, key: user_id, key_type: bigint}
";

#[test]
fn a_record_keeps_placement_and_endpoints_but_no_password() {
    let recorded = redact(FILE).unwrap();
    assert!(
        !recorded.contains("s%40cret") && !recorded.contains("other"),
        "{recorded}"
    );
    assert!(
        recorded.contains("postgres://app@10.0.0.3:5432/app"),
        "{recorded}"
    );
    assert!(recorded.contains("user_id"), "{recorded}");
}

#[test]
fn a_recorded_map_takes_the_files_passwords_for_the_same_endpoints() {
    let recorded = redact(FILE).unwrap();
    let servable = with_file_secrets(&recorded, FILE).unwrap();
    let map = crate::config::parse_shard_map(&servable, std::path::Path::new("m.yaml")).unwrap();
    assert_eq!(map.shards[0].primary.password.as_deref(), Some("s@cret"));
    assert_eq!(
        map.shards[0].replicas[0].password.as_deref(),
        Some("s@cret")
    );
    assert_eq!(map.shards[1].primary.password.as_deref(), Some("other"));
}

#[test]
fn a_recorded_map_never_connects_where_the_file_does_not() {
    let elsewhere = redact(&FILE.replace("10.0.0.3", "203.0.113.9")).unwrap();
    let refused = with_file_secrets(&elsewhere, FILE).unwrap_err();
    assert!(refused.contains("203.0.113.9"), "{refused}");
    let other_user = redact(&FILE.replace("app:other@", "admin:other@")).unwrap();
    assert!(with_file_secrets(&other_user, FILE).is_err());
}
