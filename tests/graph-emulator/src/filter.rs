//! A subset of OData `$filter` for directory objects: `eq`, `ne`, `ge`,
//! `le`, `in`, `not`, `and`, `or`, parentheses, `startsWith`, `endsWith`,
//! the `any` lambda on string collections
//! (`proxyAddresses/any(p:startsWith(p,'smtp:'))`) and `/$count eq N`.
//!
//! After parsing, every clause is checked against the property's operator
//! table (see [`crate::model`]): unsupported clauses answer
//! `Request_UnsupportedQuery`, advanced-only ones answer it too unless the
//! request carries the advanced query parameters. String comparisons are
//! case-insensitive, as the directory's are.

use crate::error::GraphError;
use crate::model::{find_prop, Entity, Kind, PropDef, Sup, Val};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(i64),
    LParen,
    RParen,
    Comma,
    Colon,
}

fn lex(src: &str) -> Result<Vec<(usize, Tok)>, usize> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                out.push((i, Tok::LParen));
                i += 1
            }
            ')' => {
                out.push((i, Tok::RParen));
                i += 1
            }
            ',' => {
                out.push((i, Tok::Comma));
                i += 1
            }
            ':' => {
                out.push((i, Tok::Colon));
                i += 1
            }
            '\'' => {
                let start = i;
                i += 1;
                let mut s = String::new();
                loop {
                    match chars.get(i) {
                        None => return Err(start),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            s.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push((start, Tok::Str(s)));
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                let start = i;
                i += 1;
                while i < chars.len() && chars[i].is_ascii_alphanumeric()
                    || (i < chars.len() && chars[i] == '-')
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                match text.parse::<i64>() {
                    Ok(n) => out.push((start, Tok::Num(n))),
                    // An unquoted GUID or similar: keep it as an identifier,
                    // the parser rejects it where a literal is expected.
                    Err(_) => out.push((start, Tok::Ident(text))),
                }
            }
            c if c.is_alphabetic() || c == '_' || c == '$' || c == '@' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric()
                        || matches!(chars[i], '_' | '$' | '/' | '.' | '@'))
                {
                    i += 1;
                }
                out.push((start, Tok::Ident(chars[start..i].iter().collect())));
            }
            _ => return Err(i),
        }
    }
    Ok(out)
}

/// A literal in a comparison.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lit {
    Str(String),
    Bool(bool),
    Null,
    Num(i64),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Ge,
    Le,
    Gt,
    Lt,
}

impl CmpOp {
    fn name(self) -> &'static str {
        match self {
            CmpOp::Eq => "eq",
            CmpOp::Ne => "ne",
            CmpOp::Ge => "ge",
            CmpOp::Le => "le",
            CmpOp::Gt => "gt",
            CmpOp::Lt => "lt",
        }
    }
    fn kind_name(self) -> &'static str {
        match self {
            CmpOp::Eq => "Equal",
            CmpOp::Ne => "NotEqual",
            CmpOp::Ge => "GreaterThanOrEqual",
            CmpOp::Le => "LessThanOrEqual",
            CmpOp::Gt => "GreaterThan",
            CmpOp::Lt => "LessThan",
        }
    }
}

/// What a clause reads: an entity property or the lambda's range variable.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    Prop(String),
    Var,
}

/// Parsed, unresolved expression.
#[derive(Debug, Clone, PartialEq)]
enum Ast {
    And(Box<Ast>, Box<Ast>),
    Or(Box<Ast>, Box<Ast>),
    Not(Box<Ast>),
    Cmp(Target, CmpOp, Lit),
    In(Target, Vec<Lit>),
    StartsWith(Target, String),
    EndsWith(Target, String),
    Any(String, Box<Ast>),
    Count(String, CmpOp, i64),
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<(usize, Tok)>,
    pos: usize,
    var: Option<String>,
}

type PResult<T> = Result<T, GraphError>;

impl<'a> Parser<'a> {
    fn syntax(&self) -> GraphError {
        let at = self
            .toks
            .get(self.pos)
            .map(|(i, _)| *i)
            .unwrap_or(self.src.chars().count());
        syntax_error(self.src, at)
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        t
    }

    fn expect(&mut self, t: Tok) -> PResult<()> {
        if self.peek() == Some(&t) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s)) if s.eq_ignore_ascii_case(kw))
    }

    fn expr(&mut self) -> PResult<Ast> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            let right = self.and()?;
            left = Ast::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> PResult<Ast> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.pos += 1;
            let right = self.unary()?;
            left = Ast::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> PResult<Ast> {
        if self.keyword("not") {
            self.pos += 1;
            return Ok(Ast::Not(Box::new(self.unary()?)));
        }
        self.atom()
    }

    fn target(&self, name: &str) -> Target {
        match &self.var {
            Some(v) if v == name => Target::Var,
            _ => Target::Prop(name.to_string()),
        }
    }

    fn literal(&mut self) -> PResult<Lit> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Lit::Str(s)),
            Some(Tok::Num(n)) => Ok(Lit::Num(n)),
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("true") => Ok(Lit::Bool(true)),
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("false") => Ok(Lit::Bool(false)),
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("null") => Ok(Lit::Null),
            _ => {
                self.pos -= 1;
                Err(self.syntax())
            }
        }
    }

    fn string_arg(&mut self) -> PResult<String> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(s),
            _ => {
                self.pos -= 1;
                Err(self.syntax())
            }
        }
    }

    fn cmp_op(&mut self) -> Option<CmpOp> {
        let op = match self.peek() {
            Some(Tok::Ident(s)) => match s.to_ascii_lowercase().as_str() {
                "eq" => CmpOp::Eq,
                "ne" => CmpOp::Ne,
                "ge" => CmpOp::Ge,
                "le" => CmpOp::Le,
                "gt" => CmpOp::Gt,
                "lt" => CmpOp::Lt,
                _ => return None,
            },
            _ => return None,
        };
        self.pos += 1;
        Some(op)
    }

    fn atom(&mut self) -> PResult<Ast> {
        match self.next() {
            Some(Tok::LParen) => {
                let e = self.expr()?;
                self.expect(Tok::RParen)?;
                Ok(e)
            }
            Some(Tok::Ident(name)) => {
                let lower = name.to_ascii_lowercase();
                if self.peek() == Some(&Tok::LParen)
                    && (lower == "startswith" || lower == "endswith")
                {
                    self.pos += 1;
                    let arg = match self.next() {
                        Some(Tok::Ident(a)) => a,
                        _ => {
                            self.pos -= 1;
                            return Err(self.syntax());
                        }
                    };
                    self.expect(Tok::Comma)?;
                    let s = self.string_arg()?;
                    self.expect(Tok::RParen)?;
                    let t = self.target(&arg);
                    return Ok(if lower == "startswith" {
                        Ast::StartsWith(t, s)
                    } else {
                        Ast::EndsWith(t, s)
                    });
                }
                if lower.ends_with("/any") && self.peek() == Some(&Tok::LParen) {
                    let prop = &name[..name.len() - 4];
                    self.expect(Tok::LParen)?;
                    let var = match self.next() {
                        Some(Tok::Ident(v)) => v,
                        _ => {
                            self.pos -= 1;
                            return Err(self.syntax());
                        }
                    };
                    self.expect(Tok::Colon)?;
                    let saved = self.var.replace(var);
                    let body = self.expr();
                    self.var = saved;
                    let body = body?;
                    self.expect(Tok::RParen)?;
                    return Ok(Ast::Any(prop.to_string(), Box::new(body)));
                }
                if self.peek() == Some(&Tok::LParen) {
                    // Any other function: Graph answers that it is not
                    // supported.
                    return Err(GraphError::unsupported_query(format!(
                        "Unsupported Query. Function '{name}' is not supported."
                    )));
                }
                if let Some(prop) = name.strip_suffix("/$count") {
                    let op = self.cmp_op().ok_or_else(|| self.syntax())?;
                    return match self.next() {
                        Some(Tok::Num(n)) => Ok(Ast::Count(prop.to_string(), op, n)),
                        _ => {
                            self.pos -= 1;
                            Err(self.syntax())
                        }
                    };
                }
                let target = self.target(&name);
                if self.keyword("in") {
                    self.pos += 1;
                    self.expect(Tok::LParen)?;
                    let mut lits = vec![self.literal()?];
                    while self.peek() == Some(&Tok::Comma) {
                        self.pos += 1;
                        lits.push(self.literal()?);
                    }
                    self.expect(Tok::RParen)?;
                    return Ok(Ast::In(target, lits));
                }
                let op = self.cmp_op().ok_or_else(|| self.syntax())?;
                let lit = self.literal()?;
                Ok(Ast::Cmp(target, op, lit))
            }
            _ => {
                self.pos = self.pos.saturating_sub(1);
                Err(self.syntax())
            }
        }
    }
}

fn syntax_error(src: &str, at: usize) -> GraphError {
    GraphError::bad_request(format!(
        "Invalid filter clause: Syntax error at position {at} in '{src}'."
    ))
}

fn parse(src: &str) -> Result<Ast, GraphError> {
    let toks = lex(src).map_err(|at| syntax_error(src, at))?;
    let mut p = Parser {
        src,
        toks,
        pos: 0,
        var: None,
    };
    let e = p.expr()?;
    if p.pos < p.toks.len() {
        return Err(p.syntax());
    }
    Ok(e)
}

// ---------------------------------------------------------------------------
// Resolved filters
// ---------------------------------------------------------------------------

/// A filter resolved against entity `T`'s properties.
#[derive(Debug, Clone)]
pub(crate) enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Cmp(Src, CmpOp, Lit),
    In(Src, Vec<Lit>),
    StartsWith(Src, String),
    EndsWith(Src, String),
    Any(usize, Box<Filter>),
    Count(usize, CmpOp, i64),
}

/// Value source of a resolved clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Src {
    Prop(usize),
    Var,
}

/// What the request allows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mode {
    /// `ConsistencyLevel: eventual` and `$count=true` are both present.
    pub advanced: bool,
}

struct Resolver<'m> {
    mode: &'m Mode,
    /// Collection property of the enclosing lambda.
    lambda: Option<usize>,
}

impl Resolver<'_> {
    fn prop<T: Entity>(&self, name: &str) -> Result<(usize, &'static PropDef<T>), GraphError> {
        find_prop::<T>(name).ok_or_else(|| {
            GraphError::bad_request(format!(
                "Invalid filter clause: Could not find a property named '{name}' on type '{}'.",
                T::ODATA_TYPE
            ))
        })
    }

    /// Checks one operator's support. `inherent` names operators that are
    /// advanced by nature (`ne`, `not`, `endsWith`, `$count`): their error
    /// names the operator; otherwise it names the property.
    fn check<T: Entity>(
        &self,
        def: &PropDef<T>,
        sup: Sup,
        op: &str,
        inherent: bool,
    ) -> Result<(), GraphError> {
        match sup {
            Sup::D => Ok(()),
            Sup::A if self.mode.advanced => Ok(()),
            Sup::A if inherent => Err(GraphError::advanced_operator(op)),
            Sup::A | Sup::No => Err(GraphError::unsupported_clause(def.name, T::RESOURCE)),
        }
    }

    fn src<T: Entity>(&self, t: &Target) -> Result<(Src, &'static PropDef<T>), GraphError> {
        match t {
            Target::Var => {
                let idx = self.lambda.expect("variable outside a lambda");
                Ok((Src::Var, &T::props()[idx]))
            }
            Target::Prop(name) => {
                let (i, d) = self.prop::<T>(name)?;
                if matches!(d.kind, Kind::StrColl | Kind::OpaqueColl) {
                    // Multi-valued properties need the any operator.
                    return Err(GraphError::unsupported_clause(d.name, T::RESOURCE));
                }
                Ok((Src::Prop(i), d))
            }
        }
    }

    fn resolve<T: Entity>(&self, ast: &Ast) -> Result<Filter, GraphError> {
        Ok(match ast {
            Ast::And(a, b) => Filter::And(
                Box::new(self.resolve::<T>(a)?),
                Box::new(self.resolve::<T>(b)?),
            ),
            Ast::Or(a, b) => Filter::Or(
                Box::new(self.resolve::<T>(a)?),
                Box::new(self.resolve::<T>(b)?),
            ),
            Ast::Not(a) => {
                let inner = self.resolve::<T>(a)?;
                // "The not and ne negation operators are supported only with
                // advanced query parameters."
                for i in props_of(&inner, self.lambda) {
                    let d = &T::props()[i];
                    self.check(d, d.ops.not, "not", true)?;
                }
                if !self.mode.advanced {
                    return Err(GraphError::advanced_operator("not"));
                }
                Filter::Not(Box::new(inner))
            }
            Ast::Cmp(t, op, lit) => {
                let (src, d) = self.src::<T>(t)?;
                type_check::<T>(d, *op, lit)?;
                let (sup, inherent) = match (op, lit) {
                    (CmpOp::Eq, Lit::Null) => (d.ops.null, false),
                    (CmpOp::Eq, _) => (d.ops.eq, false),
                    (CmpOp::Ne, _) => (d.ops.ne, true),
                    (CmpOp::Ge | CmpOp::Le, _) => (d.ops.ge_le, false),
                    (CmpOp::Gt | CmpOp::Lt, _) => (Sup::No, false),
                };
                self.check(d, sup, op.name(), inherent)?;
                Filter::Cmp(src, *op, lit.clone())
            }
            Ast::In(t, lits) => {
                let (src, d) = self.src::<T>(t)?;
                for l in lits {
                    type_check::<T>(d, CmpOp::Eq, l)?;
                }
                self.check(d, d.ops.in_, "in", false)?;
                Filter::In(src, lits.clone())
            }
            Ast::StartsWith(t, s) => {
                let (src, d) = self.src::<T>(t)?;
                if !matches!(d.kind, Kind::Str | Kind::StrColl) {
                    return Err(GraphError::unsupported_clause(d.name, T::RESOURCE));
                }
                self.check(d, d.ops.starts, "startsWith", false)?;
                Filter::StartsWith(src, s.clone())
            }
            Ast::EndsWith(t, s) => {
                let (src, d) = self.src::<T>(t)?;
                if !matches!(d.kind, Kind::Str | Kind::StrColl) {
                    return Err(GraphError::unsupported_clause(d.name, T::RESOURCE));
                }
                self.check(d, d.ops.ends, "endsWith", true)?;
                Filter::EndsWith(src, s.clone())
            }
            Ast::Any(name, body) => {
                let (i, d) = self.prop::<T>(name)?;
                if d.kind != Kind::StrColl {
                    return Err(GraphError::unsupported_clause(d.name, T::RESOURCE));
                }
                let inner = Resolver {
                    mode: self.mode,
                    lambda: Some(i),
                };
                Filter::Any(i, Box::new(inner.resolve::<T>(body)?))
            }
            Ast::Count(name, op, n) => {
                let (i, d) = self.prop::<T>(name)?;
                if d.kind != Kind::StrColl || !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                    return Err(GraphError::unsupported_clause(d.name, T::RESOURCE));
                }
                self.check(d, d.ops.count, "$count", true)?;
                Filter::Count(i, *op, *n)
            }
        })
    }
}

fn lit_type(l: &Lit) -> &'static str {
    match l {
        Lit::Str(_) => "Edm.String",
        Lit::Bool(_) => "Edm.Boolean",
        Lit::Num(_) => "Edm.Int32",
        Lit::Null => "Edm.Null",
    }
}

fn type_check<T: Entity>(d: &PropDef<T>, op: CmpOp, lit: &Lit) -> Result<(), GraphError> {
    let prop_type = match d.kind {
        Kind::Bool => "Edm.Boolean",
        Kind::Str | Kind::StrColl => "Edm.String",
        _ => return Ok(()),
    };
    let ok = matches!(
        (d.kind, lit),
        (_, Lit::Null) | (Kind::Bool, Lit::Bool(_)) | (Kind::Str | Kind::StrColl, Lit::Str(_))
    );
    if ok {
        Ok(())
    } else {
        Err(GraphError::bad_request(format!(
            "Invalid filter clause: A binary operator with incompatible types was detected. \
             Found operand types '{prop_type}' and '{}' for operator kind '{}'.",
            lit_type(lit),
            op.kind_name()
        )))
    }
}

/// Properties read by a resolved filter (the lambda variable counts as its
/// collection property).
fn props_of(f: &Filter, lambda: Option<usize>) -> Vec<usize> {
    let mut out = Vec::new();
    fn walk(f: &Filter, lambda: Option<usize>, out: &mut Vec<usize>) {
        let mut src = |s: &Src| match s {
            Src::Prop(i) => out.push(*i),
            Src::Var => out.extend(lambda),
        };
        match f {
            Filter::And(a, b) | Filter::Or(a, b) => {
                walk(a, lambda, out);
                walk(b, lambda, out);
            }
            Filter::Not(a) => walk(a, lambda, out),
            Filter::Cmp(s, _, _)
            | Filter::In(s, _)
            | Filter::StartsWith(s, _)
            | Filter::EndsWith(s, _) => src(s),
            Filter::Any(i, _) | Filter::Count(i, _, _) => out.push(*i),
        }
    }
    walk(f, lambda, &mut out);
    out
}

/// Parses and validates a `$filter` for entity `T`.
pub(crate) fn compile<T: Entity>(src: &str, mode: Mode) -> Result<Filter, GraphError> {
    let ast = parse(src)?;
    Resolver {
        mode: &mode,
        lambda: None,
    }
    .resolve::<T>(&ast)
}

/// Extracts the object ids of a delta scoping filter
/// (`id eq 'a' or id eq 'b'`, at most 50), the only `$filter` the user and
/// group `delta` functions accept.
pub(crate) fn delta_ids(src: &str) -> Result<Vec<String>, GraphError> {
    fn walk(a: &Ast, out: &mut Vec<String>) -> bool {
        match a {
            Ast::Or(x, y) => walk(x, out) && walk(y, out),
            Ast::Cmp(Target::Prop(p), CmpOp::Eq, Lit::Str(v)) if p.eq_ignore_ascii_case("id") => {
                out.push(v.clone());
                true
            }
            _ => false,
        }
    }
    let ast = parse(src)?;
    let mut ids = Vec::new();
    if !walk(&ast, &mut ids) {
        return Err(GraphError::unsupported_query(
            "Unsupported query. Only filtering by object id (id eq '...') is supported on delta.",
        ));
    }
    if ids.len() > 50 {
        return Err(GraphError::unsupported_query(
            "Unsupported query. A delta filter can name at most 50 objects.",
        ));
    }
    Ok(ids)
}

// ---------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------

fn eq_ci(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        a.to_lowercase() == b.to_lowercase()
    }
}

fn starts_ci(hay: &str, needle: &str) -> bool {
    if hay.is_ascii() && needle.is_ascii() {
        hay.len() >= needle.len()
            && hay.as_bytes()[..needle.len()].eq_ignore_ascii_case(needle.as_bytes())
    } else {
        hay.to_lowercase().starts_with(&needle.to_lowercase())
    }
}

fn ends_ci(hay: &str, needle: &str) -> bool {
    if hay.is_ascii() && needle.is_ascii() {
        hay.len() >= needle.len()
            && hay.as_bytes()[hay.len() - needle.len()..].eq_ignore_ascii_case(needle.as_bytes())
    } else {
        hay.to_lowercase().ends_with(&needle.to_lowercase())
    }
}

fn cmp_val(v: Val<'_>, op: CmpOp, lit: &Lit) -> bool {
    let eq = match (v, lit) {
        (Val::Null, Lit::Null) => true,
        (_, Lit::Null) | (Val::Null, _) => false,
        (Val::Str(s), Lit::Str(l)) => {
            if matches!(op, CmpOp::Ge | CmpOp::Le | CmpOp::Gt | CmpOp::Lt) {
                let (a, b) = (s.to_lowercase(), l.to_lowercase());
                return match op {
                    CmpOp::Ge => a >= b,
                    CmpOp::Le => a <= b,
                    CmpOp::Gt => a > b,
                    _ => a < b,
                };
            }
            eq_ci(s, l)
        }
        (Val::Bool(b), Lit::Bool(l)) => b == *l,
        _ => false,
    };
    match op {
        CmpOp::Eq => eq,
        CmpOp::Ne => !eq,
        // Ordering on non-strings is rejected at compile time.
        _ => false,
    }
}

fn eval_inner<T: Entity>(f: &Filter, obj: &T, var: Option<&str>) -> bool {
    let get = |s: &Src| -> Val<'_> {
        match s {
            Src::Prop(i) => (T::props()[*i].get)(obj),
            Src::Var => var.map(Val::Str).unwrap_or(Val::Null),
        }
    };
    match f {
        Filter::And(a, b) => eval_inner(a, obj, var) && eval_inner(b, obj, var),
        Filter::Or(a, b) => eval_inner(a, obj, var) || eval_inner(b, obj, var),
        Filter::Not(a) => !eval_inner(a, obj, var),
        Filter::Cmp(s, op, lit) => cmp_val(get(s), *op, lit),
        Filter::In(s, lits) => {
            let v = get(s);
            lits.iter().any(|l| cmp_val(v, CmpOp::Eq, l))
        }
        Filter::StartsWith(s, p) => matches!(get(s), Val::Str(v) if starts_ci(v, p)),
        Filter::EndsWith(s, p) => matches!(get(s), Val::Str(v) if ends_ci(v, p)),
        Filter::Any(i, body) => match (T::props()[*i].get)(obj) {
            Val::Strs(items) => items.iter().any(|it| eval_inner(body, obj, Some(it))),
            _ => false,
        },
        Filter::Count(i, op, n) => {
            let len = match (T::props()[*i].get)(obj) {
                Val::Strs(items) => items.len() as i64,
                _ => 0,
            };
            match op {
                CmpOp::Eq => len == *n,
                _ => len != *n,
            }
        }
    }
}

/// Whether `obj` matches the filter.
pub(crate) fn eval<T: Entity>(f: &Filter, obj: &T) -> bool {
    eval_inner(f, obj, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Group, User};

    const BASIC: Mode = Mode { advanced: false };
    const ADV: Mode = Mode { advanced: true };

    fn user() -> User {
        let mut u = User::new("Alice@Contoso.com").named("Alice", "Smith");
        u.proxy_addresses = vec![
            "SMTP:alice@contoso.com".into(),
            "smtp:a.smith@contoso.com".into(),
            "X500:/o=ExchangeLabs".into(),
        ];
        u.company_name = Some("Contoso".into());
        u
    }

    fn matches(src: &str, mode: Mode) -> Result<bool, GraphError> {
        Ok(eval(&compile::<User>(src, mode)?, &user()))
    }

    #[test]
    fn default_operators() {
        assert!(matches("accountEnabled eq true", BASIC).unwrap());
        assert!(!matches("accountEnabled eq false", BASIC).unwrap());
        assert!(matches("startsWith(displayName,'ali')", BASIC).unwrap());
        assert!(matches("mail eq 'alice@contoso.com'", BASIC).unwrap());
        assert!(matches("givenName eq 'Bob' or surname eq 'smith'", BASIC).unwrap());
        assert!(matches("(givenName eq 'Alice') and accountEnabled eq true", BASIC).unwrap());
        assert!(matches("proxyAddresses/any(p:startsWith(p,'smtp:a.'))", BASIC).unwrap());
        assert!(matches(
            "proxyAddresses/any(x:x eq 'smtp:A.Smith@contoso.com')",
            BASIC
        )
        .unwrap());
        assert!(matches("givenName in ('Bob','alice')", BASIC).unwrap());
        assert!(matches("displayName eq 'O''Brien' or true eq true", BASIC).is_err());
    }

    #[test]
    fn advanced_operators_need_advanced_mode() {
        for src in [
            "accountEnabled ne true",
            "endsWith(mail,'@contoso.com')",
            "NOT startsWith(displayName,'Conf')",
            "companyName eq 'Contoso'",
            "proxyAddresses/$count eq 0",
        ] {
            let e = matches(src, BASIC).unwrap_err();
            assert_eq!(e.code, "Request_UnsupportedQuery", "{src}");
        }
        assert!(!matches("accountEnabled ne true", ADV).unwrap());
        assert!(matches("endsWith(mail,'@CONTOSO.com')", ADV).unwrap());
        assert!(!matches("NOT startsWith(displayName,'Ali')", ADV).unwrap());
        assert!(matches("companyName eq 'contoso'", ADV).unwrap());
        assert!(!matches("proxyAddresses/$count eq 0", ADV).unwrap());
        assert!(matches(
            "companyName ne null and NOT(companyName eq 'Microsoft')",
            ADV
        )
        .unwrap());
        let e = matches("endsWith(mail,'x')", BASIC).unwrap_err();
        assert!(e
            .message
            .starts_with("Operator 'endsWith' is not supported"));
    }

    #[test]
    fn errors() {
        let e = matches("foo eq 'x'", BASIC).unwrap_err();
        assert_eq!(e.code, "BadRequest");
        assert_eq!(
            e.message,
            "Invalid filter clause: Could not find a property named 'foo' on type 'microsoft.graph.user'."
        );
        let e = matches("displayName eq", BASIC).unwrap_err();
        assert!(e.message.contains("Syntax error"), "{}", e.message);
        let e = matches("accountEnabled eq 'yes'", BASIC).unwrap_err();
        assert!(e.message.contains("incompatible types"));
        let e = matches("proxyAddresses eq 'x'", BASIC).unwrap_err();
        assert_eq!(e.code, "Request_UnsupportedQuery");
        let e = matches("createdDateTime ge 'x'", ADV).unwrap_err();
        assert_eq!(e.code, "Request_UnsupportedQuery");
    }

    #[test]
    fn groups() {
        let g = Group::distribution("Sales", "sales@contoso.com");
        let f =
            compile::<Group>("mailEnabled eq true and securityEnabled eq false", BASIC).unwrap();
        assert!(eval(&f, &g));
        let f = compile::<Group>("groupTypes/any(c:c eq 'Unified')", BASIC).unwrap();
        assert!(!eval(&f, &g));
    }

    #[test]
    fn delta_scoping_filter() {
        assert_eq!(
            delta_ids("id eq 'a' or id eq 'b'").unwrap(),
            vec!["a".to_string(), "b".to_string()]
        );
        assert!(delta_ids("displayName eq 'a'").is_err());
    }
}
