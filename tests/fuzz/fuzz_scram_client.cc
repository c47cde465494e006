// Fuzzes ScramClient with arbitrary server-first and server-final messages and mechanism
// choices, as a hostile or broken upstream would send them.
//
// Input layout: byte 0 selects the setup (bit 0: TLS active with channel-binding data; bit 1:
// the server also offers SCRAM-SHA-256-PLUS; bits 2-3: channel_binding policy 0 disable,
// 1 prefer, 2 require), bytes 1-2 are the little-endian length of the server-first-message,
// then the server-first-message, then the server-final-message (the rest). The client nonce is
// fixed so that the fuzzer can produce a matching server nonce; max_iterations is 64 so that
// PBKDF2 stays cheap.
//
// Properties checked (abort on violation):
//   - the client completes only when the server signature is genuinely right: the harness
//     recomputes ServerSignature from the password, salt and iterations it parsed itself;
//   - iterations above the bound or salts outside the bounds never get to a client-final;
//   - -PLUS is used only when the client has TLS and the server offered it, and never when
//     the policy is disable; require never completes without it;
//   - failure is terminal and nothing is accepted after completion.
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
#include "crypto/scram_client.h"
#include "wire/bytes.h"

using namespace pgwarden::crypto;
using pgwarden::wire::as_bytes;

namespace {

constexpr std::string_view kPassword = "pencil";
constexpr std::string_view kClientNonce = "CLIENTNONCE";
constexpr std::uint32_t kMaxIterations = 64;

void check(bool ok) {
  if (!ok) {
    std::abort();
  }
}

// Value of attribute `name` ("s=") in a server-first-message the client accepted: the
// attribute that starts a ','-separated field (a nonce may contain "s=" itself).
std::string_view attr(std::string_view msg, std::string_view name) {
  std::size_t pos = 0;
  while (pos <= msg.size()) {
    auto end = msg.find(',', pos);
    if (end == std::string_view::npos) {
      end = msg.size();
    }
    auto field = msg.substr(pos, end - pos);
    if (field.starts_with(name)) {
      return field.substr(name.size());
    }
    pos = end + 1;
  }
  check(false);
  return {};
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
  std::string_view server_first(reinterpret_cast<const char*>(data), first_len);
  std::string_view server_final(reinterpret_cast<const char*>(data + first_len), size - first_len);

  const bool tls = (mode & 1) != 0;
  const bool offer_plus = (mode & 2) != 0;
  const auto policy = static_cast<ChannelBindingPolicy>(((mode >> 2) & 3) % 3);
  ScramClientOptions options;
  options.tls_active = tls;
  if (tls) {
    options.channel_binding_data = std::vector<std::byte>(48, std::byte{0xcb});
  }
  options.channel_binding = policy;
  options.max_iterations = kMaxIterations;
  options.nonce_for_testing = std::string(kClientNonce);
  ScramClient client(kPassword, options);

  std::vector<std::string_view> offered;
  if (offer_plus) {
    offered.push_back(kScramSha256Plus);
  }
  offered.push_back(kScramSha256);
  auto first = client.start(offered);
  if (!first) {
    check(client.state() == ScramClient::State::Failed);
    check(policy == ChannelBindingPolicy::Require || (offer_plus && !tls));
    return 0;
  }
  const bool plus = first->mechanism == kScramSha256Plus;
  check(!plus || (tls && offer_plus && policy != ChannelBindingPolicy::Disable));
  check(plus || policy != ChannelBindingPolicy::Require);
  std::string client_first = first->data;

  auto final_msg = client.on_server_first(as_bytes(server_first));
  if (!final_msg) {
    check(client.state() == ScramClient::State::Failed);
    check(!client.on_server_final(as_bytes(server_final)).has_value());
    return 0;
  }
  // Accepted server-first: bounds must hold.
  auto iterations = parse_iterations(attr(server_first, "i="), kMaxIterations);
  check(iterations.has_value());
  auto salt = base64_decode(attr(server_first, "s="));
  check(salt && salt->size() >= kMinScramSaltLength && salt->size() <= kMaxScramSaltLength);
  check(attr(server_first, "r=").starts_with(kClientNonce));
  check(attr(server_first, "r=").size() > kClientNonce.size());

  auto done = client.on_server_final(as_bytes(server_final));
  if (!done) {
    check(client.state() == ScramClient::State::Failed);
    return 0;
  }
  check(client.complete());
  // Completed: the server signature must be the genuine one.
  auto proof_at = final_msg->data.rfind(",p=");
  check(proof_at != std::string::npos);
  std::string auth_message = client_first.substr(client_first.find(",,") + 2) + "," +
                             std::string(server_first) + "," + final_msg->data.substr(0, proof_at);
  auto salted = *scram_salted_password(kPassword, *salt, *iterations);
  auto server_key = *hmac_sha256(salted, as_bytes("Server Key"));
  auto expected = *hmac_sha256(server_key, as_bytes(auth_message));
  check(server_final == "v=" + base64_encode(expected));
  check(!client.on_server_final(as_bytes(server_final)).has_value());
  return 0;
}
