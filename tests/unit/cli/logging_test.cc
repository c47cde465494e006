// pgwarden's own log (server/logging.h): no client-supplied text can break a log line, in
// either format (L4: an unauthenticated client's user name "x\nFAKE LINE" forged a line).
#include <gtest/gtest.h>
#include <spdlog/sinks/ansicolor_sink.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "server/logging.h"

namespace pgwarden::server {
namespace {

TEST(EscapeLogText, PrintableUtf8IsKept) {
  EXPECT_EQ(escape_log_text(""), "");
  EXPECT_EQ(escape_log_text("alice \"quoted\" back\\slash ~"), "alice \"quoted\" back\\slash ~");
  // 2-, 3- and 4-byte sequences: ä, €, 𝄞.
  EXPECT_EQ(escape_log_text("p\xC3\xA4ss \xE2\x82\xAC \xF0\x9D\x84\x9E"),
            "p\xC3\xA4ss \xE2\x82\xAC \xF0\x9D\x84\x9E");
}

TEST(EscapeLogText, ControlCharactersAreEscaped) {
  EXPECT_EQ(escape_log_text("a\nFAKE LINE"), "a\\nFAKE LINE");
  EXPECT_EQ(escape_log_text("a\r\nb\tc"), "a\\r\\nb\\tc");
  EXPECT_EQ(escape_log_text(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(escape_log_text("\x1b[31mred\x7f"), "\\x1b[31mred\\x7f");
  EXPECT_EQ(escape_log_text("\x01\x1f"), "\\x01\\x1f");
  // C1 controls (NEL is a line break to some viewers), line and paragraph separators,
  // bidirectional overrides and isolates.
  EXPECT_EQ(escape_log_text("a\xC2\x85-"), "a\\xc2\\x85-");
  EXPECT_EQ(escape_log_text("\xC2\x9F\xC2\xA0"), "\\xc2\\x9f\xC2\xA0");  // U+00A0 is printable
  EXPECT_EQ(escape_log_text("\xE2\x80\xA8\xE2\x80\xA9"), "\\xe2\\x80\\xa8\\xe2\\x80\\xa9");
  EXPECT_EQ(escape_log_text("\xE2\x80\xAE-evil"), "\\xe2\\x80\\xae-evil");
  EXPECT_EQ(escape_log_text("\xE2\x81\xA6\xE2\x81\xA9"), "\\xe2\\x81\\xa6\\xe2\\x81\\xa9");
}

TEST(EscapeLogText, InvalidUtf8IsEscapedBytewise) {
  EXPECT_EQ(escape_log_text("\xFF\xFE"), "\\xff\\xfe");
  EXPECT_EQ(escape_log_text("\x80x"), "\\x80x");                           // lone continuation
  EXPECT_EQ(escape_log_text("\xC3"), "\\xc3");                             // truncated
  EXPECT_EQ(escape_log_text("\xC3\n"), "\\xc3\\n");                        // truncated by a newline
  EXPECT_EQ(escape_log_text("\xC0\x8A"), "\\xc0\\x8a");                    // overlong "\n"
  EXPECT_EQ(escape_log_text("\xE0\x80\x8A"), "\\xe0\\x80\\x8a");           // overlong "\n"
  EXPECT_EQ(escape_log_text("\xED\xA0\x80"), "\\xed\\xa0\\x80");           // surrogate
  EXPECT_EQ(escape_log_text("\xF4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // above U+10FFFF
  EXPECT_EQ(escape_log_text("\xF5\x80"), "\\xf5\\x80");
}

TEST(EscapeLogText, OutputIsAlwaysPrintable) {
  // Every byte value, alone and after each lead byte: no control byte survives.
  for (int a = 0; a < 256; ++a) {
    for (int b = 0; b < 256; b += (a >= 0xc0 ? 1 : 255)) {
      std::string in;
      in.push_back(static_cast<char>(a));
      in.push_back(static_cast<char>(b));
      for (const char c : escape_log_text(in)) {
        const auto u = static_cast<unsigned char>(c);
        ASSERT_FALSE(u < 0x20 || u == 0x7f) << a << " " << b;
      }
    }
  }
}

// Routes the default logger into a string for the duration of a test.
class CapturedLog {
 public:
  CapturedLog() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("pgwarden-test", sink));
  }
  ~CapturedLog() {
    spdlog::drop("pgwarden-test");
    spdlog::set_default_logger(previous_);
    configure_logging(config::LogLevel::Info, config::LogFormat::Text);
  }
  CapturedLog(const CapturedLog&) = delete;
  CapturedLog& operator=(const CapturedLog&) = delete;

  std::vector<std::string> lines() const {
    std::vector<std::string> out;
    std::istringstream s(out_.str());
    for (std::string line; std::getline(s, line);) {
      out.push_back(line);
    }
    return out;
  }

 private:
  std::shared_ptr<spdlog::logger> previous_;
  std::ostringstream out_;
};

// Every field a client controls, as the session logs them.
void log_client_fields() {
  const std::string forged = "x\nFAKE LINE\r\nFAKE AGAIN\xC2\x85 FAKE NEL";
  spdlog::info("session 1 from 127.0.0.1: refused (user \"{}\", database \"{}\")", forged, forged);
  spdlog::info("application_name \"{}\", server name \"{}\"", forged, forged);
  spdlog::warn("client certificate subject {}: {}", forged, forged);
}

TEST(Logging, TextFormatKeepsEveryMessageOnOneLine) {
  CapturedLog log;
  configure_logging(config::LogLevel::Info, config::LogFormat::Text);
  log_client_fields();
  const auto lines = log.lines();
  ASSERT_EQ(lines.size(), 3u);
  for (const auto& line : lines) {
    EXPECT_FALSE(line.starts_with("FAKE")) << line;
    EXPECT_NE(line.find("x\\nFAKE LINE\\r\\nFAKE AGAIN\\xc2\\x85 FAKE NEL"), std::string::npos)
        << line;
    EXPECT_EQ(line.find('\r'), std::string::npos) << line;
    EXPECT_TRUE(line.starts_with("[")) << line;  // spdlog's own prefix is kept
  }
}

TEST(Logging, TextFormatKeepsTheLevelColours) {
  // pgwarden's logger is a colour sink (cli/main.cc): it colours the range the pattern marks
  // on the message it formats, which the escaping formatter must hand back.
  std::FILE* file = std::tmpfile();
  ASSERT_NE(file, nullptr);
  auto previous = spdlog::default_logger();
  auto sink = std::make_shared<spdlog::sinks::ansicolor_sink<spdlog::details::console_nullmutex>>(
      file, spdlog::color_mode::always);
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("pgwarden-colour-test", sink));
  configure_logging(config::LogLevel::Info, config::LogFormat::Text);
  spdlog::info("user \"{}\"", "x\nFAKE");
  spdlog::default_logger()->flush();
  spdlog::drop("pgwarden-colour-test");
  spdlog::set_default_logger(previous);
  std::rewind(file);
  std::string text;
  for (int c = std::fgetc(file); c != EOF; c = std::fgetc(file)) {
    text.push_back(static_cast<char>(c));
  }
  std::fclose(file);
  EXPECT_NE(text.find("\033[32minfo\033[m"), std::string::npos) << text;
  EXPECT_NE(text.find("user \"x\\nFAKE\""), std::string::npos) << text;
}

TEST(Logging, JsonFormatEscapesAsJsonStrings) {
  CapturedLog log;
  configure_logging(config::LogLevel::Info, config::LogFormat::Json);
  log_client_fields();
  spdlog::info("invalid UTF-8 \"{}\"", "\xFF\n");
  const auto lines = log.lines();
  ASSERT_EQ(lines.size(), 4u);
  for (const auto& line : lines) {
    for (const char c : line) {
      const auto u = static_cast<unsigned char>(c);
      ASSERT_FALSE(u < 0x20) << line;
    }
    const auto j = nlohmann::json::parse(line);
    EXPECT_TRUE(j.contains("msg")) << line;
  }
  EXPECT_NE(nlohmann::json::parse(lines[0])["msg"].get<std::string>().find("x\nFAKE LINE\r\n"),
            std::string::npos);
}

}  // namespace
}  // namespace pgwarden::server
