// Protocol state machines for one PostgreSQL 3.x connection, as a proxy observes it.
//
// ProtocolState is told every frontend message (on_frontend) and every backend message
// (on_backend) of one hop, in the order the proxy sees them, and decides after each one
// whether it was legal there. It holds two state machines, one per direction, each with one
// enum and one transition function: FrontendState says what the client may send next,
// BackendState what the server may send next. They are coupled where the protocol couples
// them: an authentication request decides which 'p' message comes next, CopyInResponse
// opens copy-in for the frontend, and a queue of outstanding requests matches each backend
// response to the frontend message it answers, so pipelining (many Parse/Bind/Execute/Sync
// sent before any answer) is tracked exactly, including "discard until Sync" after an error.
//
// Messages are passed already framed: the type byte and the body after the length word.
// The untyped StartupMessage is passed as type kStartupMessage with the body after the
// length word (protocol version, then parameters). SSLRequest, GSSENCRequest and
// CancelRequest are handled before this machine and are refused here. Only the few fields
// the state needs are peeked at with a bounds-checked Reader (authentication subtype,
// ReadyForQuery status, ErrorResponse severity, Describe target, startup protocol version);
// full decoding and validation of every field is the codec's job.
//
// A proxy with two hops (client <-> pgwarden, pgwarden <-> server) keeps one ProtocolState
// per hop. On the client hop, the "backend" messages are what pgwarden sends the client:
// relayed server messages and pgwarden's own.
//
// Answering locally (policy denial without the server seeing the message): after
// on_frontend() accepted a request with Disposition::Forward, the proxy may call
// answer_locally() instead of forwarding it. The request then stays in the queue, marked
// local; when it reaches the head (every earlier request has been answered),
// local_answer_due() says LocalAnswer::ErrorResponse and the proxy sends its own
// ErrorResponse through on_backend(). For an extended-protocol message, every later frontend
// message up to the next Sync is then reported as Disposition::Discard (never forwarded,
// never answered), exactly as PostgreSQL skips to Sync after an error; the Sync itself is
// Disposition::Forward when something of its batch already reached the server (the server's
// ReadyForQuery then answers it) or Disposition::AnswerLocally when nothing did (the proxy
// sends ReadyForQuery itself when local_answer_due() says so). For a simple Query or a
// FunctionCall the local answer is ErrorResponse then ReadyForQuery, and nothing is skipped.
//
// Every violation is an std::expected error with a WireError and a human-readable reason
// that names the message and the state (never message contents). After the first violation
// the machine stays failed: the connection must be closed (fail closed).
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <vector>

#include "wire/backend.h"
#include "wire/bytes.h"
#include "wire/error.h"
#include "wire/frontend.h"

namespace pgwarden::wire {

// Requests a client may pipeline before their answers arrive. Each costs one byte. The
// server layer should stop reading from the client well before this (backpressure); reaching
// it is a violation.
inline constexpr std::size_t kMaxPendingRequests = 65'536;

struct ProtocolViolation {
  WireError error = WireError::UnexpectedMessage;
  std::string reason;
};

// What the frontend may send next.
enum class FrontendState : std::uint8_t {
  AwaitingStartup,  // only the StartupMessage
  AuthResponse,     // the 'p' message expected_auth_response() names, or Terminate
  AwaitingServer,   // startup/authentication, the server's turn: only Terminate
  Ready,            // after the first ReadyForQuery: queries, pipelined at will
  CopyIn,           // CopyData, CopyDone, CopyFail (Flush and Sync are ignored by the server)
  CopyBoth,         // CopyData, CopyDone
  Terminated,       // Terminate was sent: nothing more
  ServerClosed,     // the server ended the connection: only Terminate
};

// What the backend may send next (besides the asynchronous NoticeResponse, ParameterStatus
// and NotificationResponse, and a FATAL ErrorResponse, which are allowed after startup).
enum class BackendState : std::uint8_t {
  AwaitingStartup,      // nothing before the StartupMessage
  AuthRequest,          // first authentication request or NegotiateProtocolVersion
  AuthResponsePending,  // the client's turn in the authentication exchange
  PasswordSent,         // after PasswordMessage: AuthenticationOk
  SaslResponseSent,     // after SASL(Initial)Response: SASLContinue, SASLFinal or Ok
  SaslFinal,            // after AuthenticationSASLFinal: AuthenticationOk
  GssResponseSent,      // after GSSResponse: GSSContinue or Ok
  GssContinue,          // after GSSContinue: Ok, or the client answers with GSSResponse
  StartupParameters,    // after AuthenticationOk: ParameterStatus, BackendKeyData, RFQ
  BetweenRequests,      // the next message starts the answer to the oldest request
  QueryResults,         // simple Query between results
  QueryRows,            // simple Query after RowDescription: DataRow*, CommandComplete
  DescribeParameters,   // Describe statement after ParameterDescription: RowDescription/NoData
  ExecuteRows,          // Execute after its first DataRow
  FunctionResult,       // FunctionCall after FunctionCallResponse: ReadyForQuery
  AwaitingReady,        // after an error (or EmptyQueryResponse): only ReadyForQuery
  CopyIn,               // client sending copy data: only ErrorResponse
  CopyInDone,           // client sent CopyDone: CommandComplete
  CopyInFailed,         // client sent CopyFail: ErrorResponse
  CopyOut,              // CopyData*, CopyDone
  CopyBoth,             // CopyData* both ways
  CopyBothServerDone,   // server sent CopyDone, client still may send
  CopyBothClientDone,   // client sent CopyDone, server still may send
  CopyFinished,         // copy ended: CommandComplete
  Closed,               // after a FATAL error or an ended startup: nothing
};

// What the proxy does with a frontend message on_frontend() accepted.
enum class Disposition : std::uint8_t {
  Forward,        // send it to the server
  Discard,        // drop it: the proxy is skipping to Sync after a local error
  AnswerLocally,  // the Sync that ends a local skip: answer with the proxy's ReadyForQuery
};

// What the proxy owes the client now for a request it answers itself.
enum class LocalAnswer : std::uint8_t { None, ErrorResponse, ReadyForQuery };

// A frontend message that expects an answer, in the queue of outstanding requests.
enum class RequestKind : std::uint8_t {
  Query,
  FunctionCall,
  Parse,
  Bind,
  DescribeStatement,
  DescribePortal,
  Execute,
  Close,
  Sync,
};

class ProtocolState {
 public:
  // The pseudo type byte under which on_frontend() takes the untyped StartupMessage.
  static constexpr char kStartupMessage = '\0';

  explicit ProtocolState(std::size_t max_pending_requests = kMaxPendingRequests);

  // Transition of the frontend machine: one message the client sent.
  std::expected<Disposition, ProtocolViolation> on_frontend(char type, Bytes body);
  // Transition of the backend machine: one message the client receives.
  std::expected<void, ProtocolViolation> on_backend(char type, Bytes body);
  // The request on_frontend() just accepted will be answered by the proxy, not forwarded.
  // Valid right after a Query, FunctionCall, Parse, Bind, Describe, Execute or Close that
  // was accepted with Disposition::Forward. When the server is already skipping to Sync,
  // the message expects no answer at all and this only records that it is not forwarded.
  std::expected<void, ProtocolViolation> answer_locally();

  FrontendState frontend_state() const { return frontend_; }
  BackendState backend_state() const { return backend_; }
  // Which 'p' message the codec must decode next (None: 'p' is not allowed now).
  AuthResponseKind expected_auth_response() const;
  // The first ReadyForQuery has been received.
  bool startup_complete() const { return startup_complete_; }
  // ReadyForQuery received and nothing outstanding in either direction.
  bool idle() const;
  // The status byte of the last ReadyForQuery; empty before the first one.
  std::optional<TransactionStatus> transaction_status() const { return transaction_status_; }
  // Sync messages whose ReadyForQuery has not arrived yet.
  std::size_t pending_syncs() const { return pending_syncs_; }
  // ReadyForQuery messages still to come (one per pending Sync, Query and FunctionCall).
  std::size_t pending_ready_for_query() const { return pending_ready_; }
  // Frontend messages still waiting for (the end of) their answer.
  std::size_t pending_requests() const { return queue_.size(); }
  // The request the next backend answer belongs to.
  std::optional<RequestKind> current_request() const;
  // The server hit an error and ignores frontend messages until the next Sync arrives.
  bool server_discarding() const { return server_discard_; }
  // The proxy is dropping frontend messages until the next Sync (after answer_locally()).
  bool locally_discarding() const { return local_discard_; }
  LocalAnswer local_answer_due() const;
  // Terminated, closed by the server, or failed: nothing more may pass.
  bool closed() const;
  bool failed() const { return failed_; }

 private:
  // Ring buffer of outstanding requests, one byte each: the kind, plus a flag for local ones.
  class RequestQueue {
   public:
    explicit RequestQueue(std::size_t limit) : limit_(limit) {}
    std::size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    bool full() const { return size_ >= limit_; }
    RequestKind kind(std::size_t i) const;
    bool local(std::size_t i) const;
    void push(RequestKind kind);  // caller checks full()
    void pop();
    void mark_back_local();
    void truncate(std::size_t n);

   private:
    std::uint8_t at(std::size_t i) const { return buf_[(head_ + i) & (buf_.size() - 1)]; }
    std::vector<std::uint8_t> buf_;  // capacity is a power of two, grown by doubling
    std::size_t head_ = 0;
    std::size_t size_ = 0;
    std::size_t limit_;
  };

  std::expected<Disposition, ProtocolViolation> frontend_transition(char type, Bytes body);
  std::expected<void, ProtocolViolation> backend_transition(char type, Bytes body);
  std::expected<Disposition, ProtocolViolation> frontend_request(char type, Bytes body);
  std::expected<void, ProtocolViolation> backend_authentication(Bytes body);
  std::expected<void, ProtocolViolation> backend_answer(char type, Bytes body);
  std::expected<void, ProtocolViolation> backend_request_start(char type, Bytes body);
  std::expected<void, ProtocolViolation> start_copy(char type);
  std::expected<void, ProtocolViolation> ready_for_query(Bytes body);
  void fail_request();
  void copy_finished();
  void copy_both_finished();
  void complete_request();
  void enqueue(RequestKind kind);
  void pop_request();
  void set_frontend(FrontendState state);

  ProtocolViolation violation(WireError error, std::string reason);
  ProtocolViolation unexpected_frontend(char type, const char* where);
  ProtocolViolation unexpected_backend(char type, const char* where);

  FrontendState frontend_ = FrontendState::AwaitingStartup;
  BackendState backend_ = BackendState::AwaitingStartup;
  AuthResponseKind auth_response_ = AuthResponseKind::None;
  RequestQueue queue_;
  std::optional<TransactionStatus> transaction_status_;
  std::size_t pending_syncs_ = 0;
  std::size_t pending_ready_ = 0;
  // Frontend messages forwarded since the last Sync: a Sync that ends a local skip must
  // reach the server when any of them did.
  std::size_t batch_forwarded_ = 0;
  bool negotiated_ = false;        // NegotiateProtocolVersion seen (at most once)
  bool backend_key_seen_ = false;  // BackendKeyData seen (at most once)
  bool startup_complete_ = false;
  bool server_discard_ = false;  // server skips to Sync; no Sync queued yet
  bool local_discard_ = false;   // proxy skips to Sync after answer_locally()
  bool copy_abandoned_ = false;  // server ended a copy-in; stray copy messages are ignored
  bool last_enqueued_ = false;   // the last frontend message added a queue entry
  bool last_deniable_ = false;   // the last frontend message may be answer_locally()'d
  bool last_counted_ = false;    // the last frontend message counted in batch_forwarded_
  bool failed_ = false;
};

}  // namespace pgwarden::wire
