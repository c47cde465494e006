#include "crypto/scram.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <charconv>

#include "crypto/base64.h"
#include "crypto/random.h"
#include "crypto/saslprep.h"
#include "crypto/secret.h"
#include "wire/bytes.h"

namespace pgwarden::crypto {
namespace {

constexpr std::string_view kVerifierPrefix = "SCRAM-SHA-256$";

std::span<const std::byte> as_bytes(std::string_view s) {
  return wire::as_bytes(s);
}

}  // namespace

ScramVerifier::~ScramVerifier() {
  wipe(stored_key);
  wipe(server_key);
}

std::string ScramVerifier::to_string() const {
  std::string out(kVerifierPrefix);
  out += std::to_string(iterations);
  out += ':';
  out += base64_encode(salt);
  out += '$';
  out += base64_encode(stored_key);
  out += ':';
  out += base64_encode(server_key);
  return out;
}

bool ScramVerifier::operator==(const ScramVerifier& other) const {
  // Evaluate every part so that the time does not depend on where they differ.
  bool same = iterations == other.iterations;
  same &= salt == other.salt;
  same &= CRYPTO_memcmp(stored_key.data(), other.stored_key.data(), kScramKeyLength) == 0;
  same &= CRYPTO_memcmp(server_key.data(), other.server_key.data(), kScramKeyLength) == 0;
  return same;
}

std::optional<std::uint32_t> parse_iterations(std::string_view text, std::uint32_t max) {
  if (text.empty() || text.size() > 10 || text.front() == '0') {
    return std::nullopt;
  }
  for (char c : text) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
  }
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || value == 0 || value > max) {
    return std::nullopt;
  }
  return static_cast<std::uint32_t>(value);
}

std::expected<ScramVerifier, CryptoError> parse_scram_verifier(std::string_view text) {
  if (!text.starts_with(kVerifierPrefix)) {
    return std::unexpected(CryptoError::BadVerifier);
  }
  text.remove_prefix(kVerifierPrefix.size());
  // <iterations>:<salt>$<stored>:<server>
  auto dollar = text.find('$');
  if (dollar == std::string_view::npos) {
    return std::unexpected(CryptoError::BadVerifier);
  }
  std::string_view head = text.substr(0, dollar);
  std::string_view keys = text.substr(dollar + 1);
  auto colon = head.find(':');
  auto key_colon = keys.find(':');
  if (colon == std::string_view::npos || key_colon == std::string_view::npos) {
    return std::unexpected(CryptoError::BadVerifier);
  }
  auto iterations = parse_iterations(head.substr(0, colon), kMaxScramIterations);
  if (!iterations) {
    return std::unexpected(CryptoError::BadVerifier);
  }
  // Strict base64 rejects any further ':' or '$', so extra fields cannot slip through.
  auto salt = base64_decode(head.substr(colon + 1));
  auto stored = base64_decode(keys.substr(0, key_colon));
  auto server = base64_decode(keys.substr(key_colon + 1));
  if (!salt || salt->size() < kMinScramSaltLength || salt->size() > kMaxScramSaltLength) {
    return std::unexpected(CryptoError::BadVerifier);
  }
  if (!stored || stored->size() != kScramKeyLength || !server ||
      server->size() != kScramKeyLength) {
    if (stored) {
      wipe(*stored);
    }
    if (server) {
      wipe(*server);
    }
    return std::unexpected(CryptoError::BadVerifier);
  }
  ScramVerifier v;
  v.iterations = *iterations;
  v.salt = std::move(*salt);
  std::copy(stored->begin(), stored->end(), v.stored_key.begin());
  std::copy(server->begin(), server->end(), v.server_key.begin());
  wipe(*stored);
  wipe(*server);
  return v;
}

std::expected<ScramKey, CryptoError> sha256(std::span<const std::byte> data) {
  ScramKey out{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), reinterpret_cast<unsigned char*>(out.data()), &len,
                 EVP_sha256(), nullptr) != 1 ||
      len != kScramKeyLength) {
    return std::unexpected(CryptoError::OpenSslFailure);
  }
  return out;
}

std::expected<ScramKey, CryptoError> hmac_sha256(std::span<const std::byte> key,
                                                 std::span<const std::byte> data) {
  ScramKey out{};
  unsigned int len = 0;
  if (key.size() > 0x7fffffff) {
    return std::unexpected(CryptoError::OpenSslFailure);
  }
  // HMAC() rejects a NULL key pointer even when the length is 0.
  static constexpr unsigned char kEmpty = 0;
  const void* key_ptr = key.empty() ? static_cast<const void*>(&kEmpty) : key.data();
  if (HMAC(EVP_sha256(), key_ptr, static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(),
           reinterpret_cast<unsigned char*>(out.data()), &len) == nullptr ||
      len != kScramKeyLength) {
    wipe(out);
    return std::unexpected(CryptoError::OpenSslFailure);
  }
  return out;
}

std::expected<ScramKey, CryptoError> scram_salted_password(std::string_view prepared_password,
                                                           std::span<const std::byte> salt,
                                                           std::uint32_t iterations) {
  if (iterations == 0 || iterations > kMaxScramIterations) {
    return std::unexpected(CryptoError::BadIterations);
  }
  if (prepared_password.size() > 0x7fffffff || salt.size() > 0x7fffffff) {
    return std::unexpected(CryptoError::OpenSslFailure);
  }
  ScramKey out{};
  static constexpr char kEmpty = 0;
  const char* pass = prepared_password.empty() ? &kEmpty : prepared_password.data();
  static constexpr unsigned char kEmptySalt = 0;
  const unsigned char* salt_ptr =
      salt.empty() ? &kEmptySalt : reinterpret_cast<const unsigned char*>(salt.data());
  if (PKCS5_PBKDF2_HMAC(pass, static_cast<int>(prepared_password.size()), salt_ptr,
                        static_cast<int>(salt.size()), static_cast<int>(iterations), EVP_sha256(),
                        static_cast<int>(kScramKeyLength),
                        reinterpret_cast<unsigned char*>(out.data())) != 1) {
    wipe(out);
    return std::unexpected(CryptoError::OpenSslFailure);
  }
  return out;
}

std::optional<CryptoError> scram_client_and_server_keys(std::string_view prepared_password,
                                                        std::span<const std::byte> salt,
                                                        std::uint32_t iterations,
                                                        ScramKey& client_key,
                                                        ScramKey& server_key) {
  auto salted = scram_salted_password(prepared_password, salt, iterations);
  if (!salted) {
    return salted.error();
  }
  auto ck = hmac_sha256(*salted, as_bytes("Client Key"));
  auto sk = hmac_sha256(*salted, as_bytes("Server Key"));
  wipe(*salted);
  if (ck) {
    client_key = *ck;
    wipe(*ck);
  }
  if (sk) {
    server_key = *sk;
    wipe(*sk);
  }
  if (!ck || !sk) {
    wipe(client_key);
    wipe(server_key);
    return CryptoError::OpenSslFailure;
  }
  return std::nullopt;
}

std::expected<ScramVerifier, CryptoError> make_scram_verifier_with_salt(
    std::string_view password, std::span<const std::byte> salt, std::uint32_t iterations) {
  if (iterations == 0 || iterations > kMaxScramIterations) {
    return std::unexpected(CryptoError::BadIterations);
  }
  if (salt.size() < kMinScramSaltLength || salt.size() > kMaxScramSaltLength) {
    return std::unexpected(CryptoError::BadSalt);
  }
  std::string prepared = saslprep_or_raw(password);
  ScramKey client_key{};
  ScramKey server_key{};
  auto failed = scram_client_and_server_keys(prepared, salt, iterations, client_key, server_key);
  wipe(prepared);
  if (failed) {
    return std::unexpected(*failed);
  }
  auto stored_key = sha256(client_key);
  wipe(client_key);
  if (!stored_key) {
    wipe(server_key);
    return std::unexpected(stored_key.error());
  }
  ScramVerifier v(iterations, std::vector<std::byte>(salt.begin(), salt.end()), *stored_key,
                  server_key);
  wipe(*stored_key);
  wipe(server_key);
  return v;
}

std::expected<ScramVerifier, CryptoError> make_scram_verifier(std::string_view password,
                                                              std::uint32_t iterations) {
  std::array<std::byte, kScramSaltLength> salt{};
  if (!random_bytes(salt)) {
    return std::unexpected(CryptoError::RandomFailure);
  }
  return make_scram_verifier_with_salt(password, salt, iterations);
}

std::expected<ScramVerifier, CryptoError> mock_scram_verifier(std::span<const std::byte> secret,
                                                              std::string_view user,
                                                              std::uint32_t iterations,
                                                              std::size_t salt_length) {
  if (iterations == 0 || iterations > kMaxScramIterations) {
    return std::unexpected(CryptoError::BadIterations);
  }
  if (salt_length < kMinScramSaltLength || salt_length > kMaxScramSaltLength) {
    return std::unexpected(CryptoError::BadSalt);
  }
  // A short (or missing) key would make every unknown user's salt predictable.
  if (secret.size() < kMinMockSecret) {
    return std::unexpected(CryptoError::BadVerifier);
  }
  // Domain-separated HMACs of the user name under the secret key. The label, a NUL and a
  // one-byte block number separate the parts, so no two (label, block, user) triples produce
  // the same input.
  auto derive = [&](std::string_view label, std::uint8_t block) {
    std::string input;
    input.reserve(label.size() + 2 + user.size());
    input.append(label);
    input.push_back('\0');
    input.push_back(static_cast<char>(block));
    input.append(user);
    return hmac_sha256(secret, as_bytes(input));
  };
  std::vector<std::byte> salt;
  salt.reserve(salt_length);
  for (std::uint8_t block = 0; salt.size() < salt_length; ++block) {
    auto part = derive("pgwarden mock salt", block);
    if (!part) {
      return std::unexpected(CryptoError::OpenSslFailure);
    }
    const std::size_t n = std::min(part->size(), salt_length - salt.size());
    salt.insert(salt.end(), part->begin(), part->begin() + static_cast<std::ptrdiff_t>(n));
  }
  auto stored = derive("pgwarden mock stored key", 0);
  auto server = derive("pgwarden mock server key", 0);
  if (!stored || !server) {
    return std::unexpected(CryptoError::OpenSslFailure);
  }
  ScramVerifier v(iterations, std::move(salt), *stored, *server);
  wipe(*stored);
  wipe(*server);
  return v;
}

}  // namespace pgwarden::crypto
