// SCRAM-SHA-256 (RFC 5802, RFC 7677) building blocks shared by ScramServer and ScramClient:
// limits, mechanism names, the key derivation, and PostgreSQL's stored verifier
//   SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>
// parse_scram_verifier accepts exactly that form (decimal iterations without sign or leading
// zero, in [1, kMaxScramIterations]; strict base64; a salt of 1..kMaxScramSaltLength bytes;
// 32-byte keys; nothing after the ServerKey) and make_scram_verifier builds it the way
// PostgreSQL's scram_build_secret does (SASLprep, random 16-byte salt). Nothing here throws
// (std::bad_alloc aside); OpenSSL failures are CryptoError::OpenSslFailure. Intermediate keys
// are wiped before return; ScramVerifier wipes its keys when destroyed.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "crypto/error.h"
#include "wire/limits.h"

namespace pgwarden::crypto {

inline constexpr std::string_view kScramSha256 = "SCRAM-SHA-256";
inline constexpr std::string_view kScramSha256Plus = "SCRAM-SHA-256-PLUS";
inline constexpr std::string_view kTlsServerEndPoint = "tls-server-end-point";

inline constexpr std::size_t kScramKeyLength = 32;  // SHA-256 output
// PostgreSQL's SCRAM_DEFAULT_SALT_LEN and SCRAM_RAW_NONCE_LEN.
inline constexpr std::size_t kScramSaltLength = 16;
inline constexpr std::size_t kScramRawNonceLength = 18;
// Salts accepted from a verifier or a server-first message. PostgreSQL writes 16 bytes.
inline constexpr std::size_t kMinScramSaltLength = 1;
inline constexpr std::size_t kMaxScramSaltLength = 256;
// PostgreSQL's default scram_iterations.
inline constexpr std::uint32_t kDefaultScramIterations = 4096;
// PBKDF2 takes an int count; PostgreSQL stores an int.
inline constexpr std::uint32_t kMaxScramIterations = 0x7fffffff;
// What a client accepts from a server by default: PBKDF2 cost is chosen by the server, so an
// unbounded count lets a hostile server pin the client's CPU.
inline constexpr std::uint32_t kDefaultMaxClientIterations = 100'000;
// Any single SCRAM message, either direction; they are tiny by nature.
inline constexpr std::size_t kMaxScramMessage = wire::kMaxAuthMessage;
// Longest nonce accepted from the peer (printable characters other than ',' only).
inline constexpr std::size_t kMaxScramNonce = 1024;

using ScramKey = std::array<std::byte, kScramKeyLength>;

struct ScramVerifier {
  std::uint32_t iterations = kDefaultScramIterations;
  std::vector<std::byte> salt;
  ScramKey stored_key{};
  ScramKey server_key{};

  ScramVerifier() = default;
  ScramVerifier(std::uint32_t iter, std::vector<std::byte> salt_bytes, const ScramKey& stored,
                const ScramKey& server)
      : iterations(iter), salt(std::move(salt_bytes)), stored_key(stored), server_key(server) {}
  ScramVerifier(const ScramVerifier&) = default;
  ScramVerifier(ScramVerifier&&) = default;
  ScramVerifier& operator=(const ScramVerifier&) = default;
  ScramVerifier& operator=(ScramVerifier&&) = default;
  ~ScramVerifier();

  // The PostgreSQL text form, as stored in pg_authid.rolpassword and in the users file.
  std::string to_string() const;
  // Constant time over the keys.
  bool operator==(const ScramVerifier& other) const;
};

std::expected<ScramVerifier, CryptoError> parse_scram_verifier(std::string_view text);

// SASLprep (saslprep_or_raw), a random kScramSaltLength-byte salt, then the keys.
// iterations must be in [1, kMaxScramIterations].
std::expected<ScramVerifier, CryptoError> make_scram_verifier(
    std::string_view password, std::uint32_t iterations = kDefaultScramIterations);

// As make_scram_verifier with a given salt (interoperability tests, re-deriving a verifier).
std::expected<ScramVerifier, CryptoError> make_scram_verifier_with_salt(
    std::string_view password, std::span<const std::byte> salt, std::uint32_t iterations);

// PostgreSQL's "mock authentication": a verifier for a user that does not exist, derived
// deterministically from a secret key (at least kMinMockSecret bytes; the server derives it
// from its users file, config/users_file.h, so that it survives restarts) and the user name,
// so that repeated attempts see the same salt and nothing in the exchange tells an unknown
// user from a known one. The caller picks the iteration count and salt length that real
// verifiers use. A shorter key is refused (fail closed). No password matches it in practice;
// the ScramServer also refuses every proof in a mock exchange.
inline constexpr std::size_t kMinMockSecret = 32;
std::expected<ScramVerifier, CryptoError> mock_scram_verifier(
    std::span<const std::byte> secret, std::string_view user, std::uint32_t iterations,
    std::size_t salt_length = kScramSaltLength);

// Primitives (RFC 5802 section 3), exposed for the state machines and for tests.
std::expected<ScramKey, CryptoError> sha256(std::span<const std::byte> data);
std::expected<ScramKey, CryptoError> hmac_sha256(std::span<const std::byte> key,
                                                 std::span<const std::byte> data);
// Hi(password, salt, i) = PBKDF2-HMAC-SHA-256; the password must already be SASLprepped.
std::expected<ScramKey, CryptoError> scram_salted_password(std::string_view prepared_password,
                                                           std::span<const std::byte> salt,
                                                           std::uint32_t iterations);

// ClientKey = HMAC(SaltedPassword, "Client Key") and ServerKey = HMAC(SaltedPassword,
// "Server Key"), with SaltedPassword = Hi(prepared_password, salt, iterations), which is wiped.
// On failure both outputs are wiped and the error is returned.
std::optional<CryptoError> scram_client_and_server_keys(std::string_view prepared_password,
                                                        std::span<const std::byte> salt,
                                                        std::uint32_t iterations,
                                                        ScramKey& client_key, ScramKey& server_key);

// Strict decimal for iteration counts: digits only, no sign, no leading zero, 1..max.
std::optional<std::uint32_t> parse_iterations(std::string_view text, std::uint32_t max);

}  // namespace pgwarden::crypto
