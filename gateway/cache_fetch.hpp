// A request to the origin that no client waits on: pre-warming, refreshing
// a pre-warmed entry ahead of expiry, and stale-while-revalidate. It stores
// what it gets (or, given a stale entry with validators, asks for a 304
// and refreshes that entry) and reports success to its owner.
#pragma once

#include <functional>
#include <string>

#include "cache/stored_response.hpp"
#include "common/http1_parser.hpp"
#include "gateway/response_capture.hpp"
#include "upstream/exchange_sink.hpp"
#include "upstream/upstream_pool.hpp"

namespace torii::gateway {

class WorkerCache;

class CacheFetch final : public upstream::ExchangeSink {
 public:
  enum class Kind : uint8_t { kPrewarm, kRefresh, kRevalidate };  // metric label order
  using Done = std::function<void(CacheFetch& fetch, bool ok)>;

  // `extra_lines`: request header lines to send ("Name: value\r\n"...),
  // e.g. the Vary'd headers of the client whose request triggered it.
  // `stale`: the entry being refreshed (its validators are sent), or null.
  // `scheme`: "http" or "https", the clients' scheme (part of the cache key).
  CacheFetch(WorkerCache& cache, size_t route, std::string_view scheme, std::string host,
             std::string target, const std::string& extra_lines, cache::ResponsePtr stale,
             Kind kind, bool pinned, Done done);
  CacheFetch(const CacheFetch&) = delete;
  CacheFetch& operator=(const CacheFetch&) = delete;
  ~CacheFetch() = default;

  // The cache key a pre-warm fetch of `target` with Host `host` stores under.
  static std::string key_for(const conf::Config& config, size_t route, std::string_view scheme,
                             const std::string& host, const std::string& target);

  void start();
  // Worker shutdown: drops the exchange without reporting.
  void cancel();
  bool finished() const { return finished_; }
  const std::string& key() const { return key_; }
  // What the fetch stored (null before success).
  const cache::ResponsePtr& result() const { return result_; }

  void on_upstream_ready(upstream::UpstreamConnection& conn) override;
  void on_upstream_error(Error error, bool retryable) override;
  void on_response_head(const http::MessageHead& head) override;
  void on_response_body(const BlockRef& block, const std::vector<std::string_view>& data) override;
  void on_response_complete() override;
  void on_response_aborted(Error error) override;
  void on_response_batch_end() override {}
  void on_request_drained() override {}

 private:
  void finish(bool ok, std::string_view why);

  WorkerCache& cache_;
  size_t route_;
  std::string_view scheme_;  // a literal ("http"/"https")
  Kind kind_;
  bool pinned_;
  Done done_;
  cache::ResponsePtr stale_;
  std::string request_;  // the head sent upstream
  http::Http1Parser parsed_request_;
  std::string key_;
  std::string host_;
  std::string target_;
  upstream::UpstreamGroup* group_ = nullptr;
  upstream::UpstreamConnection* upstream_ = nullptr;
  upstream::UpstreamGroup::WaitTicket ticket_;
  ResponseCapture capture_;
  cache::ResponsePtr refreshed_;  // a 304 confirmed the stale entry
  cache::ResponsePtr result_;
  int64_t request_time_ms_ = 0;
  int status_ = 0;
  bool finished_ = false;
  bool retried_ = false;
};

}  // namespace torii::gateway
