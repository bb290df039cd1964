// Request coalescing: while one fetch ("fill") of a key is in flight, other
// misses for that key wait for it instead of going to the origin.
// Single-threaded (one per worker loop).
#pragma once

#include <list>
#include <string>
#include <unordered_map>

namespace torii::cache {

class FillWaiter {
 public:
  // The fill of the key this waiter waited for ended (stored or not); the
  // waiter is no longer registered.
  virtual void on_fill_done() = 0;

 protected:
  ~FillWaiter() = default;
};

class FillTable {
 public:
  FillTable() = default;
  FillTable(const FillTable&) = delete;
  FillTable& operator=(const FillTable&) = delete;

  // True: nobody fills `key`, the caller now does (and must call end()).
  bool begin(const std::string& key);
  bool in_flight(const std::string& key) const { return fills_.contains(key); }
  // Registers a waiter for an in-flight fill (false if there is none).
  struct Ticket {
    std::list<FillWaiter*>* list = nullptr;
    std::list<FillWaiter*>::iterator it;
    explicit operator bool() const { return list != nullptr; }
  };
  bool wait(const std::string& key, FillWaiter* w, Ticket& ticket);
  // A waiter gives up (timeout, client gone).
  void cancel(Ticket& ticket);
  // The fill ended: every waiter is told, in arrival order.
  void end(const std::string& key);
  size_t waiting() const;

 private:
  std::unordered_map<std::string, std::list<FillWaiter*>> fills_;
};

}  // namespace torii::cache
