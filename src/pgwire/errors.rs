//! Errors and notices as PostgreSQL messages: an [`ErrorReport`] (where
//! the server decided the SQLSTATE, see `error::sqlstate`) becomes an
//! ErrorResponse, a [`Notice`] a NoticeResponse.

use pgwire::messages::response::{ErrorResponse, NoticeResponse};

use crate::error::ErrorReport;
use crate::notice::Notice;

/// The ErrorResponse of `report`.
pub fn error_response(report: ErrorReport) -> ErrorResponse {
    let mut fields = vec![
        (b'S', report.severity.to_string()),
        (b'V', report.severity.to_string()),
        (b'C', report.code.to_string()),
        (b'M', report.message),
    ];
    if let Some(detail) = report.detail {
        fields.push((b'D', detail));
    }
    if let Some(hint) = report.hint {
        fields.push((b'H', hint));
    }
    if let Some(position) = report.position {
        fields.push((b'P', position.to_string()));
    }
    if let Some(context) = report.context {
        fields.push((b'W', context));
    }
    ErrorResponse::new(fields)
}

pub fn notice_response(notice: &Notice) -> NoticeResponse {
    NoticeResponse::new(vec![
        (b'S', notice.severity.to_string()),
        (b'V', notice.severity.to_string()),
        (b'C', notice.code.to_string()),
        (b'M', notice.message.clone()),
    ])
}
