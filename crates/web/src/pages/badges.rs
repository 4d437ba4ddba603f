//! Badges for READMEs: a package's latest version and its adds over the last 30 days, as
//! SVG images (`/package/NAME/badge/version.svg`, `adds.svg`) and as shields.io endpoint
//! JSON (`version.json`, `adds.json`, `{"schemaVersion":1,"label":…,"message":…,
//! "color":…}`). A package the catalog does not hold gets a grey "not found" badge with a
//! `404`.

use askama::Template;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::page::{Shown, Site, path, render, text};
use crate::reply::ApiError;
use crate::usage::UsageRange;

/// The label's background, and each message's.
const LABEL_COLOR: &str = "555555";
const VERSION_COLOR: &str = "0366d6";
const ADDS_COLOR: &str = "2e7d32";
const MISSING_COLOR: &str = "6a737d";

/// Space on either side of a badge's texts, in pixels.
const PADDING: u32 = 6;

/// What a badge shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The latest version.
    Version,
    /// Adds over the last 30 days.
    Adds,
}

/// How it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Svg,
    Json,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Version => "version",
            Kind::Adds => "adds/30 days",
        }
    }
}

/// The badge a file name asks for: `version.svg`, `adds.json`, …
fn badge_of(file: &str) -> Option<(Kind, Format)> {
    let (kind, format) = file.split_once('.')?;
    let kind = match kind {
        "version" => Kind::Version,
        "adds" => Kind::Adds,
        _ => return None,
    };
    let format = match format {
        "svg" => Format::Svg,
        "json" => Format::Json,
        _ => return None,
    };
    Some((kind, format))
}

/// `badge.svg`: a two-part badge in the usual shape.
#[derive(Template)]
#[template(path = "badge.svg")]
struct Badge {
    label: String,
    message: String,
    color: &'static str,
    label_color: &'static str,
    label_width: u32,
    width: u32,
    label_x: u32,
    message_x: u32,
}

impl Badge {
    fn new(label: &str, message: &str, color: &'static str) -> Badge {
        let label_width = text_width(label) + 2 * PADDING;
        let message_width = text_width(message) + 2 * PADDING;
        Badge {
            label: label.to_owned(),
            message: message.to_owned(),
            color,
            label_color: LABEL_COLOR,
            label_width,
            width: label_width + message_width,
            label_x: label_width / 2,
            message_x: label_width + message_width / 2,
        }
    }
}

/// The body of a badge in `format`.
fn body(
    format: Format,
    label: &str,
    message: &str,
    color: &'static str,
) -> Result<String, ApiError> {
    match format {
        Format::Svg => render(&Badge::new(label, message, color)),
        Format::Json => Ok(json!({
            "schemaVersion": 1,
            "label": label,
            "message": message,
            "color": color,
            "isError": color == MISSING_COLOR,
        })
        .to_string()),
    }
}

fn content_type(format: Format) -> &'static str {
    match format {
        Format::Svg => "image/svg+xml; charset=utf-8",
        Format::Json => "application/json",
    }
}

/// `GET /package/{name}/badge/{file}`.
pub async fn badge(
    State(site): State<Site>,
    asked: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let asked = path(asked).and_then(|(name, file)| {
        let (kind, format) = badge_of(&file).ok_or_else(|| {
            ApiError::not_found(
                "not_found",
                format!(
                    "there is no badge {file:?}: badges are version.svg, adds.svg, \
                     version.json and adds.json"
                ),
            )
        })?;
        Ok((name, kind, format))
    });
    let (name, kind, format) = match asked {
        Ok(asked) => asked,
        Err(error) => return site.error_page(&error),
    };
    let (adds, salt) = match kind {
        Kind::Version => (None, 0),
        Kind::Adds => match site.usage(&name, UsageRange::Days30).await {
            Ok((shown, salt)) => (Some(shown), salt),
            Err(error) => return site.error_page(&error),
        },
    };
    let asked = site
        .text(Ok(name), (&headers, &uri), salt, move |index, name| {
            let found = index.summaries(&[&name])?.into_iter().next();
            let Some(hit) = found else {
                return Err(ApiError::not_found(
                    "package_not_found",
                    format!("there is no package {name:?}"),
                ));
            };
            let (message, color) = match adds {
                None => (hit.version, VERSION_COLOR),
                Some(Shown::Numbers(usage)) => {
                    let total: u64 = usage.periods.iter().map(|period| period.adds.total).sum();
                    (compact(total), ADDS_COLOR)
                }
                Some(Shown::Off | Shown::Failed) => ("unknown".to_owned(), MISSING_COLOR),
            };
            body(format, kind.label(), &message, color)
        })
        .await;
    match asked {
        Ok(answer) => text(answer, content_type(format)),
        Err(error) if error.status == StatusCode::NOT_FOUND => {
            match body(format, kind.label(), "not found", MISSING_COLOR) {
                Ok(missing) => {
                    let mut response = (
                        [(axum::http::header::CONTENT_TYPE, content_type(format))],
                        missing,
                    )
                        .into_response();
                    response = error.mark(response);
                    response
                }
                Err(error) => site.error_page(&error),
            }
        }
        Err(error) => site.error_page(&error),
    }
}

/// A count as badges show it: `950`, `1.2k`, `34k`, `5.6M`.
fn compact(count: u64) -> String {
    let scaled = |value: u64, unit: u64, suffix: &str| {
        let tenths = value / (unit / 10);
        if tenths < 100 && !tenths.is_multiple_of(10) {
            format!("{}.{}{suffix}", tenths / 10, tenths % 10)
        } else {
            format!("{}{suffix}", tenths / 10)
        }
    };
    match count {
        0..1_000 => count.to_string(),
        1_000..1_000_000 => scaled(count, 1_000, "k"),
        _ => scaled(count, 1_000_000, "M"),
    }
}

/// About how wide `text` is in 11px Verdana, the badges' font: close enough for the
/// texts to fit their boxes.
fn text_width(text: &str) -> u32 {
    text.chars()
        .map(|c| match c {
            'i' | 'l' | 'j' | '.' | ',' | ':' | ';' | '\'' | '|' | '!' | 'I' | ' ' => 4,
            'f' | 'r' | 't' | '(' | ')' | '[' | ']' | '/' | '-' => 5,
            'm' | 'w' | 'M' | 'W' => 10,
            c if c.is_ascii_uppercase() => 8,
            _ => 7,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn badges_are_named_by_file() {
        assert_eq!(badge_of("version.svg"), Some((Kind::Version, Format::Svg)));
        assert_eq!(badge_of("adds.json"), Some((Kind::Adds, Format::Json)));
        assert_eq!(badge_of("adds.png"), None);
        assert_eq!(badge_of("downloads.svg"), None);
    }

    #[test]
    fn counts_read_short() {
        assert_eq!(compact(950), "950");
        assert_eq!(compact(1_250), "1.2k");
        assert_eq!(compact(34_000), "34k");
        assert_eq!(compact(5_600_000), "5.6M");
        assert_eq!(compact(u64::MAX / 20), "922337203685M");
    }

    #[test]
    fn a_badge_fits_its_texts_and_escapes_them() {
        let svg = body(Format::Svg, "version", "1.0.0<&>", VERSION_COLOR).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("1.0.0&#60;&#38;&#62;"), "{svg}");
        assert!(!svg.contains("style"), "{svg}");
        let badge = Badge::new("version", "1.0.0", VERSION_COLOR);
        assert_eq!(
            badge.width,
            text_width("version") + text_width("1.0.0") + 4 * PADDING
        );
        let json: serde_json::Value =
            serde_json::from_str(&body(Format::Json, "version", "1.0.0", VERSION_COLOR).unwrap())
                .unwrap();
        assert_eq!(json["schemaVersion"], 1);
        assert_eq!(json["message"], "1.0.0");
        assert_eq!(json["isError"], false);
    }
}
