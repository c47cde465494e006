// SCRAM client and server state machines: the RFC 7677 vector byte for byte, full exchanges in
// both directions with and without channel binding, and adversarial variants of every message.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "crypto/base64.h"
#include "crypto/random.h"
#include "crypto/scram.h"
#include "crypto/scram_client.h"
#include "crypto/scram_server.h"
#include "wire/bytes.h"

namespace pgwarden::crypto {
namespace {

using wire::as_bytes;

// RFC 7677 section 3.
constexpr std::string_view kRfcClientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
constexpr std::string_view kRfcServerFirst =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
constexpr std::string_view kRfcClientFinal =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
constexpr std::string_view kRfcServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

constexpr std::string_view kPassword = "s3cret p\xC3\xA4ssword";
constexpr std::uint32_t kTestIterations = 64;  // keeps PBKDF2 cheap in tests

const std::vector<std::byte>& mock_secret() {
  static const std::vector<std::byte> secret = [] {
    std::vector<std::byte> s(32);
    EXPECT_TRUE(random_bytes(s));
    return s;
  }();
  return secret;
}

ScramVerifier verifier_for(std::string_view password, std::uint32_t iterations = kTestIterations) {
  auto v = make_scram_verifier(password, iterations);
  EXPECT_TRUE(v.has_value());
  return *v;
}

ScramVerifier rfc_verifier() {
  auto salt = base64_decode("W22ZaJ0SNY7soEsUEjb6gQ==");
  auto v = make_scram_verifier_with_salt("pencil", *salt, 4096);
  EXPECT_TRUE(v.has_value());
  return *v;
}

std::vector<std::byte> binding(std::size_t n, std::uint8_t fill) {
  return std::vector<std::byte>(n, std::byte{fill});
}

ScramServer make_server(std::optional<ScramVerifier> v,
                        std::optional<std::vector<std::byte>> cb = {},
                        std::string_view user = "alice") {
  ScramServerOptions o;
  o.channel_binding = std::move(cb);
  o.mock_iterations = kTestIterations;
  return ScramServer(std::move(v), user, mock_secret(), std::move(o));
}

ScramClient make_client(std::string_view password, bool tls = false,
                        std::optional<std::vector<std::byte>> cb = {},
                        ChannelBindingPolicy policy = ChannelBindingPolicy::Prefer) {
  ScramClientOptions o;
  o.tls_active = tls;
  o.channel_binding_data = std::move(cb);
  o.channel_binding = policy;
  o.max_iterations = 10'000;
  return ScramClient(password, std::move(o));
}

// Hooks let a test act as a man in the middle on each message.
struct Tamper {
  std::function<void(std::vector<std::string_view>&)> mechanisms;
  std::function<void(std::string&)> client_first;
  std::function<void(std::string&)> server_first;
  std::function<void(std::string&)> client_final;
  std::function<void(std::string&)> server_final;
};

struct Outcome {
  std::optional<CryptoError> client_error;
  std::optional<CryptoError> server_error;
  std::string client_first, server_first, client_final, server_final;
  std::string_view mechanism;
};

Outcome run(ScramClient& client, ScramServer& server, const Tamper& t = {}) {
  Outcome out;
  auto offered_span = server.mechanisms();
  std::vector<std::string_view> offered(offered_span.begin(), offered_span.end());
  if (t.mechanisms) {
    t.mechanisms(offered);
  }
  auto c1 = client.start(offered);
  if (!c1) {
    out.client_error = c1.error();
    return out;
  }
  out.mechanism = c1->mechanism;
  out.client_first = c1->data;
  if (t.client_first) {
    t.client_first(out.client_first);
  }
  auto s1 = server.on_client_first(c1->mechanism, as_bytes(out.client_first));
  if (!s1) {
    out.server_error = s1.error();
    return out;
  }
  EXPECT_FALSE(s1->final);
  out.server_first = s1->data;
  if (t.server_first) {
    t.server_first(out.server_first);
  }
  auto c2 = client.on_server_first(as_bytes(out.server_first));
  if (!c2) {
    out.client_error = c2.error();
    return out;
  }
  out.client_final = c2->data;
  if (t.client_final) {
    t.client_final(out.client_final);
  }
  auto s2 = server.on_client_final(as_bytes(out.client_final));
  if (!s2) {
    out.server_error = s2.error();
    return out;
  }
  EXPECT_TRUE(s2->final);
  out.server_final = s2->data;
  if (t.server_final) {
    t.server_final(out.server_final);
  }
  auto c3 = client.on_server_final(as_bytes(out.server_final));
  if (!c3) {
    out.client_error = c3.error();
  }
  return out;
}

// Replaces the value of attribute `name` (e.g. "r=") in a SCRAM message.
void set_attr(std::string& msg, std::string_view name, std::string_view value) {
  auto at = msg.find(name);
  ASSERT_NE(at, std::string::npos);
  auto end = msg.find(',', at);
  msg.replace(at, (end == std::string::npos ? msg.size() : end) - at,
              std::string(name) + std::string(value));
}

std::string get_attr(const std::string& msg, std::string_view name) {
  auto at = msg.find(name);
  EXPECT_NE(at, std::string::npos);
  auto end = msg.find(',', at);
  return msg.substr(at + name.size(),
                    (end == std::string::npos ? msg.size() : end) - at - name.size());
}

// Flips one base64 symbol in the middle of an attribute value to another valid symbol.
void flip_b64(std::string& msg, std::string_view name) {
  auto value = get_attr(msg, name);
  value[4] = value[4] == 'A' ? 'B' : 'A';
  set_attr(msg, name, value);
}

// ---------------------------------------------------------------------------------------------
// RFC 7677 test vector

TEST(ScramRfc7677, ClientByteForByte) {
  ScramClientOptions o;
  o.username = "user";
  o.nonce_for_testing = "rOprNGfwEbeRWgbNEkqO";
  ScramClient client("pencil", o);
  const std::string_view offered[] = {kScramSha256};
  auto first = client.start(offered);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->mechanism, kScramSha256);
  EXPECT_EQ(first->data, kRfcClientFirst);
  auto final_msg = client.on_server_first(as_bytes(kRfcServerFirst));
  ASSERT_TRUE(final_msg.has_value());
  EXPECT_EQ(final_msg->data, kRfcClientFinal);
  auto done = client.on_server_final(as_bytes(kRfcServerFinal));
  ASSERT_TRUE(done.has_value());
  EXPECT_TRUE(done->data.empty());
  EXPECT_TRUE(client.complete());
  EXPECT_FALSE(client.channel_binding_used());
}

TEST(ScramRfc7677, ServerByteForByte) {
  ScramServerOptions o;
  o.nonce_for_testing = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
  ScramServer server(rfc_verifier(), "user", mock_secret(), o);
  ASSERT_EQ(server.mechanisms().size(), 1u);
  EXPECT_EQ(server.mechanisms()[0], kScramSha256);
  auto first = server.on_client_first(kScramSha256, as_bytes(kRfcClientFirst));
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->data, kRfcServerFirst);
  EXPECT_FALSE(first->final);
  EXPECT_EQ(server.state(), ScramServer::State::WaitClientFinal);
  auto final_msg = server.on_client_final(as_bytes(kRfcClientFinal));
  ASSERT_TRUE(final_msg.has_value());
  EXPECT_EQ(final_msg->data, kRfcServerFinal);
  EXPECT_TRUE(final_msg->final);
  EXPECT_TRUE(server.complete());
  EXPECT_FALSE(server.is_mock());
}

TEST(ScramRfc7677, ClientRejectsWrongServerSignature) {
  ScramClientOptions o;
  o.username = "user";
  o.nonce_for_testing = "rOprNGfwEbeRWgbNEkqO";
  ScramClient client("pencil", o);
  const std::string_view offered[] = {kScramSha256};
  ASSERT_TRUE(client.start(offered));
  ASSERT_TRUE(client.on_server_first(as_bytes(kRfcServerFirst)));
  auto r = client.on_server_final(as_bytes("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G5="));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), CryptoError::BadServerSignature);
  EXPECT_EQ(client.state(), ScramClient::State::Failed);
}

// ---------------------------------------------------------------------------------------------
// Full exchanges

TEST(ScramExchange, WithoutTls) {
  auto server = make_server(verifier_for(kPassword));
  auto client = make_client(kPassword);
  auto out = run(client, server);
  EXPECT_FALSE(out.client_error);
  EXPECT_FALSE(out.server_error);
  EXPECT_TRUE(client.complete());
  EXPECT_TRUE(server.complete());
  EXPECT_EQ(out.mechanism, kScramSha256);
  EXPECT_TRUE(out.client_first.starts_with("n,,n=,r="));
  EXPECT_FALSE(server.channel_binding_used());
  EXPECT_FALSE(client.channel_binding_used());
  // Nonces: 18 random bytes in base64 on each side.
  auto nonce = get_attr(out.server_first, "r=");
  EXPECT_EQ(nonce.size(), 48u);
  EXPECT_EQ(get_attr(out.server_first, "i="), "64");
}

TEST(ScramExchange, WithChannelBinding) {
  for (std::size_t len : {32u, 48u, 64u}) {  // SHA-256, SHA-384, SHA-512 certificate hashes
    auto server = make_server(verifier_for(kPassword), binding(len, 0x5a));
    ASSERT_EQ(server.mechanisms().size(), 2u);
    EXPECT_EQ(server.mechanisms()[0], kScramSha256Plus);
    EXPECT_EQ(server.mechanisms()[1], kScramSha256);
    auto client = make_client(kPassword, true, binding(len, 0x5a));
    auto out = run(client, server);
    EXPECT_FALSE(out.client_error);
    EXPECT_FALSE(out.server_error);
    EXPECT_TRUE(client.complete());
    EXPECT_TRUE(server.complete());
    EXPECT_EQ(out.mechanism, kScramSha256Plus);
    EXPECT_TRUE(out.client_first.starts_with("p=tls-server-end-point,,n=,r="));
    EXPECT_TRUE(server.channel_binding_used());
    EXPECT_TRUE(client.channel_binding_used());
    auto cbind = base64_decode(get_attr(out.client_final, "c="));
    ASSERT_TRUE(cbind.has_value());
    EXPECT_EQ(cbind->size(), std::string_view("p=tls-server-end-point,,").size() + len);
  }
}

TEST(ScramExchange, TlsClientServerWithoutBindingUsesY) {
  // TLS, but the server cannot bind (e.g. an Ed25519 certificate): it offers no -PLUS and the
  // client says 'y', which is legitimate when -PLUS really was not offered.
  auto server = make_server(verifier_for(kPassword));
  auto client = make_client(kPassword, true, binding(32, 1));
  auto out = run(client, server);
  EXPECT_FALSE(out.client_error);
  EXPECT_FALSE(out.server_error);
  EXPECT_TRUE(out.client_first.starts_with("y,,"));
  EXPECT_EQ(get_attr(out.client_final, "c="), "eSws");
  EXPECT_TRUE(server.complete());
  EXPECT_TRUE(client.complete());
}

TEST(ScramExchange, DisabledBindingUsesN) {
  auto server = make_server(verifier_for(kPassword), binding(32, 1));
  auto client = make_client(kPassword, true, binding(32, 1), ChannelBindingPolicy::Disable);
  auto out = run(client, server);
  EXPECT_FALSE(out.client_error);
  EXPECT_FALSE(out.server_error);
  EXPECT_EQ(out.mechanism, kScramSha256);
  EXPECT_TRUE(out.client_first.starts_with("n,,"));
  EXPECT_TRUE(server.complete());
}

TEST(ScramExchange, TlsWithoutCertificateHashFallsBackToN) {
  auto server = make_server(verifier_for(kPassword), binding(32, 1));
  auto client = make_client(kPassword, true, std::nullopt);
  auto out = run(client, server);
  EXPECT_FALSE(out.client_error);
  EXPECT_FALSE(out.server_error);
  EXPECT_EQ(out.mechanism, kScramSha256);
  EXPECT_TRUE(out.client_first.starts_with("n,,"));
}

TEST(ScramExchange, SaslPrepAppliedOnBothSides) {
  // The verifier is made from the NBSP spelling; the client types a plain space.
  auto server =
      make_server(verifier_for("a\xC2\xA0"
                               "b"));
  auto client = make_client("a b");
  auto out = run(client, server);
  EXPECT_FALSE(out.server_error);
  EXPECT_TRUE(client.complete());
}

TEST(ScramExchange, RandomNoncesDiffer) {
  auto v = verifier_for(kPassword);
  auto s1 = make_server(v);
  auto s2 = make_server(v);
  auto c1 = make_client(kPassword);
  auto c2 = make_client(kPassword);
  auto o1 = run(c1, s1);
  auto o2 = run(c2, s2);
  EXPECT_NE(get_attr(o1.server_first, "r="), get_attr(o2.server_first, "r="));
  EXPECT_NE(get_attr(o1.client_first, "r="), get_attr(o2.client_first, "r="));
  EXPECT_EQ(get_attr(o1.client_first, "r=").size(), 24u);
}

// ---------------------------------------------------------------------------------------------
// Authentication failures

TEST(ScramExchange, WrongPasswordFails) {
  auto server = make_server(verifier_for(kPassword));
  auto client = make_client("not the password");
  auto out = run(client, server);
  ASSERT_TRUE(out.server_error);
  EXPECT_EQ(*out.server_error, CryptoError::BadProof);
  EXPECT_EQ(server.state(), ScramServer::State::Failed);
  EXPECT_TRUE(out.server_final.empty());
  EXPECT_FALSE(client.complete());
  // Nothing more is accepted.
  EXPECT_EQ(server.on_client_final(as_bytes(out.client_final)).error(),
            CryptoError::ExchangeFailed);
}

TEST(ScramExchange, TamperedProofFails) {
  auto server = make_server(verifier_for(kPassword));
  auto client = make_client(kPassword);
  Tamper t;
  t.client_final = [](std::string& m) { flip_b64(m, "p="); };
  auto out = run(client, server, t);
  ASSERT_TRUE(out.server_error);
  EXPECT_EQ(*out.server_error, CryptoError::BadProof);
}

TEST(ScramExchange, ProofFromAnotherExchangeFails) {
  // Replay: a valid client-final of one exchange does not authenticate another.
  auto v = verifier_for(kPassword);
  auto s1 = make_server(v);
  auto c1 = make_client(kPassword);
  auto o1 = run(c1, s1);
  ASSERT_TRUE(s1.complete());

  auto s2 = make_server(v);
  auto c2 = make_client(kPassword);
  Tamper t;
  t.client_final = [&](std::string& m) {
    // Keep this exchange's nonce (so the nonce check passes) but the old proof.
    set_attr(m, "p=", get_attr(o1.client_final, "p="));
  };
  auto o2 = run(c2, s2, t);
  ASSERT_TRUE(o2.server_error);
  EXPECT_EQ(*o2.server_error, CryptoError::BadProof);
}

TEST(ScramExchange, AlteredNonceFails) {
  for (auto mutate : std::vector<std::function<void(std::string&)>>{
           [](std::string& n) { n.back() = n.back() == 'A' ? 'B' : 'A'; },
           [](std::string& n) { n.pop_back(); }, [](std::string& n) { n += "x"; },
           [](std::string& n) { n = n.substr(0, 24); },  // client nonce only
       }) {
    auto server = make_server(verifier_for(kPassword));
    auto client = make_client(kPassword);
    Tamper t;
    t.client_final = [&](std::string& m) {
      auto n = get_attr(m, "r=");
      mutate(n);
      set_attr(m, "r=", n);
    };
    auto out = run(client, server, t);
    ASSERT_TRUE(out.server_error);
    EXPECT_EQ(*out.server_error, CryptoError::NonceMismatch);
  }
}

TEST(ScramExchange, ServerNonceMustExtendClientNonce) {
  for (auto mutate : std::vector<std::function<void(std::string&)>>{
           [](std::string& n) { n[0] = n[0] == 'A' ? 'B' : 'A'; },  // client part changed
           [](std::string& n) { n = n.substr(0, 24); },             // no server part
           [](std::string& n) { n = n.substr(1); },
       }) {
    auto server = make_server(verifier_for(kPassword));
    auto client = make_client(kPassword);
    Tamper t;
    t.server_first = [&](std::string& m) {
      auto n = get_attr(m, "r=");
      mutate(n);
      set_attr(m, "r=", n);
    };
    auto out = run(client, server, t);
    ASSERT_TRUE(out.client_error);
    EXPECT_EQ(*out.client_error, CryptoError::NonceMismatch);
    EXPECT_EQ(client.state(), ScramClient::State::Failed);
  }
}

TEST(ScramExchange, ChannelBindingMismatchFails) {
  // A man in the middle terminates TLS with its own certificate: the client's hash differs.
  auto server = make_server(verifier_for(kPassword), binding(32, 0x11));
  auto client = make_client(kPassword, true, binding(32, 0x22));
  auto out = run(client, server);
  ASSERT_TRUE(out.server_error);
  EXPECT_EQ(*out.server_error, CryptoError::ChannelBindingMismatch);
}

TEST(ScramExchange, ChannelBindingLengthMismatchFails) {
  auto server = make_server(verifier_for(kPassword), binding(48, 0x11));
  auto client = make_client(kPassword, true, binding(32, 0x11));
  auto out = run(client, server);
  ASSERT_TRUE(out.server_error);
  EXPECT_EQ(*out.server_error, CryptoError::ChannelBindingMismatch);
}

TEST(ScramExchange, ChannelBindingAttributeRewrittenFails) {
  for (std::string_view c : {"biws", "eSws", "cD10bHMtc2VydmVyLWVuZC1wb2ludCws", ""}) {
    auto server = make_server(verifier_for(kPassword), binding(32, 0x11));
    auto client = make_client(kPassword, true, binding(32, 0x11));
    Tamper t;
    t.client_final = [&](std::string& m) { set_attr(m, "c=", c); };
    auto out = run(client, server, t);
    ASSERT_TRUE(out.server_error) << c;
    EXPECT_EQ(*out.server_error, CryptoError::ChannelBindingMismatch) << c;
  }
}

TEST(ScramExchange, YFlagDowngradeDetected) {
  // The man in the middle removes -PLUS from the advertised list.
  auto server = make_server(verifier_for(kPassword), binding(32, 0x11));
  auto client = make_client(kPassword, true, binding(32, 0x11));
  Tamper t;
  t.mechanisms = [](std::vector<std::string_view>& m) { std::erase(m, kScramSha256Plus); };
  auto out = run(client, server, t);
  EXPECT_TRUE(out.client_first.starts_with("y,,"));
  ASSERT_TRUE(out.server_error);
  EXPECT_EQ(*out.server_error, CryptoError::ChannelBindingDowngrade);
}

TEST(ScramExchange, RequirePolicy) {
  {
    auto server = make_server(verifier_for(kPassword));  // no -PLUS offered
    auto client = make_client(kPassword, true, binding(32, 1), ChannelBindingPolicy::Require);
    auto out = run(client, server);
    ASSERT_TRUE(out.client_error);
    EXPECT_EQ(*out.client_error, CryptoError::ChannelBindingRequired);
  }
  {
    auto server = make_server(verifier_for(kPassword));
    auto client = make_client(kPassword, false, std::nullopt, ChannelBindingPolicy::Require);
    auto out = run(client, server);
    ASSERT_TRUE(out.client_error);
    EXPECT_EQ(*out.client_error, CryptoError::ChannelBindingRequired);
  }
  {
    auto server = make_server(verifier_for(kPassword), binding(32, 1));
    auto client = make_client(kPassword, true, std::nullopt, ChannelBindingPolicy::Require);
    auto out = run(client, server);
    ASSERT_TRUE(out.client_error);
    EXPECT_EQ(*out.client_error, CryptoError::ChannelBindingRequired);
  }
  {
    auto server = make_server(verifier_for(kPassword), binding(32, 1));
    auto client = make_client(kPassword, true, binding(32, 1), ChannelBindingPolicy::Require);
    auto out = run(client, server);
    EXPECT_FALSE(out.client_error);
    EXPECT_FALSE(out.server_error);
    EXPECT_TRUE(client.channel_binding_used());
  }
}

TEST(ScramExchange, PlusOfferedWithoutTlsIsRefused) {
  auto client = make_client(kPassword, false);
  const std::string_view offered[] = {kScramSha256Plus, kScramSha256};
  auto r = client.start(offered);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), CryptoError::ChannelBindingDowngrade);
}

TEST(ScramExchange, NoCommonMechanism) {
  for (auto offered : std::vector<std::vector<std::string_view>>{
           {}, {"SCRAM-SHA-1"}, {"scram-sha-256"}, {"SCRAM-SHA-256 "}, {"SCRAM-SHA-512"}}) {
    auto client = make_client(kPassword);
    auto r = client.start(offered);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error(), CryptoError::NoCommonMechanism);
  }
}

TEST(ScramExchange, UnknownUserLooksTheSameAndFails) {
  auto real_server = make_server(verifier_for(kPassword, kTestIterations), {}, "alice");
  auto real_client = make_client("wrong");
  auto real = run(real_client, real_server);

  auto mock_server = make_server(std::nullopt, {}, "ghost");
  EXPECT_TRUE(mock_server.is_mock());
  auto mock_client = make_client("wrong");
  auto mock = run(mock_client, mock_server);

  // Same outward shape: nonce and salt lengths, iteration count, and the same error.
  EXPECT_EQ(get_attr(mock.server_first, "r=").size(), get_attr(real.server_first, "r=").size());
  EXPECT_EQ(get_attr(mock.server_first, "s=").size(), get_attr(real.server_first, "s=").size());
  EXPECT_EQ(get_attr(mock.server_first, "i="), get_attr(real.server_first, "i="));
  ASSERT_TRUE(real.server_error);
  ASSERT_TRUE(mock.server_error);
  EXPECT_EQ(*mock.server_error, *real.server_error);
  EXPECT_EQ(*mock.server_error, CryptoError::BadProof);

  // The mock salt is stable for a user across attempts and differs between users.
  auto again_server = make_server(std::nullopt, {}, "ghost");
  auto again_client = make_client("x");
  auto again = run(again_client, again_server);
  EXPECT_EQ(get_attr(again.server_first, "s="), get_attr(mock.server_first, "s="));
  auto other_server = make_server(std::nullopt, {}, "phantom");
  auto other_client = make_client("x");
  auto other = run(other_client, other_server);
  EXPECT_NE(get_attr(other.server_first, "s="), get_attr(mock.server_first, "s="));
}

TEST(ScramExchange, MockRefusesTheRightPasswordOfAnotherServer) {
  // The same password that succeeds against a real verifier fails against the mock.
  auto good = make_server(verifier_for(kPassword));
  auto good_client = make_client(kPassword);
  EXPECT_FALSE(run(good_client, good).server_error);
  auto mock = make_server(std::nullopt);
  auto mock_client = make_client(kPassword);
  auto out = run(mock_client, mock);
  ASSERT_TRUE(out.server_error);
  EXPECT_EQ(*out.server_error, CryptoError::BadProof);
  EXPECT_EQ(mock.state(), ScramServer::State::Failed);
}

// ---------------------------------------------------------------------------------------------
// Server: mechanism and gs2 header

std::optional<CryptoError> server_first_error(std::string_view mechanism, std::string_view msg,
                                              std::optional<std::vector<std::byte>> cb = {}) {
  auto server = make_server(verifier_for("pw", 1), std::move(cb));
  auto r = server.on_client_first(mechanism, as_bytes(msg));
  if (r) {
    EXPECT_EQ(server.state(), ScramServer::State::WaitClientFinal);
    return std::nullopt;
  }
  EXPECT_EQ(server.state(), ScramServer::State::Failed);
  return r.error();
}

TEST(ScramServerFirst, MechanismChecks) {
  EXPECT_EQ(server_first_error(kScramSha256Plus, "p=tls-server-end-point,,n=,r=abc"),
            CryptoError::UnsupportedMechanism);  // -PLUS not offered without TLS
  EXPECT_EQ(server_first_error("SCRAM-SHA-1", "n,,n=,r=abc"), CryptoError::UnsupportedMechanism);
  EXPECT_EQ(server_first_error("", "n,,n=,r=abc"), CryptoError::UnsupportedMechanism);
  EXPECT_EQ(server_first_error("scram-sha-256", "n,,n=,r=abc"), CryptoError::UnsupportedMechanism);
  auto cb = binding(32, 3);
  EXPECT_EQ(server_first_error(kScramSha256Plus, "p=tls-server-end-point,,n=,r=abc", cb),
            std::nullopt);
  EXPECT_EQ(server_first_error(kScramSha256Plus, "n,,n=,r=abc", cb),
            CryptoError::ChannelBindingNotOffered);
  EXPECT_EQ(server_first_error(kScramSha256Plus, "y,,n=,r=abc", cb),
            CryptoError::ChannelBindingNotOffered);
  EXPECT_EQ(server_first_error(kScramSha256, "p=tls-server-end-point,,n=,r=abc", cb),
            CryptoError::ChannelBindingNotOffered);
  EXPECT_EQ(server_first_error(kScramSha256, "p=tls-server-end-point,,n=,r=abc"),
            CryptoError::ChannelBindingNotOffered);
  EXPECT_EQ(server_first_error(kScramSha256Plus, "p=tls-unique,,n=,r=abc", cb),
            CryptoError::ChannelBindingUnsupported);
  EXPECT_EQ(server_first_error(kScramSha256Plus, "p=tls-exporter,,n=,r=abc", cb),
            CryptoError::ChannelBindingUnsupported);
  EXPECT_EQ(server_first_error(kScramSha256Plus, "p=,,n=,r=abc", cb),
            CryptoError::ChannelBindingUnsupported);
  EXPECT_EQ(server_first_error(kScramSha256Plus, "p=tls-server-end-point", cb),
            CryptoError::Malformed);
  EXPECT_EQ(server_first_error(kScramSha256Plus, "ptls-server-end-point,,n=,r=abc", cb),
            CryptoError::Malformed);
  EXPECT_EQ(server_first_error(kScramSha256, "y,,n=,r=abc", cb),
            CryptoError::ChannelBindingDowngrade);
  EXPECT_EQ(server_first_error(kScramSha256, "y,,n=,r=abc"), std::nullopt);
  EXPECT_EQ(server_first_error(kScramSha256, "n,,n=,r=abc", cb), std::nullopt);
}

TEST(ScramServerFirst, MalformedMessages) {
  const std::pair<std::string_view, std::optional<CryptoError>> cases[] = {
      {"n,,n=,r=abc", std::nullopt},
      {"n,,n=user,r=abc", std::nullopt},         // user name ignored
      {"n,,n=,r=abc,x=optional", std::nullopt},  // optional extension ignored
      {"n,,n=,r=abc,x=1,y=2", std::nullopt},
      {"", CryptoError::Malformed},
      {"n", CryptoError::Malformed},
      {"n,", CryptoError::Malformed},
      {"n,,", CryptoError::Malformed},
      {"N,,n=,r=abc", CryptoError::Malformed},
      {"x,,n=,r=abc", CryptoError::Malformed},
      {"nn,,n=,r=abc", CryptoError::Malformed},
      {",,n=,r=abc", CryptoError::Malformed},
      {"n,a=bob,n=,r=abc", CryptoError::AuthzidUnsupported},
      {"n,a=,n=,r=abc", CryptoError::AuthzidUnsupported},
      {"n,b=bob,n=,r=abc", CryptoError::Malformed},
      {"n,,,n=,r=abc", CryptoError::Malformed},
      {"n,,m=ext,n=,r=abc", CryptoError::UnsupportedExtension},
      {"n,,r=abc", CryptoError::Malformed},     // missing user name
      {"n,,r=abc,n=", CryptoError::Malformed},  // wrong order
      {"n,,n=", CryptoError::Malformed},        // missing nonce
      {"n,,n=,", CryptoError::Malformed},
      {"n,,n=,s=abc", CryptoError::Malformed},
      {"n,,n=,r=", CryptoError::BadNonce},
      {"n,,n=,r=ab cd", CryptoError::BadNonce},
      {"n,,n=,r=ab\x01", CryptoError::BadNonce},
      {"n,,n=,r=ab\x7f", CryptoError::BadNonce},
      {"n,,n=,r=\xc3\xa4", CryptoError::BadNonce},
      {"n,,n=,r=abc,r=def", CryptoError::Malformed},  // duplicate
      {"n,,n=,r=abc,n=x", CryptoError::Malformed},
      {"n,,n=,r=abc,m=x", CryptoError::Malformed},
      {"n,,n=,r=abc,", CryptoError::Malformed},  // trailing comma
      {"n,,n=,r=abc,x", CryptoError::Malformed},
      {"n,,n=,r=abc,x=", CryptoError::Malformed},
      {"n,,n=,r=abc,1=x", CryptoError::Malformed},
      {"n,,n=,r=abc,==x", CryptoError::Malformed},
      {"n,,n=,rr=abc", CryptoError::Malformed},
      {"n,,n,r=abc", CryptoError::Malformed},
      {std::string_view("n,,n=,r=abc\0", 12), CryptoError::Malformed},
      {std::string_view("n,,n=\0,r=abc", 12), CryptoError::Malformed},
  };
  for (auto [msg, expected] : cases) {
    EXPECT_EQ(server_first_error(kScramSha256, msg), expected) << msg;
  }
}

TEST(ScramServerFirst, Limits) {
  std::string nonce(kMaxScramNonce, 'a');
  EXPECT_EQ(server_first_error(kScramSha256, "n,,n=,r=" + nonce), std::nullopt);
  EXPECT_EQ(server_first_error(kScramSha256, "n,,n=,r=" + nonce + "a"), CryptoError::BadNonce);
  std::string big = "n,,n=,r=abc,x=" + std::string(kMaxScramMessage, 'a');
  big.resize(kMaxScramMessage);
  EXPECT_EQ(server_first_error(kScramSha256, big), std::nullopt);
  big.push_back('a');
  EXPECT_EQ(server_first_error(kScramSha256, big), CryptoError::MessageTooLarge);
}

TEST(ScramServerState, UnexpectedMessages) {
  {
    auto server = make_server(verifier_for("pw", 1));
    auto r = server.on_client_final(as_bytes("c=biws,r=abc,p=xyz"));
    EXPECT_EQ(r.error(), CryptoError::UnexpectedMessage);
    EXPECT_EQ(server.state(), ScramServer::State::Failed);
    EXPECT_EQ(server.on_client_first(kScramSha256, as_bytes("n,,n=,r=abc")).error(),
              CryptoError::ExchangeFailed);
  }
  {
    auto server = make_server(verifier_for("pw", 1));
    ASSERT_TRUE(server.on_client_first(kScramSha256, as_bytes("n,,n=,r=abc")));
    EXPECT_EQ(server.on_client_first(kScramSha256, as_bytes("n,,n=,r=abc")).error(),
              CryptoError::UnexpectedMessage);
  }
  {
    auto server = make_server(verifier_for(kPassword));
    auto client = make_client(kPassword);
    auto out = run(client, server);
    ASSERT_TRUE(server.complete());
    EXPECT_EQ(server.on_client_final(as_bytes(out.client_final)).error(),
              CryptoError::UnexpectedMessage);
  }
}

// ---------------------------------------------------------------------------------------------
// Server: client-final

// Runs a real client up to its client-final, lets `mutate` rewrite it, returns the server's
// verdict.
std::optional<CryptoError> client_final_error(
    const std::function<std::string(const std::string&)>& mutate, bool tls = false) {
  std::optional<std::vector<std::byte>> cb;
  if (tls) {
    cb = binding(32, 9);
  }
  auto server = make_server(verifier_for(kPassword), cb);
  auto client = make_client(kPassword, tls, cb);
  Tamper t;
  t.client_final = [&](std::string& m) { m = mutate(m); };
  auto out = run(client, server, t);
  if (out.server_error) {
    EXPECT_EQ(server.state(), ScramServer::State::Failed);
  }
  return out.server_error;
}

TEST(ScramServerFinal, MalformedMessages) {
  using M = std::function<std::string(const std::string&)>;
  auto c = [](const std::string& m) { return get_attr(m, "c="); };
  auto r = [](const std::string& m) { return get_attr(m, "r="); };
  auto p = [](const std::string& m) { return get_attr(m, "p="); };
  const std::pair<M, std::optional<CryptoError>> cases[] = {
      {[](const std::string& m) { return m; }, std::nullopt},
      {[&](const std::string& m) { return "r=" + r(m) + ",p=" + p(m); }, CryptoError::Malformed},
      {[&](const std::string& m) { return "r=" + r(m) + ",c=" + c(m) + ",p=" + p(m); },
       CryptoError::Malformed},
      {[&](const std::string& m) { return "c=" + c(m) + ",p=" + p(m); }, CryptoError::Malformed},
      {[&](const std::string& m) { return "c=" + c(m) + ",r=" + r(m); }, CryptoError::Malformed},
      {[&](const std::string& m) {
         return "c=" + c(m) + ",r=" + r(m) + ",r=" + r(m) + ",p=" + p(m);
       },
       CryptoError::Malformed},
      {[&](const std::string& m) { return m + ",p=" + p(m); }, CryptoError::Malformed},
      {[&](const std::string& m) { return m + ",x=y"; }, CryptoError::Malformed},
      {[&](const std::string& m) { return m + ","; }, CryptoError::Malformed},
      {[&](const std::string& m) { return "c=" + c(m) + ",r=" + r(m) + ",c=biws,p=" + p(m); },
       CryptoError::Malformed},
      {[&](const std::string& m) { return "c=biw,r=" + r(m) + ",p=" + p(m); },
       CryptoError::Malformed},
      {[&](const std::string& m) { return "c=b iws,r=" + r(m) + ",p=" + p(m); },
       CryptoError::Malformed},
      {[&](const std::string& m) { return "c=eSws,r=" + r(m) + ",p=" + p(m); },
       CryptoError::ChannelBindingMismatch},
      {[&](const std::string& m) { return "c=biwsbiws,r=" + r(m) + ",p=" + p(m); },
       CryptoError::ChannelBindingMismatch},
      {[&](const std::string& m) { return "c=" + c(m) + ",r=" + r(m) + ",p=" + p(m).substr(4); },
       CryptoError::Malformed},  // bad base64 length
      {[&](const std::string& m) {
         return "c=" + c(m) + ",r=" + r(m) + ",p=" + p(m).substr(0, 40) + "AA==";
       },
       CryptoError::Malformed},  // 31-byte proof
      {[&](const std::string& m) { return "c=" + c(m) + ",r=" + r(m) + ",p=" + p(m) + "AAAA"; },
       CryptoError::Malformed},  // 35-byte proof
      {[&](const std::string& m) { return "c=" + c(m) + ",r=" + r(m) + ",p="; },
       CryptoError::Malformed},
      // An extension the client did not sign changes AuthMessage: the proof no longer holds.
      {[&](const std::string& m) { return "c=" + c(m) + ",r=" + r(m) + ",x=ext,p=" + p(m); },
       CryptoError::BadProof},
      {[&](const std::string& m) { return "c=" + c(m) + ",r=" + r(m) + ",s=ext,p=" + p(m); },
       CryptoError::Malformed},
      {[&](const std::string& m) { return std::string(m.c_str()) + std::string(1, '\0'); },
       CryptoError::Malformed},
      {[&](const std::string& m) { return m + std::string(kMaxScramMessage, 'a'); },
       CryptoError::MessageTooLarge},
      {[](const std::string&) { return std::string(); }, CryptoError::Malformed},
  };
  int i = 0;
  for (const auto& [mutate, expected] : cases) {
    EXPECT_EQ(client_final_error(mutate), expected) << "case " << i;
    ++i;
  }
}

TEST(ScramServerFinal, ChannelBindingTampering) {
  auto r = [](const std::string& m) { return get_attr(m, "r="); };
  auto p = [](const std::string& m) { return get_attr(m, "p="); };
  EXPECT_EQ(client_final_error([](const std::string& m) { return m; }, true), std::nullopt);
  EXPECT_EQ(client_final_error(
                [&](const std::string& m) { return "c=biws,r=" + r(m) + ",p=" + p(m); }, true),
            CryptoError::ChannelBindingMismatch);
  // gs2 header alone, without the certificate hash.
  EXPECT_EQ(client_final_error(
                [&](const std::string& m) {
                  return "c=" + base64_encode(as_bytes("p=tls-server-end-point,,")) + ",r=" + r(m) +
                         ",p=" + p(m);
                },
                true),
            CryptoError::ChannelBindingMismatch);
  // Hash with one byte changed.
  EXPECT_EQ(client_final_error(
                [&](const std::string& m) {
                  std::string input = "p=tls-server-end-point,,";
                  input.append(31, '\x09');
                  input.push_back('\x08');
                  return "c=" + base64_encode(as_bytes(input)) + ",r=" + r(m) + ",p=" + p(m);
                },
                true),
            CryptoError::ChannelBindingMismatch);
}

// ---------------------------------------------------------------------------------------------
// Client: server-first and server-final

std::optional<CryptoError> server_first_verdict(std::string_view server_first,
                                                std::uint32_t max_iterations = 64) {
  ScramClientOptions o;
  o.nonce_for_testing = "clientnonce";
  o.max_iterations = max_iterations;
  ScramClient client("pw", o);
  const std::string_view offered[] = {kScramSha256};
  EXPECT_TRUE(client.start(offered));
  auto r = client.on_server_first(as_bytes(server_first));
  if (r) {
    EXPECT_EQ(client.state(), ScramClient::State::WaitServerFinal);
    return std::nullopt;
  }
  EXPECT_EQ(client.state(), ScramClient::State::Failed);
  return r.error();
}

TEST(ScramClientServerFirst, IterationBounds) {
  EXPECT_EQ(server_first_verdict("r=clientnonceSRV,s=QUJDRA==,i=64"), std::nullopt);
  EXPECT_EQ(server_first_verdict("r=clientnonceSRV,s=QUJDRA==,i=1"), std::nullopt);
  EXPECT_EQ(server_first_verdict("r=clientnonceSRV,s=QUJDRA==,i=65"), CryptoError::BadIterations);
  EXPECT_EQ(server_first_verdict("r=clientnonceSRV,s=QUJDRA==,i=0"), CryptoError::BadIterations);
  EXPECT_EQ(server_first_verdict("r=clientnonceSRV,s=QUJDRA==,i=-1"), CryptoError::BadIterations);
  EXPECT_EQ(server_first_verdict("r=clientnonceSRV,s=QUJDRA==,i=+5"), CryptoError::BadIterations);
  EXPECT_EQ(server_first_verdict("r=clientnonceSRV,s=QUJDRA==,i=05"), CryptoError::BadIterations);
  EXPECT_EQ(server_first_verdict("r=clientnonceSRV,s=QUJDRA==,i="), CryptoError::BadIterations);
  EXPECT_EQ(server_first_verdict("r=clientnonceSRV,s=QUJDRA==,i=1x"), CryptoError::BadIterations);
  EXPECT_EQ(server_first_verdict("r=clientnonceSRV,s=QUJDRA==,i=4294967297"),
            CryptoError::BadIterations);
  EXPECT_EQ(server_first_verdict("r=clientnonceSRV,s=QUJDRA==,i=99999999999999999999"),
            CryptoError::BadIterations);
  // The default bound.
  EXPECT_EQ(
      server_first_verdict("r=clientnonceSRV,s=QUJDRA==,i=100001", kDefaultMaxClientIterations),
      CryptoError::BadIterations);
}

TEST(ScramClientServerFirst, SaltBounds) {
  EXPECT_EQ(server_first_verdict("r=clientnonceSRV,s=,i=1"), CryptoError::BadSalt);
  EXPECT_EQ(server_first_verdict("r=clientnonceSRV,s=QUJDRA=,i=1"), CryptoError::BadSalt);
  EXPECT_EQ(server_first_verdict("r=clientnonceSRV,s=QUJD RA==,i=1"), CryptoError::BadSalt);
  EXPECT_EQ(server_first_verdict("r=clientnonceSRV,s=QUJDRB==,i=1"), CryptoError::BadSalt);
  std::vector<std::byte> salt(kMaxScramSaltLength, std::byte{1});
  EXPECT_EQ(server_first_verdict("r=clientnonceSRV,s=" + base64_encode(salt) + ",i=1"),
            std::nullopt);
  salt.push_back(std::byte{1});
  EXPECT_EQ(server_first_verdict("r=clientnonceSRV,s=" + base64_encode(salt) + ",i=1"),
            CryptoError::BadSalt);
}

TEST(ScramClientServerFirst, MalformedMessages) {
  const std::pair<std::string_view, std::optional<CryptoError>> cases[] = {
      {"r=clientnonceSRV,s=QUJDRA==,i=1", std::nullopt},
      {"", CryptoError::Malformed},
      {"m=ext,r=clientnonceSRV,s=QUJDRA==,i=1", CryptoError::UnsupportedExtension},
      {"r=clientnonceSRV,s=QUJDRA==,i=1,x=ext", CryptoError::UnsupportedExtension},
      {"r=clientnonceSRV,s=QUJDRA==,i=1,", CryptoError::UnsupportedExtension},
      {"r=clientnonceSRV,i=1,s=QUJDRA==", CryptoError::Malformed},
      {"s=QUJDRA==,r=clientnonceSRV,i=1", CryptoError::Malformed},
      {"r=clientnonceSRV,s=QUJDRA==", CryptoError::Malformed},
      {"r=clientnonceSRV,i=1", CryptoError::Malformed},
      {"r=clientnonceSRV", CryptoError::Malformed},
      {"e=other-error", CryptoError::Malformed},
      {"r=clientnonce,s=QUJDRA==,i=1", CryptoError::NonceMismatch},
      {"r=clientnonc,s=QUJDRA==,i=1", CryptoError::NonceMismatch},
      {"r=Xlientnonce123,s=QUJDRA==,i=1", CryptoError::NonceMismatch},
      {"r=,s=QUJDRA==,i=1", CryptoError::BadNonce},
      {"r=clientnonce SRV,s=QUJDRA==,i=1", CryptoError::BadNonce},
      {"r=clientnonce\x01,s=QUJDRA==,i=1", CryptoError::BadNonce},
      {std::string_view("r=clientnonceSRV,s=QUJDRA==,i=1\0", 33), CryptoError::Malformed},
      {"r=clientnonceSRV,,s=QUJDRA==,i=1", CryptoError::Malformed},
      {"r=clientnonceSRV,s=QUJDRA==,i=1,i=1", CryptoError::UnsupportedExtension},
  };
  for (auto [msg, expected] : cases) {
    EXPECT_EQ(server_first_verdict(msg), expected) << msg;
  }
  std::string nonce = "r=clientnonce" + std::string(kMaxScramNonce, 'x') + ",s=QUJDRA==,i=1";
  EXPECT_EQ(server_first_verdict(nonce), CryptoError::BadNonce);
  std::string big = "r=clientnonceSRV,s=QUJDRA==,i=1" + std::string(kMaxScramMessage, 'x');
  EXPECT_EQ(server_first_verdict(big), CryptoError::MessageTooLarge);
}

std::optional<CryptoError> server_final_verdict(
    const std::function<std::string(const std::string&)>& mutate) {
  auto server = make_server(verifier_for(kPassword));
  auto client = make_client(kPassword);
  Tamper t;
  t.server_final = [&](std::string& m) { m = mutate(m); };
  auto out = run(client, server, t);
  EXPECT_FALSE(out.server_error);
  if (out.client_error) {
    EXPECT_EQ(client.state(), ScramClient::State::Failed);
    EXPECT_FALSE(client.complete());
  } else {
    EXPECT_TRUE(client.complete());
  }
  return out.client_error;
}

TEST(ScramClientServerFinal, SignatureAlwaysVerified) {
  auto v = [](const std::string& m) { return get_attr(m, "v="); };
  EXPECT_EQ(server_final_verdict([](const std::string& m) { return m; }), std::nullopt);
  EXPECT_EQ(server_final_verdict([](const std::string& m) {
              std::string s = m;
              flip_b64(s, "v=");
              return s;
            }),
            CryptoError::BadServerSignature);
  EXPECT_EQ(server_final_verdict([](const std::string&) { return std::string("e=invalid-proof"); }),
            CryptoError::ServerError);
  EXPECT_EQ(server_final_verdict([](const std::string&) { return std::string("e=other-error"); }),
            CryptoError::ServerError);
  EXPECT_EQ(server_final_verdict([](const std::string&) { return std::string("v="); }),
            CryptoError::BadServerSignature);
  EXPECT_EQ(server_final_verdict([&](const std::string& m) { return "v=" + v(m).substr(4); }),
            CryptoError::BadServerSignature);
  EXPECT_EQ(server_final_verdict([&](const std::string& m) { return "v=" + v(m) + "AAAA"; }),
            CryptoError::BadServerSignature);
  EXPECT_EQ(server_final_verdict([&](const std::string& m) { return m + ",x=ext"; }),
            CryptoError::UnsupportedExtension);
  EXPECT_EQ(server_final_verdict([&](const std::string& m) { return m + ","; }),
            CryptoError::UnsupportedExtension);
  EXPECT_EQ(server_final_verdict([&](const std::string& m) { return "x=1," + m; }),
            CryptoError::Malformed);
  EXPECT_EQ(server_final_verdict([](const std::string&) { return std::string(); }),
            CryptoError::Malformed);
  EXPECT_EQ(server_final_verdict([](const std::string& m) { return m + std::string(1, '\0'); }),
            CryptoError::Malformed);
  // A signature from another exchange (another password's ServerKey) is refused.
  EXPECT_EQ(server_final_verdict([](const std::string&) { return std::string(kRfcServerFinal); }),
            CryptoError::BadServerSignature);
}

TEST(ScramClientState, UnexpectedMessages) {
  {
    auto client = make_client(kPassword);
    EXPECT_EQ(client.on_server_first(as_bytes("r=a,s=QUJDRA==,i=1")).error(),
              CryptoError::UnexpectedMessage);
    const std::string_view offered[] = {kScramSha256};
    EXPECT_EQ(client.start(offered).error(), CryptoError::ExchangeFailed);
  }
  {
    // AuthenticationSASLFinal straight after client-first: the server skipped the proof.
    auto client = make_client(kPassword);
    const std::string_view offered[] = {kScramSha256};
    ASSERT_TRUE(client.start(offered));
    EXPECT_EQ(client.on_server_final(as_bytes("v=AAAA")).error(), CryptoError::UnexpectedMessage);
    EXPECT_FALSE(client.complete());
  }
  {
    auto server = make_server(verifier_for(kPassword));
    auto client = make_client(kPassword);
    auto out = run(client, server);
    ASSERT_TRUE(client.complete());
    EXPECT_EQ(client.on_server_final(as_bytes(out.server_final)).error(),
              CryptoError::UnexpectedMessage);
  }
}

TEST(ScramClient, ZeroMaxIterationsRefusesEverything) {
  EXPECT_EQ(server_first_verdict("r=clientnonceSRV,s=QUJDRA==,i=1", 0), CryptoError::BadIterations);
}

TEST(ScramClient, UsernameIsSaslnameEncoded) {
  ScramClientOptions o;
  o.username = "a,b=c";
  o.nonce_for_testing = "nonce";
  ScramClient client("pw", o);
  const std::string_view offered[] = {kScramSha256};
  auto r = client.start(offered);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->data, "n,,n=a=2Cb=3Dc,r=nonce");
}

TEST(CryptoErrorText, AllNamed) {
  for (int i = 0; i <= static_cast<int>(CryptoError::ExchangeFailed); ++i) {
    auto text = to_string(static_cast<CryptoError>(i));
    EXPECT_FALSE(text.empty());
    EXPECT_NE(text, "cryptographic failure") << i;
  }
}

// ---------------------------------------------------------------------------------------------
// ScramKeyCache: upstream logins with static credentials skip PBKDF2 after the first

ScramKeyCache::Keys keys_of(std::uint8_t fill) {
  ScramKeyCache::Keys k;
  k.client_key.fill(std::byte{fill});
  k.server_key.fill(std::byte{static_cast<std::uint8_t>(fill + 1)});
  return k;
}

std::vector<std::byte> salt_of(std::uint8_t n) {
  return std::vector<std::byte>(16, std::byte{n});
}

TEST(ScramKeyCache, FindsByBothSaltAndIterations) {
  ScramKeyCache cache;
  ScramKeyCache::Keys out;
  EXPECT_FALSE(cache.find(salt_of(1), 4096, out));
  cache.store(salt_of(1), 4096, keys_of(10));
  ASSERT_TRUE(cache.find(salt_of(1), 4096, out));
  EXPECT_EQ(out.client_key, keys_of(10).client_key);
  EXPECT_EQ(out.server_key, keys_of(10).server_key);
  EXPECT_FALSE(cache.find(salt_of(1), 4097, out));
  EXPECT_FALSE(cache.find(salt_of(2), 4096, out));
  EXPECT_FALSE(cache.find(std::vector<std::byte>(15, std::byte{1}), 4096, out));
  cache.store(salt_of(1), 4096, keys_of(20));  // replaced, not duplicated
  EXPECT_EQ(cache.size(), 1u);
  ASSERT_TRUE(cache.find(salt_of(1), 4096, out));
  EXPECT_EQ(out.client_key, keys_of(20).client_key);
}

TEST(ScramKeyCache, BoundedOldestEvicted) {
  ScramKeyCache cache;
  constexpr auto kStored = static_cast<std::uint8_t>(ScramKeyCache::kMaxEntries + 3);
  for (std::uint8_t i = 0; i < kStored; ++i) {
    cache.store(salt_of(i), 4096, keys_of(i));
  }
  EXPECT_EQ(cache.size(), ScramKeyCache::kMaxEntries);
  ScramKeyCache::Keys out;
  for (std::uint8_t i = 0; i < 3; ++i) {
    EXPECT_FALSE(cache.find(salt_of(i), 4096, out)) << int{i};
  }
  for (std::uint8_t i = 3; i < kStored; ++i) {
    ASSERT_TRUE(cache.find(salt_of(i), 4096, out)) << int{i};
    EXPECT_EQ(out.client_key, keys_of(i).client_key);
  }
}

// The RFC 7677 exchange with a cache: the first client derives and stores the keys; a second
// client whose password is wrong still produces the RFC's proof and accepts the RFC's server
// signature, which it can only do with the cached keys (no PBKDF2 on its own password).
TEST(ScramKeyCache, ClientUsesCachedKeys) {
  ScramKeyCache cache;
  const std::string_view offered[] = {kScramSha256};
  for (std::string_view password : {"pencil", "not pencil"}) {
    ScramClientOptions o;
    o.username = "user";
    o.nonce_for_testing = "rOprNGfwEbeRWgbNEkqO";
    o.key_cache = &cache;
    ScramClient client(password, o);
    ASSERT_TRUE(client.start(offered));
    auto final_msg = client.on_server_first(as_bytes(kRfcServerFirst));
    ASSERT_TRUE(final_msg.has_value()) << password;
    EXPECT_EQ(final_msg->data, kRfcClientFinal) << password;
    EXPECT_TRUE(client.on_server_final(as_bytes(kRfcServerFinal)).has_value()) << password;
    EXPECT_TRUE(client.complete()) << password;
    EXPECT_EQ(cache.size(), 1u);
  }
  // Without the cache the wrong password gives another proof, as it must.
  ScramClientOptions o;
  o.username = "user";
  o.nonce_for_testing = "rOprNGfwEbeRWgbNEkqO";
  ScramClient uncached("not pencil", o);
  ASSERT_TRUE(uncached.start(offered));
  auto final_msg = uncached.on_server_first(as_bytes(kRfcServerFirst));
  ASSERT_TRUE(final_msg.has_value());
  EXPECT_NE(final_msg->data, kRfcClientFinal);
}

// Two servers with different salts (and iteration counts): each login derives its keys once,
// later logins reuse them, and every exchange completes on both sides.
TEST(ScramKeyCache, OneEntryPerSalt) {
  ScramKeyCache cache;
  const ScramVerifier verifiers[] = {verifier_for(kPassword), verifier_for(kPassword, 65)};
  for (int round = 0; round < 3; ++round) {
    for (const auto& v : verifiers) {
      auto server = make_server(v);
      ScramClientOptions o;
      o.max_iterations = 10'000;
      o.key_cache = &cache;
      ScramClient client(kPassword, o);
      auto out = run(client, server);
      EXPECT_FALSE(out.client_error);
      EXPECT_FALSE(out.server_error);
      EXPECT_TRUE(client.complete());
      EXPECT_TRUE(server.complete());
    }
  }
  EXPECT_EQ(cache.size(), 2u);
}

}  // namespace
}  // namespace pgwarden::crypto
