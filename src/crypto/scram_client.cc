#include "crypto/scram_client.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <array>

#include "crypto/base64.h"
#include "crypto/random.h"
#include "crypto/saslprep.h"
#include "crypto/scram_attributes.h"
#include "crypto/secret.h"
#include "wire/bytes.h"

namespace pgwarden::crypto {
namespace {

using detail::AttributeReader;

bool offers(std::span<const std::string_view> offered, std::string_view name) {
  return std::find(offered.begin(), offered.end(), name) != offered.end();
}

// saslname: ',' and '=' are escaped as "=2C" and "=3D" (RFC 5802 section 5.1).
std::string encode_saslname(std::string_view name) {
  std::string out;
  out.reserve(name.size());
  for (char c : name) {
    if (c == ',') {
      out += "=2C";
    } else if (c == '=') {
      out += "=3D";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

ScramClient::ScramClient(std::string_view password, ScramClientOptions options)
    : options_(std::move(options)), password_(saslprep_or_raw(password)) {
  if (options_.channel_binding_data && options_.channel_binding_data->empty()) {
    options_.channel_binding_data.reset();
  }
}

ScramClient::~ScramClient() {
  wipe_secrets();
}

void ScramClient::wipe_secrets() {
  wipe(password_);
  wipe(expected_server_signature_);
}

std::unexpected<CryptoError> ScramClient::fail(CryptoError e) {
  state_ = State::Failed;
  wipe_secrets();
  return std::unexpected(e);
}

std::expected<ScramClient::Reply, CryptoError> ScramClient::step(const Input& input) {
  switch (state_) {
    case State::SelectMechanism:
      if (const auto* m = std::get_if<Mechanisms>(&input)) {
        return handle_mechanisms(*m);
      }
      return fail(CryptoError::UnexpectedMessage);
    case State::WaitServerFirst:
      if (const auto* first = std::get_if<ServerFirst>(&input)) {
        return handle_server_first(*first);
      }
      return fail(CryptoError::UnexpectedMessage);
    case State::WaitServerFinal:
      if (const auto* final_msg = std::get_if<ServerFinal>(&input)) {
        return handle_server_final(*final_msg);
      }
      return fail(CryptoError::UnexpectedMessage);
    case State::Complete:
      return fail(CryptoError::UnexpectedMessage);
    case State::Failed:
      return std::unexpected(CryptoError::ExchangeFailed);
  }
  return fail(CryptoError::UnexpectedMessage);
}

std::expected<ScramClient::Reply, CryptoError> ScramClient::handle_mechanisms(
    const Mechanisms& in) {
  const bool want_binding = options_.channel_binding != ChannelBindingPolicy::Disable;
  const bool can_bind = options_.tls_active && options_.channel_binding_data.has_value();
  const bool server_plus = offers(in.offered, kScramSha256Plus);

  if (server_plus && !options_.tls_active) {
    // -PLUS needs TLS; a server offering it in cleartext means TLS was stripped on the way.
    return fail(CryptoError::ChannelBindingDowngrade);
  }
  if (server_plus && want_binding && can_bind) {
    mechanism_ = kScramSha256Plus;
    gs2_header_ = "p=" + std::string(kTlsServerEndPoint) + ",,";
  } else if (options_.channel_binding == ChannelBindingPolicy::Require) {
    return fail(CryptoError::ChannelBindingRequired);
  } else if (offers(in.offered, kScramSha256)) {
    mechanism_ = kScramSha256;
    // 'y': we could bind but the server did not offer -PLUS; if it did, it sees a downgrade.
    // Over TLS with a certificate whose hash is undefined we cannot bind at all: 'n'.
    gs2_header_ = (want_binding && can_bind) ? "y,," : "n,,";
  } else {
    return fail(CryptoError::NoCommonMechanism);
  }

  if (!options_.nonce_for_testing.empty()) {
    client_nonce_ = options_.nonce_for_testing;
  } else {
    std::array<std::byte, kScramRawNonceLength> raw{};
    if (!random_bytes(raw)) {
      return fail(CryptoError::RandomFailure);
    }
    client_nonce_ = base64_encode(raw);
  }
  client_first_bare_ = "n=" + encode_saslname(options_.username) + ",r=" + client_nonce_;
  state_ = State::WaitServerFirst;
  return Reply{mechanism_, gs2_header_ + client_first_bare_};
}

std::expected<ScramClient::Reply, CryptoError> ScramClient::handle_server_first(
    const ServerFirst& in) {
  auto checked = detail::check_scram_message(in.data);
  if (!checked) {
    return fail(checked.error());
  }
  std::string_view msg = *checked;

  // server-first-message = [reserved-mext ","] nonce "," salt "," iteration-count
  AttributeReader reader(msg);
  auto nonce_attr = reader.next();
  if (!nonce_attr) {
    return fail(nonce_attr.error());
  }
  if (nonce_attr->name == 'm') {
    return fail(CryptoError::UnsupportedExtension);
  }
  if (nonce_attr->name != 'r') {
    return fail(CryptoError::Malformed);
  }
  std::string_view nonce = nonce_attr->value;
  if (!detail::is_printable_nonce(nonce)) {
    return fail(CryptoError::BadNonce);
  }
  // The server must append its own part to our nonce: equal or different means replay.
  if (nonce.size() <= client_nonce_.size() || !nonce.starts_with(client_nonce_)) {
    return fail(CryptoError::NonceMismatch);
  }
  auto salt_text = reader.expect('s');
  if (!salt_text) {
    return fail(salt_text.error());
  }
  auto salt = base64_decode(*salt_text);
  if (!salt || salt->size() < kMinScramSaltLength || salt->size() > kMaxScramSaltLength) {
    return fail(CryptoError::BadSalt);
  }
  auto iter_text = reader.expect('i');
  if (!iter_text) {
    return fail(iter_text.error());
  }
  auto iterations = parse_iterations(*iter_text, options_.max_iterations);
  if (!iterations) {
    return fail(CryptoError::BadIterations);
  }
  if (!reader.done()) {
    return fail(CryptoError::UnsupportedExtension);  // libpq accepts nothing after i=
  }

  // client-final-message-without-proof = "c=" base64(gs2-header [cbind-data]) "," "r=" nonce
  auto header = wire::as_bytes(gs2_header_);
  std::vector<std::byte> cbind_input(header.begin(), header.end());
  if (channel_binding_used()) {
    cbind_input.insert(cbind_input.end(), options_.channel_binding_data->begin(),
                       options_.channel_binding_data->end());
  }
  std::string without_proof = "c=" + base64_encode(cbind_input) + ",r=" + std::string(nonce);

  std::string auth_message;
  auth_message.reserve(client_first_bare_.size() + msg.size() + without_proof.size() + 2);
  auth_message.append(client_first_bare_).append(",").append(msg).append(",");
  auth_message.append(without_proof);

  ScramKeyCache::Keys keys;
  auto derive_error = derive_keys(*salt, *iterations, keys);
  wipe(password_);  // not needed again
  if (derive_error) {
    return fail(*derive_error);
  }
  ScramKey& client_key = keys.client_key;
  ScramKey& server_key = keys.server_key;
  auto stored_key = sha256(client_key);
  auto client_signature =
      stored_key
          ? hmac_sha256(*stored_key, wire::as_bytes(auth_message))
          : std::expected<ScramKey, CryptoError>(std::unexpected(CryptoError::OpenSslFailure));
  auto server_signature = hmac_sha256(server_key, wire::as_bytes(auth_message));
  wipe(server_key);
  if (stored_key) {
    wipe(*stored_key);
  }
  if (!client_signature || !server_signature) {
    wipe(client_key);
    if (client_signature) {
      wipe(*client_signature);
    }
    return fail(CryptoError::OpenSslFailure);
  }
  ScramKey proof{};
  for (std::size_t i = 0; i < kScramKeyLength; ++i) {
    proof[i] = client_key[i] ^ (*client_signature)[i];
  }
  wipe(client_key);
  wipe(*client_signature);
  expected_server_signature_ = *server_signature;
  wipe(*server_signature);

  Reply reply{{}, without_proof + ",p=" + base64_encode(proof)};
  state_ = State::WaitServerFinal;
  return reply;
}

std::optional<CryptoError> ScramClient::derive_keys(std::span<const std::byte> salt,
                                                    std::uint32_t iterations,
                                                    ScramKeyCache::Keys& out) {
  if (options_.key_cache && options_.key_cache->find(salt, iterations, out)) {
    return std::nullopt;
  }
  if (auto failed = scram_client_and_server_keys(password_, salt, iterations, out.client_key,
                                                 out.server_key)) {
    return failed;
  }
  if (options_.key_cache) {
    options_.key_cache->store(salt, iterations, out);
  }
  return std::nullopt;
}

std::expected<ScramClient::Reply, CryptoError> ScramClient::handle_server_final(
    const ServerFinal& in) {
  auto checked = detail::check_scram_message(in.data);
  if (!checked) {
    return fail(checked.error());
  }
  // server-final-message = (server-error / verifier) ["," extensions]
  AttributeReader reader(*checked);
  auto attr = reader.next();
  if (!attr) {
    return fail(attr.error());
  }
  if (attr->name == 'e') {
    return fail(CryptoError::ServerError);
  }
  if (attr->name != 'v') {
    return fail(CryptoError::Malformed);
  }
  if (!reader.done()) {
    return fail(CryptoError::UnsupportedExtension);  // libpq accepts nothing after v=
  }
  auto signature = base64_decode(attr->value);
  if (!signature || signature->size() != kScramKeyLength) {
    return fail(CryptoError::BadServerSignature);
  }
  if (CRYPTO_memcmp(signature->data(), expected_server_signature_.data(), kScramKeyLength) != 0) {
    return fail(CryptoError::BadServerSignature);
  }
  state_ = State::Complete;
  wipe_secrets();
  return Reply{};
}

}  // namespace pgwarden::crypto
