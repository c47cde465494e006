// Fuzzes ScramServer with arbitrary client-first and client-final messages.
//
// Input layout: byte 0 selects the setup (bit 0: server has channel-binding data; bit 1:
// client selects SCRAM-SHA-256-PLUS; bit 2: unknown user, i.e. mock verifier), bytes 1-2 are
// the little-endian length of the client-first-message, then the client-first-message, then
// the client-final-message (the rest). The server nonce is fixed so that the fuzzer can
// complete exchanges; the verifier is for password "pencil" with 2 iterations.
//
// Properties checked (abort on violation):
//   - the server never accepts a mock (unknown-user) exchange;
//   - it accepts only when the proof is genuinely right: the harness recomputes the expected
//     proof from the password, independently of ScramServer, and compares;
//   - it accepts channel binding only when 'c=' is exactly the gs2 header plus the data;
//   - a reply is produced exactly in the states that allow one, and failure is terminal;
//   - base64_decode is canonical: whatever it accepts re-encodes to the same text.
#include <openssl/crypto.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/base64.h"
#include "crypto/scram.h"
#include "crypto/scram_server.h"
#include "wire/bytes.h"

using namespace pgwarden::crypto;
using pgwarden::wire::as_bytes;

namespace {

constexpr std::string_view kPassword = "pencil";
constexpr std::string_view kServerNonce = "SRVNONCE";
constexpr std::uint32_t kIterations = 2;

const std::vector<std::byte>& salt() {
  static const std::vector<std::byte> s = *base64_decode("W22ZaJ0SNY7soEsUEjb6gQ==");
  return s;
}

const ScramVerifier& verifier() {
  static const ScramVerifier v = *make_scram_verifier_with_salt(kPassword, salt(), kIterations);
  return v;
}

const std::vector<std::byte>& mock_secret() {
  static const std::vector<std::byte> s(32, std::byte{0x42});
  return s;
}

std::vector<std::byte> channel_binding() {
  return std::vector<std::byte>(32, std::byte{0xcb});
}

void check(bool ok) {
  if (!ok) {
    std::abort();
  }
}

void check_base64_canonical(std::string_view text) {
  auto decoded = base64_decode(text);
  if (decoded) {
    check(base64_encode(*decoded) == text);
  }
}

// The proof a client knowing kPassword would send for this AuthMessage.
ScramKey expected_proof(std::string_view auth_message) {
  auto salted = *scram_salted_password(kPassword, salt(), kIterations);
  auto client_key = *hmac_sha256(salted, as_bytes("Client Key"));
  auto stored_key = *sha256(client_key);
  auto signature = *hmac_sha256(stored_key, as_bytes(auth_message));
  ScramKey proof{};
  for (std::size_t i = 0; i < proof.size(); ++i) {
    proof[i] = client_key[i] ^ signature[i];
  }
  return proof;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) {
    return 0;
  }
  const std::uint8_t mode = data[0];
  const std::size_t first_len = data[1] | (static_cast<std::size_t>(data[2]) << 8);
  data += 3;
  size -= 3;
  if (first_len > size) {
    return 0;
  }
  std::string_view client_first(reinterpret_cast<const char*>(data), first_len);
  std::string_view client_final(reinterpret_cast<const char*>(data + first_len), size - first_len);
  check_base64_canonical(client_first);
  check_base64_canonical(client_final);

  const bool has_cb = (mode & 1) != 0;
  const bool plus = (mode & 2) != 0;
  const bool mock = (mode & 4) != 0;
  ScramServerOptions options;
  if (has_cb) {
    options.channel_binding = channel_binding();
  }
  options.nonce_for_testing = std::string(kServerNonce);
  options.mock_iterations = kIterations;
  std::optional<ScramVerifier> v;
  if (!mock) {
    v = verifier();
  }
  ScramServer server(v, "user", mock_secret(), options);
  check(server.mechanisms().size() == (has_cb ? 2u : 1u));

  auto first =
      server.on_client_first(plus ? kScramSha256Plus : kScramSha256, as_bytes(client_first));
  if (!first) {
    check(server.state() == ScramServer::State::Failed);
    check(!server.on_client_final(as_bytes(client_final)).has_value());
    return 0;
  }
  check(!first->final);
  check(server.state() == ScramServer::State::WaitClientFinal);
  check(first->data.starts_with("r="));
  check(plus == server.channel_binding_used());
  check(!plus || has_cb);

  auto final_reply = server.on_client_final(as_bytes(client_final));
  if (!final_reply) {
    check(server.state() == ScramServer::State::Failed);
    check(!server.on_client_final(as_bytes(client_final)).has_value());
    return 0;
  }
  // Accepted: re-derive everything independently.
  check(!mock);
  check(final_reply->final);
  check(server.complete());
  auto comma = client_first.find(",,");
  check(comma != std::string_view::npos);
  std::string_view gs2_header = client_first.substr(0, comma + 2);
  std::string_view bare = client_first.substr(comma + 2);
  auto proof_at = client_final.rfind(",p=");
  check(proof_at != std::string_view::npos);
  std::string_view without_proof = client_final.substr(0, proof_at);
  std::string auth_message =
      std::string(bare) + "," + first->data + "," + std::string(without_proof);
  auto proof = base64_decode(client_final.substr(proof_at + 3));
  check(proof.has_value() && proof->size() == kScramKeyLength);
  auto expected = expected_proof(auth_message);
  check(CRYPTO_memcmp(proof->data(), expected.data(), expected.size()) == 0);
  // Channel binding: c= must be the gs2 header (+ the data under -PLUS).
  check(without_proof.starts_with("c="));
  auto c_end = without_proof.find(',');
  auto cbind = base64_decode(without_proof.substr(2, c_end - 2));
  check(cbind.has_value());
  std::string expected_cbind(gs2_header);
  if (plus) {
    auto cb = channel_binding();
    expected_cbind.append(reinterpret_cast<const char*>(cb.data()), cb.size());
  } else {
    check(gs2_header == "n,," || gs2_header == "y,,");
    check(!(gs2_header == "y,," && has_cb));  // downgrade must have been refused
  }
  check(pgwarden::wire::as_chars(*cbind) == expected_cbind);
  // The nonce must be the client's followed by ours.
  check(without_proof.find(std::string(kServerNonce) + ",") != std::string_view::npos ||
        without_proof.ends_with(kServerNonce));
  return 0;
}
