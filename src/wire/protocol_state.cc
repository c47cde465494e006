#include "wire/protocol_state.h"

#include <string_view>
#include <utility>

#include "wire/message_type.h"

namespace pgwarden::wire {

namespace {

template <typename E>
constexpr char type_of(E e) {
  return static_cast<char>(e);
}

// Frontend type bytes.
constexpr char kBind = type_of(FrontendType::Bind);
constexpr char kClose = type_of(FrontendType::Close);
constexpr char kFeCopyData = type_of(FrontendType::CopyData);
constexpr char kFeCopyDone = type_of(FrontendType::CopyDone);
constexpr char kCopyFail = type_of(FrontendType::CopyFail);
constexpr char kDescribe = type_of(FrontendType::Describe);
constexpr char kExecute = type_of(FrontendType::Execute);
constexpr char kFlush = type_of(FrontendType::Flush);
constexpr char kFunctionCall = type_of(FrontendType::FunctionCall);
constexpr char kParse = type_of(FrontendType::Parse);
constexpr char kAuthResponse = type_of(FrontendType::AuthResponse);
constexpr char kQuery = type_of(FrontendType::Query);
constexpr char kSync = type_of(FrontendType::Sync);
constexpr char kTerminate = type_of(FrontendType::Terminate);

// Backend type bytes.
constexpr char kAuthentication = type_of(BackendType::Authentication);
constexpr char kBackendKeyData = type_of(BackendType::BackendKeyData);
constexpr char kBindComplete = type_of(BackendType::BindComplete);
constexpr char kCloseComplete = type_of(BackendType::CloseComplete);
constexpr char kCommandComplete = type_of(BackendType::CommandComplete);
constexpr char kBeCopyData = type_of(BackendType::CopyData);
constexpr char kBeCopyDone = type_of(BackendType::CopyDone);
constexpr char kCopyInResponse = type_of(BackendType::CopyInResponse);
constexpr char kCopyOutResponse = type_of(BackendType::CopyOutResponse);
constexpr char kCopyBothResponse = type_of(BackendType::CopyBothResponse);
constexpr char kDataRow = type_of(BackendType::DataRow);
constexpr char kEmptyQueryResponse = type_of(BackendType::EmptyQueryResponse);
constexpr char kErrorResponse = type_of(BackendType::ErrorResponse);
constexpr char kFunctionCallResponse = type_of(BackendType::FunctionCallResponse);
constexpr char kNegotiateProtocolVersion = type_of(BackendType::NegotiateProtocolVersion);
constexpr char kNoData = type_of(BackendType::NoData);
constexpr char kNoticeResponse = type_of(BackendType::NoticeResponse);
constexpr char kNotificationResponse = type_of(BackendType::NotificationResponse);
constexpr char kParameterDescription = type_of(BackendType::ParameterDescription);
constexpr char kParameterStatus = type_of(BackendType::ParameterStatus);
constexpr char kParseComplete = type_of(BackendType::ParseComplete);
constexpr char kPortalSuspended = type_of(BackendType::PortalSuspended);
constexpr char kReadyForQuery = type_of(BackendType::ReadyForQuery);
constexpr char kRowDescription = type_of(BackendType::RowDescription);

// Queue entries: the RequestKind in the low bits, this flag for requests answered locally.
constexpr std::uint8_t kLocalFlag = 0x80;
constexpr std::size_t kInitialQueueCapacity = 16;

const char* frontend_name(char type) {
  switch (type) {
    case ProtocolState::kStartupMessage:
      return "StartupMessage";
    case kBind:
      return "Bind";
    case kClose:
      return "Close";
    case kFeCopyData:
      return "CopyData";
    case kFeCopyDone:
      return "CopyDone";
    case kCopyFail:
      return "CopyFail";
    case kDescribe:
      return "Describe";
    case kExecute:
      return "Execute";
    case kFlush:
      return "Flush";
    case kFunctionCall:
      return "FunctionCall";
    case kParse:
      return "Parse";
    case kAuthResponse:
      return "authentication response ('p')";
    case kQuery:
      return "Query";
    case kSync:
      return "Sync";
    case kTerminate:
      return "Terminate";
    default:
      return nullptr;
  }
}

const char* backend_name(char type) {
  switch (type) {
    case kAuthentication:
      return "Authentication request";
    case kBackendKeyData:
      return "BackendKeyData";
    case kBindComplete:
      return "BindComplete";
    case kCloseComplete:
      return "CloseComplete";
    case kCommandComplete:
      return "CommandComplete";
    case kBeCopyData:
      return "CopyData";
    case kBeCopyDone:
      return "CopyDone";
    case kCopyInResponse:
      return "CopyInResponse";
    case kCopyOutResponse:
      return "CopyOutResponse";
    case kCopyBothResponse:
      return "CopyBothResponse";
    case kDataRow:
      return "DataRow";
    case kEmptyQueryResponse:
      return "EmptyQueryResponse";
    case kErrorResponse:
      return "ErrorResponse";
    case kFunctionCallResponse:
      return "FunctionCallResponse";
    case kNegotiateProtocolVersion:
      return "NegotiateProtocolVersion";
    case kNoData:
      return "NoData";
    case kNoticeResponse:
      return "NoticeResponse";
    case kNotificationResponse:
      return "NotificationResponse";
    case kParameterDescription:
      return "ParameterDescription";
    case kParameterStatus:
      return "ParameterStatus";
    case kParseComplete:
      return "ParseComplete";
    case kPortalSuspended:
      return "PortalSuspended";
    case kReadyForQuery:
      return "ReadyForQuery";
    case kRowDescription:
      return "RowDescription";
    default:
      return nullptr;
  }
}

const char* request_name(RequestKind kind) {
  switch (kind) {
    case RequestKind::Query:
      return "Query";
    case RequestKind::FunctionCall:
      return "FunctionCall";
    case RequestKind::Parse:
      return "Parse";
    case RequestKind::Bind:
      return "Bind";
    case RequestKind::DescribeStatement:
      return "Describe (statement)";
    case RequestKind::DescribePortal:
      return "Describe (portal)";
    case RequestKind::Execute:
      return "Execute";
    case RequestKind::Close:
      return "Close";
    case RequestKind::Sync:
      return "Sync";
  }
  return "request";
}

const char* auth_name(std::int32_t subtype) {
  switch (static_cast<AuthType>(subtype)) {
    case AuthType::Ok:
      return "AuthenticationOk";
    case AuthType::KerberosV5:
      return "AuthenticationKerberosV5";
    case AuthType::CleartextPassword:
      return "AuthenticationCleartextPassword";
    case AuthType::MD5Password:
      return "AuthenticationMD5Password";
    case AuthType::GSS:
      return "AuthenticationGSS";
    case AuthType::GSSContinue:
      return "AuthenticationGSSContinue";
    case AuthType::SSPI:
      return "AuthenticationSSPI";
    case AuthType::SASL:
      return "AuthenticationSASL";
    case AuthType::SASLContinue:
      return "AuthenticationSASLContinue";
    case AuthType::SASLFinal:
      return "AuthenticationSASLFinal";
  }
  return nullptr;
}

std::string hex_type(char type) {
  static constexpr char kDigits[] = "0123456789abcdef";
  auto v = static_cast<unsigned char>(type);
  return std::string("0x") + kDigits[v >> 4] + kDigits[v & 15];
}

// Extended-protocol messages: an error while the server processes one makes it skip every
// frontend message up to the next Sync.
bool is_extended(RequestKind kind) {
  switch (kind) {
    case RequestKind::Parse:
    case RequestKind::Bind:
    case RequestKind::DescribeStatement:
    case RequestKind::DescribePortal:
    case RequestKind::Execute:
    case RequestKind::Close:
      return true;
    case RequestKind::Query:
    case RequestKind::FunctionCall:
    case RequestKind::Sync:
      return false;
  }
  return false;
}

bool answered_by_ready_for_query(RequestKind kind) {
  return kind == RequestKind::Query || kind == RequestKind::FunctionCall ||
         kind == RequestKind::Sync;
}

// Whether an ErrorResponse ends the connection. The non-localized severity 'V' (PostgreSQL
// 9.6+) decides; without it, the 'S' text is compared, and a localized FATAL that does not
// read "FATAL" is then taken for an ERROR, after which the server's close ends the session
// anyway. The fields are walked with bounds checks; a body without any severity is invalid.
std::expected<bool, WireError> error_is_fatal(Bytes body) {
  Reader r(body);
  std::optional<std::string_view> severity;
  std::optional<std::string_view> localized;
  for (;;) {
    auto code = r.u8();
    if (!code) {
      return std::unexpected(code.error());
    }
    if (*code == 0) {
      break;
    }
    auto value = r.cstring();
    if (!value) {
      return std::unexpected(value.error());
    }
    if (*code == 'V') {
      severity = *value;
    } else if (*code == 'S') {
      localized = *value;
    }
  }
  if (!r.empty()) {
    return std::unexpected(WireError::TrailingBytes);
  }
  if (!severity) {
    severity = localized;
  }
  if (!severity) {
    return std::unexpected(WireError::BadValue);
  }
  return *severity == "FATAL" || *severity == "PANIC";
}

}  // namespace

// ---------------------------------------------------------------------------------------
// RequestQueue

RequestKind ProtocolState::RequestQueue::kind(std::size_t i) const {
  return static_cast<RequestKind>(at(i) & ~kLocalFlag);
}

bool ProtocolState::RequestQueue::local(std::size_t i) const {
  return (at(i) & kLocalFlag) != 0;
}

void ProtocolState::RequestQueue::push(RequestKind kind) {
  if (size_ == buf_.size()) {
    // Grow by doubling (amortised, not per message), keeping the order of entries.
    std::vector<std::uint8_t> grown(buf_.empty() ? kInitialQueueCapacity : buf_.size() * 2);
    for (std::size_t i = 0; i < size_; ++i) {
      grown[i] = at(i);
    }
    buf_ = std::move(grown);
    head_ = 0;
  }
  buf_[(head_ + size_) & (buf_.size() - 1)] = static_cast<std::uint8_t>(kind);
  ++size_;
}

void ProtocolState::RequestQueue::pop() {
  head_ = (head_ + 1) & (buf_.size() - 1);
  --size_;
}

void ProtocolState::RequestQueue::mark_back_local() {
  buf_[(head_ + size_ - 1) & (buf_.size() - 1)] |= kLocalFlag;
}

void ProtocolState::RequestQueue::truncate(std::size_t n) {
  if (n < size_) {
    size_ = n;
  }
}

// ---------------------------------------------------------------------------------------
// Construction, queries, helpers

ProtocolState::ProtocolState(std::size_t max_pending_requests) : queue_(max_pending_requests) {}

AuthResponseKind ProtocolState::expected_auth_response() const {
  if (failed_ || frontend_ != FrontendState::AuthResponse) {
    return AuthResponseKind::None;
  }
  return auth_response_;
}

bool ProtocolState::idle() const {
  return !failed_ && startup_complete_ && frontend_ == FrontendState::Ready &&
         backend_ == BackendState::BetweenRequests && queue_.empty() && !server_discard_ &&
         !local_discard_;
}

std::optional<RequestKind> ProtocolState::current_request() const {
  if (queue_.empty()) {
    return std::nullopt;
  }
  return queue_.kind(0);
}

LocalAnswer ProtocolState::local_answer_due() const {
  if (failed_ || queue_.empty() || !queue_.local(0)) {
    return LocalAnswer::None;
  }
  if (backend_ == BackendState::BetweenRequests) {
    return queue_.kind(0) == RequestKind::Sync ? LocalAnswer::ReadyForQuery
                                               : LocalAnswer::ErrorResponse;
  }
  if (backend_ == BackendState::AwaitingReady) {
    return LocalAnswer::ReadyForQuery;
  }
  return LocalAnswer::None;
}

bool ProtocolState::closed() const {
  return failed_ || frontend_ == FrontendState::Terminated || backend_ == BackendState::Closed;
}

ProtocolViolation ProtocolState::violation(WireError error, std::string reason) {
  failed_ = true;
  return ProtocolViolation{error, std::move(reason)};
}

ProtocolViolation ProtocolState::unexpected_frontend(char type, const char* where) {
  const char* name = frontend_name(type);
  std::string what = name != nullptr ? name : "frontend message " + hex_type(type);
  return violation(WireError::UnexpectedMessage, what + " received " + where);
}

ProtocolViolation ProtocolState::unexpected_backend(char type, const char* where) {
  const char* name = backend_name(type);
  std::string what = name != nullptr ? name : "backend message " + hex_type(type);
  return violation(WireError::UnexpectedMessage, what + " received " + where);
}

void ProtocolState::set_frontend(FrontendState state) {
  // A client that already sent Terminate (or was told the server is gone) stays there.
  if (frontend_ != FrontendState::Terminated && frontend_ != FrontendState::ServerClosed) {
    frontend_ = state;
  }
}

void ProtocolState::enqueue(RequestKind kind) {
  queue_.push(kind);
  if (kind == RequestKind::Sync) {
    ++pending_syncs_;
  }
  if (answered_by_ready_for_query(kind)) {
    ++pending_ready_;
  }
}

void ProtocolState::pop_request() {
  RequestKind kind = queue_.kind(0);
  if (kind == RequestKind::Sync) {
    --pending_syncs_;
  }
  if (answered_by_ready_for_query(kind)) {
    --pending_ready_;
  }
  queue_.pop();
  if (queue_.empty()) {
    // The request on_frontend() just queued is gone (the server skipped it): there is
    // nothing left for answer_locally() to mark.
    last_enqueued_ = false;
  }
}

void ProtocolState::complete_request() {
  pop_request();
  backend_ = BackendState::BetweenRequests;
}

// ---------------------------------------------------------------------------------------
// Frontend machine

std::expected<Disposition, ProtocolViolation> ProtocolState::on_frontend(char type, Bytes body) {
  if (failed_) {
    return std::unexpected(
        violation(WireError::UnexpectedMessage, "message received after a protocol violation"));
  }
  return frontend_transition(type, body);
}

std::expected<Disposition, ProtocolViolation> ProtocolState::frontend_transition(char type,
                                                                                 Bytes body) {
  last_enqueued_ = false;
  last_deniable_ = false;
  last_counted_ = false;

  if (frontend_name(type) == nullptr) {
    return std::unexpected(
        violation(WireError::UnknownMessage, "unknown frontend message type " + hex_type(type)));
  }
  if (type == kStartupMessage && frontend_ != FrontendState::AwaitingStartup) {
    return std::unexpected(
        violation(WireError::UnexpectedMessage, "second StartupMessage received"));
  }

  switch (frontend_) {
    case FrontendState::AwaitingStartup: {
      if (type != kStartupMessage) {
        return std::unexpected(unexpected_frontend(type, "before the StartupMessage"));
      }
      Reader r(body);
      auto code = r.u32();
      if (!code) {
        return std::unexpected(
            violation(code.error(), "StartupMessage is shorter than its protocol version"));
      }
      if (*code == kSslRequestCode || *code == kGssEncRequestCode || *code == kCancelRequestCode) {
        // Encryption requests and cancels are answered before the session exists; one
        // arriving here means the layer below let it through.
        return std::unexpected(
            violation(WireError::UnexpectedMessage,
                      "SSLRequest, GSSENCRequest or CancelRequest received where a StartupMessage "
                      "was expected"));
      }
      if ((*code >> 16) != 3) {
        return std::unexpected(violation(WireError::UnknownProtocol,
                                         "StartupMessage asks for a protocol other than 3.x"));
      }
      frontend_ = FrontendState::AwaitingServer;
      backend_ = BackendState::AuthRequest;
      return Disposition::Forward;
    }

    case FrontendState::AuthResponse:
      if (type == kAuthResponse) {
        switch (auth_response_) {
          case AuthResponseKind::Password:
            backend_ = BackendState::PasswordSent;
            break;
          case AuthResponseKind::SaslInitial:
          case AuthResponseKind::Sasl:
            backend_ = BackendState::SaslResponseSent;
            break;
          case AuthResponseKind::Gss:
            backend_ = BackendState::GssResponseSent;
            break;
          case AuthResponseKind::None:
            return std::unexpected(
                unexpected_frontend(type, "while no authentication request is outstanding"));
        }
        auth_response_ = AuthResponseKind::None;
        frontend_ = FrontendState::AwaitingServer;
        return Disposition::Forward;
      }
      if (type == kTerminate) {
        frontend_ = FrontendState::Terminated;
        return Disposition::Forward;
      }
      return std::unexpected(unexpected_frontend(type, "during authentication"));

    case FrontendState::AwaitingServer:
      if (type == kTerminate) {
        frontend_ = FrontendState::Terminated;
        return Disposition::Forward;
      }
      if (type == kAuthResponse) {
        return std::unexpected(
            unexpected_frontend(type, "while no authentication request is outstanding"));
      }
      return std::unexpected(unexpected_frontend(type, backend_ == BackendState::StartupParameters
                                                           ? "before the first ReadyForQuery"
                                                           : "during authentication"));

    case FrontendState::Ready:
      return frontend_request(type, body);

    case FrontendState::CopyIn:
      if (type == kFeCopyData) {
        return Disposition::Forward;
      }
      if (type == kFeCopyDone || type == kCopyFail) {
        frontend_ = FrontendState::Ready;
        if (backend_ == BackendState::CopyIn) {
          backend_ = type == kFeCopyDone ? BackendState::CopyInDone : BackendState::CopyInFailed;
        }
        return Disposition::Forward;
      }
      if (type == kFlush || type == kSync) {
        // The server ignores both while it reads copy data (libpq sends Sync right after an
        // Execute without knowing it starts a COPY): no answer will come, so no queue entry.
        return Disposition::Forward;
      }
      if (type == kTerminate) {
        frontend_ = FrontendState::Terminated;
        return Disposition::Forward;
      }
      return std::unexpected(unexpected_frontend(type, "during COPY IN"));

    case FrontendState::CopyBoth:
      if (type == kFeCopyData) {
        return Disposition::Forward;
      }
      if (type == kFeCopyDone) {
        frontend_ = FrontendState::Ready;
        if (backend_ == BackendState::CopyBoth) {
          backend_ = BackendState::CopyBothClientDone;
        } else if (backend_ == BackendState::CopyBothServerDone) {
          copy_both_finished();
        }
        return Disposition::Forward;
      }
      if (type == kTerminate) {
        frontend_ = FrontendState::Terminated;
        return Disposition::Forward;
      }
      return std::unexpected(unexpected_frontend(type, "during COPY BOTH"));

    case FrontendState::Terminated:
      return std::unexpected(unexpected_frontend(type, "after Terminate"));

    case FrontendState::ServerClosed:
      if (type == kTerminate) {
        frontend_ = FrontendState::Terminated;
        return Disposition::Forward;
      }
      return std::unexpected(unexpected_frontend(type, "after the server ended the connection"));
  }
  return std::unexpected(unexpected_frontend(type, "in an unknown state"));
}

// The frontend in normal operation: requests are queued so that each backend answer can be
// matched to the request it answers.
std::expected<Disposition, ProtocolViolation> ProtocolState::frontend_request(char type,
                                                                              Bytes body) {
  RequestKind kind = RequestKind::Sync;
  switch (type) {
    case kAuthResponse:
      return std::unexpected(unexpected_frontend(type, "after authentication completed"));

    case kFeCopyData:
    case kFeCopyDone:
    case kCopyFail:
      // PostgreSQL accepts and ignores copy messages outside COPY because a client may still
      // be sending data when the server aborts a copy-in. Only then are they tolerated here.
      if (!copy_abandoned_) {
        return std::unexpected(unexpected_frontend(type, "while no COPY IN is in progress"));
      }
      if (type != kFeCopyData) {
        copy_abandoned_ = false;
      }
      return local_discard_ ? Disposition::Discard : Disposition::Forward;

    case kTerminate:
      frontend_ = FrontendState::Terminated;
      return Disposition::Forward;

    case kFlush:
      copy_abandoned_ = false;
      return local_discard_ ? Disposition::Discard : Disposition::Forward;

    case kSync: {
      copy_abandoned_ = false;
      if (queue_.full()) {
        return std::unexpected(violation(WireError::TooLarge, "too many pipelined requests"));
      }
      bool answer_here = local_discard_ && batch_forwarded_ == 0;
      local_discard_ = false;
      server_discard_ = false;
      batch_forwarded_ = 0;
      enqueue(RequestKind::Sync);
      if (answer_here) {
        // Nothing of this batch reached the server: it has no Sync to answer.
        queue_.mark_back_local();
        return Disposition::AnswerLocally;
      }
      return Disposition::Forward;
    }

    case kQuery:
      kind = RequestKind::Query;
      break;
    case kFunctionCall:
      kind = RequestKind::FunctionCall;
      break;
    case kParse:
      kind = RequestKind::Parse;
      break;
    case kBind:
      kind = RequestKind::Bind;
      break;
    case kExecute:
      kind = RequestKind::Execute;
      break;
    case kClose:
      kind = RequestKind::Close;
      break;
    case kDescribe: {
      Reader r(body);
      auto target = r.u8();
      if (!target) {
        return std::unexpected(violation(target.error(), "Describe has no target byte"));
      }
      if (*target == 'S') {
        kind = RequestKind::DescribeStatement;
      } else if (*target == 'P') {
        kind = RequestKind::DescribePortal;
      } else {
        return std::unexpected(
            violation(WireError::BadValue, "Describe names neither a statement nor a portal"));
      }
      break;
    }
    default:
      return std::unexpected(unexpected_frontend(type, "after startup"));
  }

  copy_abandoned_ = false;
  if (local_discard_) {
    // Skipping to Sync after a local error: the server must never see it.
    return Disposition::Discard;
  }
  last_deniable_ = true;
  last_counted_ = true;
  ++batch_forwarded_;
  if (server_discard_) {
    // The server skips it (Query and FunctionCall included) until the next Sync: no answer.
    return Disposition::Forward;
  }
  if (queue_.full()) {
    return std::unexpected(violation(WireError::TooLarge, "too many pipelined requests"));
  }
  enqueue(kind);
  last_enqueued_ = true;
  return Disposition::Forward;
}

std::expected<void, ProtocolViolation> ProtocolState::answer_locally() {
  if (failed_) {
    return std::unexpected(
        violation(WireError::UnexpectedMessage, "answer_locally() after a protocol violation"));
  }
  if (!last_deniable_) {
    return std::unexpected(violation(
        WireError::UnexpectedMessage,
        "answer_locally() is valid only right after a request was accepted for forwarding"));
  }
  last_deniable_ = false;
  if (last_counted_) {
    --batch_forwarded_;
    last_counted_ = false;
  }
  if (last_enqueued_ && !queue_.empty()) {
    last_enqueued_ = false;
    queue_.mark_back_local();
    if (is_extended(queue_.kind(queue_.size() - 1))) {
      local_discard_ = true;
    }
  }
  return {};
}

// ---------------------------------------------------------------------------------------
// Backend machine

std::expected<void, ProtocolViolation> ProtocolState::on_backend(char type, Bytes body) {
  if (failed_) {
    return std::unexpected(
        violation(WireError::UnexpectedMessage, "message received after a protocol violation"));
  }
  return backend_transition(type, body);
}

std::expected<void, ProtocolViolation> ProtocolState::backend_transition(char type, Bytes body) {
  if (backend_name(type) == nullptr) {
    return std::unexpected(
        violation(WireError::UnknownMessage, "unknown backend message type " + hex_type(type)));
  }
  if (backend_ == BackendState::AwaitingStartup) {
    return std::unexpected(unexpected_backend(type, "before the StartupMessage"));
  }
  if (backend_ == BackendState::Closed) {
    return std::unexpected(unexpected_backend(type, "after the server ended the connection"));
  }

  if (type == kErrorResponse) {
    auto fatal = error_is_fatal(body);
    if (!fatal) {
      return std::unexpected(violation(fatal.error(), "ErrorResponse is malformed"));
    }
    // During startup every error ends the connection; afterwards FATAL and PANIC do, at any
    // time and in any state.
    if (*fatal || !startup_complete_) {
      backend_ = BackendState::Closed;
      set_frontend(FrontendState::ServerClosed);
      return {};
    }
  }
  // NoticeResponse may come at any time; ParameterStatus and NotificationResponse at any
  // time after authentication (asynchronous operations).
  bool authenticated = startup_complete_ || backend_ == BackendState::StartupParameters;
  if (type == kNoticeResponse ||
      (authenticated && (type == kParameterStatus || type == kNotificationResponse))) {
    return {};
  }

  switch (backend_) {
    case BackendState::AuthRequest:
      if (type == kAuthentication) {
        return backend_authentication(body);
      }
      if (type == kNegotiateProtocolVersion) {
        // Sent at most once, right after the StartupMessage, before authentication.
        if (negotiated_) {
          return std::unexpected(
              violation(WireError::UnexpectedMessage, "second NegotiateProtocolVersion received"));
        }
        negotiated_ = true;
        return {};
      }
      return std::unexpected(unexpected_backend(type, "before authentication completed"));

    case BackendState::AuthResponsePending:
      return std::unexpected(
          unexpected_backend(type, "while the server awaits the client's authentication response"));

    case BackendState::PasswordSent:
    case BackendState::SaslResponseSent:
    case BackendState::SaslFinal:
    case BackendState::GssResponseSent:
    case BackendState::GssContinue:
      if (type == kAuthentication) {
        return backend_authentication(body);
      }
      return std::unexpected(unexpected_backend(type, "during authentication"));

    case BackendState::StartupParameters:
      if (type == kBackendKeyData) {
        if (backend_key_seen_) {
          return std::unexpected(
              violation(WireError::UnexpectedMessage, "second BackendKeyData received"));
        }
        backend_key_seen_ = true;
        return {};
      }
      if (type == kReadyForQuery) {
        return ready_for_query(body);
      }
      return std::unexpected(unexpected_backend(type, "before the first ReadyForQuery"));

    default:
      return backend_answer(type, body);
  }
}

std::expected<void, ProtocolViolation> ProtocolState::backend_authentication(Bytes body) {
  Reader r(body);
  auto subtype = r.i32();
  if (!subtype) {
    return std::unexpected(
        violation(subtype.error(), "Authentication request is shorter than its subtype"));
  }
  const char* name = auth_name(*subtype);
  if (name == nullptr) {
    return std::unexpected(
        violation(WireError::BadValue, "unknown authentication request subtype"));
  }
  auto unexpected_here = [&](const char* where) {
    return std::unexpected(
        violation(WireError::UnexpectedMessage, std::string(name) + " received " + where));
  };
  // A new method may be requested only as the first request: switching methods mid-exchange
  // (for instance from SCRAM to a cleartext password) is a downgrade.
  bool first = backend_ == BackendState::AuthRequest;
  auto request_response = [&](AuthResponseKind kind) {
    auth_response_ = kind;
    backend_ = BackendState::AuthResponsePending;
    set_frontend(FrontendState::AuthResponse);
  };

  switch (static_cast<AuthType>(*subtype)) {
    case AuthType::Ok:
      // Every exchange can end in Ok once the server has what it needs: after the client's
      // response, after SASLFinal, after GSSContinue, or at once (trust, peer).
      auth_response_ = AuthResponseKind::None;
      backend_ = BackendState::StartupParameters;
      set_frontend(FrontendState::AwaitingServer);
      return {};

    case AuthType::CleartextPassword:
    case AuthType::MD5Password:
      if (!first) {
        return unexpected_here("after authentication started");
      }
      request_response(AuthResponseKind::Password);
      return {};

    case AuthType::GSS:
    case AuthType::SSPI:
      if (!first) {
        return unexpected_here("after authentication started");
      }
      request_response(AuthResponseKind::Gss);
      return {};

    case AuthType::SASL:
      if (!first) {
        return unexpected_here("after authentication started");
      }
      request_response(AuthResponseKind::SaslInitial);
      return {};

    case AuthType::SASLContinue:
      if (backend_ != BackendState::SaslResponseSent) {
        return unexpected_here("outside a SASL exchange awaiting the server");
      }
      request_response(AuthResponseKind::Sasl);
      return {};

    case AuthType::SASLFinal:
      if (backend_ != BackendState::SaslResponseSent) {
        return unexpected_here("outside a SASL exchange awaiting the server");
      }
      backend_ = BackendState::SaslFinal;
      return {};

    case AuthType::GSSContinue:
      if (backend_ != BackendState::GssResponseSent) {
        return unexpected_here("outside a GSSAPI exchange awaiting the server");
      }
      // The client answers only if its GSSAPI context needs another round; otherwise the
      // server follows with AuthenticationOk.
      auth_response_ = AuthResponseKind::Gss;
      backend_ = BackendState::GssContinue;
      set_frontend(FrontendState::AuthResponse);
      return {};

    case AuthType::KerberosV5:
      return std::unexpected(
          violation(WireError::BadValue, "AuthenticationKerberosV5 is not supported"));
  }
  return std::unexpected(violation(WireError::BadValue, "unknown authentication request"));
}

std::expected<void, ProtocolViolation> ProtocolState::ready_for_query(Bytes body) {
  Reader r(body);
  auto status = r.u8();
  if (!status) {
    return std::unexpected(violation(status.error(), "ReadyForQuery has no status byte"));
  }
  if (!r.empty()) {
    return std::unexpected(
        violation(WireError::TrailingBytes, "ReadyForQuery is longer than its status byte"));
  }
  switch (*status) {
    case 'I':
      transaction_status_ = TransactionStatus::Idle;
      break;
    case 'T':
      transaction_status_ = TransactionStatus::InTransaction;
      break;
    case 'E':
      transaction_status_ = TransactionStatus::Failed;
      break;
    default:
      return std::unexpected(
          violation(WireError::BadValue, "ReadyForQuery has an invalid transaction status"));
  }
  if (!startup_complete_) {
    startup_complete_ = true;
    set_frontend(FrontendState::Ready);
    backend_ = BackendState::BetweenRequests;
    return {};
  }
  complete_request();
  return {};
}

// The server answers the request at the head of the queue.
std::expected<void, ProtocolViolation> ProtocolState::backend_answer(char type, Bytes body) {
  switch (backend_) {
    case BackendState::BetweenRequests:
      return backend_request_start(type, body);

    case BackendState::QueryResults:
      switch (type) {
        case kRowDescription:
          backend_ = BackendState::QueryRows;
          return {};
        case kCommandComplete:
          return {};
        case kEmptyQueryResponse:
          backend_ = BackendState::AwaitingReady;
          return {};
        case kErrorResponse:
          fail_request();
          return {};
        case kCopyInResponse:
        case kCopyOutResponse:
        case kCopyBothResponse:
          return start_copy(type);
        case kReadyForQuery:
          return ready_for_query(body);
        case kDataRow:
          return std::unexpected(unexpected_backend(type, "without a RowDescription"));
        default:
          return std::unexpected(unexpected_backend(type, "in answer to a simple Query"));
      }

    case BackendState::QueryRows:
      switch (type) {
        case kDataRow:
          return {};
        case kCommandComplete:
          backend_ = BackendState::QueryResults;
          return {};
        case kErrorResponse:
          fail_request();
          return {};
        default:
          return std::unexpected(unexpected_backend(type, "amid the rows of a simple Query"));
      }

    case BackendState::DescribeParameters:
      switch (type) {
        case kRowDescription:
        case kNoData:
          complete_request();
          return {};
        case kErrorResponse:
          fail_request();
          return {};
        default:
          return std::unexpected(unexpected_backend(type, "after ParameterDescription"));
      }

    case BackendState::ExecuteRows:
      switch (type) {
        case kDataRow:
          return {};
        case kCommandComplete:
        case kPortalSuspended:
          complete_request();
          return {};
        case kErrorResponse:
          fail_request();
          return {};
        default:
          return std::unexpected(unexpected_backend(type, "amid the rows of an Execute"));
      }

    case BackendState::FunctionResult:
      switch (type) {
        case kReadyForQuery:
          return ready_for_query(body);
        case kErrorResponse:
          // Committing the function's implicit transaction can still fail.
          backend_ = BackendState::AwaitingReady;
          return {};
        default:
          return std::unexpected(unexpected_backend(type, "after FunctionCallResponse"));
      }

    case BackendState::AwaitingReady:
      if (type == kReadyForQuery) {
        return ready_for_query(body);
      }
      return std::unexpected(unexpected_backend(type, "where only ReadyForQuery may follow"));

    case BackendState::CopyIn:
      if (type == kErrorResponse) {
        fail_request();
        return {};
      }
      return std::unexpected(unexpected_backend(type, "while the client is sending COPY data"));

    case BackendState::CopyInDone:
      if (type == kCommandComplete) {
        copy_finished();
        return {};
      }
      if (type == kErrorResponse) {
        fail_request();
        return {};
      }
      return std::unexpected(unexpected_backend(type, "after the client's CopyDone"));

    case BackendState::CopyInFailed:
      if (type == kErrorResponse) {
        fail_request();
        return {};
      }
      return std::unexpected(unexpected_backend(type, "after the client's CopyFail"));

    case BackendState::CopyOut:
      switch (type) {
        case kBeCopyData:
          return {};
        case kBeCopyDone:
          backend_ = BackendState::CopyFinished;
          return {};
        case kErrorResponse:
          fail_request();
          return {};
        default:
          return std::unexpected(unexpected_backend(type, "during COPY OUT"));
      }

    case BackendState::CopyBoth:
    case BackendState::CopyBothClientDone:
      switch (type) {
        case kBeCopyData:
          return {};
        case kBeCopyDone:
          if (backend_ == BackendState::CopyBothClientDone) {
            copy_both_finished();
          } else {
            backend_ = BackendState::CopyBothServerDone;
          }
          return {};
        case kErrorResponse:
          fail_request();
          return {};
        default:
          return std::unexpected(unexpected_backend(type, "during COPY BOTH"));
      }

    case BackendState::CopyBothServerDone:
      if (type == kErrorResponse) {
        fail_request();
        return {};
      }
      return std::unexpected(
          unexpected_backend(type, "after the server's CopyDone, before the client's"));

    case BackendState::CopyFinished:
      if (type == kCommandComplete) {
        copy_finished();
        return {};
      }
      if (type == kErrorResponse) {
        fail_request();
        return {};
      }
      return std::unexpected(unexpected_backend(type, "after the end of COPY data"));

    default:
      return std::unexpected(unexpected_backend(type, "in an unexpected state"));
  }
}

// The first message of the answer to the request at the head of the queue.
std::expected<void, ProtocolViolation> ProtocolState::backend_request_start(char type, Bytes body) {
  if (queue_.empty()) {
    if (type == kReadyForQuery) {
      return std::unexpected(
          violation(WireError::UnexpectedMessage,
                    "ReadyForQuery received with no Sync, Query or FunctionCall outstanding"));
    }
    return std::unexpected(unexpected_backend(type, frontend_ == FrontendState::Terminated
                                                        ? "after Terminate"
                                                        : "while no query is in progress"));
  }
  RequestKind head = queue_.kind(0);
  std::string answer_to = std::string("in answer to ") + request_name(head);
  if (queue_.local(0)) {
    // The proxy answers this request itself: only its own answer may come now.
    if (head == RequestKind::Sync && type != kReadyForQuery) {
      return std::unexpected(
          unexpected_backend(type, "while the proxy owes ReadyForQuery for a local Sync"));
    }
    if (head != RequestKind::Sync && type != kErrorResponse) {
      return std::unexpected(unexpected_backend(
          type, "while the proxy owes an ErrorResponse for a locally answered request"));
    }
  }

  switch (head) {
    case RequestKind::Query:
      backend_ = BackendState::QueryResults;
      return backend_answer(type, body);

    case RequestKind::FunctionCall:
      if (type == kFunctionCallResponse) {
        backend_ = BackendState::FunctionResult;
        return {};
      }
      break;

    case RequestKind::Parse:
      if (type == kParseComplete) {
        complete_request();
        return {};
      }
      break;

    case RequestKind::Bind:
      if (type == kBindComplete) {
        complete_request();
        return {};
      }
      break;

    case RequestKind::DescribeStatement:
      if (type == kParameterDescription) {
        backend_ = BackendState::DescribeParameters;
        return {};
      }
      break;

    case RequestKind::DescribePortal:
      if (type == kRowDescription || type == kNoData) {
        complete_request();
        return {};
      }
      break;

    case RequestKind::Execute:
      switch (type) {
        case kDataRow:
          backend_ = BackendState::ExecuteRows;
          return {};
        case kCommandComplete:
        case kEmptyQueryResponse:
        case kPortalSuspended:
          complete_request();
          return {};
        case kCopyInResponse:
        case kCopyOutResponse:
        case kCopyBothResponse:
          return start_copy(type);
        default:
          break;
      }
      break;

    case RequestKind::Close:
      if (type == kCloseComplete) {
        complete_request();
        return {};
      }
      break;

    case RequestKind::Sync:
      if (type == kReadyForQuery) {
        return ready_for_query(body);
      }
      if (type == kErrorResponse) {
        // Committing the implicit transaction at Sync can fail; ReadyForQuery still follows
        // and nothing is skipped.
        backend_ = BackendState::AwaitingReady;
        return {};
      }
      break;
  }
  if (type == kErrorResponse) {
    fail_request();
    return {};
  }
  return std::unexpected(unexpected_backend(type, answer_to.c_str()));
}

std::expected<void, ProtocolViolation> ProtocolState::start_copy(char type) {
  if (type == kCopyOutResponse) {
    backend_ = BackendState::CopyOut;
    return {};
  }
  // From here the server reads frontend messages as copy data. Whatever the client pipelined
  // behind the COPY is read in that mode: Sync and Flush are ignored (libpq sends a Sync
  // right after an Execute that turns out to be COPY), anything else would be misread as a
  // protocol error by the server, so such a conversation cannot be followed: fail closed.
  // Copy-both (replication) accepts nothing but copy messages.
  for (std::size_t i = 1; i < queue_.size(); ++i) {
    RequestKind kind = queue_.kind(i);
    if (kind != RequestKind::Sync || type == kCopyBothResponse || queue_.local(i)) {
      return std::unexpected(violation(WireError::UnexpectedMessage,
                                       std::string(request_name(kind)) +
                                           " was pipelined behind a COPY " +
                                           (type == kCopyInResponse ? "FROM STDIN" : "BOTH") +
                                           "; the server would read it as copy data"));
    }
  }
  // Those Syncs are swallowed by the copy: they will get no ReadyForQuery.
  while (queue_.size() > 1) {
    pending_syncs_ -= 1;
    pending_ready_ -= 1;
    queue_.truncate(queue_.size() - 1);
  }
  if (type == kCopyInResponse) {
    backend_ = BackendState::CopyIn;
    if (frontend_ == FrontendState::Ready) {
      frontend_ = FrontendState::CopyIn;
    }
  } else {
    backend_ = BackendState::CopyBoth;
    if (frontend_ == FrontendState::Ready) {
      frontend_ = FrontendState::CopyBoth;
    }
  }
  return {};
}

// COPY IN or OUT ended with CommandComplete.
void ProtocolState::copy_finished() {
  if (queue_.kind(0) == RequestKind::Query) {
    // A multi-statement Query continues with its next result.
    backend_ = BackendState::QueryResults;
  } else {
    complete_request();
  }
}

// Both sides sent CopyDone. After START_REPLICATION the walsender may send a result set
// (the next timeline) before CommandComplete, so a simple Query goes back to its results.
void ProtocolState::copy_both_finished() {
  if (queue_.kind(0) == RequestKind::Query) {
    backend_ = BackendState::QueryResults;
  } else {
    backend_ = BackendState::CopyFinished;
  }
}

// A non-fatal ErrorResponse ends the request at the head of the queue.
void ProtocolState::fail_request() {
  // A copy the server aborts leaves the client possibly still sending copy data, which the
  // server drops: tolerate it until the client sends CopyDone/CopyFail or moves on.
  if (frontend_ == FrontendState::CopyIn || frontend_ == FrontendState::CopyBoth) {
    frontend_ = FrontendState::Ready;
    copy_abandoned_ = true;
  }
  RequestKind head = queue_.kind(0);
  if (!is_extended(head)) {
    // Query, FunctionCall, Sync: the rest is abandoned and ReadyForQuery follows.
    backend_ = BackendState::AwaitingReady;
    return;
  }
  // Extended protocol: the server skips every frontend message up to the next Sync, simple
  // Query and FunctionCall included; the Sync's ReadyForQuery comes next.
  while (!queue_.empty() && queue_.kind(0) != RequestKind::Sync) {
    pop_request();
  }
  if (queue_.empty()) {
    server_discard_ = true;
  }
  backend_ = BackendState::BetweenRequests;
}

}  // namespace pgwarden::wire
