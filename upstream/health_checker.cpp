#include "upstream/health_checker.hpp"

#include "common/log.hpp"
#include "upstream/upstream_pool.hpp"

namespace torii::upstream {

// One server's probe: an exchange of its own on the server's pool.
class HealthChecker::Probe final : public ExchangeSink {
 public:
  Probe(UpstreamGroup& group, size_t server, std::string head, StatusRanges expected,
        uint64_t timeout_ms)
      : group_(group),
        server_(server),
        head_(std::move(head)),
        expected_(expected),
        timeout_ms_(timeout_ms) {}
  Probe(const Probe&) = delete;
  Probe& operator=(const Probe&) = delete;
  ~Probe() = default;  // close() aborted any probe in flight

  void start() {
    ServerPool& pool = group_.server(server_);
    if (busy_ || !pool.can_open()) return;  // still probing, or the server is at its cap
    busy_ = true;
    status_ = 0;
    pool.open(this);
  }

  void abort() {
    if (conn_ != nullptr) conn_->abort();
    conn_ = nullptr;
    busy_ = false;
  }

  ExchangeTimeouts timeouts() const override {
    return {timeout_ms_, timeout_ms_, timeout_ms_, timeout_ms_};
  }
  void on_upstream_ready(UpstreamConnection& conn) override {
    conn_ = &conn;
    conn.send_request_head(head_, false);
    if (conn_ != nullptr) conn.request_complete();
  }
  void on_upstream_error(Error, bool) override { finish(false); }
  void on_response_head(const http::MessageHead& head) override { status_ = head.status; }
  void on_response_body(const BlockRef&, const std::vector<std::string_view>&) override {}
  void on_response_complete() override { finish(expected_.contains(status_)); }
  void on_response_aborted(Error) override { finish(false); }
  void on_response_batch_end() override {}
  void on_request_drained() override {}

 private:
  void finish(bool passed) {
    conn_ = nullptr;
    busy_ = false;
    group_.record_check(server_, passed);
  }

  UpstreamGroup& group_;
  size_t server_;
  std::string head_;
  StatusRanges expected_;
  uint64_t timeout_ms_;
  UpstreamConnection* conn_ = nullptr;
  bool busy_ = false;
  int status_ = 0;
};

HealthChecker::HealthChecker(uv_loop_t* loop, UpstreamGroup& group, const conf::HealthCheck& config,
                             uint64_t seed)
    : interval_ms_(static_cast<uint64_t>(config.interval.count())), rng_(seed) {
  std::string error;
  const StatusRanges expected =
      StatusRanges::parse(config.expected_statuses, error).value_or(StatusRanges::range(200, 399));
  const auto timeout_ms = static_cast<uint64_t>(config.timeout.count());
  for (size_t i = 0; i < group.server_count(); ++i) {
    const std::string& host = config.host.empty() ? group.server(i).authority() : config.host;
    std::string head = "GET " + config.path + " HTTP/1.1\r\nHost: " + host +
                       "\r\nUser-Agent: torii-health-check\r\n\r\n";
    probes_.push_back(std::make_unique<Probe>(group, i, std::move(head), expected, timeout_ms));
  }
  timer_.init(loop, this, [](void* self) { static_cast<HealthChecker*>(self)->on_timer(); });
  // The first round soon after start, spread over a tenth of the interval.
  timer_.arm(1 + rng_.below(interval_ms_ / 10 + 1));
}

HealthChecker::~HealthChecker() = default;

void HealthChecker::schedule() {
  const uint64_t jitter = interval_ms_ / 10;
  timer_.arm(interval_ms_ - jitter / 2 + (jitter == 0 ? 0 : rng_.below(jitter)));
}

void HealthChecker::on_timer() {
  if (closed_) return;
  for (auto& probe : probes_) probe->start();
  schedule();
}

void HealthChecker::close() {
  if (closed_) return;
  closed_ = true;
  for (auto& probe : probes_) probe->abort();
  timer_.close(nullptr);
}

}  // namespace torii::upstream
