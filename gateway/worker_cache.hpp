// A worker's response cache: the store, request coalescing, background
// fetches (pre-warm, refresh ahead of expiry, stale-while-revalidate) and
// the cache metrics. One per worker, on its loop: nothing here locks.
#pragma once

#include <uv.h>

#include <functional>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "cache/fill_table.hpp"
#include "cache/policy.hpp"
#include "cache/store.hpp"
#include "gateway/cache_fetch.hpp"
#include "metrics/stats.hpp"

namespace torii::gateway {

class Worker;

// A caching route, resolved for the worker.
struct RouteCache {
  size_t route = 0;
  const conf::RouteCache* config = nullptr;
  cache::StorePolicy policy;
  std::string fingerprint;  // see route_fingerprint()
};

class WorkerCache {
 public:
  explicit WorkerCache(Worker& worker);
  WorkerCache(const WorkerCache&) = delete;
  WorkerCache& operator=(const WorkerCache&) = delete;

  // Null when route `i` does not cache.
  const RouteCache* route(size_t i) const {
    return i < routes_.size() && routes_[i].config != nullptr ? &routes_[i] : nullptr;
  }
  cache::Store& store() { return store_; }
  cache::FillTable& fills() { return fills_; }
  Worker& worker() { return worker_; }
  // Wall-clock time in unix milliseconds, from the loop's cached clock.
  int64_t now_ms() const;

  void count(size_t route, metrics::CacheResult result);
  void count_fetch(size_t route, CacheFetch::Kind kind, bool ok);
  // Stores a response (and keeps the metrics true).
  void insert(size_t route, cache::ResponsePtr r, bool pinned);

  // stale-while-revalidate: refreshes `stale` in the background unless a
  // fetch of its key is already in flight. `client` gives the Vary'd and
  // key headers to send.
  void revalidate_in_background(size_t route, const cache::ResponsePtr& stale,
                                const http::MessageHead& client);

  // Pre-warm copies go through the master: `send` delivers a control
  // message to it. Without it, every worker fetches for itself.
  void set_control(std::function<void(const std::string&)> send) {
    send_control_ = std::move(send);
  }
  // A prewarm-* message from the master; false for anything else.
  bool on_control_message(const std::string& message);

  // Gets every pre-warm URL (from the master's copies, or by fetching it
  // when granted), then calls `ready` (also when the pre-warm timeout
  // passes first); keeps them refreshed afterwards.
  // `listener_host` ("127.0.0.1:8080") is the Host for wildcard routes.
  // `scheme` ("http"/"https", a literal): the first listener's, for the keys.
  void start_prewarm(std::string_view scheme, const std::string& listener_host,
                     std::function<void()> ready);
  // Removes matching entries (see Store::purge); returns how many.
  size_t purge(std::string_view host, std::string_view target, bool prefix);
  // Worker shutdown: stops timers and background fetches.
  void close();

 private:
  struct Prewarm {
    WorkerCache* owner = nullptr;
    size_t route = 0;
    std::string host;
    std::string target;
    std::string key;
    uv_timer_t timer{};
    bool done_once = false;  // the first copy arrived, or the first fetch failed
    bool fetching = false;
    unsigned failures = 0;
    int64_t have_response_time_ms = 0;  // of the copy we hold (0: none)
  };
  // The refresh timer: claim the URL (or fetch it, without a master).
  void on_prewarm_due(Prewarm& p);
  void fetch_prewarm(Prewarm& p);
  void on_prewarm_done(Prewarm& p, const cache::ResponsePtr& stored);
  // A copy arrived (from our fetch or the master): store it, plan its refresh.
  void take_copy(Prewarm& p, const cache::ResponsePtr& r, bool from_master);
  void arm(Prewarm& p, uint64_t delay_ms);
  Prewarm* find_prewarm(const std::string& key);
  void end_sync();
  void arm_prewarm_deadline(uint64_t ms);
  void check_prewarm_complete();
  void finish_prewarm_phase();
  void sync_gauges();
  void sweep_finished();
  CacheFetch& new_fetch(size_t route, std::string_view scheme, std::string host, std::string target,
                        const std::string& extra, cache::ResponsePtr stale, CacheFetch::Kind kind,
                        bool pinned, CacheFetch::Done done);
  uint64_t jitter(uint64_t range);

  Worker& worker_;
  std::vector<RouteCache> routes_;
  cache::Store store_;
  cache::FillTable fills_;
  std::list<CacheFetch> fetches_;
  std::list<Prewarm> prewarm_;
  std::function<void()> ready_;
  std::string_view prewarm_scheme_ = "http";
  std::function<void(const std::string&)> send_control_;
  bool syncing_ = false;  // waiting for the master's copies
  uv_timer_t housekeeping_{};
  uv_timer_t prewarm_deadline_{};
  bool timers_started_ = false;
  bool closed_ = false;
  int64_t wall_offset_ms_ = 0;  // unix ms - uv_now
  uint64_t reported_bytes_ = 0;
  uint64_t reported_entries_ = 0;
  uint64_t reported_evictions_ = 0;
  uint64_t rng_ = 0x2545f4914f6cdd1dull;
};

}  // namespace torii::gateway
