// Every way a cryptographic operation or a SCRAM exchange can fail. Functions return
// std::expected<T, CryptoError>; they never throw. to_string() gives a fixed text for logs: it
// names the fault and never contains key material, passwords, proofs or bytes from the wire.
// A failed authentication exchange is reported to the peer only as FATAL 28P01, whatever the
// CryptoError, so these texts are for the operator's log, not for the client.
#pragma once

#include <cstdint>
#include <string_view>

namespace pgwarden::crypto {

enum class CryptoError : std::uint8_t {
  RandomFailure,              // RAND_bytes failed: no nonce, salt or key can be made
  OpenSslFailure,             // a digest, HMAC or PBKDF2 call failed
  BadVerifier,                // a stored SCRAM verifier is not well formed
  BadIterations,              // iteration count outside the accepted range
  MessageTooLarge,            // a SCRAM message above kMaxScramMessage
  Malformed,                  // a SCRAM message that does not follow the grammar
  UnexpectedMessage,          // a message the state machine does not accept in its state
  UnsupportedMechanism,       // a SASL mechanism that was not offered
  NoCommonMechanism,          // the server offered no mechanism this client can use
  ChannelBindingUnsupported,  // a channel-binding type other than tls-server-end-point
  ChannelBindingNotOffered,   // 'p=' without SCRAM-SHA-256-PLUS, or -PLUS without 'p='
  ChannelBindingDowngrade,    // 'y' flag while the server offered -PLUS, or -PLUS without TLS
  ChannelBindingRequired,     // policy requires channel binding that cannot be used
  ChannelBindingMismatch,     // 'c=' does not match the gs2 header and the binding data
  AuthzidUnsupported,         // 'a=' authorization identity in the gs2 header
  UnsupportedExtension,       // 'm=' mandatory extension, or unknown attribute where none fit
  BadNonce,                   // nonce missing, empty or with unprintable characters
  NonceMismatch,              // nonce does not continue the exchange's nonce
  BadSalt,                    // salt not base64 or outside the length bounds
  BadProof,                   // client proof does not verify: wrong password or unknown user
  ServerError,                // the server sent 'e=' in server-final
  BadServerSignature,         // the server signature does not verify
  BadCertificate,  // for callers: no tls-server-end-point hash for a certificate that must bind
  ExchangeFailed,  // the exchange already failed; no further input is accepted
};

constexpr std::string_view to_string(CryptoError e) {
  switch (e) {
    case CryptoError::RandomFailure:
      return "random number generator failure";
    case CryptoError::OpenSslFailure:
      return "cryptographic primitive failure";
    case CryptoError::BadVerifier:
      return "malformed SCRAM verifier";
    case CryptoError::BadIterations:
      return "SCRAM iteration count out of range";
    case CryptoError::MessageTooLarge:
      return "SCRAM message exceeds the size limit";
    case CryptoError::Malformed:
      return "malformed SCRAM message";
    case CryptoError::UnexpectedMessage:
      return "unexpected SCRAM message for the exchange state";
    case CryptoError::UnsupportedMechanism:
      return "client selected a SASL mechanism that was not offered";
    case CryptoError::NoCommonMechanism:
      return "server offered no supported SASL mechanism";
    case CryptoError::ChannelBindingUnsupported:
      return "unsupported SCRAM channel-binding type";
    case CryptoError::ChannelBindingNotOffered:
      return "SCRAM channel-binding flag does not match the selected mechanism";
    case CryptoError::ChannelBindingDowngrade:
      return "SCRAM channel-binding downgrade detected";
    case CryptoError::ChannelBindingRequired:
      return "channel binding required but not available";
    case CryptoError::ChannelBindingMismatch:
      return "SCRAM channel-binding check failed";
    case CryptoError::AuthzidUnsupported:
      return "SCRAM authorization identity is not supported";
    case CryptoError::UnsupportedExtension:
      return "unsupported SCRAM extension";
    case CryptoError::BadNonce:
      return "invalid SCRAM nonce";
    case CryptoError::NonceMismatch:
      return "SCRAM nonce mismatch";
    case CryptoError::BadSalt:
      return "invalid SCRAM salt";
    case CryptoError::BadProof:
      return "invalid SCRAM client proof";
    case CryptoError::ServerError:
      return "server reported a SCRAM error";
    case CryptoError::BadServerSignature:
      return "invalid SCRAM server signature";
    case CryptoError::BadCertificate:
      return "cannot compute channel-binding data for the certificate";
    case CryptoError::ExchangeFailed:
      return "SCRAM exchange already failed";
  }
  return "cryptographic failure";
}

}  // namespace pgwarden::crypto
