// Scripted conversations through ProtocolState: every flow of the protocol as a proxy sees
// it, and for each state the messages that must be refused.
#include "wire/protocol_state.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "wire/bytes.h"
#include "wire/message_type.h"

namespace pgwarden::wire {
namespace {

// ---- message body builders (bodies only: the state machine takes framed messages) ----

// Every byte of a string literal but its final NUL, so embedded NULs are kept.
template <std::size_t N>
ByteVector body_of(const char (&s)[N]) {
  auto b = as_bytes(std::string_view(s, N - 1));
  return ByteVector(b.begin(), b.end());
}

ByteVector startup_body(std::uint32_t version = kProtocol30) {
  ByteVector out;
  Writer w(out);
  w.u32(version);
  w.cstring("user");
  w.cstring("alice");
  w.cstring("database");
  w.cstring("app");
  w.u8(0);
  return out;
}

ByteVector auth_body(AuthType type, std::string_view extra = {}) {
  ByteVector out;
  Writer w(out);
  w.i32(static_cast<std::int32_t>(type));
  w.bytes(as_bytes(extra));
  return out;
}

ByteVector auth_raw(std::int32_t subtype) {
  ByteVector out;
  Writer w(out);
  w.i32(subtype);
  return out;
}

ByteVector sasl_mechanisms() {
  ByteVector out;
  Writer w(out);
  w.i32(static_cast<std::int32_t>(AuthType::SASL));
  w.cstring("SCRAM-SHA-256");
  w.u8(0);
  return out;
}

ByteVector notice_fields(std::string_view severity, bool with_v = true) {
  ByteVector out;
  Writer w(out);
  w.u8('S');
  w.cstring(severity);
  if (with_v) {
    w.u8('V');
    w.cstring(severity);
  }
  w.u8('C');
  w.cstring("42000");
  w.u8('M');
  w.cstring("something failed");
  w.u8(0);
  return out;
}

ByteVector error_body(std::string_view severity = "ERROR") {
  return notice_fields(severity);
}

ByteVector rfq_body(char status) {
  return ByteVector{std::byte(status)};
}

ByteVector describe_body(char target) {
  ByteVector out;
  Writer w(out);
  w.u8(static_cast<std::uint8_t>(target));
  w.cstring("");
  return out;
}

constexpr char kStartup = ProtocolState::kStartupMessage;

// ---- a conversation driver that fails the test on any unexpected verdict ----

class Conversation {
 public:
  explicit Conversation(std::size_t limit = kMaxPendingRequests) : state(limit) {}

  Disposition fe(char type, const ByteVector& body = {}) {
    auto r = state.on_frontend(type, body);
    EXPECT_TRUE(r.has_value()) << "frontend '" << printable(type)
                               << "' refused: " << (r ? "" : r.error().reason);
    return r ? *r : Disposition::Forward;
  }
  void be(char type, const ByteVector& body = {}) {
    auto r = state.on_backend(type, body);
    EXPECT_TRUE(r.has_value()) << "backend '" << printable(type)
                               << "' refused: " << (r ? "" : r.error().reason);
  }
  ProtocolViolation fe_fails(char type, const ByteVector& body = {}) {
    auto r = state.on_frontend(type, body);
    EXPECT_FALSE(r.has_value()) << "frontend '" << printable(type) << "' was accepted";
    EXPECT_TRUE(state.failed());
    return r ? ProtocolViolation{} : r.error();
  }
  ProtocolViolation be_fails(char type, const ByteVector& body = {}) {
    auto r = state.on_backend(type, body);
    EXPECT_FALSE(r.has_value()) << "backend '" << printable(type) << "' was accepted";
    EXPECT_TRUE(state.failed());
    return r ? ProtocolViolation{} : r.error();
  }

  // Trust authentication up to the first ReadyForQuery.
  void start() {
    fe(kStartup, startup_body());
    be('R', auth_body(AuthType::Ok));
    be('S', body_of("server_version\0"
                    "17.0\0"));
    be('K', ByteVector(8));
    be('Z', rfq_body('I'));
    ASSERT_TRUE(state.idle());
  }

  ProtocolState state;

 private:
  static std::string printable(char type) {
    return type == kStartup ? std::string("StartupMessage") : std::string(1, type);
  }
};

// ============================ start-up and authentication ============================

TEST(ProtocolStateStartup, ScramExchangeReachesReadyForQuery) {
  Conversation c;
  EXPECT_EQ(c.state.frontend_state(), FrontendState::AwaitingStartup);
  EXPECT_EQ(c.fe(kStartup, startup_body()), Disposition::Forward);
  EXPECT_EQ(c.state.expected_auth_response(), AuthResponseKind::None);

  c.be('R', sasl_mechanisms());
  EXPECT_EQ(c.state.frontend_state(), FrontendState::AuthResponse);
  EXPECT_EQ(c.state.expected_auth_response(), AuthResponseKind::SaslInitial);
  c.fe('p', body_of("SCRAM-SHA-256\0...."));
  EXPECT_EQ(c.state.expected_auth_response(), AuthResponseKind::None);

  c.be('R', auth_body(AuthType::SASLContinue, "r=nonce,s=salt,i=4096"));
  EXPECT_EQ(c.state.expected_auth_response(), AuthResponseKind::Sasl);
  c.fe('p', body_of("c=biws,r=nonce,p=proof"));

  c.be('R', auth_body(AuthType::SASLFinal, "v=signature"));
  EXPECT_EQ(c.state.backend_state(), BackendState::SaslFinal);
  c.be('R', auth_body(AuthType::Ok));
  EXPECT_EQ(c.state.backend_state(), BackendState::StartupParameters);
  EXPECT_FALSE(c.state.startup_complete());

  c.be('S', body_of("client_encoding\0UTF8\0"));
  c.be('N', notice_fields("WARNING"));
  c.be('K', ByteVector(8));
  c.be('S', body_of("TimeZone\0UTC\0"));
  c.be('Z', rfq_body('I'));

  EXPECT_TRUE(c.state.startup_complete());
  EXPECT_TRUE(c.state.idle());
  EXPECT_EQ(c.state.frontend_state(), FrontendState::Ready);
  EXPECT_EQ(c.state.transaction_status(), TransactionStatus::Idle);
}

TEST(ProtocolStateStartup, CleartextAndMd5ExpectPasswordMessage) {
  for (AuthType t : {AuthType::CleartextPassword, AuthType::MD5Password}) {
    Conversation c;
    c.fe(kStartup, startup_body());
    c.be('R', auth_body(t, t == AuthType::MD5Password ? "salt" : ""));
    EXPECT_EQ(c.state.expected_auth_response(), AuthResponseKind::Password);
    c.fe('p', body_of("secret\0"));
    EXPECT_EQ(c.state.backend_state(), BackendState::PasswordSent);
    c.be('R', auth_body(AuthType::Ok));
    c.be('Z', rfq_body('I'));
    EXPECT_TRUE(c.state.idle());
  }
}

TEST(ProtocolStateStartup, GssContinueWithAndWithoutClientAnswer) {
  // The client answers a GSSContinue with another token.
  Conversation c;
  c.fe(kStartup, startup_body());
  c.be('R', auth_body(AuthType::GSS));
  EXPECT_EQ(c.state.expected_auth_response(), AuthResponseKind::Gss);
  c.fe('p', body_of("token1"));
  c.be('R', auth_body(AuthType::GSSContinue, "token2"));
  EXPECT_EQ(c.state.expected_auth_response(), AuthResponseKind::Gss);
  c.fe('p', body_of("token3"));
  c.be('R', auth_body(AuthType::Ok));
  c.be('Z', rfq_body('I'));
  EXPECT_TRUE(c.state.idle());

  // The server's final GSSContinue is followed directly by AuthenticationOk.
  Conversation d;
  d.fe(kStartup, startup_body());
  d.be('R', auth_body(AuthType::SSPI));
  d.fe('p', body_of("token1"));
  d.be('R', auth_body(AuthType::GSSContinue, "final"));
  d.be('R', auth_body(AuthType::Ok));
  EXPECT_EQ(d.state.expected_auth_response(), AuthResponseKind::None);
  EXPECT_EQ(d.state.frontend_state(), FrontendState::AwaitingServer);
  d.fe_fails('p', body_of("late"));
}

TEST(ProtocolStateStartup, SaslOkWithoutFinalIsAllowed) {
  // Mechanisms without final server data (OAUTHBEARER) go straight to AuthenticationOk.
  Conversation c;
  c.fe(kStartup, startup_body());
  c.be('R', sasl_mechanisms());
  c.fe('p', body_of("OAUTHBEARER\0..."));
  c.be('R', auth_body(AuthType::Ok));
  EXPECT_EQ(c.state.backend_state(), BackendState::StartupParameters);
}

TEST(ProtocolStateStartup, NegotiateProtocolVersionOnlyOnceBeforeAuthentication) {
  Conversation c;
  c.fe(kStartup, startup_body(kProtocol32));
  c.be('v', ByteVector(8));
  c.be('R', auth_body(AuthType::Ok));
  auto v = c.be_fails('v', ByteVector(8));
  EXPECT_EQ(v.error, WireError::UnexpectedMessage);
  EXPECT_NE(v.reason.find("NegotiateProtocolVersion"), std::string::npos);

  Conversation twice;
  twice.fe(kStartup, startup_body(kProtocol32));
  twice.be('v', ByteVector(8));
  twice.be_fails('v', ByteVector(8));
}

TEST(ProtocolStateStartup, ErrorDuringStartupEndsTheConnection) {
  Conversation c;
  c.fe(kStartup, startup_body());
  c.be('R', auth_body(AuthType::CleartextPassword));
  c.fe('p', body_of("wrong\0"));
  c.be('E', error_body("FATAL"));
  EXPECT_TRUE(c.state.closed());
  EXPECT_EQ(c.state.backend_state(), BackendState::Closed);
  EXPECT_EQ(c.state.frontend_state(), FrontendState::ServerClosed);
  c.be_fails('R', auth_body(AuthType::Ok));

  // Even a non-FATAL error ends startup; the client may only say goodbye.
  Conversation d;
  d.fe(kStartup, startup_body());
  d.be('R', auth_body(AuthType::Ok));
  d.be('E', error_body("ERROR"));
  EXPECT_EQ(d.state.backend_state(), BackendState::Closed);
  EXPECT_EQ(d.fe('X'), Disposition::Forward);
  EXPECT_EQ(d.state.frontend_state(), FrontendState::Terminated);

  Conversation e;
  e.fe(kStartup, startup_body());
  e.be('E', error_body("FATAL"));
  auto v = e.fe_fails('Q', body_of("SELECT 1\0"));
  EXPECT_NE(v.reason.find("after the server ended the connection"), std::string::npos);
}

TEST(ProtocolStateStartup, FrontendMaySendOnlyAuthResponsesOrTerminateBeforeReady) {
  Conversation during_auth;
  during_auth.fe(kStartup, startup_body());
  during_auth.be('R', sasl_mechanisms());
  auto v = during_auth.fe_fails('Q', body_of("SELECT 1\0"));
  EXPECT_EQ(v.reason, "Query received during authentication");

  Conversation after_ok;
  after_ok.fe(kStartup, startup_body());
  after_ok.be('R', auth_body(AuthType::Ok));
  v = after_ok.fe_fails('P', body_of("\0SELECT 1\0\0\0"));
  EXPECT_EQ(v.reason, "Parse received before the first ReadyForQuery");

  Conversation terminate;
  terminate.fe(kStartup, startup_body());
  terminate.be('R', sasl_mechanisms());
  EXPECT_EQ(terminate.fe('X'), Disposition::Forward);
  terminate.fe_fails('p', body_of("x"));
}

TEST(ProtocolStateStartup, AuthResponseWithoutRequestIsRefused) {
  Conversation c;
  c.fe(kStartup, startup_body());
  auto v = c.fe_fails('p', body_of("secret\0"));
  EXPECT_EQ(v.reason,
            "authentication response ('p') received while no authentication request is "
            "outstanding");

  Conversation answered;
  answered.fe(kStartup, startup_body());
  answered.be('R', auth_body(AuthType::CleartextPassword));
  answered.fe('p', body_of("secret\0"));
  answered.fe_fails('p', body_of("again\0"));

  Conversation ready;
  ready.start();
  v = ready.fe_fails('p', body_of("secret\0"));
  EXPECT_NE(v.reason.find("after authentication completed"), std::string::npos);
}

TEST(ProtocolStateStartup, SecondStartupMessageIsRefused) {
  Conversation c;
  c.fe(kStartup, startup_body());
  EXPECT_EQ(c.fe_fails(kStartup, startup_body()).reason, "second StartupMessage received");

  Conversation ready;
  ready.start();
  ready.fe_fails(kStartup, startup_body());
}

TEST(ProtocolStateStartup, StartupPacketIsChecked) {
  Conversation ssl;
  EXPECT_EQ(ssl.fe_fails(kStartup, startup_body(kSslRequestCode)).error,
            WireError::UnexpectedMessage);
  Conversation cancel;
  cancel.fe_fails(kStartup, startup_body(kCancelRequestCode));
  Conversation gss;
  gss.fe_fails(kStartup, startup_body(kGssEncRequestCode));
  Conversation v2;
  EXPECT_EQ(v2.fe_fails(kStartup, startup_body(2u << 16)).error, WireError::UnknownProtocol);
  Conversation v4;
  v4.fe_fails(kStartup, startup_body(4u << 16));
  Conversation short_packet;
  EXPECT_EQ(short_packet.fe_fails(kStartup, ByteVector(3)).error, WireError::ShortMessage);
  Conversation typed_first;
  EXPECT_EQ(typed_first.fe_fails('Q', body_of("SELECT 1\0")).reason,
            "Query received before the StartupMessage");
  Conversation backend_first;
  backend_first.be_fails('R', auth_body(AuthType::Ok));
}

TEST(ProtocolStateStartup, AuthenticationSequenceIsEnforced) {
  {
    // Downgrade mid-exchange: SCRAM, then a cleartext password request.
    Conversation c;
    c.fe(kStartup, startup_body());
    c.be('R', sasl_mechanisms());
    c.fe('p', body_of("SCRAM-SHA-256\0...."));
    auto v = c.be_fails('R', auth_body(AuthType::CleartextPassword));
    EXPECT_EQ(v.reason, "AuthenticationCleartextPassword received after authentication started");
  }
  {
    // SASLFinal without a SASL exchange.
    Conversation c;
    c.fe(kStartup, startup_body());
    c.be_fails('R', auth_body(AuthType::SASLFinal, "v=x"));
  }
  {
    // SASLContinue while the server should be waiting for the client.
    Conversation c;
    c.fe(kStartup, startup_body());
    c.be('R', sasl_mechanisms());
    c.be_fails('R', auth_body(AuthType::SASLContinue, "r=x"));
  }
  {
    // AuthenticationOk before the client answered the request.
    Conversation c;
    c.fe(kStartup, startup_body());
    c.be('R', auth_body(AuthType::MD5Password, "salt"));
    c.be_fails('R', auth_body(AuthType::Ok));
  }
  {
    // After SASLFinal only AuthenticationOk may follow.
    Conversation c;
    c.fe(kStartup, startup_body());
    c.be('R', sasl_mechanisms());
    c.fe('p', body_of("SCRAM-SHA-256\0...."));
    c.be('R', auth_body(AuthType::SASLFinal, "v=x"));
    c.be_fails('R', auth_body(AuthType::SASLContinue, "r=x"));
  }
  {
    // GSSContinue outside a GSSAPI exchange.
    Conversation c;
    c.fe(kStartup, startup_body());
    c.be('R', sasl_mechanisms());
    c.fe('p', body_of("SCRAM-SHA-256\0...."));
    c.be_fails('R', auth_body(AuthType::GSSContinue, "t"));
  }
  {
    Conversation c;
    c.fe(kStartup, startup_body());
    EXPECT_EQ(c.be_fails('R', auth_raw(6)).error, WireError::BadValue);
  }
  {
    Conversation c;
    c.fe(kStartup, startup_body());
    EXPECT_EQ(c.be_fails('R', auth_body(AuthType::KerberosV5)).error, WireError::BadValue);
  }
  {
    Conversation c;
    c.fe(kStartup, startup_body());
    EXPECT_EQ(c.be_fails('R', ByteVector(2)).error, WireError::ShortMessage);
  }
  {
    // Nothing but authentication (or an error) before AuthenticationOk.
    Conversation c;
    c.fe(kStartup, startup_body());
    c.be_fails('S', body_of("a\0b\0"));
  }
  {
    Conversation c;
    c.fe(kStartup, startup_body());
    c.be_fails('Z', rfq_body('I'));
  }
}

TEST(ProtocolStateStartup, StartupParametersPhaseIsStrict) {
  Conversation c;
  c.fe(kStartup, startup_body());
  c.be('R', auth_body(AuthType::Ok));
  c.be('K', ByteVector(8));
  EXPECT_EQ(c.be_fails('K', ByteVector(8)).reason, "second BackendKeyData received");

  Conversation d;
  d.fe(kStartup, startup_body());
  d.be('R', auth_body(AuthType::Ok));
  d.be_fails('R', auth_body(AuthType::Ok));

  Conversation e;
  e.fe(kStartup, startup_body());
  e.be('R', auth_body(AuthType::Ok));
  e.be_fails('D', ByteVector(2));

  Conversation ready;
  ready.start();
  ready.be_fails('K', ByteVector(8));
}

// =================================== simple query ===================================

TEST(ProtocolStateSimpleQuery, MultiStatementQueryHasSeveralResults) {
  Conversation c;
  c.start();
  EXPECT_EQ(c.fe('Q', body_of("BEGIN; SELECT 1; INSERT ...; SELECT 2\0")), Disposition::Forward);
  EXPECT_FALSE(c.state.idle());
  EXPECT_EQ(c.state.pending_ready_for_query(), 1u);
  EXPECT_EQ(c.state.pending_syncs(), 0u);
  c.be('C', body_of("BEGIN\0"));
  c.be('T', ByteVector(2));
  c.be('D', ByteVector(2));
  c.be('N', notice_fields("NOTICE"));
  c.be('D', ByteVector(2));
  c.be('C', body_of("SELECT 2\0"));
  c.be('C', body_of("INSERT 0 1\0"));
  c.be('T', ByteVector(2));
  c.be('A', ByteVector(8));
  c.be('C', body_of("SELECT 0\0"));
  c.be('S', body_of("a\0b\0"));
  c.be('Z', rfq_body('T'));
  EXPECT_TRUE(c.state.idle());
  EXPECT_EQ(c.state.transaction_status(), TransactionStatus::InTransaction);
  EXPECT_EQ(c.state.pending_ready_for_query(), 0u);
}

TEST(ProtocolStateSimpleQuery, ErrorEndsTheQueryAtReadyForQuery) {
  Conversation c;
  c.start();
  c.fe('Q', body_of("SELECT 1; SELECT 1/0; SELECT 3\0"));
  c.be('T', ByteVector(2));
  c.be('D', ByteVector(2));
  c.be('C', body_of("SELECT 1\0"));
  c.be('T', ByteVector(2));
  c.be('E', error_body());
  EXPECT_EQ(c.state.backend_state(), BackendState::AwaitingReady);
  c.be('Z', rfq_body('E'));
  EXPECT_EQ(c.state.transaction_status(), TransactionStatus::Failed);
  EXPECT_TRUE(c.state.idle());

  Conversation d;
  d.start();
  d.fe('Q', body_of("SELECT 1/0\0"));
  d.be('E', error_body());
  EXPECT_EQ(d.be_fails('D', ByteVector(2)).reason,
            "DataRow received where only ReadyForQuery may follow");
}

TEST(ProtocolStateSimpleQuery, EmptyQueryResponseIsFollowedByReadyForQuery) {
  Conversation c;
  c.start();
  c.fe('Q', body_of("\0"));
  c.be('I');
  c.be('Z', rfq_body('I'));
  EXPECT_TRUE(c.state.idle());

  Conversation d;
  d.start();
  d.fe('Q', body_of("\0"));
  d.be('I');
  d.be_fails('C', body_of("SELECT 0\0"));
}

TEST(ProtocolStateSimpleQuery, PipelinedQueriesAreAnsweredInOrder) {
  Conversation c;
  c.start();
  c.fe('Q', body_of("SELECT 1\0"));
  c.fe('Q', body_of("SELECT 2\0"));
  EXPECT_EQ(c.state.pending_ready_for_query(), 2u);
  c.be('T', ByteVector(2));
  c.be('C', body_of("SELECT 0\0"));
  c.be('Z', rfq_body('I'));
  EXPECT_FALSE(c.state.idle());
  EXPECT_EQ(c.state.current_request(), RequestKind::Query);
  c.be('C', body_of("SELECT 0\0"));
  c.be('Z', rfq_body('I'));
  EXPECT_TRUE(c.state.idle());
}

TEST(ProtocolStateSimpleQuery, OutOfOrderBackendMessagesAreRefused) {
  {
    Conversation c;
    c.start();
    auto v = c.be_fails('D', ByteVector(2));
    EXPECT_EQ(v.reason, "DataRow received while no query is in progress");
    EXPECT_EQ(v.error, WireError::UnexpectedMessage);
  }
  {
    Conversation c;
    c.start();
    EXPECT_EQ(c.be_fails('Z', rfq_body('I')).reason,
              "ReadyForQuery received with no Sync, Query or FunctionCall outstanding");
  }
  {
    Conversation c;
    c.start();
    c.be_fails('E', error_body("ERROR"));
  }
  {
    Conversation c;
    c.start();
    c.fe('Q', body_of("SELECT 1\0"));
    EXPECT_EQ(c.be_fails('D', ByteVector(2)).reason, "DataRow received without a RowDescription");
  }
  {
    Conversation c;
    c.start();
    c.fe('Q', body_of("SELECT 1\0"));
    EXPECT_EQ(c.be_fails('1').reason, "ParseComplete received in answer to a simple Query");
  }
  {
    Conversation c;
    c.start();
    c.fe('Q', body_of("SELECT 1\0"));
    c.be('T', ByteVector(2));
    c.be_fails('Z', rfq_body('I'));  // rows must end with CommandComplete
  }
  {
    Conversation c;
    c.start();
    c.fe('Q', body_of("SELECT 1\0"));
    c.be('T', ByteVector(2));
    c.be_fails('T', ByteVector(2));
  }
  {
    Conversation c;
    c.start();
    c.fe('Q', body_of("SELECT 1\0"));
    c.be_fails('s');
  }
}

TEST(ProtocolStateSimpleQuery, FatalErrorEndsTheConnectionAnywhere) {
  Conversation idle;
  idle.start();
  idle.be('E', error_body("FATAL"));
  EXPECT_TRUE(idle.state.closed());
  idle.be_fails('N', notice_fields("NOTICE"));

  Conversation rows;
  rows.start();
  rows.fe('Q', body_of("SELECT pg_sleep(100)\0"));
  rows.be('T', ByteVector(2));
  rows.be('D', ByteVector(2));
  rows.be('E', error_body("PANIC"));
  EXPECT_EQ(rows.state.backend_state(), BackendState::Closed);

  // A localized severity without 'V' still works when it reads FATAL.
  Conversation localized;
  localized.start();
  localized.be('E', notice_fields("FATAL", /*with_v=*/false));
  EXPECT_TRUE(localized.state.closed());
}

TEST(ProtocolStateSimpleQuery, MalformedPeekedFieldsAreRefused) {
  {
    Conversation c;
    c.start();
    c.fe('Q', body_of("SELECT 1\0"));
    c.be('C', body_of("SELECT 0\0"));
    EXPECT_EQ(c.be_fails('Z', rfq_body('X')).error, WireError::BadValue);
  }
  {
    Conversation c;
    c.start();
    c.fe('Q', body_of("SELECT 1\0"));
    c.be('C', body_of("SELECT 0\0"));
    EXPECT_EQ(c.be_fails('Z').error, WireError::ShortMessage);
  }
  {
    Conversation c;
    c.start();
    c.fe('Q', body_of("SELECT 1\0"));
    c.be('C', body_of("SELECT 0\0"));
    EXPECT_EQ(c.be_fails('Z', body_of("II")).error, WireError::TrailingBytes);
  }
  {
    Conversation c;
    c.start();
    c.fe('Q', body_of("SELECT 1\0"));
    EXPECT_EQ(c.be_fails('E', body_of("Mno severity\0\0")).error, WireError::BadValue);
  }
  {
    Conversation c;
    c.start();
    c.fe('Q', body_of("SELECT 1\0"));
    EXPECT_EQ(c.be_fails('E', body_of("SERROR")).error, WireError::MissingTerminator);
  }
  {
    Conversation c;
    c.start();
    c.fe('Q', body_of("SELECT 1\0"));
    EXPECT_EQ(c.be_fails('E', body_of("SERROR\0")).error, WireError::ShortMessage);
  }
  {
    Conversation c;
    c.start();
    c.fe('Q', body_of("SELECT 1\0"));
    auto body = error_body();
    body.push_back(std::byte{'x'});
    EXPECT_EQ(c.be_fails('E', body).error, WireError::TrailingBytes);
  }
}

TEST(ProtocolStateSimpleQuery, UnknownTypeBytesAreRefused) {
  Conversation c;
  c.start();
  auto v = c.fe_fails('Z');
  EXPECT_EQ(v.error, WireError::UnknownMessage);
  EXPECT_EQ(v.reason, "unknown frontend message type 0x5a");

  Conversation d;
  d.start();
  auto w = d.be_fails('Q', body_of("x\0"));
  EXPECT_EQ(w.error, WireError::UnknownMessage);
  EXPECT_EQ(w.reason, "unknown backend message type 0x51");

  Conversation e;
  e.start();
  e.fe_fails('\x7f');
  Conversation f;
  f.start();
  f.be_fails('\0');
}

TEST(ProtocolStateSimpleQuery, MachineStaysFailedAfterAViolation) {
  Conversation c;
  c.start();
  c.be_fails('D', ByteVector(2));
  // Even a message that would have been legal is refused now.
  auto r = c.state.on_frontend('Q', body_of("SELECT 1\0"));
  ASSERT_FALSE(r.has_value());
  EXPECT_TRUE(c.state.closed());
  EXPECT_FALSE(c.state.idle());
  EXPECT_FALSE(c.state.on_backend('N', notice_fields("NOTICE")).has_value());
}

// ================================ extended query ================================

TEST(ProtocolStateExtended, PipelinedBatchesAreMatchedToTheirRequests) {
  Conversation c;
  c.start();
  // Batch 1: Parse, Bind, Describe portal, Execute, Sync. Batch 2 pipelined behind it.
  c.fe('P', body_of("s1\0SELECT $1\0\0\0"));
  c.fe('B', ByteVector(8));
  c.fe('D', describe_body('P'));
  c.fe('E', ByteVector(5));
  c.fe('S');
  c.fe('P', body_of("s2\0SELECT 2\0\0\0"));
  c.fe('D', describe_body('S'));
  c.fe('H');
  c.fe('B', ByteVector(8));
  c.fe('E', ByteVector(5));
  c.fe('C', describe_body('S'));
  c.fe('S');
  EXPECT_EQ(c.state.pending_syncs(), 2u);
  EXPECT_EQ(c.state.pending_requests(), 11u);
  EXPECT_EQ(c.state.current_request(), RequestKind::Parse);

  c.be('1');
  c.be('2');
  c.be('T', ByteVector(2));
  c.be('D', ByteVector(2));
  c.be('D', ByteVector(2));
  c.be('C', body_of("SELECT 2\0"));
  EXPECT_EQ(c.state.current_request(), RequestKind::Sync);
  c.be('Z', rfq_body('I'));
  EXPECT_EQ(c.state.pending_syncs(), 1u);

  c.be('1');
  c.be('t', ByteVector(2));
  c.be('T', ByteVector(2));
  c.be('2');
  c.be('D', ByteVector(2));
  c.be('s');  // PortalSuspended: row limit reached
  c.be('3');
  c.be('Z', rfq_body('I'));
  EXPECT_EQ(c.state.pending_syncs(), 0u);
  EXPECT_TRUE(c.state.idle());
}

TEST(ProtocolStateExtended, DescribeAnswersAreChecked) {
  {
    Conversation c;
    c.start();
    c.fe('D', describe_body('S'));
    c.be('t', ByteVector(2));
    c.be('n');
    EXPECT_EQ(c.state.pending_requests(), 0u);
  }
  {
    // A statement Describe always starts with ParameterDescription.
    Conversation c;
    c.start();
    c.fe('D', describe_body('S'));
    EXPECT_EQ(c.be_fails('T', ByteVector(2)).reason,
              "RowDescription received in answer to Describe (statement)");
  }
  {
    Conversation c;
    c.start();
    c.fe('D', describe_body('P'));
    c.be_fails('t', ByteVector(2));
  }
  {
    Conversation c;
    c.start();
    c.fe('D', describe_body('S'));
    c.be('t', ByteVector(2));
    c.be_fails('1');
  }
  {
    Conversation c;
    c.start();
    EXPECT_EQ(c.fe_fails('D', describe_body('X')).error, WireError::BadValue);
  }
  {
    Conversation c;
    c.start();
    EXPECT_EQ(c.fe_fails('D').error, WireError::ShortMessage);
  }
}

TEST(ProtocolStateExtended, ExecuteAnswers) {
  Conversation c;
  c.start();
  c.fe('E', ByteVector(5));
  c.fe('E', ByteVector(5));
  c.fe('E', ByteVector(5));
  c.fe('S');
  c.be('I');                         // empty statement
  c.be('C', body_of("UPDATE 3\0"));  // no rows
  c.be('D', ByteVector(2));
  c.be('C', body_of("SELECT 1\0"));
  c.be('Z', rfq_body('I'));
  EXPECT_TRUE(c.state.idle());

  Conversation d;
  d.start();
  d.fe('E', ByteVector(5));
  d.be('D', ByteVector(2));
  EXPECT_EQ(d.be_fails('I').reason, "EmptyQueryResponse received amid the rows of an Execute");

  Conversation e;
  e.start();
  e.fe('E', ByteVector(5));
  e.be_fails('T', ByteVector(2));
}

TEST(ProtocolStateExtended, ErrorDiscardsUntilSync) {
  Conversation c;
  c.start();
  c.fe('P', body_of("\0SELECT 1\0\0\0"));
  c.fe('B', ByteVector(8));
  c.fe('E', ByteVector(5));
  c.fe('P', body_of("\0SELECT 2\0\0\0"));
  c.fe('Q', body_of("SELECT 3\0"));  // also skipped by the server
  c.fe('B', ByteVector(8));
  c.fe('E', ByteVector(5));
  c.fe('S');
  c.fe('P', body_of("\0SELECT 4\0\0\0"));
  c.fe('B', ByteVector(8));
  c.fe('E', ByteVector(5));
  c.fe('S');
  EXPECT_EQ(c.state.pending_syncs(), 2u);
  EXPECT_EQ(c.state.pending_ready_for_query(), 3u);

  c.be('1');
  c.be('E', error_body());  // Bind fails: everything up to the first Sync is skipped
  EXPECT_EQ(c.state.current_request(), RequestKind::Sync);
  EXPECT_EQ(c.state.pending_ready_for_query(), 2u);
  EXPECT_FALSE(c.state.server_discarding());  // the Sync is already queued
  c.be('Z', rfq_body('I'));
  EXPECT_EQ(c.state.pending_syncs(), 1u);

  c.be('1');
  c.be('2');
  c.be('D', ByteVector(2));
  c.be('C', body_of("SELECT 1\0"));
  c.be('Z', rfq_body('I'));
  EXPECT_TRUE(c.state.idle());
}

TEST(ProtocolStateExtended, AnswersToSkippedMessagesAreRefused) {
  Conversation c;
  c.start();
  c.fe('P', body_of("\0SELECT 1\0\0\0"));
  c.fe('B', ByteVector(8));
  c.fe('E', ByteVector(5));
  c.fe('S');
  c.be('E', error_body());  // Parse fails
  EXPECT_EQ(c.be_fails('2').reason, "BindComplete received in answer to Sync");
}

TEST(ProtocolStateExtended, ErrorBeforeSyncArrivesSkipsLaterMessages) {
  Conversation c;
  c.start();
  c.fe('P', body_of("\0SELEC\0\0\0"));
  c.fe('H');
  c.be('E', error_body());
  EXPECT_TRUE(c.state.server_discarding());
  EXPECT_EQ(c.state.pending_requests(), 0u);
  EXPECT_FALSE(c.state.idle());
  // The client keeps sending: the server skips these, so no answers are expected.
  EXPECT_EQ(c.fe('B', ByteVector(8)), Disposition::Forward);
  EXPECT_EQ(c.fe('E', ByteVector(5)), Disposition::Forward);
  EXPECT_EQ(c.state.pending_requests(), 0u);
  c.be_fails('2');

  Conversation d;
  d.start();
  d.fe('P', body_of("\0SELEC\0\0\0"));
  d.fe('H');
  d.be('E', error_body());
  d.fe('B', ByteVector(8));
  d.fe('S');
  EXPECT_FALSE(d.state.server_discarding());
  EXPECT_EQ(d.state.pending_syncs(), 1u);
  d.be('Z', rfq_body('E'));
  EXPECT_TRUE(d.state.idle());
}

TEST(ProtocolStateExtended, ErrorAtSyncDoesNotSkip) {
  // A deferred constraint fails when Sync commits: ErrorResponse, then ReadyForQuery.
  Conversation c;
  c.start();
  c.fe('E', ByteVector(5));
  c.fe('S');
  c.fe('Q', body_of("SELECT 1\0"));
  c.be('C', body_of("INSERT 0 1\0"));
  c.be('E', error_body());
  c.be('Z', rfq_body('I'));
  EXPECT_EQ(c.state.current_request(), RequestKind::Query);
  c.be('C', body_of("SELECT 0\0"));
  c.be('Z', rfq_body('I'));
  EXPECT_TRUE(c.state.idle());
}

TEST(ProtocolStateExtended, SimpleQueryErrorInsideABatchDoesNotSkip) {
  Conversation c;
  c.start();
  c.fe('Q', body_of("SELECT 1/0\0"));
  c.fe('P', body_of("\0SELECT 1\0\0\0"));
  c.fe('S');
  c.be('E', error_body());
  c.be('Z', rfq_body('I'));
  EXPECT_EQ(c.state.current_request(), RequestKind::Parse);
  c.be('1');
  c.be('Z', rfq_body('I'));
  EXPECT_TRUE(c.state.idle());
}

TEST(ProtocolStateExtended, PipelineDepthIsLimited) {
  Conversation c(4);
  c.start();
  c.fe('P', ByteVector(4));
  c.fe('B', ByteVector(8));
  c.fe('E', ByteVector(5));
  c.fe('S');
  c.fe('H');  // Flush expects no answer and takes no slot
  auto v = c.fe_fails('P', ByteVector(4));
  EXPECT_EQ(v.error, WireError::TooLarge);

  Conversation d(4);
  d.start();
  for (int i = 0; i < 4; ++i) {
    d.fe('S');
  }
  d.fe_fails('S');
}

TEST(ProtocolStateExtended, QueueSurvivesWrapAroundAndGrowth) {
  // Interleave sends and answers so the ring buffer wraps and grows several times.
  Conversation c;
  c.start();
  std::size_t outstanding = 0;
  for (int round = 0; round < 200; ++round) {
    int sends = 1 + round % 37;
    for (int i = 0; i < sends; ++i) {
      c.fe('P', ByteVector(4));
      c.fe('S');
      outstanding += 2;
    }
    int answers = 1 + round % 29;
    for (int i = 0; i < answers && outstanding > 0; ++i) {
      c.be('1');
      c.be('Z', rfq_body('I'));
      outstanding -= 2;
    }
    ASSERT_EQ(c.state.pending_requests(), outstanding);
    ASSERT_EQ(c.state.pending_syncs(), outstanding / 2);
  }
  while (outstanding > 0) {
    c.be('1');
    c.be('Z', rfq_body('I'));
    outstanding -= 2;
  }
  EXPECT_TRUE(c.state.idle());
}

// ============================ answering locally (policy) ============================

TEST(ProtocolStateLocal, DeniedParseWithNothingForwardedIsAnsweredEntirelyLocally) {
  Conversation c;
  c.start();
  EXPECT_EQ(c.fe('P', body_of("\0DROP TABLE t\0\0\0")), Disposition::Forward);
  ASSERT_TRUE(c.state.answer_locally().has_value());
  EXPECT_TRUE(c.state.locally_discarding());
  EXPECT_EQ(c.state.local_answer_due(), LocalAnswer::ErrorResponse);
  EXPECT_EQ(c.fe('B', ByteVector(8)), Disposition::Discard);
  EXPECT_EQ(c.fe('D', describe_body('P')), Disposition::Discard);
  EXPECT_EQ(c.fe('E', ByteVector(5)), Disposition::Discard);
  EXPECT_EQ(c.fe('H'), Disposition::Discard);
  EXPECT_EQ(c.fe('Q', body_of("SELECT 1\0")), Disposition::Discard);
  EXPECT_EQ(c.fe('S'), Disposition::AnswerLocally);
  EXPECT_FALSE(c.state.locally_discarding());
  EXPECT_EQ(c.state.pending_requests(), 2u);  // the denied Parse and the Sync

  // The proxy's ErrorResponse, then its ReadyForQuery.
  c.be('E', error_body());
  EXPECT_EQ(c.state.local_answer_due(), LocalAnswer::ReadyForQuery);
  c.be('Z', rfq_body('I'));
  EXPECT_EQ(c.state.local_answer_due(), LocalAnswer::None);
  EXPECT_TRUE(c.state.idle());
}

TEST(ProtocolStateLocal, DeniedParseAfterForwardedMessagesWaitsItsTurn) {
  Conversation c;
  c.start();
  c.fe('P', body_of("\0SELECT 1\0\0\0"));
  c.fe('B', ByteVector(8));
  c.fe('E', ByteVector(5));
  c.fe('P', body_of("\0DELETE FROM t\0\0\0"));
  ASSERT_TRUE(c.state.answer_locally().has_value());
  EXPECT_EQ(c.fe('B', ByteVector(8)), Disposition::Discard);
  EXPECT_EQ(c.fe('E', ByteVector(5)), Disposition::Discard);
  // Part of the batch reached the server: it needs the Sync and answers it.
  EXPECT_EQ(c.fe('S'), Disposition::Forward);
  EXPECT_EQ(c.state.local_answer_due(), LocalAnswer::None);

  c.be('1');
  c.be('2');
  c.be('D', ByteVector(2));
  EXPECT_EQ(c.state.local_answer_due(), LocalAnswer::None);
  c.be('C', body_of("SELECT 1\0"));
  EXPECT_EQ(c.state.local_answer_due(), LocalAnswer::ErrorResponse);
  // The server's ReadyForQuery may not overtake the proxy's error.
  auto copy = c.state;
  auto r = copy.on_backend('Z', rfq_body('I'));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().reason,
            "ReadyForQuery received while the proxy owes an ErrorResponse for a locally "
            "answered request");

  c.be('N', notice_fields("NOTICE"));  // asynchronous messages may still pass
  c.be('E', error_body());
  EXPECT_EQ(c.state.local_answer_due(), LocalAnswer::None);
  EXPECT_EQ(c.state.current_request(), RequestKind::Sync);
  c.be('Z', rfq_body('I'));
  EXPECT_TRUE(c.state.idle());
}

TEST(ProtocolStateLocal, DeniedQueryIsAnsweredWithErrorAndReadyForQuery) {
  Conversation c;
  c.start();
  c.fe('Q', body_of("SELECT 1\0"));
  c.fe('Q', body_of("DROP TABLE t\0"));
  ASSERT_TRUE(c.state.answer_locally().has_value());
  EXPECT_FALSE(c.state.locally_discarding());  // a simple Query skips nothing
  EXPECT_EQ(c.fe('Q', body_of("SELECT 3\0")), Disposition::Forward);

  EXPECT_EQ(c.state.local_answer_due(), LocalAnswer::None);
  c.be('C', body_of("SELECT 0\0"));
  c.be('Z', rfq_body('T'));
  EXPECT_EQ(c.state.local_answer_due(), LocalAnswer::ErrorResponse);
  c.be('E', error_body());
  EXPECT_EQ(c.state.local_answer_due(), LocalAnswer::ReadyForQuery);
  c.be('Z', rfq_body('T'));
  EXPECT_EQ(c.state.local_answer_due(), LocalAnswer::None);
  c.be('C', body_of("SELECT 0\0"));
  c.be('Z', rfq_body('T'));
  EXPECT_TRUE(c.state.idle());
}

TEST(ProtocolStateLocal, LocalSyncAcceptsOnlyReadyForQuery) {
  Conversation c;
  c.start();
  c.fe('P', ByteVector(4));
  ASSERT_TRUE(c.state.answer_locally().has_value());
  EXPECT_EQ(c.fe('S'), Disposition::AnswerLocally);
  c.be('E', error_body());
  c.be_fails('E', error_body());
}

TEST(ProtocolStateLocal, ServerErrorEarlierInTheBatchSupersedesTheLocalAnswer) {
  Conversation c;
  c.start();
  c.fe('P', body_of("\0SELEC\0\0\0"));
  c.fe('P', body_of("\0DROP TABLE t\0\0\0"));
  ASSERT_TRUE(c.state.answer_locally().has_value());
  EXPECT_EQ(c.fe('S'), Disposition::Forward);
  c.be('E', error_body());  // the first Parse fails: PostgreSQL would skip the second too
  EXPECT_EQ(c.state.local_answer_due(), LocalAnswer::None);
  c.be('Z', rfq_body('I'));
  EXPECT_TRUE(c.state.idle());
}

TEST(ProtocolStateLocal, DenyWhileServerSkipsOwesNothing) {
  Conversation c;
  c.start();
  c.fe('P', body_of("\0SELEC\0\0\0"));
  c.fe('H');
  c.be('E', error_body());
  EXPECT_EQ(c.fe('P', body_of("\0DROP TABLE t\0\0\0")), Disposition::Forward);
  ASSERT_TRUE(c.state.answer_locally().has_value());
  EXPECT_EQ(c.state.local_answer_due(), LocalAnswer::None);
  EXPECT_EQ(c.state.pending_requests(), 0u);
  EXPECT_EQ(c.fe('S'), Disposition::Forward);
  c.be('Z', rfq_body('I'));
  EXPECT_TRUE(c.state.idle());
}

TEST(ProtocolStateLocal, AnswerLocallyIsOnlyValidRightAfterARequest) {
  {
    Conversation c;
    c.start();
    EXPECT_FALSE(c.state.answer_locally().has_value());
    EXPECT_TRUE(c.state.failed());
  }
  {
    Conversation c;
    c.start();
    c.fe('S');
    EXPECT_FALSE(c.state.answer_locally().has_value());
  }
  {
    Conversation c;
    c.start();
    c.fe('H');
    EXPECT_FALSE(c.state.answer_locally().has_value());
  }
  {
    Conversation c;
    c.start();
    c.fe('P', ByteVector(4));
    ASSERT_TRUE(c.state.answer_locally().has_value());
    EXPECT_FALSE(c.state.answer_locally().has_value());
  }
  {
    // A message dropped during a local skip cannot be denied again.
    Conversation c;
    c.start();
    c.fe('P', ByteVector(4));
    ASSERT_TRUE(c.state.answer_locally().has_value());
    EXPECT_EQ(c.fe('B', ByteVector(8)), Disposition::Discard);
    EXPECT_FALSE(c.state.answer_locally().has_value());
  }
  {
    // The denied request vanished from the queue (skipped after a server error).
    Conversation c;
    c.start();
    c.fe('P', ByteVector(4));
    c.fe('H');
    c.fe('B', ByteVector(8));
    c.be('E', error_body());
    EXPECT_EQ(c.state.pending_requests(), 0u);
    ASSERT_TRUE(c.state.answer_locally().has_value());
    EXPECT_EQ(c.state.local_answer_due(), LocalAnswer::None);
    EXPECT_FALSE(c.state.locally_discarding());
  }
}

// ===================================== COPY =====================================

TEST(ProtocolStateCopy, CopyInFromSimpleQuery) {
  Conversation c;
  c.start();
  c.fe('Q', body_of("COPY t FROM STDIN\0"));
  c.be('G', ByteVector(3));
  EXPECT_EQ(c.state.frontend_state(), FrontendState::CopyIn);
  EXPECT_EQ(c.state.backend_state(), BackendState::CopyIn);
  c.fe('d', body_of("1\tone\n"));
  c.be('N', notice_fields("NOTICE"));
  c.fe('d', body_of("2\ttwo\n"));
  c.fe('H');
  c.fe('S');  // ignored by the server during copy-in: no ReadyForQuery for it
  EXPECT_EQ(c.state.pending_syncs(), 0u);
  c.fe('c');
  EXPECT_EQ(c.state.frontend_state(), FrontendState::Ready);
  c.be('C', body_of("COPY 2\0"));
  c.be('Z', rfq_body('I'));
  EXPECT_TRUE(c.state.idle());
}

TEST(ProtocolStateCopy, OtherMessagesDuringCopyInAreRefused) {
  Conversation c;
  c.start();
  c.fe('Q', body_of("COPY t FROM STDIN\0"));
  c.be('G', ByteVector(3));
  c.fe('d', body_of("1\n"));
  auto v = c.fe_fails('B', ByteVector(8));
  EXPECT_EQ(v.reason, "Bind received during COPY IN");

  Conversation d;
  d.start();
  d.fe('Q', body_of("COPY t FROM STDIN\0"));
  d.be('G', ByteVector(3));
  d.fe_fails('Q', body_of("SELECT 1\0"));

  // The server cannot complete a copy-in the client has not finished.
  Conversation e;
  e.start();
  e.fe('Q', body_of("COPY t FROM STDIN\0"));
  e.be('G', ByteVector(3));
  e.fe('d', body_of("1\n"));
  EXPECT_EQ(e.be_fails('C', body_of("COPY 1\0")).reason,
            "CommandComplete received while the client is sending COPY data");

  Conversation f;
  f.start();
  f.fe('Q', body_of("COPY t FROM STDIN\0"));
  f.be('G', ByteVector(3));
  f.be_fails('d', ByteVector(1));  // the server sends no copy data in copy-in
}

TEST(ProtocolStateCopy, CopyInFromExtendedExecuteSwallowsTheEarlySync) {
  // libpq's PQexecParams("COPY t FROM STDIN"): Parse, Bind, Describe, Execute, Sync at once.
  Conversation c;
  c.start();
  c.fe('P', body_of("\0COPY t FROM STDIN\0\0\0"));
  c.fe('B', ByteVector(8));
  c.fe('D', describe_body('P'));
  c.fe('E', ByteVector(5));
  c.fe('S');
  EXPECT_EQ(c.state.pending_syncs(), 1u);
  c.be('1');
  c.be('2');
  c.be('n');
  c.be('G', ByteVector(3));
  // The Sync was read (and ignored) by the server in copy mode.
  EXPECT_EQ(c.state.pending_syncs(), 0u);
  EXPECT_EQ(c.state.pending_ready_for_query(), 0u);
  EXPECT_EQ(c.state.frontend_state(), FrontendState::CopyIn);
  c.fe('d', body_of("1\n"));
  c.fe('c');
  c.fe('S');  // libpq's Sync after CopyDone in extended mode
  EXPECT_EQ(c.state.pending_syncs(), 1u);
  c.be('C', body_of("COPY 1\0"));
  EXPECT_EQ(c.state.current_request(), RequestKind::Sync);
  c.be('Z', rfq_body('I'));
  EXPECT_TRUE(c.state.idle());
}

TEST(ProtocolStateCopy, ErrorDuringExtendedCopyInSkipsToSync) {
  Conversation c;
  c.start();
  c.fe('P', ByteVector(4));
  c.fe('B', ByteVector(8));
  c.fe('E', ByteVector(5));
  c.fe('S');
  c.be('1');
  c.be('2');
  c.be('G', ByteVector(3));
  c.fe('d', body_of("bad\n"));
  c.be('E', error_body());  // invalid input syntax
  EXPECT_TRUE(c.state.server_discarding());
  EXPECT_EQ(c.state.frontend_state(), FrontendState::Ready);
  // The client has not read the error yet and finishes its copy: the server drops it all.
  c.fe('d', body_of("more\n"));
  c.fe('c');
  c.fe('S');
  c.be('Z', rfq_body('E'));
  EXPECT_TRUE(c.state.idle());
}

TEST(ProtocolStateCopy, AbortedCopyInToleratesStrayCopyMessagesOnlyUntilDone) {
  Conversation c;
  c.start();
  c.fe('Q', body_of("COPY t FROM STDIN\0"));
  c.be('G', ByteVector(3));
  c.fe('d', body_of("bad\n"));
  c.be('E', error_body());
  c.be('Z', rfq_body('I'));
  EXPECT_EQ(c.fe('d', body_of("late\n")), Disposition::Forward);
  EXPECT_EQ(c.fe('c'), Disposition::Forward);
  auto v = c.fe_fails('d', body_of("after done\n"));
  EXPECT_EQ(v.reason, "CopyData received while no COPY IN is in progress");

  // A client that moves on without CopyDone may not resume sending copy data later.
  Conversation d;
  d.start();
  d.fe('Q', body_of("COPY t FROM STDIN\0"));
  d.be('G', ByteVector(3));
  d.be('E', error_body());
  d.be('Z', rfq_body('I'));
  d.fe('Q', body_of("SELECT 1\0"));
  d.fe_fails('c');

  Conversation e;
  e.start();
  e.fe_fails('d', body_of("x"));
  Conversation f;
  f.start();
  f.fe_fails('f', body_of("x\0"));
}

TEST(ProtocolStateCopy, CopyFailIsAnsweredWithError) {
  Conversation c;
  c.start();
  c.fe('Q', body_of("COPY t FROM STDIN\0"));
  c.be('G', ByteVector(3));
  c.fe('d', body_of("1\n"));
  c.fe('f', body_of("client gave up\0"));
  EXPECT_EQ(c.state.backend_state(), BackendState::CopyInFailed);
  c.be('E', error_body());
  c.be('Z', rfq_body('I'));
  EXPECT_TRUE(c.state.idle());

  Conversation d;
  d.start();
  d.fe('Q', body_of("COPY t FROM STDIN\0"));
  d.be('G', ByteVector(3));
  d.fe('f', body_of("client gave up\0"));
  EXPECT_EQ(d.be_fails('C', body_of("COPY 0\0")).reason,
            "CommandComplete received after the client's CopyFail");
}

TEST(ProtocolStateCopy, MessagesPipelinedBehindCopyFromStdinAreRefused) {
  Conversation c;
  c.start();
  c.fe('Q', body_of("COPY t FROM STDIN\0"));
  c.fe('Q', body_of("SELECT 1\0"));
  auto v = c.be_fails('G', ByteVector(3));
  EXPECT_EQ(v.reason,
            "Query was pipelined behind a COPY FROM STDIN; the server would read it as copy "
            "data");

  Conversation d;
  d.start();
  d.fe('P', ByteVector(4));
  d.fe('E', ByteVector(5));
  d.fe('S');
  d.fe('P', ByteVector(4));
  d.be('1');
  d.be_fails('G', ByteVector(3));
}

TEST(ProtocolStateCopy, CopyOutFromSimpleQueryThenMoreResults) {
  Conversation c;
  c.start();
  c.fe('Q', body_of("COPY t TO STDOUT; SELECT 1\0"));
  c.fe('Q', body_of("SELECT 2\0"));  // pipelining behind COPY TO is fine
  c.be('H', ByteVector(3));
  EXPECT_EQ(c.state.frontend_state(), FrontendState::Ready);
  c.be('d', body_of("1\n"));
  c.be('N', notice_fields("NOTICE"));
  c.be('S', body_of("a\0b\0"));
  c.be('d', body_of("2\n"));
  c.be('c');
  c.be('C', body_of("COPY 2\0"));
  c.be('T', ByteVector(2));
  c.be('D', ByteVector(2));
  c.be('C', body_of("SELECT 1\0"));
  c.be('Z', rfq_body('I'));
  c.be('C', body_of("SELECT 0\0"));
  c.be('Z', rfq_body('I'));
  EXPECT_TRUE(c.state.idle());
}

TEST(ProtocolStateCopy, CopyOutIsStrict) {
  Conversation c;
  c.start();
  c.fe('Q', body_of("COPY t TO STDOUT\0"));
  c.be('H', ByteVector(3));
  c.be('d', body_of("1\n"));
  EXPECT_EQ(c.be_fails('D', ByteVector(2)).reason, "DataRow received during COPY OUT");

  Conversation d;
  d.start();
  d.fe('Q', body_of("COPY t TO STDOUT\0"));
  d.be('H', ByteVector(3));
  d.be('c');
  d.be_fails('Z', rfq_body('I'));  // CommandComplete must come first

  Conversation e;
  e.start();
  e.fe('Q', body_of("COPY t TO STDOUT\0"));
  e.be('H', ByteVector(3));
  e.fe_fails('d', body_of("client data\n"));  // the client has nothing to copy here

  Conversation f;
  f.start();
  f.fe('Q', body_of("COPY t TO STDOUT\0"));
  f.be('H', ByteVector(3));
  f.be('d', body_of("1\n"));
  f.be('E', error_body());  // e.g. cancelled mid-copy
  f.be('Z', rfq_body('I'));
  EXPECT_TRUE(f.state.idle());
}

TEST(ProtocolStateCopy, CopyOutFromExtendedExecute) {
  Conversation c;
  c.start();
  c.fe('P', body_of("\0COPY t TO STDOUT\0\0\0"));
  c.fe('B', ByteVector(8));
  c.fe('E', ByteVector(5));
  c.fe('S');
  c.be('1');
  c.be('2');
  c.be('H', ByteVector(3));
  EXPECT_EQ(c.state.pending_syncs(), 1u);  // copy-out does not read the Sync
  c.be('d', body_of("1\n"));
  c.be('c');
  c.be('C', body_of("COPY 1\0"));
  c.be('Z', rfq_body('I'));
  EXPECT_TRUE(c.state.idle());
}

TEST(ProtocolStateCopy, CopyBothClientFinishesFirst) {
  Conversation c;
  c.start();
  c.fe('Q', body_of("START_REPLICATION 0/0\0"));
  c.be('W', ByteVector(3));
  EXPECT_EQ(c.state.frontend_state(), FrontendState::CopyBoth);
  c.be('d', body_of("w..."));
  c.fe('d', body_of("r..."));
  c.be('d', body_of("k..."));
  c.fe('c');
  EXPECT_EQ(c.state.backend_state(), BackendState::CopyBothClientDone);
  EXPECT_EQ(c.state.frontend_state(), FrontendState::Ready);
  c.be('d', body_of("w..."));
  c.be('c');
  // The walsender may report the next timeline as a result set.
  c.be('T', ByteVector(2));
  c.be('D', ByteVector(2));
  c.be('C', body_of("START_REPLICATION\0"));
  c.be('Z', rfq_body('I'));
  EXPECT_TRUE(c.state.idle());
}

TEST(ProtocolStateCopy, CopyBothServerFinishesFirst) {
  Conversation c;
  c.start();
  c.fe('Q', body_of("START_REPLICATION 0/0\0"));
  c.be('W', ByteVector(3));
  c.be('d', body_of("w..."));
  c.be('c');
  EXPECT_EQ(c.state.backend_state(), BackendState::CopyBothServerDone);
  c.be_fails('d', body_of("w..."));

  Conversation d;
  d.start();
  d.fe('Q', body_of("START_REPLICATION 0/0\0"));
  d.be('W', ByteVector(3));
  d.be('c');
  d.fe('d', body_of("r..."));  // the client may still send until its own CopyDone
  d.fe('c');
  d.be('C', body_of("START_REPLICATION\0"));
  d.be('Z', rfq_body('I'));
  EXPECT_TRUE(d.state.idle());
}

TEST(ProtocolStateCopy, CopyBothRefusesEverythingButCopyMessages) {
  Conversation c;
  c.start();
  c.fe('Q', body_of("START_REPLICATION 0/0\0"));
  c.be('W', ByteVector(3));
  EXPECT_EQ(c.fe_fails('P', ByteVector(4)).reason, "Parse received during COPY BOTH");

  Conversation d;
  d.start();
  d.fe('Q', body_of("START_REPLICATION 0/0\0"));
  d.be('W', ByteVector(3));
  d.fe_fails('f', body_of("no\0"));

  Conversation e;
  e.start();
  e.fe('Q', body_of("START_REPLICATION 0/0\0"));
  e.fe('S');  // even a Sync would be read in copy-both mode
  e.be_fails('W', ByteVector(3));
}

// ================================ function call ================================

TEST(ProtocolStateFunctionCall, ResultErrorAndCommitFailure) {
  Conversation c;
  c.start();
  c.fe('F', ByteVector(10));
  EXPECT_EQ(c.state.pending_ready_for_query(), 1u);
  c.be('V', ByteVector(4));
  c.be('Z', rfq_body('I'));
  c.fe('F', ByteVector(10));
  c.be('E', error_body());
  c.be('Z', rfq_body('I'));
  c.fe('F', ByteVector(10));
  c.be('V', ByteVector(4));
  c.be('E', error_body());
  c.be('Z', rfq_body('I'));
  EXPECT_TRUE(c.state.idle());

  Conversation d;
  d.start();
  d.fe('F', ByteVector(10));
  EXPECT_EQ(d.be_fails('D', ByteVector(2)).reason, "DataRow received in answer to FunctionCall");

  Conversation e;
  e.start();
  e.fe('F', ByteVector(10));
  e.be('V', ByteVector(4));
  e.be_fails('V', ByteVector(4));
}

// ================================== terminate ==================================

TEST(ProtocolStateTerminate, NothingAfterTerminate) {
  Conversation c;
  c.start();
  c.fe('Q', body_of("SELECT 1\0"));
  EXPECT_EQ(c.fe('X'), Disposition::Forward);
  EXPECT_TRUE(c.state.closed());
  // Answers to what was sent before Terminate may still arrive.
  c.be('T', ByteVector(2));
  c.be('C', body_of("SELECT 0\0"));
  c.be('Z', rfq_body('I'));
  c.be('N', notice_fields("NOTICE"));
  EXPECT_EQ(c.be_fails('D', ByteVector(2)).reason, "DataRow received after Terminate");

  for (char type : {'Q', 'S', 'X', 'd', 'p', 'P'}) {
    Conversation d;
    d.start();
    d.fe('X');
    auto v = d.fe_fails(type, ByteVector(4));
    EXPECT_NE(v.reason.find("after Terminate"), std::string::npos) << v.reason;
  }
}

TEST(ProtocolStateTerminate, TerminateIsAllowedDuringCopyAndSkips) {
  Conversation c;
  c.start();
  c.fe('Q', body_of("COPY t FROM STDIN\0"));
  c.be('G', ByteVector(3));
  c.fe('d', body_of("1\n"));
  c.fe('X');
  EXPECT_EQ(c.state.frontend_state(), FrontendState::Terminated);
  c.be('E', error_body());
  EXPECT_EQ(c.state.frontend_state(), FrontendState::Terminated);

  Conversation d;
  d.start();
  d.fe('P', ByteVector(4));
  ASSERT_TRUE(d.state.answer_locally().has_value());
  EXPECT_EQ(d.fe('X'), Disposition::Forward);
}

// ============================ robustness (random walk) ============================

struct RandomStep {
  bool frontend = false;
  char type = 0;
  ByteVector body;
  bool deny = false;  // call answer_locally() after an accepted frontend message
};

RandomStep random_step(std::mt19937& rng) {
  static constexpr char kFrontend[] = {'Q', 'P', 'B', 'D', 'E', 'C', 'S',  'H',
                                       'F', 'd', 'c', 'f', 'p', 'X', '\0', 'Z'};
  static constexpr char kBackend[] = {'R', 'K', '2', '3', 'C', 'd', 'c', 'G', 'H',
                                      'W', 'D', 'I', 'E', 'V', 'v', 'n', 'N', 'A',
                                      't', 'S', '1', 's', 'Z', 'T', 'Q', '\0'};
  RandomStep step;
  step.frontend = rng() % 2 == 0;
  if (step.frontend) {
    step.type = kFrontend[rng() % std::size(kFrontend)];
    if (step.type == '\0') {
      step.body = startup_body(rng() % 4 == 0 ? kSslRequestCode : kProtocol30);
    } else if (step.type == 'D') {
      step.body = describe_body("SPX"[rng() % 3]);
    } else {
      step.body = ByteVector(rng() % 6);
    }
    step.deny = rng() % 6 == 0;
    return step;
  }
  step.type = kBackend[rng() % std::size(kBackend)];
  switch (step.type) {
    case 'R':
      step.body = auth_raw(static_cast<std::int32_t>(rng() % 14));
      break;
    case 'Z':
      step.body = rfq_body("ITEX"[rng() % 4]);
      break;
    case 'E':
      step.body = rng() % 10 == 0 ? ByteVector(3) : error_body(rng() % 12 == 0 ? "FATAL" : "ERROR");
      break;
    default:
      step.body = ByteVector(rng() % 6);
  }
  return step;
}

bool apply(ProtocolState& state, const RandomStep& step) {
  if (step.frontend) {
    auto r = state.on_frontend(step.type, step.body);
    if (r && step.deny) {
      (void)state.answer_locally();
    }
    return !state.failed();
  }
  return state.on_backend(step.type, step.body).has_value();
}

// A guided random walk: most steps are picked among messages the machine accepts (found by
// trying candidates on a copy), the rest are arbitrary. Checks that nothing crashes (under
// ASan/UBSan), that counters stay consistent, that a failed machine stays failed, and that
// the walk reaches deep states, so the checks are not vacuous.
TEST(ProtocolStateRobustness, RandomConversationsKeepInvariants) {
  std::mt19937 rng(12345);
  std::vector<bool> backend_seen(64), frontend_seen(16);
  std::size_t accepted = 0;
  std::size_t failures = 0;
  for (int run = 0; run < 2000; ++run) {
    ProtocolState state(8);
    bool failed = false;
    if (run % 2 == 0) {
      ASSERT_TRUE(state.on_frontend(kStartup, startup_body()).has_value());
      ASSERT_TRUE(state.on_backend('R', auth_body(AuthType::Ok)).has_value());
      ASSERT_TRUE(state.on_backend('Z', rfq_body('I')).has_value());
    }
    for (int step = 0; step < 80 && !failed; ++step) {
      RandomStep next = random_step(rng);
      if (rng() % 40 != 0) {
        for (int attempt = 0; attempt < 200; ++attempt) {
          // Ending the connection (Terminate, FATAL) is accepted almost everywhere: keep it
          // rare so that walks get deep.
          ProtocolState probe = state;
          if (apply(probe, next) && (!probe.closed() || rng() % 50 == 0)) {
            break;
          }
          next = random_step(rng);
        }
      }
      failed = !apply(state, next);
      ASSERT_EQ(failed, state.failed());
      ASSERT_LE(state.pending_syncs(), state.pending_ready_for_query());
      ASSERT_LE(state.pending_ready_for_query(), state.pending_requests());
      ASSERT_LE(state.pending_requests(), 8u);
      if (state.idle()) {
        ASSERT_EQ(state.pending_requests(), 0u);
        ASSERT_TRUE(state.transaction_status().has_value());
        ASSERT_EQ(state.local_answer_due(), LocalAnswer::None);
      }
      if (state.expected_auth_response() != AuthResponseKind::None) {
        ASSERT_EQ(state.frontend_state(), FrontendState::AuthResponse);
      }
      if (!failed) {
        ++accepted;
        backend_seen[static_cast<std::size_t>(state.backend_state())] = true;
        frontend_seen[static_cast<std::size_t>(state.frontend_state())] = true;
      }
    }
    if (failed) {
      ++failures;
      EXPECT_FALSE(state.on_frontend('S', {}).has_value());
      EXPECT_FALSE(state.on_backend('N', notice_fields("NOTICE")).has_value());
      EXPECT_FALSE(state.answer_locally().has_value());
      EXPECT_TRUE(state.closed());
    }
  }
  auto count = [](const std::vector<bool>& v) { return std::count(v.begin(), v.end(), true); };
  EXPECT_GT(accepted, 50'000u);
  EXPECT_GT(failures, 100u);
  // Every backend state but AwaitingStartup (left by the first accepted message) is reached.
  EXPECT_EQ(count(backend_seen), static_cast<long>(BackendState::Closed));
  // Likewise for the frontend: every state but AwaitingStartup.
  EXPECT_EQ(count(frontend_seen), static_cast<long>(FrontendState::ServerClosed));
}

}  // namespace
}  // namespace pgwarden::wire
