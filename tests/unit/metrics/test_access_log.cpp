// Unit tests for metrics/access_log: line formats and the buffered writer.
#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <uv.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "conf/config.hpp"
#include "metrics/access_log.hpp"

namespace {

namespace fs = std::filesystem;
using torii::conf::AccessLogFormat;
using torii::metrics::AccessLog;
using torii::metrics::AccessRecord;
using torii::metrics::format_access_record;

// Large enough that only the flush timer writes in the tests that use it.
constexpr uint64_t kLargeBuffer = uint64_t{64} * 1024;
constexpr int64_t k2026_11_25_09_12_01 = 1795597921;  // date -u -d 2026-11-25T09:12:01Z +%s

AccessRecord full_record() {
  AccessRecord r;
  r.time_unix_us = k2026_11_25_09_12_01 * 1'000'000 + 123'456;
  r.request_id = "7f3a9c2e";
  r.client_ip = "203.0.113.7";
  r.method = "GET";
  r.target = "/api/items?id=42";
  r.protocol = "HTTP/1.1";
  r.host = "api.example.com";
  r.route = "api";
  r.status = 200;
  r.bytes_received = 312;
  r.bytes_sent = 1534;
  r.duration_us = 12'345;
  r.upstream_server = "10.0.0.5:8080";
  r.upstream_us = 11'002;
  r.cache_status = "HIT";
  r.user_agent = "curl/8.5.0";
  r.referer = "https://example.com/";
  return r;
}

// A record without any optional field (not forwarded, no cache, no referer, no route).
AccessRecord minimal_record() {
  AccessRecord r = full_record();
  r.route = "";
  r.upstream_server = "";
  r.upstream_us = -1;
  r.cache_status = "";
  r.referer = "";
  r.status = 404;
  r.duration_us = 7;
  return r;
}

std::string format(const AccessRecord& r, AccessLogFormat f) {
  std::string out;
  format_access_record(r, f, out);
  return out;
}

// True when s is valid UTF-8 (nlohmann refuses to serialize anything else).
bool valid_utf8(const std::string& s) {
  try {
    (void)nlohmann::json(s).dump();
    return true;
  } catch (const nlohmann::json::type_error&) {
    return false;
  }
}

struct TempDir {
  fs::path path;
  TempDir() {
    char name[] = "/tmp/torii_access_log_XXXXXX";
    REQUIRE(mkdtemp(name) != nullptr);
    path = name;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
};

// Lowers this process's file size limit (RLIMIT_FSIZE) for its lifetime;
// SIGXFSZ is ignored meanwhile so that writes past it fail with EFBIG.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(uint64_t bytes) {
    REQUIRE(getrlimit(RLIMIT_FSIZE, &saved_) == 0);
    REQUIRE((saved_.rlim_cur == RLIM_INFINITY || saved_.rlim_cur > bytes));
    saved_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    rlimit limited = saved_;
    limited.rlim_cur = bytes;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &limited) == 0);
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &saved_);
    std::signal(SIGXFSZ, saved_handler_);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  rlimit saved_{};
  void (*saved_handler_)(int) = SIG_DFL;
};

std::vector<std::string> read_lines(const fs::path& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Runs the loop for `ms` milliseconds (and until in-flight requests finish).
void run_loop_for(uv_loop_t* loop, uint64_t ms) {
  uv_timer_t stop;
  uv_timer_init(loop, &stop);
  uv_timer_start(
      &stop, [](uv_timer_t* t) { uv_close(reinterpret_cast<uv_handle_t*>(t), nullptr); }, ms, 0);
  uv_run(loop, UV_RUN_DEFAULT);
}

// The access log's timer is unref'd: this returns once its requests are done.
void run_until_idle(uv_loop_t* loop) { uv_run(loop, UV_RUN_DEFAULT); }

// Closes the log's handles and checks that nothing is left on the loop.
void close_and_check(AccessLog& log, uv_loop_t* loop) {
  log.close();
  run_until_idle(loop);
  CHECK(uv_loop_close(loop) == 0);
}

torii::conf::AccessLog file_config(const fs::path& path, uint64_t buffer_bytes,
                                   torii::conf::Millis flush_interval) {
  torii::conf::AccessLog c;
  c.path = path.string();
  c.format = AccessLogFormat::kJson;
  c.buffer_bytes = buffer_bytes;
  c.flush_interval = flush_interval;
  return c;
}

// Record i of a numbered series; the ids live in `storage`.
AccessRecord numbered_record(int i, std::string& storage) {
  storage = "req-" + std::to_string(i);
  AccessRecord r = full_record();
  r.request_id = storage;
  return r;
}

void append_numbered(AccessLog& log, int first, int count) {
  std::string id;
  for (int i = first; i < first + count; ++i) log.append(numbered_record(i, id));
}

// Every line is a JSON object with the expected request ids, in order.
void check_json_lines(const std::vector<std::string>& lines, int first) {
  for (size_t i = 0; i < lines.size(); ++i) {
    INFO("line " << i << ": " << lines[i]);
    CHECK(lines[i].rfind("{\"time\":\"", 0) == 0);
    CHECK(lines[i].back() == '}');
    const auto j = nlohmann::json::parse(lines[i]);
    CHECK(j["request_id"] == "req-" + std::to_string(first + static_cast<int>(i)));
  }
}

}  // namespace

TEST_SUITE("access_log format") {
  TEST_CASE("JSON: every field, in the fixed order") {
    CHECK(format(full_record(), AccessLogFormat::kJson) ==
          "{\"time\":\"2026-11-25T09:12:01.123456Z\",\"request_id\":\"7f3a9c2e\","
          "\"client\":\"203.0.113.7\",\"method\":\"GET\",\"target\":\"/api/items?id=42\","
          "\"protocol\":\"HTTP/1.1\",\"host\":\"api.example.com\",\"route\":\"api\","
          "\"status\":200,\"bytes_received\":312,\"bytes_sent\":1534,\"duration_ms\":12.345,"
          "\"upstream\":\"10.0.0.5:8080\",\"upstream_ms\":11.002,\"cache\":\"HIT\","
          "\"user_agent\":\"curl/8.5.0\",\"referer\":\"https://example.com/\"}\n");
  }

  TEST_CASE("JSON: optional fields are omitted") {
    CHECK(format(minimal_record(), AccessLogFormat::kJson) ==
          "{\"time\":\"2026-11-25T09:12:01.123456Z\",\"request_id\":\"7f3a9c2e\","
          "\"client\":\"203.0.113.7\",\"method\":\"GET\",\"target\":\"/api/items?id=42\","
          "\"protocol\":\"HTTP/1.1\",\"host\":\"api.example.com\",\"route\":\"\","
          "\"status\":404,\"bytes_received\":312,\"bytes_sent\":1534,\"duration_ms\":0.007,"
          "\"user_agent\":\"curl/8.5.0\"}\n");
  }

  TEST_CASE("JSON: upstream_ms 0 is shown; only -1 means not forwarded") {
    AccessRecord r = minimal_record();
    r.upstream_us = 0;
    CHECK(format(r, AccessLogFormat::kJson).find(",\"upstream_ms\":0.000,") != std::string::npos);
  }

  TEST_CASE("combined: every field") {
    CHECK(format(full_record(), AccessLogFormat::kCombined) ==
          "203.0.113.7 - - [25/Nov/2026:09:12:01 +0000] \"GET /api/items?id=42 HTTP/1.1\" 200 1534 "
          "\"https://example.com/\" \"curl/8.5.0\" rt=0.012 urt=0.011 rid=7f3a9c2e route=api "
          "cache=HIT\n");
  }

  TEST_CASE("combined: absent fields show as -") {
    AccessRecord r = minimal_record();
    r.user_agent = "";
    r.request_id = "";
    CHECK(format(r, AccessLogFormat::kCombined) ==
          "203.0.113.7 - - [25/Nov/2026:09:12:01 +0000] \"GET /api/items?id=42 HTTP/1.1\" 404 1534 "
          "\"-\" \"-\" rt=0.000 urt=- rid=- route=-\n");
    r.method = r.target = r.protocol = "";
    CHECK(format(r, AccessLogFormat::kCombined).find("] \"-\" 404 ") != std::string::npos);
  }

  TEST_CASE("JSON escaping: quotes, backslash, control chars, invalid UTF-8") {
    AccessRecord r = minimal_record();
    // valid: é (C3 A9), € (E2 82 AC), 😀 (F0 9F 98 80); invalid: lone FF, C3 cut short,
    // a UTF-16 surrogate (ED A0 80), an overlong '/' (E0 80 AF), a stray continuation (80).
    const std::string ua =
        "a\"b\\c\n\r\t\b\f\x01\x1f\x7f \xC3\xA9 \xFF \xC3\xE2\x82\xAC \xED\xA0\x80 \xE0\x80\xAF "
        "\xF0\x9F\x98\x80 \x80";
    r.user_agent = ua;
    const std::string line = format(r, AccessLogFormat::kJson);
    const std::string expected_ua =
        "\"user_agent\":\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f\\u007f \xC3\xA9 \\u00ff "
        "\\u00c3\xE2\x82\xAC \\u00ed\\u00a0\\u0080 \\u00e0\\u0080\\u00af \xF0\x9F\x98\x80 "
        "\\u0080\"}\n";
    CHECK(line.size() >= expected_ua.size());
    CHECK(line.substr(line.size() - expected_ua.size()) == expected_ua);
    CHECK(valid_utf8(line));
    const auto j = nlohmann::json::parse(line);
    CHECK(j["user_agent"].get<std::string>().rfind("a\"b\\c\n\r\t\b\f\x01\x1f\x7f \xC3\xA9 ", 0) ==
          0);
  }

  TEST_CASE("combined escaping: nginx-style \\xHH") {
    AccessRecord r = minimal_record();
    r.user_agent = "a\"b\\c\n\x01\x7f \xC3\xA9 \xFF";
    r.referer = "http://x/\"q";
    r.target = "/a b\r\n";
    r.request_id = "id with space";
    r.route = "r\"1";
    const std::string line = format(r, AccessLogFormat::kCombined);
    CHECK(line ==
          "203.0.113.7 - - [25/Nov/2026:09:12:01 +0000] \"GET /a b\\x0D\\x0A HTTP/1.1\" 404 1534 "
          "\"http://x/\\x22q\" \"a\\x22b\\x5Cc\\x0A\\x01\\x7F \xC3\xA9 \\xFF\" rt=0.000 urt=- "
          "rid=id\\x20with\\x20space route=r\\x221\n");
    CHECK(valid_utf8(line));
  }

  TEST_CASE("any bytes give one valid-UTF-8 line (JSON lines parse)") {
    std::mt19937 rng(12345);
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_int_distribution<int> length(0, 40);
    for (int round = 0; round < 2000; ++round) {
      std::string field[4];
      for (auto& f : field) {
        const int n = length(rng);
        for (int i = 0; i < n; ++i) f.push_back(static_cast<char>(byte(rng)));
      }
      AccessRecord r = full_record();
      r.target = field[0];
      r.user_agent = field[1];
      r.referer = field[2];
      r.request_id = field[3];
      for (auto f : {AccessLogFormat::kJson, AccessLogFormat::kCombined}) {
        const std::string line = format(r, f);
        INFO("round " << round << " line " << line);
        REQUIRE(!line.empty());
        CHECK(line.find('\n') == line.size() - 1);
        CHECK(valid_utf8(line));
        if (f == AccessLogFormat::kJson) {
          const auto j = nlohmann::json::parse(line);         // throws on bad JSON
          CHECK(j.size() == (field[2].empty() ? 16u : 17u));  // referer omitted when empty
        }
      }
    }
  }

  // Mostly plain text with a few bytes that need escaping at every offset:
  // the 8-bytes-at-a-time fast path must hand each of them to the escaper.
  TEST_CASE("escaping round trips at every position (word-at-a-time scan)") {
    std::mt19937 rng(777);
    const std::string specials[] = {"\"", "\\", "\n", "\x01", "\x7f", " ", "\xC3\xA9"};
    std::uniform_int_distribution<int> letter('a', 'z');
    std::uniform_int_distribution<int> pick(0, 6);
    std::uniform_int_distribution<int> length(0, 70);
    auto clf_unescape = [](const std::string& e) {
      std::string out;
      for (size_t i = 0; i < e.size(); ++i) {
        if (e[i] == '\\' && i + 3 < e.size() && e[i + 1] == 'x') {
          out.push_back(static_cast<char>(std::stoi(e.substr(i + 2, 2), nullptr, 16)));
          i += 3;
        } else {
          out.push_back(e[i]);
        }
      }
      return out;
    };
    for (int round = 0; round < 3000; ++round) {
      std::string value;
      const int n = length(rng);
      for (int i = 0; i < n; ++i) value.push_back(static_cast<char>(letter(rng)));
      const int at = n == 0 ? 0 : static_cast<int>(rng() % static_cast<unsigned>(n + 1));
      value.insert(static_cast<size_t>(at), specials[pick(rng)]);
      AccessRecord r = minimal_record();
      r.user_agent = value;
      r.request_id = value;
      INFO("round " << round << " value " << value);
      const auto j = nlohmann::json::parse(format(r, AccessLogFormat::kJson));
      CHECK(j["user_agent"].get<std::string>() == value);
      const std::string clf = format(r, AccessLogFormat::kCombined);
      const size_t rid = clf.find(" rid=");
      REQUIRE(rid != std::string::npos);
      const std::string rid_field = clf.substr(rid + 5, clf.find(" route=") - rid - 5);
      CHECK(rid_field.find(' ') == std::string::npos);  // spaces escaped in unquoted fields
      CHECK(clf_unescape(rid_field) == value);
    }
  }

  TEST_CASE("time: microseconds, epoch, before 1970, second changes") {
    AccessRecord r = minimal_record();
    auto time_of = [&](int64_t us) {
      r.time_unix_us = us;
      const std::string line = format(r, AccessLogFormat::kJson);
      return line.substr(9, line.find('"', 9) - 9);
    };
    CHECK(time_of(0) == "1970-01-01T00:00:00.000000Z");
    CHECK(time_of(-1) == "1969-12-31T23:59:59.999999Z");
    CHECK(time_of(k2026_11_25_09_12_01 * 1'000'000 + 5) == "2026-11-25T09:12:01.000005Z");
    // The cached seconds text must follow the record, not stick to the last one.
    CHECK(time_of((k2026_11_25_09_12_01 + 1) * 1'000'000) == "2026-11-25T09:12:02.000000Z");
    CHECK(time_of(951'782'400'000'000) == "2000-02-29T00:00:00.000000Z");

    r.time_unix_us = 951'782'400'000'000;
    CHECK(format(r, AccessLogFormat::kCombined).find("[29/Feb/2000:00:00:00 +0000]") !=
          std::string::npos);
    r.time_unix_us = 0;
    CHECK(format(r, AccessLogFormat::kCombined).find("[01/Jan/1970:00:00:00 +0000]") !=
          std::string::npos);
  }

  TEST_CASE("appends to out without touching what is there") {
    std::string out = "previous\n";
    format_access_record(full_record(), AccessLogFormat::kJson, out);
    format_access_record(full_record(), AccessLogFormat::kCombined, out);
    CHECK(out == "previous\n" + format(full_record(), AccessLogFormat::kJson) +
                     format(full_record(), AccessLogFormat::kCombined));
  }
}

TEST_SUITE("access_log writer") {
  TEST_CASE("\"off\": disabled, append is a no-op") {
    uv_loop_t loop;
    REQUIRE(uv_loop_init(&loop) == 0);
    AccessLog log(&loop, torii::conf::AccessLog{});
    CHECK(log.open() == 0);
    CHECK_FALSE(log.enabled());
    log.append(full_record());
    log.flush_sync();
    CHECK(log.dropped() == 0);
    close_and_check(log, &loop);
  }

  TEST_CASE("stdout/stderr: no file to open; reopen() is a no-op") {
    uv_loop_t loop;
    REQUIRE(uv_loop_init(&loop) == 0);
    torii::conf::AccessLog config;
    config.path = "stderr";
    AccessLog log(&loop, config);
    CHECK(log.open() == 0);
    CHECK(log.enabled());
    log.reopen();
    run_until_idle(&loop);
    CHECK(log.last_error() == 0);
    close_and_check(log, &loop);
  }

  TEST_CASE("an unopenable path: open() fails, the log stays disabled") {
    TempDir dir;
    uv_loop_t loop;
    REQUIRE(uv_loop_init(&loop) == 0);
    AccessLog log(&loop, file_config(dir.path / "missing" / "access.log", kLargeBuffer,
                                     torii::conf::Millis(10)));
    CHECK(log.open() == UV_ENOENT);
    CHECK_FALSE(log.enabled());
    CHECK(log.last_error() == UV_ENOENT);
    log.append(full_record());
    close_and_check(log, &loop);
  }

  TEST_CASE("the flush timer writes buffered lines") {
    TempDir dir;
    const fs::path path = dir.path / "access.log";
    uv_loop_t loop;
    REQUIRE(uv_loop_init(&loop) == 0);
    AccessLog log(&loop, file_config(path, kLargeBuffer, torii::conf::Millis(10)));
    REQUIRE(log.open() == 0);
    CHECK(log.enabled());
    CHECK(fs::exists(path));
    // 0644 (narrowed by the umask): never writable by others, never executable.
    CHECK((fs::status(path).permissions() & (fs::perms::group_write | fs::perms::others_write |
                                             fs::perms::owner_exec)) == fs::perms::none);

    constexpr int kLines = 100;  // well under buffer_bytes: only the timer flushes them
    append_numbered(log, 0, kLines);
    CHECK(read_lines(path).empty());
    run_loop_for(&loop, 60);
    const auto lines = read_lines(path);
    CHECK(lines.size() == kLines);
    check_json_lines(lines, 0);
    CHECK(log.dropped() == 0);
    CHECK(log.last_error() == 0);
    close_and_check(log, &loop);
  }

  TEST_CASE("buffer_bytes triggers a write before the timer") {
    TempDir dir;
    const fs::path path = dir.path / "access.log";
    uv_loop_t loop;
    REQUIRE(uv_loop_init(&loop) == 0);
    constexpr uint64_t kBuffer = 1024;
    AccessLog log(&loop, file_config(path, kBuffer, torii::conf::Millis(3'600'000)));
    REQUIRE(log.open() == 0);

    std::string id;
    const size_t line_size = format(numbered_record(0, id), AccessLogFormat::kJson).size();
    const int lines_to_fill = static_cast<int>((kBuffer + line_size - 1) / line_size);
    REQUIRE(lines_to_fill > 1);

    append_numbered(log, 0, lines_to_fill - 1);
    run_until_idle(&loop);  // nothing to do: below the threshold and the timer is far away
    CHECK(read_lines(path).empty());

    append_numbered(log, lines_to_fill - 1, 1);  // crosses buffer_bytes: a write starts
    run_until_idle(&loop);                       // returns once that write is done
    auto lines = read_lines(path);
    CHECK(lines.size() == static_cast<size_t>(lines_to_fill));
    check_json_lines(lines, 0);

    append_numbered(log, lines_to_fill, 1);  // stays buffered ...
    run_until_idle(&loop);
    CHECK(read_lines(path).size() == static_cast<size_t>(lines_to_fill));
    log.close();
    run_until_idle(&loop);
    log.flush_sync();  // ... until the exit path writes it, after the loop
    lines = read_lines(path);
    CHECK(lines.size() == static_cast<size_t>(lines_to_fill + 1));
    check_json_lines(lines, 0);
    CHECK(uv_loop_close(&loop) == 0);
  }

  TEST_CASE("a stalled write: the backlog is bounded and drops are counted") {
    TempDir dir;
    const fs::path path = dir.path / "access.log";
    uv_loop_t loop;
    REQUIRE(uv_loop_init(&loop) == 0);
    constexpr uint64_t kBuffer = 1024;
    AccessLog log(&loop, file_config(path, kBuffer, torii::conf::Millis(3'600'000)));
    REQUIRE(log.open() == 0);

    // Without running the loop the first write never completes (as if the disk
    // stalled), so lines pile up behind it until 16 x buffer_bytes.
    constexpr int kLines = 300;
    append_numbered(log, 0, kLines);
    CHECK(log.dropped() > 0);
    std::string id;
    const size_t line_size = format(numbered_record(0, id), AccessLogFormat::kJson).size();
    CHECK(log.dropped() >= kLines - (17 * kBuffer) / line_size - 2);

    run_until_idle(&loop);  // the stall ends: the write completes, the backlog follows
    const auto lines = read_lines(path);
    CHECK(lines.size() + log.dropped() == kLines);
    check_json_lines(lines, 0);  // the kept lines are the first ones, in order
    CHECK(log.last_error() == 0);
    close_and_check(log, &loop);
  }

  TEST_CASE("flush_sync after the loop ended writes what is buffered") {
    TempDir dir;
    const fs::path path = dir.path / "access.log";
    uv_loop_t loop;
    REQUIRE(uv_loop_init(&loop) == 0);
    auto config = file_config(path, kLargeBuffer, torii::conf::Millis(3'600'000));
    config.format = AccessLogFormat::kCombined;
    AccessLog log(&loop, config);
    REQUIRE(log.open() == 0);
    append_numbered(log, 0, 3);
    close_and_check(log, &loop);
    log.append(full_record());  // after close(): buffered, no asynchronous write
    log.flush_sync();
    const auto lines = read_lines(path);
    REQUIRE(lines.size() == 4);
    CHECK(lines[0].find(" rid=req-0 route=api") != std::string::npos);
    CHECK(lines[3] + "\n" == format(full_record(), AccessLogFormat::kCombined));
  }

  TEST_CASE("reopen: after a rename new lines go to a new file at the path") {
    TempDir dir;
    const fs::path path = dir.path / "access.log";
    const fs::path rotated = dir.path / "access.log.1";
    uv_loop_t loop;
    REQUIRE(uv_loop_init(&loop) == 0);
    AccessLog log(&loop, file_config(path, kLargeBuffer, torii::conf::Millis(5)));
    REQUIRE(log.open() == 0);

    append_numbered(log, 0, 5);
    run_loop_for(&loop, 30);
    REQUIRE(read_lines(path).size() == 5);

    fs::rename(path, rotated);  // what logrotate does, then it sends SIGUSR1
    log.reopen();
    run_loop_for(&loop, 30);  // the open completes, the old fd is closed
    CHECK(log.last_error() == 0);
    CHECK(fs::exists(path));

    append_numbered(log, 5, 3);
    run_loop_for(&loop, 30);
    const auto old_lines = read_lines(rotated);
    const auto new_lines = read_lines(path);
    CHECK(old_lines.size() == 5);
    CHECK(new_lines.size() == 3);
    check_json_lines(old_lines, 0);
    check_json_lines(new_lines, 5);
    close_and_check(log, &loop);
  }

  TEST_CASE("reopen during an in-flight write, twice in a row") {
    TempDir dir;
    const fs::path path = dir.path / "access.log";
    const fs::path rotated = dir.path / "access.log.1";
    uv_loop_t loop;
    REQUIRE(uv_loop_init(&loop) == 0);
    constexpr uint64_t kBuffer = 1024;
    AccessLog log(&loop, file_config(path, kBuffer, torii::conf::Millis(3'600'000)));
    REQUIRE(log.open() == 0);

    std::string id;
    const size_t line_size = format(numbered_record(0, id), AccessLogFormat::kJson).size();
    const int lines_to_fill = static_cast<int>((kBuffer + line_size - 1) / line_size);
    append_numbered(log, 0, lines_to_fill);  // a write is now in flight to the old fd
    fs::rename(path, rotated);
    log.reopen();
    log.reopen();           // served after the first open/close cycle
    run_until_idle(&loop);  // write, open, close, open, close
    CHECK(log.last_error() == 0);

    append_numbered(log, lines_to_fill, lines_to_fill);
    run_until_idle(&loop);
    const auto old_lines = read_lines(rotated);
    const auto new_lines = read_lines(path);
    CHECK(old_lines.size() == static_cast<size_t>(lines_to_fill));
    CHECK(new_lines.size() == static_cast<size_t>(lines_to_fill));
    check_json_lines(old_lines, 0);
    check_json_lines(new_lines, lines_to_fill);
    close_and_check(log, &loop);
  }

  TEST_CASE("reopen that fails keeps the old file and reports the error") {
    TempDir dir;
    const fs::path path = dir.path / "logs" / "access.log";
    fs::create_directory(dir.path / "logs");
    uv_loop_t loop;
    REQUIRE(uv_loop_init(&loop) == 0);
    AccessLog log(&loop, file_config(path, kLargeBuffer, torii::conf::Millis(5)));
    REQUIRE(log.open() == 0);

    append_numbered(log, 0, 2);
    fs::rename(dir.path / "logs", dir.path / "moved");  // the path no longer resolves
    log.reopen();
    run_loop_for(&loop, 30);
    CHECK(log.last_error() == UV_ENOENT);

    append_numbered(log, 2, 2);
    run_loop_for(&loop, 30);
    const auto lines = read_lines(dir.path / "moved" / "access.log");
    CHECK(lines.size() == 4);
    check_json_lines(lines, 0);
    CHECK(log.dropped() == 0);
    close_and_check(log, &loop);
  }

  TEST_CASE("a short write is continued; a failed write counts its lines as dropped") {
    TempDir dir;
    const fs::path path = dir.path / "access.log";
    uv_loop_t loop;
    REQUIRE(uv_loop_init(&loop) == 0);
    constexpr uint64_t kBuffer = 4096;
    AccessLog log(&loop, file_config(path, kBuffer, torii::conf::Millis(3'600'000)));
    REQUIRE(log.open() == 0);
    std::string id;
    const size_t line_size = format(numbered_record(0, id), AccessLogFormat::kJson).size();
    const int lines_to_fill = static_cast<int>((kBuffer + line_size - 1) / line_size);

    // A file size limit makes write(2) stop short at the limit; writing the
    // rest then fails with EFBIG.
    constexpr uint64_t kFileLimit = 1000;
    {
      const FileSizeLimit limit(kFileLimit);
      SUBCASE("asynchronous write") {
        append_numbered(log, 0, lines_to_fill);  // crosses buffer_bytes: a write starts
        run_until_idle(&loop);
      }
      SUBCASE("flush_sync") {
        append_numbered(log, 0, lines_to_fill - 1);
        log.flush_sync();
        append_numbered(log, lines_to_fill - 1, 1);  // not logged either: counted as dropped
        log.flush_sync();
      }
    }
    CHECK(fs::file_size(path) == kFileLimit);
    const auto lines = read_lines(path);  // the last one is cut at the limit
    REQUIRE(!lines.empty());
    const uint64_t complete_lines = lines.size() - 1;
    CHECK(complete_lines == kFileLimit / line_size);
    CHECK(log.last_error() == UV_EFBIG);
    CHECK(complete_lines + log.dropped() == static_cast<uint64_t>(lines_to_fill));
    close_and_check(log, &loop);
  }
}
