#include "tls/openssl_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

namespace pgwarden::tls::detail {
namespace {

// The bytes of a file, wiped when freed. Growing allocates a new buffer, copies and wipes
// the old one, so no copy of a private key is left behind in freed heap memory.
class WipedBytes {
 public:
  WipedBytes() = default;
  WipedBytes(WipedBytes&&) noexcept = default;
  WipedBytes& operator=(WipedBytes&&) = delete;
  WipedBytes(const WipedBytes&) = delete;
  WipedBytes& operator=(const WipedBytes&) = delete;
  ~WipedBytes() { wipe(buf_); }

  void reserve(std::size_t capacity) {
    std::vector<unsigned char> bigger(capacity);
    std::copy_n(buf_.begin(), size_, bigger.begin());
    wipe(buf_);
    buf_.swap(bigger);
  }
  std::size_t size() const { return size_; }
  std::size_t capacity() const { return buf_.size(); }
  unsigned char* tail() { return buf_.data() + size_; }
  void grow_by(std::size_t n) { size_ += n; }
  const unsigned char* data() const { return buf_.data(); }
  std::string_view view() const { return {reinterpret_cast<const char*>(buf_.data()), size_}; }

 private:
  static void wipe(std::vector<unsigned char>& v) {
    if (!v.empty()) {
      OPENSSL_cleanse(v.data(), v.size());
    }
  }
  std::vector<unsigned char> buf_;
  std::size_t size_ = 0;
};

std::string errno_text(int err) {
  return std::generic_category().message(err);
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

std::expected<WipedBytes, std::string> read_file(const std::filesystem::path& path) {
  const std::string shown = path.string();
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (fd.get() < 0) {
    return std::unexpected("cannot read " + shown + ": " + errno_text(errno));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return std::unexpected("cannot read " + shown + ": " + errno_text(errno));
  }
  if (S_ISDIR(st.st_mode)) {
    return std::unexpected("cannot read " + shown + ": is a directory");
  }
  WipedBytes bytes;
  std::size_t initial = 16 * 1024;
  if (S_ISREG(st.st_mode) && st.st_size >= 0) {
    // One byte more than the size, so reaching EOF needs no reallocation.
    initial = std::min<std::size_t>(static_cast<std::size_t>(st.st_size), kMaxPemFileBytes) + 1;
  }
  bytes.reserve(initial);
  for (;;) {
    if (bytes.size() == bytes.capacity()) {
      if (bytes.capacity() > kMaxPemFileBytes) {
        return std::unexpected("cannot read " + shown + ": larger than " +
                               std::to_string(kMaxPemFileBytes / (1024 * 1024)) + " MiB");
      }
      bytes.reserve(std::min(bytes.capacity() * 2, kMaxPemFileBytes + 1));
    }
    const ssize_t n = ::read(fd.get(), bytes.tail(), bytes.capacity() - bytes.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return std::unexpected("cannot read " + shown + ": " + errno_text(errno));
    }
    if (n == 0) {
      break;
    }
    bytes.grow_by(static_cast<std::size_t>(n));
  }
  return bytes;
}

BioPtr memory_bio(const WipedBytes& bytes) {
  // The size is bounded by kMaxPemFileBytes, far below INT_MAX.
  return BioPtr(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
}

bool last_error_is_no_start_line() {
  const unsigned long e = ERR_peek_last_error();
  return ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
}

// Pass-phrase callback that refuses: an encrypted key fails instead of prompting on a
// terminal (which would hang a daemon reloading on SIGHUP).
int refuse_pass_phrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*userdata*/) {
  return -1;
}

}  // namespace

std::string error_reason(unsigned long code) {
  if (ERR_SYSTEM_ERROR(code)) {
    return errno_text(static_cast<int>(ERR_GET_REASON(code)));
  }
  if (const char* r = ERR_reason_error_string(code); r != nullptr) {
    return r;
  }
  char buf[256];
  ERR_error_string_n(code, buf, sizeof buf);
  return buf;
}

std::string drain_errors(std::string_view fallback) {
  std::vector<std::string> reasons;
  while (const unsigned long code = ERR_get_error()) {
    std::string r = error_reason(code);
    if (std::find(reasons.begin(), reasons.end(), r) == reasons.end()) {
      reasons.push_back(std::move(r));
    }
  }
  if (reasons.empty()) {
    return std::string(fallback);
  }
  std::string out;
  for (const auto& r : reasons) {
    if (!out.empty()) {
      out += ": ";
    }
    out += r;
  }
  return out;
}

std::expected<std::vector<X509Ptr>, std::string> load_certificates(
    const std::filesystem::path& path) {
  ERR_clear_error();
  auto bytes = read_file(path);
  if (!bytes) {
    return std::unexpected(bytes.error());
  }
  BioPtr bio = memory_bio(*bytes);
  if (!bio) {
    return std::unexpected("cannot load " + path.string() + ": " + drain_errors());
  }
  std::vector<X509Ptr> certs;
  for (;;) {
    X509Ptr cert(PEM_read_bio_X509_AUX(bio.get(), nullptr, refuse_pass_phrase, nullptr));
    if (!cert) {
      if (last_error_is_no_start_line()) {
        ERR_clear_error();  // end of the file: no further PEM block
        break;
      }
      return std::unexpected("cannot load certificate from " + path.string() + ": " +
                             drain_errors());
    }
    certs.push_back(std::move(cert));
  }
  if (certs.empty()) {
    return std::unexpected("no PEM certificate found in " + path.string());
  }
  return certs;
}

std::expected<EvpPkeyPtr, std::string> load_private_key(const std::filesystem::path& path) {
  ERR_clear_error();
  auto bytes = read_file(path);
  if (!bytes) {
    return std::unexpected(bytes.error());
  }
  BioPtr bio = memory_bio(*bytes);
  if (!bio) {
    return std::unexpected("cannot load " + path.string() + ": " + drain_errors());
  }
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, refuse_pass_phrase, nullptr));
  if (key) {
    return key;
  }
  // "ENCRYPTED PRIVATE KEY" (PKCS#8) or "Proc-Type: 4,ENCRYPTED" (traditional format).
  if (bytes->view().find("ENCRYPTED") != std::string_view::npos) {
    ERR_clear_error();
    return std::unexpected("cannot load private key from " + path.string() +
                           ": the key is encrypted (pass phrases are not supported)");
  }
  // Every PEM key label ends so: "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", ...
  if (last_error_is_no_start_line() ||
      bytes->view().find("PRIVATE KEY-----") == std::string_view::npos) {
    ERR_clear_error();
    return std::unexpected("no PEM private key found in " + path.string());
  }
  return std::unexpected("cannot load private key from " + path.string() + ": " + drain_errors());
}

std::expected<void, std::string> use_certificate_and_key(SSL_CTX* ctx,
                                                         const std::filesystem::path& cert,
                                                         const std::filesystem::path& key) {
  auto certs = load_certificates(cert);
  if (!certs) {
    return std::unexpected(certs.error());
  }
  auto pkey = load_private_key(key);
  if (!pkey) {
    return std::unexpected(pkey.error());
  }
  X509* leaf = certs->front().get();
  // Checked explicitly: SSL_CTX_use_PrivateKey would silently file a key of another type
  // (RSA key, ECDSA certificate) in a different slot instead of failing.
  if (X509_check_private_key(leaf, pkey->get()) != 1) {
    ERR_clear_error();
    return std::unexpected("private key " + key.string() + " does not match certificate " +
                           cert.string());
  }
  if (SSL_CTX_use_certificate(ctx, leaf) != 1) {
    return std::unexpected("cannot use certificate " + cert.string() + ": " + drain_errors());
  }
  if (SSL_CTX_clear_chain_certs(ctx) != 1) {
    return std::unexpected("cannot use certificate " + cert.string() + ": " + drain_errors());
  }
  for (std::size_t i = 1; i < certs->size(); ++i) {
    if (SSL_CTX_add1_chain_cert(ctx, (*certs)[i].get()) != 1) {
      return std::unexpected("cannot use chain certificate " + std::to_string(i + 1) + " of " +
                             cert.string() + ": " + drain_errors());
    }
  }
  if (SSL_CTX_use_PrivateKey(ctx, pkey->get()) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    return std::unexpected("cannot use private key " + key.string() + " with certificate " +
                           cert.string() + ": " + drain_errors());
  }
  return {};
}

std::expected<X509StorePtr, std::string> load_ca_store(const std::filesystem::path& path,
                                                       X509NameStackPtr* names) {
  auto certs = load_certificates(path);
  if (!certs) {
    return std::unexpected(certs.error());
  }
  X509StorePtr store(X509_STORE_new());
  X509NameStackPtr list;
  if (names != nullptr) {
    list.reset(sk_X509_NAME_new_null());
  }
  if (!store || (names != nullptr && !list)) {
    return std::unexpected("cannot load CA file " + path.string() + ": " + drain_errors());
  }
  for (const auto& cert : *certs) {
    if (X509_STORE_add_cert(store.get(), cert.get()) != 1) {
      return std::unexpected("cannot add a certificate of " + path.string() +
                             " to the trust store: " + drain_errors());
    }
    if (list) {
      X509_NAME* name = X509_NAME_dup(X509_get_subject_name(cert.get()));
      if (name == nullptr || sk_X509_NAME_push(list.get(), name) <= 0) {
        X509_NAME_free(name);
        return std::unexpected("cannot load CA file " + path.string() + ": " + drain_errors());
      }
    }
  }
  if (names != nullptr) {
    *names = std::move(list);
  }
  ERR_clear_error();
  return store;
}

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

bool is_ip_literal(std::string_view s) {
  const std::string z(s);  // NUL-terminated; an embedded NUL makes inet_pton fail
  if (z.size() != std::strlen(z.c_str())) {
    return false;
  }
  unsigned char buf[16];
  return ::inet_pton(AF_INET, z.c_str(), buf) == 1 || ::inet_pton(AF_INET6, z.c_str(), buf) == 1;
}

}  // namespace pgwarden::tls::detail
