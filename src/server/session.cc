#include "server/session.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <variant>

#include "crypto/channel_binding.h"
#include "crypto/scram_server.h"
#include "crypto/secret.h"
#include "server/guarded.h"
#include "session/forwarder.h"
#include "session/upstream_auth.h"
#include "tls/cert_identity.h"
#include "tls/tls_info.h"
#include "tls/upstream_tls.h"
#include "wire/backend.h"
#include "wire/frontend.h"
#include "wire/startup.h"

namespace pgwarden::server {
namespace {

using wire::Bytes;
using wire::ByteVector;
using Clock = std::chrono::steady_clock;

// SQLSTATEs of the refusals this file makes (SPEC sections 1-6).
constexpr std::string_view kProtocolViolation = "08P01";
constexpr std::string_view kInvalidAuthorization = "28000";
constexpr std::string_view kInvalidPassword = "28P01";
constexpr std::string_view kTooManyConnections = "53300";
constexpr std::string_view kConnectionFailure = "08006";
constexpr std::string_view kAdminShutdown = "57P01";
constexpr std::string_view kIdleSessionTimeout = "57P05";
constexpr std::string_view kIdleInTransactionTimeout = "25P03";
constexpr std::string_view kInvalidParameterValue = "22023";
constexpr std::string_view kFeatureNotSupported = "0A000";

constexpr std::string_view kTooManyFailures =
    "too many failed authentication attempts from this address; try again later";

// Pump buffers start small (most sessions trade small messages, and idle sessions should
// cost little memory) and double, up to kMaxPumpBuffer, whenever a read fills them (bulk
// results and COPY then move in large reads).
constexpr std::size_t kPumpBuffer = 4 * 1024;
constexpr std::size_t kMaxPumpBuffer = 64 * 1024;
constexpr std::size_t kStartupBuffer = 1024;

// A Terminate message: 'X' and a length of 4.
constexpr std::array<std::byte, 5> kTerminate{std::byte{'X'}, std::byte{0}, std::byte{0},
                                              std::byte{0}, std::byte{4}};

// A read buffer for one direction of the established session: bytes are read in at the
// back, forwarded from the front, and the (tiny) unforwarded rest is moved to the front only
// when the back runs out of room. One allocation for the life of the session.
class IoBuffer {
 public:
  explicit IoBuffer(std::size_t capacity) : buf_(capacity) {}
  std::span<std::byte> prepare() {
    if (grow_next_) {
      grow_next_ = false;
      buf_.resize(std::min(buf_.size() * 2, kMaxPumpBuffer));
    }
    if (end_ == buf_.size()) {
      if (begin_ == 0) {
        buf_.resize(buf_.size() * 2);  // a held-back message larger than the buffer
      } else {
        std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
      }
    }
    return {buf_.data() + end_, buf_.size() - end_};
  }
  void commit(std::size_t n) {
    // A read that filled all the room there was: the peer is sending in bulk.
    if (end_ + n == buf_.size() && buf_.size() < kMaxPumpBuffer) {
      grow_next_ = true;
    }
    end_ += n;
  }
  Bytes data() const { return Bytes(buf_).subspan(begin_, end_ - begin_); }
  void consume(std::size_t n) {
    begin_ += n;
    if (begin_ == end_) {
      begin_ = end_ = 0;
    }
  }
  void append(Bytes b) {
    if (buf_.size() - end_ < b.size()) {
      buf_.resize(end_ + b.size());
    }
    std::memcpy(buf_.data() + end_, b.data(), b.size());
    end_ += b.size();
  }

 private:
  ByteVector buf_;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
  bool grow_next_ = false;
};

std::string endpoint_text(const tcp::endpoint& ep) {
  const auto addr = ep.address();
  if (addr.is_v6()) {
    return "[" + addr.to_string() + "]:" + std::to_string(ep.port());
  }
  return addr.to_string() + ":" + std::to_string(ep.port());
}

std::string seconds_text(config::Duration d) {
  return config::format_duration(d);
}

// Upstream failure at one step of the connection, as the client and the log see it.
struct UpstreamFailure {
  std::string step;         // "connect", "TLS", "TLS verification", "authentication", "startup"
  std::string detail;       // for the client: no secret, no server internals beyond SQLSTATE
  std::string log;          // for pgwarden's log: may add the address and the server's message
  ByteVector server_error;  // the server's own ErrorResponse to relay, when it sent one
};

}  // namespace

namespace {

// Connects to `address`, writes `packet` and closes, all within `timeout`. The packet is
// wiped afterwards (it carries a cancel secret).
awaitable<void> send_to_peer(const config::HostPort& address, ByteVector& packet,
                             config::Duration timeout) {
  auto executor = co_await asio::this_coro::executor;
  auto socket = std::make_shared<tcp::socket>(executor);
  asio::steady_timer timer(executor);
  timer.expires_after(timeout);
  timer.async_wait([socket](std::error_code ec) {
    if (!ec) {
      std::error_code ignored;
      socket->cancel(ignored);
    }
  });
  tcp::resolver resolver(executor);
  const std::string port = std::to_string(address.port);
  auto [rec, results] = co_await resolver.async_resolve(address.host, port, use_nothrow);
  if (!rec) {
    auto [cec, ep] = co_await asio::async_connect(*socket, results, use_nothrow);
    if (!cec) {
      co_await asio::async_write(*socket, asio::buffer(packet), use_nothrow);
    } else {
      spdlog::warn("could not forward a cancel request to peer {}:{}: {}", address.host,
                   address.port, cec.message());
    }
  }
  timer.cancel();
  OPENSSL_cleanse(packet.data(), packet.size());
  std::error_code ignored;
  socket->close(ignored);
}

}  // namespace

class Session {
 public:
  Session(Runtime& runtime, SessionSet& set, tcp::socket socket, std::string listener);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  awaitable<void> run();
  void drain();
  void kill(std::string_view sqlstate, std::string message);
  // Ends the session without waiting for anything (a client that does not read).
  void abort() { stop("aborted at shutdown"); }
  // An exception escaped run(): logged with the session id, counted, and both connections
  // closed.
  void internal_error(std::string_view what);

 private:
  enum class Phase : std::uint8_t { Startup, Forwarding, Ending };

  // ---- phase 1-3 ----
  awaitable<bool> negotiate();
  awaitable<bool> start_client_tls(bool direct);
  awaitable<std::optional<wire::Frame>> read_startup_frame();
  awaitable<std::optional<wire::Frame>> read_client_typed(std::uint32_t max_length);
  awaitable<bool> admit();
  awaitable<bool> authenticate();
  awaitable<bool> scram_exchange();
  awaitable<void> handle_cancel(const wire::CancelRequest& request);

  // ---- phase 4 ----
  awaitable<std::optional<UpstreamFailure>> connect_upstream(Stream& up,
                                                             const BackendRuntime& backend);
  awaitable<bool> login_upstream();
  awaitable<std::optional<wire::Frame>> read_upstream_typed(std::uint32_t max_length);
  awaitable<bool> relay_passthrough_auth(ByteVector& burst);
  // Passthrough when both legs are TLS and the server offers -PLUS: the client's password,
  // then SCRAM-SHA-256-PLUS upstream (see the call site).
  awaitable<bool> passthrough_with_password(wire::Bytes sasl_request);
  // pgwarden's own login with `auth`, from the already read request `first` (or none). An
  // ErrorResponse is refused as 08006 (static credentials), or with `client_password` is the
  // server's verdict on the client's password and is relayed (relay_upstream_verdict).
  awaitable<bool> run_upstream_auth(session::UpstreamAuth& auth, wire::Bytes first,
                                    bool client_password);
  awaitable<void> relay_upstream_verdict(const wire::Frame& frame);
  // Records an authentication verdict in the failure limiter, atomically with the decision
  // whether the address is over its limit. False when the address is blocked: the client was
  // then refused here with 28000, whatever the verdict (the caller must say nothing more).
  // True otherwise: the caller goes on with the login, or sends its own failure.
  awaitable<bool> record_verdict(std::string_view method, bool success);
  // For a message of the authentication phase other than ErrorResponse: absorbs
  // NegotiateProtocolVersion ('v'), accepts 'R', refuses anything else.
  std::optional<UpstreamFailure> check_auth_phase_message(const wire::Frame& frame);
  awaitable<bool> finish_startup(ByteVector& burst);

  // ---- phase 5 ----
  awaitable<void> forward();
  awaitable<void> pump_client();
  awaitable<void> pump_server();
  bool idle() const { return outstanding_ == 0 && !client_dirty_ && last_status_ == 'I'; }
  void stop(std::string reason);
  void arm_idle_timer();
  // The timeout that applies in the session's current state (0: none, or busy), and since
  // when it has been in that state: the later of the client's last bytes and the server's
  // last ReadyForQuery.
  Clock::duration idle_limit() const;
  Clock::time_point idle_since() const { return std::max(last_client_activity_, last_ready_); }

  // ---- refusals, audit ----
  // `message` is a view: callers pass literals or named strings, never a temporary (rule 13).
  awaitable<void> refuse(std::string_view sqlstate, std::string_view message,
                         bool audit_denied = true);
  awaitable<void> refuse_upstream(const UpstreamFailure& failure);
  // The same for a failure without a log text or a server error: builds the UpstreamFailure
  // in its own frame, so that no call site puts a temporary into a co_await (rule 13).
  awaitable<void> refuse_upstream(std::string_view step, std::string_view detail);
  audit::SessionFacts facts() const;
  void audit_auth_failure(std::string_view method, std::string_view reason);
  // Ends the startup phase without an ErrorResponse (a client that said Terminate).
  void close_quietly(std::string_view reason);

  Runtime& runtime_;
  SessionSet& set_;
  std::shared_ptr<const Generation> generation_;
  const config::Listener* listener_ = nullptr;
  std::string listener_name_;
  ListenerState& listener_state_;
  std::shared_ptr<Session*> self_;  // weak_ptrs to it guard timer handlers

  Stream client_;
  std::optional<Stream> upstream_;
  std::shared_ptr<const BackendRuntime> backend_;
  std::uint64_t id_ = 0;
  std::string client_text_;
  std::string client_ip_;
  Clock::time_point started_ = Clock::now();
  Clock::time_point last_client_activity_ = Clock::now();
  Clock::time_point last_ready_ = Clock::now();  // the server's last ReadyForQuery

  Phase phase_ = Phase::Startup;
  asio::steady_timer deadline_;
  asio::steady_timer idle_timer_;
  bool startup_timed_out_ = false;
  bool upstream_timed_out_ = false;   // connect_timeout expired during login_upstream()
  bool upstream_negotiated_ = false;  // the server sent NegotiateProtocolVersion
  bool direct_tls_ = false;
  bool over_limit_ = false;
  std::optional<std::pair<std::string, std::string>> kill_request_;  // sqlstate, message

  wire::FrameBuffer client_in_{kStartupBuffer};
  wire::FrameBuffer upstream_in_{kStartupBuffer};
  ByteVector startup_body_;  // an owned copy of the client's StartupMessage body
  std::optional<wire::StartupMessage> startup_;
  session::UpstreamStartup upstream_startup_;
  std::string user_;
  std::string database_;
  std::string backend_user_;
  std::string upstream_auth_method_;
  std::optional<identity::Identity> identity_;
  std::optional<audit::TlsFacts> tls_facts_;
  std::optional<crypto::ScramServer> scram_;
  std::string scram_final_;  // server-final-message, sent together with AuthenticationOk
  std::optional<session::ClientKey> client_key_;

  // Forwarding bookkeeping (see idle()).
  std::uint64_t outstanding_ = 0;  // Query/Sync/FunctionCall sent, ReadyForQuery not yet seen
  bool client_dirty_ = false;      // other messages sent since the last of those
  char last_status_ = 'I';
  bool server_spoke_error_last_ = false;
  bool client_terminated_ = false;
  // The client stopped in the middle of a message whose first part already went upstream:
  // a Terminate now would land inside that message's body.
  bool client_mid_message_ = false;
  bool draining_ = false;
  bool stopping_ = false;
  std::string end_reason_;
  std::uint64_t bytes_in_ = 0;
  std::uint64_t bytes_out_ = 0;
  std::uint64_t statements_ = 0;
};

// ============================================================================================

Session::Session(Runtime& runtime, SessionSet& set, tcp::socket socket, std::string listener)
    : runtime_(runtime),
      set_(set),
      generation_(runtime.generation()),
      listener_name_(std::move(listener)),
      listener_state_(runtime.listener_state(listener_name_)),
      self_(std::make_shared<Session*>(this)),
      client_(std::move(socket)),
      deadline_(client_.socket().get_executor()),
      idle_timer_(client_.socket().get_executor()) {
  listener_ = generation_->find_listener(listener_name_);
  id_ = runtime_.new_session_id();
  std::error_code ec;
  auto remote = client_.socket().remote_endpoint(ec);
  if (!ec) {
    client_text_ = endpoint_text(remote);
    client_ip_ = remote.address().to_string();
  } else {
    client_text_ = "unknown";
    client_ip_ = "unknown";
  }
  // Accepted just before a drain closed the acceptors, this session may have missed the
  // drain_session() sweep: it then ends with 57P01 as soon as it is logged in.
  draining_ = runtime_.draining.load();
  const auto count = ++listener_state_.connections;
  over_limit_ = count > listener_->max_connections;
  ++runtime_.live_sessions;
  set_.add(this);
}

Session::~Session() {
  set_.remove(this);
  if (client_key_) {
    runtime_.cancels().remove(*client_key_);
    session::wipe(client_key_->secret);
  }
  if (!startup_body_.empty()) {
    OPENSSL_cleanse(startup_body_.data(), startup_body_.size());
  }
  // Whatever path ended the session: no password, proof or secret stays in freed memory.
  client_in_.wipe();
  upstream_in_.wipe();
  --listener_state_.connections;
  --runtime_.live_sessions;
}

audit::SessionFacts Session::facts() const {
  audit::SessionFacts f;
  f.session_id = id_;
  f.listener = listener_name_;
  f.client = client_text_;
  f.tls = tls_facts_;
  f.identity = identity_;
  f.database = database_;
  f.backend = listener_->backend;
  f.backend_user = backend_user_;
  f.user = user_;
  return f;
}

void Session::audit_auth_failure(std::string_view method, std::string_view reason) {
  runtime_.audit(audit::auth_failure(facts(), method, reason));
}

void Session::internal_error(std::string_view what) {
  ++runtime_.session_exceptions;
  spdlog::error("session {} from {}: internal error, session closed: {}",
                audit::format_session_id(id_), client_text_, what);
  end_reason_ = "internal error";
  client_.close();
  if (upstream_) {
    upstream_->close();
  }
}

void Session::close_quietly(std::string_view reason) {
  spdlog::debug("session {} from {}: closed: {}", audit::format_session_id(id_), client_text_,
                reason);
  client_.close();
  end_reason_ = "client terminated";
}

awaitable<void> Session::refuse(std::string_view sqlstate, std::string_view message,
                                bool audit_denied) {
  spdlog::info("session {} from {}: refused ({}): {}", audit::format_session_id(id_), client_text_,
               sqlstate, message);
  if (audit_denied) {
    runtime_.audit(audit::session_denied(facts(), sqlstate, message));
  }
  ByteVector out;
  wire::encode_error(out, wire::Severity::Fatal, sqlstate, message);
  co_await client_.write(out);
  client_.close();
  end_reason_ = "refused";
}

awaitable<void> Session::refuse_upstream(const UpstreamFailure& given) {
  // Whatever step noticed it, a deadline that expired is what the client is told: the
  // listener's startup_timeout, or the backend's connect_timeout.
  UpstreamFailure failure = given;
  if (startup_timed_out_ && failure.server_error.empty()) {
    failure.detail =
        "timed out after " + seconds_text(listener_->startup_timeout) + " (startup_timeout)";
  } else if (upstream_timed_out_ && failure.server_error.empty()) {
    failure.detail =
        "timed out after " +
        seconds_text(generation_->config->find_backend(listener_->backend)->connect_timeout) +
        " (connect_timeout)";
  }
  spdlog::warn("session {} from {}: upstream \"{}\" failed at {}: {}",
               audit::format_session_id(id_), client_text_, listener_->backend, failure.step,
               failure.log.empty() ? failure.detail : failure.log);
  if (!failure.server_error.empty()) {
    // The server's own error after authentication (e.g. 3D000 database does not exist).
    runtime_.audit(audit::session_denied(facts(), "upstream", failure.detail));
    co_await client_.write(failure.server_error);
    client_.close();
    co_return;
  }
  const std::string message =
      "could not connect to the upstream server: " + failure.step + ": " + failure.detail;
  co_await refuse(kConnectionFailure, message);
}

awaitable<void> Session::refuse_upstream(std::string_view step, std::string_view detail) {
  const UpstreamFailure failure{std::string(step), std::string(detail), {}, {}};
  co_await refuse_upstream(failure);
}

// ---------------------------------------------------------------------------- run

awaitable<void> Session::run() {
  {
    std::weak_ptr<Session*> weak = self_;
    deadline_.expires_after(listener_->startup_timeout);
    deadline_.async_wait([weak](std::error_code ec) {
      auto self = weak.lock();
      if (ec || !self || (*self)->phase_ != Phase::Startup) {
        return;
      }
      Session& s = **self;
      s.startup_timed_out_ = true;
      s.client_.cancel();
      if (s.upstream_) {
        s.upstream_->cancel();
      }
    });
  }

  bool ok = co_await negotiate();
  if (ok) {
    ok = co_await admit();
  }
  if (ok) {
    ok = co_await authenticate();
  }
  if (ok) {
    ok = co_await login_upstream();
  }
  deadline_.cancel();
  if (!ok && kill_request_) {
    ByteVector out;
    wire::encode_error(out, wire::Severity::Fatal, kill_request_->first, kill_request_->second);
    co_await client_.write(out);
  }
  if (!ok) {
    if (startup_timed_out_) {
      spdlog::info("session {} from {}: closed: startup_timeout ({}) expired",
                   audit::format_session_id(id_), client_text_,
                   seconds_text(listener_->startup_timeout));
      runtime_.audit(audit::session_denied(facts(), kProtocolViolation, "startup timeout"));
    }
    client_.close();
    if (upstream_) {
      upstream_->close();
    }
    spdlog::debug("session {} from {}: startup ended ({})", audit::format_session_id(id_),
                  client_text_, end_reason_.empty() ? "closed" : end_reason_);
    co_return;
  }

  phase_ = Phase::Forwarding;
  runtime_.audit(audit::session_start(facts(), upstream_auth_method_));
  spdlog::info("session {} from {}: {} \"{}\" via {} -> backend \"{}\" as \"{}\" ({})",
               audit::format_session_id(id_), client_text_, identity_ ? "identity" : "user",
               identity_ ? identity_->name : user_,
               identity_ ? config::to_string(identity_->method) : "?", listener_->backend,
               backend_user_, upstream_auth_method_);
  if (draining_) {
    kill(kAdminShutdown, "terminating connection due to administrator command");
  }
  co_await forward();

  phase_ = Phase::Ending;
  audit::SessionTotals totals;
  totals.duration = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started_);
  totals.bytes_in = bytes_in_;
  totals.bytes_out = bytes_out_;
  totals.statements = statements_;
  totals.reason = end_reason_;
  runtime_.audit(audit::session_end(facts(), totals));
  spdlog::info("session {} ended: {}", audit::format_session_id(id_), end_reason_);
}

// ---------------------------------------------------------------------------- negotiation

awaitable<std::optional<wire::Frame>> Session::read_startup_frame() {
  for (;;) {
    // A client that closes right after connecting may send its Terminate before, or instead
    // of, its StartupMessage (node-postgres's end() after connect(), pools that shrink).
    // PostgreSQL closes such a connection quietly; so do we. No startup packet can start
    // with 'X' (its length would exceed any limit), so this takes nothing from the framer.
    const auto pending = client_in_.pending();
    if (!pending.empty() && pending[0] == std::byte{'X'} && pending.size() < kTerminate.size()) {
      auto buf = client_in_.prepare(kTerminate.size());
      auto [ec, n] = co_await client_.read_some(buf);
      if (ec || n == 0) {
        co_return std::nullopt;
      }
      client_in_.commit(n);
      continue;
    }
    if (pending.size() >= kTerminate.size() &&
        std::equal(kTerminate.begin(), kTerminate.end(), pending.begin())) {
      close_quietly("client sent Terminate before its startup packet");
      co_return std::nullopt;
    }
    auto frame = client_in_.next_startup(listener_->limits.max_startup_packet);
    if (!frame) {
      const std::string message =
          "invalid startup packet: " + std::string(wire::to_string(frame.error()));
      co_await refuse(kProtocolViolation, message);
      co_return std::nullopt;
    }
    if (*frame) {
      co_return *frame;
    }
    auto buf = client_in_.prepare(std::max<std::size_t>(client_in_.need(), 512));
    auto [ec, n] = co_await client_.read_some(buf);
    if (ec || n == 0) {
      co_return std::nullopt;  // the client went away (or the deadline closed it)
    }
    client_in_.commit(n);
  }
}

awaitable<std::optional<wire::Frame>> Session::read_client_typed(std::uint32_t max_length) {
  for (;;) {
    auto frame = client_in_.next_typed(max_length);
    if (!frame) {
      const std::string message = "invalid message: " + std::string(wire::to_string(frame.error()));
      co_await refuse(kProtocolViolation, message);
      co_return std::nullopt;
    }
    if (*frame && (*frame)->type == 'X') {
      // Terminate in the middle of authentication: the client gave up; close as PostgreSQL
      // does, without an error it would only report as a failure of its own.
      close_quietly("client sent Terminate during authentication");
      co_return std::nullopt;
    }
    if (*frame) {
      co_return *frame;
    }
    auto buf = client_in_.prepare(std::max<std::size_t>(client_in_.need(), 512));
    auto [ec, n] = co_await client_.read_some(buf);
    if (ec || n == 0) {
      co_return std::nullopt;
    }
    client_in_.commit(n);
  }
}

awaitable<bool> Session::start_client_tls(bool direct) {
  auto it = generation_->listener_tls.find(listener_name_);
  if (it == generation_->listener_tls.end()) {
    co_return false;
  }
  if (!client_.start_tls(it->second.tls->default_context())) {
    co_return false;
  }
  // OpenSSL keeps the last decrypted record in its read buffer, and frees that buffer
  // unwiped: during startup that record may be a password or a SCRAM proof. Cleansed after
  // each read until forwarding starts (forward() turns it off: it costs a memset per record).
  SSL_set_options(client_.ssl(), SSL_OP_CLEANSE_PLAINTEXT);
  if (auto ec = co_await client_.handshake(true)) {
    spdlog::info("session {} from {}: TLS handshake failed: {}", audit::format_session_id(id_),
                 client_text_,
                 client_.openssl_error() != 0
                     ? tls::handshake_failure_reason(client_.ssl(), client_.openssl_error())
                     : ec.message());
    co_return false;
  }
  if (direct && !tls::alpn_is_postgresql(client_.ssl())) {
    // PostgreSQL 17: direct TLS is only for clients that say they speak PostgreSQL in ALPN,
    // so a TLS connection meant for another service cannot be confused with ours.
    co_await refuse(kProtocolViolation,
                    "direct TLS connection without ALPN protocol \"postgresql\"");
    co_return false;
  }
  auto info = tls::describe(client_.ssl());
  tls_facts_ = audit::TlsFacts{info.version, info.cipher, info.sni, info.client_subject};
  co_return true;
}

awaitable<bool> Session::negotiate() {
  const bool tls_offered = listener_->tls != config::ListenerTls::Disable;
  // Direct TLS (sslnegotiation=direct): the very first byte is a TLS handshake record.
  if (tls_offered) {
    std::array<std::byte, 1> first{};
    auto [ec, n] = co_await client_.socket().async_receive(asio::buffer(first),
                                                           tcp::socket::message_peek, use_nothrow);
    if (ec || n == 0) {
      co_return false;
    }
    if (first[0] == wire::kTlsHandshakeRecord) {
      direct_tls_ = true;
      if (!co_await start_client_tls(true)) {
        co_return false;
      }
    }
  }

  bool ssl_requested = direct_tls_;
  bool gss_requested = false;
  for (;;) {
    auto frame = co_await read_startup_frame();
    if (!frame) {
      co_return false;
    }
    auto packet = wire::decode_startup(frame->body);
    if (!packet) {
      if (packet.error() == wire::WireError::UnknownProtocol) {
        // As PostgreSQL: protocol 2.0 or 4.x is not spoken here.
        co_await refuse(kFeatureNotSupported,
                        "unsupported frontend protocol: pgwarden supports 3.0 to 3.2");
      } else {
        const std::string message =
            "invalid startup packet: " + std::string(wire::to_string(packet.error()));
        co_await refuse(kProtocolViolation, message);
      }
      co_return false;
    }
    if (std::holds_alternative<wire::SslRequest>(*packet)) {
      if (ssl_requested || client_.is_tls()) {
        co_await refuse(kProtocolViolation, "duplicate SSLRequest");
        co_return false;
      }
      ssl_requested = true;
      std::error_code ec;
      const std::size_t queued = client_.socket().available(ec);
      if (!client_in_.empty() || queued > 0 || ec) {
        // Bytes sent before our answer could have been injected by a machine in the middle
        // to be read as plaintext after the handshake (CVE-2021-23214): refuse.
        co_await refuse(kProtocolViolation, "received unencrypted data after SSL request");
        co_return false;
      }
      const std::byte answer{static_cast<unsigned char>(tls_offered ? 'S' : 'N')};
      if (co_await client_.write(std::span(&answer, 1))) {
        co_return false;
      }
      if (tls_offered && !co_await start_client_tls(false)) {
        co_return false;
      }
      continue;
    }
    if (std::holds_alternative<wire::GssEncRequest>(*packet)) {
      if (gss_requested || client_.is_tls()) {
        co_await refuse(kProtocolViolation, "unexpected GSSENCRequest");
        co_return false;
      }
      gss_requested = true;
      const std::byte answer{'N'};
      if (co_await client_.write(std::span(&answer, 1))) {
        co_return false;
      }
      continue;
    }
    if (auto* cancel = std::get_if<wire::CancelRequest>(&*packet)) {
      co_await handle_cancel(*cancel);
      co_return false;
    }
    // StartupMessage: keep an owned copy (the views point into client_in_).
    startup_body_.assign(frame->body.begin(), frame->body.end());
    auto parsed = wire::parse_startup_message(startup_body_);
    if (!parsed) {
      co_await refuse(kProtocolViolation, "invalid startup packet");
      co_return false;
    }
    startup_ = std::move(*parsed);
    co_return true;
  }
}

awaitable<void> Session::handle_cancel(const wire::CancelRequest& request) {
  if (!runtime_.cancel_limiter().allow(identity::address_key(client_ip_))) {
    // A flood of guessed keys: dropped unanswered, like a key that matches nothing.
    spdlog::debug("cancel request from {} dropped: rate limit", client_text_);
    co_return;
  }
  auto& registry = runtime_.cancels();
  const auto owner = registry.owner_of(request.secret_key);
  if (owner != registry.instance_id()) {
    for (const auto& peer : generation_->config->cluster.peers) {
      if (peer.instance_id == owner) {
        // Another pgwarden instance issued this key: hand the request to it unchanged,
        // bounded like an upstream connection (a silent peer must not hold this slot).
        ByteVector out;
        wire::encode(request, out);
        const auto timeout = generation_->config->find_backend(listener_->backend)->connect_timeout;
        co_await send_to_peer(peer.address, out, timeout);
        co_return;
      }
    }
    co_return;
  }
  auto target = registry.find(request.process_id, request.secret_key);
  if (!target) {
    // As PostgreSQL: a CancelRequest that matches nothing is dropped without an answer.
    spdlog::debug("cancel request from {} matched no session", client_text_);
    co_return;
  }
  co_await forward_cancel(*target);
  session::wipe(target->upstream_secret);
}

// ---------------------------------------------------------------------------- admission

awaitable<bool> Session::admit() {
  const auto& s = *startup_;
  if (auto user = s.find("user")) {
    user_ = std::string(*user);
  }
  if (user_.empty()) {
    co_await refuse(kInvalidAuthorization, "no PostgreSQL user name specified in startup packet");
    co_return false;
  }
  auto db = s.find("database");
  database_ = db && !db->empty() ? std::string(*db) : user_;

  const bool tls = client_.is_tls();
  if (!tls && (listener_->tls == config::ListenerTls::Require ||
               listener_->client_cert == config::ClientCertMode::Require)) {
    co_await refuse(kInvalidAuthorization, "TLS required");
    co_return false;
  }
  if (listener_->client_cert == config::ClientCertMode::Require &&
      (!tls || SSL_get0_peer_certificate(client_.ssl()) == nullptr ||
       SSL_get_verify_result(client_.ssl()) != X509_V_OK)) {
    co_await refuse(kInvalidAuthorization, "a valid client certificate is required");
    co_return false;
  }
  if (over_limit_) {
    co_await refuse(kTooManyConnections, "sorry, too many clients already");
    co_return false;
  }
  const auto& backend_cfg = *generation_->config->find_backend(listener_->backend);
  auto up = session::build_upstream_startup(s, "", "");
  if (!up) {
    // 42501 for a setting pgwarden controls, 22023 for malformed options.
    const std::string message = std::move(up.error().message);
    co_await refuse(up.error().sqlstate, message);
    co_return false;
  }
  upstream_startup_ = std::move(*up);
  if (upstream_startup_.replication) {
    co_await refuse(kInvalidAuthorization, "replication connections are not allowed");
    co_return false;
  }
  for (const auto& [name, value] : upstream_startup_.own_settings) {
    if (name == "pgwarden.preset") {
      if (value != "readonly" && value != "readwrite" && value != "admin") {
        const std::string message =
            "invalid value for parameter \"pgwarden.preset\": \"" + value + "\"";
        co_await refuse(kInvalidParameterValue, message);
        co_return false;
      }
    } else {
      const std::string message = "unrecognized configuration parameter \"" + name + "\"";
      co_await refuse(kInvalidParameterValue, message);
      co_return false;
    }
  }
  // The credentials mode decides what the server is asked for.
  std::string upstream_db = backend_cfg.database.value_or(database_);
  if (backend_cfg.credentials == config::Credentials::Static) {
    backend_user_ = backend_cfg.user.value_or("");
  } else {
    backend_user_ = user_;
  }
  upstream_startup_.parameters[0].second = backend_user_;
  upstream_startup_.parameters[1].second = upstream_db;

  if (listener_state_.limiter.blocked(client_ip_)) {
    co_await refuse(kInvalidAuthorization, kTooManyFailures);
    co_return false;
  }
  backend_ = generation_->backends.at(listener_->backend);
  co_return true;
}

// ---------------------------------------------------------------------------- identity

awaitable<bool> Session::authenticate() {
  for (auto method : listener_->auth) {
    switch (method) {
      case config::AuthMethod::Cert: {
        X509* cert = client_.is_tls() ? SSL_get0_peer_certificate(client_.ssl()) : nullptr;
        if (cert == nullptr || SSL_get_verify_result(client_.ssl()) != X509_V_OK) {
          continue;  // no verified certificate: the next method decides
        }
        auto name = tls::certificate_identity(cert, listener_->cert_identity);
        if (!name) {
          audit_auth_failure("cert", name.error());
          if (co_await record_verdict("cert", false)) {
            const std::string message =
                "client certificate does not name an identity: " + name.error();
            co_await refuse(kInvalidAuthorization, message);
          }
          co_return false;
        }
        identity_ = identity::Identity{*name, method, {}, {}};
        if (tls_facts_ && tls_facts_->client_subject) {
          identity_->attributes["cert_subject"] = *tls_facts_->client_subject;
        }
        co_return true;
      }
      case config::AuthMethod::Trust:
        identity_ = identity::Identity{user_, method, {}, {}};
        co_return true;
      case config::AuthMethod::Scram:
        co_return co_await scram_exchange();
      case config::AuthMethod::Passthrough:
        // Decided by the upstream during login_upstream().
        co_return true;
      case config::AuthMethod::Token:
      case config::AuthMethod::ApiKey:
      case config::AuthMethod::Tailscale:
        continue;  // refused at start-up (server.cc); never reached
    }
  }
  audit_auth_failure("none", "no authentication method applies");
  co_await refuse(kInvalidAuthorization, "no authentication method of this listener applies");
  co_return false;
}

awaitable<bool> Session::scram_exchange() {
  const std::string failed = "password authentication failed for user \"" + user_ + "\"";
  std::optional<crypto::ScramVerifier> verifier;
  crypto::ScramServerOptions options;
  // An unknown user's mock exchange is keyed and shaped by the users file (config::MockScram):
  // the file's usual iteration count and salt length, and the same salt after a restart, as a
  // real user's. Without a parsed users file the key is empty and the exchange fails closed.
  std::span<const std::byte> mock_key;
  if (listener_->users) {
    if (const auto* entry = listener_->users->find(user_)) {
      verifier = entry->verifier;
    }
    mock_key = listener_->users->mock.key;
    options.mock_iterations = listener_->users->mock.iterations;
    options.mock_salt_length = listener_->users->mock.salt_length;
  }
  if (client_.is_tls()) {
    // tls-server-end-point of the certificate this handshake actually served (SNI aware).
    options.channel_binding = crypto::tls_server_end_point(SSL_get_certificate(client_.ssl()));
  }
  scram_.emplace(std::move(verifier), user_, mock_key, std::move(options));

  ByteVector out;
  std::vector<std::string_view> mechanisms(scram_->mechanisms().begin(),
                                           scram_->mechanisms().end());
  wire::encode(wire::AuthenticationSasl{mechanisms}, out);
  if (co_await client_.write(out)) {
    co_return false;
  }
  const auto max_auth = listener_->limits.max_auth_message;

  auto first = co_await read_client_typed(max_auth);
  if (!first) {
    co_return false;
  }
  auto initial = first->type == 'p' ? wire::parse_sasl_initial_response(first->body)
                                    : std::unexpected(wire::WireError::UnexpectedMessage);
  if (!initial || !initial->data) {
    co_await refuse(kProtocolViolation, "expected SASL initial response");
    co_return false;
  }
  // As PostgreSQL answers: a proof that does not verify is 28P01 (the same text for an
  // unknown user, whose exchange runs on a mock verifier); a message that breaks the SCRAM
  // grammar or its channel-binding rules is a protocol violation, 08P01. Which one happens
  // never depends on whether the user exists.
  auto refusal = [&](crypto::CryptoError e) {
    audit_auth_failure("scram", e == crypto::CryptoError::BadProof
                                    ? (scram_->is_mock() ? "unknown user" : "wrong password")
                                    : crypto::to_string(e));
    return e == crypto::CryptoError::BadProof
               ? std::pair<std::string_view, std::string>{kInvalidPassword, failed}
               : std::pair<std::string_view, std::string>{
                     kProtocolViolation,
                     "invalid SCRAM message: " + std::string(crypto::to_string(e))};
  };
  auto reply = scram_->on_client_first(initial->mechanism, *initial->data);
  if (!reply) {
    const auto [sqlstate, message] = refusal(reply.error());
    if (co_await record_verdict("scram", false)) {
      co_await refuse(sqlstate, message, false);
    }
    co_return false;
  }
  out.clear();
  wire::encode(wire::AuthenticationSaslContinue{wire::as_bytes(reply->data)}, out);
  if (co_await client_.write(out)) {
    co_return false;
  }
  auto second = co_await read_client_typed(max_auth);
  if (!second) {
    co_return false;
  }
  auto response = second->type == 'p' ? wire::parse_sasl_response(second->body)
                                      : std::unexpected(wire::WireError::UnexpectedMessage);
  if (!response) {
    co_await refuse(kProtocolViolation, "expected SASL response");
    co_return false;
  }
  auto final_reply = scram_->on_client_final(response->data);
  if (!final_reply) {
    const auto [sqlstate, message] = refusal(final_reply.error());
    if (co_await record_verdict("scram", false)) {
      co_await refuse(sqlstate, message, false);
    }
    co_return false;
  }
  // The verdict and the limiter's decision together: nothing was awaited since the proof was
  // checked, so parallel handshakes cannot all slip under the limit.
  if (!co_await record_verdict("scram", true)) {
    co_return false;
  }
  scram_final_ = std::move(final_reply->data);
  identity_ = identity::Identity{user_, config::AuthMethod::Scram, {}, {}};
  co_return true;
}

// ---------------------------------------------------------------------------- upstream

awaitable<std::optional<UpstreamFailure>> Session::connect_upstream(Stream& up,
                                                                    const BackendRuntime& backend) {
  const auto& b = *backend.backend;
  tcp::resolver resolver(client_.socket().get_executor());
  const std::string port = std::to_string(b.address.port);
  auto [rec, results] = co_await resolver.async_resolve(b.address.host, port, use_nothrow);
  if (rec) {
    co_return UpstreamFailure{"connect",
                              "could not resolve the server address",
                              "resolve " + b.address.host + ": " + rec.message(),
                              {}};
  }
  auto [cec, ep] = co_await asio::async_connect(up.socket(), results, use_nothrow);
  if (cec) {
    co_return UpstreamFailure{
        "connect",
        cec.message(),
        b.address.host + ":" + std::to_string(b.address.port) + ": " + cec.message(),
        {}};
  }
  std::error_code ignored;
  up.socket().set_option(tcp::no_delay(true), ignored);
  if (b.tls == config::BackendTls::Disable) {
    co_return std::nullopt;
  }
  ByteVector out;
  wire::encode(wire::SslRequest{}, out);
  if (auto ec = co_await up.write(out)) {
    co_return UpstreamFailure{"TLS", "could not send SSLRequest: " + ec.message(), {}, {}};
  }
  std::array<std::byte, 1> answer{};
  auto [aec, an] = co_await asio::async_read(up.socket(), asio::buffer(answer), use_nothrow);
  if (aec) {
    co_return UpstreamFailure{"TLS", "no answer to SSLRequest: " + aec.message(), {}, {}};
  }
  if (answer[0] != std::byte{'S'}) {
    // Never a silent downgrade: TLS was configured, so a server without it is an error.
    co_return UpstreamFailure{"TLS",
                              "the server does not support TLS, and tls = \"" +
                                  std::string(config::to_string(b.tls)) + "\" requires it",
                              {},
                              {}};
  }
  // The server must not have sent anything after 'S' before the handshake (MITM injection).
  std::error_code avail_ec;
  if (up.socket().available(avail_ec) > 0) {
    co_return UpstreamFailure{
        "TLS", "unexpected data from the server after its TLS answer", {}, {}};
  }
  if (!up.start_tls(backend.tls->context()) || !backend.tls->prepare(up.ssl())) {
    co_return UpstreamFailure{"TLS", "could not configure the TLS connection", {}, {}};
  }
  if (auto hec = co_await up.handshake(false)) {
    std::string reason = up.openssl_error() != 0
                             ? tls::handshake_failure_reason(up.ssl(), up.openssl_error())
                             : hec.message();
    co_return UpstreamFailure{"TLS verification", reason, {}, {}};
  }
  co_return std::nullopt;
}

awaitable<std::optional<wire::Frame>> Session::read_upstream_typed(std::uint32_t max_length) {
  for (;;) {
    auto frame = upstream_in_.next_typed(max_length);
    if (!frame) {
      co_return std::nullopt;
    }
    if (*frame) {
      co_return *frame;
    }
    auto buf = upstream_in_.prepare(std::max<std::size_t>(upstream_in_.need(), 512));
    auto [ec, n] = co_await upstream_->read_some(buf);
    if (ec || n == 0) {
      co_return std::nullopt;
    }
    upstream_in_.commit(n);
  }
}

awaitable<bool> Session::login_upstream() {
  upstream_.emplace(tcp::socket(client_.socket().get_executor()));
  const auto& b = *backend_->backend;
  const auto connect_start = Clock::now();

  // connect_timeout bounds connect + TLS + authentication + startup. The handler may run
  // after this frame is gone (expired and queued just as the upstream answered), so it
  // holds only weak state.
  asio::steady_timer timer(client_.socket().get_executor());
  timer.expires_after(b.connect_timeout);
  std::weak_ptr<Session*> weak = self_;
  timer.async_wait([weak](std::error_code ec) {
    auto self = weak.lock();
    if (ec || !self || (*self)->phase_ != Phase::Startup) {
      return;
    }
    (*self)->upstream_timed_out_ = true;
    if ((*self)->upstream_) {
      (*self)->upstream_->cancel();
    }
  });
  struct CancelTimer {
    asio::steady_timer& t;
    ~CancelTimer() { t.cancel(); }
  } cancel_timer{timer};

  if (auto failure = co_await connect_upstream(*upstream_, *backend_)) {
    co_await refuse_upstream(*failure);
    co_return false;
  }

  ByteVector out;
  wire::StartupMessage sm;
  sm.major = 3;
  sm.minor = upstream_startup_.minor;
  for (const auto& [k, v] : upstream_startup_.parameters) {
    sm.parameters.push_back({k, v});
  }
  wire::encode(sm, out);
  if (co_await upstream_->write(out)) {
    co_await refuse_upstream("startup", "connection lost");
    co_return false;
  }

  ByteVector burst;  // everything the client gets at the end of startup, in one write
  bool ok = false;
  if (b.credentials == config::Credentials::Passthrough) {
    ok = co_await relay_passthrough_auth(burst);
  } else {
    // Static credentials: pgwarden logs in itself.
    session::UpstreamAuthOptions opts;
    opts.user = backend_user_;
    opts.password = b.password ? b.password->reveal() : std::string_view{};
    opts.scram_key_cache = &backend_->scram_keys;
    opts.tls_active = upstream_->is_tls();
    if (upstream_->is_tls()) {
      opts.channel_binding_data =
          crypto::tls_server_end_point(SSL_get0_peer_certificate(upstream_->ssl()));
    }
    session::UpstreamAuth auth(std::move(opts));
    ok = co_await run_upstream_auth(auth, {}, false);
    upstream_auth_method_ = std::string(auth.method());
    if (ok && !scram_final_.empty()) {
      wire::encode(wire::AuthenticationSaslFinal{wire::as_bytes(scram_final_)}, burst);
    }
  }
  if (!ok) {
    co_return false;
  }
  ok = co_await finish_startup(burst);
  if (ok) {
    spdlog::debug(
        "session {}: upstream ready in {} ms", audit::format_session_id(id_),
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - connect_start)
            .count());
  }
  co_return ok;
}

awaitable<bool> Session::run_upstream_auth(session::UpstreamAuth& auth, wire::Bytes first,
                                           bool client_password) {
  // The first request, when the caller read it already: copied, because reading from the
  // client in between must not leave it pointing into a buffer that changed.
  ByteVector pending(first.begin(), first.end());
  ByteVector out;
  for (;;) {
    wire::Bytes body = pending;
    if (pending.empty()) {
      auto frame = co_await read_upstream_typed(wire::kMaxAuthMessage);
      if (!frame) {
        co_await refuse_upstream("authentication", "connection lost or invalid message");
        co_return false;
      }
      if (frame->type == 'E') {
        if (client_password) {
          co_await relay_upstream_verdict(*frame);
          co_return false;
        }
        auto err = wire::parse_error_response(frame->body);
        std::string code = err ? std::string(err->sqlstate()) : "?";
        std::string said = err ? std::string(err->message()) : std::string("?");
        const UpstreamFailure failure{"authentication",
                                      "the server refused the login (SQLSTATE " + code + ")",
                                      "server said: " + said,
                                      {}};
        co_await refuse_upstream(failure);
        co_return false;
      }
      if (auto bad = check_auth_phase_message(*frame)) {
        co_await refuse_upstream(*bad);
        co_return false;
      }
      if (frame->type == 'v') {
        continue;
      }
      body = frame->body;
    }
    out.clear();
    auto step = auth.on_authentication(body, out);
    pending.clear();
    if (!step) {
      co_await refuse_upstream("authentication", step.error());
      co_return false;
    }
    const bool lost = !out.empty() && co_await upstream_->write(out);
    // The password message or SCRAM proof: wiped whether or not the write went through.
    OPENSSL_cleanse(out.data(), out.size());
    if (lost) {
      co_await refuse_upstream("authentication", "connection lost");
      co_return false;
    }
    if (*step) {
      co_return true;
    }
  }
}

std::optional<UpstreamFailure> Session::check_auth_phase_message(const wire::Frame& frame) {
  if (frame.type == 'v') {
    // NegotiateProtocolVersion may only lower what was asked for, and comes at most once.
    auto npv = wire::parse_negotiate_protocol_version(frame.body);
    if (!npv || npv->minor() > upstream_startup_.minor || upstream_negotiated_) {
      return UpstreamFailure{"startup", "invalid protocol negotiation from the server", {}, {}};
    }
    upstream_negotiated_ = true;
    upstream_startup_.minor = npv->minor();
    return std::nullopt;
  }
  if (frame.type != 'R') {
    return UpstreamFailure{
        "authentication", "unexpected message from the server during authentication", {}, {}};
  }
  return std::nullopt;
}

awaitable<bool> Session::record_verdict(std::string_view method, bool success) {
  const auto verdict = listener_state_.limiter.record(client_ip_, user_, success);
  if (verdict != identity::FailureLimiter::Verdict::Blocked) {
    co_return true;
  }
  // Decided together with the count: whatever the credentials were, the client learns
  // nothing about them once the address is over the limit (parallel handshakes included).
  audit_auth_failure(method, "rate limited");
  co_await refuse(kInvalidAuthorization, kTooManyFailures);
  co_return false;
}

awaitable<void> Session::relay_upstream_verdict(const wire::Frame& frame) {
  // The server's verdict on the client's own credentials: counted per (address, user), then
  // relayed unchanged, unless the address is over its limit.
  auto err = wire::parse_error_response(frame.body);
  const std::string reason = "upstream refused: " + (err ? std::string(err->sqlstate()) : "?");
  ByteVector msg(frame.whole.begin(), frame.whole.end());
  if (co_await record_verdict("passthrough", false)) {
    audit_auth_failure("passthrough", reason);
    co_await client_.write(msg);
    client_.close();
    end_reason_ = "refused";
  }
}

awaitable<bool> Session::relay_passthrough_auth(ByteVector& burst) {
  // The client's own exchange is relayed (pgtls mode); pgwarden only checks its shape.
  upstream_auth_method_ = "passthrough";
  const auto max_auth = listener_->limits.max_auth_message;
  for (;;) {
    auto frame = co_await read_upstream_typed(wire::kMaxAuthMessage);
    if (!frame) {
      co_await refuse_upstream("authentication", "connection lost or invalid message");
      co_return false;
    }
    if (frame->type == 'E') {
      co_await relay_upstream_verdict(*frame);
      co_return false;
    }
    if (auto bad = check_auth_phase_message(*frame)) {
      co_await refuse_upstream(*bad);
      co_return false;
    }
    if (frame->type == 'v') {
      continue;
    }
    auto request = wire::parse_authentication(frame->body);
    if (!request) {
      co_await refuse_upstream("authentication", "malformed authentication request");
      co_return false;
    }
    ByteVector out;
    wire::AuthResponseKind expect = wire::AuthResponseKind::None;
    if (std::holds_alternative<wire::AuthenticationOk>(*request)) {
      if (!co_await record_verdict("passthrough", true)) {
        co_return false;
      }
      identity_ = identity::Identity{user_, config::AuthMethod::Passthrough, {}, {}};
      co_return true;
    } else if (std::holds_alternative<wire::AuthenticationCleartextPassword>(*request)) {
      if (!client_.is_tls() || !upstream_->is_tls()) {
        co_await refuse_upstream(
            "authentication",
            "the server asks for a cleartext password, which pgwarden relays only when both "
            "connections use TLS");
        co_return false;
      }
      upstream_auth_method_ = "passthrough (password)";
      out.assign(frame->whole.begin(), frame->whole.end());
      expect = wire::AuthResponseKind::Password;
    } else if (std::holds_alternative<wire::AuthenticationMd5Password>(*request)) {
      upstream_auth_method_ = "passthrough (md5)";
      out.assign(frame->whole.begin(), frame->whole.end());
      expect = wire::AuthResponseKind::Password;
    } else if (auto* sasl = std::get_if<wire::AuthenticationSasl>(&*request)) {
      const bool plus =
          std::ranges::find(sasl->mechanisms, "SCRAM-SHA-256-PLUS") != sasl->mechanisms.end();
      if (plus && client_.is_tls() && upstream_->is_tls()) {
        // The client's TLS ends here, so it cannot bind to the upstream's certificate; libpq
        // and most drivers would then send the gs2 flag "y", which a server that offers -PLUS
        // rightly takes for a downgrade attack (and the flag is covered by the client's
        // proof: it cannot be rewritten). Instead, pgwarden takes the password inside the
        // client's TLS and runs SCRAM-SHA-256-PLUS upstream itself, bound to the upstream's
        // certificate.
        co_return co_await passthrough_with_password(frame->body);
      }
      // No TLS on one leg: the plain exchange relays unchanged (the client's gs2 flag is
      // then "n", or "y" towards a server without TLS, both of which the server accepts).
      std::vector<std::string_view> mechs;
      for (auto m : sasl->mechanisms) {
        if (m == "SCRAM-SHA-256") {
          mechs.push_back(m);
        }
      }
      if (mechs.empty()) {
        co_await refuse_upstream("authentication",
                                 "the server offers no SASL mechanism pgwarden can relay");
        co_return false;
      }
      upstream_auth_method_ = "passthrough (SCRAM-SHA-256)";
      wire::encode(wire::AuthenticationSasl{mechs}, out);
      expect = wire::AuthResponseKind::SaslInitial;
    } else if (std::holds_alternative<wire::AuthenticationSaslContinue>(*request)) {
      out.assign(frame->whole.begin(), frame->whole.end());
      expect = wire::AuthResponseKind::Sasl;
    } else if (std::holds_alternative<wire::AuthenticationSaslFinal>(*request)) {
      // The server's signature proves the password was right: held back, and sent with
      // AuthenticationOk only once the failure limiter has allowed the login.
      burst.insert(burst.end(), frame->whole.begin(), frame->whole.end());
      continue;
    } else {
      co_await refuse_upstream(
          "authentication", "the server asks for an authentication method pgwarden cannot relay");
      co_return false;
    }
    if (co_await client_.write(out)) {
      co_return false;
    }
    auto reply = co_await read_client_typed(max_auth);
    if (!reply) {
      co_return false;
    }
    if (reply->type != 'p' || !wire::decode_frontend(reply->type, reply->body, expect)) {
      // It may still hold a password, however malformed: wipe it before anything else.
      client_in_.wipe();
      co_await refuse(kProtocolViolation, "invalid authentication response");
      co_return false;
    }
    const bool lost = static_cast<bool>(co_await upstream_->write(reply->whole));
    // The message may hold a cleartext password: wipe it where it was received.
    client_in_.wipe();
    if (lost) {
      co_await refuse_upstream("authentication", "connection lost");
      co_return false;
    }
  }
}

awaitable<bool> Session::passthrough_with_password(wire::Bytes sasl_request) {
  ByteVector out;
  wire::encode(wire::AuthenticationCleartextPassword{}, out);
  if (co_await client_.write(out)) {
    co_return false;
  }
  auto reply = co_await read_client_typed(listener_->limits.max_auth_message);
  if (!reply) {
    co_return false;
  }
  auto decoded = reply->type == 'p' ? wire::decode_frontend(reply->type, reply->body,
                                                            wire::AuthResponseKind::Password)
                                    : std::unexpected(wire::WireError::UnexpectedMessage);
  const auto* message = decoded ? std::get_if<wire::PasswordMessage>(&*decoded) : nullptr;
  if (message == nullptr) {
    client_in_.wipe();
    co_await refuse(kProtocolViolation, "expected a password message");
    co_return false;
  }
  // One copy, in a buffer reserved up front (no reallocation leaves a copy behind), wiped on
  // every path below; the received message is wiped at once.
  std::string password;
  password.reserve(message->password.size());
  password.assign(message->password);
  client_in_.wipe();

  session::UpstreamAuthOptions opts;
  opts.user = backend_user_;
  opts.password = password;
  opts.tls_active = true;
  opts.channel_binding_data =
      crypto::tls_server_end_point(SSL_get0_peer_certificate(upstream_->ssl()));
  bool ok = false;
  {
    session::UpstreamAuth auth(std::move(opts));
    ok = co_await run_upstream_auth(auth, sasl_request, true);
    upstream_auth_method_ = "passthrough (password, " + std::string(auth.method()) + ")";
  }
  crypto::wipe(password);
  if (!ok) {
    co_return false;
  }
  if (!co_await record_verdict("passthrough", true)) {
    co_return false;
  }
  identity_ = identity::Identity{user_, config::AuthMethod::Passthrough, {}, {}};
  co_return true;
}

awaitable<bool> Session::finish_startup(ByteVector& burst) {
  // NegotiateProtocolVersion, when the client asked for more than it gets.
  const std::uint16_t negotiated = upstream_startup_.minor;
  if (startup_->minor > negotiated || !upstream_startup_.unrecognized_options.empty()) {
    wire::NegotiateProtocolVersion npv;
    npv.newest_version = (3u << 16) | negotiated;
    for (const auto& o : upstream_startup_.unrecognized_options) {
      npv.unrecognized_options.push_back(o);
    }
    wire::encode(npv, burst);
  }
  wire::encode(wire::AuthenticationOk{}, burst);

  std::optional<std::uint32_t> upstream_pid;
  std::vector<std::byte> upstream_secret;
  for (;;) {
    auto frame = co_await read_upstream_typed(wire::kMaxAuthMessage);
    if (!frame) {
      co_await refuse_upstream("startup", "connection lost or invalid message");
      co_return false;
    }
    switch (frame->type) {
      case 'S':  // ParameterStatus
      case 'N':  // NoticeResponse
        burst.insert(burst.end(), frame->whole.begin(), frame->whole.end());
        continue;
      case 'K': {
        auto key = wire::parse_backend_key_data(frame->body);
        if (!key) {
          co_await refuse_upstream("startup", "invalid BackendKeyData from the server");
          co_return false;
        }
        upstream_pid = key->process_id;
        upstream_secret.assign(key->secret_key.begin(), key->secret_key.end());
        continue;
      }
      case 'E': {
        // After authentication: the server's own error (database does not exist, too many
        // connections, starting up) is the most useful thing the client can get.
        auto err = wire::parse_error_response(frame->body);
        UpstreamFailure f{"startup",
                          "server error " + (err ? std::string(err->sqlstate()) : "?"),
                          err ? std::string(err->message()) : std::string(),
                          {}};
        f.server_error.assign(frame->whole.begin(), frame->whole.end());
        co_await refuse_upstream(f);
        co_return false;
      }
      case 'Z': {
        if (frame->body.size() == 1) {
          last_status_ = static_cast<char>(frame->body[0]);
        }
        // The server's PID with a cancel secret of our own, mapped to the server's key.
        if (upstream_pid) {
          client_key_ = runtime_.cancels().add(
              session::CancelTarget{*upstream_pid, upstream_secret, backend_},
              negotiated >= 2 ? 32 : 4);
          session::wipe(upstream_secret);
          if (!client_key_) {
            co_await refuse(kConnectionFailure, "could not generate a cancel key");
            co_return false;
          }
          ByteVector secret_copy(client_key_->secret);
          wire::encode(wire::BackendKeyData{client_key_->pid, secret_copy}, burst);
          OPENSSL_cleanse(secret_copy.data(), secret_copy.size());
        }
        burst.insert(burst.end(), frame->whole.begin(), frame->whole.end());
        const bool lost = static_cast<bool>(co_await client_.write(burst));
        OPENSSL_cleanse(burst.data(), burst.size());
        co_return !lost;
      }
      default:
        const std::string detail = "unexpected message " + session::describe_type(frame->type);
        co_await refuse_upstream("startup", detail);
        co_return false;
    }
  }
}

// ---------------------------------------------------------------------------- forwarding

void Session::stop(std::string reason) {
  if (!stopping_) {
    stopping_ = true;
    end_reason_ = std::move(reason);
  }
  client_.cancel();
  if (upstream_) {
    upstream_->cancel();
  }
}

void Session::kill(std::string_view sqlstate, std::string message) {
  if (phase_ == Phase::Startup) {
    kill_request_.emplace(std::string(sqlstate), std::move(message));
    client_.cancel();
    if (upstream_) {
      upstream_->cancel();
    }
    return;
  }
  if (phase_ != Phase::Forwarding || stopping_ || kill_request_) {
    return;
  }
  kill_request_.emplace(std::string(sqlstate), std::move(message));
  // The server->client pump owns writes to the client: wake it; it sends the FATAL.
  if (upstream_) {
    upstream_->cancel();
  }
}

void Session::drain() {
  draining_ = true;
  if (phase_ == Phase::Startup || (phase_ == Phase::Forwarding && idle())) {
    kill(kAdminShutdown, "terminating connection due to administrator command");
  }
}

Clock::duration Session::idle_limit() const {
  if (outstanding_ != 0 || client_dirty_) {
    return Clock::duration::zero();  // a statement in flight is never idle
  }
  if (last_status_ == 'I') {
    return listener_->idle_timeout;
  }
  return listener_->idle_in_transaction_timeout;  // 'T' or 'E': a transaction is open
}

void Session::arm_idle_timer() {
  // One timer for the session's life. It fires when the session, if it has stayed in its
  // current state, would have been idle for that state's timeout, and re-arms itself for the
  // rest; the data path only stores timestamps. While a statement runs it looks again after
  // the shortest configured timeout.
  const auto idle = listener_->idle_timeout;
  const auto in_transaction = listener_->idle_in_transaction_timeout;
  if (idle.count() == 0 && in_transaction.count() == 0) {
    return;
  }
  const auto shortest = idle.count() == 0             ? in_transaction
                        : in_transaction.count() == 0 ? idle
                                                      : std::min(idle, in_transaction);
  const auto limit = idle_limit();
  idle_timer_.expires_at(limit.count() != 0 ? idle_since() + limit : Clock::now() + shortest);
  std::weak_ptr<Session*> weak = self_;
  idle_timer_.async_wait([weak](std::error_code ec) {
    auto self = weak.lock();
    if (ec || !self) {
      return;
    }
    Session& s = **self;
    if (s.phase_ != Phase::Forwarding || s.stopping_) {
      return;
    }
    const auto now_limit = s.idle_limit();
    if (now_limit.count() != 0 && Clock::now() - s.idle_since() >= now_limit) {
      if (s.last_status_ == 'I') {
        s.kill(kIdleSessionTimeout, "terminating connection due to idle-session timeout");
      } else {
        s.kill(kIdleInTransactionTimeout,
               "terminating connection due to idle-in-transaction timeout");
      }
      return;
    }
    s.arm_idle_timer();
  });
}

awaitable<void> Session::forward() {
  using namespace asio::experimental::awaitable_operators;
  if (client_.is_tls()) {
    SSL_clear_options(client_.ssl(), SSL_OP_CLEANSE_PLAINTEXT);  // see start_client_tls()
  }
  last_client_activity_ = Clock::now();
  arm_idle_timer();
  co_await (pump_client() && pump_server());
  idle_timer_.cancel();
  if (kill_request_ && upstream_ && client_key_ && (outstanding_ > 0 || client_dirty_)) {
    // pgwarden ended the session (shutdown_grace, protocol violation) while a statement may
    // still run upstream. The server reads no Terminate until it is done and would then
    // commit work the client was told ended with FATAL: cancel it first, as PostgreSQL's own
    // termination would.
    if (auto target = runtime_.cancels().find(client_key_->pid, client_key_->secret)) {
      co_await forward_cancel(*target);
      session::wipe(target->upstream_secret);
    }
  }
  if (!client_terminated_ && !client_mid_message_ && upstream_) {
    // Tell the server goodbye so it does not log an unexpected EOF.
    static constexpr std::array<std::byte, 5> kTerminate{std::byte{'X'}, std::byte{0}, std::byte{0},
                                                         std::byte{0}, std::byte{4}};
    co_await upstream_->write(kTerminate);
  }
  client_.close();
  if (upstream_) {
    upstream_->close();
  }
}

awaitable<void> Session::pump_client() {
  session::Forwarder scanner(session::Direction::FromClient, listener_->limits.max_message_size);
  IoBuffer buf(kPumpBuffer);
  buf.append(client_in_.pending());  // anything the client pipelined after its startup
  client_in_.wipe();                 // it held the client's password message or SCRAM proof
  upstream_in_.wipe();               // and this one the upstream's authentication exchange
  bool terminate = false;
  auto on_message = [&](const session::Observed& m) {
    switch (m.type) {
      case 'Q':
      case 'F':
        ++statements_;
        [[fallthrough]];
      case 'S':
        ++outstanding_;
        client_dirty_ = false;
        break;
      case 'E':
        ++statements_;
        client_dirty_ = true;
        break;
      case 'X':
        terminate = true;
        break;
      default:
        client_dirty_ = true;
        break;
    }
  };
  bool first = true;
  while (!stopping_) {
    if (!first || buf.data().empty()) {
      auto [ec, n] = co_await client_.read_some(buf.prepare());
      if (ec || n == 0) {
        stop(ec == asio::error::operation_aborted ? end_reason_ : "client disconnected");
        break;
      }
      buf.commit(n);
      bytes_in_ += n;
      last_client_activity_ = Clock::now();
    }
    first = false;
    auto scanned = scanner.scan(buf.data(), on_message);
    if (!scanned) {
      spdlog::info("session {}: protocol violation from client: {}", audit::format_session_id(id_),
                   scanned.error().reason);
      kill(kProtocolViolation, "invalid message from client: " + scanned.error().reason);
      break;
    }
    if (scanned->forward > 0) {
      if (co_await upstream_->write(buf.data().first(scanned->forward))) {
        if (!stopping_) {
          kill(kConnectionFailure, "connection to the upstream server lost");
        }
        break;
      }
      buf.consume(scanned->forward);
    }
    if (terminate) {
      client_terminated_ = true;
      stop("client terminated");
      break;
    }
  }
  client_mid_message_ = scanner.mid_message();
}

awaitable<void> Session::pump_server() {
  session::Forwarder scanner(session::Direction::FromServer, wire::kMaxMessage);
  IoBuffer buf(kPumpBuffer);
  // The time of each ReadyForQuery matters only to the idle timers.
  const bool track_ready =
      listener_->idle_timeout.count() != 0 || listener_->idle_in_transaction_timeout.count() != 0;
  auto on_message = [&](const session::Observed& m) {
    if (m.type == 'Z') {
      if (outstanding_ > 0) {
        --outstanding_;
      }
      if (m.body.size() == 1) {
        last_status_ = static_cast<char>(m.body[0]);
      }
      if (track_ready) {
        last_ready_ = Clock::now();
      }
    }
    server_spoke_error_last_ = m.type == 'E';
  };
  auto send_fatal = [&](std::string_view sqlstate, std::string_view message) -> awaitable<void> {
    ByteVector out;
    wire::encode_error(out, wire::Severity::Fatal, sqlstate, message);
    co_await client_.write(out);
  };
  for (;;) {
    if (kill_request_) {
      auto [sqlstate, message] = *kill_request_;
      co_await send_fatal(sqlstate, message);
      stop(message);
      break;
    }
    if (stopping_) {
      break;
    }
    auto [ec, n] = co_await upstream_->read_some(buf.prepare());
    if (ec == asio::error::operation_aborted) {
      continue;  // woken by kill() or stop(): the loop head decides
    }
    if (ec || n == 0) {
      if (!stopping_) {
        // The server's own FATAL (e.g. pg_terminate_backend) was forwarded already;
        // otherwise tell the client what happened instead of leaving it hanging.
        if (!server_spoke_error_last_) {
          co_await send_fatal(kConnectionFailure, "connection to the upstream server lost");
        }
        stop("upstream closed the connection");
      }
      break;
    }
    buf.commit(n);
    auto scanned = scanner.scan(buf.data(), on_message);
    if (!scanned) {
      spdlog::warn("session {}: protocol violation from the server: {}",
                   audit::format_session_id(id_), scanned.error().reason);
      co_await send_fatal(kConnectionFailure, "invalid message from the upstream server");
      stop("upstream protocol violation");
      break;
    }
    if (scanned->forward > 0) {
      if (co_await client_.write(buf.data().first(scanned->forward))) {
        stop("client disconnected");
        break;
      }
      bytes_out_ += scanned->forward;
      buf.consume(scanned->forward);
    }
    if (draining_ && idle() && !scanner.mid_message() && !kill_request_) {
      kill_request_.emplace(std::string(kAdminShutdown),
                            "terminating connection due to administrator command");
    }
  }
}

// ============================================================================================

awaitable<void> run_session(Runtime& runtime, SessionSet& set, tcp::socket socket,
                            std::string listener) {
  Session session(runtime, set, std::move(socket), std::move(listener));
  co_await guarded(session.run(),
                   [&session](std::string_view what) { session.internal_error(what); });
}

void drain_session(Session& s) {
  s.drain();
}
void kill_session(Session& s, std::string_view sqlstate, std::string message) {
  s.kill(sqlstate, std::move(message));
}
void abort_session(Session& s) {
  s.abort();
}

awaitable<void> forward_cancel(const session::CancelTarget& target) {
  auto backend = std::static_pointer_cast<const BackendRuntime>(target.backend);
  if (!backend) {
    co_return;
  }
  auto executor = co_await asio::this_coro::executor;
  // Shared with the timer's handler, which may run after this frame has ended.
  auto up = std::make_shared<Stream>(tcp::socket(executor));
  const auto& b = *backend->backend;
  asio::steady_timer timer(executor);
  timer.expires_after(b.connect_timeout);
  timer.async_wait([up](std::error_code ec) {
    if (!ec) {
      up->cancel();
    }
  });
  tcp::resolver resolver(executor);
  const std::string port = std::to_string(b.address.port);
  auto [rec, results] = co_await resolver.async_resolve(b.address.host, port, use_nothrow);
  bool ready = false;
  if (!rec) {
    auto [cec, ep] = co_await asio::async_connect(up->socket(), results, use_nothrow);
    ready = !cec;
  }
  if (ready && b.tls != config::BackendTls::Disable) {
    // Same TLS settings and verification as the session's own connection.
    ByteVector out;
    wire::encode(wire::SslRequest{}, out);
    std::array<std::byte, 1> answer{};
    ready = !co_await up->write(out);
    if (ready) {
      auto [aec, an] = co_await asio::async_read(up->socket(), asio::buffer(answer), use_nothrow);
      ready = !aec && answer[0] == std::byte{'S'};
    }
    if (ready) {
      ready = up->start_tls(backend->tls->context()) && backend->tls->prepare(up->ssl());
      if (ready) {
        ready = !co_await up->handshake(false);
      }
    }
  }
  if (ready) {
    ByteVector out;
    wire::encode(wire::CancelRequest{target.upstream_pid, target.upstream_secret}, out);
    co_await up->write(out);
    OPENSSL_cleanse(out.data(), out.size());
    // The server closes the connection once it has acted on the request.
    std::array<std::byte, 16> sink{};
    co_await up->read_some(sink);
  } else {
    spdlog::warn("could not forward a cancel request to backend \"{}\"", b.name);
  }
  timer.cancel();
  up->close();
}

}  // namespace pgwarden::server
