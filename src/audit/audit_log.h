// The audit log sink: one JSON object per line (JSON Lines), appended to a file or written to
// standard output (SPEC section 7, `[audit] path`, "-" for stdout).
//
// Contract:
// - Every event is serialised as one line with invalid UTF-8 replaced by U+FFFD (a client
//   chooses the bytes of its user and database names; the log must stay valid JSON) and
//   control characters escaped, so a client cannot forge or split lines. The line goes to
//   the file with write(2) calls on an O_APPEND descriptor, with no user-space buffer: once
//   write() returns, the event is in the kernel.
// - write() is thread-safe (one mutex: lines never interleave) and never throws. A failed or
//   short write is counted in errors(); the event is lost. After a short write the next line
//   starts with a newline, so one torn event never corrupts the following one.
// - The file is created with mode 0600 (an existing file keeps its mode). Only regular files
//   and character devices are accepted: a FIFO put at the path could block every session's
//   audit write, so it is refused (opened non-blocking to check, without hanging).
// - reopen() is log rotation on SIGHUP: after the file was renamed, the path is opened again
//   (a new file) and writes go there. If opening fails, the old descriptor stays in use and
//   the reason is returned. For "-" it does nothing.
// Writing to a pipe on stdout whose reader has gone raises SIGPIPE; the server ignores it.
#pragma once

#include <atomic>
#include <cstdint>
#include <expected>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

namespace pgwarden::audit {

// The path that means standard output.
inline constexpr std::string_view kStdoutPath = "-";

class AuditLog {
 public:
  // Opens `path` for appending, creating it with mode 0600, or standard output for "-".
  // The error text names the path and the system error.
  static std::expected<std::unique_ptr<AuditLog>, std::string> open(
      const std::filesystem::path& path);

  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;
  ~AuditLog();

  // Appends `event` as one line. Never throws; failures are counted in errors().
  void write(const nlohmann::json& event) noexcept;

  // Opens the path again (rotation). On failure the previous file stays in use.
  std::expected<void, std::string> reopen();

  // Events lost to I/O (or serialisation) errors since open().
  std::uint64_t errors() const { return errors_.load(std::memory_order_relaxed); }

  const std::filesystem::path& path() const { return path_; }

 private:
  AuditLog(std::filesystem::path path, int fd, bool owned);

  const std::filesystem::path path_;
  std::mutex mutex_;
  int fd_;             // guarded by mutex_
  bool owned_;         // false for stdout, which is never closed
  bool torn_ = false;  // the last line was cut short; guarded by mutex_
  std::atomic<std::uint64_t> errors_{0};
};

}  // namespace pgwarden::audit
