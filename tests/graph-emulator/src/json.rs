//! A small streaming JSON writer: pages of up to 999 objects are written
//! straight into one `String`, without building `serde_json::Value`s.

use std::fmt::Write as _;

use crate::model::{Entity, Val};

/// Appends `s` as a JSON string literal.
pub(crate) fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a property value.
pub(crate) fn push_val(out: &mut String, v: Val<'_>) {
    match v {
        Val::Null => out.push_str("null"),
        Val::Str(s) => push_str(out, s),
        Val::Bool(true) => out.push_str("true"),
        Val::Bool(false) => out.push_str("false"),
        Val::EmptyArr => out.push_str("[]"),
        Val::Strs(items) => {
            out.push('[');
            for (i, s) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_str(out, s);
            }
            out.push(']');
        }
    }
}

/// Writes the members of one JSON object.
pub(crate) struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    pub fn open(out: &'a mut String) -> Self {
        out.push('{');
        Obj { out, first: true }
    }

    pub fn key(&mut self, k: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        push_str(self.out, k);
        self.out.push(':');
        self.out
    }

    pub fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        push_str(self.out, v);
    }

    pub fn val(&mut self, k: &str, v: Val<'_>) {
        self.key(k);
        push_val(self.out, v);
    }

    pub fn raw(&mut self, k: &str, raw: &str) {
        self.key(k);
        self.out.push_str(raw);
    }

    /// Writes the listed properties of `obj`.
    pub fn props<T: Entity>(&mut self, obj: &T, props: &[usize]) {
        let defs = T::props();
        for &i in props {
            let d = &defs[i];
            self.val(d.name, (d.get)(obj));
        }
    }

    pub fn close(self) {
        self.out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_serde_json() {
        for s in ["plain", "quote\" and \\", "line\nbreak\t\u{1}", "ünïcödé ✓"] {
            let mut out = String::new();
            push_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap());
        }
    }
}
