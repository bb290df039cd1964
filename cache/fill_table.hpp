// Request coalescing: while one fetch ("fill") of a key is in flight, other
// misses for that key wait for it instead of going to the origin.
// Single-threaded (one per worker loop).
#pragma once

#include <list>
#include <memory>
#include <string>
#include <unordered_map>

namespace torii::cache {

class FillWaiter {
 public:
  // The fill of the key this waiter waited for ended (stored or not). The
  // waiter is no longer registered: it must drop its ticket (assign {})
  // without cancelling it.
  virtual void on_fill_done() = 0;

 protected:
  ~FillWaiter() = default;
};

class FillTable {
  struct Fill {
    std::list<FillWaiter*> waiters;
  };

 public:
  FillTable() = default;
  FillTable(const FillTable&) = delete;
  FillTable& operator=(const FillTable&) = delete;

  // True: nobody fills `key`, the caller now does (and must call end()).
  bool begin(const std::string& key);
  bool in_flight(const std::string& key) const { return fills_.contains(key); }
  // A waiter's place. It keeps its fill's waiter list alive, so cancelling
  // stays safe while end() is waking the others.
  struct Ticket {
    std::shared_ptr<Fill> fill;
    std::list<FillWaiter*>::iterator it;
    explicit operator bool() const { return fill != nullptr; }
  };
  // Registers a waiter for an in-flight fill (false if there is none).
  bool wait(const std::string& key, FillWaiter* w, Ticket& ticket);
  // A waiter gives up (timeout, client gone).
  void cancel(Ticket& ticket);
  // The fill ended: every waiter is told, in arrival order.
  void end(const std::string& key);
  size_t waiting() const;

 private:
  std::unordered_map<std::string, std::shared_ptr<Fill>> fills_;
};

}  // namespace torii::cache
