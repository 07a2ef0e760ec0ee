//! Positions and the shape of scenario error messages.
use crate::scenario::error::line_column;

#[test]
fn line_column_counts_lines_and_characters_from_one() {
    let text = "ab\ncдe\n";
    assert_eq!(line_column(text, 0), (1, 1));
    assert_eq!(line_column(text, 1), (1, 2));
    assert_eq!(line_column(text, 3), (2, 1));
    // 'д' is two bytes: the 'e' after it is the third character.
    assert_eq!(line_column(text, 6), (2, 3));
    // Inside 'д' clamps to its start.
    assert_eq!(line_column(text, 5), (2, 2));
    assert_eq!(line_column(text, 999), (3, 1));
}

#[test]
fn display_names_file_position_key_problem_and_hint() {
    let document = toml::de::DeTable::default();
    let origin = crate::scenario::validate::Source {
        file: "scenarios/x.toml",
        text: "a\nb\n  mx = 1\n",
        document: &document,
    };
    let err = origin.at(
        6..8,
        "churn.online",
        "unknown key \"mx\"",
        Some("expected one of: dist, value".to_string()),
    );
    assert_eq!(
        err.to_string(),
        "scenarios/x.toml:3:3: churn.online: unknown key \"mx\" (expected one of: dist, value)"
    );
    let root = origin.at(0..1, "", "broken", None);
    assert_eq!(root.to_string(), "scenarios/x.toml:1:1: broken");
    assert_eq!(root.position(), Some((1, 1)));
    assert_eq!(err.key(), Some("churn.online"));
}
