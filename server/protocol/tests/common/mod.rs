//! Shared by the parse property tests: random edits of a frame's text.

use proptest::prelude::*;

/// One edit of a text, kept valid UTF-8 (a WebSocket text frame is).
#[derive(Debug, Clone)]
pub enum Edit {
    Delete(usize),
    Insert(usize, char),
    Replace(usize, char),
    Duplicate(usize, usize),
}

/// Edits biased towards JSON's structural characters.
pub fn edit() -> impl Strategy<Value = Edit> {
    let interesting = prop_oneof![
        Just('"'),
        Just('{'),
        Just('}'),
        Just(':'),
        Just(','),
        Just('\\'),
        Just('-'),
        Just('0'),
        Just('9'),
        Just(' '),
        Just('.'),
        Just('é'),
        Just('\u{0}'),
        any::<char>(),
    ];
    prop_oneof![
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), interesting.clone()).prop_map(|(at, c)| Edit::Insert(at, c)),
        (any::<usize>(), interesting).prop_map(|(at, c)| Edit::Replace(at, c)),
        (any::<usize>(), 1usize..40).prop_map(|(at, len)| Edit::Duplicate(at, len)),
    ]
}

/// `text` with `edits` applied in order (positions wrap around).
pub fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for edit in edits {
        let len = chars.len().max(1);
        match *edit {
            Edit::Delete(at) if !chars.is_empty() => {
                chars.remove(at % len);
            }
            Edit::Delete(_) => {}
            Edit::Insert(at, c) => chars.insert(at % (chars.len() + 1), c),
            Edit::Replace(at, c) if !chars.is_empty() => chars[at % len] = c,
            Edit::Replace(..) => {}
            Edit::Duplicate(at, n) if !chars.is_empty() => {
                let start = at % len;
                let end = (start + n).min(chars.len());
                let copy: Vec<char> = chars[start..end].to_vec();
                chars.splice(end..end, copy);
            }
            Edit::Duplicate(..) => {}
        }
    }
    chars.into_iter().collect()
}
