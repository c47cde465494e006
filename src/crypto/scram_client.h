// Client side of SCRAM-SHA-256 and SCRAM-SHA-256-PLUS, used to log in to the upstream
// PostgreSQL, as a sans-I/O state machine that behaves like libpq (fe-auth-scram.c):
//
//   SelectMechanism --Mechanisms--> WaitServerFirst --ServerFirst--> WaitServerFinal
//      --ServerFinal--> Complete;  any failure or unexpected input --> Failed (terminal)
//
// The owner feeds the mechanism list of AuthenticationSASL (and sends SASLInitialResponse with
// the chosen mechanism and the reply), the payload of AuthenticationSASLContinue (and sends the
// reply as SASLResponse), then the payload of AuthenticationSASLFinal. Only when complete() is
// true may the owner accept AuthenticationOk: a server that skips SASLFinal, sends 'e=', or
// signs wrongly has not proven that it knows the password's ServerKey, and the exchange fails.
//
// Channel binding follows libpq's channel_binding setting. With Prefer or Require and the
// upstream certificate's tls-server-end-point hash, SCRAM-SHA-256-PLUS is chosen when offered;
// without it the gs2 flag is 'y' over TLS (so a server that did offer -PLUS detects a
// downgrade) and 'n' otherwise. Require fails unless -PLUS is used. A server that offers
// -PLUS over a connection without TLS is refused (a proxy stripped TLS).
//
// The server chooses the PBKDF2 cost, so iterations are bounded by max_iterations (and must
// be at least 1); the salt must be strict base64 of 1..kMaxScramSaltLength bytes; the server
// nonce must extend ours; 'm=' and any attribute after the expected ones are refused.
// The password is SASLprepped (saslprep_or_raw) at construction. The password, the salted
// password and all derived keys are wiped as soon as they are no longer needed, on failure, and
// on destruction.
#pragma once

#include <cstdint>
#include <expected>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "crypto/error.h"
#include "crypto/scram.h"
#include "crypto/scram_key_cache.h"

namespace pgwarden::crypto {

enum class ChannelBindingPolicy : std::uint8_t { Disable, Prefer, Require };

struct ScramClientOptions {
  ChannelBindingPolicy channel_binding = ChannelBindingPolicy::Prefer;
  bool tls_active = false;
  // tls_server_end_point() of the upstream's certificate, when TLS is active.
  std::optional<std::vector<std::byte>> channel_binding_data;
  std::uint32_t max_iterations = kDefaultMaxClientIterations;
  // Sent as n=; PostgreSQL ignores it and libpq leaves it empty. Encoded as a saslname.
  std::string username;
  // Keys already derived from this password, by salt and iteration count (static upstream
  // credentials). Null: PBKDF2 runs for every exchange. Must belong to this very password.
  ScramKeyCache* key_cache = nullptr;
  // Tests only: the client nonce instead of a random one (must be printable).
  std::string nonce_for_testing;
};

class ScramClient {
 public:
  enum class State : std::uint8_t {
    SelectMechanism,
    WaitServerFirst,
    WaitServerFinal,
    Complete,
    Failed
  };

  // AuthenticationSASL: the server's mechanism names.
  struct Mechanisms {
    std::span<const std::string_view> offered;
  };
  // AuthenticationSASLContinue: the server-first-message.
  struct ServerFirst {
    std::span<const std::byte> data;
  };
  // AuthenticationSASLFinal: the server-final-message.
  struct ServerFinal {
    std::span<const std::byte> data;
  };
  using Input = std::variant<Mechanisms, ServerFirst, ServerFinal>;

  struct Reply {
    std::string_view mechanism;  // set in the reply to Mechanisms (SASLInitialResponse)
    std::string data;            // client-first, client-final, or empty after ServerFinal
  };

  explicit ScramClient(std::string_view password, ScramClientOptions options = {});
  ~ScramClient();
  ScramClient(const ScramClient&) = delete;
  ScramClient& operator=(const ScramClient&) = delete;
  ScramClient(ScramClient&&) = default;
  ScramClient& operator=(ScramClient&&) = default;

  // The transition function.
  std::expected<Reply, CryptoError> step(const Input& input);
  std::expected<Reply, CryptoError> start(std::span<const std::string_view> offered) {
    return step(Mechanisms{offered});
  }
  std::expected<Reply, CryptoError> on_server_first(std::span<const std::byte> data) {
    return step(ServerFirst{data});
  }
  std::expected<Reply, CryptoError> on_server_final(std::span<const std::byte> data) {
    return step(ServerFinal{data});
  }

  State state() const { return state_; }
  bool complete() const { return state_ == State::Complete; }
  std::string_view mechanism() const { return mechanism_; }
  bool channel_binding_used() const { return mechanism_ == kScramSha256Plus; }

 private:
  std::expected<Reply, CryptoError> handle_mechanisms(const Mechanisms& in);
  std::expected<Reply, CryptoError> handle_server_first(const ServerFirst& in);
  // ClientKey and ServerKey into `out`: from the key cache, or by PBKDF2 (and then stored
  // there). The caller wipes `out`.
  std::optional<CryptoError> derive_keys(std::span<const std::byte> salt, std::uint32_t iterations,
                                         ScramKeyCache::Keys& out);
  std::expected<Reply, CryptoError> handle_server_final(const ServerFinal& in);
  std::unexpected<CryptoError> fail(CryptoError e);
  void wipe_secrets();

  State state_ = State::SelectMechanism;
  ScramClientOptions options_;
  std::string password_;  // SASLprepped
  std::string_view mechanism_;
  std::string gs2_header_;
  std::string client_nonce_;
  std::string client_first_bare_;
  ScramKey expected_server_signature_{};
};

}  // namespace pgwarden::crypto
