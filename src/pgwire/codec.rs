//! Framing: bytes ↔ PostgreSQL protocol messages.
//!
//! Wraps pgwire's message decoding with the connection's phase (SSL
//! negotiation, startup, normal) and a limit on message size, checked from
//! the length header before the message is buffered, so a client cannot
//! make the server allocate arbitrary memory.

use bytes::BytesMut;
use pgwire::error::PgWireError;
use pgwire::messages::{
    DecodeContext, PgWireBackendMessage, PgWireFrontendMessage, ProtocolVersion,
};
use tokio_util::codec::{Decoder, Encoder};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// First packet: SSLRequest, GSSENCRequest, StartupMessage or CancelRequest.
    AwaitingSslRequest,
    AwaitingStartup,
    Normal,
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("invalid message length {0}")]
    InvalidLength(i64),
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("invalid message: {0}")]
    Protocol(#[from] PgWireError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub struct ServerCodec {
    pub phase: Phase,
    pub protocol_version: ProtocolVersion,
    max_message_size: usize,
}

impl ServerCodec {
    pub fn new(max_message_size: usize) -> Self {
        Self {
            phase: Phase::AwaitingSslRequest,
            protocol_version: ProtocolVersion::PROTOCOL3_0,
            max_message_size,
        }
    }

    fn context(&self) -> DecodeContext {
        let mut context = DecodeContext::new(self.protocol_version);
        context.awaiting_frontend_ssl = self.phase == Phase::AwaitingSslRequest;
        context.awaiting_frontend_startup = self.phase != Phase::Normal;
        context
    }

    fn check_length(&self, src: &BytesMut) -> Result<(), CodecError> {
        // Startup-phase packets have no type byte; later ones do.
        let offset = if self.phase == Phase::Normal { 1 } else { 0 };
        if src.len() < offset + 4 {
            return Ok(());
        }
        let length = i32::from_be_bytes(
            src[offset..offset + 4]
                .try_into()
                .expect("slice of four bytes"),
        );
        if length < 4 {
            return Err(CodecError::InvalidLength(length as i64));
        }
        if length as usize > self.max_message_size {
            return Err(CodecError::TooLarge {
                size: length as usize,
                limit: self.max_message_size,
            });
        }
        Ok(())
    }
}

impl Decoder for ServerCodec {
    type Item = PgWireFrontendMessage;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        self.check_length(src)?;
        let message = PgWireFrontendMessage::decode(src, &self.context())?;
        if let Some(PgWireFrontendMessage::SslNegotiation(
            pgwire::messages::SslNegotiationMetaMessage::None,
        )) = message
        {
            // Not an SSL request: the same bytes are the startup packet.
            self.phase = Phase::AwaitingStartup;
            self.check_length(src)?;
            return Ok(PgWireFrontendMessage::decode(src, &self.context())?);
        }
        Ok(message)
    }
}

impl Encoder<PgWireBackendMessage> for ServerCodec {
    type Error = CodecError;

    fn encode(
        &mut self,
        item: PgWireBackendMessage,
        dst: &mut BytesMut,
    ) -> Result<(), Self::Error> {
        item.encode(dst).map_err(CodecError::Protocol)
    }
}
