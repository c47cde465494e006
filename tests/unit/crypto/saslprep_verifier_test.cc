// SASLprep and verifier derivation checked against PostgreSQL 15 itself: every verifier below
// was produced by `CREATE ROLE ... PASSWORD '<password>'` with password_encryption =
// 'scram-sha-256' on a SQL_ASCII database (so invalid UTF-8 could be stored), then read from
// pg_authid.rolpassword. Re-deriving each from the password with PostgreSQL's salt and
// iteration count must give PostgreSQL's StoredKey and ServerKey byte for byte.
#include <gtest/gtest.h>

#include <algorithm>
#include <span>
#include <string>
#include <vector>

#include "crypto/base64.h"
#include "crypto/saslprep.h"
#include "crypto/scram.h"
#include "wire/bytes.h"

namespace pgwarden::crypto {
namespace {

struct PgCase {
  const char* name;
  std::string_view password;
  std::string_view prepared;  // what SASLprep must produce (== password when raw is used)
  std::string_view verifier;  // from PostgreSQL 15.18
};

const PgCase kPgCases[] = {
    {"ascii", "pencil", "pencil",
     "SCRAM-SHA-256$4096:Kmawj+nVUlRhqjhzB/ZO8w==$uunzhiywyjgWnGsfk+j4MTB0p2WLiA+YiurXAUDlc4A=:"
     "CJCf9l3J/sKCEWgpAebIAT1xyGrxPv3qM9AAbVbdxWQ="},
    {"ascii_control_kept", "tab\tpass", "tab\tpass",
     "SCRAM-SHA-256$4096:WSJTyKJvqFJs22fjI7ddNg==$2+Eoq1844ifZAhppdfhbWyQVz/znTiOTydGmwD/ekkg=:"
     "k9/I0Jc67O5Zmvx51y7e3ImeDgI4TTTr9aukQNhKdAw="},
    {"nbsp_to_space",
     "a\xC2\xA0"
     "b",
     "a b",
     "SCRAM-SHA-256$4096:7UWwJp3pHYfn2NMjVw4JAg==$Xh/PY97hUWL6NGqAlriPrO6IGIDfI0G/1KOCWhRpJjg=:"
     "X0wX1ZKOaK2xZVaFayAyNhtEyi/YAAn+f30xxwG5xus="},
    {"ideographic_space", "\xE3\x80\x80pw", " pw",
     "SCRAM-SHA-256$4096:oo8dDH/0H8iYwFlrBf1sBA==$C9z4holTGCMe6q7o2fanPKBj8/O8b2nDHBjW6L4E+l0=:"
     "m103yxO2rf8vdApUCugZziEyBgrTT0xyUFkFpug88A8="},
    {"soft_hyphen_removed", "x\xC2\xADy", "xy",
     "SCRAM-SHA-256$4096:2yrA51Ll9yNebw0DmtRlVA==$uSra4FtJzmfwQeEKugkaq1CotTaSzZjTd+5Ao6+QwHM=:"
     "o42G4IJuP91/g7K1l5PG7Dx5G+BdNe6MIEQ2u4Tpzag="},
    {"nfkc_roman_numeral", "\xE2\x85\xA8", "IX",
     "SCRAM-SHA-256$4096:epwNKeAnRfjSvrttUSU2+Q==$okACAwAyAcO0hgPxnCgzzvM8U0cM08iPsK+4VpD2q5I=:"
     "m9yJvBtyQ8zVh2jHWuX6Xq4Ym+tE+CpdanCRbAGFnEQ="},
    {"nfkc_ligature", "\xEF\xAC\x81", "fi",
     "SCRAM-SHA-256$4096:HyjmlCdnoFmJH+HuHdUVZA==$IoPk+5TNY6xwL4QjgvUIfo1IOIh4vGHDzVMVntTYJnI=:"
     "NzP3KUgCONMWH4QsLv3gU2+wgr/Ey9Y2viBVGSwkoQE="},
    {"nfkc_combining", "e\xCC\x81", "\xC3\xA9",
     "SCRAM-SHA-256$4096:ziBqG+kLlWaqaeTEr7v0BQ==$gOF0dmc8JzxmpJ/DOae8w8cg3YXuckSkNPTjKFfeAUA=:"
     "5pKOMtLSQEQ9OqT64+ibUWdv560ow/LFuBLaDMJ8U1o="},
    {"bidi_ok", "\xD8\xA7\xD8\xA8", "\xD8\xA7\xD8\xA8",
     "SCRAM-SHA-256$4096:N8eVdrwXGm2OyYwZc665FQ==$Xle0ZeymHVPN5QwnF91M9EXOmfbbZVTz4NpJ5XTnb6g=:"
     "WuKVpcQaCUZ6VSlBE2rpIYfimgiIx2thdyprvIxnnDg="},
    // Each of the following fails SASLprep, so PostgreSQL (and we) use the raw bytes.
    {"prohibited_c1_control_raw",
     "a\xC2\x80"
     "b",
     "a\xC2\x80"
     "b",
     "SCRAM-SHA-256$4096:yboFnD2Ml0Qod6dcYeouxw==$9QjpOHFechdf0ziw2HMikSp0nCmGfu1HcC028Lh+nmw=:"
     "G8YgaZWVfSsszsyIKds7V4n85dK7bktrOFLHhY0vItQ="},
    {"prohibited_private_use_raw",
     "a\xEE\x80\x80"
     "b",
     "a\xEE\x80\x80"
     "b",
     "SCRAM-SHA-256$4096:PchjtiYpxRetCn7ztCw/pg==$nwBxsydJ0PU/88qhk2t+9uYHS/9ZwC1zTk6PryYW6G8=:"
     "J5DynCMtoveTGyy9fruhySNR7uYf2ZH6R+Gcq8i7HM4="},
    {"invalid_utf8_raw",
     "\xFF\xFE"
     "ab",
     "\xFF\xFE"
     "ab",
     "SCRAM-SHA-256$4096:l7NaDNN+M/xy+TA/ngreNw==$PgW3ZUPmwr0KHuc9BNyD05Npyoaj/TTIxRZeWn44NcY=:"
     "p4jQBVigBlCee7DOjlPv4Gfkr1FpiWW9AzgJL9Nyelg="},
    {"unassigned_in_3_2_raw", "\xC8\xA1", "\xC8\xA1",
     "SCRAM-SHA-256$4096:x70RvBwxSo/fDcJvOA/dSA==$00WRO0Rnhi2xsFamOhv7i3HIjrNZuytFegPpM2YBtkQ=:"
     "XskwQ18Kfqm84MD6thKPbfQxJ9rHpjBvDvnoVFASEQE="},
    {"maps_to_nothing_raw", "\xC2\xAD", "\xC2\xAD",
     "SCRAM-SHA-256$4096:05BY5Ykv2iJ5XTReQrJYiQ==$4K7wnMfoxaf0MipPuNbZEUMUSnsz/78MpBYCQRNvLyY=:"
     "n6fffTnjcQFkHfeWCR1iIAoOKN7KraXjOwP7GPrC+zo="},
    {"bidi_violation_raw", "\xD8\xA7 1", "\xD8\xA7 1",
     "SCRAM-SHA-256$4096:ssRZMkcR0Le+PHnetf+O7Q==$L5qcpMzUoMcheDs6QmHKHFcIkAhygSvJxjvoES5ffzM=:"
     "arrqNczAsxKseG96IManS6S4rI5RJSNNPioMvCkBEws="},
};

TEST(SaslPrep, MatchesPostgreSqlMapping) {
  for (const auto& c : kPgCases) {
    EXPECT_EQ(saslprep_or_raw(c.password), c.prepared) << c.name;
  }
}

TEST(SaslPrep, VerifiersMatchPostgreSql) {
  for (const auto& c : kPgCases) {
    auto pg = parse_scram_verifier(c.verifier);
    ASSERT_TRUE(pg.has_value()) << c.name;
    EXPECT_EQ(pg->to_string(), c.verifier) << c.name;
    auto ours = make_scram_verifier_with_salt(c.password, pg->salt, pg->iterations);
    ASSERT_TRUE(ours.has_value()) << c.name;
    EXPECT_TRUE(*ours == *pg) << c.name << ": " << ours->to_string();
  }
}

TEST(SaslPrep, EmptyAndAsciiUnchanged) {
  EXPECT_EQ(saslprep_or_raw(""), "");
  std::string all_ascii;
  for (int c = 1; c < 0x80; ++c) {
    all_ascii.push_back(static_cast<char>(c));
  }
  EXPECT_EQ(saslprep_or_raw(all_ascii), all_ascii);
}

TEST(SaslPrep, EmbeddedNulWithNonAsciiIsRaw) {
  std::string s("\xC2\xA0x\0y", 5);
  EXPECT_EQ(saslprep_or_raw(s), s);
}

TEST(Utf8, StrictValidation) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("abc"));
  EXPECT_TRUE(is_valid_utf8("\xC3\xA9"));
  EXPECT_TRUE(is_valid_utf8("\xE2\x82\xAC"));
  EXPECT_TRUE(is_valid_utf8("\xF0\x9F\x98\x80"));
  EXPECT_TRUE(is_valid_utf8("\xF4\x8F\xBF\xBF"));  // U+10FFFF
  EXPECT_TRUE(is_valid_utf8("\xED\x9F\xBF"));      // U+D7FF
  EXPECT_FALSE(is_valid_utf8(std::string_view("a\0b", 3)));
  EXPECT_FALSE(is_valid_utf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(is_valid_utf8("\xC1\xBF"));          // overlong
  EXPECT_FALSE(is_valid_utf8("\xE0\x80\xAF"));      // overlong 3-byte
  EXPECT_FALSE(is_valid_utf8("\xF0\x80\x80\xAF"));  // overlong 4-byte
  EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));      // surrogate U+D800
  EXPECT_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(is_valid_utf8("\xF5\x80\x80\x80"));
  EXPECT_FALSE(is_valid_utf8("\x80"));          // lone continuation
  EXPECT_FALSE(is_valid_utf8("\xC3"));          // truncated
  EXPECT_FALSE(is_valid_utf8("\xE2\x82"));      // truncated
  EXPECT_FALSE(is_valid_utf8("\xE2\x28\xA1"));  // bad continuation
  EXPECT_FALSE(is_valid_utf8("\xFF"));
}

TEST(ScramVerifier, MakeRoundTripsThroughText) {
  auto v = make_scram_verifier("correct horse battery staple");
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->iterations, kDefaultScramIterations);
  EXPECT_EQ(v->salt.size(), kScramSaltLength);
  auto text = v->to_string();
  EXPECT_TRUE(text.starts_with("SCRAM-SHA-256$4096:"));
  auto back = parse_scram_verifier(text);
  ASSERT_TRUE(back.has_value());
  EXPECT_TRUE(*back == *v);
  EXPECT_EQ(back->to_string(), text);
  // Re-deriving with the same salt gives the same keys; another salt gives other keys.
  auto again = make_scram_verifier_with_salt("correct horse battery staple", v->salt, 4096);
  ASSERT_TRUE(again.has_value());
  EXPECT_TRUE(*again == *v);
  auto other = make_scram_verifier("correct horse battery staple");
  ASSERT_TRUE(other.has_value());
  EXPECT_FALSE(*other == *v);  // random salt
}

TEST(ScramVerifier, Rfc7677Keys) {
  // RFC 7677 section 3: password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations.
  auto salt = base64_decode("W22ZaJ0SNY7soEsUEjb6gQ==");
  ASSERT_TRUE(salt.has_value());
  auto v = make_scram_verifier_with_salt("pencil", *salt, 4096);
  ASSERT_TRUE(v.has_value());
  // ClientKey/ServerKey recomputed here from the primitives, independently of the verifier.
  auto salted = scram_salted_password("pencil", *salt, 4096);
  ASSERT_TRUE(salted.has_value());
  auto client_key = hmac_sha256(*salted, wire::as_bytes("Client Key"));
  ASSERT_TRUE(client_key.has_value());
  auto stored = sha256(*client_key);
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(v->stored_key, *stored);
}

TEST(ScramVerifier, MakeRejectsBadIterations) {
  EXPECT_EQ(make_scram_verifier("pw", 0).error(), CryptoError::BadIterations);
  EXPECT_EQ(make_scram_verifier("pw", kMaxScramIterations + 1u).error(),
            CryptoError::BadIterations);
  EXPECT_TRUE(make_scram_verifier("pw", 1).has_value());
}

TEST(ScramVerifier, ParseRejectsMalformed) {
  const std::string good =
      "SCRAM-SHA-256$4096:Kmawj+nVUlRhqjhzB/ZO8w==$uunzhiywyjgWnGsfk+j4MTB0p2WLiA+YiurXAUDlc4A=:"
      "CJCf9l3J/sKCEWgpAebIAT1xyGrxPv3qM9AAbVbdxWQ=";
  ASSERT_TRUE(parse_scram_verifier(good).has_value());
  const std::string key = "uunzhiywyjgWnGsfk+j4MTB0p2WLiA+YiurXAUDlc4A=";
  const std::string bad[] = {
      "",
      "SCRAM-SHA-256",
      "SCRAM-SHA-256$",
      "scram-sha-256" + good.substr(13),
      "SCRAM-SHA-1" + good.substr(13),
      "md5cd9d88996c367caae18d642558831bca",
      "SCRAM-SHA-256$0:Kmawj+nVUlRhqjhzB/ZO8w==$" + key + ":" + key,
      "SCRAM-SHA-256$04096:Kmawj+nVUlRhqjhzB/ZO8w==$" + key + ":" + key,
      "SCRAM-SHA-256$-1:Kmawj+nVUlRhqjhzB/ZO8w==$" + key + ":" + key,
      "SCRAM-SHA-256$+4096:Kmawj+nVUlRhqjhzB/ZO8w==$" + key + ":" + key,
      "SCRAM-SHA-256$2147483648:Kmawj+nVUlRhqjhzB/ZO8w==$" + key + ":" + key,
      "SCRAM-SHA-256$99999999999:Kmawj+nVUlRhqjhzB/ZO8w==$" + key + ":" + key,
      "SCRAM-SHA-256$4096 :Kmawj+nVUlRhqjhzB/ZO8w==$" + key + ":" + key,
      "SCRAM-SHA-256$:Kmawj+nVUlRhqjhzB/ZO8w==$" + key + ":" + key,
      "SCRAM-SHA-256$4096:$" + key + ":" + key,                         // empty salt
      "SCRAM-SHA-256$4096:Kmawj+nVUlRhqjhzB/ZO8w=$" + key + ":" + key,  // bad base64
      "SCRAM-SHA-256$4096:Kmawj+nVUlRhqjhzB/ZO8w==$" + key,             // one key
      "SCRAM-SHA-256$4096:Kmawj+nVUlRhqjhzB/ZO8w==$" + key + ":",       // empty key
      "SCRAM-SHA-256$4096:Kmawj+nVUlRhqjhzB/ZO8w==$" + key + ":" + key + ":" + key,
      "SCRAM-SHA-256$4096:Kmawj+nVUlRhqjhzB/ZO8w==$" + key + ":" + key + "$",
      "SCRAM-SHA-256$4096:Kmawj+nVUlRhqjhzB/ZO8w==$" + key + ":" + key + " ",
      "SCRAM-SHA-256$4096:Kmawj+nVUlRhqjhzB/ZO8w==$" + key + ":" + key + "\n",
      "SCRAM-SHA-256$4096:Kmawj+nVUlRhqjhzB/ZO8w==$Kmawj+nVUlRhqjhzB/ZO8w==:" + key,  // 16 bytes
      "SCRAM-SHA-256$4096:Kmawj+nVUlRhqjhzB/ZO8w==:x$" + key + ":" + key,
      "SCRAM-SHA-256$4096$Kmawj+nVUlRhqjhzB/ZO8w==$" + key + ":" + key,
      "SCRAM-SHA-256$4096:" + std::string(344, 'A') + "$" + key + ":" + key,  // 258-byte salt
  };
  for (const auto& s : bad) {
    auto r = parse_scram_verifier(s);
    EXPECT_FALSE(r.has_value()) << s;
    if (!r) {
      EXPECT_EQ(r.error(), CryptoError::BadVerifier);
    }
  }
}

TEST(ScramVerifier, ParseAcceptsSaltBounds) {
  const std::string key = "uunzhiywyjgWnGsfk+j4MTB0p2WLiA+YiurXAUDlc4A=";
  EXPECT_TRUE(parse_scram_verifier("SCRAM-SHA-256$1:AA==$" + key + ":" + key).has_value());
  // 256 bytes = 344 characters with 2 padding characters.
  std::string salt256 = std::string(340, 'A') + "AA==";
  EXPECT_TRUE(parse_scram_verifier("SCRAM-SHA-256$2147483647:" + salt256 + "$" + key + ":" + key)
                  .has_value());
}

TEST(ScramVerifier, MockIsDeterministicAndPerUser) {
  std::vector<std::byte> secret(32, std::byte{7});
  auto a1 = mock_scram_verifier(secret, "alice", 4096);
  auto a2 = mock_scram_verifier(secret, "alice", 4096);
  auto b = mock_scram_verifier(secret, "bob", 4096);
  std::vector<std::byte> other_secret(32, std::byte{8});
  auto a3 = mock_scram_verifier(other_secret, "alice", 4096);
  ASSERT_TRUE(a1 && a2 && b && a3);
  EXPECT_TRUE(*a1 == *a2);
  EXPECT_FALSE(*a1 == *b);
  EXPECT_FALSE(*a1 == *a3);
  EXPECT_EQ(a1->salt.size(), kScramSaltLength);
  EXPECT_EQ(a1->iterations, 4096u);
  // Same shape as a real verifier.
  EXPECT_TRUE(parse_scram_verifier(a1->to_string()).has_value());
}

TEST(ScramVerifier, MockTakesTheSaltLengthAndRefusesShortKeys) {
  std::vector<std::byte> secret(kMinMockSecret, std::byte{7});
  for (const std::size_t n : {kMinScramSaltLength, std::size_t{16}, std::size_t{32},
                              std::size_t{33}, std::size_t{100}, kMaxScramSaltLength}) {
    auto v = mock_scram_verifier(secret, "alice", 4096, n);
    ASSERT_TRUE(v) << n;
    EXPECT_EQ(v->salt.size(), n);
    EXPECT_TRUE(parse_scram_verifier(v->to_string()).has_value()) << n;
    // A longer salt extends a shorter one; its later blocks are not copies of the first.
    auto shorter = mock_scram_verifier(secret, "alice", 4096, std::min<std::size_t>(n, 16));
    EXPECT_TRUE(std::equal(shorter->salt.begin(), shorter->salt.end(), v->salt.begin()));
  }
  auto long_salt = mock_scram_verifier(secret, "alice", 4096, 64);
  EXPECT_FALSE(std::equal(long_salt->salt.begin(), long_salt->salt.begin() + 32,
                          long_salt->salt.begin() + 32));
  EXPECT_FALSE(mock_scram_verifier(secret, "alice", 4096, 0));
  EXPECT_FALSE(mock_scram_verifier(secret, "alice", 4096, kMaxScramSaltLength + 1));
  // A short or missing key would make unknown users' salts predictable.
  EXPECT_FALSE(mock_scram_verifier(std::span(secret).first(kMinMockSecret - 1), "alice", 4096));
  EXPECT_FALSE(mock_scram_verifier({}, "alice", 4096));
}

TEST(ScramVerifier, ParseIterations) {
  EXPECT_EQ(parse_iterations("1", 10), 1u);
  EXPECT_EQ(parse_iterations("10", 10), 10u);
  EXPECT_FALSE(parse_iterations("11", 10));
  EXPECT_FALSE(parse_iterations("0", 10));
  EXPECT_FALSE(parse_iterations("", 10));
  EXPECT_FALSE(parse_iterations("01", 10));
  EXPECT_FALSE(parse_iterations("1a", 10));
  EXPECT_FALSE(parse_iterations("4294967296", 0xffffffff));
  EXPECT_EQ(parse_iterations("4294967295", 0xffffffff), 0xffffffffu);
  EXPECT_FALSE(parse_iterations("18446744073709551617", 0xffffffff));
}

}  // namespace
}  // namespace pgwarden::crypto
