// Unit tests for upstream/balancer: smooth weighted round-robin (nginx's
// sequence, proportions, skipping unusable servers), power of two choices
// (load avoidance, uniformity, weights), the consistent-hash ring (stable
// mapping, minimal movement on removal and addition, weighted shares, the
// walk past unusable servers and back), key hashing, cookies and the mask.
#include <doctest/doctest.h>
#include <netinet/in.h>

#include <array>
#include <bit>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "upstream/balancer.hpp"

namespace {

using torii::upstream::BalancePolicy;
using torii::upstream::Balancer;
using torii::upstream::BalancerServer;
using torii::upstream::find_cookie;
using torii::upstream::hash_client_address;
using torii::upstream::hash_key;
using torii::upstream::HashRing;
using torii::upstream::LeastRequest;
using torii::upstream::ServerMask;
using torii::upstream::SmoothWeightedRoundRobin;

ServerMask all_usable(size_t n) { return ServerMask(n, true); }

std::vector<size_t> picks(SmoothWeightedRoundRobin& rr, const ServerMask& usable, size_t n) {
  std::vector<size_t> out;
  for (size_t i = 0; i < n; ++i) {
    const auto pick = rr.pick(usable);
    REQUIRE(pick.has_value());
    out.push_back(*pick);
  }
  return out;
}

// Ring servers named like configured upstream servers.
std::vector<std::string> server_ids(size_t n, size_t first = 1) {
  std::vector<std::string> ids;
  for (size_t i = 0; i < n; ++i) ids.push_back("10.0.0." + std::to_string(first + i) + ":8080");
  return ids;
}

HashRing make_ring(const std::vector<std::string>& ids, const std::vector<uint32_t>& weights = {}) {
  std::vector<HashRing::Server> servers;
  for (size_t i = 0; i < ids.size(); ++i) {
    servers.push_back({ids[i], weights.empty() ? 1U : weights[i]});
  }
  return HashRing(servers);
}

constexpr size_t kKeys = 100'000;

std::vector<uint64_t> key_hashes() {
  std::vector<uint64_t> keys;
  keys.reserve(kKeys);
  for (size_t i = 0; i < kKeys; ++i) keys.push_back(hash_key("session-" + std::to_string(i)));
  return keys;
}

// Which server id each key goes to.
std::vector<std::string> assign(const HashRing& ring, const std::vector<std::string>& ids,
                                const std::vector<uint64_t>& keys, const ServerMask& usable) {
  std::vector<std::string> out;
  out.reserve(keys.size());
  for (const uint64_t key : keys) {
    const auto pick = ring.pick(key, usable);
    out.push_back(pick ? ids[*pick] : "<none>");
  }
  return out;
}

std::map<std::string, double> shares(const std::vector<std::string>& assignment) {
  std::map<std::string, double> out;
  for (const auto& id : assignment) out[id] += 1.0 / static_cast<double>(assignment.size());
  return out;
}

}  // namespace

TEST_SUITE("balancer") {
  TEST_CASE("smooth weighted round-robin: weights 5,1,1 give nginx's a,a,b,a,c,a,a") {
    const std::array<uint32_t, 3> weights{5, 1, 1};
    SmoothWeightedRoundRobin rr(weights);
    const ServerMask usable = all_usable(3);
    CHECK(picks(rr, usable, 7) == std::vector<size_t>{0, 0, 1, 0, 2, 0, 0});
    // The cycle repeats exactly.
    CHECK(picks(rr, usable, 7) == std::vector<size_t>{0, 0, 1, 0, 2, 0, 0});
  }

  TEST_CASE("smooth weighted round-robin: long-run shares follow the weights") {
    const std::array<uint32_t, 4> weights{3, 1, 2, 4};
    SmoothWeightedRoundRobin rr(weights);
    std::array<size_t, 4> counts{};
    for (const size_t s : picks(rr, all_usable(4), 10'000)) ++counts[s];
    CHECK(counts == std::array<size_t, 4>{3000, 1000, 2000, 4000});
  }

  TEST_CASE("smooth weighted round-robin: unusable servers are skipped and come back") {
    const std::array<uint32_t, 3> weights{5, 1, 1};
    SmoothWeightedRoundRobin rr(weights);
    ServerMask usable = all_usable(3);
    usable.set(1, false);
    std::array<size_t, 3> counts{};
    for (const size_t s : picks(rr, usable, 600)) ++counts[s];
    CHECK(counts == std::array<size_t, 3>{500, 0, 100});

    usable.set(1, true);
    counts = {};
    for (const size_t s : picks(rr, usable, 700)) ++counts[s];
    CHECK(counts[1] >= 99);
    CHECK(counts[1] <= 101);

    CHECK_FALSE(rr.pick(ServerMask(3, false)).has_value());
  }

  TEST_CASE("smooth weighted round-robin: weight 0 is never picked") {
    const std::array<uint32_t, 2> weights{0, 1};
    SmoothWeightedRoundRobin rr(weights);
    for (const size_t s : picks(rr, all_usable(2), 10)) CHECK(s == 1);
    ServerMask only_zero(2, false);
    only_zero.set(0);
    CHECK_FALSE(rr.pick(only_zero).has_value());
  }

  TEST_CASE("least request: a heavily loaded server is rarely picked") {
    const std::array<uint32_t, 5> weights{1, 1, 1, 1, 1};
    LeastRequest least(weights, 42);
    const std::array<uint32_t, 5> in_flight{2, 3, 1, 2, 500};
    std::array<size_t, 5> counts{};
    for (int i = 0; i < 10'000; ++i) {
      const auto pick = least.pick(all_usable(5), in_flight);
      REQUIRE(pick.has_value());
      ++counts[*pick];
    }
    // Never, in fact: the two candidates are always different servers.
    CHECK(counts[4] == 0);
    // The least loaded wins every pair it is in.
    CHECK(counts[2] > counts[0]);
    CHECK(counts[2] > counts[1]);
  }

  TEST_CASE("least request: of two servers the less busy one always wins") {
    const std::array<uint32_t, 2> weights{1, 1};
    LeastRequest least(weights, 17);
    const std::array<uint32_t, 2> in_flight{5, 4};
    for (int i = 0; i < 100; ++i) CHECK(*least.pick(all_usable(2), in_flight) == 1);
  }

  TEST_CASE("least request: equal load spreads about uniformly") {
    const std::array<uint32_t, 4> weights{1, 1, 1, 1};
    LeastRequest least(weights, 7);
    const std::array<uint32_t, 4> in_flight{};
    std::array<size_t, 4> counts{};
    constexpr int kPicks = 40'000;
    for (int i = 0; i < kPicks; ++i) ++counts[*least.pick(all_usable(4), in_flight)];
    for (const size_t c : counts) {
      CHECK(c > kPicks / 4 * 95 / 100);
      CHECK(c < kPicks / 4 * 105 / 100);
    }
  }

  TEST_CASE("least request: weights set the share at no load and the in-flight ratio under load") {
    const std::array<uint32_t, 4> weights{1, 1, 2, 4};
    SUBCASE("no load: ties go to the weighted first draw") {
      LeastRequest least(weights, 3);
      const std::array<uint32_t, 4> idle{};
      std::array<size_t, 4> counts{};
      constexpr int kPicks = 80'000;
      for (int i = 0; i < kPicks; ++i) ++counts[*least.pick(all_usable(4), idle)];
      for (size_t s = 0; s < 4; ++s) {
        const double expected = kPicks * weights[s] / 8.0;
        CHECK(static_cast<double>(counts[s]) > expected * 0.94);
        CHECK(static_cast<double>(counts[s]) < expected * 1.06);
      }
    }
    SUBCASE("requests that pile up settle in proportion to weight") {
      LeastRequest least(weights, 5);
      std::array<uint32_t, 4> in_flight{};
      for (int i = 0; i < 8'000; ++i) ++in_flight[*least.pick(all_usable(4), in_flight)];
      for (size_t s = 0; s < 4; ++s) {
        const double per_weight = static_cast<double>(in_flight[s]) / weights[s];
        CHECK(per_weight > 900);
        CHECK(per_weight < 1100);
      }
    }
    SUBCASE("in_flight/weight decides between two candidates") {
      const std::array<uint32_t, 2> two_weights{1, 3};
      LeastRequest least(two_weights, 9);
      // 1/1 > 2/3: the heavier server, though busier, always wins.
      const std::array<uint32_t, 2> in_flight{1, 2};
      for (int i = 0; i < 100; ++i) CHECK(*least.pick(all_usable(2), in_flight) == 1);
    }
  }

  TEST_CASE("least request: only usable servers, none -> nullopt") {
    const std::array<uint32_t, 6> weights{1, 1, 1, 1, 1, 1};
    LeastRequest least(weights, 11);
    const std::array<uint32_t, 6> in_flight{};
    ServerMask usable(6, false);
    usable.set(3);
    for (int i = 0; i < 200; ++i) CHECK(*least.pick(usable, in_flight) == 3);
    usable.set(5);
    std::array<size_t, 6> counts{};
    for (int i = 0; i < 2'000; ++i) ++counts[*least.pick(usable, in_flight)];
    CHECK(counts[3] + counts[5] == 2'000);
    CHECK(counts[3] > 800);
    CHECK(counts[5] > 800);
    CHECK_FALSE(least.pick(ServerMask(6, false), in_flight).has_value());

    const std::array<uint32_t, 3> uneven{10, 0, 1};
    LeastRequest weighted(uneven, 13);
    ServerMask small_only(3, false);
    small_only.set(2);
    small_only.set(1);  // weight 0: drained
    for (int i = 0; i < 50; ++i) CHECK(*weighted.pick(small_only, {}) == 2);
  }

  TEST_CASE("least request: the same seed draws the same sequence") {
    const std::array<uint32_t, 8> weights{1, 1, 1, 1, 1, 1, 1, 1};
    LeastRequest a(weights, 99);
    LeastRequest b(weights, 99);
    LeastRequest c(weights, 100);
    const std::array<uint32_t, 8> in_flight{};
    int same_as_c = 0;
    for (int i = 0; i < 100; ++i) {
      const size_t pa = *a.pick(all_usable(8), in_flight);
      CHECK(pa == *b.pick(all_usable(8), in_flight));
      same_as_c += pa == *c.pick(all_usable(8), in_flight) ? 1 : 0;
    }
    CHECK(same_as_c < 50);
  }

  TEST_CASE("consistent hash: a key always reaches the same server, in any worker") {
    const auto ids = server_ids(5);
    const HashRing ring = make_ring(ids);
    const HashRing other_worker = make_ring(ids);
    const ServerMask usable = all_usable(5);
    for (const uint64_t key : {hash_key("alice"), hash_key("bob"), hash_key("")}) {
      const auto first = ring.pick(key, usable);
      REQUIRE(first.has_value());
      for (int i = 0; i < 10; ++i) CHECK(ring.pick(key, usable) == first);
      CHECK(other_worker.pick(key, usable) == first);
    }
  }

  TEST_CASE("consistent hash: servers share keys about evenly") {
    const auto ids = server_ids(5);
    const auto keys = key_hashes();
    for (const auto& entry : shares(assign(make_ring(ids), ids, keys, all_usable(5)))) {
      INFO(entry.first);
      CHECK(entry.second > 0.15);
      CHECK(entry.second < 0.25);
    }
  }

  TEST_CASE("consistent hash: removing one of 5 servers moves only that server's keys") {
    const auto ids = server_ids(5);
    const auto keys = key_hashes();
    const auto before = assign(make_ring(ids), ids, keys, all_usable(5));

    auto fewer = ids;
    const std::string removed = fewer[2];
    fewer.erase(fewer.begin() + 2);
    const auto after = assign(make_ring(fewer), fewer, keys, all_usable(4));

    size_t moved = 0;
    size_t stayed_wrongly = 0;
    for (size_t i = 0; i < keys.size(); ++i) {
      if (before[i] == removed) {
        ++moved;
      } else if (after[i] != before[i]) {
        ++stayed_wrongly;
      }
    }
    CHECK(stayed_wrongly == 0);
    CHECK(static_cast<double>(moved) / kKeys > 0.15);
    CHECK(static_cast<double>(moved) / kKeys < 0.25);
  }

  TEST_CASE("consistent hash: adding a 6th server moves about 1/6 of the keys, all to it") {
    const auto ids = server_ids(5);
    const auto more = server_ids(6);
    const auto keys = key_hashes();
    const auto before = assign(make_ring(ids), ids, keys, all_usable(5));
    const auto after = assign(make_ring(more), more, keys, all_usable(6));
    size_t moved = 0;
    size_t moved_elsewhere = 0;
    for (size_t i = 0; i < keys.size(); ++i) {
      if (after[i] == before[i]) continue;
      ++moved;
      moved_elsewhere += after[i] != more.back() ? 1 : 0;
    }
    CHECK(moved_elsewhere == 0);
    const double fraction = static_cast<double>(moved) / kKeys;
    CHECK(fraction > 1.0 / 6 - 0.04);
    CHECK(fraction < 1.0 / 6 + 0.04);
  }

  TEST_CASE("consistent hash: shares follow weights, and raising a weight only pulls keys in") {
    const auto ids = server_ids(3);
    const auto keys = key_hashes();
    const auto weighted = assign(make_ring(ids, {1, 1, 2}), ids, keys, all_usable(3));
    auto share = shares(weighted);
    CHECK(share[ids[0]] == doctest::Approx(0.25).epsilon(0.2));
    CHECK(share[ids[1]] == doctest::Approx(0.25).epsilon(0.2));
    CHECK(share[ids[2]] == doctest::Approx(0.50).epsilon(0.1));

    const auto heavier = assign(make_ring(ids, {1, 1, 4}), ids, keys, all_usable(3));
    share = shares(heavier);
    CHECK(share[ids[2]] == doctest::Approx(4.0 / 6).epsilon(0.1));
    size_t moved_elsewhere = 0;
    for (size_t i = 0; i < keys.size(); ++i) {
      moved_elsewhere += heavier[i] != weighted[i] && heavier[i] != ids[2] ? 1 : 0;
    }
    CHECK(moved_elsewhere == 0);
  }

  TEST_CASE("consistent hash: an unusable server's keys go to the next on the ring and come back") {
    const auto ids = server_ids(5);
    const auto keys = key_hashes();
    const HashRing ring = make_ring(ids);
    const auto normal = assign(ring, ids, keys, all_usable(5));

    ServerMask usable = all_usable(5);
    usable.set(1, false);
    const auto skipping = assign(ring, ids, keys, usable);
    // Walking past its points is the same as a ring without it.
    auto without = ids;
    without.erase(without.begin() + 1);
    CHECK(skipping == assign(make_ring(without), without, keys, all_usable(4)));
    size_t owned_by_unusable = 0;
    size_t moved = 0;
    size_t to_unusable = 0;
    for (size_t i = 0; i < keys.size(); ++i) {
      owned_by_unusable += normal[i] == ids[1] ? 1 : 0;
      moved += skipping[i] != normal[i] ? 1 : 0;
      to_unusable += skipping[i] == ids[1] ? 1 : 0;
    }
    CHECK(to_unusable == 0);
    CHECK(owned_by_unusable > kKeys / 10);
    CHECK(moved == owned_by_unusable);  // only its keys moved

    usable.set(1, true);
    CHECK(assign(ring, ids, keys, usable) == normal);
  }

  TEST_CASE("consistent hash: nothing usable -> nullopt; weight 0 has no points") {
    const auto ids = server_ids(3);
    const HashRing ring = make_ring(ids, {1, 0, 1});
    CHECK(ring.point_count() == 2 * HashRing::kDefaultPointsPerWeight);
    CHECK_FALSE(ring.pick(1, ServerMask(3, false)).has_value());
    ServerMask zero_only(3, false);
    zero_only.set(1);
    CHECK_FALSE(ring.pick(1, zero_only).has_value());
    size_t to_zero_weight = 0;
    for (uint64_t key = 0; key < 1000; ++key) to_zero_weight += *ring.pick(key, all_usable(3)) == 1;
    CHECK(to_zero_weight == 0);
  }

  TEST_CASE("consistent hash: a large ring is capped, shares stay proportional") {
    std::vector<HashRing::Server> servers{{"a:1", 3}, {"b:1", 1}};
    const HashRing ring(servers, 160, 400);
    CHECK(ring.point_count() == 400);  // 100 per unit of weight
    size_t to_a = 0;
    for (uint64_t key = 0; key < 20'000; ++key) to_a += *ring.pick(key, all_usable(2)) == 0 ? 1 : 0;
    CHECK(static_cast<double>(to_a) / 20'000 == doctest::Approx(0.75).epsilon(0.1));
  }

  TEST_CASE("Balancer: one call for every policy") {
    const std::array<BalancerServer, 3> servers{{{"a:80", 5}, {"b:80", 1}, {"c:80", 1}}};
    const ServerMask usable = all_usable(3);

    Balancer rr(BalancePolicy::kRoundRobin, servers);
    std::vector<size_t> seq(7);
    for (size_t& pick : seq) pick = *rr.pick(0, usable);
    CHECK(seq == std::vector<size_t>{0, 0, 1, 0, 2, 0, 0});

    Balancer least(BalancePolicy::kLeastRequest, servers, {.rng_seed = 1});
    const std::array<uint32_t, 3> in_flight{100, 0, 0};
    for (int i = 0; i < 50; ++i) CHECK(*least.pick(0, usable, in_flight) != 0);

    Balancer hashed(BalancePolicy::kConsistentHash, servers);
    const uint64_t key = hash_key("user-7");
    const auto first = hashed.pick(key, usable);
    for (int i = 0; i < 5; ++i) CHECK(hashed.pick(key, usable) == first);
    CHECK(hashed.server_count() == 3);
    CHECK(hashed.policy() == BalancePolicy::kConsistentHash);
  }

  TEST_CASE("policy names round-trip") {
    for (const auto policy : {BalancePolicy::kRoundRobin, BalancePolicy::kLeastRequest,
                              BalancePolicy::kConsistentHash}) {
      CHECK(torii::upstream::parse_policy(torii::upstream::policy_name(policy)) == policy);
    }
    CHECK(torii::upstream::policy_name(BalancePolicy::kLeastRequest) == "least_request");
    CHECK_FALSE(torii::upstream::parse_policy("random").has_value());
  }

  TEST_CASE("hash_key: stable, length-aware, avalanching") {
    CHECK(hash_key("abc") == hash_key(std::string("abc")));
    CHECK(hash_key("a") != hash_key(std::string_view("a\0", 2)));
    CHECK(hash_key("") != hash_key(std::string_view("\0", 1)));
    CHECK(hash_key("session-1") != hash_key("session-2"));
    // Flipping one input bit flips about half of the output bits.
    std::string input = "a typical cookie value 0123456789";
    const uint64_t base = hash_key(input);
    int flipped_bits = 0;
    int flips = 0;
    for (size_t byte = 0; byte < input.size(); ++byte) {
      for (int bit = 0; bit < 8; ++bit) {
        input[byte] = static_cast<char>(input[byte] ^ (1 << bit));
        flipped_bits += std::popcount(base ^ hash_key(input));
        input[byte] = static_cast<char>(input[byte] ^ (1 << bit));
        ++flips;
      }
    }
    CHECK(static_cast<double>(flipped_bits) / flips == doctest::Approx(32).epsilon(0.05));
  }

  TEST_CASE("hash_client_address: the address, not the port; v4-mapped v6 = v4") {
    sockaddr_in v4{};
    v4.sin_family = AF_INET;
    v4.sin_port = htons(1234);
    v4.sin_addr.s_addr = htonl(0xC0000207);  // 192.0.2.7
    sockaddr_in other_port = v4;
    other_port.sin_port = htons(4321);
    sockaddr_in other_host = v4;
    other_host.sin_addr.s_addr = htonl(0xC0000208);
    sockaddr_in6 mapped{};
    mapped.sin6_family = AF_INET6;
    const unsigned char mapped_bytes[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 7};
    std::memcpy(&mapped.sin6_addr, mapped_bytes, 16);
    sockaddr_in6 v6 = mapped;
    v6.sin6_addr.s6_addr[10] = 0;  // no longer v4-mapped

    const auto hash = [](const auto& a) {
      return hash_client_address(reinterpret_cast<const sockaddr*>(&a));
    };
    CHECK(hash(v4) == hash(other_port));
    CHECK(hash(v4) != hash(other_host));
    CHECK(hash(v4) == hash(mapped));
    CHECK(hash(v4) != hash(v6));
  }

  TEST_CASE("find_cookie") {
    const std::string_view header = "theme=dark; sid=abc123 ;  lang = en ; flag; sid=second";
    CHECK(find_cookie(header, "sid") == "abc123");
    CHECK(find_cookie(header, "theme") == "dark");
    CHECK(find_cookie(header, "lang") == "en");
    CHECK_FALSE(find_cookie(header, "flag").has_value());
    CHECK_FALSE(find_cookie(header, "SID").has_value());
    CHECK_FALSE(find_cookie(header, "si").has_value());
    CHECK(find_cookie("empty=", "empty") == "");
    CHECK_FALSE(find_cookie("", "sid").has_value());
  }

  TEST_CASE("ServerMask: set, test and count across words") {
    ServerMask mask(130, false);
    CHECK_FALSE(mask.any());
    mask.set(0);
    mask.set(64);
    mask.set(129);
    CHECK(mask.count() == 3);
    CHECK(mask.test(64));
    CHECK_FALSE(mask.test(63));
    mask.set(64, false);
    CHECK(mask.count() == 2);
    CHECK_FALSE(mask.test(64));
    CHECK(mask.test(129));
    mask.fill(true);
    CHECK(mask.count() == 130);
    CHECK(mask.test(129));
    CHECK(ServerMask(0, true).count() == 0);
  }
}
