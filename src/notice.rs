//! Notices: messages for the client that are not errors (PostgreSQL's
//! NoticeResponse), raised by any layer while a statement runs and sent by
//! the serving layer.

/// A message for the client that is not an error (NoticeResponse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub severity: &'static str,
    pub code: &'static str,
    pub message: String,
}

impl Notice {
    pub fn informational(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: "NOTICE",
            code,
            message: message.into(),
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: "WARNING",
            code,
            message: message.into(),
        }
    }
}

/// Where the notices of a running statement go: queued until it completes,
/// or — progress of a long statement — sent at once where the connection
/// listens for them.
pub struct NoticeSink<'a> {
    queued: &'a mut Vec<Notice>,
    live: Option<&'a tokio::sync::mpsc::UnboundedSender<Notice>>,
}

impl<'a> NoticeSink<'a> {
    pub fn new(
        queued: &'a mut Vec<Notice>,
        live: Option<&'a tokio::sync::mpsc::UnboundedSender<Notice>>,
    ) -> Self {
        Self { queued, live }
    }

    /// A notice sent with the statement's result.
    pub fn notice(&mut self, notice: Notice) {
        self.queued.push(notice);
    }

    /// A notice about the statement still running: sent right away where
    /// someone listens, queued otherwise.
    pub fn progress(&mut self, notice: Notice) {
        match self.live {
            Some(live) => {
                if let Err(unsent) = live.send(notice) {
                    self.queued.push(unsent.0);
                }
            }
            None => self.queued.push(notice),
        }
    }
}
