// Unit tests for cache/store: variants selected by Vary, LRU order, eviction
// under a footprint-based byte budget, pinned entries, erase and purge, and
// the bytes/entries/evictions accounting (checked against a reference model).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cache/policy.hpp"
#include "cache/store.hpp"
#include "cache/stored_response.hpp"
#include "common/http1_parser.hpp"

namespace {

using torii::cache::ResponsePtr;
using torii::cache::Store;
using torii::cache::StoredResponse;
using torii::cache::vary_values;
using torii::http::Http1Parser;
using torii::http::MessageHead;

// A parsed head; the parser owns the storage its views point into.
struct Parsed {
  std::unique_ptr<Http1Parser> parser;
  const MessageHead& head() const { return parser->head(); }
};

Parsed request(const std::string& headers = "", const std::string& target = "/") {
  const std::string text =
      "GET " + target + " HTTP/1.1\r\nHost: example.com\r\n" + headers + "\r\n";
  Parsed p{std::make_unique<Http1Parser>(Http1Parser::Kind::kRequest, torii::http::ParserLimits{})};
  const auto r = p.parser->feed(text.data(), text.size());
  INFO("request: " << text << " parser error: " << std::string(p.parser->error_reason()));
  REQUIRE(r.event == Http1Parser::Event::kHeadComplete);
  return p;
}

Parsed lang_request(const std::string& lang) {
  return request(lang.empty() ? "" : "Accept-Language: " + lang + "\r\n");
}

struct Spec {
  std::string key = "k";
  size_t body = 100;
  std::string host = "example.com";
  std::string target = "/";
  std::vector<std::string> vary_names;
  const MessageHead* vary_request = nullptr;  // fills vary_values from it
  char fill = 'x';
};

ResponsePtr make(const Spec& s) {
  auto r = std::make_shared<StoredResponse>();
  r->assign("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n", std::string(s.body, s.fill));
  r->key = s.key;
  r->host = s.host;
  r->target = s.target;
  r->vary_names = s.vary_names;
  if (s.vary_request != nullptr) r->vary_values = vary_values(*s.vary_request, s.vary_names);
  return r;
}

ResponsePtr make(const std::string& key, size_t body = 100) {
  Spec s;
  s.key = key;
  s.body = body;
  return make(s);
}

ResponsePtr make_at(const std::string& key, const std::string& host, const std::string& target) {
  Spec s;
  s.key = key;
  s.host = host;
  s.target = target;
  return make(s);
}

const Parsed& plain() {
  static const Parsed p = request();
  return p;
}

ResponsePtr found(Store& store, const std::string& key, const MessageHead& req) {
  return store.find(key, req).response;
}
ResponsePtr found(Store& store, const std::string& key) {
  return found(store, key, plain().head());
}

}  // namespace

TEST_SUITE("cache store") {
  TEST_CASE("an empty store") {
    Store store(10'000);
    CHECK(store.budget() == 10'000);
    CHECK(store.bytes() == 0);
    CHECK(store.entries() == 0);
    CHECK(store.evictions() == 0);
    const Store::Found f = store.find("nothing", plain().head());
    CHECK(f.response == nullptr);
    CHECK_FALSE(f.key_known);
    CHECK(store.erase("nothing") == 0);
    CHECK(store.purge("", "/", true) == 0);
  }

  TEST_CASE("insert then find returns the same shared response") {
    Store store(100'000);
    const ResponsePtr a = make("a", 300);
    const ResponsePtr b = make("b", 50);
    REQUIRE(store.insert(a));
    REQUIRE(store.insert(b));
    CHECK(store.entries() == 2);
    CHECK(store.bytes() == a->footprint() + b->footprint());
    const Store::Found f = store.find("a", plain().head());
    CHECK(f.key_known);
    CHECK(f.response == a);  // shared, not copied
    CHECK(found(store, "b") == b);
    CHECK(found(store, "c") == nullptr);
    CHECK(store.evictions() == 0);
  }

  TEST_CASE("footprint counts the payload and the bookkeeping") {
    const ResponsePtr r = make("key", 1000);
    CHECK(r->footprint() > r->bytes.size());
    CHECK(r->footprint() >= r->bytes.size() + r->key.size() + r->host.size() + r->target.size() +
                                sizeof(StoredResponse));
    CHECK(make("key", 1001)->footprint() == r->footprint() + 1);
  }

  TEST_CASE("an entry larger than the budget is refused and changes nothing") {
    const size_t fp = make("a", 100)->footprint();
    Store store(fp * 2);
    const ResponsePtr a = make("a", 100);
    REQUIRE(store.insert(a));
    const ResponsePtr huge = make("b", fp * 2);  // footprint > budget
    REQUIRE(huge->footprint() > store.budget());
    CHECK_FALSE(store.insert(huge));
    CHECK_FALSE(store.insert(huge, /*pinned=*/true));
    CHECK(store.entries() == 1);
    CHECK(store.bytes() == a->footprint());
    CHECK(store.evictions() == 0);
    CHECK(found(store, "a") == a);
    CHECK_FALSE(store.find("b", plain().head()).key_known);

    SUBCASE("a larger replacement of a stored key is refused; the old one stays") {
      const ResponsePtr huge_a = make("a", fp * 2);
      CHECK_FALSE(store.insert(huge_a));
      CHECK(found(store, "a") == a);
      CHECK(store.bytes() == a->footprint());
    }
  }

  TEST_CASE("an entry exactly the size of the budget fits, evicting everything else") {
    const ResponsePtr a = make("a", 100);
    const ResponsePtr b = make("b", 100);
    Store store(a->footprint() * 2);
    REQUIRE(store.insert(a));
    REQUIRE(store.insert(b));
    const ResponsePtr c = make("c", 100 + a->footprint());
    REQUIRE(c->footprint() == store.budget());
    CHECK(store.insert(c));
    CHECK(store.entries() == 1);
    CHECK(store.bytes() == store.budget());
    CHECK(store.evictions() == 2);
    CHECK(found(store, "c") == c);
  }

  TEST_CASE("eviction takes the least recently used first") {
    const size_t fp = make("a", 100)->footprint();
    Store store(fp * 3);
    const ResponsePtr a = make("a"), b = make("b"), c = make("c");
    REQUIRE(store.insert(a));
    REQUIRE(store.insert(b));
    REQUIRE(store.insert(c));
    CHECK(store.bytes() == fp * 3);

    SUBCASE("without lookups: insertion order") {
      REQUIRE(store.insert(make("d")));
      CHECK(found(store, "a") == nullptr);
      CHECK(found(store, "b") == b);
      CHECK(found(store, "c") == c);
      CHECK(store.evictions() == 1);
      CHECK(store.entries() == 3);
    }
    SUBCASE("find refreshes recency") {
      CHECK(found(store, "a") == a);  // a is now the most recent; b the least
      REQUIRE(store.insert(make("d")));
      CHECK(found(store, "b") == nullptr);
      CHECK(found(store, "a") == a);
      CHECK(found(store, "c") == c);
      // Order now (most recent first): c a d -> the next victim is d.
      REQUIRE(store.insert(make("e")));
      CHECK(found(store, "d") == nullptr);
      CHECK(found(store, "a") == a);
      CHECK(found(store, "c") == c);
      CHECK(store.evictions() == 2);
    }
    SUBCASE("a missed find refreshes nothing") {
      CHECK(found(store, "zzz") == nullptr);
      REQUIRE(store.insert(make("d")));
      CHECK(found(store, "a") == nullptr);
    }
    SUBCASE("replacing an entry makes it the most recent") {
      const ResponsePtr a2 = make("a", 100);
      REQUIRE(store.insert(a2));
      CHECK(store.entries() == 3);
      CHECK(store.evictions() == 0);  // a replacement is not an eviction
      REQUIRE(store.insert(make("d")));
      CHECK(found(store, "b") == nullptr);
      CHECK(found(store, "a") == a2);
    }
    SUBCASE("one big entry evicts as many as needed, oldest first") {
      const ResponsePtr big = make("g", 100 + fp);  // footprint: 2 * fp
      REQUIRE(big->footprint() == 2 * fp);
      REQUIRE(store.insert(big));
      CHECK(found(store, "a") == nullptr);
      CHECK(found(store, "b") == nullptr);
      CHECK(found(store, "c") == c);
      CHECK(found(store, "g") == big);
      CHECK(store.evictions() == 2);
      CHECK(store.bytes() == fp * 3);
    }
  }

  TEST_CASE("an evicted response stays alive for whoever still holds it") {
    const size_t fp = make("a", 100)->footprint();
    Store store(fp);
    ResponsePtr held = make("a", 100);
    REQUIRE(store.insert(held));
    REQUIRE(store.insert(make("b", 100)));
    CHECK(found(store, "a") == nullptr);
    CHECK(held.use_count() == 1);
    CHECK(held->body() == std::string(100, 'x'));
  }

  TEST_CASE("pinned entries are evicted only when nothing else is left") {
    const size_t fp = make("a", 100)->footprint();
    Store store(fp * 3);
    const ResponsePtr p1 = make("P"), p2 = make("Q"), u = make("U");
    REQUIRE(p1->footprint() == fp);              // single-letter keys: all the same size
    REQUIRE(store.insert(p1, /*pinned=*/true));  // the least recently used
    REQUIRE(store.insert(u));
    REQUIRE(store.insert(p2, true));

    // The unpinned entry goes first although P is older.
    REQUIRE(store.insert(make("N")));
    CHECK(found(store, "U") == nullptr);
    CHECK(found(store, "P") == p1);
    CHECK(found(store, "Q") == p2);
    // Order now (most recent first): Q P N -> N goes, pins stay.
    REQUIRE(store.insert(make("M")));
    CHECK(found(store, "N") == nullptr);
    CHECK(store.entries() == 3);

    // Two slots needed with one unpinned entry left: n2 goes, then the least
    // recently used pin.
    CHECK(found(store, "P") == p1);               // order now: P M Q
    const ResponsePtr big = make("g", 100 + fp);  // footprint: 2 * fp
    REQUIRE(store.insert(big));
    CHECK(found(store, "M") == nullptr);
    CHECK(found(store, "Q") == nullptr);
    CHECK(found(store, "P") == p1);
    CHECK(found(store, "g") == big);
    CHECK(store.evictions() == 4);
    CHECK(store.bytes() == fp * 3);
  }

  TEST_CASE("a store full of pins evicts the least recently used pin") {
    const size_t fp = make("a", 100)->footprint();
    Store store(fp * 2);
    const ResponsePtr p1 = make("P"), p2 = make("Q"), p3 = make("R");
    REQUIRE(store.insert(p1, true));
    REQUIRE(store.insert(p2, true));
    REQUIRE(store.insert(p3, true));
    CHECK(found(store, "P") == nullptr);
    CHECK(found(store, "Q") == p2);
    CHECK(found(store, "R") == p3);
    // An unpinned newcomer also displaces a pin when only pins are left.
    const ResponsePtr u = make("U");
    REQUIRE(store.insert(u));
    CHECK(found(store, "Q") == nullptr);
    CHECK(found(store, "U") == u);
    CHECK(store.evictions() == 2);
  }

  TEST_CASE("replacing a pinned entry keeps it pinned") {
    const size_t fp = make("a", 100)->footprint();
    Store store(fp * 2);
    REQUIRE(store.insert(make("P"), true));
    const ResponsePtr p2 = make("P");
    REQUIRE(store.insert(p2));  // replaced, unpinned request
    REQUIRE(store.insert(make("V")));
    // P is the least recently used now, but still pinned.
    REQUIRE(found(store, "V") != nullptr);
    REQUIRE(store.insert(make("W")));
    CHECK(found(store, "P") == p2);
    CHECK(found(store, "V") == nullptr);
  }

  TEST_CASE("inserting the same Vary values replaces the variant") {
    const Parsed en = lang_request("en");
    Store store(100'000);
    Spec s;
    s.vary_names = {"accept-language"};
    s.vary_request = &en.head();
    s.body = 100;
    const ResponsePtr v1 = make(s);
    s.body = 500;
    s.fill = 'y';
    const ResponsePtr v2 = make(s);
    REQUIRE(store.insert(v1));
    REQUIRE(store.insert(v2));
    CHECK(store.entries() == 1);
    CHECK(store.bytes() == v2->footprint());
    CHECK(found(store, "k", en.head()) == v2);
    CHECK(store.evictions() == 0);
  }

  TEST_CASE("several variants of one key, selected by Vary values") {
    const Parsed en = lang_request("en");
    const Parsed fr = lang_request("fr");
    const Parsed de = lang_request("de");
    const Parsed none = lang_request("");
    const Parsed en_spaced = lang_request("en ,  fr");
    const Parsed en_fr = lang_request("en,fr");
    Store store(100'000);
    Spec s;
    s.vary_names = {"accept-language"};
    s.vary_request = &en.head();
    s.fill = 'e';
    const ResponsePtr v_en = make(s);
    s.vary_request = &fr.head();
    s.fill = 'f';
    const ResponsePtr v_fr = make(s);
    s.vary_request = &none.head();
    s.fill = 'n';
    const ResponsePtr v_none = make(s);
    s.vary_request = &en_fr.head();
    s.fill = 'b';
    const ResponsePtr v_en_fr = make(s);
    REQUIRE(v_en->vary_values != v_fr->vary_values);
    REQUIRE(v_none->vary_values != v_en->vary_values);
    REQUIRE(store.insert(v_en));
    REQUIRE(store.insert(v_fr));
    REQUIRE(store.insert(v_none));
    REQUIRE(store.insert(v_en_fr));
    CHECK(store.entries() == 4);
    CHECK(store.bytes() ==
          v_en->footprint() + v_fr->footprint() + v_none->footprint() + v_en_fr->footprint());

    CHECK(found(store, "k", en.head()) == v_en);
    CHECK(found(store, "k", fr.head()) == v_fr);
    CHECK(found(store, "k", none.head()) == v_none);
    CHECK(found(store, "k", en_fr.head()) == v_en_fr);
    CHECK(found(store, "k", en_spaced.head()) == v_en_fr);  // normalised list

    SUBCASE("a vary miss still reports the key as known") {
      const Store::Found f = store.find("k", de.head());
      CHECK(f.response == nullptr);
      CHECK(f.key_known);
      CHECK_FALSE(store.find("other", de.head()).key_known);
    }
    SUBCASE("finding one variant refreshes only that one") {
      Store small(v_en->footprint() * 2);
      REQUIRE(small.insert(v_en));
      REQUIRE(small.insert(v_fr));
      CHECK(found(small, "k", en.head()) == v_en);
      REQUIRE(small.insert(v_none));
      CHECK(found(small, "k", fr.head()) == nullptr);
      CHECK(found(small, "k", en.head()) == v_en);
      CHECK(found(small, "k", none.head()) == v_none);
    }
    SUBCASE("erase(key) removes every variant") {
      CHECK(store.erase("k") == 4);
      CHECK(store.entries() == 0);
      CHECK(store.bytes() == 0);
      CHECK_FALSE(store.find("k", en.head()).key_known);
      CHECK(store.erase("k") == 0);
    }
    SUBCASE("erase leaves other keys alone") {
      Spec o;
      o.key = "other";
      const ResponsePtr other = make(o);
      REQUIRE(store.insert(other));
      CHECK(store.erase("k") == 4);
      CHECK(store.entries() == 1);
      CHECK(store.bytes() == other->footprint());
      CHECK(found(store, "other") == other);
    }
    SUBCASE("evicting the last variant forgets the key") {
      Store small(v_en->footprint());
      REQUIRE(small.insert(v_en));
      Spec o;
      o.key = "other";
      REQUIRE(small.insert(make(o)));
      CHECK_FALSE(small.find("k", en.head()).key_known);
      CHECK(small.evictions() == 1);
    }
  }

  TEST_CASE("variants with different Vary names under one key") {
    // The origin changed its Vary: both kinds may coexist under one key.
    const Parsed en_gzip = request("Accept-Language: en\r\nAccept-Encoding: gzip\r\n");
    const Parsed en_br = request("Accept-Language: en\r\nAccept-Encoding: br\r\n");
    Store store(100'000);
    Spec s;
    s.vary_names = {"accept-language", "accept-encoding"};
    s.vary_request = &en_gzip.head();
    const ResponsePtr gz = make(s);
    s.vary_request = &en_br.head();
    const ResponsePtr br = make(s);
    Spec t;
    t.vary_names = {"accept-language"};
    t.vary_request = &en_gzip.head();
    const ResponsePtr lang_only = make(t);
    REQUIRE(store.insert(gz));
    REQUIRE(store.insert(br));
    REQUIRE(store.insert(lang_only));
    CHECK(store.entries() == 3);
    CHECK(found(store, "k", en_gzip.head()) == gz);
    CHECK(found(store, "k", en_br.head()) == br);
    const Parsed en_deflate = request("Accept-Language: en\r\nAccept-Encoding: deflate\r\n");
    CHECK(found(store, "k", en_deflate.head()) == lang_only);
  }

  TEST_CASE("purge") {
    Store store(1'000'000);
    const ResponsePtr a_items = make_at("1", "a.example", "/items");
    const ResponsePtr a_items_q = make_at("2", "a.example", "/items?page=2");
    const ResponsePtr a_items_x = make_at("3", "a.example", "/items/x");
    const ResponsePtr a_other = make_at("4", "a.example", "/other");
    const ResponsePtr b_items = make_at("5", "b.example", "/items");
    const ResponsePtr b_item = make_at("6", "b.example", "/item");
    for (const ResponsePtr& r : {a_items, a_items_q, a_items_x, a_other, b_items, b_item}) {
      REQUIRE(store.insert(r));
    }
    const uint64_t all = store.bytes();

    SUBCASE("exact target with host") {
      CHECK(store.purge("a.example", "/items", false) == 1);
      CHECK(found(store, "1") == nullptr);
      CHECK(found(store, "2") == a_items_q);  // the query is part of the target
      CHECK(found(store, "3") == a_items_x);
      CHECK(found(store, "5") == b_items);  // other host
      CHECK(store.entries() == 5);
      CHECK(store.bytes() == all - a_items->footprint());
      CHECK(store.evictions() == 0);  // a purge is not an eviction
    }
    SUBCASE("exact target with a query") {
      CHECK(store.purge("a.example", "/items?page=2", false) == 1);
      CHECK(found(store, "2") == nullptr);
      CHECK(found(store, "1") == a_items);
    }
    SUBCASE("exact target without host: every host") {
      CHECK(store.purge("", "/items", false) == 2);
      CHECK(found(store, "1") == nullptr);
      CHECK(found(store, "5") == nullptr);
      CHECK(store.entries() == 4);
    }
    SUBCASE("prefix with host") {
      CHECK(store.purge("a.example", "/items", true) == 3);
      CHECK(found(store, "4") == a_other);
      CHECK(found(store, "5") == b_items);
      CHECK(store.entries() == 3);
      CHECK(store.bytes() == a_other->footprint() + b_items->footprint() + b_item->footprint());
    }
    SUBCASE("prefix without host") {
      CHECK(store.purge("", "/item", true) == 5);
      CHECK(found(store, "4") == a_other);
      CHECK(store.entries() == 1);
    }
    SUBCASE("prefix / removes everything") {
      CHECK(store.purge("", "/", true) == 6);
      CHECK(store.entries() == 0);
      CHECK(store.bytes() == 0);
    }
    SUBCASE("no match") {
      CHECK(store.purge("c.example", "/", true) == 0);
      CHECK(store.purge("a.example", "/item", false) == 0);
      CHECK(store.purge("", "/nothing", true) == 0);
      CHECK(store.purge("A.EXAMPLE", "/items", false) == 0);  // hosts are stored lower-cased
      CHECK(store.entries() == 6);
      CHECK(store.bytes() == all);
    }
    SUBCASE("purge removes every variant of a key at that target") {
      const Parsed en = lang_request("en");
      const Parsed fr = lang_request("fr");
      Spec s;
      s.key = "v";
      s.host = "a.example";
      s.target = "/vary";
      s.vary_names = {"accept-language"};
      s.vary_request = &en.head();
      REQUIRE(store.insert(make(s)));
      s.vary_request = &fr.head();
      REQUIRE(store.insert(make(s)));
      CHECK(store.purge("a.example", "/vary", false) == 2);
      CHECK_FALSE(store.find("v", en.head()).key_known);
      CHECK(store.entries() == 6);
    }
  }

  TEST_CASE("accounting returns to zero when emptied") {
    const size_t fp = make("a", 100)->footprint();
    Store store(fp * 4);
    auto key = [](int i) { return std::string(1, static_cast<char>('A' + i)); };
    for (int i = 0; i < 20; ++i) REQUIRE(store.insert(make(key(i)), i % 5 == 0));
    CHECK(store.entries() == 4);
    CHECK(store.bytes() == fp * 4);
    CHECK(store.evictions() == 16);
    size_t removed = 0;
    for (int i = 0; i < 20; ++i) removed += store.erase(key(i));
    CHECK(removed == 4);
    CHECK(store.entries() == 0);
    CHECK(store.bytes() == 0);
    CHECK(store.evictions() == 16);  // a counter, not a gauge
    // And it works again afterwards.
    REQUIRE(store.insert(make("again")));
    CHECK(store.bytes() == make("again")->footprint());
    CHECK(store.purge("", "/", true) == 1);
    CHECK(store.bytes() == 0);
    CHECK(store.entries() == 0);
  }
}

// ---------------------------------------------------------------------------
// Randomized: the store against a straightforward reference model.

namespace {

struct ModelEntry {
  ResponsePtr response;
  uint64_t last_used = 0;
  bool pinned = false;
};

// (key, vary values) -> entry, with recency as a counter.
class Model {
 public:
  explicit Model(uint64_t budget) : budget_(budget) {}

  bool insert(const ResponsePtr& r, bool pinned) {
    const uint64_t size = r->footprint();
    if (size > budget_) return false;
    const auto id = std::make_pair(r->key, r->vary_values);
    if (auto it = entries_.find(id); it != entries_.end()) {
      pinned = pinned || it->second.pinned;
      entries_.erase(it);
    }
    for (bool take_pinned : {false, true}) {
      while (bytes() + size > budget_) {
        auto victim = entries_.end();
        for (auto it = entries_.begin(); it != entries_.end(); ++it) {
          if (it->second.pinned && !take_pinned) continue;
          if (victim == entries_.end() || it->second.last_used < victim->second.last_used) {
            victim = it;
          }
        }
        if (victim == entries_.end()) break;
        entries_.erase(victim);
        ++evictions_;
      }
    }
    entries_[id] = ModelEntry{r, ++clock_, pinned};
    return true;
  }
  ResponsePtr find(const std::string& key, const std::string& values) {
    auto it = entries_.find(std::make_pair(key, values));
    if (it == entries_.end()) return nullptr;
    it->second.last_used = ++clock_;
    return it->second.response;
  }
  bool key_known(const std::string& key) const {
    return std::any_of(entries_.begin(), entries_.end(),
                       [&](const auto& e) { return e.first.first == key; });
  }
  size_t erase(const std::string& key) {
    return std::erase_if(entries_, [&](const auto& e) { return e.first.first == key; });
  }
  size_t purge(std::string_view host, std::string_view target, bool prefix) {
    return std::erase_if(entries_, [&](const auto& e) {
      const StoredResponse& r = *e.second.response;
      const bool host_ok = host.empty() || r.host == host;
      const bool target_ok = prefix ? std::string_view(r.target).starts_with(target)
                                    : std::string_view(r.target) == target;
      return host_ok && target_ok;
    });
  }
  uint64_t bytes() const {
    uint64_t n = 0;
    for (const auto& [id, e] : entries_) n += e.response->footprint();
    return n;
  }
  size_t size() const { return entries_.size(); }
  uint64_t evictions() const { return evictions_; }

 private:
  uint64_t budget_;
  uint64_t clock_ = 0;
  uint64_t evictions_ = 0;
  std::map<std::pair<std::string, std::string>, ModelEntry> entries_;
};

}  // namespace

TEST_SUITE("cache store") {
  TEST_CASE("10k random operations agree with a reference model") {
    const std::vector<std::string> langs = {"", "en", "fr", "de"};
    std::vector<Parsed> requests;
    for (const std::string& l : langs) requests.push_back(lang_request(l));
    const std::vector<std::string> hosts = {"a.example", "b.example"};
    const std::vector<std::string> targets = {"/", "/a", "/a/b", "/a?x=1", "/b", "/b/c"};
    const std::vector<std::string> names = {"accept-language"};
    constexpr int kKeys = 12;

    for (const uint32_t seed : {1u, 2u, 3u, 12345u}) {
      CAPTURE(seed);
      std::mt19937 rng(seed);
      auto pick = [&rng](size_t n) {
        return static_cast<size_t>(std::uniform_int_distribution<size_t>(0, n - 1)(rng));
      };
      const uint64_t budget = 20'000 + pick(20'000);
      Store store(budget);
      Model model(budget);
      // Each key has a fixed host, target and Vary (as one URL would).
      auto key_name = [](size_t k) { return "key" + std::to_string(k); };
      auto key_varies = [](size_t k) { return k % 2 == 0; };

      for (int op = 0; op < 10'000; ++op) {
        CAPTURE(op);
        const size_t k = pick(kKeys);
        const std::string key = key_name(k);
        const size_t lang = pick(langs.size());
        const MessageHead& req = requests[lang].head();
        const std::vector<std::string> vnames = key_varies(k) ? names : std::vector<std::string>{};
        const int kind = static_cast<int>(pick(100));
        if (kind < 45) {
          Spec s;
          s.key = key;
          s.host = hosts[k % hosts.size()];
          s.target = targets[k % targets.size()];
          s.vary_names = vnames;
          s.vary_request = &req;
          // Mostly small, sometimes big, now and then larger than the budget.
          const size_t r = pick(100);
          s.body = r < 80 ? pick(3000) : r < 98 ? pick(15'000) : budget + pick(1000);
          s.fill = static_cast<char>('a' + pick(26));
          const bool pinned = pick(10) == 0;
          const ResponsePtr resp = make(s);
          CHECK(store.insert(resp, pinned) == model.insert(resp, pinned));
        } else if (kind < 85) {
          const Store::Found f = store.find(key, req);
          const ResponsePtr expected = model.find(key, vary_values(req, vnames));
          CHECK(f.response == expected);
          CHECK(f.key_known == model.key_known(key));
        } else if (kind < 92) {
          CHECK(store.erase(key) == model.erase(key));
        } else {
          const std::string host = pick(3) == 0 ? std::string() : hosts[pick(hosts.size())];
          const std::string& target = targets[pick(targets.size())];
          const bool prefix = pick(2) == 0;
          CHECK(store.purge(host, target, prefix) == model.purge(host, target, prefix));
        }
        REQUIRE(store.bytes() == model.bytes());
        REQUIRE(store.bytes() <= store.budget());
        REQUIRE(store.entries() == model.size());
        REQUIRE(store.evictions() == model.evictions());
      }
      // Emptying brings the accounting back to zero.
      for (int k = 0; k < kKeys; ++k) store.erase(key_name(static_cast<size_t>(k)));
      CHECK(store.bytes() == 0);
      CHECK(store.entries() == 0);
    }
  }
}
