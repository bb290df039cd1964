// Unit tests for cache/fill_table: request coalescing (one fill per key,
// waiters woken in arrival order, cancel, re-entrant begin from a wake-up).
#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <vector>

#include "cache/fill_table.hpp"

namespace {

using torii::cache::FillTable;
using torii::cache::FillWaiter;

// Records its wake-up in a shared log, then runs an optional action.
class Waiter final : public FillWaiter {
 public:
  Waiter(std::vector<int>& log, int id) : log_(log), id_(id) {}
  void on_fill_done() override {
    log_.push_back(id_);
    ticket = {};  // the table let go of us (as ClientConnection does)
    if (then) then();
  }

  FillTable::Ticket ticket;
  std::function<void()> then;

 private:
  std::vector<int>& log_;
  int id_;
};

}  // namespace

TEST_SUITE("cache fill table") {
  TEST_CASE("begin returns true once per fill") {
    FillTable t;
    CHECK_FALSE(t.in_flight("k"));
    CHECK(t.begin("k"));
    CHECK(t.in_flight("k"));
    CHECK_FALSE(t.begin("k"));
    CHECK_FALSE(t.begin("k"));
    CHECK(t.begin("other"));  // keys are independent
    CHECK(t.in_flight("other"));
    t.end("k");
    CHECK_FALSE(t.in_flight("k"));
    CHECK(t.in_flight("other"));
    CHECK(t.begin("k"));  // a new fill
    t.end("k");
    t.end("other");
    CHECK(t.waiting() == 0);
  }

  TEST_CASE("wait without a fill in flight refuses and leaves the ticket empty") {
    FillTable t;
    std::vector<int> log;
    Waiter w(log, 1);
    CHECK_FALSE(t.wait("k", &w, w.ticket));
    CHECK_FALSE(w.ticket);
    CHECK(t.waiting() == 0);
    t.end("k");  // no fill: nothing happens
    CHECK(log.empty());
  }

  TEST_CASE("end wakes every waiter once, in arrival order") {
    FillTable t;
    std::vector<int> log;
    Waiter w1(log, 1), w2(log, 2), w3(log, 3), other(log, 99);
    REQUIRE(t.begin("k"));
    REQUIRE(t.begin("o"));
    CHECK(t.wait("k", &w1, w1.ticket));
    CHECK(w1.ticket);
    CHECK(t.wait("k", &w2, w2.ticket));
    CHECK(t.wait("o", &other, other.ticket));
    CHECK(t.wait("k", &w3, w3.ticket));
    CHECK(t.waiting() == 4);
    t.end("k");
    CHECK(log == std::vector<int>{1, 2, 3});
    CHECK(t.waiting() == 1);
    CHECK_FALSE(t.in_flight("k"));
    t.end("k");  // already ended: nobody is woken twice
    CHECK(log == std::vector<int>{1, 2, 3});
    t.end("o");
    CHECK(log == std::vector<int>{1, 2, 3, 99});
    CHECK(t.waiting() == 0);
  }

  TEST_CASE("a fill with no waiters ends quietly") {
    FillTable t;
    REQUIRE(t.begin("k"));
    CHECK(t.waiting() == 0);
    t.end("k");
    CHECK_FALSE(t.in_flight("k"));
  }

  TEST_CASE("cancel removes a waiter") {
    FillTable t;
    std::vector<int> log;
    Waiter w1(log, 1), w2(log, 2), w3(log, 3);
    REQUIRE(t.begin("k"));
    REQUIRE(t.wait("k", &w1, w1.ticket));
    REQUIRE(t.wait("k", &w2, w2.ticket));
    REQUIRE(t.wait("k", &w3, w3.ticket));
    t.cancel(w2.ticket);
    CHECK_FALSE(w2.ticket);  // the ticket is spent
    CHECK(t.waiting() == 2);
    t.cancel(w2.ticket);  // twice: no-op
    CHECK(t.waiting() == 2);
    FillTable::Ticket empty;
    t.cancel(empty);  // never registered: no-op
    CHECK(t.waiting() == 2);
    CHECK(t.in_flight("k"));  // cancelling a waiter does not end the fill

    SUBCASE("the others are still woken, in order") {
      t.end("k");
      CHECK(log == std::vector<int>{1, 3});
    }
    SUBCASE("cancelling the first and last too") {
      t.cancel(w1.ticket);
      t.cancel(w3.ticket);
      CHECK(t.waiting() == 0);
      t.end("k");
      CHECK(log.empty());
    }
    SUBCASE("a cancelled waiter may wait again, at the back") {
      REQUIRE(t.wait("k", &w2, w2.ticket));
      t.end("k");
      CHECK(log == std::vector<int>{1, 3, 2});
    }
  }

  TEST_CASE("a woken waiter may begin a new fill of the same key") {
    FillTable t;
    std::vector<int> log;
    Waiter w1(log, 1), w2(log, 2), w3(log, 3);
    bool w1_leads = false;
    bool w2_leads = true;
    bool w2_waits = false;
    // w1 leads the next fill; w2 finds it in flight and waits for it; w3
    // just goes away.
    w1.then = [&] {
      w1_leads = t.begin("k");
      CHECK(t.in_flight("k"));
      CHECK(t.waiting() == 0);  // a fresh list: the old waiters are not in it
    };
    w2.then = [&] {
      w2_leads = t.begin("k");
      w2_waits = t.wait("k", &w2, w2.ticket);
    };
    REQUIRE(t.begin("k"));
    REQUIRE(t.wait("k", &w1, w1.ticket));
    REQUIRE(t.wait("k", &w2, w2.ticket));
    REQUIRE(t.wait("k", &w3, w3.ticket));
    t.end("k");
    CHECK(log == std::vector<int>{1, 2, 3});  // everybody from the first fill, once
    CHECK(w1_leads);
    CHECK_FALSE(w2_leads);
    CHECK(w2_waits);
    CHECK(t.in_flight("k"));
    CHECK(t.waiting() == 1);

    // The second fill ends: only w2 waited for it.
    w2.then = nullptr;
    t.end("k");
    CHECK(log == std::vector<int>{1, 2, 3, 2});
    CHECK(t.waiting() == 0);
    CHECK_FALSE(t.in_flight("k"));
  }

  TEST_CASE("a woken waiter may begin and end a fill from inside the wake-up") {
    FillTable t;
    std::vector<int> log;
    Waiter w1(log, 1), w2(log, 2);
    w1.then = [&] {
      REQUIRE(t.begin("k"));
      t.end("k");  // e.g. served synchronously
    };
    REQUIRE(t.begin("k"));
    REQUIRE(t.wait("k", &w1, w1.ticket));
    REQUIRE(t.wait("k", &w2, w2.ticket));
    t.end("k");
    CHECK(log == std::vector<int>{1, 2});
    CHECK_FALSE(t.in_flight("k"));
  }

  // A waiter cancelled while another waiter of the same fill is being woken
  // (its connection closed from inside that wake-up) must be removed, not
  // woken, and cancelling must not touch freed memory (ASan).
  TEST_CASE("a waiter cancelled from another waiter's wake-up is not woken") {
    FillTable t;
    std::vector<int> log;
    Waiter w1(log, 1), w2(log, 2), w3(log, 3);
    w1.then = [&] { t.cancel(w2.ticket); };  // w2's client went away meanwhile
    REQUIRE(t.begin("k"));
    REQUIRE(t.wait("k", &w1, w1.ticket));
    REQUIRE(t.wait("k", &w2, w2.ticket));
    REQUIRE(t.wait("k", &w3, w3.ticket));
    t.end("k");
    CHECK(log == std::vector<int>{1, 3});
  }

  TEST_CASE("waiting counts waiters over every key") {
    FillTable t;
    std::vector<int> log;
    std::vector<Waiter> ws;
    ws.reserve(10);
    for (int i = 0; i < 10; ++i) ws.emplace_back(log, i);
    REQUIRE(t.begin("a"));
    REQUIRE(t.begin("b"));
    for (int i = 0; i < 10; ++i) {
      REQUIRE(t.wait(i % 3 == 0 ? "a" : "b", &ws[static_cast<size_t>(i)],
                     ws[static_cast<size_t>(i)].ticket));
      CHECK(t.waiting() == static_cast<size_t>(i + 1));
    }
    t.cancel(ws[1].ticket);
    CHECK(t.waiting() == 9);
    t.end("a");  // 0 3 6 9
    CHECK(log == std::vector<int>{0, 3, 6, 9});
    CHECK(t.waiting() == 5);
    t.end("b");
    CHECK(log == std::vector<int>{0, 3, 6, 9, 2, 4, 5, 7, 8});
    CHECK(t.waiting() == 0);
  }
}
