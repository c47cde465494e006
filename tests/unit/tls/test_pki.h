// Test helpers shared by the tls unit tests.
//
// - Pki: a throwaway PKI made once per test process in a temporary directory, with the
//   `openssl` command-line tool (and, for certificates the tool cannot make, such as expired
//   ones or subjects with embedded NUL bytes, with the OpenSSL API). See Pki's members for
//   what exists.
// - Handshake: a real TLS handshake between an SSL client and an SSL server through an
//   in-memory BIO pair, pumped until both sides finish or fail, followed by one byte in each
//   direction so that a failure the server detects after the client finished (TLS 1.3 client
//   certificates) also reaches the client.
#pragma once

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "tls/openssl_util.h"

extern char** environ;

namespace pgwarden::tls::test {

namespace fs = std::filesystem;
using detail::EvpPkeyPtr;
using detail::SslCtxPtr;
using detail::SslPtr;
using detail::X509Ptr;

struct CertFiles {
  fs::path cert;
  fs::path key;
};

// ---- running openssl ----

inline void run_openssl(const fs::path& dir, const std::vector<std::string>& args) {
  std::vector<std::string> argv_s{"openssl"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) {
    argv.push_back(a.data());
  }
  argv.push_back(nullptr);
  // A user's OPENSSL_CONF must not change what gets generated.
  std::vector<std::string> env_s{"OPENSSL_CONF=/dev/null"};
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::string_view(*e).starts_with("OPENSSL_CONF=")) {
      continue;
    }
    env_s.emplace_back(*e);
  }
  std::vector<char*> envp;
  for (auto& e : env_s) {
    envp.push_back(e.data());
  }
  envp.push_back(nullptr);
  const fs::path log = dir / "openssl.log";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawn_file_actions_addchdir_np(&actions, dir.c_str());
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, "openssl", &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    throw std::runtime_error("cannot run openssl: " + std::to_string(rc));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      throw std::runtime_error("waitpid failed");
    }
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::ifstream in(log);
    std::stringstream out;
    out << in.rdbuf();
    std::string cmd;
    for (const auto& a : argv_s) {
      cmd += a + " ";
    }
    throw std::runtime_error("openssl failed: " + cmd + "\n" + out.str());
  }
}

inline void write_text(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) {
    throw std::runtime_error("cannot write " + p.string());
  }
}

inline std::string random_serial() {
  unsigned char b[12];
  if (RAND_bytes(b, sizeof b) != 1) {
    throw std::runtime_error("RAND_bytes");
  }
  b[0] = static_cast<unsigned char>((b[0] & 0x7f) | 0x01);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s = "0x";
  for (unsigned char c : b) {
    s += kHex[c >> 4];
    s += kHex[c & 0xf];
  }
  return s;
}

// ---- certificates made with the OpenSSL API ----

struct ApiCertSpec {
  // Subject entries (NID, raw bytes, ASN.1 string type); bytes may contain NULs.
  struct Entry {
    int nid;
    std::string bytes;
    int type = V_ASN1_UTF8STRING;
  };
  std::vector<Entry> subject;
  // subjectAltName entries (GEN_EMAIL / GEN_DNS, raw bytes), in one extension or, with
  // split_san, one extension per entry.
  std::vector<std::pair<int, std::string>> sans;
  bool split_san = false;
  long not_before_days = -1;
  long not_after_days = 30;
  bool client_usage = true;
};

inline EvpPkeyPtr new_ec_key() {
  EvpPkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) {
    throw std::runtime_error("EVP_EC_gen");
  }
  return key;
}

inline X509Ptr load_cert(const fs::path& p) {
  auto certs = detail::load_certificates(p);
  if (!certs) {
    throw std::runtime_error(certs.error());
  }
  return std::move(certs->front());
}

inline EvpPkeyPtr load_key(const fs::path& p) {
  auto key = detail::load_private_key(p);
  if (!key) {
    throw std::runtime_error(key.error());
  }
  return std::move(*key);
}

inline void add_ext(X509* x, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, x, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr || X509_add_ext(x, ext, -1) != 1) {
    throw std::runtime_error("cannot add extension");
  }
  X509_EXTENSION_free(ext);
}

// Issues a certificate for `key` signed by issuer/issuer_key (self-signed when issuer is null).
inline X509Ptr build_cert(const ApiCertSpec& spec, EVP_PKEY* key, X509* issuer,
                          EVP_PKEY* issuer_key) {
  X509Ptr x(X509_new());
  if (!x || X509_set_version(x.get(), X509_VERSION_3) != 1) {
    throw std::runtime_error("X509_new");
  }
  std::uint32_t serial = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&serial), sizeof serial) != 1) {
    throw std::runtime_error("RAND_bytes");
  }
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), static_cast<long>((serial >> 1) | 1));
  X509_gmtime_adj(X509_getm_notBefore(x.get()), spec.not_before_days * 86400);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), spec.not_after_days * 86400);
  X509_NAME* name = X509_get_subject_name(x.get());
  for (const auto& e : spec.subject) {
    if (X509_NAME_add_entry_by_NID(name, e.nid, e.type,
                                   reinterpret_cast<const unsigned char*>(e.bytes.data()),
                                   static_cast<int>(e.bytes.size()), -1, 0) != 1) {
      throw std::runtime_error("X509_NAME_add_entry_by_NID");
    }
  }
  X509_set_issuer_name(x.get(), issuer != nullptr ? X509_get_subject_name(issuer) : name);
  X509_set_pubkey(x.get(), key);
  add_ext(x.get(), issuer, NID_basic_constraints, "critical,CA:FALSE");
  add_ext(x.get(), issuer, NID_ext_key_usage, spec.client_usage ? "clientAuth" : "serverAuth");
  auto add_names = [&](const std::vector<std::pair<int, std::string>>& entries) {
    GENERAL_NAMES* names = sk_GENERAL_NAME_new_null();
    for (const auto& [type, bytes] : entries) {
      GENERAL_NAME* gn = GENERAL_NAME_new();
      ASN1_IA5STRING* s = ASN1_IA5STRING_new();
      ASN1_STRING_set(s, bytes.data(), static_cast<int>(bytes.size()));
      GENERAL_NAME_set0_value(gn, type, s);
      sk_GENERAL_NAME_push(names, gn);
    }
    X509_add1_ext_i2d(x.get(), NID_subject_alt_name, names, 0, X509V3_ADD_APPEND);
    GENERAL_NAMES_free(names);
  };
  if (spec.split_san) {
    for (const auto& e : spec.sans) {
      add_names({e});
    }
  } else if (!spec.sans.empty()) {
    add_names(spec.sans);
  }
  if (X509_sign(x.get(), issuer_key != nullptr ? issuer_key : key, EVP_sha256()) <= 0) {
    throw std::runtime_error("X509_sign");
  }
  return x;
}

inline CertFiles write_pem(const fs::path& dir, const std::string& stem, X509* cert,
                           EVP_PKEY* key) {
  CertFiles files{dir / (stem + ".crt"), dir / (stem + ".key")};
  detail::BioPtr c(BIO_new_file(files.cert.c_str(), "w"));
  detail::BioPtr k(BIO_new_file(files.key.c_str(), "w"));
  if (!c || !k || PEM_write_bio_X509(c.get(), cert) != 1 ||
      PEM_write_bio_PrivateKey(k.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    throw std::runtime_error("cannot write " + stem);
  }
  return files;
}

// ---- the PKI ----

class Pki {
 public:
  // Server side (issued by ca): localhost (DNS localhost, IP 127.0.0.1 and ::1), the SNI
  // certificate reporting.example.test, and a wildcard *.wild.example.test.
  CertFiles ca, server, reporting, wildcard;
  // Client side (issued by client_ca): alice (CN alice, SAN email alice@example.test and DNS
  // Alice.Host.Example.Test), bob (CN bob, no SAN), two_cn (CN alice and CN mallory),
  // server_usage (CN alice but extendedKeyUsage serverAuth only), expired (CN alice, expired
  // yesterday).
  CertFiles client_ca, alice, bob, two_cn, server_usage, expired;
  // Another CA that nobody trusts, with a client "alice" and a server "localhost".
  CertFiles other_ca, other_client, other_server;
  // The server key encrypted with a pass phrase, and a certificate file with broken base64.
  fs::path encrypted_key, bad_pem;
  fs::path dir;

  static const Pki& get() {
    static Pki pki;
    return pki;
  }

  ~Pki() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }

 private:
  Pki() {
    std::string tmpl = (fs::temp_directory_path() / "pgwarden-tls-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) {
      throw std::runtime_error("mkdtemp");
    }
    dir = tmpl;
    ca = make_ca("ca", "pgwarden test server CA");
    server = issue(ca, "server", "localhost", "DNS:localhost,IP:127.0.0.1,IP:::1", false);
    reporting =
        issue(ca, "reporting", "reporting.example.test", "DNS:reporting.example.test", false);
    wildcard = issue(ca, "wildcard", "wildcard.example.test", "DNS:*.wild.example.test", false);
    client_ca = make_ca("client_ca", "pgwarden test client CA");
    alice = issue(client_ca, "alice", "alice",
                  "email:alice@example.test,DNS:Alice.Host.Example.Test", true);
    bob = issue(client_ca, "bob", "bob", "", true);
    two_cn = issue(client_ca, "two_cn", "", "", true, "0.CN = alice\n1.CN = mallory\n");
    server_usage = issue(client_ca, "server_usage", "alice", "", false);
    other_ca = make_ca("other_ca", "pgwarden untrusted CA");
    other_client = issue(other_ca, "other_client", "alice", "", true);
    other_server =
        issue(other_ca, "other_server", "localhost", "DNS:localhost,IP:127.0.0.1", false);

    // Expired: the command-line tool of OpenSSL 3.0 cannot backdate, so use the API.
    {
      X509Ptr issuer = load_cert(client_ca.cert);
      EvpPkeyPtr issuer_key = load_key(client_ca.key);
      EvpPkeyPtr key = new_ec_key();
      ApiCertSpec spec;
      spec.subject = {{NID_commonName, "alice"}};
      spec.not_before_days = -10;
      spec.not_after_days = -1;
      X509Ptr cert = build_cert(spec, key.get(), issuer.get(), issuer_key.get());
      expired = write_pem(dir, "expired", cert.get(), key.get());
    }

    encrypted_key = dir / "encrypted.key";
    run_openssl(dir, {"pkey", "-in", server.key.string(), "-aes256", "-passout",
                      "pass:not-the-point", "-out", encrypted_key.string()});
    bad_pem = dir / "bad.crt";
    write_text(bad_pem,
               "-----BEGIN CERTIFICATE-----\nthis is not base64 !!!\n"
               "-----END CERTIFICATE-----\n");
  }

  CertFiles make_ca(const std::string& stem, const std::string& cn) {
    CertFiles f{dir / (stem + ".crt"), dir / (stem + ".key")};
    run_openssl(dir, {"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
                      f.key.string()});
    const fs::path cnf = dir / (stem + ".cnf");
    write_text(cnf, "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = " + cn +
                        "\n[ext]\nbasicConstraints = critical,CA:TRUE\n"
                        "keyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n");
    run_openssl(dir, {"req", "-x509", "-new", "-key", f.key.string(), "-config", cnf.string(),
                      "-extensions", "ext", "-set_serial", random_serial(), "-days", "30",
                      "-sha256", "-out", f.cert.string()});
    return f;
  }

  // `dn` overrides the subject section body (for several CNs).
  CertFiles issue(const CertFiles& issuer, const std::string& stem, const std::string& cn,
                  const std::string& san, bool client, const std::string& dn = "") {
    CertFiles f{dir / (stem + ".crt"), dir / (stem + ".key")};
    run_openssl(dir, {"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
                      f.key.string()});
    const fs::path cnf = dir / (stem + ".cnf");
    const fs::path csr = dir / (stem + ".csr");
    std::string text = "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\n";
    text += dn.empty() ? "CN = " + cn + "\n" : dn;
    text += "[ext]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n";
    text += client ? "extendedKeyUsage = clientAuth\n" : "extendedKeyUsage = serverAuth\n";
    text += "authorityKeyIdentifier = keyid,issuer\n";
    if (!san.empty()) {
      text += "subjectAltName = " + san + "\n";
    }
    write_text(cnf, text);
    run_openssl(dir, {"req", "-new", "-key", f.key.string(), "-config", cnf.string(), "-out",
                      csr.string()});
    run_openssl(dir, {"x509", "-req", "-in", csr.string(), "-CA", issuer.cert.string(), "-CAkey",
                      issuer.key.string(), "-set_serial", random_serial(), "-days", "2", "-sha256",
                      "-extfile", cnf.string(), "-extensions", "ext", "-out", f.cert.string()});
    return f;
  }
};

// ---- handshakes ----

struct ClientOptions {
  std::optional<std::string> sni;
  std::vector<std::string> alpn;  // empty: no ALPN extension
  std::optional<CertFiles> cert;
  int max_version = 0;  // 0: no maximum
};

// A bare client context that does not verify (tests look at what the server presented).
inline SslPtr make_client(const ClientOptions& opts) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) {
    throw std::runtime_error("SSL_CTX_new");
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  if (opts.max_version != 0) {
    SSL_CTX_set_max_proto_version(ctx.get(), opts.max_version);
  }
  if (opts.cert) {
    X509Ptr cert = load_cert(opts.cert->cert);
    EvpPkeyPtr key = load_key(opts.cert->key);
    if (SSL_CTX_use_certificate(ctx.get(), cert.get()) != 1 ||
        SSL_CTX_use_PrivateKey(ctx.get(), key.get()) != 1) {
      throw std::runtime_error("client certificate");
    }
  }
  SslPtr ssl(SSL_new(ctx.get()));  // holds its own reference on ctx
  if (opts.sni) {
    SSL_set_tlsext_host_name(ssl.get(), opts.sni->c_str());
  }
  if (!opts.alpn.empty()) {
    std::string wire;
    for (const auto& p : opts.alpn) {
      wire += static_cast<char>(p.size());
      wire += p;
    }
    SSL_set_alpn_protos(ssl.get(), reinterpret_cast<const unsigned char*>(wire.data()),
                        static_cast<unsigned int>(wire.size()));
  }
  return ssl;
}

class Handshake {
 public:
  struct Side {
    SslPtr ssl;
    bool done = false;
    bool failed = false;
    unsigned long error = 0;  // first OpenSSL error of the failing call
  };

  Handshake(SslPtr client, SslPtr server) {
    client_.ssl = std::move(client);
    server_.ssl = std::move(server);
    BIO* c = nullptr;
    BIO* s = nullptr;
    if (BIO_new_bio_pair(&c, 0, &s, 0) != 1) {
      throw std::runtime_error("BIO_new_bio_pair");
    }
    SSL_set_bio(client_.ssl.get(), c, c);
    SSL_set_bio(server_.ssl.get(), s, s);
    SSL_set_connect_state(client_.ssl.get());
    SSL_set_accept_state(server_.ssl.get());
  }

  Handshake(SslPtr client, SSL_CTX* server_ctx)
      : Handshake(std::move(client), new_ssl(server_ctx)) {}

  static SslPtr new_ssl(SSL_CTX* ctx) {
    SslPtr ssl(SSL_new(ctx));
    if (!ssl) {
      throw std::runtime_error("SSL_new");
    }
    return ssl;
  }

  // Pumps both sides; then exchanges one byte each way when both finished, or lets the
  // client read the server's alert when only the server failed.
  Handshake& run() {
    for (int i = 0; i < 100 && !(settled(client_) && settled(server_)); ++i) {
      step(client_);
      step(server_);
    }
    if (client_.done && server_.done) {
      exchanged_ = transfer(server_, client_, 'S') && transfer(client_, server_, 'C');
    } else if (client_.done && server_.failed) {
      char b = 0;
      ERR_clear_error();
      const int r = SSL_read(client_.ssl.get(), &b, 1);
      if (r <= 0) {
        client_.done = false;
        client_.failed = true;
        client_.error = ERR_peek_error();
      }
      ERR_clear_error();
    }
    return *this;
  }

  bool ok() const { return client_.done && server_.done && exchanged_; }
  SSL* client() const { return client_.ssl.get(); }
  SSL* server() const { return server_.ssl.get(); }
  const Side& client_side() const { return client_; }
  const Side& server_side() const { return server_; }

 private:
  static bool settled(const Side& s) { return s.done || s.failed; }

  static void step(Side& s) {
    if (settled(s)) {
      return;
    }
    ERR_clear_error();
    const int r = SSL_do_handshake(s.ssl.get());
    if (r == 1) {
      s.done = true;
      return;
    }
    const int e = SSL_get_error(s.ssl.get(), r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      return;
    }
    s.failed = true;
    s.error = ERR_peek_error();
    ERR_clear_error();
  }

  static bool transfer(Side& from, Side& to, char byte) {
    ERR_clear_error();
    if (SSL_write(from.ssl.get(), &byte, 1) != 1) {
      from.failed = true;
      from.error = ERR_peek_error();
      ERR_clear_error();
      return false;
    }
    char got = 0;
    for (int i = 0; i < 10; ++i) {
      const int r = SSL_read(to.ssl.get(), &got, 1);
      if (r == 1) {
        return got == byte;
      }
      const int e = SSL_get_error(to.ssl.get(), r);
      if (e != SSL_ERROR_WANT_READ) {
        to.failed = true;
        to.error = ERR_peek_error();
        ERR_clear_error();
        return false;
      }
    }
    return false;
  }

  Side client_;
  Side server_;
  bool exchanged_ = false;
};

// The CN of the certificate the peer of `ssl` presented ("" when none).
inline std::string peer_cn(const SSL* ssl) {
  const X509* peer = SSL_get0_peer_certificate(ssl);
  if (peer == nullptr) {
    return "";
  }
  char buf[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, buf, sizeof buf);
  return buf;
}

}  // namespace pgwarden::tls::test
