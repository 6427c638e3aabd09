//! MLflow's search grammar: `filter_string` and `order_by` for runs and experiments.
//!
//! A filter is comparisons joined by `AND`: `<entity>.<key> <op> <value>`, where the entity
//! is `metrics`, `params`, `tags`, `attributes` or `datasets` (with MLflow's aliases), or
//! a bare attribute. Keys may be quoted with backticks or double quotes; string values with
//! single or double quotes (kept as written between them, as MLflow keeps them); numbers as
//! SQL writes them. The parser works on characters, never indexes bytes it has not checked,
//! and refuses what MLflow refuses with MLflow's words.

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Metric,
    Param,
    Tag,
    Attribute,
    Dataset,
}

impl Entity {
    fn name(self) -> &'static str {
        match self {
            Entity::Metric => "metric",
            Entity::Param => "parameter",
            Entity::Tag => "tag",
            Entity::Attribute => "attribute",
            Entity::Dataset => "dataset",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
    ILike,
    In,
    NotIn,
    IsNull,
    IsNotNull,
}

impl Op {
    pub fn sql(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Like => "LIKE",
            Op::ILike => "ILIKE",
            Op::In => "IN",
            Op::NotIn => "NOT IN",
            Op::IsNull => "IS NULL",
            Op::IsNotNull => "IS NOT NULL",
        }
    }

    fn from_text(text: &str) -> Option<Op> {
        Some(match text.to_ascii_uppercase().as_str() {
            "=" => Op::Eq,
            "!=" => Op::Ne,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "LIKE" => Op::Like,
            "ILIKE" => Op::ILike,
            "IN" => Op::In,
            "NOT IN" => Op::NotIn,
            "IS NULL" => Op::IsNull,
            "IS NOT NULL" => Op::IsNotNull,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Integer(i64),
    Float(f64),
    Text(String),
    List(Vec<String>),
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub entity: Entity,
    pub key: String,
    pub op: Op,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    pub entity: Entity,
    pub key: String,
    pub ascending: bool,
}

/// Which search a filter is for: they differ in keys, aliases and allowed comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Runs,
    Experiments,
}

const RUN_NUMERIC_ATTRIBUTES: &[&str] = &["start_time", "end_time", "created", "Created"];
/// RunInfo's searchable attributes and the aliases MLflow accepts beside them.
const RUN_SEARCHABLE_ATTRIBUTES: &[&str] = &[
    "run_id",
    "run_name",
    "user_id",
    "status",
    "artifact_uri",
    "start_time",
    "end_time",
];
const RUN_NUMERIC_ALIASES: &[&str] = &["created", "Created"];
const RUN_STRING_ALIASES: &[&str] = &["run name", "Run name", "Run Name"];
const EXPERIMENT_ATTRIBUTES: &[&str] =
    &["name", "experiment_id", "creation_time", "last_update_time"];
const EXPERIMENT_NUMERIC_ATTRIBUTES: &[&str] = &["creation_time", "last_update_time"];
const DATASET_ATTRIBUTES: &[&str] = &["name", "digest", "context"];

/// MLflow's other spellings of attribute keys.
pub fn canonical_attribute(key: &str) -> &str {
    match key {
        "created" | "Created" => "start_time",
        "run name" | "Run name" | "Run Name" => "run_name",
        other => other,
    }
}

pub fn is_numeric_attribute(target: Target, key: &str) -> bool {
    match target {
        Target::Runs => RUN_NUMERIC_ATTRIBUTES.contains(&key),
        Target::Experiments => EXPERIMENT_NUMERIC_ATTRIBUTES.contains(&key),
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::invalid(message)
}

// ---- tokens -------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// A name, possibly dotted and quoted in parts: `metrics.acc`, `` tags.`a b` ``,
    /// `params."x"`. Kept as written.
    Identifier(String),
    /// `'...'`, without the quotes.
    Text(String),
    Integer(String),
    Float(String),
    Operator(String),
    /// AND, OR, NOT, IN, IS, NULL and other words SQL reserves, upper-cased.
    Keyword(String),
    Comparison(String),
    Open,
    Close,
    Comma,
    Other(String),
}

impl Token {
    fn shown(&self) -> String {
        match self {
            Token::Identifier(s)
            | Token::Integer(s)
            | Token::Float(s)
            | Token::Operator(s)
            | Token::Keyword(s)
            | Token::Comparison(s)
            | Token::Other(s) => s.clone(),
            Token::Text(s) => format!("'{s}'"),
            Token::Open => "(".into(),
            Token::Close => ")".into(),
            Token::Comma => ",".into(),
        }
    }
}

const KEYWORDS: &[&str] = &[
    "AND", "OR", "NOT", "IN", "IS", "NULL", "SELECT", "FROM", "WHERE", "BY", "ORDER", "ASC",
    "DESC", "TRUE", "FALSE", "BETWEEN", "EXISTS", "CASE", "WHEN", "THEN", "ELSE", "END",
];

fn is_name_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$' || c == '#'
}

struct Lexer<'a> {
    chars: Vec<(usize, char)>,
    text: &'a str,
    at: usize,
    /// How many tokens sqlparse, MLflow's parser, makes of the text read so far: each
    /// whitespace character is one, and so is each part and each dot of a dotted name.
    sqlparse_tokens: usize,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Self {
        Lexer {
            chars: text.char_indices().collect(),
            text,
            at: 0,
            sqlparse_tokens: 0,
        }
    }

    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.at + ahead).map(|&(_, c)| c)
    }

    fn offset(&self, index: usize) -> usize {
        self.chars.get(index).map_or(self.text.len(), |&(o, _)| o)
    }

    fn slice(&self, from: usize, to: usize) -> &'a str {
        &self.text[self.offset(from)..self.offset(to)]
    }

    /// A quoted run ending at the matching quote (a doubled quote stays inside), as written
    /// between the quotes; None when the closing quote is missing.
    fn quoted(&mut self, quote: char) -> Option<&'a str> {
        let start = self.at + 1;
        let mut index = start;
        while let Some(&(_, c)) = self.chars.get(index) {
            if c == '\\' && quote != '`' && self.chars.get(index + 1).is_some() {
                index += 2;
                continue;
            }
            if c == quote {
                if self.chars.get(index + 1).map(|&(_, c)| c) == Some(quote) {
                    index += 2;
                    continue;
                }
                self.at = index + 1;
                return Some(self.slice(start, index));
            }
            index += 1;
        }
        None
    }

    fn number(&mut self) -> Option<Token> {
        let start = self.at;
        let mut index = self.at;
        if self.peek(0) == Some('-') {
            index += 1;
        }
        let digits = |lexer: &Self, mut i: usize| {
            while lexer.chars.get(i).is_some_and(|&(_, c)| c.is_ascii_digit()) {
                i += 1;
            }
            i
        };
        let int_end = digits(self, index);
        let mut end = int_end;
        let mut float = false;
        if self.chars.get(end).map(|&(_, c)| c) == Some('.') {
            let frac_end = digits(self, end + 1);
            if int_end > index || frac_end > end + 1 {
                float = true;
                end = frac_end;
            }
        }
        if end == index || (int_end == index && !float) {
            return None;
        }
        if matches!(self.chars.get(end).map(|&(_, c)| c), Some('e' | 'E')) {
            let mut exp = end + 1;
            if self.chars.get(exp).map(|&(_, c)| c) == Some('-') {
                exp += 1;
            }
            let exp_end = digits(self, exp);
            if exp_end > exp {
                float = true;
                end = exp_end;
            }
        }
        // A number glued to a name (`1abc`) is not a number.
        if self.chars.get(end).is_some_and(|&(_, c)| is_name_start(c)) {
            return None;
        }
        self.at = end;
        let text = self.slice(start, end).to_string();
        Some(if float {
            Token::Float(text)
        } else {
            Token::Integer(text)
        })
    }

    /// One part of a dotted name: a bare word, a backticked or double-quoted name.
    fn name_part(&mut self) -> Option<String> {
        match self.peek(0)? {
            '`' => self.quoted('`').map(|inner| format!("`{inner}`")),
            '"' => self.quoted('"').map(|inner| format!("\"{inner}\"")),
            c if is_name_start(c) => {
                let start = self.at;
                while self.peek(0).is_some_and(is_name_char) {
                    self.at += 1;
                }
                Some(self.slice(start, self.at).to_string())
            }
            _ => None,
        }
    }

    fn identifier(&mut self, first: String) -> Token {
        let mut text = first;
        let plain = !text.starts_with('`') && !text.starts_with('"');
        let mut dotted = false;
        while self.peek(0) == Some('.') {
            let save = self.at;
            self.at += 1;
            match self.name_part() {
                Some(part) => {
                    text.push('.');
                    text.push_str(&part);
                    dotted = true;
                    self.sqlparse_tokens += 2;
                }
                None => {
                    self.at = save;
                    break;
                }
            }
        }
        if plain && !dotted {
            let upper = text.to_ascii_uppercase();
            if KEYWORDS.contains(&upper.as_str()) {
                return Token::Keyword(upper);
            }
            if upper == "LIKE" || upper == "ILIKE" {
                return Token::Comparison(upper);
            }
        }
        Token::Identifier(text)
    }

    fn tokens(&mut self) -> Result<Vec<Token>> {
        let mut out = Vec::new();
        while let Some(c) = self.peek(0) {
            if c.is_whitespace() {
                if !(c == '\n' && self.at > 0 && self.chars[self.at - 1].1 == '\r') {
                    self.sqlparse_tokens += 1;
                }
                self.at += 1;
                continue;
            }
            self.sqlparse_tokens += 1;
            let token = match c {
                '\'' => match self.quoted('\'') {
                    Some(inner) => Token::Text(inner.to_string()),
                    None => return Err(unparsable(self.text)),
                },
                '(' => {
                    self.at += 1;
                    Token::Open
                }
                ')' => {
                    self.at += 1;
                    Token::Close
                }
                ',' => {
                    self.at += 1;
                    Token::Comma
                }
                '<' | '>' | '=' | '!' | '~' => {
                    let start = self.at;
                    while matches!(self.peek(0), Some('<' | '>' | '=' | '!' | '~')) {
                        self.at += 1;
                    }
                    Token::Operator(self.slice(start, self.at).to_string())
                }
                '-' | '.' | '0'..='9' => match self.number() {
                    Some(number) => number,
                    None => {
                        self.at += 1;
                        Token::Other(c.to_string())
                    }
                },
                '`' | '"' => match self.name_part() {
                    Some(first) => self.identifier(first),
                    None => return Err(unparsable(self.text)),
                },
                c if is_name_start(c) => {
                    let first = self.name_part().unwrap_or_default();
                    self.identifier(first)
                }
                other => {
                    self.at += 1;
                    Token::Other(other.to_string())
                }
            };
            out.push(token);
        }
        Ok(out)
    }
}

fn unparsable(filter: &str) -> Error {
    invalid(format!("Invalid filter '{filter}'. Could not be parsed."))
}

// ---- filters ------------------------------------------------------------------------------

fn strip_quotes(text: &str) -> &str {
    for quote in ['\'', '"'] {
        if text.len() >= 2 && text.starts_with(quote) && text.ends_with(quote) {
            return &text[1..text.len() - 1];
        }
    }
    text
}

fn trim_backticks(text: &str) -> &str {
    if text.len() >= 2 && text.starts_with('`') && text.ends_with('`') {
        &text[1..text.len() - 1]
    } else {
        text
    }
}

fn entity_of(name: &str, target: Target) -> Result<Entity> {
    let name = trim_backticks(name);
    if target == Target::Experiments {
        return match name {
            "attribute" => Ok(Entity::Attribute),
            "tag" | "tags" => Ok(Entity::Tag),
            other => Err(invalid(format!(
                "Invalid entity type '{other}'. Valid entity types are ('attribute', 'tag', \
                 'tags')"
            ))),
        };
    }
    Ok(match name {
        "metric" | "metrics" => Entity::Metric,
        "parameter" | "parameters" | "param" | "params" => Entity::Param,
        "tag" | "tags" => Entity::Tag,
        "attribute" | "attr" | "attributes" | "run" => Entity::Attribute,
        "dataset" | "datasets" => Entity::Dataset,
        other => {
            return Err(invalid(format!(
                "Invalid entity type '{other}'. Valid values are ['metric', 'parameter', 'tag', \
                 'attribute', 'dataset']"
            )))
        }
    })
}

/// `entity.key` (or a bare attribute key) as MLflow splits it: at the first dot.
fn identifier(text: &str, target: Target, ordering: bool) -> Result<(Entity, String)> {
    let (entity, key) = match text.split_once('.') {
        Some((entity, key)) => (entity_of(entity, target)?, key),
        None => (Entity::Attribute, text),
    };
    let key = trim_backticks(strip_quotes(key)).to_string();
    if entity == Entity::Attribute {
        let valid: &[&str] = match (target, ordering) {
            (Target::Experiments, _) => EXPERIMENT_ATTRIBUTES,
            (Target::Runs, true) => &[RUN_SEARCHABLE_ATTRIBUTES, RUN_NUMERIC_ALIASES].concat(),
            (Target::Runs, false) => &[
                RUN_SEARCHABLE_ATTRIBUTES,
                RUN_NUMERIC_ALIASES,
                RUN_STRING_ALIASES,
            ]
            .concat(),
        };
        if !valid.contains(&key.as_str()) {
            let shown = match target {
                Target::Experiments => shown_set(valid, true),
                Target::Runs => shown_run_attribute_set(ordering),
            };
            return Err(invalid(format!(
                "Invalid attribute key '{key}' specified. Valid keys are '{shown}'"
            )));
        }
    }
    if entity == Entity::Dataset && !DATASET_ATTRIBUTES.contains(&key.as_str()) {
        return Err(invalid(format!(
            "Invalid dataset key '{key}' specified. Valid keys are '{}'",
            shown_set(DATASET_ATTRIBUTES, false)
        )));
    }
    Ok((entity, key))
}

/// Keys as MLflow's set holds them. A set literal of constants is compiled into a frozenset
/// whose elements the .pyc stores sorted by their marshalled bytes (length first), and it
/// is listed in that order; the mapping to Python exceptions builds the set from it.
fn shown_set(keys: &[&str], constant_literal: bool) -> String {
    let mut keys = keys.to_vec();
    if constant_literal {
        keys.sort_unstable_by_key(|key| (key.len(), *key));
    }
    let quoted: Vec<String> = keys.iter().map(|k| format!("'{k}'")).collect();
    format!("{{{}}}", quoted.join(", "))
}

/// MLflow's valid run attribute keys: a set made of the sorted searchable (or orderable)
/// attributes followed by two small sets of aliases. The groups are kept apart for the
/// mapping to Python exceptions, which builds the set as MLflow does.
fn shown_run_attribute_set(ordering: bool) -> String {
    let mut searchable = RUN_SEARCHABLE_ATTRIBUTES.to_vec();
    searchable.sort_unstable();
    let mut groups = vec![searchable, RUN_NUMERIC_ALIASES.to_vec()];
    if !ordering {
        groups.push(RUN_STRING_ALIASES.to_vec());
    }
    let shown: Vec<String> = groups
        .iter()
        .map(|group| {
            let quoted: Vec<String> = group.iter().map(|k| format!("'{k}'")).collect();
            quoted.join(", ")
        })
        .collect();
    format!(
        "{{{}}}",
        shown.join(&format!(", {}", crate::error::SET_GROUP_SEPARATOR))
    )
}

fn quoted_value(token: &Token) -> Option<String> {
    match token {
        Token::Text(text) => Some(text.clone()),
        Token::Identifier(text)
            if text.len() >= 2 && text.starts_with('"') && text.ends_with('"') =>
        {
            if text[1..text.len() - 1].contains('"') && !text.ends_with("\"\"") {
                // `"a"."b"` is a dotted name, not a string.
                return None;
            }
            Some(text[1..text.len() - 1].to_string())
        }
        _ => None,
    }
}

fn list_value(tokens: &[Token], key: &str, target: Target) -> Result<Vec<String>> {
    let allowed = match target {
        Target::Runs => "run_id",
        Target::Experiments => "experiment_id",
    };
    if key != allowed {
        return Err(invalid(format!(
            "Only ['{allowed}'] attributes support comparison with a list of quoted string \
             values."
        )));
    }
    let ill_formed = || {
        invalid(
            "While parsing a list in the query, expected a non-empty list of string values, but \
             got ill-formed list.",
        )
    };
    let mut values = Vec::new();
    let mut expect_value = true;
    for token in tokens {
        match (token, expect_value) {
            (Token::Text(text), true) => {
                values.push(text.clone());
                expect_value = false;
            }
            (Token::Comma, false) => expect_value = true,
            (Token::Integer(_) | Token::Float(_), true) => {
                return Err(invalid(
                    "While parsing a list in the query, expected string value, punctuation, or \
                     whitespace, but got different type in list",
                ))
            }
            _ => return Err(ill_formed()),
        }
    }
    if values.is_empty() {
        return Err(invalid(
            "While parsing a list in the query, expected a non-empty list of string values, but \
             got empty list",
        ));
    }
    Ok(values)
}

fn value_of(
    entity: Entity,
    key: &str,
    written: &[Token],
    list: Option<&[Token]>,
    target: Target,
) -> Result<Value> {
    let shown = shown_tokens(written);
    let number = |tokens: &[Token]| match tokens {
        [token] => match token {
            Token::Integer(text) => text
                .parse::<i64>()
                .map(Value::Integer)
                .or_else(|_| text.parse::<f64>().map(Value::Float))
                .ok(),
            Token::Float(text) => text.parse::<f64>().ok().map(Value::Float),
            _ => None,
        },
        _ => None,
    };
    // MLflow takes a bare name where it expects a string as an unquoted string.
    let quoted = |tokens: &[Token]| -> Result<Option<String>> {
        match tokens {
            [Token::Identifier(name)] if quoted_value(&tokens[0]).is_none() => {
                Err(invalid(format!(
                    "Parameter value is either not quoted or unidentified quote types used for \
                 string value {name}. Use either single or double quotes."
                )))
            }
            [token] => Ok(quoted_value(token)),
            _ => Ok(None),
        }
    };
    match entity {
        Entity::Metric => number(written).ok_or_else(|| {
            invalid(format!(
                "Expected numeric value type for metric. Found {}",
                shown
            ))
        }),
        Entity::Param | Entity::Tag => match quoted(written)? {
            Some(text) => Ok(Value::Text(text)),
            None => Err(invalid(format!(
                "Expected a quoted string value for {} (e.g. 'my-value'). Got value {}",
                entity.name(),
                shown
            ))),
        },
        Entity::Attribute => {
            if is_numeric_attribute(target, key) {
                return number(written).ok_or_else(|| {
                    invalid(format!(
                        "Expected numeric value type for numeric attribute: {key}. Found {}",
                        shown
                    ))
                });
            }
            if let Some(text) = quoted(written)? {
                return Ok(Value::Text(text));
            }
            if let Some(items) = list {
                return list_value(items, key, target).map(Value::List);
            }
            Err(invalid(format!(
                "Expected a quoted string value for attributes. Got value {}",
                shown
            )))
        }
        Entity::Dataset => {
            if let Some(text) = quoted(written)? {
                return Ok(Value::Text(text));
            }
            if let Some(items) = list {
                return list_value_any(items).map(Value::List);
            }
            Err(invalid(format!(
                "Expected a quoted string value for dataset attributes. Got value {}",
                shown
            )))
        }
    }
}

fn list_value_any(tokens: &[Token]) -> Result<Vec<String>> {
    let values: Vec<String> = tokens
        .iter()
        .filter_map(|t| match t {
            Token::Text(text) => Some(text.clone()),
            _ => None,
        })
        .collect();
    if values.is_empty() {
        return Err(invalid(
            "While parsing a list in the query, expected a non-empty list of string values, but \
             got empty list",
        ));
    }
    Ok(values)
}

fn allowed_ops(entity: Entity, key: &str, target: Target) -> (&'static [Op], &'static str) {
    const METRIC: &[Op] = &[Op::Gt, Op::Ge, Op::Ne, Op::Eq, Op::Lt, Op::Le];
    const STRINGY: &[Op] = &[
        Op::Ne,
        Op::Eq,
        Op::Like,
        Op::ILike,
        Op::IsNull,
        Op::IsNotNull,
    ];
    const STRING_ATTR: &[Op] = &[Op::Ne, Op::Eq, Op::Like, Op::ILike, Op::In, Op::NotIn];
    match entity {
        Entity::Metric => (METRIC, "'{'<', '=', '>', '!=', '<=', '>='}"),
        Entity::Param => (
            STRINGY,
            "'{'!=', '=', 'LIKE', 'ILIKE', 'IS NULL', 'IS NOT NULL'}'",
        ),
        Entity::Tag => (
            STRINGY,
            "'{'!=', '=', 'LIKE', 'ILIKE', 'IS NULL', 'IS NOT NULL'}",
        ),
        // MLflow names the string comparators when it refuses one for a numeric attribute.
        Entity::Attribute if is_numeric_attribute(target, key) => {
            (METRIC, "'{'!=', '=', 'LIKE', 'ILIKE', 'IN', 'NOT IN'}")
        }
        Entity::Attribute => (
            STRING_ATTR,
            "'{'!=', '=', 'LIKE', 'ILIKE', 'IN', 'NOT IN'}'",
        ),
        Entity::Dataset => (STRING_ATTR, "'{'!=', '=', 'LIKE', 'ILIKE', 'IN', 'NOT IN'}"),
    }
}

fn is_and(token: &Token) -> bool {
    matches!(token, Token::Keyword(word) if word == "AND")
}

fn is_keyword(token: Option<&Token>, word: &str) -> bool {
    matches!(token, Some(Token::Keyword(w)) if w == word)
}

/// A value sqlparse accepts on either side of a comparison operator.
fn is_operand(token: Option<&Token>) -> bool {
    match token {
        Some(Token::Identifier(_) | Token::Text(_) | Token::Integer(_) | Token::Float(_)) => true,
        Some(Token::Keyword(word)) => word == "NULL",
        _ => false,
    }
}

/// The length of a parenthesised group starting at `open` (sqlparse makes one token of it).
fn group_len(tokens: &[Token], open: usize) -> Option<usize> {
    if !matches!(tokens.get(open), Some(Token::Open)) {
        return None;
    }
    let mut depth = 0usize;
    for (index, token) in tokens[open..].iter().enumerate() {
        match token {
            Token::Open => depth += 1,
            Token::Close => {
                depth -= 1;
                if depth == 0 {
                    return Some(index + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// Tokens as written: a parenthesised group reads `('a', 'b')`.
fn shown_tokens(tokens: &[Token]) -> String {
    let mut out = String::new();
    let mut previous: Option<&Token> = None;
    for token in tokens {
        let glued = matches!(previous, None | Some(Token::Open))
            || matches!(token, Token::Close | Token::Comma);
        if !glued {
            out.push(' ');
        }
        out.push_str(&token.shown());
        previous = Some(token);
    }
    out
}

/// How many tokens at the start of `tokens` sqlparse groups into one comparison (MLflow
/// joins `IN`, `NOT IN`, `IS NULL` and `IS NOT NULL` into comparisons as well), or None.
fn comparison_len(tokens: &[Token]) -> Option<usize> {
    let first = tokens.first();
    if matches!(first, Some(Token::Identifier(_))) {
        if is_keyword(tokens.get(1), "IS") {
            if is_keyword(tokens.get(2), "NULL") {
                return Some(3);
            }
            if is_keyword(tokens.get(2), "NOT") && is_keyword(tokens.get(3), "NULL") {
                return Some(4);
            }
        }
        if is_keyword(tokens.get(1), "IN") {
            return group_len(tokens, 2).map(|len| 2 + len);
        }
        if is_keyword(tokens.get(1), "NOT") && is_keyword(tokens.get(2), "IN") {
            return group_len(tokens, 3).map(|len| 3 + len);
        }
    }
    let operator = matches!(
        tokens.get(1),
        Some(Token::Operator(_) | Token::Comparison(_))
    );
    if operator && is_operand(first) && is_operand(tokens.get(2)) {
        return Some(3);
    }
    None
}

/// Splits the tokens as MLflow reads them: comparisons with ANDs between them (stray ANDs
/// are ignored, two comparisons side by side count as ANDed). Anything else is an invalid
/// clause, and MLflow names every one of them in one message.
fn comparisons(tokens: &[Token], target: Target) -> Result<Vec<&[Token]>> {
    let mut found = Vec::new();
    let mut invalid_clauses = Vec::new();
    let mut at = 0;
    while at < tokens.len() {
        if is_and(&tokens[at]) {
            at += 1;
            continue;
        }
        if let Some(len) = comparison_len(&tokens[at..]) {
            found.push(&tokens[at..at + len]);
            at += len;
            continue;
        }
        let len = group_len(tokens, at).unwrap_or(1);
        invalid_clauses.push(shown_tokens(&tokens[at..at + len]));
        at += len;
    }
    if invalid_clauses.is_empty() {
        return Ok(found);
    }
    let listed = match target {
        Target::Runs => invalid_clauses
            .iter()
            .map(|clause| format!("'{clause}'"))
            .collect::<Vec<_>>()
            .join(", "),
        Target::Experiments => invalid_clauses.join(", "),
    };
    Err(invalid(format!(
        "Invalid clause(s) in filter string: {listed}"
    )))
}

/// One comparison with its identifier and value read, its comparator not yet checked:
/// MLflow reads every clause before it checks any comparator.
struct ReadClause {
    entity: Entity,
    key: String,
    comparator: String,
    value: Value,
}

fn read_clause(tokens: &[Token], target: Target) -> Result<ReadClause> {
    let name = match tokens.first() {
        Some(Token::Identifier(name)) => name,
        other => {
            return Err(invalid(format!(
                "Invalid comparison clause. Expected 'Identifier' found '{}'",
                other.map(Token::shown).unwrap_or_default()
            )))
        }
    };
    if is_keyword(tokens.get(1), "IS") {
        let comparator = if tokens.len() == 3 {
            "IS NULL"
        } else {
            "IS NOT NULL"
        };
        let (entity, key) = identifier(name, target, false)?;
        let supported = match target {
            Target::Runs => matches!(entity, Entity::Param | Entity::Tag),
            Target::Experiments => entity == Entity::Tag,
        };
        if !supported {
            return Err(invalid(match target {
                Target::Runs => format!(
                    "IS NULL / IS NOT NULL is only supported for tags and params, not for '{}' \
                     '{key}'",
                    entity.name()
                ),
                Target::Experiments => format!(
                    "IS NULL / IS NOT NULL is only supported for tags, not for attribute '{key}'"
                ),
            }));
        }
        return Ok(ReadClause {
            entity,
            key,
            comparator: comparator.to_string(),
            value: Value::None,
        });
    }
    let (comparator, value_tokens) = if is_keyword(tokens.get(1), "IN") {
        ("IN".to_string(), &tokens[2..])
    } else if is_keyword(tokens.get(1), "NOT") {
        ("NOT IN".to_string(), &tokens[3..])
    } else {
        (tokens[1].shown(), &tokens[2..])
    };
    let (entity, key) = identifier(name, target, false)?;
    let list = match value_tokens {
        [Token::Open, inner @ .., Token::Close] => Some(inner),
        _ => None,
    };
    let value = value_of(entity, &key, value_tokens, list, target)?;
    Ok(ReadClause {
        entity,
        key,
        comparator,
        value,
    })
}

/// MLflow's store refuses some comparators for experiments in words of its own, after the
/// check shared with runs.
fn experiment_comparator_refusal(read: &ReadClause, op: Option<Op>) -> Option<String> {
    const NOMINAL: &[Op] = &[Op::Eq, Op::Ne, Op::In, Op::NotIn];
    const TEXTUAL: &[Op] = &[Op::Eq, Op::Ne, Op::Like, Op::ILike];
    let comparator = &read.comparator;
    let within = |ops: &[Op]| op.is_some_and(|op| ops.contains(&op));
    match read.entity {
        Entity::Attribute if read.key == "experiment_id" => (!within(NOMINAL))
            .then(|| format!("Invalid comparator for experiment_id: {comparator}")),
        Entity::Attribute if !EXPERIMENT_NUMERIC_ATTRIBUTES.contains(&read.key.as_str()) => {
            (!within(TEXTUAL))
                .then(|| format!("Invalid comparator for string attribute: {comparator}"))
        }
        Entity::Tag if !matches!(op, Some(Op::IsNull | Op::IsNotNull)) => {
            (!within(TEXTUAL)).then(|| format!("Invalid comparator for tag: {comparator}"))
        }
        _ => None,
    }
}

fn checked_clause(read: ReadClause, target: Target) -> Result<Clause> {
    let (allowed, valid) = allowed_ops(read.entity, &read.key, target);
    let op = Op::from_text(&read.comparator);
    if target == Target::Experiments {
        let shared_check = read.entity != Entity::Attribute || read.key == "experiment_id";
        if shared_check || op.is_some_and(|op| allowed.contains(&op)) {
            if let Some(refusal) = experiment_comparator_refusal(&read, op) {
                return Err(invalid(refusal));
            }
        }
    }
    match op {
        Some(op) if allowed.contains(&op) => Ok(Clause {
            entity: read.entity,
            key: read.key,
            op,
            value: read.value,
        }),
        _ => Err(invalid(format!(
            "Invalid comparator '{}' not one of {valid}",
            read.comparator
        ))),
    }
}

/// sqlparse refuses a statement of more tokens than this (a guard against denial of
/// service), and MLflow reports it as a filter it could not parse.
const MAX_SQLPARSE_TOKENS: usize = 10_000;

/// Parses a search filter; an empty one matches everything, a blank one is refused.
pub fn parse_filter(filter: &str, target: Target) -> Result<Vec<Clause>> {
    if filter.is_empty() {
        return Ok(Vec::new());
    }
    if filter.trim().is_empty() {
        return Err(unparsable(filter));
    }
    let mut lexer = Lexer::new(filter);
    let tokens = lexer.tokens();
    if lexer.sqlparse_tokens > MAX_SQLPARSE_TOKENS {
        return Err(invalid(format!("Error on parsing filter '{filter}'")));
    }
    let tokens = tokens?;
    if tokens
        .iter()
        .any(|t| matches!(t, Token::Other(s) if s == ";"))
    {
        return Err(invalid(format!(
            "Search filter contained multiple expression '{filter}'. Provide AND-ed expression \
             list."
        )));
    }
    let read = comparisons(&tokens, target)?
        .into_iter()
        .map(|part| read_clause(part, target))
        .collect::<Result<Vec<_>>>()?;
    let mut clauses = read
        .into_iter()
        .map(|clause| checked_clause(clause, target))
        .collect::<Result<Vec<_>>>()?;
    if target == Target::Runs {
        for clause in &mut clauses {
            if clause.entity == Entity::Attribute {
                clause.key = canonical_attribute(&clause.key).to_string();
            }
        }
    }
    Ok(clauses)
}

/// Parses one `order_by` entry: `<entity>.<key> [ASC|DESC]`.
pub fn parse_order_by(text: &str, target: Target) -> Result<OrderBy> {
    let unparsable = || {
        invalid(format!(
            "Invalid order_by clause '{text}'. Could not be parsed."
        ))
    };
    let tokens = Lexer::new(text).tokens().map_err(|_| unparsable())?;
    let (name, ascending) = match tokens.as_slice() {
        [Token::Identifier(name)] => (name, true),
        [Token::Identifier(name), Token::Keyword(order)] if order == "ASC" || order == "DESC" => {
            (name, order == "ASC")
        }
        [Token::Identifier(_), Token::Identifier(_)] => {
            return Err(invalid(format!(
                "Invalid ordering key in order_by clause '{text}'."
            )))
        }
        _ => return Err(unparsable()),
    };
    let (entity, key) = identifier(name, target, true)?;
    if target == Target::Experiments && entity != Entity::Attribute {
        return Err(invalid(format!(
            "Invalid order_by entity: {}",
            entity.name()
        )));
    }
    if entity == Entity::Dataset {
        return Err(invalid(format!(
            "Invalid identifier type '{}'",
            entity.name()
        )));
    }
    let key = match (target, entity) {
        (Target::Runs, Entity::Attribute) => canonical_attribute(&key).to_string(),
        _ => key,
    };
    Ok(OrderBy {
        entity,
        key,
        ascending,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(filter: &str) -> Result<Vec<Clause>> {
        parse_filter(filter, Target::Runs)
    }

    #[test]
    fn parses_the_documented_forms() {
        let clauses = runs(
            "metrics.acc > 0.5 and params.lr = '0.01' AND tags.`mlflow.user` LIKE 'a%' \
             AND attributes.status != \"FAILED\" AND run_id IN ('a', 'b') AND created >= -5",
        )
        .unwrap();
        assert_eq!(clauses.len(), 6);
        assert_eq!(clauses[0].value, Value::Float(0.5));
        assert_eq!(clauses[1].value, Value::Text("0.01".into()));
        assert_eq!(clauses[2].key, "mlflow.user");
        assert_eq!(clauses[2].op, Op::Like);
        assert_eq!(clauses[3].value, Value::Text("FAILED".into()));
        assert_eq!(clauses[4].value, Value::List(vec!["a".into(), "b".into()]));
        assert_eq!(clauses[5].key, "start_time");
        assert_eq!(clauses[5].value, Value::Integer(-5));
        let dotted = runs("tags.mlflow.runName = 'x'").unwrap();
        assert_eq!(dotted[0].key, "mlflow.runName");
        let quoted = runs("metrics.\"my metric\" <= 1e3 AND params.p IS NOT NULL").unwrap();
        assert_eq!(quoted[0].key, "my metric");
        assert_eq!(quoted[0].value, Value::Float(1000.0));
        assert_eq!(quoted[1].op, Op::IsNotNull);
    }

    #[test]
    fn blank_and_overlong_filters_are_refused_as_mlflow_refuses_them() {
        assert_eq!(runs("").unwrap(), Vec::new());
        let blank = runs(" \t\n").unwrap_err().to_string();
        assert_eq!(blank, "Invalid filter ' \t\n'. Could not be parsed.");
        // "metrics.m>0" is 5 of sqlparse's tokens, " AND " 3: 1250 clauses are 9997.
        let at_limit = vec!["metrics.m>0"; 1250].join(" AND ") + "   ";
        assert_eq!(runs(&at_limit).unwrap().len(), 1250);
        let over = at_limit.clone() + "\r\n";
        assert!(runs(&over)
            .unwrap_err()
            .to_string()
            .starts_with("Error on parsing filter 'metrics.m>0 AND"));
    }

    #[test]
    fn refuses_what_mlflow_refuses() {
        for bad in [
            "metrics.acc > 0.5 OR params.lr = '1'",
            "metrics.acc = 'x'",
            "params.lr = 1",
            "params.lr > '1'",
            "foo.bar = 1",
            "attributes.nope = 'x'",
            "status IN ('a')",
            "metrics.acc IS NULL",
            "metrics.acc",
            "(metrics.acc > 1)",
            "metrics.acc >",
            "params.p = 'unterminated",
            "metrics.a > 1; metrics.b > 2",
            "metrics.acc == 1",
        ] {
            assert!(runs(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn order_by() {
        let o = parse_order_by("metrics.`my acc` DESC", Target::Runs).unwrap();
        assert_eq!(
            (o.entity, o.key.as_str(), o.ascending),
            (Entity::Metric, "my acc", false)
        );
        let o = parse_order_by("created", Target::Runs).unwrap();
        assert_eq!(o.key, "start_time");
        assert!(parse_order_by("metrics.a up", Target::Runs).is_err());
        assert!(parse_order_by("tags.x", Target::Experiments).is_err());
        assert!(parse_order_by("name ASC", Target::Experiments).is_ok());
    }

    #[test]
    fn never_panics_on_odd_input() {
        let pieces = [
            "metrics.", "`", "\"", "'", "(", ")", ",", " AND ", " IN ", "NOT", "IS", "NULL", "-",
            ".", "1", "e", "é", "€", "=", "<", ">", "!", "\\", ";", "params.x", "\u{0}",
        ];
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            let mut text = String::new();
            for _ in 0..(seed % 9) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                text.push_str(pieces[(seed % pieces.len() as u64) as usize]);
            }
            let _ = parse_filter(&text, Target::Runs);
            let _ = parse_filter(&text, Target::Experiments);
            let _ = parse_order_by(&text, Target::Runs);
        }
    }
}
