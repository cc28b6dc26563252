//! The feature registry's statements: entities, feature views, feature
//! services. Parsed by hand on sqlparser's token stream (these are not SQL
//! standard statements), printed back as canonical SQL (`SHOW CREATE`).
//!
//! ```sql
//! CREATE ENTITY [IF NOT EXISTS] customer (customer_id BIGINT [, …]) [COMMENT '…']
//! CREATE [OR REPLACE] FEATURE VIEW [IF NOT EXISTS] name
//!     { ENTITY entity | KEY (col [, …]) } TIMESTAMP col
//!     [TTL INTERVAL '…'] [ONLINE [STREAMING] | OFFLINE]
//!     [WITH (owner = '…', tags = '…', description = '…')]
//!     AS query
//! CREATE [OR REPLACE] FEATURE SERVICE [IF NOT EXISTS] name [WITH (…)]
//!     AS view.feature [AS alias] | view.* | view [VERSION n] (feature [AS alias], … | *) [, …]
//! ALTER FEATURE VIEW name SET (ttl = INTERVAL '…' | NULL, online = true, streaming = true, owner = '…', …)
//! DROP { ENTITY | FEATURE VIEW | FEATURE SERVICE } [IF EXISTS] name [, …] [CASCADE | RESTRICT]
//! SHOW { ENTITIES | FEATURE VIEWS | FEATURE SERVICES }
//! SHOW CREATE { ENTITY | FEATURE VIEW | FEATURE SERVICE } name [VERSION n]
//! REFRESH FEATURE VIEW name [, …] [FULL]
//! ```

use std::fmt;

use datafusion::sql::sqlparser::ast::{self, Expr, ObjectName};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;
use featuredb_catalog::ColumnType;
use featuredb_catalog::names::quote_ident;

use crate::error::{ParseError, ParseErrorKind};
use crate::names::{ObjectRef, normalize_ident, object_ref};
use crate::temporal::split_version;
use crate::types::column_type;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryKind {
    Entity,
    FeatureView,
    FeatureService,
}

impl fmt::Display for RegistryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RegistryKind::Entity => "ENTITY",
            RegistryKind::FeatureView => "FEATURE VIEW",
            RegistryKind::FeatureService => "FEATURE SERVICE",
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum FeatureStatement {
    CreateEntity(CreateEntity),
    CreateFeatureView(Box<CreateFeatureView>),
    CreateFeatureService(CreateFeatureService),
    AlterFeatureView(AlterFeatureView),
    Drop(DropRegistryObjects),
    Show(ShowRegistry),
    Refresh(RefreshFeatureViews),
}

/// `REFRESH FEATURE VIEW name [, …] [FULL]`: materialize the views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshFeatureViews {
    pub names: Vec<ObjectRef>,
    /// Recompute from scratch instead of from the inputs' new rows.
    pub full: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateEntity {
    pub name: ObjectRef,
    pub if_not_exists: bool,
    pub keys: Vec<(String, ColumnType)>,
    pub comment: Option<String>,
}

/// How a feature view names its join key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeatureKey {
    Entity(ObjectRef),
    Columns(Vec<String>),
}

/// Descriptive options: `WITH (owner = '…', tags = '…', description = '…')`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Descriptors {
    pub owner: Option<String>,
    pub tags: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateFeatureView {
    pub name: ObjectRef,
    pub or_replace: bool,
    pub if_not_exists: bool,
    pub key: FeatureKey,
    pub timestamp: String,
    /// The TTL as an interval expression (`INTERVAL '30 days'`).
    pub ttl: Option<Expr>,
    pub online: bool,
    /// `ONLINE STREAMING`: every write to the source reaches the online
    /// rows when it is acknowledged, not at the next REFRESH.
    pub streaming: bool,
    pub descriptors: Descriptors,
    pub query: Box<ast::Query>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceFeatures {
    All,
    /// (feature, alias)
    Listed(Vec<(String, Option<String>)>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceItem {
    pub view: ObjectRef,
    /// Pinned definition version; `None` follows the latest.
    pub version: Option<u32>,
    pub features: ServiceFeatures,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateFeatureService {
    pub name: ObjectRef,
    pub or_replace: bool,
    pub if_not_exists: bool,
    pub descriptors: Descriptors,
    pub items: Vec<ServiceItem>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FeatureViewChange {
    Ttl(Option<Box<Expr>>),
    Online(bool),
    Streaming(bool),
    Owner(Option<String>),
    Tags(Option<String>),
    Description(Option<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlterFeatureView {
    pub name: ObjectRef,
    pub changes: Vec<FeatureViewChange>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropRegistryObjects {
    pub kind: RegistryKind,
    pub names: Vec<ObjectRef>,
    pub if_exists: bool,
    pub cascade: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShowRegistry {
    List(RegistryKind),
    Create {
        kind: RegistryKind,
        name: ObjectRef,
        version: Option<u32>,
    },
}

impl FeatureStatement {
    pub fn command_tag(&self) -> &'static str {
        match self {
            FeatureStatement::CreateEntity(_) => "CREATE ENTITY",
            FeatureStatement::CreateFeatureView(_) => "CREATE FEATURE VIEW",
            FeatureStatement::CreateFeatureService(_) => "CREATE FEATURE SERVICE",
            FeatureStatement::AlterFeatureView(_) => "ALTER FEATURE VIEW",
            FeatureStatement::Drop(drop) => match drop.kind {
                RegistryKind::Entity => "DROP ENTITY",
                RegistryKind::FeatureView => "DROP FEATURE VIEW",
                RegistryKind::FeatureService => "DROP FEATURE SERVICE",
            },
            FeatureStatement::Show(_) => "SHOW",
            FeatureStatement::Refresh(_) => "REFRESH FEATURE VIEW",
        }
    }
}

// ---------------------------------------------------------------- parsing

fn word_is(parser: &Parser, offset: usize, word: &str) -> bool {
    match &parser.peek_nth_token(offset).token {
        Token::Word(w) => w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word),
        _ => false,
    }
}

fn parse_word(parser: &mut Parser, word: &str) -> bool {
    if word_is(parser, 0, word) {
        parser.next_token();
        true
    } else {
        false
    }
}

fn expect_word(parser: &mut Parser, word: &str) -> Result<(), ParserError> {
    if parse_word(parser, word) {
        Ok(())
    } else {
        let found = parser.peek_token();
        Err(ParserError::ParserError(format!(
            "Expected: {word}, found: {} at Line: {}, Column: {}",
            found.token, found.span.start.line, found.span.start.column
        )))
    }
}

/// Whether `parser` is at the start of a registry statement.
pub(crate) fn is_feature_statement(parser: &Parser) -> bool {
    if word_is(parser, 0, "create") {
        let i = if word_is(parser, 1, "or") && word_is(parser, 2, "replace") {
            3
        } else {
            1
        };
        return word_is(parser, i, "entity")
            || (word_is(parser, i, "feature")
                && (word_is(parser, i + 1, "view") || word_is(parser, i + 1, "service")));
    }
    if word_is(parser, 0, "drop") {
        return word_is(parser, 1, "entity")
            || (word_is(parser, 1, "feature")
                && (word_is(parser, 2, "view") || word_is(parser, 2, "service")));
    }
    if word_is(parser, 0, "alter") || word_is(parser, 0, "refresh") {
        return word_is(parser, 1, "feature") && word_is(parser, 2, "view");
    }
    if word_is(parser, 0, "show") {
        if word_is(parser, 1, "create") {
            let i = 2;
            return word_is(parser, i, "entity")
                || (word_is(parser, i, "feature")
                    && (word_is(parser, i + 1, "view") || word_is(parser, i + 1, "service")));
        }
        return word_is(parser, 1, "entities")
            || (word_is(parser, 1, "feature")
                && (word_is(parser, 2, "views") || word_is(parser, 2, "services")));
    }
    false
}

/// Parses a registry statement; `is_feature_statement` must have said yes.
pub(crate) fn parse_feature_statement(parser: &mut Parser) -> Result<FeatureStatement, ParseError> {
    if parse_word(parser, "create") {
        let or_replace = parser.parse_keywords(&[Keyword::OR, Keyword::REPLACE]);
        if parse_word(parser, "entity") {
            if or_replace {
                return Err(ParseError::unsupported(
                    "CREATE OR REPLACE ENTITY is not supported: drop and create it",
                ));
            }
            parse_create_entity(parser)
        } else {
            expect_word(parser, "feature").map_err(ParseError::from_raw)?;
            if parse_word(parser, "view") {
                parse_create_feature_view(parser, or_replace)
            } else {
                expect_word(parser, "service").map_err(ParseError::from_raw)?;
                parse_create_feature_service(parser, or_replace)
            }
        }
    } else if parse_word(parser, "drop") {
        parse_drop(parser)
    } else if parse_word(parser, "alter") {
        parse_alter(parser)
    } else if parse_word(parser, "refresh") {
        parse_refresh(parser)
    } else {
        expect_word(parser, "show").map_err(ParseError::from_raw)?;
        parse_show(parser)
    }
}

fn parse_if_not_exists(parser: &mut Parser) -> bool {
    parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS])
}

/// An object name, with a pinned version split off (`"fv@v2"`).
fn parse_name(parser: &mut Parser) -> Result<(ObjectRef, Option<u32>), ParseError> {
    let name: ObjectName = parser
        .parse_object_name(false)
        .map_err(ParseError::from_raw)?;
    let mut object = object_ref(&name)?;
    let (base, version) = split_version(&object.name);
    let base = base.to_string();
    object.name = base;
    Ok((object, version))
}

fn parse_unversioned_name(parser: &mut Parser) -> Result<ObjectRef, ParseError> {
    let (name, version) = parse_name(parser)?;
    if version.is_some() {
        return Err(ParseError::syntax(format!(
            "a version cannot be given here: {name}"
        )));
    }
    Ok(name)
}

fn parse_create_entity(parser: &mut Parser) -> Result<FeatureStatement, ParseError> {
    let if_not_exists = parse_if_not_exists(parser);
    let name = parse_unversioned_name(parser)?;
    parser
        .expect_token(&Token::LParen)
        .map_err(ParseError::from_raw)?;
    let mut keys = Vec::new();
    loop {
        let column = normalize_ident(&parser.parse_identifier().map_err(ParseError::from_raw)?);
        let data_type = parser.parse_data_type().map_err(ParseError::from_raw)?;
        let data_type = column_type(&data_type)?;
        if !data_type.is_scalar() {
            return Err(ParseError::invalid_parameter(format!(
                "entity key \"{column}\" cannot be an array"
            )));
        }
        if keys.iter().any(|(k, _)| *k == column) {
            return Err(ParseError::new(
                ParseErrorKind::DuplicateColumn,
                format!("key column \"{column}\" specified more than once"),
            ));
        }
        keys.push((column, data_type));
        if !parser.consume_token(&Token::Comma) {
            break;
        }
    }
    parser
        .expect_token(&Token::RParen)
        .map_err(ParseError::from_raw)?;
    let comment = if parser.parse_keyword(Keyword::COMMENT) {
        let _ = parser.consume_token(&Token::Eq);
        Some(
            parser
                .parse_literal_string()
                .map_err(ParseError::from_raw)?,
        )
    } else {
        None
    };
    Ok(FeatureStatement::CreateEntity(CreateEntity {
        name,
        if_not_exists,
        keys,
        comment,
    }))
}

fn parse_identifier_list(parser: &mut Parser) -> Result<Vec<String>, ParseError> {
    parser
        .expect_token(&Token::LParen)
        .map_err(ParseError::from_raw)?;
    let mut names = Vec::new();
    loop {
        names.push(normalize_ident(
            &parser.parse_identifier().map_err(ParseError::from_raw)?,
        ));
        if !parser.consume_token(&Token::Comma) {
            break;
        }
    }
    parser
        .expect_token(&Token::RParen)
        .map_err(ParseError::from_raw)?;
    Ok(names)
}

/// `(name = 'value' | NULL, …)` with the given keys allowed.
fn parse_options(parser: &mut Parser, allowed: &[&str]) -> Result<Vec<(String, Expr)>, ParseError> {
    parser
        .expect_token(&Token::LParen)
        .map_err(ParseError::from_raw)?;
    let mut options: Vec<(String, Expr)> = Vec::new();
    loop {
        let key = normalize_ident(&parser.parse_identifier().map_err(ParseError::from_raw)?);
        if !allowed.contains(&key.as_str()) {
            return Err(ParseError::invalid_parameter(format!(
                "unrecognized option \"{key}\" (expected one of: {})",
                allowed.join(", ")
            )));
        }
        if options.iter().any(|(k, _)| *k == key) {
            return Err(ParseError::syntax(format!(
                "option \"{key}\" specified more than once"
            )));
        }
        parser
            .expect_token(&Token::Eq)
            .map_err(ParseError::from_raw)?;
        let value = parser.parse_expr().map_err(ParseError::from_raw)?;
        options.push((key, value));
        if !parser.consume_token(&Token::Comma) {
            break;
        }
    }
    parser
        .expect_token(&Token::RParen)
        .map_err(ParseError::from_raw)?;
    Ok(options)
}

fn string_option(key: &str, value: &Expr) -> Result<Option<String>, ParseError> {
    match value {
        Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s)
            | ast::Value::DollarQuotedString(ast::DollarQuotedString { value: s, .. }) => {
                Ok(Some(s.clone()))
            }
            ast::Value::Null => Ok(None),
            _ => Err(ParseError::invalid_parameter(format!(
                "option \"{key}\" takes a string"
            ))),
        },
        _ => Err(ParseError::invalid_parameter(format!(
            "option \"{key}\" takes a string"
        ))),
    }
}

fn bool_option(key: &str, value: &Expr) -> Result<bool, ParseError> {
    match value {
        Expr::Value(v) => match &v.value {
            ast::Value::Boolean(b) => Ok(*b),
            ast::Value::SingleQuotedString(s)
                if matches!(s.to_lowercase().as_str(), "true" | "on") =>
            {
                Ok(true)
            }
            ast::Value::SingleQuotedString(s)
                if matches!(s.to_lowercase().as_str(), "false" | "off") =>
            {
                Ok(false)
            }
            _ => Err(ParseError::invalid_parameter(format!(
                "option \"{key}\" takes true or false"
            ))),
        },
        Expr::Identifier(ident) if matches!(ident.value.to_lowercase().as_str(), "on" | "off") => {
            Ok(ident.value.eq_ignore_ascii_case("on"))
        }
        _ => Err(ParseError::invalid_parameter(format!(
            "option \"{key}\" takes true or false"
        ))),
    }
}

fn ttl_value(value: Expr) -> Result<Option<Expr>, ParseError> {
    match &value {
        Expr::Value(v) if v.value == ast::Value::Null => Ok(None),
        Expr::Interval(_) => Ok(Some(value)),
        Expr::Value(v) if matches!(v.value, ast::Value::SingleQuotedString(_)) => {
            let text = match &v.value {
                ast::Value::SingleQuotedString(s) => s.clone(),
                _ => unreachable!(),
            };
            Ok(Some(Expr::Interval(ast::Interval {
                value: Box::new(Expr::value(ast::Value::SingleQuotedString(text))),
                leading_field: None,
                leading_precision: None,
                last_field: None,
                fractional_seconds_precision: None,
            })))
        }
        other => Err(ParseError::invalid_parameter(format!(
            "TTL must be an interval such as INTERVAL '30 days', not {other}"
        ))),
    }
}

fn descriptors(options: Vec<(String, Expr)>) -> Result<Descriptors, ParseError> {
    let mut descriptors = Descriptors::default();
    for (key, value) in options {
        let text = string_option(&key, &value)?;
        match key.as_str() {
            "owner" => descriptors.owner = text,
            "tags" => descriptors.tags = text,
            "description" => descriptors.description = text,
            _ => unreachable!("checked by parse_options"),
        }
    }
    Ok(descriptors)
}

/// `[IF NOT EXISTS] name` after `CREATE [OR REPLACE] FEATURE …`.
fn parse_create_head(
    parser: &mut Parser,
    or_replace: bool,
) -> Result<(bool, ObjectRef), ParseError> {
    let if_not_exists = parse_if_not_exists(parser);
    if or_replace && if_not_exists {
        return Err(ParseError::syntax(
            "OR REPLACE and IF NOT EXISTS cannot be combined",
        ));
    }
    Ok((if_not_exists, parse_unversioned_name(parser)?))
}

fn parse_create_feature_view(
    parser: &mut Parser,
    or_replace: bool,
) -> Result<FeatureStatement, ParseError> {
    let (if_not_exists, name) = parse_create_head(parser, or_replace)?;
    let mut key = None;
    let mut timestamp = None;
    let mut ttl: Option<Option<Expr>> = None;
    let mut online = None;
    let mut streaming = false;
    let mut with = None;
    let duplicate = |clause: &str| ParseError::syntax(format!("{clause} specified more than once"));
    loop {
        if parse_word(parser, "entity") {
            if key.is_some() {
                return Err(duplicate("ENTITY/KEY"));
            }
            key = Some(FeatureKey::Entity(parse_unversioned_name(parser)?));
        } else if parser.parse_keyword(Keyword::KEY) {
            if key.is_some() {
                return Err(duplicate("ENTITY/KEY"));
            }
            key = Some(FeatureKey::Columns(parse_identifier_list(parser)?));
        } else if parser.parse_keyword(Keyword::TIMESTAMP) {
            if timestamp.is_some() {
                return Err(duplicate("TIMESTAMP"));
            }
            timestamp = Some(normalize_ident(
                &parser.parse_identifier().map_err(ParseError::from_raw)?,
            ));
        } else if parse_word(parser, "ttl") {
            if ttl.is_some() {
                return Err(duplicate("TTL"));
            }
            ttl = Some(ttl_value(
                parser.parse_expr().map_err(ParseError::from_raw)?,
            )?);
        } else if word_is(parser, 0, "online") || word_is(parser, 0, "offline") {
            if online.is_some() {
                return Err(duplicate("ONLINE/OFFLINE"));
            }
            online = Some(word_is(parser, 0, "online"));
            parser.next_token();
            if online == Some(true) && parse_word(parser, "streaming") {
                streaming = true;
            }
        } else if word_is(parser, 0, "streaming") {
            return Err(ParseError::syntax(
                "STREAMING follows ONLINE: a streaming view is kept online (ONLINE STREAMING)",
            ));
        } else if parser.parse_keyword(Keyword::WITH) {
            if with.is_some() {
                return Err(duplicate("WITH"));
            }
            with = Some(descriptors(parse_options(
                parser,
                &["owner", "tags", "description"],
            )?)?);
        } else {
            break;
        }
    }
    parser
        .expect_keyword_is(Keyword::AS)
        .map_err(ParseError::from_raw)?;
    let query = parser.parse_query().map_err(ParseError::from_raw)?;
    let key =
        key.ok_or_else(|| ParseError::syntax("a feature view needs ENTITY name or KEY (columns)"))?;
    let timestamp =
        timestamp.ok_or_else(|| ParseError::syntax("a feature view needs TIMESTAMP column"))?;
    Ok(FeatureStatement::CreateFeatureView(Box::new(
        CreateFeatureView {
            name,
            or_replace,
            if_not_exists,
            key,
            timestamp,
            ttl: ttl.flatten(),
            online: online.unwrap_or(false),
            streaming,
            descriptors: with.unwrap_or_default(),
            query,
        },
    )))
}

fn parse_service_item(parser: &mut Parser) -> Result<ServiceItem, ParseError> {
    // Dotted parts, possibly ending in `*`.
    let mut parts = vec![normalize_ident(
        &parser.parse_identifier().map_err(ParseError::from_raw)?,
    )];
    let mut star = false;
    while parser.consume_token(&Token::Period) {
        if parser.consume_token(&Token::Mul) {
            star = true;
            break;
        }
        parts.push(normalize_ident(
            &parser.parse_identifier().map_err(ParseError::from_raw)?,
        ));
    }
    let view_of = |parts: &[String]| -> Result<(ObjectRef, Option<u32>), ParseError> {
        let (name, version) = split_version(parts.last().expect("at least one part"));
        let (name, version) = (name.to_string(), version);
        let view = match parts.len() {
            1 => ObjectRef { schema: None, name },
            2 => ObjectRef {
                schema: Some(parts[0].clone()),
                name,
            },
            _ => {
                return Err(ParseError::new(
                    ParseErrorKind::InvalidName,
                    format!("improper feature reference: {}", parts.join(".")),
                ));
            }
        };
        Ok((view, version))
    };
    if star {
        let (view, version) = view_of(&parts)?;
        return Ok(ServiceItem {
            view,
            version,
            features: ServiceFeatures::All,
        });
    }
    if parser.peek_token().token == Token::LParen {
        let (view, version) = view_of(&parts)?;
        parser
            .expect_token(&Token::LParen)
            .map_err(ParseError::from_raw)?;
        let features = if parser.consume_token(&Token::Mul) {
            ServiceFeatures::All
        } else {
            let mut listed = Vec::new();
            loop {
                let feature =
                    normalize_ident(&parser.parse_identifier().map_err(ParseError::from_raw)?);
                let alias = if parser.parse_keyword(Keyword::AS) {
                    Some(normalize_ident(
                        &parser.parse_identifier().map_err(ParseError::from_raw)?,
                    ))
                } else {
                    None
                };
                listed.push((feature, alias));
                if !parser.consume_token(&Token::Comma) {
                    break;
                }
            }
            ServiceFeatures::Listed(listed)
        };
        parser
            .expect_token(&Token::RParen)
            .map_err(ParseError::from_raw)?;
        return Ok(ServiceItem {
            view,
            version,
            features,
        });
    }
    if parts.len() < 2 {
        return Err(ParseError::syntax(format!(
            "expected view.feature, view.* or view (features), found {}",
            parts.join(".")
        )));
    }
    let feature = parts.pop().expect("two parts");
    let (view, version) = view_of(&parts)?;
    let alias = if parser.parse_keyword(Keyword::AS) {
        Some(normalize_ident(
            &parser.parse_identifier().map_err(ParseError::from_raw)?,
        ))
    } else {
        None
    };
    Ok(ServiceItem {
        view,
        version,
        features: ServiceFeatures::Listed(vec![(feature, alias)]),
    })
}

fn parse_create_feature_service(
    parser: &mut Parser,
    or_replace: bool,
) -> Result<FeatureStatement, ParseError> {
    let (if_not_exists, name) = parse_create_head(parser, or_replace)?;
    let descriptors = if parser.parse_keyword(Keyword::WITH) {
        descriptors(parse_options(parser, &["owner", "tags", "description"])?)?
    } else {
        Descriptors::default()
    };
    parser
        .expect_keyword_is(Keyword::AS)
        .map_err(ParseError::from_raw)?;
    let parenthesized = parser.consume_token(&Token::LParen);
    let mut items = Vec::new();
    loop {
        items.push(parse_service_item(parser)?);
        if !parser.consume_token(&Token::Comma) {
            break;
        }
    }
    if parenthesized {
        parser
            .expect_token(&Token::RParen)
            .map_err(ParseError::from_raw)?;
    }
    Ok(FeatureStatement::CreateFeatureService(
        CreateFeatureService {
            name,
            or_replace,
            if_not_exists,
            descriptors,
            items,
        },
    ))
}

fn parse_kind(parser: &mut Parser, plural: bool) -> Result<RegistryKind, ParseError> {
    let (entity, view, service) = if plural {
        ("entities", "views", "services")
    } else {
        ("entity", "view", "service")
    };
    if parse_word(parser, entity) {
        return Ok(RegistryKind::Entity);
    }
    expect_word(parser, "feature").map_err(ParseError::from_raw)?;
    if parse_word(parser, view) {
        Ok(RegistryKind::FeatureView)
    } else {
        expect_word(parser, service).map_err(ParseError::from_raw)?;
        Ok(RegistryKind::FeatureService)
    }
}

fn parse_drop(parser: &mut Parser) -> Result<FeatureStatement, ParseError> {
    let kind = parse_kind(parser, false)?;
    let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let mut names = Vec::new();
    loop {
        names.push(parse_unversioned_name(parser)?);
        if !parser.consume_token(&Token::Comma) {
            break;
        }
    }
    let cascade = parser.parse_keyword(Keyword::CASCADE);
    if !cascade {
        let _ = parser.parse_keyword(Keyword::RESTRICT);
    }
    Ok(FeatureStatement::Drop(DropRegistryObjects {
        kind,
        names,
        if_exists,
        cascade,
    }))
}

fn parse_refresh(parser: &mut Parser) -> Result<FeatureStatement, ParseError> {
    expect_word(parser, "feature").map_err(ParseError::from_raw)?;
    expect_word(parser, "view").map_err(ParseError::from_raw)?;
    let mut names = Vec::new();
    loop {
        names.push(parse_unversioned_name(parser)?);
        if !parser.consume_token(&Token::Comma) {
            break;
        }
    }
    let full = parse_word(parser, "full");
    Ok(FeatureStatement::Refresh(RefreshFeatureViews {
        names,
        full,
    }))
}

fn parse_alter(parser: &mut Parser) -> Result<FeatureStatement, ParseError> {
    expect_word(parser, "feature").map_err(ParseError::from_raw)?;
    expect_word(parser, "view").map_err(ParseError::from_raw)?;
    let name = parse_unversioned_name(parser)?;
    parser
        .expect_keyword_is(Keyword::SET)
        .map_err(ParseError::from_raw)?;
    let options = parse_options(
        parser,
        &["ttl", "online", "streaming", "owner", "tags", "description"],
    )?;
    let changes = options
        .into_iter()
        .map(|(key, value)| {
            Ok(match key.as_str() {
                "ttl" => FeatureViewChange::Ttl(ttl_value(value)?.map(Box::new)),
                "online" => FeatureViewChange::Online(bool_option(&key, &value)?),
                "streaming" => FeatureViewChange::Streaming(bool_option(&key, &value)?),
                "owner" => FeatureViewChange::Owner(string_option(&key, &value)?),
                "tags" => FeatureViewChange::Tags(string_option(&key, &value)?),
                "description" => FeatureViewChange::Description(string_option(&key, &value)?),
                _ => unreachable!("checked by parse_options"),
            })
        })
        .collect::<Result<Vec<_>, ParseError>>()?;
    Ok(FeatureStatement::AlterFeatureView(AlterFeatureView {
        name,
        changes,
    }))
}

fn parse_show(parser: &mut Parser) -> Result<FeatureStatement, ParseError> {
    if parse_word(parser, "create") {
        let kind = parse_kind(parser, false)?;
        let (name, mut version) = parse_name(parser)?;
        if version.is_none() && parse_word(parser, "version") {
            version = Some(parser.parse_literal_uint().map_err(ParseError::from_raw)? as u32);
        }
        return Ok(FeatureStatement::Show(ShowRegistry::Create {
            kind,
            name,
            version,
        }));
    }
    Ok(FeatureStatement::Show(ShowRegistry::List(parse_kind(
        parser, true,
    )?)))
}

// ---------------------------------------------------------------- printing

fn name_sql(name: &ObjectRef) -> String {
    match &name.schema {
        Some(schema) => format!("{}.{}", quote_ident(schema), quote_ident(&name.name)),
        None => quote_ident(&name.name),
    }
}

fn string_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

impl fmt::Display for Descriptors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [
            ("owner", &self.owner),
            ("tags", &self.tags),
            ("description", &self.description),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} = {}", string_literal(v))))
        .collect();
        if !parts.is_empty() {
            write!(f, " WITH ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

impl fmt::Display for CreateEntity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CREATE ENTITY ")?;
        if self.if_not_exists {
            write!(f, "IF NOT EXISTS ")?;
        }
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|(name, ty)| format!("{} {}", quote_ident(name), ty.to_string().to_uppercase()))
            .collect();
        write!(f, "{} ({})", name_sql(&self.name), keys.join(", "))?;
        if let Some(comment) = &self.comment {
            write!(f, " COMMENT {}", string_literal(comment))?;
        }
        Ok(())
    }
}

impl fmt::Display for CreateFeatureView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CREATE ")?;
        if self.or_replace {
            write!(f, "OR REPLACE ")?;
        }
        write!(f, "FEATURE VIEW ")?;
        if self.if_not_exists {
            write!(f, "IF NOT EXISTS ")?;
        }
        write!(f, "{}", name_sql(&self.name))?;
        match &self.key {
            FeatureKey::Entity(entity) => write!(f, " ENTITY {}", name_sql(entity))?,
            FeatureKey::Columns(columns) => write!(
                f,
                " KEY ({})",
                columns
                    .iter()
                    .map(|c| quote_ident(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            )?,
        }
        write!(f, " TIMESTAMP {}", quote_ident(&self.timestamp))?;
        if let Some(ttl) = &self.ttl {
            write!(f, " TTL {ttl}")?;
        }
        write!(f, " {}", if self.online { "ONLINE" } else { "OFFLINE" })?;
        if self.streaming {
            write!(f, " STREAMING")?;
        }
        write!(f, "{} AS {}", self.descriptors, self.query)
    }
}

impl fmt::Display for ServiceItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", name_sql(&self.view))?;
        if let Some(version) = self.version {
            write!(f, " VERSION {version}")?;
        }
        match &self.features {
            ServiceFeatures::All => write!(f, " (*)"),
            ServiceFeatures::Listed(features) => {
                let listed: Vec<String> = features
                    .iter()
                    .map(|(feature, alias)| match alias {
                        Some(alias) => {
                            format!("{} AS {}", quote_ident(feature), quote_ident(alias))
                        }
                        None => quote_ident(feature),
                    })
                    .collect();
                write!(f, " ({})", listed.join(", "))
            }
        }
    }
}

impl fmt::Display for CreateFeatureService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CREATE ")?;
        if self.or_replace {
            write!(f, "OR REPLACE ")?;
        }
        write!(f, "FEATURE SERVICE ")?;
        if self.if_not_exists {
            write!(f, "IF NOT EXISTS ")?;
        }
        let items: Vec<String> = self.items.iter().map(ToString::to_string).collect();
        write!(
            f,
            "{}{} AS {}",
            name_sql(&self.name),
            self.descriptors,
            items.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_statement;
    use crate::statement::Statement;

    fn feature(sql: &str) -> FeatureStatement {
        match parse_statement(sql).unwrap() {
            Statement::Feature(f) => f,
            other => panic!("not a feature statement: {other:?}"),
        }
    }

    fn round_trip(sql: &str) -> String {
        let printed = match feature(sql) {
            FeatureStatement::CreateEntity(e) => e.to_string(),
            FeatureStatement::CreateFeatureView(v) => v.to_string(),
            FeatureStatement::CreateFeatureService(s) => s.to_string(),
            other => panic!("{other:?}"),
        };
        assert_eq!(feature(&printed), feature(sql), "round trip of {printed}");
        printed
    }

    #[test]
    fn entities() {
        assert_eq!(
            round_trip(
                "create entity Customer (customer_id bigint, region text) comment 'who pays'"
            ),
            "CREATE ENTITY customer (customer_id BIGINT, region TEXT) COMMENT 'who pays'"
        );
        assert!(parse_statement("CREATE ENTITY e (a int, a int)").is_err());
        assert!(parse_statement("CREATE ENTITY e ()").is_err());
    }

    #[test]
    fn feature_views() {
        let printed = round_trip(
            "CREATE OR REPLACE FEATURE VIEW customer_spend ENTITY customer TIMESTAMP ts \
             TTL INTERVAL '30 days' ONLINE WITH (owner = 'risk', tags = 'a,b') \
             AS SELECT customer_id, ts, amount, amount > 100 AS big FROM transactions",
        );
        assert!(printed.starts_with("CREATE OR REPLACE FEATURE VIEW customer_spend ENTITY customer TIMESTAMP ts TTL INTERVAL '30 days' ONLINE WITH (owner = 'risk', tags = 'a,b') AS SELECT"));
        // Clauses in any order; KEY instead of ENTITY.
        match feature("CREATE FEATURE VIEW v TIMESTAMP t KEY (a, b) OFFLINE AS SELECT 1") {
            FeatureStatement::CreateFeatureView(v) => {
                assert_eq!(v.key, FeatureKey::Columns(vec!["a".into(), "b".into()]));
                assert!(!v.online);
                assert_eq!(v.ttl, None);
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            "CREATE FEATURE VIEW v TIMESTAMP t AS SELECT 1",
            "CREATE FEATURE VIEW v KEY (a) AS SELECT 1",
            "CREATE FEATURE VIEW v KEY (a) TIMESTAMP t TIMESTAMP u AS SELECT 1",
            "CREATE FEATURE VIEW v KEY (a) TIMESTAMP t TTL 5 AS SELECT 1",
            "CREATE FEATURE VIEW v KEY (a) TIMESTAMP t WITH (colour = 'red') AS SELECT 1",
            "CREATE FEATURE VIEW v KEY (a) TIMESTAMP t",
        ] {
            assert!(parse_statement(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn services() {
        let printed = round_trip(
            "CREATE FEATURE SERVICE fraud AS customer_spend.amount, customer_spend.big AS is_big, \
             profile.*, history VERSION 2 (a, b AS bee)",
        );
        assert_eq!(
            printed,
            "CREATE FEATURE SERVICE fraud AS customer_spend (amount), customer_spend (big AS is_big), profile (*), history VERSION 2 (a, b AS bee)"
        );
        assert!(parse_statement("CREATE FEATURE SERVICE s AS justaname").is_err());
    }

    #[test]
    fn errors_point_at_the_offending_token() {
        let position = |sql: &str| parse_statement(sql).unwrap_err().position;
        // 1-based character positions, as PostgreSQL reports them.
        assert_eq!(
            position("CREATE FEATURE VIEW v KEY (a) TIMESTAMP t OFFLINE AS SELECT 1 2"),
            Some(63)
        );
        assert_eq!(
            position("CREATE FEATURE VIEW v KEY a TIMESTAMP t AS SELECT 1"),
            Some(27)
        );
        assert_eq!(
            position("CREATE ENTITY customer (id bigint) WHATEVER"),
            Some(36)
        );
        // After a multi-byte character, positions count characters.
        assert_eq!(
            position("CREATE ENTITY \"é\" (id bigint) WHATEVER"),
            Some(31)
        );
    }

    #[test]
    fn streaming_views() {
        let sql =
            "CREATE FEATURE VIEW v KEY (id) TIMESTAMP ts ONLINE STREAMING AS SELECT id, ts FROM t";
        match feature(sql) {
            FeatureStatement::CreateFeatureView(v) => {
                assert!(v.online && v.streaming);
                assert!(v.to_string().contains(" ONLINE STREAMING AS SELECT"));
            }
            other => panic!("{other:?}"),
        }
        match feature("CREATE FEATURE VIEW v KEY (id) TIMESTAMP ts ONLINE AS SELECT id, ts FROM t")
        {
            FeatureStatement::CreateFeatureView(v) => assert!(!v.streaming),
            other => panic!("{other:?}"),
        }
        let refused = parse_statement(
            "CREATE FEATURE VIEW v KEY (id) TIMESTAMP ts STREAMING AS SELECT id, ts FROM t",
        )
        .unwrap_err();
        assert!(
            refused.to_string().contains("STREAMING follows ONLINE"),
            "{refused}"
        );
        round_trip(sql);
        match feature("ALTER FEATURE VIEW v SET (streaming = false)") {
            FeatureStatement::AlterFeatureView(a) => {
                assert_eq!(a.changes, vec![FeatureViewChange::Streaming(false)])
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn alter_drop_show() {
        match feature(
            "ALTER FEATURE VIEW v SET (ttl = INTERVAL '1 day', online = true, owner = NULL)",
        ) {
            FeatureStatement::AlterFeatureView(a) => assert_eq!(a.changes.len(), 3),
            other => panic!("{other:?}"),
        }
        match feature("DROP FEATURE VIEW IF EXISTS a, s.b CASCADE") {
            FeatureStatement::Drop(d) => {
                assert_eq!(d.kind, RegistryKind::FeatureView);
                assert!(d.if_exists && d.cascade);
                assert_eq!(d.names.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            feature("SHOW FEATURE VIEWS"),
            FeatureStatement::Show(ShowRegistry::List(RegistryKind::FeatureView))
        );
        assert_eq!(
            feature("SHOW CREATE FEATURE VIEW spend VERSION 2"),
            FeatureStatement::Show(ShowRegistry::Create {
                kind: RegistryKind::FeatureView,
                name: ObjectRef {
                    schema: None,
                    name: "spend".into()
                },
                version: Some(2)
            })
        );
        assert_eq!(
            feature("SHOW ENTITIES"),
            FeatureStatement::Show(ShowRegistry::List(RegistryKind::Entity))
        );
    }
}
