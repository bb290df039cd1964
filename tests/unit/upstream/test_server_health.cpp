// Unit tests for upstream/server_health: passive outlier detection
// (thresholds per failure kind, exponential backoff with a cap, return when
// the time is up, decay of the backoff, the group's max-percent cap) and
// active health check thresholds, plus the expected-status parser.
#include <doctest/doctest.h>

#include <string>

#include "upstream/server_health.hpp"

namespace {

using torii::upstream::ActiveCheckSettings;
using torii::upstream::ActiveCheckState;
using torii::upstream::FailureKind;
using torii::upstream::FailureOutcome;
using torii::upstream::HealthGroup;
using torii::upstream::HealthSettings;
using torii::upstream::HealthState;
using torii::upstream::OutlierSettings;
using torii::upstream::OutlierState;
using torii::upstream::ServerMask;
using torii::upstream::StatusRanges;

constexpr uint64_t kSecond = 1000;

// Fails `server` until it is ejected (or the cap stops it); returns the last outcome.
FailureOutcome fail_until_out(HealthGroup& group, size_t server, FailureKind kind, uint64_t now) {
  FailureOutcome outcome = FailureOutcome::kCounted;
  for (int i = 0; i < 100 && outcome == FailureOutcome::kCounted; ++i) {
    outcome = group.record_failure(server, kind, now);
  }
  return outcome;
}

std::string parse_error(std::string_view spec) {
  std::string error;
  CHECK_FALSE(StatusRanges::parse(spec, error).has_value());
  return error;
}

StatusRanges parse_ok(std::string_view spec) {
  std::string error;
  const auto ranges = StatusRanges::parse(spec, error);
  INFO(error);
  REQUIRE(ranges.has_value());
  return *ranges;
}

}  // namespace

TEST_SUITE("server health") {
  TEST_CASE("outlier: 5 consecutive 5xx eject; a success in between starts over") {
    const OutlierSettings settings;  // 5 x 5xx, 3 connect failures
    OutlierState outlier;
    for (int i = 0; i < 4; ++i) CHECK_FALSE(outlier.record_failure(FailureKind::k5xx, 0, settings));
    outlier.record_success(0);
    CHECK(outlier.consecutive_5xx() == 0);
    for (int i = 0; i < 4; ++i) CHECK_FALSE(outlier.record_failure(FailureKind::k5xx, 0, settings));
    CHECK(outlier.record_failure(FailureKind::k5xx, 0, settings));
  }

  TEST_CASE("outlier: timeouts count as 5xx; connect failures have their own threshold") {
    const OutlierSettings settings;
    OutlierState outlier;
    for (int i = 0; i < 2; ++i) outlier.record_failure(FailureKind::k5xx, 0, settings);
    for (int i = 0; i < 2; ++i) outlier.record_failure(FailureKind::kTimeout, 0, settings);
    CHECK(outlier.consecutive_5xx() == 4);
    CHECK(outlier.record_failure(FailureKind::kTimeout, 0, settings));

    OutlierState connects;
    CHECK_FALSE(connects.record_failure(FailureKind::kConnectFailure, 0, settings));
    CHECK_FALSE(connects.record_failure(FailureKind::kConnectFailure, 0, settings));
    // A 5xx means a connection worked: the connect count starts over.
    CHECK_FALSE(connects.record_failure(FailureKind::k5xx, 0, settings));
    CHECK(connects.consecutive_connect_failures() == 0);
    CHECK_FALSE(connects.record_failure(FailureKind::kConnectFailure, 0, settings));
    CHECK_FALSE(connects.record_failure(FailureKind::kConnectFailure, 0, settings));
    CHECK(connects.record_failure(FailureKind::kConnectFailure, 0, settings));
  }

  TEST_CASE("outlier: a threshold of 0 turns that trigger off") {
    OutlierSettings settings;
    settings.consecutive_5xx = 0;
    OutlierState outlier;
    for (int i = 0; i < 50; ++i)
      CHECK_FALSE(outlier.record_failure(FailureKind::k5xx, 0, settings));
  }

  TEST_CASE("outlier: ejection doubles from 30 s up to the 300 s cap and ends by itself") {
    const OutlierSettings settings;  // 30 s base, 300 s max
    OutlierState outlier;
    uint64_t now = 1'000'000;
    const uint64_t expected_lengths[] = {30, 60, 120, 240, 300, 300};
    for (const uint64_t seconds : expected_lengths) {
      CAPTURE(seconds);
      CHECK_FALSE(outlier.ejected(now));
      CHECK(outlier.eject(now, settings) == now + seconds * kSecond);
      CHECK(outlier.ejected(now));
      CHECK(outlier.ejected(now + seconds * kSecond - 1));
      CHECK_FALSE(outlier.ejected(now + seconds * kSecond));
      now += seconds * kSecond + kSecond;  // back for a second, then out again
    }
    CHECK(outlier.total_ejections() == 6);
    // While out, outcomes change nothing (they are of requests sent earlier).
    CHECK(outlier.eject(now, settings) > now);
    for (int i = 0; i < 10; ++i) {
      CHECK_FALSE(outlier.record_failure(FailureKind::kConnectFailure, now, settings));
    }
    CHECK(outlier.consecutive_connect_failures() == 0);
  }

  TEST_CASE("outlier: time back in service forgives past ejections") {
    const OutlierSettings settings;  // decay: one level per 300 s back in
    OutlierState outlier;
    uint64_t now = 0;
    for (int i = 0; i < 3; ++i) now = outlier.eject(now, settings);  // 30, 60, 120 s
    CHECK(outlier.ejection_level(now, settings) == 3);
    CHECK(outlier.ejection_level(now + 299 * kSecond, settings) == 3);
    CHECK(outlier.ejection_level(now + 300 * kSecond, settings) == 2);
    now += 600 * kSecond;
    CHECK(outlier.ejection_level(now, settings) == 1);
    CHECK(outlier.eject(now, settings) == now + 60 * kSecond);  // level 2
    now += 60 * kSecond + 3600 * kSecond;
    CHECK(outlier.eject(now, settings) == now + 30 * kSecond);  // all forgiven

    OutlierSettings no_decay = settings;
    no_decay.ejection_decay_ms = 0;
    OutlierState unforgiving;
    now = unforgiving.eject(0, no_decay);
    CHECK(unforgiving.eject(now + 3600 * kSecond, no_decay) == now + 3600 * kSecond + 60 * kSecond);
  }

  TEST_CASE("outlier: an ejected server ignores outcomes and comes back with clean counters") {
    const HealthSettings settings;
    HealthGroup group(4, settings);
    CHECK(fail_until_out(group, 0, FailureKind::kConnectFailure, 0) == FailureOutcome::kEjected);
    CHECK(group.state(0, 0) == HealthState::kEjected);
    CHECK_FALSE(group.eligible(0, 0));
    CHECK(group.record_failure(0, FailureKind::kConnectFailure, 10) == FailureOutcome::kIgnored);
    CHECK(group.server(0).outlier.ejected_until_ms() == 30 * kSecond);  // not extended

    const uint64_t back = 30 * kSecond;
    CHECK(group.eligible(0, back));
    CHECK(group.state(0, back) == HealthState::kHealthy);
    CHECK(group.record_failure(0, FailureKind::kConnectFailure, back) == FailureOutcome::kCounted);
    CHECK(group.record_failure(0, FailureKind::kConnectFailure, back) == FailureOutcome::kCounted);
    CHECK(group.record_failure(0, FailureKind::kConnectFailure, back) == FailureOutcome::kEjected);
    // Second ejection: twice as long.
    CHECK(group.server(0).outlier.ejected_until_ms() == back + 60 * kSecond);
  }

  TEST_CASE("outlier: never more than max_ejection_percent of the group out") {
    HealthSettings settings;  // 50%
    HealthGroup group(5, settings);
    CHECK(fail_until_out(group, 0, FailureKind::k5xx, 0) == FailureOutcome::kEjected);
    CHECK(fail_until_out(group, 1, FailureKind::k5xx, 0) == FailureOutcome::kEjected);
    // A third of five would be 60%.
    CHECK(fail_until_out(group, 2, FailureKind::k5xx, 0) == FailureOutcome::kEjectionCapped);
    CHECK(group.ejected_count(0) == 2);
    CHECK(group.eligible(2, 0));
    CHECK(group.record_failure(2, FailureKind::k5xx, 1) == FailureOutcome::kEjectionCapped);

    // When one returns, the next failure of the waiting server ejects it.
    const uint64_t later = 30 * kSecond;
    CHECK(group.ejected_count(later) == 0);
    CHECK(group.record_failure(2, FailureKind::k5xx, later) == FailureOutcome::kEjected);

    ServerMask mask(5, false);
    group.fill_eligible(later, mask);
    CHECK(mask.count() == 4);
    CHECK_FALSE(mask.test(2));

    SUBCASE("a lone server is never ejected at 50%, always at 100%") {
      HealthGroup lone(1, settings);
      CHECK(fail_until_out(lone, 0, FailureKind::k5xx, 0) == FailureOutcome::kEjectionCapped);
      settings.outlier.max_ejection_percent = 100;
      HealthGroup all(1, settings);
      CHECK(fail_until_out(all, 0, FailureKind::k5xx, 0) == FailureOutcome::kEjected);
    }
    SUBCASE("two servers at 50%: one") {
      HealthGroup pair(2, settings);
      CHECK(fail_until_out(pair, 0, FailureKind::k5xx, 0) == FailureOutcome::kEjected);
      CHECK(fail_until_out(pair, 1, FailureKind::k5xx, 0) == FailureOutcome::kEjectionCapped);
    }
  }

  TEST_CASE("active checks: thresholds both ways") {
    const ActiveCheckSettings settings;  // 2 passes in, 3 failures out, start healthy
    ActiveCheckState active(settings);
    CHECK(active.healthy());
    CHECK_FALSE(active.checked());
    CHECK_FALSE(active.record(false, settings));
    CHECK_FALSE(active.record(false, settings));
    CHECK_FALSE(active.record(true, settings));  // the run of failures is broken
    CHECK_FALSE(active.record(false, settings));
    CHECK_FALSE(active.record(false, settings));
    CHECK(active.record(false, settings));  // third in a row: out
    CHECK_FALSE(active.healthy());
    CHECK_FALSE(active.record(false, settings));
    CHECK_FALSE(active.record(true, settings));
    CHECK_FALSE(active.record(false, settings));
    CHECK_FALSE(active.record(true, settings));
    CHECK(active.record(true, settings));  // second pass in a row: in
    CHECK(active.healthy());
    CHECK(active.consecutive_passes() == 2);
  }

  TEST_CASE("active checks: starting unhealthy, the first pass brings a server in") {
    ActiveCheckSettings settings;
    settings.start_healthy = false;
    ActiveCheckState active(settings);
    CHECK_FALSE(active.healthy());
    CHECK(active.record(true, settings));
    CHECK(active.healthy());

    ActiveCheckState failing_first(settings);
    CHECK_FALSE(failing_first.record(false, settings));
    CHECK_FALSE(failing_first.record(true, settings));  // no longer the first result
    CHECK(failing_first.record(true, settings));
  }

  TEST_CASE("combined: eligible = active-healthy and not ejected; state names") {
    HealthSettings settings;
    settings.outlier.max_ejection_percent = 100;
    HealthGroup group(2, settings);
    CHECK(group.eligible(0, 0));
    for (int i = 0; i < 3; ++i) group.record_check(0, false);
    CHECK_FALSE(group.eligible(0, 0));
    CHECK(group.state(0, 0) == HealthState::kUnhealthy);
    fail_until_out(group, 0, FailureKind::k5xx, 0);
    CHECK(group.state(0, 0) == HealthState::kUnhealthy);  // the lasting cause wins
    group.record_check(0, true);
    CHECK(group.record_check(0, true));
    CHECK(group.state(0, 0) == HealthState::kEjected);
    CHECK_FALSE(group.eligible(0, 0));
    CHECK(group.eligible(0, 30 * kSecond));

    CHECK(health_state_name(HealthState::kHealthy) == "healthy");
    CHECK(health_state_name(HealthState::kUnhealthy) == "unhealthy");
    CHECK(health_state_name(HealthState::kEjected) == "ejected");
  }

  TEST_CASE("expected statuses: ranges, lists, classes") {
    const StatusRanges defaults = ActiveCheckSettings{}.expected_statuses;
    CHECK(defaults.contains(200));
    CHECK(defaults.contains(399));
    CHECK_FALSE(defaults.contains(199));
    CHECK_FALSE(defaults.contains(400));
    CHECK(defaults.to_string() == "200-399");

    const StatusRanges list = parse_ok(" 200 , 204,3xx, 418-419 ");
    CHECK(list.contains(200));
    CHECK_FALSE(list.contains(201));
    CHECK(list.contains(204));
    CHECK(list.contains(300));
    CHECK(list.contains(399));
    CHECK(list.contains(419));
    CHECK_FALSE(list.contains(420));
    CHECK_FALSE(list.contains(0));
    CHECK_FALSE(list.contains(1000));
    CHECK(list.to_string() == "200,204,300-399,418-419");
    CHECK(parse_ok("200-399") == defaults);
    CHECK(parse_ok("2XX") == StatusRanges::range(200, 299));
    CHECK(parse_ok("200 - 204") == StatusRanges::range(200, 204));
    CHECK(StatusRanges().empty());
  }

  TEST_CASE("expected statuses: errors say what is wrong") {
    CHECK(parse_error("") == "no statuses given (expected e.g. \"200-399\" or \"200,204,3xx\")");
    CHECK(parse_error("  ") == parse_error(""));
    CHECK(parse_error("2O0") == "\"2O0\" is not a status, range (200-399) or class (2xx)");
    CHECK(parse_error("200,,300") == "empty item in \"200,,300\"");
    CHECK(parse_error("200,") == "empty item in \"200,\"");
    CHECK(parse_error("600") == "status 600 is outside 100-599");
    CHECK(parse_error("099") == "status 99 is outside 100-599");
    CHECK(parse_error("200-600") == "status 600 is outside 100-599");
    CHECK(parse_error("399-200") == "range 399-200 ends before it starts");
    CHECK(parse_error("200-") == "\"200-\" is not a status range (expected e.g. 200-399)");
    CHECK(parse_error("200-300-400") ==
          "\"200-300-400\" is not a status range (expected e.g. 200-399)");
    CHECK(parse_error("6xx") == "\"6xx\" is not a status, range (200-399) or class (2xx)");
    CHECK(parse_error("2000") == "\"2000\" is not a status, range (200-399) or class (2xx)");
    CHECK(parse_error("+20") == "\"+20\" is not a status, range (200-399) or class (2xx)");
  }
}
