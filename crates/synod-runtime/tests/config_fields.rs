//! Every field of the config schema, table-driven: each number and
//! duration has a range (`SynodConfig::ranges`), every value outside it
//! is refused naming the field, and no value of any field (nor of several
//! at once, by proptest) makes the loader panic.

use proptest::prelude::*;
use std::collections::BTreeMap;
use synod_runtime::{LoadError, MAX_DURATION, SynodConfig};

const BASE: &str = include_str!("base.toml");

/// `BASE` with `settings` (`("paxos.pipeline_window", "0")`, values as TOML).
fn with(settings: &[(&str, String)]) -> String {
    let mut sections: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (path, value) in settings {
        let (section, field) = path.split_once('.').expect("section.field");
        sections
            .entry(section)
            .or_default()
            .push(format!("{field} = {value}"));
    }
    let mut text = BASE.to_owned();
    for (section, lines) in sections {
        text += &format!("\n[{section}]\n{}\n", lines.join("\n"));
    }
    text
}

fn load(text: &str) -> Result<SynodConfig, LoadError> {
    SynodConfig::from_toml_str(text, "test").map(|(config, _)| config)
}

fn defaults() -> SynodConfig {
    load(BASE).expect("the base config is valid")
}

/// The fields serde knows for `section`, from the error an unknown key
/// gets ("unknown field `x`, expected one of `a`, `b`").
fn schema_fields(section: &str) -> Vec<String> {
    let text = with(&[(&format!("{section}.no_such_field"), "1".into())]);
    let error = load(&text)
        .expect_err("an unknown key is an error")
        .to_string();
    let expected = error
        .split_once("expected")
        .unwrap_or_else(|| panic!("no field list in {error}"))
        .1;
    let expected = expected.split(" for key").next().unwrap_or(expected);
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|f| format!("{section}.{f}"))
        .collect()
}

const SECTIONS: [&str; 4] = ["paxos", "storage", "transport", "clients"];

#[test]
fn every_numeric_field_of_the_schema_has_a_range() {
    let ranged: Vec<&str> = defaults().ranges().iter().map(|r| r.field).collect();
    let mut fields = 0;
    for section in SECTIONS {
        for field in schema_fields(section) {
            assert!(
                ranged.contains(&field.as_str()),
                "{field} has no range in SynodConfig::ranges"
            );
            fields += 1;
        }
    }
    assert_eq!(
        fields,
        ranged.len(),
        "ranges() names a field the schema does not have"
    );
}

/// Values outside `field`'s range, as TOML.
fn out_of_range(unit: &str, min: u128, max: u128) -> Vec<String> {
    if unit == " ms" {
        let mut values = vec![
            format!("\"{}h\"", MAX_DURATION.as_secs() / 3600 + 1),
            "\"500000000000years\"".into(),
            "\"18446744073709551615s\"".into(),
            "\"-1s\"".into(),
            "\"soon\"".into(),
            "5".into(),
        ];
        if min > 0 {
            values.push("\"0s\"".into());
            values.push("\"500us\"".into());
        }
        return values;
    }
    let mut values = vec![
        (max + 1).to_string(),
        i64::MAX.to_string(),
        "-1".into(),
        "\"many\"".into(),
    ];
    if min > 0 {
        values.push((min - 1).to_string());
    }
    values
}

#[test]
fn every_value_outside_a_fields_range_is_refused_naming_the_field() {
    // (A number TOML itself cannot hold, past i64, is a parse error at
    // its line; the proptest below covers it.)
    for range in defaults().ranges() {
        for value in out_of_range(range.unit, range.min, range.max) {
            let text = with(&[(range.field, value.clone())]);
            let error = match load(&text) {
                Ok(_) => panic!("{} = {value} was accepted", range.field),
                Err(e) => e.to_string(),
            };
            let field = range.field.rsplit('.').next().unwrap();
            assert!(error.contains(field), "{} = {value}: {error}", range.field);
        }
    }
}

#[test]
fn the_ends_of_every_range_load_or_fail_on_another_rule_without_panicking() {
    for range in defaults().ranges() {
        for end in [range.min, range.max] {
            let value = match range.unit {
                " ms" => format!("\"{end}ms\""),
                _ => end.to_string(),
            };
            // Other rules (a heartbeat a third of the election timeout, a
            // budget that fits in the frame) may refuse it; the range must not.
            if let Err(LoadError::Rules { problems, .. }) = load(&with(&[(range.field, value)])) {
                assert!(
                    problems.iter().all(|p| !p.message.contains("out of range")),
                    "{} = {end}: {problems:?}",
                    range.field
                );
            }
        }
    }
}

#[test]
fn a_listen_port_of_zero_is_refused() {
    let text = BASE.replace("127.0.0.1:7002", "127.0.0.1:0");
    let error = load(&text).unwrap_err().to_string();
    assert!(
        error.contains("nodes.n2.listen") && error.contains("port 0"),
        "{error}"
    );
}

#[test]
fn a_secret_file_that_does_not_exist_is_refused() {
    let text = BASE.replace(
        "secret = \"s\"",
        "secret_file = \"/nonexistent/synod-secret\"",
    );
    let error = load(&text).unwrap_err().to_string();
    assert!(
        error.contains("cluster.secret_file") && error.contains("/nonexistent/synod-secret"),
        "{error}"
    );
}

/// A TOML value of any shape a user might type.
fn any_value() -> impl Strategy<Value = String> {
    let units = prop::sample::select(vec![
        "ns", "us", "ms", "s", "m", "h", "d", "w", "y", "years",
    ]);
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        (0u64..5000).prop_map(|n| n.to_string()),
        (any::<u64>(), units.clone()).prop_map(|(n, u)| format!("\"{n}{u}\"")),
        (0u64..5000, units).prop_map(|(n, u)| format!("\"{n}{u}\"")),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        "[a-z0-9 ]{0,8}".prop_map(|s| format!("\"{s}\"")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any values for any fields: the loader returns a config whose every
    /// number is in range, or an error; it never panics.
    #[test]
    fn the_loader_returns_an_error_or_a_valid_config(
        picks in prop::collection::vec((0usize..64, any_value()), 1..6)
    ) {
        let ranges = defaults().ranges();
        let settings: BTreeMap<&str, String> = picks
            .into_iter()
            .map(|(i, value)| (ranges[i % ranges.len()].field, value))
            .collect();
        let settings: Vec<(&str, String)> = settings.into_iter().collect();
        if let Ok(config) = load(&with(&settings)) {
            for range in config.ranges() {
                prop_assert!((range.min..=range.max).contains(&range.value), "{range:?}");
            }
        }
    }
}
