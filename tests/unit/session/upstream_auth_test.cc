// UpstreamAuth driven against a real server state machine: crypto::ScramServer with a verifier
// from crypto::make_scram_verifier plays the upstream PostgreSQL, and every byte UpstreamAuth
// emits is framed and decoded with the wire codec before the server sees it. Covers SCRAM
// with and without channel binding (success, wrong password, -PLUS required over TLS, a
// binding to another certificate, a server that cannot sign), cleartext only over TLS, MD5,
// refused methods, and AuthenticationOk arriving before the server has proven itself.
#include "session/upstream_auth.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "crypto/md5.h"
#include "crypto/random.h"
#include "crypto/scram.h"
#include "crypto/scram_server.h"
#include "wire/backend.h"
#include "wire/framer.h"
#include "wire/frontend.h"
#include "wire/limits.h"

namespace pgwarden::session {
namespace {

using wire::Bytes;
using wire::ByteVector;

constexpr std::uint32_t kIterations = 64;  // cheap PBKDF2; the client accepts up to 100k
constexpr std::string_view kUser = "app";
const std::string kPassword = "correct horse battery staple";

std::vector<std::byte> channel_binding(std::uint8_t fill) {
  return std::vector<std::byte>(32, std::byte{fill});
}

const std::vector<std::byte>& mock_secret() {
  static const std::vector<std::byte> s = [] {
    std::vector<std::byte> v(crypto::kMinMockSecret);
    EXPECT_TRUE(crypto::random_bytes(v));
    return v;
  }();
  return s;
}

crypto::ScramVerifier verifier(std::string_view password) {
  auto v = crypto::make_scram_verifier(password, kIterations);
  EXPECT_TRUE(v.has_value());
  return *v;
}

crypto::ScramServer make_server(crypto::ScramVerifier v,
                                std::optional<std::vector<std::byte>> cb = std::nullopt) {
  crypto::ScramServerOptions o;
  o.channel_binding = std::move(cb);
  o.mock_iterations = kIterations;
  return crypto::ScramServer(std::move(v), kUser, mock_secret(), std::move(o));
}

UpstreamAuth make_client(bool tls, std::optional<std::vector<std::byte>> cb = std::nullopt,
                         const std::string& password = kPassword) {
  UpstreamAuthOptions o;
  o.user = std::string(kUser);
  o.password = password;
  o.tls_active = tls;
  o.channel_binding_data = std::move(cb);
  return UpstreamAuth(std::move(o));
}

// The body of one backend message, as the session hands it over after framing.
template <typename Message>
ByteVector body_of(const Message& m) {
  ByteVector whole;
  wire::encode(m, whole);
  auto framed = wire::frame_typed(whole, wire::kMaxAuthMessage);
  EXPECT_TRUE(framed && framed->frame);
  EXPECT_EQ(framed->frame->type, 'R');
  return ByteVector(framed->frame->body.begin(), framed->frame->body.end());
}

// Decodes exactly one 'p' message of the expected kind from what UpstreamAuth wrote; the
// result views `out`.
std::optional<wire::FrontendMessage> one_reply(const ByteVector& out, wire::AuthResponseKind kind) {
  auto framed = wire::frame_typed(out, wire::kMaxAuthMessage);
  if (!framed || !framed->frame) {
    ADD_FAILURE() << "reply does not frame";
    return std::nullopt;
  }
  EXPECT_EQ(framed->frame->type, 'p');
  EXPECT_EQ(framed->frame->whole.size(), out.size()) << "more than one message written";
  auto m = wire::decode_frontend(*framed->frame, kind);
  if (!m) {
    ADD_FAILURE() << "reply does not decode";
    return std::nullopt;
  }
  return *m;
}

void expect_no_secret(std::string_view reason, std::string_view password = kPassword) {
  EXPECT_EQ(reason.find(password), std::string_view::npos) << reason;
}

// Where a SCRAM exchange stopped.
enum class Outcome {
  Ok,
  ClientFailedAtStart,
  ClientFailedAtContinue,
  ServerFailed,
  ClientFailedAtFinal
};

struct Exchange {
  Outcome outcome = Outcome::Ok;
  std::string client_error;
  std::optional<crypto::CryptoError> server_error;
};

// Plays one full SCRAM login: AuthenticationSASL with the server's mechanisms,
// SASLInitialResponse, SASLContinue, SASLResponse, SASLFinal, AuthenticationOk.
Exchange run_scram(UpstreamAuth& client, crypto::ScramServer& server) {
  Exchange ex;
  ByteVector out;
  wire::AuthenticationSasl sasl;
  for (auto m : server.mechanisms()) {
    sasl.mechanisms.push_back(m);
  }
  auto r = client.on_authentication(body_of(sasl), out);
  if (!r) {
    EXPECT_TRUE(out.empty()) << "nothing may be sent after a failure";
    ex.outcome = Outcome::ClientFailedAtStart;
    ex.client_error = r.error();
    return ex;
  }
  EXPECT_FALSE(*r);
  auto initial = one_reply(out, wire::AuthResponseKind::SaslInitial);
  if (!initial) {
    return ex;
  }
  auto* ir = std::get_if<wire::SaslInitialResponse>(&*initial);
  EXPECT_TRUE(ir && ir->data);
  if (!ir || !ir->data) {
    return ex;
  }
  auto first = server.on_client_first(ir->mechanism, *ir->data);
  if (!first) {
    ex.outcome = Outcome::ServerFailed;
    ex.server_error = first.error();
    return ex;
  }

  ByteVector out2;
  r = client.on_authentication(
      body_of(wire::AuthenticationSaslContinue{wire::as_bytes(first->data)}), out2);
  if (!r) {
    EXPECT_TRUE(out2.empty());
    ex.outcome = Outcome::ClientFailedAtContinue;
    ex.client_error = r.error();
    return ex;
  }
  EXPECT_FALSE(*r);
  auto response = one_reply(out2, wire::AuthResponseKind::Sasl);
  if (!response) {
    return ex;
  }
  auto* sr = std::get_if<wire::SaslResponse>(&*response);
  EXPECT_TRUE(sr);
  if (!sr) {
    return ex;
  }
  auto final_reply = server.on_client_final(sr->data);
  if (!final_reply) {
    ex.outcome = Outcome::ServerFailed;
    ex.server_error = final_reply.error();
    return ex;
  }
  EXPECT_TRUE(final_reply->final);

  ByteVector out3;
  r = client.on_authentication(
      body_of(wire::AuthenticationSaslFinal{wire::as_bytes(final_reply->data)}), out3);
  if (!r) {
    ex.outcome = Outcome::ClientFailedAtFinal;
    ex.client_error = r.error();
    return ex;
  }
  EXPECT_FALSE(*r);
  EXPECT_TRUE(out3.empty()) << "nothing is sent after SASLFinal";
  r = client.on_authentication(body_of(wire::AuthenticationOk{}), out3);
  EXPECT_TRUE(r.has_value()) << r.error();
  EXPECT_TRUE(r.value_or(false));
  EXPECT_TRUE(out3.empty());
  return ex;
}

TEST(UpstreamAuth, ScramWithoutTls) {
  auto server = make_server(verifier(kPassword));
  auto client = make_client(false);
  auto ex = run_scram(client, server);
  EXPECT_EQ(ex.outcome, Outcome::Ok) << ex.client_error;
  EXPECT_TRUE(server.complete());
  EXPECT_FALSE(server.channel_binding_used());
  EXPECT_EQ(client.method(), "SCRAM-SHA-256");
}

TEST(UpstreamAuth, ScramPlusOverTls) {
  auto server = make_server(verifier(kPassword), channel_binding(0x5a));
  auto client = make_client(true, channel_binding(0x5a));
  auto ex = run_scram(client, server);
  EXPECT_EQ(ex.outcome, Outcome::Ok) << ex.client_error;
  EXPECT_TRUE(server.complete());
  EXPECT_TRUE(server.channel_binding_used());
  EXPECT_EQ(client.method(), "SCRAM-SHA-256-PLUS");
}

TEST(UpstreamAuth, ScramWrongPasswordFailsAtTheServer) {
  auto server = make_server(verifier("another password"));
  auto client = make_client(false);
  auto ex = run_scram(client, server);
  EXPECT_EQ(ex.outcome, Outcome::ServerFailed);
  EXPECT_EQ(ex.server_error, crypto::CryptoError::BadProof);
  EXPECT_FALSE(server.complete());
}

TEST(UpstreamAuth, ScramOverTlsRequiresPlus) {
  // A server (or a man in the middle) that offers only SCRAM-SHA-256 over TLS: refused,
  // before any proof is computed or sent.
  auto server = make_server(verifier(kPassword));
  ASSERT_EQ(server.mechanisms().size(), 1u);
  auto client = make_client(true, channel_binding(0x5a));
  auto ex = run_scram(client, server);
  EXPECT_EQ(ex.outcome, Outcome::ClientFailedAtStart);
  EXPECT_NE(ex.client_error.find("SCRAM"), std::string::npos) << ex.client_error;
  expect_no_secret(ex.client_error);
}

TEST(UpstreamAuth, ScramOverTlsWithoutBindingDataFails) {
  // TLS is on but the certificate has no tls-server-end-point hash (e.g. Ed25519): binding
  // is impossible, and Require does not quietly fall back to plain SCRAM.
  auto server = make_server(verifier(kPassword), channel_binding(0x5a));
  auto client = make_client(true, std::nullopt);
  auto ex = run_scram(client, server);
  EXPECT_NE(ex.outcome, Outcome::Ok);
  EXPECT_FALSE(server.complete());
}

TEST(UpstreamAuth, ScramBoundToAnotherCertificateFails) {
  // A man in the middle terminates our TLS with its own certificate and relays to the real
  // server: the binding data differ, and the real server refuses the proof.
  auto server = make_server(verifier(kPassword), channel_binding(0x5a));
  auto client = make_client(true, channel_binding(0xa5));
  auto ex = run_scram(client, server);
  EXPECT_EQ(ex.outcome, Outcome::ServerFailed);
  EXPECT_EQ(ex.server_error, crypto::CryptoError::ChannelBindingMismatch);
}

TEST(UpstreamAuth, PlusOfferedWithoutTlsIsRefused) {
  // -PLUS offered on a plaintext leg means someone stripped TLS in between.
  auto server = make_server(verifier(kPassword), channel_binding(0x5a));
  auto client = make_client(false);
  auto ex = run_scram(client, server);
  EXPECT_EQ(ex.outcome, Outcome::ClientFailedAtStart);
}

TEST(UpstreamAuth, ServerThatCannotSignIsRefused) {
  // A server holding StoredKey but not ServerKey (e.g. a stolen verifier half) accepts the
  // proof but cannot produce the right signature; the login must not complete.
  auto v = verifier(kPassword);
  v.server_key[0] ^= std::byte{1};
  auto server = make_server(v);
  auto client = make_client(false);
  auto ex = run_scram(client, server);
  EXPECT_EQ(ex.outcome, Outcome::ClientFailedAtFinal);
  EXPECT_TRUE(server.complete());
  ByteVector out;
  auto ok = client.on_authentication(body_of(wire::AuthenticationOk{}), out);
  EXPECT_FALSE(ok.has_value());
  EXPECT_TRUE(out.empty());
}

// Starts SCRAM against a server and returns the server-first reply.
std::string start_scram(UpstreamAuth& client, crypto::ScramServer& server) {
  ByteVector out;
  wire::AuthenticationSasl sasl{{crypto::kScramSha256}};
  auto r = client.on_authentication(body_of(sasl), out);
  EXPECT_TRUE(r.has_value());
  auto initial = one_reply(out, wire::AuthResponseKind::SaslInitial);
  auto& ir = std::get<wire::SaslInitialResponse>(*initial);
  auto first = server.on_client_first(ir.mechanism, *ir.data);
  EXPECT_TRUE(first.has_value());
  return first ? first->data : std::string{};
}

TEST(UpstreamAuth, AuthenticationOkRightAfterSaslStartIsRefused) {
  auto server = make_server(verifier(kPassword));
  auto client = make_client(false);
  start_scram(client, server);
  ByteVector out;
  auto r = client.on_authentication(body_of(wire::AuthenticationOk{}), out);
  ASSERT_FALSE(r.has_value());
  EXPECT_TRUE(out.empty());
  expect_no_secret(r.error());
}

TEST(UpstreamAuth, AuthenticationOkInsteadOfSaslFinalIsRefused) {
  auto server = make_server(verifier(kPassword));
  auto client = make_client(false);
  auto server_first = start_scram(client, server);
  ByteVector out;
  auto r = client.on_authentication(
      body_of(wire::AuthenticationSaslContinue{wire::as_bytes(server_first)}), out);
  ASSERT_TRUE(r.has_value());
  out.clear();
  // The server skips SASLFinal: it never proved it knows ServerKey.
  r = client.on_authentication(body_of(wire::AuthenticationOk{}), out);
  ASSERT_FALSE(r.has_value());
  EXPECT_TRUE(out.empty());
}

TEST(UpstreamAuth, SaslMessagesOutOfOrderAreRefused) {
  const std::string junk = "r=x,s=c2FsdA==,i=4096";
  {
    auto client = make_client(false);
    ByteVector out;
    EXPECT_FALSE(client.on_authentication(
        body_of(wire::AuthenticationSaslContinue{wire::as_bytes(junk)}), out));
    EXPECT_TRUE(out.empty());
  }
  {
    auto client = make_client(false);
    ByteVector out;
    EXPECT_FALSE(client.on_authentication(
        body_of(wire::AuthenticationSaslFinal{wire::as_bytes(junk)}), out));
    EXPECT_TRUE(out.empty());
  }
  {
    // SASLFinal straight after SASL, skipping SASLContinue.
    auto server = make_server(verifier(kPassword));
    auto client = make_client(false);
    start_scram(client, server);
    ByteVector out;
    const std::string v = "v=AAAA";
    EXPECT_FALSE(
        client.on_authentication(body_of(wire::AuthenticationSaslFinal{wire::as_bytes(v)}), out));
    EXPECT_TRUE(out.empty());
  }
  {
    // SASL restarted in the middle of an exchange.
    auto server = make_server(verifier(kPassword));
    auto client = make_client(false);
    start_scram(client, server);
    ByteVector out;
    wire::AuthenticationSasl again{{crypto::kScramSha256}};
    EXPECT_FALSE(client.on_authentication(body_of(again), out));
    EXPECT_TRUE(out.empty());
  }
}

TEST(UpstreamAuth, TrustEndsAtOnceAndNothingMayFollow) {
  auto client = make_client(false);
  ByteVector out;
  auto r = client.on_authentication(body_of(wire::AuthenticationOk{}), out);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(*r);
  EXPECT_EQ(client.method(), "trust");
  EXPECT_TRUE(out.empty());
  // A second request after AuthenticationOk is a protocol violation, not a new login.
  EXPECT_FALSE(client.on_authentication(body_of(wire::AuthenticationCleartextPassword{}), out));
  EXPECT_FALSE(client.on_authentication(body_of(wire::AuthenticationOk{}), out));
  EXPECT_TRUE(out.empty());
}

TEST(UpstreamAuth, CleartextRefusedWithoutTls) {
  auto client = make_client(false);
  ByteVector out;
  auto r = client.on_authentication(body_of(wire::AuthenticationCleartextPassword{}), out);
  ASSERT_FALSE(r.has_value());
  EXPECT_TRUE(out.empty()) << "the password must not be written to a plaintext socket";
  EXPECT_NE(r.error().find("cleartext"), std::string::npos) << r.error();
  expect_no_secret(r.error());
}

TEST(UpstreamAuth, CleartextSentOverTls) {
  auto client = make_client(true, channel_binding(1));
  ByteVector out;
  auto r = client.on_authentication(body_of(wire::AuthenticationCleartextPassword{}), out);
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_FALSE(*r);
  auto reply = one_reply(out, wire::AuthResponseKind::Password);
  ASSERT_TRUE(reply);
  EXPECT_EQ(std::get<wire::PasswordMessage>(*reply).password, kPassword);
  EXPECT_EQ(client.method(), "password");
  ByteVector out2;
  r = client.on_authentication(body_of(wire::AuthenticationOk{}), out2);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(*r);
}

// PostgreSQL's MD5 response computed here with OpenSSL directly, not with crypto::md5.
std::string reference_md5_hex(std::string_view data) {
  std::array<unsigned char, 16> digest{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), digest.data(), &len, EVP_md5(), nullptr) != 1) {
    return {};
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  for (unsigned char c : digest) {
    s.push_back(kHex[c >> 4]);
    s.push_back(kHex[c & 15]);
  }
  return s;
}

TEST(UpstreamAuth, Md5ResponseMatchesPostgresScheme) {
  const std::array<std::byte, 4> salt{std::byte{0x01}, std::byte{0xfe}, std::byte{0x00},
                                      std::byte{0x7f}};
  const std::string expected = crypto::md5_auth_response(kPassword, kUser, salt);
  if (expected.empty()) {
    GTEST_SKIP() << "MD5 unavailable in this OpenSSL (FIPS?)";
  }
  for (bool tls : {false, true}) {
    auto client = make_client(tls, channel_binding(1));
    ByteVector out;
    auto r = client.on_authentication(body_of(wire::AuthenticationMd5Password{salt}), out);
    ASSERT_TRUE(r.has_value()) << r.error();
    EXPECT_FALSE(*r);
    auto reply = one_reply(out, wire::AuthResponseKind::Password);
    ASSERT_TRUE(reply);
    const auto sent = std::get<wire::PasswordMessage>(*reply).password;
    EXPECT_EQ(sent, expected);
    std::string inner = reference_md5_hex(kPassword + std::string(kUser));
    std::string salted = inner;
    salted.append(reinterpret_cast<const char*>(salt.data()), salt.size());
    EXPECT_EQ(sent, "md5" + reference_md5_hex(salted));
    EXPECT_EQ(sent.find(kPassword), std::string_view::npos);
    EXPECT_EQ(client.method(), "md5");
  }
}

TEST(UpstreamAuth, UnsupportedMethodsAreRefused) {
  const std::string token = "gss-token";
  std::vector<ByteVector> requests = {
      body_of(wire::AuthenticationKerberosV5{}), body_of(wire::AuthenticationGss{}),
      body_of(wire::AuthenticationSspi{}),
      body_of(wire::AuthenticationGssContinue{wire::as_bytes(token)})};
  for (const auto& body : requests) {
    auto client = make_client(true, channel_binding(1));
    ByteVector out;
    auto r = client.on_authentication(body, out);
    ASSERT_FALSE(r.has_value());
    EXPECT_TRUE(out.empty());
    EXPECT_NE(r.error().find("not support"), std::string::npos) << r.error();
  }
}

TEST(UpstreamAuth, MalformedRequestIsRefused) {
  std::vector<ByteVector> bodies = {
      {},                                                                      // no subtype
      {std::byte{0}, std::byte{0}, std::byte{0}},                              // short subtype
      {std::byte{0}, std::byte{0}, std::byte{0}, std::byte{99}},               // unknown subtype
      {std::byte{0}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{1}},  // Ok with a tail
      {std::byte{0}, std::byte{0}, std::byte{0}, std::byte{5}, std::byte{1}},  // MD5, short salt
      {std::byte{0}, std::byte{0}, std::byte{0}, std::byte{10}},               // SASL, no list
  };
  for (const auto& body : bodies) {
    auto client = make_client(false);
    ByteVector out;
    auto r = client.on_authentication(body, out);
    EXPECT_FALSE(r.has_value()) << body.size();
    EXPECT_TRUE(out.empty());
  }
}

}  // namespace
}  // namespace pgwarden::session
